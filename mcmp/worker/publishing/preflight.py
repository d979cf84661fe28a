"""The checks an attempt passes before any platform call, as named steps run in order.

Each step looks at one concern and returns ``None`` ("go on") or a :data:`Decision` that ends
the attempt without touching the platform. Steps may fill in what later steps need (the
account, the credentials, the content), so the order matters and is written down once, in
:data:`STEPS`. Every step runs on every attempt: a post edited, re-scheduled by the frontend
or retried by an operator is checked again before it can reach a platform.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mcmp.config import Settings
from mcmp.config.settings import PlatformSettings
from mcmp.connectors.errors import PermanentError
from mcmp.connectors.registry import UnknownPlatformError, get_connector
from mcmp.connectors.types import Credentials, PostContent
from mcmp.models import AccountStatus, ErrorClass, IntegrationAccount, PostStatus
from mcmp.models.base import as_utc
from mcmp.models.post import PostDoc
from mcmp.models.schedule import schedule_instant
from mcmp.worker import rate_limit
from mcmp.worker.accounts import store as accounts
from mcmp.worker.accounts import tokens
from mcmp.worker.accounts.cache import AccountCache
from mcmp.worker.publishing import auth, campaign_bounds
from mcmp.worker.publishing.content import MediaChecksUnfinished
from mcmp.worker.publishing.delivery_states import Taken
from mcmp.worker.publishing.post_validation import describe_schedule_time
from mcmp.worker.publishing.validation import validate_for_platform

log = logging.getLogger(__name__)

# A delivery whose token cannot be refreshed right now (and is no longer valid) tries again after this.
TOKEN_RETRY_SECONDS = 10.0


# --- decisions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fail:
    reason: str
    error_class: ErrorClass = ErrorClass.PERMANENT


@dataclass(frozen=True)
class Defer:
    """Try again at ``until`` without spending an attempt."""

    until: datetime
    reason: str
    error_class: ErrorClass = ErrorClass.RATE_LIMITED


@dataclass(frozen=True)
class Release:
    """Back to pending until ``until`` (post moved later, campaign not started yet)."""

    until: datetime
    note: str | None = None  # shown on the post (``lastError``) while held


@dataclass(frozen=True)
class Cancel:
    reason: str


@dataclass(frozen=True)
class Move:
    """Slow work (media checks, a slow account): continue on the long lane, before any platform call."""

    reason: str


@dataclass(frozen=True)
class WaitForAuth:
    """Wait for a reconnect. ``rejected``: the platform refused the token just now (the account
    is expired by :func:`auth.token_rejected`); else the account was not connected already."""

    account: IntegrationAccount
    reason: str
    rejected: bool = True


Decision = Fail | Defer | Release | Cancel | WaitForAuth | Move


@dataclass
class Preflight:
    """One attempt as the steps see it; later steps read what earlier ones found."""

    taken: Taken
    settings: Settings
    now: datetime
    post: PostDoc | None
    accounts: AccountCache
    account: IntegrationAccount | None = None  # a batch may hand in the account it read
    credentials: Credentials | None = None
    content: PostContent | None = None
    notes: list[str] = field(default_factory=list)
    # ``time.monotonic()`` instants: the whole preflight's deadline (MCMP_PREFLIGHT_DEADLINE_SECONDS
    # from the first step that needs it), and on the fast lane the moment slow work moves on.
    deadline: float | None = None
    move_at: float | None = None
    admissions: BatchAdmissions | None = None  # a batch's members admitted per account at once

    def until(self) -> float:
        """The preflight's deadline, set on first use so that any step runs bounded on its own."""
        if self.deadline is None:
            self.deadline = time.monotonic() + self.settings.preflight_deadline_seconds
        return self.deadline

    def overdue_on_lane(self) -> bool:
        """Past the fast lane's share: what is left belongs on the long lane."""
        return self.move_at is not None and time.monotonic() >= self.move_at

    @property
    def client_id(self) -> str:
        return str((self.post or {}).get("clientId") or "")

    def forget_account(self) -> None:
        """The account gave trouble: the next attempt reads it from the database."""
        self.accounts.forget(self.client_id, self.taken.platform)


Step = Callable[[Preflight], Decision | None]


def _schedule_time(post: PostDoc) -> datetime | None:
    return schedule_instant(post)


def post_still_scheduled(p: Preflight) -> Decision | None:
    """The post still exists, is still ``scheduled``, and was not moved past the look-ahead."""
    if p.post is None:
        return Cancel("post was deleted")
    status = p.post.get("status")
    if status != PostStatus.SCHEDULED.value:
        return Cancel(f"post is now {status!r}; not publishing")
    if p.post.get("scheduleTime") is not None and _schedule_time(p.post) is None:
        return Fail(describe_schedule_time(p.post.get("scheduleTime")))  # edited to garbage since
    when = _schedule_time(p.post)
    if when is not None and when > p.now + timedelta(seconds=p.settings.lookahead_seconds + 1):
        log.info("post was moved to %s; releasing the delivery until then", when.isoformat())
        return Release(when)
    return None


def not_too_late(p: Preflight) -> Decision | None:
    """A delivery first picked up more than ``MCMP_MAX_LATENESS`` after its time is not published.

    Only the first pickup is judged: a delivery that started in time (then was retried through
    an outage, deferred by a rate limit or recovered after a crash) still goes out. Lateness
    counts from the latest of the post's ``scheduleTime``, the delivery's scheduled time and an
    admin retry.
    """
    limit = p.settings.max_lateness
    if limit <= 0 or not p.taken.first_pickup or p.taken.uncertain or p.post is None:
        return None
    times = [t for t in (p.taken.late_from, p.taken.scheduled_for, _schedule_time(p.post)) if t is not None]
    if not times:
        return None
    since = max(as_utc(t) or t for t in times)
    late = (p.now - since).total_seconds()
    if late <= limit:
        return None
    post_id = p.taken.post_id
    return Fail(
        f"not published: {_duration(late)} late (due {since:%Y-%m-%d %H:%M} UTC; the limit "
        f"MCMP_MAX_LATENESS is {_duration(limit)}). To publish anyway, reschedule the post or retry "
        f"it (POST /v1/posts/{post_id}/retry), which counts lateness from the retry"
    )


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    return " ".join(p for p in parts if p) or f"{seconds} s"


def inside_campaign(p: Preflight) -> Decision | None:
    """Campaign bounds; an uncertain delivery began inside them and may be live: reconcile it."""
    if p.taken.uncertain or p.post is None:
        return None
    outside = campaign_bounds.check(p.post, p.now)
    if outside is None:
        return None
    if outside.hold_until is None:
        return Fail(outside.reason)
    return Release(outside.hold_until, note=outside.reason)


def account(p: Preflight) -> Decision | None:
    """A known platform and a connected account of the post's client for it."""
    platform = p.taken.platform
    try:
        get_connector(platform)
    except UnknownPlatformError as exc:
        return Fail(str(exc))
    found = p.account or p.accounts.get(p.client_id, platform) or accounts.find_account(p.client_id, platform)
    if found is None:
        return Fail(f"no IntegrationAccount for {platform} is connected to this client")
    p.account = found
    if found.status != AccountStatus.CONNECTED.value:
        reason = (found.metadata or {}).get("authError") or f"account status is {found.status}"
        return WaitForAuth(found, str(reason), rejected=False)
    return None


def token(p: Preflight) -> Decision | None:
    """A valid token: refreshed just in time, single-flight, well inside the in-flight lease."""
    assert p.account is not None
    budget = max(1.0, min(p.settings.inflight_lease_seconds / 3, p.until() - time.monotonic()))
    fresh = tokens.ensure_fresh(
        p.account, p.settings, budget_seconds=budget, on_revoked=auth.rejecter(p.forget_account)
    )
    if fresh.credentials is None:
        if fresh.outcome is tokens.Outcome.REVOKED:
            return WaitForAuth(fresh.account or p.account, fresh.reason)
        return Defer(p.now + timedelta(seconds=TOKEN_RETRY_SECONDS), fresh.reason, ErrorClass.AUTH)
    p.account, p.credentials = fresh.account or p.account, fresh.credentials
    if fresh.outcome is tokens.Outcome.NOT_DUE:
        p.accounts.put(p.client_id, p.taken.platform, p.account)
    else:
        p.forget_account()
    return None


def content(p: Preflight) -> Decision | None:
    """The post as it is now passes every check (post fields, media, the connector's rules)."""
    assert p.post is not None
    try:
        p.content = validate_for_platform(
            p.post, p.taken.platform, p.credentials, deadline=p.until(), move_at=p.move_at
        )
    except MediaChecksUnfinished as exc:
        return Move(f"slow media: {exc} after {p.settings.long_delivery_seconds:g} s")
    except PermanentError as exc:
        p.forget_account()  # the account's metadata may be the cause: a fix is seen at once
        return Fail(exc.message)
    return None


def rate_limit_block(p: Preflight) -> Decision | None:
    """The shared (Redis) budget of the account or app: not blocked, and this delivery's paced slot.

    A slot a moment away is waited for here; a later one (a block, or many deliveries paced
    ahead of this one) defers the delivery to it without spending an attempt.
    """
    assert p.account is not None
    try:
        account_id, delivery_id = str(p.account.pk), str(p.taken.id)
        if p.admissions is not None:
            slot = p.admissions.admit(p.taken.platform, account_id, delivery_id)
        else:
            slot = admit(p.settings, p.taken.platform, account_id, delivery_id)
    except Exception as exc:  # Redis hiccup: the platform's own 429 still protects us
        log.warning("rate-limit check unavailable (%s); proceeding", type(exc).__name__)
        return None
    if slot.at is None:
        return None
    if not slot.deferred:
        time.sleep(slot.wait_seconds())
        return None
    if slot.blocked:
        return Defer(
            slot.at, "platform rate limit reached (shared budget); waiting for its turn after the block"
        )
    return Defer(slot.at, "platform budget nearly spent; paced to the allowed rate")


_DEFAULT_PACE = PlatformSettings()


def admit(settings: Settings, platform: str, account_id: str, delivery_id: str) -> rate_limit.Admission:
    """This delivery's slot on the account's and app's timeline, at the platform's configured pace."""
    return admit_many(settings, platform, account_id, [delivery_id])[delivery_id]


def admit_many(
    settings: Settings, platform: str, account_id: str, delivery_ids: list[str]
) -> dict[str, rate_limit.Admission]:
    """Slots of several deliveries of one account, in the order given, in one Redis round trip."""
    pace = settings.platform(platform) or _DEFAULT_PACE
    return rate_limit.admit_many(
        platform,
        account_id,
        delivery_ids,
        per_second=pace.pace_calls_per_second,
        app_per_second=pace.pace_app_calls_per_second,
    )


def admit_batch(
    settings: Settings, members: Mapping[tuple[str, str], Sequence[str]]
) -> dict[str, rate_limit.Admission]:
    """Slots of a batch's deliveries, per (platform, account id) in the order given, in one round trip."""
    asked = []
    for (platform, account_id), ids in members.items():
        pace = settings.platform(platform) or _DEFAULT_PACE
        asked.append(
            rate_limit.AccountRequest(
                platform, account_id, ids, pace.pace_calls_per_second, pace.pace_app_calls_per_second
            )
        )
    return rate_limit.admit_accounts(asked)


class BatchAdmissions:
    """Rate-limit admission of a batch in one round trip: the first member to ask admits all the
    batch's members (each account's in due order, on its own timelines), the others take their
    slot from here.

    A "go now" older than ``FRESH_SECONDS`` is not used (a block may have come since): that member
    asks again on its own. A slot is kept however old, as the reservation it is.
    """

    FRESH_SECONDS = 1.0

    def __init__(self, settings: Settings, members: Mapping[tuple[str, str], list[str]]) -> None:
        self.settings = settings
        self.members = {key: list(ids) for key, ids in members.items()}  # (platform, account id) → ids
        self._found: dict[str, tuple[float, rate_limit.Admission]] = {}
        self._asked = False
        self._lock = threading.Lock()

    def admit(self, platform: str, account_id: str, delivery_id: str) -> rate_limit.Admission:
        key = (platform, account_id)
        with self._lock:
            if not self._asked and delivery_id in self.members.get(key, ()):
                self._asked = True
                now = time.monotonic()
                found = admit_batch(self.settings, self.members)
                self._found.update({d: (now, a) for d, a in found.items()})
            taken = self._found.pop(delivery_id, None)
        if taken is not None:
            at, slot = taken
            if slot.at is not None or time.monotonic() - at <= self.FRESH_SECONDS:
                return slot
        return admit(self.settings, platform, account_id, delivery_id)


STEPS: tuple[Step, ...] = (
    post_still_scheduled,
    not_too_late,
    inside_campaign,
    account,
    token,
    content,
    rate_limit_block,
)


def run(p: Preflight) -> Decision | None:
    """The first decision a step takes, or None when the attempt may call the platform.

    All steps share one deadline (:meth:`Preflight.until`). On the fast lane, a preflight past its
    share (``move_at``) moves to the long lane between steps, never after the last one decided.
    """
    p.until()
    for step in STEPS:
        decision = step(p)
        if decision is not None:
            return decision
        if step is not STEPS[-1] and p.overdue_on_lane():
            return Move(f"preflight took longer than {p.settings.long_delivery_seconds:g} s")
    return None


__all__ = [
    "STEPS",
    "Cancel",
    "Decision",
    "Defer",
    "Fail",
    "Move",
    "PostDoc",
    "Preflight",
    "Release",
    "WaitForAuth",
    "run",
]
