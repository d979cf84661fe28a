"""Derives ``Post.status`` from its deliveries and records per-platform results on the post.

The only writer of ``Post.status``, ``statusHistory``, ``platformPostIds``, ``publishedAt`` and
``lastError`` in the worker. Writes are conditional on the status we read, so a concurrent
change (another platform finishing, the frontend editing) is re-read, never overwritten.
Rule (README, invariant 6): ``published`` when every platform is; ``failed`` when at least one failed
permanently and none is still pending; otherwise the post stays ``scheduled``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne

from mcmp.models import ACTIVE_STATES, DeliveryState, PostStatus
from mcmp.models.base import utcnow
from mcmp.models.db import BY_ID
from mcmp.models.delivery import DeliveryDoc
from mcmp.models.id_batches import find_in
from mcmp.models.post import PostDoc, PostField, StatusChangeDoc
from mcmp.models.post import posts as posts  # the typed collection, under the name callers use
from mcmp.worker.publishing import delivery_states
from mcmp.worker.publishing.guarded_update import guarded

log = logging.getLogger(__name__)

MAX_CONFLICT_RETRIES = 5
EXPANDED_MARKER = "mcmpExpandedAt"  # set on a post once its deliveries exist; cleared when it settles
# What deriving a post's status reads of it: the marker's value is the expansion the read saw.
SYNC_VIEW = {PostField.STATUS: 1, PostField.PLATFORMS: 1, EXPANDED_MARKER: 1}


def history_entry(
    from_status: str | None, to_status: str, note: str, by_user_id: str | None = None
) -> StatusChangeDoc:
    entry: StatusChangeDoc = {
        "_id": ObjectId(),
        "at": utcnow(),
        "fromStatus": from_status,
        "toStatus": to_status,
        "note": note,
    }
    if by_user_id:
        entry["byUserId"] = by_user_id
    return entry


def derive(post_platforms: list[str], deliveries: Sequence[DeliveryDoc]) -> tuple[str | None, str | None]:
    """(new status or None for "still scheduled", lastError) from the deliveries of a post."""
    by_platform = {d["platform"]: d for d in deliveries}
    states = [by_platform[p]["state"] if p in by_platform else None for p in post_platforms]
    if not post_platforms or any(s is None for s in states):
        return None, None
    failed = [by_platform[p] for p in post_platforms if by_platform[p]["state"] == DeliveryState.FAILED.value]
    active = [s for s in states if s in {a.value for a in ACTIVE_STATES}]
    errors = "; ".join(f"{d['platform']}: {d.get('lastError') or 'failed'}" for d in failed) or None
    if failed and not active:
        return PostStatus.FAILED.value, errors
    if not active and not failed and DeliveryState.PUBLISHED.value in states:
        # Every platform is published, or published and deliberately cancelled by an operator.
        return PostStatus.PUBLISHED.value, None
    return None, errors


def _published_fields(deliveries: Sequence[DeliveryDoc]) -> dict[str, Any]:
    """``platformPostIds.<p>`` / ``publishedAt.<p>`` for every published delivery (idempotent)."""
    fields: dict[str, Any] = {}
    for d in deliveries:
        if d["state"] == DeliveryState.PUBLISHED.value and d.get("platformPostId"):
            fields[f"{PostField.PLATFORM_POST_IDS}.{d['platform']}"] = d["platformPostId"]
            fields[f"{PostField.PUBLISHED_AT}.{d['platform']}"] = d.get("publishedAt") or utcnow()
    return fields


def needs_sync(post: PostDoc, deliveries: Sequence[DeliveryDoc]) -> bool:
    """Would ``sync`` change this post (``status``, ``platforms`` and ``platformPostIds`` read)?

    True when its deliveries settle it (published / failed) or a published platform's id is
    not on the post yet; lets a sweep over many posts write only the ones that lag.
    """
    if post.get("status") != PostStatus.SCHEDULED.value:
        return False
    platforms = list(dict.fromkeys(post.get("platforms") or []))
    if derive(platforms, deliveries)[0] is not None:
        return True
    recorded = post.get("platformPostIds") or {}
    return any(
        d["state"] == DeliveryState.PUBLISHED.value
        and d.get("platformPostId")
        and recorded.get(d["platform"]) != d["platformPostId"]
        for d in deliveries
    )


def record_error(post_id: str, message: str) -> None:
    """Show the latest problem on the post while it is still being retried."""
    posts().update_one(
        {PostField.ID: ObjectId(post_id)},
        {"$set": {PostField.LAST_ERROR: message, PostField.UPDATED_AT: utcnow()}},
    )


@dataclass(frozen=True)
class PostWrite:
    """One post update derived from its deliveries; ``new_status`` None for a write without a status change."""

    post_id: str
    filter: Mapping[str, Any]
    update: Mapping[str, Any]
    new_status: str | None


def plan(post: PostDoc, deliveries: Sequence[DeliveryDoc]) -> PostWrite | None:
    """The write ``sync`` would make for ``post`` (its ``status``, ``platforms`` and expansion
    marker read, then its deliveries), or None.

    A status change is conditional on the status and on the expansion read; a write of
    ids/errors alone is not (it is idempotent and the frontend does not own those fields).
    """
    if post.get("status") != PostStatus.SCHEDULED.value:
        return None
    post_id = str(post["_id"])
    platforms = list(dict.fromkeys(post.get("platforms") or []))
    new_status, last_error = derive(platforms, deliveries)
    published = _published_fields(deliveries)
    if new_status is None:
        changes = dict(published)
        if last_error:
            changes[PostField.LAST_ERROR] = last_error
        if not changes:
            return None
        changes[PostField.UPDATED_AT] = utcnow()
        return PostWrite(post_id, {PostField.ID: post["_id"]}, {"$set": changes}, None)
    note = _note(new_status, deliveries)
    update: dict[str, Any] = {
        "$set": {**published, PostField.STATUS: new_status, PostField.UPDATED_AT: utcnow()},
        "$push": {PostField.STATUS_HISTORY: history_entry(post["status"], new_status, note)},
        "$unset": {EXPANDED_MARKER: ""},
    }
    if new_status == PostStatus.PUBLISHED.value:
        update["$unset"][PostField.LAST_ERROR] = ""
    else:
        update["$set"][PostField.LAST_ERROR] = last_error
    # Only the expansion that was read: a post settled, scheduled again by the frontend or an
    # operator and expanded anew (its failed deliveries re-opened, then a new marker) must not be
    # settled back by a sync that read the old deliveries. Re-opening precedes the new marker, so
    # deliveries read after a post showing marker M are at least as new as M's expansion.
    expansion = post.get(EXPANDED_MARKER)
    if expansion is None:  # not expanded (yet, or again): only an expanded post settles
        return None
    cas = {PostField.ID: post["_id"], PostField.STATUS: post["status"], EXPANDED_MARKER: expansion}
    return PostWrite(post_id, cas, update, new_status)


def sync(post_id: str, post: PostDoc | None = None, settled: DeliveryDoc | None = None) -> str | None:
    """Recompute the post's status from its deliveries; returns the new status if it changed.

    ``post`` (with ``status`` and ``platforms``) and ``settled`` (the delivery just finished, as
    written) save round trips on the hot path: a single-platform post needs no delivery query.
    The write is conditional on the status read, so stale inputs only cost a retry.
    """
    for _ in range(MAX_CONFLICT_RETRIES):
        if post is None:
            post = posts().find_one({PostField.ID: ObjectId(post_id)}, SYNC_VIEW)
        if post is None or post.get(PostField.STATUS) != PostStatus.SCHEDULED.value:
            return None  # settled already (or not ours to settle): its deliveries need no read
        write = plan(post, _deliveries_of(post_id, post, settled))
        if write is None:
            return None
        result = posts().update_one(write.filter, write.update, hint=BY_ID)
        if write.new_status is None:
            return None
        if result.modified_count == 1:
            log.info(
                "post %s is now %s",
                post_id,
                write.new_status,
                extra={"post_id": post_id, "status": write.new_status},
            )
            return write.new_status
        post = settled = None  # changed under us: the retry reads both afresh
    log.warning("post %s: status kept changing under us; the next sync will settle it", post_id)
    return None


def _deliveries_of(post_id: str, post: PostDoc, settled: DeliveryDoc | None) -> list[DeliveryDoc]:
    platforms = list(dict.fromkeys(post.get("platforms") or []))
    if settled is not None and platforms == [settled["platform"]]:
        return [settled]
    return delivery_states.for_post(post_id)


def sync_many(settled: Sequence[tuple[PostDoc, DeliveryDoc]], errors: Mapping[str, str]) -> int:
    """Settle many posts after a batch in one bulk write (plus one read for multi-platform posts).

    ``settled`` pairs each post (as read by the batch) with the delivery just finished on it;
    ``errors`` is ``lastError`` to show on posts still being retried. A status write that did not
    match (the post changed meanwhile) is redone one by one with ``sync``. Returns posts written.
    """
    by_post: dict[str, tuple[PostDoc, DeliveryDoc]] = {}
    for post, delivery in settled:
        by_post[str(post["_id"])] = (post, delivery)
    multi = [
        pid
        for pid, (post, d) in by_post.items()
        if list(dict.fromkeys(post.get("platforms") or [])) != [d["platform"]]
    ]
    found = delivery_states.for_posts(multi) if multi else {}
    writes = []
    for pid, (post, d) in by_post.items():
        write = plan(post, found[pid] if pid in found else [d])
        if write is not None:
            writes.append(write)
    now = utcnow()
    # Hinted: with ``status`` in the filter SecantusDB would otherwise walk the status index.
    # A status change carries its compare-and-swap inside an update pipeline, the filter on _id
    # alone (``guarded_update``: SecantusDB plans a multi-field filter by walking its catalogue).
    ops: list[UpdateOne] = []
    for w in writes:
        flt, update = (guarded(w.filter, w.update) if w.new_status else None) or (w.filter, w.update)
        ops.append(UpdateOne(flt, update, hint=BY_ID))
    ops += [
        UpdateOne(
            {PostField.ID: ObjectId(pid)},
            {"$set": {PostField.LAST_ERROR: message, PostField.UPDATED_AT: now}},
            hint=BY_ID,
        )
        for pid, message in errors.items()
    ]
    if not ops:
        return 0
    result = posts().bulk_write(ops, ordered=False)
    if result.modified_count != len(ops):
        # A status write whose post changed meanwhile (often another batch settling the same
        # multi-platform post first). The bulk result does not say which: one read of the batch's
        # status writes, and only posts still scheduled are derived again.
        status_writes = [ObjectId(w.post_id) for w in writes if w.new_status is not None]
        for post in find_in(posts(), PostField.ID, status_writes, None, SYNC_VIEW):
            sync(str(post[PostField.ID]), post)
    return len(ops)


def _note(new_status: str, deliveries: Sequence[DeliveryDoc]) -> str:
    if new_status == PostStatus.PUBLISHED.value:
        parts = []
        for d in sorted(deliveries, key=lambda d: d["platform"]):
            attempts = d.get("attempt", 1)
            parts.append(d["platform"] + (f" (after {attempts} attempts)" if attempts > 1 else ""))
        return "published on " + ", ".join(parts)
    failed = sorted(d["platform"] for d in deliveries if d["state"] == DeliveryState.FAILED.value)
    return "failed on " + ", ".join(failed)


def move(
    post: PostDoc,
    scope: Mapping[str, Any],
    to_status: str,
    note: str,
    by_user_id: str | None,
    *,
    expanded: bool | None,
    extra_set: Mapping[str, Any] | None = None,
    extra_unset: Sequence[str] = (),
) -> bool:
    """An operator's or a queue's status change: conditional on the status read (and ``scope``),
    with one history entry. ``expanded``: set the marker (all deliveries exist), unset it (the
    dispatcher must create missing ones), or leave it (None). True when the post moved."""
    now = utcnow()
    to_set: dict[str, Any] = {PostField.STATUS: to_status, PostField.UPDATED_AT: now, **(extra_set or {})}
    to_unset = dict.fromkeys(extra_unset, "")
    update: dict[str, Any] = {"$set": to_set}
    if post.get(PostField.STATUS) != to_status:
        update["$push"] = {
            PostField.STATUS_HISTORY: history_entry(post.get(PostField.STATUS), to_status, note, by_user_id)
        }
    if expanded is True:
        to_set[EXPANDED_MARKER] = now
    elif expanded is False:
        to_unset[EXPANDED_MARKER] = ""
    if to_unset:
        update["$unset"] = to_unset
    result = posts().update_one(
        {PostField.ID: post[PostField.ID], PostField.STATUS: post.get(PostField.STATUS), **scope}, update
    )
    return result.modified_count == 1


def fail_post(post_id: str, expected_status: str, reason: str) -> bool:
    """Fail a post that cannot be expanded at all (e.g. its scheduleTime is not a date)."""
    result = posts().update_one(
        {PostField.ID: ObjectId(post_id), PostField.STATUS: expected_status},
        {
            "$set": {
                PostField.STATUS: PostStatus.FAILED.value,
                PostField.LAST_ERROR: reason,
                PostField.UPDATED_AT: utcnow(),
            },
            "$push": {
                PostField.STATUS_HISTORY: history_entry(expected_status, PostStatus.FAILED.value, reason)
            },
            "$unset": {EXPANDED_MARKER: ""},
        },
    )
    return result.modified_count == 1
