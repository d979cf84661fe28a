"""LinkedIn organic posts through the versioned REST API (Posts, Images, statistics).

Transport choice: plain ``requests`` through ``mcmp.connectors.http.send`` instead of
``python-linkedin-v2``'s ``make_request``. That library sends the token as the
``oauth2_access_token`` *query parameter* (it ends up in URLs, access logs and exception text),
calls the module-level ``requests.request`` (no pooled session, no base-URL override) and has no
refresh-token grant. We send ``Authorization: Bearer`` plus ``LinkedIn-Version`` and
``X-Restli-Protocol-Version: 2.0.0`` on every call, and keep one pooled session per connector.

Publishing: ``POST /rest/posts``; the post URN comes back in the ``x-restli-id`` header of an
empty 201. Media bytes are read from the tenant's ``MediaItem.url`` through ``mcmp.connectors.media_source``,
which goes through :class:`mcmp.connectors.tenant_fetch.TenantFetcher` only (never the platform
session): an address inside our network is refused, and the bytes' signature is checked:

* one image: ``POST /rest/images?action=initializeUpload`` → ``PUT`` the bytes to
  ``value.uploadUrl`` → ``content.media.id`` = ``value.image``;
* 2 to 20 images: each uploaded so, then ``content.multiImage.images`` = ``[{id, altText}]``;
* one video (Videos API): ``POST /rest/videos?action=initializeUpload`` with ``fileSizeBytes`` →
  each part of ``uploadInstructions`` read from the media URL and ``PUT`` to its ``uploadUrl``
  (one part, 4 MB, in memory at a time) → ``finalizeUpload`` with the parts' ETags in order →
  ``GET /rest/videos/{urn}`` every ``video_poll_seconds`` until ``AVAILABLE``
  (``PROCESSING_FAILED`` is permanent) → the post with ``content.media.id`` = the video URN.

Nothing before ``POST /rest/posts`` is visible (an orphan image or video is harmless), so media
failures are Retryable and an interrupted upload simply starts over; the post itself is found by
its marker after an ambiguous answer, as for any post. Each part and poll tells the worker the
attempt is still working (``PublishRequest.still_working``).

Commentary is LinkedIn's *little* text format: reserved characters are escaped with a backslash
(hashtags ``#word`` are kept as hashtags), and the invisible delivery marker of
``mcmp.connectors.linkedin.marker`` is appended so ``find_published`` can recognise the post.

Deleted posts: the statistics finders just leave a deleted post out of their answer (or answer
404), so a post that comes back without statistics is looked up with ``GET /rest/posts/{urn}``;
404 there gives ``MetricsSnapshot(deleted=True)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests

from mcmp.config import Settings
from mcmp.connectors.base import ConnectorBase
from mcmp.connectors.clients import HttpClients
from mcmp.connectors.errors import (
    AmbiguousError,
    AuthError,
    LookupIncompleteError,
    PermanentError,
    RetryableError,
    ValidationError,
)
from mcmp.connectors.http import send
from mcmp.connectors.linkedin.classify import ThrottleMemory, classify
from mcmp.connectors.linkedin.uploads import IMAGE_TYPES, MAX_IMAGE_BYTES, LinkedInUploads
from mcmp.connectors.markers import MARKER_LENGTH, SENTINEL, marker_for, strip_markers
from mcmp.connectors.media import KB, MediaLimits, check_media
from mcmp.connectors.types import (
    Credentials,
    MetricsRef,
    MetricsSnapshot,
    PostContent,
    PublishRequest,
    PublishResult,
    TokenGrant,
)

MAX_COMMENTARY_CHARS = 3000  # Posts API commentary limit, counted on the text we send
MIN_IMAGES, MAX_IMAGES = 2, 20  # MultiImage posts
VIDEO_SECONDS = (3.0, 30 * 60.0)  # organic video: 3 seconds to 30 minutes
VIDEO_RATIOS = (1 / 2.4, 2.4)  # 1:2.4 to 2.4:1
MIN_VIDEO_BYTES = 75 * KB
RESERVED = set("|{}@[]()<>#\\*_~")
_HASHTAG = re.compile(r"#(?=\w)")
RECONCILE_PAGE_SIZE = 50
RECONCILE_MAX_PAGES = 20  # 1,000 posts; the window usually ends sooner, more is LookupIncompleteError
WINDOW_SKEW = timedelta(minutes=10)  # clock skew between us and LinkedIn
STATS_BATCH = 20

# Seed metric ← LinkedIn metric. Organisation posts: organizationalEntityShareStatistics
# ``totalShareStatistics``; member posts: memberCreatorPostAnalytics ``queryType`` (one call each).
ORG_METRICS = {
    "impressions": "impressionCount",
    "reach": "uniqueImpressionsCount",
    "clicks": "clickCount",
    "likes": "likeCount",
    "comments": "commentCount",
    "shares": "shareCount",
    # saves: not reported for organisations
}
MEMBER_METRICS = {
    "impressions": "IMPRESSION",
    "reach": "MEMBERS_REACHED",
    "likes": "REACTION",
    "comments": "COMMENT",
    "shares": "RESHARE",
}
# platforms.md says saves are not in these APIs; LinkedIn's own docs list POST_SAVE and
# LINK_CLICKS for memberCreatorPostAnalytics from the 202603 docs onwards (not in 202511), and
# the platform docs win: requested only when the pinned version is at least that one.
MEMBER_METRICS_SINCE_202603 = {"saves": "POST_SAVE", "clicks": "LINK_CLICKS"}


def escape_little_text(text: str) -> str:
    """Escape little-format reserved characters, keeping ``#word`` as a hashtag."""
    out = []
    for i, ch in enumerate(text):
        if ch in RESERVED and not (ch == "#" and _HASHTAG.match(text, i)):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def unescape_little_text(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def post_text(content: PostContent) -> str:
    """The visible text: body (or title), plus the link when the body does not already carry it."""
    text = content.body.strip() or content.title.strip()
    if content.link and content.link not in text:
        text = f"{text}\n\n{content.link}" if text else content.link
    return text


def author_urn(credentials: Credentials) -> str:
    """``urn:li:organization:…``/``urn:li:person:…`` from the account.

    ``externalAccountId`` may be a full URN or a bare id; a bare id takes its type from
    ``metadata.authorType`` (``organization`` | ``person``), else digits-only means an organisation
    (organisation ids are numeric, member ids are opaque strings).
    """
    meta = credentials.metadata
    explicit = meta.get("authorUrn") or meta.get("author_urn")
    raw = str(explicit or credentials.external_account_id or "").strip()
    if not raw:
        raise ValidationError(
            "account.externalAccountId",
            "needs the LinkedIn author (urn:li:organization:… or urn:li:person:…)",
        )
    if raw.startswith("urn:li:"):
        if not raw.startswith(("urn:li:organization:", "urn:li:person:")):
            raise ValidationError(
                "account.externalAccountId", f"unsupported author URN type {raw.rsplit(':', 1)[0]!r}"
            )
        return raw
    kind = str(meta.get("authorType") or meta.get("author_type") or "").lower()
    if kind in ("member", "person"):
        return f"urn:li:person:{raw}"
    if kind == "organization" or (not kind and raw.isdigit()):
        return f"urn:li:organization:{raw}"
    if not kind:
        return f"urn:li:person:{raw}"
    raise ValidationError("account.metadata.authorType", f"must be organization or person, got {kind!r}")


class LinkedInConnector(LinkedInUploads, ConnectorBase):
    """Publishes organic LinkedIn posts for an organisation page or a member (thread-safe)."""

    platform = "linkedin"

    media_limits: MediaLimits  # built from the settings (video size)

    def __init__(self, settings: Settings, *, clients: HttpClients | None = None) -> None:
        super().__init__(settings, clients=clients)
        self.cfg = settings.linkedin
        self.base = self.cfg.base_url.rstrip("/")
        self.timeout = self.cfg.timeout_seconds
        self.session = self.clients.session()
        self.fetcher = self.clients.tenant_fetcher()
        self.throttle = ThrottleMemory()
        self.media_limits = MediaLimits(
            kinds=frozenset({"image", "video"}),
            mime_types={"image": IMAGE_TYPES, "video": frozenset({"video/mp4"})},
            max_bytes={"image": MAX_IMAGE_BYTES, "video": self.cfg.video_max_bytes},
            min_bytes={"video": MIN_VIDEO_BYTES},
            duration_seconds={"video": VIDEO_SECONDS},
            aspect_ratio={"video": VIDEO_RATIOS},
            max_items=MAX_IMAGES,
            min_items=MIN_IMAGES,
            max_per_kind={"video": 1},
            mixed_kinds=False,
            notes={"image": "2 to 20 images make a multi-image post", "video": "Videos API, one per post"},
        )

    def _commentary(self, content: PostContent, idempotency_key: str) -> str:
        return escape_little_text(post_text(content)) + marker_for(idempotency_key)

    # --- Protocol ------------------------------------------------------------------------------
    def validate(self, content: PostContent, credentials: Credentials) -> None:
        author_urn(credentials)
        text = post_text(content)
        if not text and not content.media:
            raise ValidationError("body", "a LinkedIn post needs text or media")
        sent = len(escape_little_text(text)) + MARKER_LENGTH
        if sent > MAX_COMMENTARY_CHARS:
            raise ValidationError(
                "body",
                f"LinkedIn allows {MAX_COMMENTARY_CHARS} characters; this text needs {sent} "
                f"(including escapes and the {MARKER_LENGTH}-character delivery marker)",
            )
        for i, item in enumerate(content.media):
            if not item.url.startswith(("http://", "https://")):
                raise ValidationError("media", f"media[{i}]: the URL must be http(s)")
        check_media(content.media, self.media_limits, self.platform)
        visibility = content.options.get("visibility", "PUBLIC")
        if visibility not in ("PUBLIC", "CONNECTIONS", "LOGGED_IN"):
            raise ValidationError("options.visibility", "must be PUBLIC, CONNECTIONS or LOGGED_IN")

    def publish(self, request: PublishRequest) -> PublishResult:
        creds = request.credentials
        content = request.content
        author = author_urn(creds)
        body: dict[str, Any] = {
            "author": author,
            "commentary": self._commentary(content, request.idempotency_key),
            "visibility": content.options.get("visibility", "PUBLIC"),
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        }
        check_media(content.media, self.media_limits, self.platform)  # the branches below rely on it
        video = next(((i, m) for i, m in enumerate(content.media) if m.kind == "video"), None)
        if video is not None:
            media: dict[str, Any] = {"id": self._upload_video(request, author, *video)}
            if content.title.strip():
                media["title"] = content.title.strip()[:200]
            body["content"] = {"media": media}
        elif len(content.media) == 1:
            item = content.media[0]
            media = {"id": self._upload_image(creds, author, item.url, "assetUrls[0]")}
            if item.alt_text:
                media["altText"] = item.alt_text
            body["content"] = {"media": media}
        elif content.media:
            images = []
            for i, item in enumerate(content.media):
                image: dict[str, Any] = {"id": self._upload_image(creds, author, item.url, f"assetUrls[{i}]")}
                if item.alt_text:
                    image["altText"] = item.alt_text
                images.append(image)
                request.still_working()
            body["content"] = {"multiImage": {"images": images}}
        response = self._call(
            "POST",
            f"{self.base}/rest/posts",
            creds,
            write=True,
            data=json.dumps(body),
            headers=self._headers(creds.access_token, json_body=True),
        )
        urn = response.headers.get("x-restli-id")
        if not urn:
            raise AmbiguousError(f"LinkedIn answered {response.status_code} without an x-restli-id header")
        return PublishResult(urn, f"https://www.linkedin.com/feed/update/{urn}/", datetime.now(UTC))

    def _window_start(self, request: PublishRequest) -> datetime:
        first = request.first_attempt_at or request.attempt_started_at
        return min(first, request.attempt_started_at) - WINDOW_SKEW

    def _recent_posts(self, creds: Credentials, author: str, since_ms: int) -> Iterator[dict[str, Any]]:
        """Posts last modified since ``since_ms``; ``LookupIncompleteError`` if the pages run out first."""
        for page in range(RECONCILE_MAX_PAGES):
            query = f"author={quote(author, safe='')}&q=author&count={RECONCILE_PAGE_SIZE}&start={page * RECONCILE_PAGE_SIZE}&sortBy=LAST_MODIFIED"
            response = self._call(
                "GET",
                f"{self.base}/rest/posts?{query}",
                creds,
                write=False,
                headers=self._headers(creds.access_token),
            )
            elements = (response.json() or {}).get("elements") or []
            yield from elements
            modified = [int(e.get("lastModifiedAt") or e.get("createdAt") or 0) for e in elements]
            # Sorted by last modification: once a page ends before the window, older pages cannot match.
            if len(elements) < RECONCILE_PAGE_SIZE or (modified and min(modified) < since_ms):
                return
        since = datetime.fromtimestamp(since_ms / 1000, UTC)
        raise LookupIncompleteError(self.platform, RECONCILE_MAX_PAGES * RECONCILE_PAGE_SIZE, since)

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        creds = request.credentials
        author = author_urn(creds)
        since_ms = int(self._window_start(request).timestamp() * 1000)
        marker = marker_for(request.idempotency_key)
        expected = strip_markers(post_text(request.content))
        fallback: list[dict[str, Any]] = []
        for element in self._recent_posts(creds, author, since_ms):
            if int(element.get("createdAt") or 0) < since_ms:
                continue
            commentary = str(element.get("commentary") or "")
            if SENTINEL in commentary and marker not in commentary:
                continue  # another delivery's post (same text)
            if marker in commentary:
                return self._found(element)
            if unescape_little_text(strip_markers(commentary)).strip() == expected.strip():
                fallback.append(element)
        # Marker stripped by the platform: accept an exact text match only when it is unambiguous.
        return self._found(fallback[0]) if len(fallback) == 1 else None

    @staticmethod
    def _found(element: dict[str, Any]) -> PublishResult:
        urn = str(element["id"])
        published = element.get("publishedAt") or element.get("createdAt")
        when = datetime.fromtimestamp(int(published) / 1000, UTC) if published else None
        return PublishResult(urn, f"https://www.linkedin.com/feed/update/{urn}/", when)

    def refresh_token(self, credentials: Credentials) -> TokenGrant:
        """``refresh_token`` grant (python-linkedin-v2 has none). Keeps the old refresh token when none comes back."""
        if not credentials.refresh_token:
            raise AuthError("LinkedIn account has no refresh token; the member must reconnect")
        data = {
            "grant_type": "refresh_token",
            "refresh_token": credentials.refresh_token,
            "client_id": self.cfg.app_id,
            "client_secret": self.cfg.app_secret.get_secret_value(),
        }
        try:
            response = send(
                self.session,
                "POST",
                self.cfg.token_url,
                timeout=self.timeout,
                data=data,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        except AmbiguousError as exc:
            # Repeating a refresh is harmless: never Ambiguous, never Auth.
            raise RetryableError(exc.message) from None
        if response.status_code >= 400:
            raise classify(
                response,
                write=False,
                account_id=credentials.account_id,
                token_endpoint=True,
                throttle=self.throttle,
            )
        try:
            payload = response.json()
            access = str(payload["access_token"])
        except (ValueError, KeyError, TypeError):
            raise RetryableError("LinkedIn token endpoint answered without an access_token") from None
        expires_in = payload.get("expires_in")
        expires_at = datetime.now(UTC) + timedelta(seconds=int(expires_in)) if expires_in else None
        new_refresh = payload.get("refresh_token")
        return TokenGrant(
            access_token=access,
            expires_at=expires_at,
            refresh_token=str(new_refresh)
            if new_refresh and new_refresh != credentials.refresh_token
            else None,
        )

    def metrics_cost(self, credentials: Credentials, count: int) -> int:
        """Organisation posts: one statistics call per 20; member posts: one call per metric per post.

        Not counted: one ``GET /rest/posts/{urn}`` per post that came back without statistics.
        """
        if author_urn(credentials).startswith("urn:li:organization:"):
            return -(-count // STATS_BATCH)
        per_post = len(MEMBER_METRICS) + (
            len(MEMBER_METRICS_SINCE_202603) if self.cfg.api_version[:6] >= "202603" else 0
        )
        return count * per_post

    def fetch_metrics(self, credentials: Credentials, refs: Sequence[MetricsRef]) -> list[MetricsSnapshot]:
        """Statistics per post; a post without statistics that ``GET /rest/posts`` says is gone is ``deleted``."""
        author = author_urn(credentials)
        urns = [r.platform_post_id for r in refs]
        if author.startswith("urn:li:organization:"):
            found, gone = self._org_metrics(credentials, author, urns)
        else:
            found, gone = {}, set()
            for urn in dict.fromkeys(urns):
                metrics = self._member_metrics(credentials, urn)
                if metrics is None:
                    gone.add(urn)
                else:
                    found[urn] = metrics
        return [
            MetricsSnapshot(urn, {}, deleted=True)
            if urn in gone
            else MetricsSnapshot(urn, found.get(urn, {}))
            for urn in urns
        ]

    def _post_exists(self, creds: Credentials, urn: str) -> bool:
        """``GET /rest/posts/{urn}``: False on 404 only. A 403 (token without the r_*_social read
        permission) cannot tell, so the post counts as present; other errors are raised."""
        response = self._get(f"/rest/posts/{quote(urn, safe='')}", creds, passthrough=(403, 404))
        return response.status_code != 404

    def _org_statistics(self, creds: Credentials, org: str, urns: list[str]) -> requests.Response:
        """One ``organizationalEntityShareStatistics`` call; a 404 answer is returned, not raised."""
        shares = [u for u in urns if u.startswith("urn:li:share:")]
        ugc = [u for u in urns if u.startswith("urn:li:ugcPost:")]
        # Rest.li 2.0: URNs inside List(...) are encoded, the List syntax itself is not.
        query = f"q=organizationalEntity&organizationalEntity={quote(org, safe='')}"
        if shares:
            query += "&shares=List(" + ",".join(quote(u, safe="") for u in shares) + ")"
        if ugc:
            query += "&ugcPosts=List(" + ",".join(quote(u, safe="") for u in ugc) + ")"
        return self._get(f"/rest/organizationalEntityShareStatistics?{query}", creds, passthrough=(404,))

    def _org_metrics(
        self, creds: Credentials, org: str, urns: list[str]
    ) -> tuple[dict[str, dict[str, int]], set[str]]:
        """Metrics by URN, and the URNs deleted on LinkedIn (looked up only when absent from an answer)."""
        out: dict[str, dict[str, int]] = {}
        gone: set[str] = set()
        postable = [u for u in dict.fromkeys(urns) if u.startswith(("urn:li:share:", "urn:li:ugcPost:"))]
        for i in range(0, len(postable), STATS_BATCH):
            batch = postable[i : i + STATS_BATCH]
            response = self._org_statistics(creds, org, batch)
            if response.status_code == 404:
                # One deleted post may fail the whole call: find it, then ask again for the rest.
                missing = {u for u in batch if not self._post_exists(creds, u)}
                if not missing:
                    raise classify(response, write=False, account_id=creds.account_id)
                gone |= missing
                batch = [u for u in batch if u not in missing]
                if not batch:
                    continue
                response = self._org_statistics(creds, org, batch)
                if response.status_code == 404:
                    continue  # the others exist: no statistics for them this time
            answered: dict[str, dict[str, int]] = {}
            for element in (response.json() or {}).get("elements") or []:
                urn = element.get("share") or element.get("ugcPost")
                stats = element.get("totalShareStatistics") or {}
                if urn:
                    answered[str(urn)] = {
                        seed: int(stats[name])
                        for seed, name in ORG_METRICS.items()
                        if stats.get(name) is not None
                    }
            out.update(answered)
            gone.update(u for u in batch if u not in answered and not self._post_exists(creds, u))
        return out, gone

    def _member_metrics(self, creds: Credentials, urn: str) -> dict[str, int] | None:
        """Metrics of one member post; None when the post was deleted on LinkedIn."""
        kind = "ugc" if urn.startswith("urn:li:ugcPost:") else "share"
        wanted = dict(MEMBER_METRICS)
        if self.cfg.api_version[:6] >= "202603":
            wanted.update(MEMBER_METRICS_SINCE_202603)
        metrics: dict[str, int] = {}
        checked = False
        for seed, query_type in wanted.items():
            query = f"q=entity&entity=({kind}:{quote(urn, safe='')})&queryType={query_type}&aggregation=TOTAL"
            try:
                response = self._get(f"/rest/memberCreatorPostAnalytics?{query}", creds, passthrough=(404,))
            except PermanentError:
                continue  # this metric is not available: leave it absent
            if response.status_code == 404:
                if not checked:
                    checked = True
                    if not self._post_exists(creds, urn):
                        return None
                continue
            elements = (response.json() or {}).get("elements") or []
            if elements and elements[0].get("count") is not None:
                metrics[seed] = int(elements[0]["count"])
        if not metrics and not checked and not self._post_exists(creds, urn):
            return None
        return metrics


__all__ = ["LinkedInConnector", "author_urn", "escape_little_text", "post_text"]
