"""The models are the contract with the frontend: every seed field, enum, default and index."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mongoengine import EmbeddedDocumentField, EmbeddedDocumentListField, NotUniqueError
from pymongo.errors import WriteError

from mcmp.models import AnalyticsRecord, Asset, Campaign, Client, IntegrationAccount, Post, User

SEED = Path(__file__).resolve().parents[4] / "shared" / "seeds" / "schemas.md"
DOCUMENTS = {
    "User": (User, "users"),
    "Client": (Client, "clients"),
    "IntegrationAccount": (IntegrationAccount, "integrationaccounts"),
    "Campaign": (Campaign, "campaigns"),
    "Post": (Post, "posts"),
    "AnalyticsRecord": (AnalyticsRecord, "analyticsrecords"),
    "Asset": (Asset, "assets"),
}


def seed_props() -> dict[str, list[str]]:
    """Field names declared with @Prop per seed class, parsed from the seed document itself."""
    if not SEED.exists():
        pytest.fail(f"seed schema file not found at {SEED} (shared/ must sit beside the repo)")
    text = SEED.read_text()
    classes: dict[str, list[str]] = {}
    for match in re.finditer(r"export class (\w+) extends Document \{(.*?)\n\}", text, re.S):
        body, fields, i = match.group(2), [], 0
        while (start := body.find("@Prop(", i)) != -1:
            depth, j = 0, start + len("@Prop")
            while True:
                depth += {"(": 1, ")": -1}.get(body[j], 0)
                j += 1
                if depth == 0:
                    break
            name = re.match(r"\s*'?([\w-]+)'?\??:", body[j:])
            assert name, f"cannot read the field after @Prop in {match.group(1)}"
            fields.append(name.group(1))
            i = j
        classes[match.group(1)] = fields
    return classes


def db_fields(document: type) -> set[str]:
    return {field.db_field for field in document._fields.values()}


def test_every_seed_field_is_stored_under_its_seed_name():
    props = seed_props()
    assert set(props) == set(DOCUMENTS), props.keys()
    for name, (document, collection) in DOCUMENTS.items():
        assert document._meta["collection"] == collection
        missing = set(props[name]) - db_fields(document)
        assert not missing, f"{name} lacks seed fields {missing}"


def test_nested_seed_fields_keep_their_names():
    def embedded(document: type, field: str) -> set[str]:
        f = document._fields[field]
        inner = f.field.document_type if isinstance(f, EmbeddedDocumentListField) else f.document_type
        assert isinstance(f, (EmbeddedDocumentField, EmbeddedDocumentListField))
        return db_fields(inner)

    assert {"at", "fromStatus", "toStatus", "byUserId", "note"} <= embedded(Post, "status_history")
    assert {"dayOfWeek", "start", "end"} <= embedded(Client, "default_posting_windows")
    assert {"logoUrl", "primaryColor", "secondaryColor", "fonts"} <= embedded(Client, "brand_settings")
    assert {"label", "text"} <= embedded(Client, "cta_templates")
    assert {"provider", "providerId", "profile"} <= embedded(User, "oauth_accounts")
    assert {"impressions", "reach", "clicks", "likes", "comments", "shares", "saves"} <= embedded(
        AnalyticsRecord, "metrics"
    )


def test_defaults_and_timestamps_match_mongoose(db):
    user = User(email="a@example.com").save()
    client = Client(name="Acme", slug="acme").save()
    post = Post(client_id=str(client.pk), title="t", body="b").save()
    raw_user = db.users.find_one({"_id": user.pk})
    raw_client = db.clients.find_one({"_id": client.pk})
    raw_post = db.posts.find_one({"_id": post.pk})
    assert raw_user["role"] == "clientViewer" and raw_user["tenantIds"] == []
    assert raw_client["timezone"] == "UTC" and raw_client["hashtagBank"] == []
    assert raw_post["status"] == "draft" and raw_post["platforms"] == [] and raw_post["assetUrls"] == []
    assert isinstance(raw_post["createdAt"], datetime) and raw_post["createdAt"] == raw_post["updatedAt"]
    first = raw_post["updatedAt"]
    post.title = "changed"
    post.save()
    assert db.posts.find_one({"_id": post.pk})["updatedAt"] > first
    account = IntegrationAccount(client_id="c", platform="facebook").save()
    assert db.integrationaccounts.find_one({"_id": account.pk})["status"] == "connected"


def test_unique_indexes_are_enforced_by_the_database(db):
    User(email="dup@example.com").save()
    with pytest.raises(NotUniqueError):
        User(email="dup@example.com").save()
    db.clients.insert_one({"name": "A", "slug": "same"})
    with pytest.raises(Exception, match="duplicate key"):
        db.clients.insert_one({"name": "B", "slug": "same"})


@pytest.mark.parametrize(
    ("collection", "doc"),
    [
        ("users", {"email": "x@example.com", "role": "superuser"}),
        ("posts", {"clientId": "c", "title": "t", "body": "b", "status": "publishing"}),
        ("integrationaccounts", {"clientId": "c", "platform": "facebook", "status": "broken"}),
        ("assets", {"clientId": "c", "type": "gif", "url": "https://x/y.gif"}),
    ],
)
def test_enums_are_enforced_by_the_database(db, collection, doc):
    with pytest.raises(WriteError, match="validation"):
        db[collection].insert_one(doc)


def test_mongoose_written_documents_load_and_update(db, make_client, make_post):
    client = make_client()
    raw = make_post(client, ["website"], when=datetime(2030, 1, 1, tzinfo=UTC))
    post = Post.objects.get(pk=raw["_id"])
    assert post.status == "scheduled" and post.status_history[0].to_status == "scheduled"
    assert post.schedule_time == datetime(2030, 1, 1, tzinfo=UTC)
    post.last_error = "x"
    post.save()
    stored = db.posts.find_one({"_id": raw["_id"]})
    assert stored["__v"] == 0 and stored["lastError"] == "x"
    assert isinstance(stored["statusHistory"][0]["at"], datetime)


def test_startup_drops_indexes_of_earlier_versions(db):
    """Every index costs each state change a rewrite: obsolete ones must not linger."""
    from mcmp.models import delivery, post
    from mcmp.models.db import ensure_schema

    db.deliveries.create_index([("state", 1), ("leaseUntil", 1)])
    db.deliveries.create_index([("clientId", 1), ("state", 1)])
    db.posts.create_index([("status", 1), ("scheduleTime", 1)])
    db.deliveries.create_index([("analyticsPaused", 1)], sparse=True)
    paused = {"postId": "p1", "clientId": "c1", "platform": "facebook", "analyticsPaused": "c1|facebook"}
    db.deliveries.insert_one(paused)  # paused the earlier way: no due time
    assert set(delivery.OBSOLETE_INDEXES) <= set(db.deliveries.index_information())
    assert set(post.OBSOLETE_INDEXES) <= set(db.posts.index_information())

    ensure_schema(db)

    names = set(db.deliveries.index_information())
    assert not set(delivery.OBSOLETE_INDEXES) & names
    assert {"postId_1_platform_1", "state_1_dueAt_1"} <= names
    assert db.deliveries.find_one({"_id": paused["_id"]})["analyticsDueAt"] == delivery.ANALYTICS_PAUSED
    post_names = set(db.posts.index_information())
    assert not set(post.OBSOLETE_INDEXES) & post_names
    assert "status_1_mcmpExpandedAt_1_scheduleTime_1" in post_names
