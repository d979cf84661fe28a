"""One post's readiness: the publish path's preflight steps, run at the post's due time, per platform.

The steps are the publish path's own (:mod:`mcmp.worker.publishing.preflight`): the campaign
bounds and the account are judged by calling ``inside_campaign`` and ``account`` with "now" set
to the post's due time; the content by ``validate_for_platform`` (post fields, media probed
through the guarded fetcher and cached per URL, each connector's ``validate``) with credentials
that carry no secret, as the admin API's retry checks do. The token step of an attempt
refreshes tokens, so here the token is judged by :func:`risk.risk_at` instead, which never
calls a platform. A queued post (``queue: true``, no time) is checked at its client's next
posting-window minute.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast

from bson import ObjectId

from mcmp.config import Settings
from mcmp.connectors.errors import PermanentError, ValidationError
from mcmp.models import PostStatus
from mcmp.models.base import as_utc, utcnow
from mcmp.models.client import clients
from mcmp.models.post import PostDoc, ProblemDoc, ReadinessDoc
from mcmp.models.schedule import ScheduleTimeError, parse_schedule_time
from mcmp.worker.accounts import store as accounts
from mcmp.worker.accounts.cache import AccountCache
from mcmp.worker.publishing import preflight
from mcmp.worker.publishing.delivery_states import Taken
from mcmp.worker.publishing.post_validation import post_problems
from mcmp.worker.publishing.preflight import Preflight
from mcmp.worker.publishing.validation import PostInvalid, validate_for_platform
from mcmp.worker.readiness import codes, risk
from mcmp.worker.scheduling import posting_windows

log = logging.getLogger(__name__)

FIELD: Final = "mcmpReadiness"
QUEUE_FLAG = posting_windows.QUEUE_FLAG


def judged_version(post: PostDoc) -> datetime | None:
    """The post version (its ``updatedAt``) the stored verdict judged, or None without a verdict."""
    verdict = post.get(FIELD)
    return as_utc(verdict.get("postUpdatedAt")) if verdict else None


@dataclass
class Verdict:
    """What the frontend reads in ``mcmpReadiness``; ``risks`` feed the at-risk log line."""

    checked_at: datetime
    due: datetime | None
    platforms: dict[str, list[ProblemDoc]] = field(default_factory=dict)
    risks: list[tuple[risk.AccountFacts, risk.Risk]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(not problems for problems in self.platforms.values())

    def document(self, basis: datetime | None) -> ReadinessDoc:
        """The stored field; ``postUpdatedAt`` is the post version judged (a newer one is re-checked)."""
        return {
            "checkedAt": self.checked_at,
            "ok": self.ok,
            "scheduleTime": self.due,
            "postUpdatedAt": basis,
            "platforms": {
                platform: {"ok": not problems, "problems": problems}
                for platform, problems in self.platforms.items()
            },
        }


def problem(field_name: str, code: str, message: str, reason: str | None = None) -> ProblemDoc:
    found: ProblemDoc = {"field": field_name, "code": code, "message": message}
    if reason:
        found["reason"] = reason
    return found


def is_candidate(post: Mapping[str, Any], now: datetime) -> bool:
    """Approved or scheduled for later, or approved and queued: what readiness watches."""
    status = post.get("status")
    if status not in risk.FUTURE_STATUSES:
        return False
    value = post.get("scheduleTime")
    if value is None:
        return status == PostStatus.APPROVED.value and post.get(QUEUE_FLAG) is True
    try:
        return parse_schedule_time(value) > now
    except ScheduleTimeError:
        return True  # a time that names no instant is a problem worth showing


def _queued_slot(post: Mapping[str, Any], now: datetime) -> tuple[datetime | None, ProblemDoc | None]:
    """The next posting-window minute of a queued post's client (the slot it would get), or why none."""
    client_id = str(post.get("clientId") or "")
    client = (
        clients().find_one({"_id": ObjectId(client_id)}, {"timezone": 1, "defaultPostingWindows": 1})
        if ObjectId.is_valid(client_id)
        else None
    )
    try:
        if client is None:
            raise posting_windows.PostingWindowError(f"clientId: client {client_id!r} not found")
        zone = posting_windows.load_zone(client.get("timezone", "UTC"))
        windows = posting_windows.parse_windows(client.get("defaultPostingWindows"))
        return posting_windows.next_slot(windows, zone, now).at, None
    except posting_windows.PostingWindowError as exc:
        where, _, why = str(exc).partition(": ")
        return None, problem(where or "client.defaultPostingWindows", codes.POSTING_WINDOW, str(exc))


def _synthetic(post_id: str, platform: str, when: datetime) -> Taken:
    """The delivery the publish path would take at ``when`` (never stored)."""
    return Taken(
        id=ObjectId(),
        post_id=post_id,
        platform=platform,
        attempt=0,
        attempt_id="readiness",
        scheduled_for=when,
        late_from=when,
        first_pickup=True,
        uncertain=False,
    )


def _validation(exc: PermanentError) -> list[ProblemDoc]:
    if isinstance(exc, PostInvalid):
        return [_from_text(p) for p in exc.problems]
    if isinstance(exc, ValidationError):
        return [problem(exc.field, codes.for_field(exc.field, exc.reason), exc.message)]
    return [problem("post", "content_invalid", exc.message)]


def _from_text(text: str) -> ProblemDoc:
    """A ``"field: reason"`` problem of the post's own checks."""
    field_name, _, reason = text.partition(": ")
    return problem(field_name, codes.for_field(field_name, reason), text)


def check(
    post: Mapping[str, Any],
    settings: Settings,
    account_cache: AccountCache | None = None,
    now: datetime | None = None,
) -> Verdict:
    """The verdict for ``post`` as it is now; no write, no platform call, no token refresh."""
    now = now or utcnow()
    cache = account_cache or AccountCache(0)
    verdict = Verdict(checked_at=now, due=None)
    platforms = [p for p in dict.fromkeys(post.get("platforms") or []) if isinstance(p, str) and p]
    shared: list[ProblemDoc] = []  # problems every platform has (the post's own, its time, its campaign)
    value = post.get("scheduleTime")
    due: datetime | None = None
    if value is None and post.get(QUEUE_FLAG) is True:
        due, trouble = _queued_slot(post, now)
        if trouble:
            shared.append(trouble)
    else:
        try:
            due = parse_schedule_time(value)
        except ScheduleTimeError as exc:
            shared.append(problem("scheduleTime", codes.for_field("scheduleTime", str(exc)), str(exc)))
        else:
            if due <= now and post.get("status") == PostStatus.SCHEDULED.value:
                shared.append(
                    problem(
                        "scheduleTime",
                        codes.SCHEDULE_PAST,
                        f"scheduleTime {due:%Y-%m-%d %H:%M} UTC has passed",
                    )
                )
    verdict.due = due
    shared += [_from_text(p) for p in post_problems(dict(post))]
    when = due or now
    post_doc = cast(PostDoc, dict(post))
    post_id = str(post.get("_id") or ObjectId())
    if platforms and due is not None:
        probe = Preflight(_synthetic(post_id, platforms[0], when), settings, when, post_doc, cache)
        decision = preflight.inside_campaign(probe)
        if isinstance(decision, preflight.Fail):
            shared.append(problem("campaignId", codes.CAMPAIGN_ENDED, decision.reason))
        elif isinstance(decision, preflight.Release):
            shared.append(
                problem("campaignId", codes.CAMPAIGN_NOT_STARTED, decision.note or "campaign not started")
            )
    if not platforms:
        verdict.platforms["post"] = shared or [
            problem("platforms", "platform_unknown", "platforms: none selected")
        ]
        return verdict
    for platform in platforms:
        verdict.platforms[platform] = shared + _platform(
            verdict, post_doc, platform, post_id, when, settings, cache, now
        )
    return verdict


def _platform(
    verdict: Verdict,
    post: PostDoc,
    platform: str,
    post_id: str,
    when: datetime,
    settings: Settings,
    cache: AccountCache,
    now: datetime,
) -> list[ProblemDoc]:
    found: list[ProblemDoc] = []
    p = Preflight(_synthetic(post_id, platform, when), settings, when, post, cache)
    decision = preflight.account(p)
    if isinstance(decision, preflight.Fail):
        if "IntegrationAccount" not in decision.reason:
            return [problem("platforms", "platform_unknown", decision.reason)]
        # no account yet: still say what the content would meet (the connector's own check waits)
        found.append(problem("account", codes.ACCOUNT_MISSING, f"{platform}: {decision.reason}"))
    account = p.account
    if account is not None:
        cache.put(p.client_id, platform, account)
        facts = risk.AccountFacts.of(account)
        trouble = risk.risk_at(facts, when, now)
        if trouble is not None:
            code = (
                codes.ACCOUNT_NOT_CONNECTED
                if trouble.reason in (risk.GRANT_REVOKED, risk.NOT_CONNECTED)
                else (codes.TOKEN_MISSING if trouble.reason == risk.NO_TOKEN else codes.TOKEN_EXPIRES)
            )
            found.append(problem(trouble.field, code, trouble.message, trouble.reason))
            verdict.risks.append((facts, trouble))
    credentials = accounts.credentials_without_secrets(account) if account is not None else None
    try:
        validate_for_platform(post, platform, credentials)
    except PostInvalid:
        pass  # the post's own problems are listed once for every platform already
    except PermanentError as exc:
        found += _validation(exc)
    except Exception as exc:  # a connector bug must not stop the pass: say so, check again later
        log.warning("readiness check of post %s on %s failed: %s", post_id, platform, type(exc).__name__)
        found.append(
            problem("post", codes.CHECK_FAILED, f"{platform}: could not be checked ({type(exc).__name__})")
        )
    return found


def due_of(post: Mapping[str, Any]) -> datetime | None:
    value = post.get("scheduleTime")
    try:
        return as_utc(parse_schedule_time(value)) if value is not None else None
    except ScheduleTimeError:
        return None


__all__ = ["FIELD", "Verdict", "check", "due_of", "is_candidate", "problem"]
