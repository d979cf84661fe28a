"""Readiness as the admin API shows it: a post's verdict, a draft checked, accounts at risk, counts.

Plain values only (the API builds its own response models from them). Nothing here writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, TypedDict

from bson import ObjectId

from mcmp.config import get_settings
from mcmp.models import PostStatus
from mcmp.models.base import as_utc, utcnow
from mcmp.models.post import ProblemDoc, ReadinessDoc
from mcmp.worker.publishing.post_status import posts
from mcmp.worker.readiness import checks, risk


class PostReadiness(ReadinessDoc):
    """A post's verdict as the API answers it: ``source`` is ``stored`` or ``computed`` (now)."""

    postId: str
    status: str | None
    watched: bool
    source: str


class AccountAtRisk(TypedDict):
    """An account whose token will fail one of its scheduled posts, and the first such post."""

    accountId: str
    reason: str
    message: str
    firstPostId: str
    firstPostAt: datetime
    posts: int


def _problem(found: Mapping[str, object]) -> ProblemDoc:
    problem: ProblemDoc = {}
    if "field" in found:
        problem["field"] = str(found["field"])
    if "code" in found:
        problem["code"] = str(found["code"])
    if "message" in found:
        problem["message"] = str(found["message"])
    if "reason" in found:
        problem["reason"] = str(found["reason"])
    return problem


def _plain(document: Mapping[str, Any]) -> ReadinessDoc:
    """A stored verdict as read (the frontend may have written anything) made well-typed."""
    platforms = document.get("platforms") or {}
    return {
        "checkedAt": as_utc(document.get("checkedAt"))
        if isinstance(document.get("checkedAt"), datetime)
        else None,
        "ok": bool(document.get("ok")),
        "scheduleTime": as_utc(document["scheduleTime"])
        if isinstance(document.get("scheduleTime"), datetime)
        else None,
        "platforms": {
            str(name): {
                "ok": bool((entry or {}).get("ok")),
                "problems": [
                    _problem(p) for p in (entry or {}).get("problems") or [] if isinstance(p, Mapping)
                ],
            }
            for name, entry in platforms.items()
            if isinstance(entry, Mapping) or entry is None
        },
    }


def post_readiness(post_id: str, scope: Mapping[str, Any]) -> PostReadiness | None:
    """The stored verdict when it judged the post as it is now, else one computed now (not stored).

    ``current`` says whether the stored verdict is that of the post's latest version; None when
    the post is not there for this caller.
    """
    post = posts().find_one({"_id": ObjectId(post_id), **scope})
    if post is None:
        return None
    stored = post.get(checks.FIELD)
    watched = checks.is_candidate(post, utcnow())
    if isinstance(stored, Mapping) and as_utc(stored.get("postUpdatedAt")) == as_utc(post.get("updatedAt")):
        return {
            "postId": post_id,
            "status": post.get("status"),
            "watched": watched,
            "source": "stored",
            **_plain(stored),
        }
    verdict = checks.check(post, get_settings())
    computed = _plain(verdict.document(post.get("updatedAt")))
    computed["checkedAt"] = None  # never stored: only a stored verdict has a time
    return {
        "postId": post_id,
        "status": post.get("status"),
        "watched": watched,
        "source": "computed",
        **computed,
    }


def validate_draft(draft: Mapping[str, Any]) -> ReadinessDoc:
    """A draft's payload checked as if it were scheduled as it stands; nothing is stored."""
    post = {**draft, "_id": ObjectId(), "status": PostStatus.SCHEDULED.value}
    if post.get("scheduleTime") is None and post.get(checks.QUEUE_FLAG) is not True:
        post["scheduleTime"] = utcnow() + timedelta(minutes=1)  # as if due now
    verdict = checks.check(post, get_settings())
    return _plain(verdict.document(None))


def at_risk(scope: Mapping[str, Any], limit: int = 200) -> list[AccountAtRisk]:
    """Accounts in ``scope`` whose token will fail one of their scheduled posts (first one, when)."""
    found: list[AccountAtRisk] = []
    for item in risk.at_risk(scope, limit=limit):
        found.append(
            {
                "accountId": item.account.id,
                "reason": item.risk.reason,
                "message": item.risk.message,
                "firstPostId": item.first_post_id,
                "firstPostAt": item.first_post_at,
                "posts": item.posts,
            }
        )
    return found


def posts_at_risk() -> Counter[tuple[str, str]]:
    """Scheduled posts that would fail because of their account, by (platform, reason)."""
    counts: Counter[tuple[str, str]] = Counter()
    for item in risk.at_risk({}):
        counts[(item.account.platform, item.risk.reason)] += item.posts
    return counts


__all__ = ["at_risk", "post_readiness", "posts_at_risk", "validate_draft"]
