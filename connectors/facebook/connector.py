"""Facebook Page posts through the Graph API, using ``facebook-sdk`` (see ``connectors.graph``).

Publishing (Page id = ``credentials.external_account_id``, Page access token):

* text / link: ``POST /{page}/feed`` with ``message`` and ``link`` (``content.link`` or
  ``options["link"]``) → ``{"id": "{page}_{post}"}``;
* one photo: ``POST /{page}/photos`` with ``url`` and ``message`` → ``{"id", "post_id"}``; the
  post id is what we keep (insights and reconciliation work on posts);
* several photos: each uploaded with ``published=false`` (an unpublished photo is harmless, so a
  failure there is only Retryable), then ``POST /{page}/feed`` with ``attached_media[i]``.

Reconciliation marker: the invisible per-delivery marker of ``connectors.markers`` is appended
to ``message`` (25 zero-width characters derived from the idempotency key). ``find_published``
lists ``/{page}/published_posts`` since the first attempt (minus clock skew) and matches the
marker; if Facebook ever strips those characters, an exact text match that is unique in the
window is accepted instead.

Metrics: one insights call and one engagement call per post (Graph batch requests are not used:
a batch hides per-call usage headers and complicates the per-metric fallback). A metric that
Facebook rejects as invalid/deprecated is dropped (and remembered) instead of failing the
snapshot; a post that no longer exists gives ``MetricsSnapshot(deleted=True)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from config import Settings
from connectors.errors import (
    AmbiguousError,
    RetryableError,
    ValidationError,
)
from connectors.facebook.classify import PLATFORM, classify
from connectors.graph import GraphClient, GraphNotFound, InsightsReader, exchange_token, parse_graph_time
from connectors.markers import MARKER_LENGTH, SENTINEL, marker_for, strip_markers
from connectors.types import (
    Credentials,
    MetricsRef,
    MetricsSnapshot,
    PostContent,
    PublishRequest,
    PublishResult,
    TokenGrant,
)
from worker.media_checks import MB, MediaLimits, check_media

MAX_MESSAGE_CHARS = 63_206  # Page post message limit, counted with our marker
MAX_PHOTOS = 10
RECONCILE_PAGE_SIZE = 100
RECONCILE_MAX_PAGES = 5
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


class FacebookConnector:
    """Publishes to a Facebook Page; one instance per process, safe to share between threads."""

    platform = PLATFORM
    media_limits = MediaLimits(
        kinds=frozenset({"image"}),  # videos need /videos (publish_video); not supported yet
        max_bytes={"image": 10 * MB},
        max_items=MAX_PHOTOS,
    )

    def __init__(self, settings: Settings) -> None:
        self.cfg = settings.facebook
        self.client = GraphClient(
            PLATFORM, self.cfg.base_url, self.cfg.api_version, self.cfg.timeout_seconds, classifier=classify
        )
        self.insights = InsightsReader(self.client, INSIGHT_METRICS)

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
        for i, item in enumerate(content.media):
            if item.kind not in (None, "image"):
                raise ValidationError(
                    "media", f"media[{i}] is a {item.kind}; the Facebook connector publishes photos only"
                )
        check_media(content.media, self.media_limits, PLATFORM)

    # --- publish ---------------------------------------------------------------------------------
    def publish(self, request: PublishRequest) -> PublishResult:
        content, creds = request.content, request.credentials
        self.validate(content, creds)
        page = str(creds.external_account_id).strip()
        marker = marker_for(request.idempotency_key)
        message = post_text(content, with_link=bool(content.media)) + marker
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

    # --- reconcile -------------------------------------------------------------------------------
    def _window_start(self, request: PublishRequest) -> datetime:
        first = request.first_attempt_at or request.attempt_started_at
        return min(first, request.attempt_started_at) - WINDOW_SKEW

    def _recent_posts(self, creds: Credentials, page: str, since: datetime) -> Iterator[dict[str, Any]]:
        args: dict[str, Any] = {
            "fields": "id,message,created_time,permalink_url",
            "since": str(int(since.timestamp())),
            "limit": str(RECONCILE_PAGE_SIZE),
        }
        for _ in range(RECONCILE_MAX_PAGES):
            result = self.client.call(
                creds.access_token, f"{page}/published_posts", account_id=creds.account_id, args=args
            )
            yield from result.get("data") or []
            paging = result.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not paging.get("next") or not after:
                return
            args = {**args, "after": after}

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        creds = request.credentials
        page = (creds.external_account_id or "").strip()
        since = self._window_start(request)
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
    def fetch_metrics(self, credentials: Credentials, refs: Sequence[MetricsRef]) -> list[MetricsSnapshot]:
        out = []
        for ref in refs:
            try:
                metrics = self.insights.read(credentials, ref.platform_post_id)
                metrics.update(self._engagement(credentials, ref.platform_post_id))
            except GraphNotFound:
                out.append(MetricsSnapshot(ref.platform_post_id, {}, deleted=True))
                continue
            out.append(MetricsSnapshot(ref.platform_post_id, metrics))
        return out

    def _engagement(self, creds: Credentials, post_id: str) -> dict[str, int]:
        result = self.client.call(
            creds.access_token,
            post_id,
            account_id=creds.account_id,
            args={"fields": "reactions.summary(true),comments.summary(true),shares"},
        )
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
