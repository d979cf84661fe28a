"""Connecting to MongoDB and preparing collections (indexes + enum validators).

The same code runs against SecantusDB (embedded, tests/dev) and a real ``mongod`` replica set.
``tz_aware=True`` so every date read back is an aware UTC instant: nothing depends on the
process time zone.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import mongoengine
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError

from mcmp.models import ALL_DOCUMENTS, delivery, post
from mcmp.models.enums import AccountStatus, AssetType, PostStatus, UserRole

log = logging.getLogger(__name__)

# Enums the database itself enforces (JSON-schema validators). Platform names are deliberately
# absent: third-party connectors extend that set, and an unknown platform on a post must load so
# the worker can fail that post alone with a readable reason.
_ENUM_VALIDATORS: dict[str, dict[str, list[str]]] = {
    "users": {"role": [r.value for r in UserRole]},
    "integrationaccounts": {"status": [s.value for s in AccountStatus]},
    "posts": {"status": [s.value for s in PostStatus]},
    "assets": {"type": [t.value for t in AssetType]},
}


# Name of the ``_id`` index on every MongoDB. Updates and finds over ``{"_id": {"$in": ids}, …}``
# hint it: SecantusDB otherwise plans them over the other fields' indexes (a 25-id marker update
# took 12.5 ms unhinted, 4.4 ms hinted); on mongod the hint names the plan it would pick anyway.
BY_ID = "_id_"


def with_database(uri: str, database: str) -> str:
    """``uri`` with its database name replaced by ``database``; hosts and options kept."""
    head, sep, options = uri.partition("?")
    scheme, _, rest = head.partition("://")
    hosts = rest.split("/", 1)[0]
    return f"{scheme}://{hosts}/{database}{sep}{options}"


def connect(uri: str, alias: str = "default", **kwargs: Any) -> Database:
    """Connect mongoengine (and return the pymongo database) for ``uri``; the URI names the DB."""
    mongoengine.disconnect(alias=alias)
    client: MongoClient = mongoengine.connect(
        host=uri, alias=alias, tz_aware=True, uuidRepresentation="standard", **kwargs
    )
    return client.get_default_database()


def wait_for_mongo(uri: str, timeout: float | None = None, interval: float = 1.0) -> None:
    """Block until MongoDB answers a ping, logging while it waits (processes may start first)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    warned = False
    while True:
        try:
            MongoClient(uri, serverSelectionTimeoutMS=1000).admin.command("ping")
            if warned:
                log.info("MongoDB is reachable", extra={"event": "mongo_up"})
            return
        except PyMongoError as exc:
            if deadline is not None and time.monotonic() > deadline:
                raise
            log.warning("waiting for MongoDB at %s: %s", _redact_uri(uri), type(exc).__name__)
            warned = True
            time.sleep(interval)


def _redact_uri(uri: str) -> str:
    if "@" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri


def _mark_paused_analytics(deliveries: Collection[dict[str, Any]]) -> None:
    """Snapshots paused by an earlier version (``analyticsPaused`` set, no due time) become
    findable the current way (``analyticsDueAt`` = ``ANALYTICS_PAUSED``) before their index goes."""
    result = deliveries.update_many(
        {"analyticsPaused": {"$gt": ""}, "analyticsDueAt": None},
        {"$set": {"analyticsDueAt": delivery.ANALYTICS_PAUSED}},
    )
    if result.modified_count:
        log.info("%d paused analytics schedules carried over", result.modified_count)


def ensure_schema(db: Database) -> None:
    """Create indexes of every document and the enum validators; safe to run on every start."""
    for document in ALL_DOCUMENTS:
        document.ensure_indexes()
    for module, document in ((delivery, delivery.Delivery), (post, post.Post)):
        collection = document._get_collection()
        obsolete = set(module.OBSOLETE_INDEXES) & set(collection.index_information())
        if "analyticsPaused_1" in obsolete:
            _mark_paused_analytics(collection)
        for name in obsolete:
            try:
                collection.drop_index(name)
                log.info("dropped obsolete index %s.%s", collection.name, name)
            except OperationFailure as exc:  # dropped concurrently by another process
                if exc.code != 27:  # IndexNotFound
                    raise
    existing = set(db.list_collection_names())
    for collection, enums in _ENUM_VALIDATORS.items():
        schema = {
            "$jsonSchema": {
                "bsonType": "object",
                "properties": {field: {"enum": values} for field, values in enums.items()},
            }
        }
        try:
            if collection not in existing:
                db.create_collection(collection, validator=schema, validationLevel="moderate")
            else:
                db.command("collMod", collection, validator=schema, validationLevel="moderate")
        except OperationFailure as exc:  # e.g. created concurrently by another process
            if exc.code != 48:  # NamespaceExists
                raise
            db.command("collMod", collection, validator=schema, validationLevel="moderate")
