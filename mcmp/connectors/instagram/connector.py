"""Instagram professional accounts through the Graph API (Facebook Login), via ``facebook-sdk``.

Publishing is the documented container flow (IG user id = ``credentials.external_account_id``):

1. ``GET /{ig-user}/content_publishing_limit?fields=quota_usage,config`` — when ``quota_usage``
   has reached ``config.quota_total`` we raise ``RateLimitedError(scope="ig-publish-quota")``
   *before* creating anything (the worker defers without consuming an attempt, and re-checks
   after ``quota_recheck_seconds`` since the window is rolling). The total is
   read at runtime: Meta's reference pages say 50 per 24 h today (older text said 25, tools say 100).
2. Containers: image → ``image_url`` + ``caption`` + ``alt_text``; video → ``media_type=REELS``
   + ``video_url``; carousel (2–10 items) → children with ``is_carousel_item=true`` (videos as
   ``media_type=VIDEO``), then a parent ``media_type=CAROUSEL&children=…`` with the caption.
   A container is invisible until published, so failures here are Retryable, never Ambiguous.
3. Poll ``GET /{container}?fields=status_code,status`` every ``container_poll_seconds`` until
   FINISHED (ERROR/EXPIRED → :func:`container_error`; still IN_PROGRESS after
   ``container_poll_timeout_seconds`` → Retryable).
4. ``POST /{ig-user}/media_publish?creation_id=…`` → ``{"id": media_id}``: the one ambiguous write.

The caption carries the invisible delivery marker of ``mcmp.connectors.markers``; ``find_published``
lists ``/{ig-user}/media?fields=id,caption,timestamp,permalink`` and matches it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from mcmp.config import Settings
from mcmp.connectors.base import ConnectorBase
from mcmp.connectors.clients import HttpClients
from mcmp.connectors.errors import (
    AmbiguousError,
    AuthError,
    ConnectorError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    ValidationError,
)
from mcmp.connectors.graph import (
    BATCH_LIMIT,
    DEFAULT_IG_QUOTA_BACKOFF,
    GraphClient,
    GraphNotFound,
    InsightsReader,
    batch_get,
    exchange_token,
    parse_graph_time,
    scan_edge,
)
from mcmp.connectors.instagram.classify import PLATFORM, classify, container_error
from mcmp.connectors.markers import MARKER_LENGTH, SENTINEL, marker_for, strip_markers
from mcmp.connectors.media import MB, MediaLimits, check_media
from mcmp.connectors.types import (
    Credentials,
    MediaItem,
    MetricsRef,
    MetricsSnapshot,
    PostContent,
    PublishRequest,
    PublishResult,
    TokenGrant,
)
from mcmp.connectors.usage import UsageReport, report

MAX_CAPTION_CHARS = 2200
MAX_HASHTAGS = 30
MAX_MENTIONS = 20
MIN_CAROUSEL, MAX_CAROUSEL = 2, 10
RECONCILE_PAGE_SIZE = 50
RECONCILE_MAX_PAGES = 20  # 1,000 media: 10× the largest 24 h API quota; the window usually ends sooner
WINDOW_SKEW = timedelta(minutes=10)
_HASHTAG = re.compile(r"(?<![\w&])#\w+")
_MENTION = re.compile(r"(?<![\w])@[\w.]+")
_VIDEO_EXT = (".mp4", ".mov", ".m4v")

# Seed metric ← IG media insights metric (``impressions``/``plays`` were removed for all versions
# on 2025-04-21; ``views`` replaces them). Clicks: not reported at media level (absent).
#
# | seed | IG metric |   | seed | IG metric |
# |---|---|---|---|---|
# | impressions | views |   | comments | comments |
# | reach | reach |       | shares | shares |
# | likes | likes |       | saves | saved |
INSIGHT_METRICS: dict[str, str] = {
    "impressions": "views",
    "reach": "reach",
    "likes": "likes",
    "comments": "comments",
    "shares": "shares",
    "saves": "saved",
}


def caption_text(content: PostContent) -> str:
    text = content.body.strip() or content.title.strip()
    link = content.link or content.options.get("link")
    if link and str(link) not in text:  # IG has no link attachment: the URL goes in the caption
        text = f"{text}\n\n{link}" if text else str(link)
    return text


def media_kind(item: MediaItem) -> str | None:
    if item.kind:
        return item.kind
    return "video" if urlsplit(item.url).path.lower().endswith(_VIDEO_EXT) else "image"


class InstagramConnector(ConnectorBase):
    """Publishes to an Instagram professional account; thread-safe and reused across calls."""

    platform = PLATFORM
    media_limits = MediaLimits(
        kinds=frozenset({"image", "video"}),
        max_bytes={"image": 8 * MB, "video": 300 * MB},  # feed images 8 MiB; Reels 300 MB
        mime_types={"image": frozenset({"image/jpeg"}), "video": frozenset({"video/mp4", "video/quicktime"})},
        max_items=MAX_CAROUSEL,
    )

    def __init__(self, settings: Settings, *, clients: HttpClients | None = None) -> None:
        super().__init__(settings, clients=clients)
        self.cfg = settings.instagram
        self.client = GraphClient(
            PLATFORM,
            self.cfg.base_url,
            self.cfg.api_version,
            self.cfg.timeout_seconds,
            classifier=classify,
            clients=self.clients,
        )
        self.insights = InsightsReader(self.client, INSIGHT_METRICS)

    # --- validate --------------------------------------------------------------------------------
    def validate(self, content: PostContent, credentials: Credentials) -> None:
        if not (credentials.external_account_id or "").strip().isdigit():
            raise ValidationError("account.externalAccountId", "needs the numeric Instagram user id")
        if not content.media:
            raise ValidationError("media", "an Instagram post needs at least one image or video")
        if len(content.media) > MAX_CAROUSEL:
            raise ValidationError(
                "media",
                f"{len(content.media)} items; an Instagram carousel takes {MIN_CAROUSEL} to {MAX_CAROUSEL}",
            )
        for i, item in enumerate(content.media):
            kind = media_kind(item)
            if kind not in ("image", "video"):
                raise ValidationError("media", f"media[{i}] is a {kind}; Instagram takes images and videos")
        caption = caption_text(content)
        if len(caption) + MARKER_LENGTH > MAX_CAPTION_CHARS:
            raise ValidationError(
                "body",
                f"{len(caption)} characters; an Instagram caption takes at most "
                f"{MAX_CAPTION_CHARS - MARKER_LENGTH} (2,200 minus {MARKER_LENGTH} for the delivery marker)",
            )
        hashtags = len(_HASHTAG.findall(caption))
        if hashtags > MAX_HASHTAGS:
            raise ValidationError("body", f"{hashtags} hashtags; Instagram allows at most {MAX_HASHTAGS}")
        mentions = len(_MENTION.findall(caption))
        if mentions > MAX_MENTIONS:
            raise ValidationError("body", f"{mentions} @mentions; Instagram allows at most {MAX_MENTIONS}")
        check_media(content.media, self.media_limits, PLATFORM)

    # --- publish ---------------------------------------------------------------------------------
    def publish(self, request: PublishRequest) -> PublishResult:
        content, creds = request.content, request.credentials
        self.validate(content, creds)
        user = str(creds.external_account_id).strip()
        self.check_quota(creds)
        caption = caption_text(content) + marker_for(request.idempotency_key)
        if len(content.media) == 1:
            container = self._single_container(creds, user, content.media[0], caption)
        else:
            children = [self._child_container(creds, user, item) for item in content.media]
            container = self._create(
                creds, user, {"media_type": "CAROUSEL", "children": ",".join(children), "caption": caption}
            )
        self.wait_until_finished(creds, container)
        try:
            result = self.client.call(
                creds.access_token,
                f"{user}/media_publish",
                account_id=creds.account_id,
                post_args={"creation_id": container},
                write=True,
            )
        except RateLimitedError as exc:
            if exc.scope != "ig-publish-quota" or exc.retry_after != DEFAULT_IG_QUOTA_BACKOFF:
                raise
            # 9/2207042 without a usage hint: re-check after the configured interval.
            raise RateLimitedError(
                exc.message,
                retry_after=self.cfg.quota_recheck_seconds,
                scope=exc.scope,
                platform_code=exc.platform_code,
            ) from None
        media_id = result.get("id")
        if not media_id:
            raise AmbiguousError("Instagram answered media_publish without an id")
        return self._describe(creds, str(media_id))

    def check_quota(self, creds: Credentials) -> None:
        """Defer (RateLimited ``ig-publish-quota``) when the rolling 24 h publishing limit is used up."""
        user = str(creds.external_account_id).strip()
        since = int(time.time()) - 86_400 + 60
        result = self.client.call(
            creds.access_token,
            f"{user}/content_publishing_limit",
            account_id=creds.account_id,
            args={"fields": "quota_usage,config", "since": str(since)},
        )
        rows = result.get("data") or []
        row = rows[0] if rows and isinstance(rows[0], dict) else {}
        used = row.get("quota_usage")
        total = (row.get("config") or {}).get("quota_total")
        if not isinstance(used, int | float) or not isinstance(total, int | float) or total <= 0:
            return  # nothing known: media_publish's own 9/2207042 still protects us
        full = used >= total
        # The window is rolling and the oldest publish time is not exposed: re-check periodically.
        retry_after = self.cfg.quota_recheck_seconds if full else None
        report(UsageReport(PLATFORM, "ig-publish-quota", creds.account_id, 100.0 * used / total, retry_after))
        if full:
            raise RateLimitedError(
                f"Instagram publishing limit reached ({int(used)}/{int(total)} posts in 24 h)",
                retry_after=retry_after,
                scope="ig-publish-quota",
                platform_code="quota_usage",
            )

    def _create(self, creds: Credentials, user: str, args: dict[str, Any]) -> str:
        try:
            result = self.client.call(
                creds.access_token, f"{user}/media", account_id=creds.account_id, post_args=args
            )
        except AmbiguousError as exc:  # an unpublished container is invisible: safe to make another
            raise RetryableError(f"container creation interrupted ({exc.message})") from None
        if not result.get("id"):
            raise RetryableError("Instagram answered container creation without an id")
        return str(result["id"])

    def _single_container(self, creds: Credentials, user: str, item: MediaItem, caption: str) -> str:
        if media_kind(item) == "video":
            args = {"media_type": "REELS", "video_url": item.url, "caption": caption, "share_to_feed": "true"}
        else:
            args = {"image_url": item.url, "caption": caption}
            if item.alt_text:
                args["alt_text"] = item.alt_text
        return self._create(creds, user, args)

    def _child_container(self, creds: Credentials, user: str, item: MediaItem) -> str:
        if media_kind(item) == "video":
            child = self._create(
                creds, user, {"media_type": "VIDEO", "video_url": item.url, "is_carousel_item": "true"}
            )
            self.wait_until_finished(creds, child)  # the parent refuses unfinished video children
            return child
        args = {"image_url": item.url, "is_carousel_item": "true"}
        if item.alt_text:
            args["alt_text"] = item.alt_text
        return self._create(creds, user, args)

    def wait_until_finished(self, creds: Credentials, container: str) -> None:
        deadline = time.monotonic() + self.cfg.container_poll_timeout_seconds
        while True:
            result = self.client.call(
                creds.access_token,
                container,
                account_id=creds.account_id,
                args={"fields": "status_code,status"},
            )
            code = str(result.get("status_code") or "")
            if code == "FINISHED":
                return
            if code in ("ERROR", "EXPIRED"):
                raise container_error(code, str(result.get("status") or ""))
            if code == "PUBLISHED":  # someone published our fresh container: look before acting
                raise AmbiguousError(f"Instagram container {container} is already PUBLISHED")
            if time.monotonic() + self.cfg.container_poll_seconds > deadline:
                raise RetryableError(
                    f"Instagram container still {code or 'IN_PROGRESS'} after "
                    f"{self.cfg.container_poll_timeout_seconds:.0f} s; a new attempt will start over"
                )
            time.sleep(self.cfg.container_poll_seconds)

    def _describe(self, creds: Credentials, media_id: str) -> PublishResult:
        """Permalink and time of a published media; best effort (the post exists either way)."""
        try:
            info = self.client.call(
                creds.access_token,
                media_id,
                account_id=creds.account_id,
                args={"fields": "permalink,timestamp"},
            )
        except ConnectorError:
            return PublishResult(media_id, None, datetime.now(UTC))
        return PublishResult(
            media_id, info.get("permalink"), parse_graph_time(info.get("timestamp")) or datetime.now(UTC)
        )

    # --- reconcile -------------------------------------------------------------------------------
    def _window_start(self, request: PublishRequest) -> datetime:
        first = request.first_attempt_at or request.attempt_started_at
        return min(first, request.attempt_started_at) - WINDOW_SKEW

    def _recent_media(self, creds: Credentials, user: str, since: datetime) -> Iterator[dict[str, Any]]:
        """Media newest first back to ``since``; ``LookupIncompleteError`` if the pages run out first."""
        args: dict[str, Any] = {"fields": "id,caption,timestamp,permalink", "limit": str(RECONCILE_PAGE_SIZE)}

        def reached_start(data: list[dict[str, Any]]) -> bool:
            """Newest first: a page that reaches before the window ends the search."""
            times = [t for m in data if (t := parse_graph_time(m.get("timestamp"))) is not None]
            return bool(times) and min(times) < since

        return scan_edge(
            self.client,
            creds.access_token,
            f"{user}/media",
            args,
            account_id=creds.account_id,
            since=since,
            max_pages=RECONCILE_MAX_PAGES,
            reached_start=reached_start,
        )

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        creds = request.credentials
        user = (creds.external_account_id or "").strip()
        since = self._window_start(request)
        marker = marker_for(request.idempotency_key)
        expected = strip_markers(caption_text(request.content)).strip()
        fallback: list[dict[str, Any]] = []
        for media in self._recent_media(creds, user, since):
            when = parse_graph_time(media.get("timestamp"))
            if when is not None and when < since:
                continue
            caption = str(media.get("caption") or "")
            if marker in caption:
                return PublishResult(str(media["id"]), media.get("permalink"), when)
            if SENTINEL in caption:
                continue
            if expected and strip_markers(caption).strip() == expected:
                fallback.append(media)
        if len(fallback) == 1:
            media = fallback[0]
            return PublishResult(
                str(media["id"]), media.get("permalink"), parse_graph_time(media.get("timestamp"))
            )
        return None

    # --- tokens ----------------------------------------------------------------------------------
    def refresh_token(self, credentials: Credentials) -> TokenGrant:
        """Facebook Login path: the same ``fb_exchange_token`` exchange as Facebook."""
        return exchange_token(
            self.client, self.cfg.app_id, self.cfg.app_secret.get_secret_value(), credentials
        )

    # --- metrics ---------------------------------------------------------------------------------
    def metrics_cost(self, credentials: Credentials, count: int) -> int:
        """Platform calls for ``count`` media: one insights item each (Meta counts batch items)."""
        return count

    def fetch_metrics(self, credentials: Credentials, refs: Sequence[MetricsRef]) -> list[MetricsSnapshot]:
        """Graph batch requests of up to 50 insights reads; see ``INSIGHT_METRICS`` for the mapping."""
        out: list[MetricsSnapshot] = []
        for i in range(0, len(refs), BATCH_LIMIT):
            out += self._fetch_batch(credentials, list(refs[i : i + BATCH_LIMIT]))
        return out

    def _fetch_batch(self, creds: Credentials, refs: list[MetricsRef]) -> list[MetricsSnapshot]:
        urls = [self.insights.relative_url(ref.platform_post_id) for ref in refs]
        if not all(urls):  # every metric was rejected: nothing left to ask
            return [MetricsSnapshot(ref.platform_post_id, {}) for ref in refs]
        items = batch_get(
            self.client, creds.access_token, [u for u in urls if u], account_id=creds.account_id
        )
        out = []
        for ref, item in zip(refs, items, strict=True):
            if isinstance(item, GraphNotFound):
                out.append(MetricsSnapshot(ref.platform_post_id, {}, deleted=True))
            elif isinstance(item, AuthError) and _not_enough_viewers(item):
                out.append(MetricsSnapshot(ref.platform_post_id, {}))
            elif isinstance(item, PermanentError):  # e.g. a removed metric: read alone, which drops it
                out.append(self._read_one(creds, ref))
            elif isinstance(item, ConnectorError):
                raise item
            else:
                out.append(
                    MetricsSnapshot(ref.platform_post_id, self.insights.parse(list(item.get("data") or [])))
                )
        return out

    def _read_one(self, creds: Credentials, ref: MetricsRef) -> MetricsSnapshot:
        try:
            return MetricsSnapshot(ref.platform_post_id, self.insights.read(creds, ref.platform_post_id))
        except GraphNotFound:
            return MetricsSnapshot(ref.platform_post_id, {}, deleted=True)
        except AuthError as exc:
            if not _not_enough_viewers(exc):
                raise
            return MetricsSnapshot(ref.platform_post_id, {})


def _not_enough_viewers(exc: AuthError) -> bool:
    """IG answers code 10 "Not enough viewers" for young/small media: no data, not a token problem."""
    return str(exc.platform_code).split("/")[0] == "10" and "viewer" in exc.message.lower()


__all__ = ["InstagramConnector", "caption_text", "media_kind"]
