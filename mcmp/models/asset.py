"""A client's media library entry (frontend contract, collection ``assets``: docs/frontend-contract.md)."""

from __future__ import annotations

from mongoengine import ListField, StringField

from mcmp.models.base import TimestampedDocument
from mcmp.models.enums import AssetType


class Asset(TimestampedDocument):
    meta = {"collection": "assets", "strict": False, "indexes": ["client_id", ("client_id", "url")]}

    client_id = StringField(db_field="clientId", required=True)
    type = StringField(required=True, choices=[t.value for t in AssetType])
    url = StringField(required=True)
    filename = StringField()
    alt_text = StringField(db_field="altText")
    tags = ListField(StringField(), default=list)
    folder = StringField()
