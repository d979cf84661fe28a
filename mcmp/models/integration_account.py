"""A client's connection to one platform (frontend contract, collection ``integrationaccounts``: docs/frontend-contract.md).

``accessToken``/``refreshToken`` are stored encrypted (Fernet) by the worker; a frontend may
write plaintext, which the worker encrypts on first touch (see mcmp.worker.accounts.tokens and docs/tokens.md).
``platform`` is an open set: the seed's five plus any registered third-party connector.
"""

from __future__ import annotations

from mongoengine import DateTimeField, DictField, StringField

from mcmp.models.base import TimestampedDocument
from mcmp.models.enums import AccountStatus


class IntegrationAccount(TimestampedDocument):
    meta = {
        "collection": "integrationaccounts",
        "strict": False,
        "indexes": ["client_id", ("client_id", "platform"), "updated_at"],  # updated_at: readiness's scan
    }

    client_id = StringField(db_field="clientId", required=True)
    platform = StringField(required=True)
    account_name = StringField(db_field="accountName")
    external_account_id = StringField(db_field="externalAccountId")
    access_token = StringField(db_field="accessToken")
    refresh_token = StringField(db_field="refreshToken")
    expires_at = DateTimeField(db_field="expiresAt")
    status = StringField(choices=[s.value for s in AccountStatus], default=AccountStatus.CONNECTED.value)
    metadata = DictField(default=dict)

    def __repr__(self) -> str:  # never show tokens, even in debugging output
        return f"<IntegrationAccount {self.pk} {self.platform} client={self.client_id} status={self.status}>"
