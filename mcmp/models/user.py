"""Agency staff and client users (frontend contract, collection ``users``: docs/frontend-contract.md)."""

from __future__ import annotations

from mongoengine import DictField, EmbeddedDocument, EmbeddedDocumentListField, ListField, StringField

from mcmp.models.base import TimestampedDocument
from mcmp.models.enums import UserRole


class OAuthAccount(EmbeddedDocument):  # type: ignore[misc]  # mongoengine ships no types: its bases are Any
    meta = {"strict": False}
    provider = StringField()
    provider_id = StringField(db_field="providerId")
    profile = DictField()


class User(TimestampedDocument):
    meta = {"collection": "users", "strict": False, "indexes": [{"fields": ["email"], "unique": True}]}

    email = StringField()
    password = StringField()
    name = StringField()
    tenant_ids = ListField(StringField(), db_field="tenantIds", default=list)
    role = StringField(choices=[r.value for r in UserRole], default=UserRole.CLIENT_VIEWER.value)
    oauth_accounts = EmbeddedDocumentListField(OAuthAccount, db_field="oauthAccounts", default=list)
