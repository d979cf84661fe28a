"""Facebook Page posts through the Graph API, using ``facebook-sdk`` (see ``mcmp.connectors.graph``).

Publishing (Page id = ``credentials.external_account_id``, Page access token):

* text / link: ``POST /{page}/feed`` with ``message`` and ``link`` (``content.link`` or
  ``options["link"]``) → ``{"id": "{page}_{post}"}``;
* one photo: ``POST /{page}/photos`` with ``url`` and ``message`` → ``{"id", "post_id"}``; the
  post id is what we keep (insights and reconciliation work on posts);
* several photos: each uploaded with ``published=false`` (an unpublished photo is harmless, so a
  failure there is only Retryable), then ``POST /{page}/feed`` with ``attached_media[i]``;
* one video, the post's text as its description. A vertical (9:16) video of 3 to 90 s becomes a
  **Reel** (``POST /{page}/video_reels`` start → the bytes streamed to the returned
  ``upload_url`` with ``offset``/``file_size`` headers → finish with ``video_state=PUBLISHED``);
  any other video a **Page video** through the resumable upload on graph-video.facebook.com
  (``/{page}/videos`` ``upload_phase`` start → transfer of each chunk at the offsets Facebook
  names → finish). ``publishOptions.facebook.videoType`` (``reel`` | ``video``) overrides the
  choice, checked against Reels' rules when the video's header says enough. Bytes flow from the
  media URL to Facebook chunk by chunk (``mcmp.connectors.media_source``), never whole in memory.
  Only ``finish`` can create a post (it is the one ambiguous write); an upload cut short leaves an
  unfinished upload that never becomes a post, so the next attempt simply starts over. After
  ``finish`` the video's status is polled every ``video_poll_seconds`` until it is published
  (recorded: its Page post id, else the video id) or failed (permanent: Facebook could not
  process it); still processing after ``video_poll_timeout_seconds`` is Ambiguous, and the next
  attempt finds the video instead of uploading again. Each chunk and poll tells the worker the
  attempt is still working (``PublishRequest.still_working``), so the delivery is not handed on.

Reconciliation marker: the invisible per-delivery marker of ``mcmp.connectors.markers`` is appended
to ``message`` (25 zero-width characters derived from the idempotency key). ``find_published``
lists ``/{page}/published_posts`` since the first attempt (minus clock skew) and matches the
marker; if Facebook ever strips those characters, an exact text match that is unique in the
window is accepted instead. A video post is looked up first among the Page's videos
(``/{page}/videos``, or ``/{page}/video_reels``), which list a video while it still processes:
one found processing is waited for, one that failed processing counts as not published.

Metrics (``fetch_metrics``): Graph batch requests — per post one insights read and one
engagement read, 25 posts (50 items, Meta's maximum) per HTTP call; each item still counts
against the rate limits, so ``metrics_cost`` is 2 calls per post. A metric that Facebook rejects
as invalid/deprecated fails only that item: the post is then read alone through
``InsightsReader`` (which drops and remembers the rejected metric) instead of failing the
snapshot; a post that no longer exists (100/33) gives ``MetricsSnapshot(deleted=True)``.

Metric mapping (seed ← Facebook), see ``INSIGHT_METRICS`` and ``ENGAGEMENT_FIELDS``:

| seed | Facebook | note |
|---|---|---|
| impressions | insights ``post_media_view`` | "views" metric of the Nov 2025 migration |
| reach | insights ``post_total_media_view_unique`` | replaces ``post_impressions_unique`` |
| clicks | insights ``post_clicks`` | dropped if Facebook rejects it |
| likes | ``reactions.summary.total_count`` | all reactions |
| comments | ``comments.summary.total_count`` | |
| shares | ``shares.count`` | Graph omits ``shares`` at 0: reported as 0 |
| saves | — | Facebook reports none: absent |
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from mcmp.config import Settings
from mcmp.connectors.base import ConnectorBase
from mcmp.connectors.clients import HttpClients
from mcmp.connectors.errors import (
    AmbiguousError,
    ConnectorError,
    PermanentError,
    RetryableError,
    ValidationError,
)
from mcmp.connectors.facebook.classify import PLATFORM, classify
from mcmp.connectors.facebook.video import (
    REEL_RATIO,
    REEL_SECONDS,
    VIDEO_RATIOS,
    VIDEO_SECONDS,
    FacebookVideos,
    as_reel,
    check_reel,
    video_of,
)
from mcmp.connectors.graph import (
    BATCH_LIMIT,
    GraphClient,
    GraphNotFound,
    InsightsReader,
    batch_get,
    exchange_token,
    parse_graph_time,
    scan_edge,
)
from mcmp.connectors.markers import MARKER_LENGTH, SENTINEL, marker_for, strip_markers
from mcmp.connectors.media import MB, MediaLimits, check_media, ratio_text
from mcmp.connectors.types import (
    Credentials,
    MetricsRef,
    MetricsSnapshot,
    PostContent,
    PublishRequest,
    PublishResult,
    TokenGrant,
)

MAX_MESSAGE_CHARS = 63_206  # Page post message limit, counted with our marker
MAX_PHOTOS = 10
VIDEO_PUBLIC_BASE = "https://graph-video.facebook.com"
RECONCILE_PAGE_SIZE = 100
RECONCILE_MAX_PAGES = 10  # 1,000 posts since the window start; more is LookupIncompleteError
WINDOW_SKEW = timedelta(minutes=10)

# Seed metric ← Facebook source. Insights metric names follow the Nov 2025 "views" migration
# (platforms.md: post_media_view and post_clicks are unverified names; a rejected one is
# simply left out of the snapshot). Saves: Facebook reports none.
INSIGHT_METRICS: dict[str, str] = {
    "impressions": "post_media_view",
    "reach": "post_total_media_view_unique",
    "clicks": "post_clicks",
}
# Seed metric ← field of GET /{post-id}?fields=reactions.summary(true),comments.summary(true),shares
ENGAGEMENT_QUERY = "reactions.summary(true),comments.summary(true),shares"
ENGAGEMENT_FIELDS: dict[str, str] = {
    "likes": "reactions.summary.total_count",
    "comments": "comments.summary.total_count",
    "shares": "shares.count",  # Graph omits ``shares`` when there are none: reported as 0
}


def post_text(content: PostContent, *, with_link: bool) -> str:
    text = content.body.strip() or content.title.strip()
    link = post_link(content)
    if with_link and link and link not in text:
        text = f"{text}\n\n{link}" if text else link
    return text


def post_link(content: PostContent) -> str | None:
    link = content.link or content.options.get("link")
    return str(link).strip() if link else None


class FacebookConnector(FacebookVideos, ConnectorBase):
    """Publishes to a Facebook Page; one instance per process, safe to share between threads."""

    platform = PLATFORM

    media_limits: MediaLimits  # built from the settings (video size)

    def __init__(self, settings: Settings, *, clients: HttpClients | None = None) -> None:
        super().__init__(settings, clients=clients)
        self.cfg = settings.facebook
        # Video bytes come from the tenant's URL: only through the guarded fetcher.
        self.fetcher = self.clients.tenant_fetcher()
        self.client = GraphClient(
            PLATFORM,
            self.cfg.base_url,
            self.cfg.api_version,
            self.cfg.timeout_seconds,
            classifier=classify,
            clients=self.clients,
        )
        # Same SDK, other host: its graph.facebook.com URLs are sent to the video upload host.
        self.video_client = GraphClient(
            PLATFORM,
            self.cfg.video_base_url or self.cfg.base_url,
            self.cfg.api_version,
            self.cfg.timeout_seconds,
            classifier=classify,
            clients=self.clients,
        )
        self.insights = InsightsReader(self.client, INSIGHT_METRICS)
        self.media_limits = MediaLimits(
            kinds=frozenset({"image", "video"}),
            max_bytes={"image": 10 * MB, "video": self.cfg.video_max_bytes},
            duration_seconds={"video": VIDEO_SECONDS},
            aspect_ratio={"video": VIDEO_RATIOS},
            max_items=MAX_PHOTOS,
            max_per_kind={"video": 1},
            mixed_kinds=False,
            notes={
                "image": "several photos become one post",
                "video": (
                    f"a {ratio_text(REEL_RATIO)} video of {REEL_SECONDS[0]:g} to {REEL_SECONDS[1]:g} s "
                    "is published as a Reel, any other as a Page video "
                    "(publishOptions.facebook.videoType: reel | video)"
                ),
            },
        )

    # --- validate --------------------------------------------------------------------------------
    def validate(self, content: PostContent, credentials: Credentials) -> None:
        page = (credentials.external_account_id or "").strip()
        if not page.isdigit():
            raise ValidationError("account.externalAccountId", "needs the numeric Facebook Page id")
        link = post_link(content)
        if link and not link.startswith(("http://", "https://")):
            raise ValidationError("link", f"must be an http(s) URL, got {link[:80]!r}")
        text = post_text(content, with_link=bool(content.media))
        if not text and not link and not content.media:
            raise ValidationError("body", "a Facebook post needs text, a link or a photo")
        if len(text) + MARKER_LENGTH > MAX_MESSAGE_CHARS:
            raise ValidationError(
                "body",
                f"{len(text)} characters; a Facebook post takes at most {MAX_MESSAGE_CHARS - MARKER_LENGTH} "
                f"(63,206 minus {MARKER_LENGTH} for the delivery marker)",
            )
        check_media(content.media, self.media_limits, PLATFORM)
        kind = content.options.get("videoType")
        if kind not in (None, "reel", "video"):
            raise ValidationError("publishOptions.facebook.videoType", f"must be reel or video, got {kind!r}")
        found = video_of(content)
        if kind == "reel" and found is None:
            raise ValidationError("publishOptions.facebook.videoType", "reel needs a video in assetUrls")
        if kind == "reel" and found is not None:
            check_reel(*found)

    # --- publish ---------------------------------------------------------------------------------
    def publish(self, request: PublishRequest) -> PublishResult:
        content, creds = request.content, request.credentials
        self.validate(content, creds)
        page = str(creds.external_account_id).strip()
        marker = marker_for(request.idempotency_key)
        message = post_text(content, with_link=bool(content.media)) + marker
        found = video_of(content)
        if found is not None:
            return self._publish_video(request, page, found[0], found[1], message)
        if not content.media:
            args: dict[str, Any] = {"message": message}
            link = post_link(content)
            if link:
                args["link"] = link
            post_id = self._post(creds, f"{page}/feed", args, write=True)["id"]
        elif len(content.media) == 1:
            photo = self._post(
                creds, f"{page}/photos", {"url": content.media[0].url, "message": message}, write=True
            )
            post_id = photo.get("post_id") or photo["id"]
        else:
            args = {"message": message}
            for i, item in enumerate(content.media):
                fbid = self._upload_unpublished(creds, page, item.url)
                args[f"attached_media[{i}]"] = json.dumps({"media_fbid": fbid})
            post_id = self._post(creds, f"{page}/feed", args, write=True)["id"]
        post_id = str(post_id)
        return PublishResult(post_id, f"https://www.facebook.com/{post_id}", datetime.now(UTC))

    def _post(self, creds: Credentials, path: str, args: dict[str, Any], *, write: bool) -> dict[str, Any]:
        result = self.client.call(
            creds.access_token, path, account_id=creds.account_id, post_args=args, write=write
        )
        if "id" not in result:
            raise (AmbiguousError if write else RetryableError)(f"Facebook answered {path} without an id")
        return result

    def _upload_unpublished(self, creds: Credentials, page: str, url: str) -> str:
        try:
            photo = self._post(creds, f"{page}/photos", {"url": url, "published": "false"}, write=False)
        except AmbiguousError as exc:  # an orphan unpublished photo is invisible: safe to retry
            raise RetryableError(f"photo upload interrupted ({exc.message})") from None
        return str(photo["id"])

    def _find_video(self, request: PublishRequest, reel: bool, since: datetime) -> PublishResult | None:
        """This delivery's video among the Page's videos (processing ones too); waits for it to settle."""
        creds = request.credentials
        page = (creds.external_account_id or "").strip()
        marker = marker_for(request.idempotency_key)
        edge = "video_reels" if reel else "videos"
        fields = "id,description,created_time,permalink_url,post_id,status"
        for video in self._scan(creds, page, edge, fields, since):
            if marker not in str(video.get("description") or ""):
                continue
            try:
                settled = self._settled(video)
            except PermanentError:
                return None  # processing failed: nothing was published, a new upload is safe
            return settled or self._wait_for_video(request, str(video["id"]))
        return None

    # --- reconcile -------------------------------------------------------------------------------
    def _window_start(self, request: PublishRequest) -> datetime:
        first = request.first_attempt_at or request.attempt_started_at
        return min(first, request.attempt_started_at) - WINDOW_SKEW

    def _recent_posts(self, creds: Credentials, page: str, since: datetime) -> Iterator[dict[str, Any]]:
        """The Page's posts since ``since``; ``LookupIncompleteError`` if the pages run out first."""
        return self._scan(creds, page, "published_posts", "id,message,created_time,permalink_url", since)

    def _scan(
        self, creds: Credentials, page: str, edge: str, fields: str, since: datetime
    ) -> Iterator[dict[str, Any]]:
        """A Page edge since ``since``, page by page; ``LookupIncompleteError`` if the pages run out first."""
        args: dict[str, Any] = {
            "fields": fields,
            "since": str(int(since.timestamp())),
            "limit": str(RECONCILE_PAGE_SIZE),
        }
        return scan_edge(
            self.client,
            creds.access_token,
            f"{page}/{edge}",
            args,
            account_id=creds.account_id,
            since=since,
            max_pages=RECONCILE_MAX_PAGES,
        )

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        creds = request.credentials
        page = (creds.external_account_id or "").strip()
        since = self._window_start(request)
        found_video = video_of(request.content)
        if found_video is not None:
            video = self._find_video(request, as_reel(request.content, found_video[1]), since)
            if video is not None:
                return video
        marker = marker_for(request.idempotency_key)
        expected = strip_markers(post_text(request.content, with_link=bool(request.content.media))).strip()
        fallback: list[dict[str, Any]] = []
        for post in self._recent_posts(creds, page, since):
            created = parse_graph_time(post.get("created_time"))
            if created is not None and created < since:
                continue
            message = str(post.get("message") or "")
            if marker in message:
                return self._found(post)
            if SENTINEL in message:
                continue  # another delivery's post with the same text
            if expected and strip_markers(message).strip() == expected:
                fallback.append(post)
        return self._found(fallback[0]) if len(fallback) == 1 else None

    @staticmethod
    def _found(post: dict[str, Any]) -> PublishResult:
        post_id = str(post["id"])
        url = post.get("permalink_url") or f"https://www.facebook.com/{post_id}"
        return PublishResult(post_id, str(url), parse_graph_time(post.get("created_time")))

    # --- tokens ----------------------------------------------------------------------------------
    def refresh_token(self, credentials: Credentials) -> TokenGrant:
        """``fb_exchange_token``: a Page token that never expires comes back without ``expires_in``."""
        return exchange_token(
            self.client, self.cfg.app_id, self.cfg.app_secret.get_secret_value(), credentials
        )

    # --- metrics ---------------------------------------------------------------------------------
    def metrics_cost(self, credentials: Credentials, count: int) -> int:
        """Platform calls for ``count`` posts: Meta counts each batch item (insights + engagement)."""
        return 2 * count

    def fetch_metrics(self, credentials: Credentials, refs: Sequence[MetricsRef]) -> list[MetricsSnapshot]:
        out: list[MetricsSnapshot] = []
        per_batch = BATCH_LIMIT // 2
        for i in range(0, len(refs), per_batch):
            out += self._fetch_batch(credentials, list(refs[i : i + per_batch]))
        return out

    def _fetch_batch(self, creds: Credentials, refs: list[MetricsRef]) -> list[MetricsSnapshot]:
        urls: list[str] = []
        slots: list[tuple[int | None, int]] = []  # per ref: (insights item, engagement item)
        for ref in refs:
            insights_url = self.insights.relative_url(ref.platform_post_id)
            first = None
            if insights_url:
                first = len(urls)
                urls.append(insights_url)
            urls.append(f"{ref.platform_post_id}?fields={ENGAGEMENT_QUERY}")
            slots.append((first, len(urls) - 1))
        items = batch_get(self.client, creds.access_token, urls, account_id=creds.account_id)
        out = []
        for ref, (first, second) in zip(refs, slots, strict=True):
            answers = [items[second]] if first is None else [items[first], items[second]]
            if any(isinstance(a, GraphNotFound) for a in answers):
                out.append(MetricsSnapshot(ref.platform_post_id, {}, deleted=True))
                continue
            engagement = items[second]
            if isinstance(engagement, ConnectorError):
                raise engagement
            metrics: dict[str, int] = {}
            if first is not None:
                insights = items[first]
                if isinstance(insights, PermanentError):  # e.g. a deprecated metric: read alone
                    try:
                        metrics = self.insights.read(creds, ref.platform_post_id)
                    except GraphNotFound:
                        out.append(MetricsSnapshot(ref.platform_post_id, {}, deleted=True))
                        continue
                elif isinstance(insights, ConnectorError):
                    raise insights
                else:
                    metrics = self.insights.parse(list(insights.get("data") or []))
            metrics.update(engagement_metrics(engagement))
            out.append(MetricsSnapshot(ref.platform_post_id, metrics))
        return out


def engagement_metrics(result: dict[str, Any]) -> dict[str, int]:
    """Seed metrics from ``GET /{post}?fields=reactions.summary(true),comments.summary(true),shares``."""
    metrics = {}
    for seed, path in ENGAGEMENT_FIELDS.items():
        node: Any = result
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, int | float):
            metrics[seed] = int(node)
        elif seed == "shares":
            metrics[seed] = 0
    return metrics


__all__ = ["FacebookConnector", "post_link", "post_text"]
