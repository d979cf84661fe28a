"""Groups posts of one client (frontend contract, collection ``campaigns``: docs/frontend-contract.md)."""

from __future__ import annotations

from mongoengine import DateTimeField, ListField, StringField

from mcmp.models.base import TimestampedDocument


class Campaign(TimestampedDocument):
    meta = {
        "collection": "campaigns",
        "strict": False,
        "indexes": ["client_id", "updated_at"],  # updated_at: readiness's changed-campaigns scan
    }

    client_id = StringField(db_field="clientId", required=True)
    name = StringField(required=True)
    description = StringField()
    start_date = DateTimeField(db_field="startDate")
    end_date = DateTimeField(db_field="endDate")
    tags = ListField(StringField(), default=list)
