"""Connecting to MongoDB and preparing collections (indexes + enum validators).

The same code runs against SecantusDB (embedded, tests/dev) and a real ``mongod`` replica set.
``tz_aware=True`` so every date read back is an aware UTC instant: nothing depends on the
process time zone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import mongoengine
from mongoengine import Document
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError

from mcmp.errors import PublisherError
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


def connect(uri: str, alias: str = "default", **kwargs: Any) -> Database[dict[str, Any]]:
    """Connect mongoengine (and return the pymongo database) for ``uri``; the URI names the DB."""
    mongoengine.disconnect(alias=alias)
    client: MongoClient[dict[str, Any]] = mongoengine.connect(
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


def _mark_paused_analytics(deliveries: Collection[delivery.DeliveryDoc]) -> None:
    """Snapshots paused by an earlier version (``analyticsPaused`` set, no due time) become
    findable the current way (``analyticsDueAt`` = ``ANALYTICS_PAUSED``) before their index goes."""
    result = deliveries.update_many(
        {"analyticsPaused": {"$gt": ""}, "analyticsDueAt": None},
        {"$set": {"analyticsDueAt": delivery.ANALYTICS_PAUSED}},
    )
    if result.modified_count:
        log.info("%d paused analytics schedules carried over", result.modified_count)


# The indexes the frontend's Mongoose schemas declare too (``index: true`` / ``unique: true`` in
# the seed), by collection and name. Mongoose's ``autoIndex`` sends them as ``{unique?,
# background: true}`` and SecantusDB rejects a same-named index whose options differ in any way
# (order included), so these are created exactly as Mongoose creates them: whichever side starts
# first, the other's request is then a no-op.
FRONTEND_INDEXES: dict[str, frozenset[str]] = {
    "users": frozenset({"email_1"}),
    "clients": frozenset({"slug_1"}),
    "integrationaccounts": frozenset({"clientId_1"}),
    "campaigns": frozenset({"clientId_1"}),
    "posts": frozenset({"clientId_1", "campaignId_1"}),
    "analyticsrecords": frozenset({"clientId_1", "postId_1"}),
    "assets": frozenset({"clientId_1"}),
}
MONGOOSE_INDEX_OPTIONS: dict[str, Any] = {"background": True}

# Options that change what an index does; anything else (``background``, ``v``, the name) only
# says how it was built, so an existing index differing only there serves us as well.
_ESSENTIAL_OPTIONS = ("unique", "sparse", "partialFilterExpression", "expireAfterSeconds")

_accepted: set[tuple[str, str, str]] = set()  # (database, collection, index) logged already


class IndexMismatch(PublisherError, RuntimeError):
    """An index we rely on exists with the same key or name but does something else."""


def _index_name(keys: list[tuple[str, Any]]) -> str:
    return "_".join(f"{field}_{direction}" for field, direction in keys)


def index_requests(document: type[Document]) -> list[tuple[list[tuple[str, Any]], dict[str, Any]]]:
    """(keys, createIndex options) of each index ``document`` declares, with the name explicit."""
    collection = document._meta["collection"]
    requests = []
    for spec in document._meta["index_specs"]:
        options = {k: v for k, v in spec.items() if k not in ("fields", "cls")}
        keys = list(spec["fields"])
        name = options.pop("name", None) or _index_name(keys)
        if name in FRONTEND_INDEXES.get(collection, ()):
            options.update(MONGOOSE_INDEX_OPTIONS)
        requests.append((keys, {"name": name, **options}))
    return requests


def _essentials(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {opt: spec[opt] for opt in _ESSENTIAL_OPTIONS if spec.get(opt) not in (None, False)}


def _describe(spec: Mapping[str, Any]) -> str:
    key = ", ".join(f"{f}: {d}" for f, d in dict(spec["key"]).items())
    extra = _essentials(spec)
    return (
        "{" + key + "}" + (" " + " ".join(f"{k}={v}" for k, v in extra.items()) if extra else " (no options)")
    )


def ensure_index(collection: Collection[Any], keys: list[tuple[str, Any]], options: dict[str, Any]) -> None:
    """Create one index; an existing one with the same key and essential options is accepted.

    The frontend (or an earlier version of ours) may have built the same index with other
    build options (``background``) or under another name; servers answer that with
    IndexOptionsConflict (85) or IndexKeySpecsConflict (86). Such an index does the same job,
    so it is used as it is and said once. One that differs in what it enforces (a unique index
    we need exists as non-unique) stops the start with one line naming both.
    """
    try:
        collection.create_index(keys, **options)
        return
    except OperationFailure as exc:
        if exc.code not in (85, 86):
            raise
    name = options["name"]
    wanted = {"key": dict(keys), **options}
    existing = [
        ix
        for ix in collection.list_indexes()
        if ix.get("name") == name or list(dict(ix["key"]).items()) == list(dict(keys).items())
    ]
    for index in existing:
        same_key = list(dict(index["key"]).items()) == list(dict(keys).items())
        if same_key and _essentials(index) == _essentials(wanted):
            marker = (collection.database.name, collection.name, str(index["name"]))
            if marker not in _accepted:
                _accepted.add(marker)
                others = sorted(
                    k
                    for k in set(index) | set(wanted)
                    if k not in ("v", "key", "ns") and index.get(k) != wanted.get(k)
                )
                log.info(
                    "index %s.%s exists as %s (differs only in %s); using it",
                    collection.name,
                    index["name"],
                    _describe(index),
                    ", ".join(others) or "nothing",
                    extra={"event": "index_accepted"},
                )
            return
    found = existing[0] if existing else None
    raise IndexMismatch(
        f"index {collection.name}.{name}: needs {_describe(wanted)}, but "
        + (
            f"{collection.name}.{found['name']} exists as {_describe(found)}"
            if found is not None
            else "the server refused it as conflicting"
        )
        + "; drop or fix that index, then start again"
    )


def ensure_schema(db: Database[dict[str, Any]]) -> None:
    """Create indexes of every document and the enum validators; safe to run on every start."""
    for document in ALL_DOCUMENTS:
        collection = document._get_collection()
        for keys, options in index_requests(document):
            ensure_index(collection, keys, options)
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
