"""Publishing to a client's WordPress site through the core REST API (WordPress ≥ 5.6).

Account fields: ``metadata.siteUrl`` (the site root, ``/wp-json`` is appended),
``metadata.username`` (or ``account_name``) and an *application password* as ``accessToken``,
sent with HTTP Basic auth.

Flow of one publish:

1. every item of ``content.media`` (images and videos) is read from its URL and uploaded as raw
   bytes to the media library, ``POST /wp-json/wp/v2/media`` (``alt_text`` rides along in the
   query string, so the attachment and its alt text are created by one request); a video is
   streamed from its URL to WordPress piece by piece with its ``Content-Length``, never held
   whole in memory;
2. ``POST /wp-json/wp/v2/posts`` creates the published post with a **slug derived from the
   idempotency key**: the first image is its ``featured_media``; every other image and every
   video is placed after the text as a block (``wp:image`` / ``wp:video``, with the uploaded
   ``source_url``, the alt text and the attachment id). The slug is the reconciliation marker:
   ``find_published`` looks it up (``GET /posts?slug=…``) after an ambiguous outcome.

A failure in step 1 happens before any post exists, so it is never ambiguous. A retry that
follows a failed step 2 may upload the media again (unused attachments stay in the media
library); that is harmless and keeps ``publish`` simple.

The site and the image are both tenant URLs: every request goes through
:class:`mcmp.connectors.tenant_fetch.TenantFetcher` (public addresses only unless configured,
pinned connections, capped answers; the image's bytes must be an image WordPress accepts).
"""

from __future__ import annotations

import hashlib
import html
import mimetypes
import re
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

from mcmp.connectors.errors import (
    AmbiguousError,
    AuthError,
    ConnectorError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    ValidationError,
)
from mcmp.connectors.http import retry_after_seconds
from mcmp.connectors.media import MediaLimits, check_media
from mcmp.connectors.media_source import StreamedBody, open_media
from mcmp.connectors.tenant_fetch import FetchResponse, TenantFetcher
from mcmp.connectors.types import Credentials, MediaItem, PostContent, PublishRequest, PublishResult
from mcmp.connectors.usage import UsageReport, report

MAX_TITLE_CHARS = 1000
MAX_SLUG_CHARS = 190  # wp_posts.post_name is varchar(200): leave room for WordPress' "-N" suffix
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_VIDEO_BYTES = 4 * 1024 * 1024 * 1024  # a site's own upload limit usually refuses sooner
# A video upload may take its size at this rate (plus a minute) before it is given up on.
MIN_UPLOAD_BYTES_PER_SECOND = 1024 * 1024
# Video types a default WordPress accepts (wp_get_mime_types).
VIDEO_TYPES = {"video/mp4": ".mp4", "video/quicktime": ".mov", "video/webm": ".webm", "video/x-m4v": ".m4v"}
MEDIA_LIMITS = MediaLimits(
    kinds=frozenset({"image", "video"}),
    max_bytes={"image": MAX_IMAGE_BYTES, "video": MAX_VIDEO_BYTES},
    notes={
        "image": "uploaded to the media library; the first is the featured image, the others follow the text",
        "video": "uploaded to the media library (streamed) and placed after the text",
    },
)
# Image types a default WordPress accepts (get_allowed_mime_types); others fail with a 500.
IMAGE_TYPES = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/avif": ".avif",
    "image/bmp": ".bmp",
    "image/tiff": ".tif",
    "image/heic": ".heic",
    "image/x-icon": ".ico",
}
# Statuses a reconciliation must see: the post may have been edited or scheduled since. Asking for
# non-public statuses also makes WordPress *require* valid credentials: without them a plain
# ``GET /posts?slug=`` answers ``200 []`` and a wrong password would look like "no post yet".
LOOKUP_STATUSES = "publish,future,draft,pending,private"
# WordPress renames a clashing slug to slug-2, slug-3, … (wp_unique_post_slug); see find_published.
DUPLICATE_SUFFIXES = range(2, 6)
SLUG_MARKER = "mcmp"

Step = Literal["post", "media", "lookup"]
SITE = "account.metadata.siteUrl"


def site_url(credentials: Credentials) -> str:
    url = credentials.metadata.get("siteUrl") or credentials.metadata.get("site_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or not urlsplit(url).netloc:
        raise ValidationError("account.metadata.siteUrl", "must be the http(s) URL of the WordPress site")
    return url.rstrip("/")


def username(credentials: Credentials) -> str:
    name = credentials.metadata.get("username") or credentials.account_name
    if not isinstance(name, str) or not name:
        raise ValidationError("account.metadata.username", "the WordPress user of the application password")
    return name


def slug_for(idempotency_key: str) -> str:
    """A lowercase slug, stable for the delivery, that ends in a fixed word.

    Ending in ``-mcmp`` (never in digits) means WordPress' de-duplication suffix ``-2`` can only
    come from WordPress, never from another delivery whose key happens to end in ``-2``.
    Keys that are not already slug-safe, or too long, get a digest so distinct keys stay distinct.
    """
    key = idempotency_key.strip()
    core = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")
    budget = MAX_SLUG_CHARS - len(SLUG_MARKER) - 1
    if core != key or len(core) > budget or not core:  # "ABC" and "abc" must not share a slug
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
        core = f"{core[: budget - len(digest) - 1].rstrip('-')}-{digest}".lstrip("-")
    return f"{core}-{SLUG_MARKER}"


def _image_type(item: MediaItem) -> str | None:
    """The MIME type the item claims or its URL suggests (None when unknown)."""
    if item.mime_type:
        return item.mime_type.split(";")[0].strip().lower()
    guessed, _ = mimetypes.guess_type(urlsplit(item.url).path)
    return guessed


def _is_image(item: MediaItem) -> bool:
    if item.kind is not None:
        return item.kind == "image"
    mime = _image_type(item)
    return mime is None or mime.startswith("image/")


def _is_video(item: MediaItem) -> bool:
    return item.kind == "video" or (item.kind is None and (_image_type(item) or "").startswith("video/"))


def _wp_error(response: FetchResponse) -> tuple[str | None, str, int | None]:
    """(code, readable message, status nested in ``data.details``) of a WordPress error body."""
    try:
        data = response.json()
    except ValueError:
        return None, f"HTTP {response.status_code}", None
    if not isinstance(data, dict):
        return None, f"HTTP {response.status_code}", None
    code = data.get("code") if isinstance(data.get("code"), str) else None
    message = re.sub(r"<[^>]+>", "", str(data.get("message") or "")).strip()
    params = (data.get("data") or {}).get("params") if isinstance(data.get("data"), dict) else None
    if isinstance(params, dict) and params:
        message += " " + "; ".join(f"{k}: {v}" for k, v in params.items())
    nested = None
    details = (data.get("data") or {}).get("details") if isinstance(data.get("data"), dict) else None
    if isinstance(details, dict):
        for detail in details.values():
            status = (detail.get("data") or {}).get("status") if isinstance(detail, dict) else None
            if isinstance(status, int):
                nested = status
    text = (
        f"HTTP {response.status_code}"
        + (f" {code}" if code else "")
        + (f": {message[:300]}" if message else "")
    )
    return code, text, nested


def classify(response: FetchResponse, *, step: Step, account_id: str | None) -> ConnectorError:
    """The one place where a WordPress HTTP answer becomes an error class.

    ``step`` says what was being done: only a failed ``post`` creation can have created the post,
    so only it yields ``AmbiguousError``; a failed media upload happens before any post exists.
    (The image host's answers are read by the fetcher: its 401/403 say nothing of the account.)
    """
    status = response.status_code
    code, reason, nested_status = _wp_error(response)
    # A wrong password on a lookup of non-public statuses comes back as 400 rest_invalid_param
    # whose details carry rest_forbidden_status with 401: it is an auth problem, not a bad request.
    if status in (401, 403) or nested_status in (401, 403):
        return AuthError(  # an application password does not expire: only a new one helps
            f"WordPress rejected the credentials ({reason})", platform_code=code or status, refreshable=False
        )
    if status == 429:
        retry_after = retry_after_seconds(response)
        report(UsageReport("website", "account", account_id, retry_after=retry_after))
        return RateLimitedError(
            f"WordPress throttled ({reason})", retry_after=retry_after, platform_code=code or status
        )
    if status in (408, 425) or status >= 500:
        if step == "post":
            return AmbiguousError(
                f"WordPress failed after receiving the post ({reason})",
                retry_after=retry_after_seconds(response),
            )
        return RetryableError(
            f"WordPress unavailable ({reason})",
            retry_after=retry_after_seconds(response),
            platform_code=code or status,
        )
    return PermanentError(f"WordPress refused the {step} ({reason})", platform_code=code or status)


def _published_at(post: dict[str, Any]) -> datetime | None:
    value = post.get("date_gmt")
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _result(post: Any) -> PublishResult:
    if not isinstance(post, dict) or post.get("id") is None:
        raise AmbiguousError("WordPress answered 2xx without a post id")
    return PublishResult(str(post["id"]), post.get("link"), _published_at(post))


def _filename(url: str, mime: str) -> str:
    name = PurePosixPath(urlsplit(url).path).name
    stem, dot, ext = name.rpartition(".")
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", stem if dot else name).strip("-")[:80] or "featured-image"
    ext = re.sub(r"[^A-Za-z0-9]", "", ext).lower() if dot else ""
    return f"{stem}.{ext}" if ext else stem + IMAGE_TYPES.get(mime, "")


class WordPressPublisher:
    """Publishes through the WordPress REST API; used by the website connector for mode ``wordpress``."""

    def __init__(self, fetcher: TenantFetcher, timeout: float) -> None:
        self.fetcher = fetcher
        self.timeout = timeout

    # --- validation ------------------------------------------------------------------------
    def validate(self, content: PostContent, credentials: Credentials) -> None:
        site_url(credentials)
        username(credentials)
        if not content.title.strip():
            raise ValidationError("title", "WordPress posts need a title (it also names the post)")
        if len(content.title) > MAX_TITLE_CHARS:
            raise ValidationError("title", f"longer than {MAX_TITLE_CHARS} characters")
        for index, item in enumerate(content.media):
            if not _is_image(item) and not _is_video(item):
                raise ValidationError(
                    f"media[{index}]", f"WordPress posts take images and videos, not {item.kind!r}"
                )
            mime = _image_type(item)
            accepted = IMAGE_TYPES if _is_image(item) else VIDEO_TYPES
            if mime is not None and mime not in accepted:
                raise ValidationError(f"media[{index}]", f"type {mime} is not accepted by WordPress")
        check_media(content.media, MEDIA_LIMITS, "website")

    # --- HTTP ---------------------------------------------------------------------------------
    def _call(self, step: Step, method: str, url: str, creds: Credentials, **kwargs: Any) -> FetchResponse:
        """One request; any non-2xx answer is classified, and only ``post`` may end ambiguous."""
        try:
            response = self.fetcher.request(
                method,
                url,
                what=SITE,
                auth=(username(creds), creds.access_token),
                read_timeout=self.timeout,
                **kwargs,
            )
        except AmbiguousError as exc:
            if step == "post":
                raise
            # No post can exist yet, so a lost answer to the media upload is a plain retry.
            raise RetryableError(f"media upload: {exc.message}") from None
        if not 200 <= response.status_code < 300:
            raise classify(response, step=step, account_id=creds.account_id)
        return response

    def _json(self, response: FetchResponse, step: Step) -> Any:
        try:
            return response.json()
        except ValueError:
            if step == "post":
                raise AmbiguousError("WordPress answered 2xx without a JSON body") from None
            raise RetryableError(f"WordPress answered the {step} with a non-JSON body") from None

    # --- media library -----------------------------------------------------------------------
    def _upload(self, request: PublishRequest, site: str, index: int, item: MediaItem) -> dict[str, Any]:
        """One item into the media library; its attachment (``id``, ``source_url``, ``mime_type``)."""
        creds = request.credentials
        image = _is_image(item)
        what = f"assetUrls[{index}]"
        with open_media(
            item.url,
            what=what,
            max_bytes=min(MAX_IMAGE_BYTES, self.fetcher.max_bytes) if image else MAX_VIDEO_BYTES,
            fetcher=self.fetcher,
            accept=frozenset(IMAGE_TYPES if image else VIDEO_TYPES),
        ) as source:
            accepted = IMAGE_TYPES if image else VIDEO_TYPES
            mime = (_image_type(item) or source.content_type or "").split(";")[0].strip().lower()
            if mime not in accepted:
                raise PermanentError(f"{what}: type {mime or 'unknown'} is not accepted by WordPress")
            body: bytes | StreamedBody
            if image:
                body = source.read()
            elif source.declared_size:
                body = StreamedBody(source, source.declared_size, request.still_working)
            else:
                raise PermanentError(
                    f"{what}: the media host did not say the video's size (Content-Length), needed to stream it"
                )
            params = {"alt_text": item.alt_text} if item.alt_text else None
            headers = {
                "Content-Type": mime,
                "Content-Disposition": f'attachment; filename="{_filename(item.url, mime)}"',
            }
            if isinstance(body, StreamedBody):  # sent as it is read, with its length (not chunked)
                headers["Content-Length"] = str(len(body))
            response = self._call(
                "media",
                "POST",
                f"{site}/wp-json/wp/v2/media",
                creds,
                content=body,
                total_timeout=None if image else len(body) / MIN_UPLOAD_BYTES_PER_SECOND + 60.0,
                headers=headers,
                params=params,
            )
        media = self._json(response, "media")
        if not isinstance(media, dict) or not isinstance(media.get("id"), int):
            raise RetryableError("WordPress answered the media upload without an id")
        request.still_working()
        return media

    @staticmethod
    def _block(item: MediaItem, media: dict[str, Any]) -> str:
        """The Gutenberg block placing an uploaded attachment in the post."""
        media_id = int(media["id"])
        src = html.escape(str(media.get("source_url") or ""), quote=True)
        if _is_video(item):
            return (
                f'<!-- wp:video {{"id":{media_id}}} -->\n<figure class="wp-block-video">'
                f'<video controls src="{src}"></video></figure>\n<!-- /wp:video -->'
            )
        alt = html.escape(item.alt_text or "", quote=True)
        return (
            f'<!-- wp:image {{"id":{media_id}}} -->\n<figure class="wp-block-image">'
            f'<img src="{src}" alt="{alt}" class="wp-image-{media_id}"/></figure>\n<!-- /wp:image -->'
        )

    # --- the Protocol ---------------------------------------------------------------------------
    def _body(self, content: PostContent) -> str:
        if content.link and content.link not in content.body:
            link = html.escape(content.link, quote=True)
            return f'{content.body}\n\n<p><a href="{link}">{link}</a></p>'
        return content.body

    def publish(self, request: PublishRequest) -> PublishResult:
        creds = request.credentials
        site = site_url(creds)
        doc: dict[str, Any] = {
            "title": request.content.title,
            "content": self._body(request.content),
            "status": "publish",
            "slug": slug_for(request.idempotency_key),
        }
        blocks = []
        for index, item in enumerate(request.content.media):
            media = self._upload(request, site, index, item)
            if "featured_media" not in doc and _is_image(item):
                doc["featured_media"] = media["id"]
            else:
                blocks.append(self._block(item, media))
        if blocks:
            doc["content"] = "\n\n".join([doc["content"], *blocks])
        response = self._call("post", "POST", f"{site}/wp-json/wp/v2/posts", creds, json=doc)
        return _result(self._json(response, "post"))

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        """The post carrying this delivery's slug, or None.

        WordPress does not reject a slug that is taken: ``wp_unique_post_slug`` silently renames
        ours to ``<slug>-2`` (then ``-3``…) when a post of the same type already holds it — e.g.
        after a concurrent attempt following a lease expiry, or a copy of the post restored by the
        site's editors. So the lookup also asks for the suffixed forms (one request; ``slug``
        accepts a list); ``slug_for`` ends in a fixed word, so a suffixed slug can only be a
        WordPress rename of ours. When several exist, the oldest (lowest id) is the original.
        """
        creds = request.credentials
        slug = slug_for(request.idempotency_key)
        slugs = [slug, *(f"{slug}-{n}" for n in DUPLICATE_SUFFIXES)]
        response = self._call(
            "lookup",
            "GET",
            f"{site_url(creds)}/wp-json/wp/v2/posts",
            creds,
            params={
                "slug": ",".join(slugs),
                "status": LOOKUP_STATUSES,
                "orderby": "id",
                "order": "asc",
                "per_page": 100,
                "_fields": "id,link,date_gmt,slug,status",
            },
        )
        posts = self._json(response, "lookup")
        if not isinstance(posts, list):
            raise RetryableError("WordPress answered the lookup without a list")
        ours = [
            p for p in posts if isinstance(p, dict) and p.get("slug") in slugs and p.get("id") is not None
        ]
        if not ours:
            return None
        return _result(min(ours, key=lambda p: int(p["id"])))
