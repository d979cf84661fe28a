"""A brand / tenant (frontend contract, collection ``clients``: docs/frontend-contract.md): the tenancy boundary of all other data."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

from bson import ObjectId
from mongoengine import (
    EmbeddedDocument,
    EmbeddedDocumentField,
    EmbeddedDocumentListField,
    IntField,
    ListField,
    StringField,
)
from pymongo.collection import Collection

from mcmp.models.base import TimestampedDocument


class CtaTemplateDoc(TypedDict, total=False):
    """One ``ctaTemplates`` entry: the text a post's ``cta.template`` label appends."""

    label: str
    text: str


class PostingWindowDoc(TypedDict, total=False):
    """One ``defaultPostingWindows`` entry: a weekday (0-6, Sun-Sat) and "HH:MM" bounds."""

    dayOfWeek: int
    start: str
    end: str


class ClientDoc(TypedDict, total=False):
    """A client (brand, tenant) as MongoDB holds it; the frontend writes it, the worker only reads.

    Nested lists are typed as the frontend is meant to store them; readers still check each entry.
    """

    _id: ObjectId
    name: str
    slug: str | None
    timezone: str
    brandSettings: dict[str, object]
    brandGuidelines: str | None
    hashtagBank: list[str]
    ctaTemplates: list[CtaTemplateDoc]
    defaultPostingWindows: list[PostingWindowDoc]
    createdAt: datetime
    updatedAt: datetime


def clients() -> Collection[ClientDoc]:
    """The ``clients`` collection, typed (read-only for the worker)."""
    collection: Collection[ClientDoc] = Client._get_collection()
    return collection


class BrandSettings(EmbeddedDocument):  # type: ignore[misc]  # mongoengine ships no types: its bases are Any
    meta = {"strict": False}
    logo_url = StringField(db_field="logoUrl")
    primary_color = StringField(db_field="primaryColor")
    secondary_color = StringField(db_field="secondaryColor")
    fonts = ListField(StringField(), default=list)


class CtaTemplate(EmbeddedDocument):  # type: ignore[misc]  # mongoengine ships no types: its bases are Any
    meta = {"strict": False}
    label = StringField()
    text = StringField()


class PostingWindow(EmbeddedDocument):  # type: ignore[misc]  # mongoengine ships no types: its bases are Any
    meta = {"strict": False}
    day_of_week = IntField(db_field="dayOfWeek", min_value=0, max_value=6)  # 0-6, Sun-Sat
    start = StringField()  # "09:00"
    end = StringField()  # "17:00"


class Client(TimestampedDocument):
    meta = {
        "collection": "clients",
        "strict": False,
        # updated_at: readiness's changed-clients scan
        "indexes": [{"fields": ["slug"], "unique": True}, "updated_at"],
    }

    name = StringField(required=True)
    slug = StringField()
    timezone = StringField(default="UTC")
    brand_settings = EmbeddedDocumentField(BrandSettings, db_field="brandSettings", default=BrandSettings)
    brand_guidelines = StringField(db_field="brandGuidelines")
    hashtag_bank = ListField(StringField(), db_field="hashtagBank", default=list)
    cta_templates = EmbeddedDocumentListField(CtaTemplate, db_field="ctaTemplates", default=list)
    default_posting_windows = EmbeddedDocumentListField(
        PostingWindow, db_field="defaultPostingWindows", default=list
    )
