"""``mcmp tokens rotate``: re-encrypt every account's tokens with the newest key, bound to the
account (resumable).

Accounts are walked in ``_id`` order in batches; each account is one conditional update naming
the exact values read, so a token written meanwhile (a refresh, a reconnect) is never replaced
and a run killed at any point leaves every token readable (old key or new). Values already
sealed with the newest key and bound to their account are skipped, so running it again simply
finishes the job; values sealed before binding (``mcmpenc:v1:``) and plaintext tokens written by
a frontend are sealed bound on the way. A value no configured key opens, or one bound to another
account (copied), is reported by account id and left untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pymongo.collection import Collection

from mcmp.models.integration_account import AccountDoc, integration_accounts
from mcmp.worker.accounts import crypto

log = logging.getLogger(__name__)
FIELDS = ("accessToken", "refreshToken")
_CONFLICT_RETRIES = 3


@dataclass
class RotationReport:
    total: int = 0
    rotated: int = 0  # accounts rewritten with the newest key
    current: int = 0  # already on the newest key (or without tokens)
    unreadable: list[str] = field(default_factory=list)  # account ids no configured key opens
    busy: list[str] = field(default_factory=list)  # changed concurrently on every try: run again

    def line(self) -> str:
        return (
            f"accounts={self.total} rotated={self.rotated} already_current={self.current} "
            f"unreadable={len(self.unreadable)} busy={len(self.busy)}"
        )


def _resealed(doc: AccountDoc) -> dict[str, str]:
    """New values for the fields not yet bound and on the newest key (raises ``TokenKeyError``)."""
    changes = {}
    account_id = str(doc["_id"])
    for name in FIELDS:
        value = doc.get(name)
        if not value or not isinstance(value, str):
            continue
        if crypto.is_current(value, account_id):
            continue
        changes[name] = crypto.reseal(value, account_id)
    return changes


def rotate_one(coll: Collection[AccountDoc], doc: AccountDoc) -> str:
    """``rotated`` | ``current`` | ``unreadable`` | ``busy`` for one account."""
    for _ in range(_CONFLICT_RETRIES):
        try:
            changes = _resealed(doc)
        except crypto.TokenKeyError:
            return "unreadable"
        if not changes:
            return "current"
        expected = {name: doc.get(name) for name in FIELDS}
        if coll.update_one({"_id": doc["_id"], **expected}, {"$set": changes}).modified_count == 1:
            return "rotated"
        reread = coll.find_one({"_id": doc["_id"]}, {name: 1 for name in FIELDS})  # changed meanwhile
        if reread is None:
            return "current"
        doc = reread
    return "busy"  # kept changing under us: left for the next run


def rotate_all(
    batch_size: int = 200, on_batch: Callable[[RotationReport], None] | None = None
) -> RotationReport:
    """Walk every account in ``_id`` order; ``on_batch`` is called after each batch (progress)."""
    crypto.encrypt("", "")  # fail fast, with a clear message, when keys are missing or malformed
    coll = integration_accounts()
    report = RotationReport(total=coll.count_documents({}))
    last_id = None
    while True:
        query: dict[str, Any] = {} if last_id is None else {"_id": {"$gt": last_id}}
        batch = list(coll.find(query, {name: 1 for name in FIELDS}).sort("_id", 1).limit(batch_size))
        if not batch:
            break
        for doc in batch:
            outcome = rotate_one(coll, doc)
            if outcome == "rotated":
                report.rotated += 1
            elif outcome == "current":
                report.current += 1
            elif outcome == "busy":
                report.busy.append(str(doc["_id"]))
            else:
                report.unreadable.append(str(doc["_id"]))
        last_id = batch[-1]["_id"]
        if on_batch is not None:
            on_batch(report)
    if report.unreadable:
        log.error("%d accounts hold tokens no configured key opens (left untouched)", len(report.unreadable))
    return report
