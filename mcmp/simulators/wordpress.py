"""Twin of a WordPress site's REST API (the parts mcmp.connectors.website.wordpress uses).

Implements ``/wp-json/wp/v2/posts`` (create, list with ``slug``/``status``/``_fields``, read),
``/wp-json/wp/v2/media`` (raw-body upload with ``Content-Disposition``, ``alt_text``, read,
update) and ``/wp-json/wp/v2/users/me``, with WordPress' error bodies
(``{"code": "rest_…", "message": …, "data": {"status": …}}``) and, like real WordPress:

* HTTP Basic auth with application passwords (spaces in the password are ignored); a wrong
  password answers ``401 incorrect_password``, an unknown user ``401 invalid_username``. Set
  ``bad_auth_is_anonymous`` to mimic WordPress 6.1 under PHP's built-in server instead, which
  treats bad credentials as an anonymous visitor (``rest_cannot_create``; a lookup of
  non-public statuses answers ``400 rest_invalid_param`` with a nested ``rest_forbidden_status``).
* a slug that is taken is **renamed** to ``slug-2``, ``slug-3``… (``wp_unique_post_slug``), not
  rejected; drafts and pending posts keep their slug as given;
* posts and attachments share one id sequence (one ``wp_posts`` table);
* uploads (images and videos) are read as they arrive and only counted and hashed:
  ``state()["media"]`` shows each attachment's ``size`` and ``sha256``, never its bytes.

Users: ``admin`` / ``dev-app-password`` unless told otherwise; add more with
``POST /_sim/users {"username": …, "app_password": …}`` or :meth:`add_user`. It stores **every**
created post, so a publisher that posts twice shows up as ``duplicates`` in ``/_sim/state``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import re
import time
from datetime import UTC, datetime
from typing import Any

from mcmp.simulators.core import SimRequest, SimResponse, Simulator, route

DEFAULT_USER = "admin"
DEFAULT_APP_PASSWORD = "dev-app-password"
STATUSES = ("publish", "future", "draft", "pending", "private")
LISTABLE = (*STATUSES, "trash", "any")
UNIQUE_SLUG_EXEMPT = frozenset({"draft", "pending", "auto-draft"})
ALLOWED_UPLOADS = frozenset(
    {"image/jpeg", "image/png", "image/gif", "image/webp", "image/avif", "image/bmp", "image/tiff"}
    | {"video/mp4", "video/quicktime", "video/webm", "video/x-m4v", "video/ogg"}  # wp_get_mime_types
)
API = "/wp-json/wp/v2"


def sanitize_title(value: str) -> str:
    """A close cousin of WordPress' ``sanitize_title``: lowercase words joined by hyphens."""
    return re.sub(r"[^a-z0-9_]+", "-", value.lower()).strip("-")[:200]


def wp_error(status: int, code: str, message: str, **data: Any) -> SimResponse:
    return SimResponse(status, {"code": code, "message": message, "data": {"status": status, **data}})


def invalid_param(name: str, message: str, code: str, nested_status: int | None = None) -> SimResponse:
    """WordPress' shape of a request-argument failure (``rest_invalid_param`` with details)."""
    return wp_error(
        400,
        "rest_invalid_param",
        f"Invalid parameter(s): {name}",
        params={name: message},
        details={name: {"code": code, "message": message, "data": {"status": nested_status}}},
    )


class WordPressSimulator(Simulator):
    platform = "website-wordpress"

    def __init__(
        self,
        latency_ms: float = 0.0,
        seed: int | None = None,
        users: dict[str, str] | None = None,
        bad_auth_is_anonymous: bool = False,
    ) -> None:
        self.initial_users = dict(users) if users is not None else {DEFAULT_USER: DEFAULT_APP_PASSWORD}
        self.bad_auth_is_anonymous = bad_auth_is_anonymous
        super().__init__(latency_ms=latency_ms, seed=seed)

    # --- state ------------------------------------------------------------------------------
    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.users: dict[str, str] = dict(self.initial_users)
            self.posts: dict[int, dict[str, Any]] = {}
            self.media: dict[int, dict[str, Any]] = {}
            self._ids = itertools.count(1)

    def add_user(self, username: str, app_password: str) -> None:
        with self.lock:
            self.users[username] = app_password

    def state(self) -> dict[str, Any]:
        posts = list(self.posts.values())
        slugs = {p["slug"] for p in posts}
        renamed = [p for p in posts if (m := re.fullmatch(r"(.+)-\d+", p["slug"])) and m.group(1) in slugs]
        return {
            "posts": posts,
            "media": list(self.media.values()),
            "count": len(posts),
            "duplicates": len(renamed),
        }

    def error_response(self, status: int, message: str) -> SimResponse:
        codes = {404: "rest_no_route", 429: "rest_too_many_requests", 500: "internal_server_error"}
        return wp_error(status, codes.get(status, f"http_{status}"), message)

    def token_revoked_response(self) -> SimResponse:
        return wp_error(
            401, "incorrect_password", "The provided password is an invalid application password."
        )

    def control(self, req: SimRequest) -> SimResponse:
        if req.path == "/_sim/users" and req.method == "POST":
            data = req.json() or {}
            self.add_user(str(data["username"]), str(data["app_password"]))
            return SimResponse(200, {"ok": True})
        return super().control(req)

    # --- helpers ------------------------------------------------------------------------------
    def _user(self, req: SimRequest) -> tuple[str | None, SimResponse | None]:
        """(user, None) when authenticated, (None, None) when anonymous, (None, error) on bad auth."""
        header = req.header("authorization")
        if not header.lower().startswith("basic "):
            return None, None
        try:
            name, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        with self.lock:
            expected = self.users.get(name)
        if expected is not None and re.sub(r"[^A-Za-z0-9-]", "", password) == re.sub(
            r"[^A-Za-z0-9-]", "", expected
        ):
            return name, None
        if self.bad_auth_is_anonymous:
            return None, None
        if expected is None:
            return None, wp_error(
                401, "invalid_username", "Unknown username. Check again or try your email address."
            )
        return None, wp_error(
            401, "incorrect_password", "The provided password is an invalid application password."
        )

    def _base(self, req: SimRequest) -> str:
        return f"http://{req.header('host', '127.0.0.1')}"

    def _now(self) -> str:
        return datetime.now(UTC).replace(microsecond=0, tzinfo=None).isoformat()

    def _unique_slug(self, slug: str, post_id: int) -> str:
        """``wp_unique_post_slug``: append -2, -3… while another post holds the slug."""
        taken = {p["slug"] for p in self.posts.values() if p["id"] != post_id}
        if slug not in taken:
            return slug
        for n in itertools.count(2):
            candidate = f"{slug[: 200 - len(str(n)) - 1]}-{n}"
            if candidate not in taken:
                return candidate
        raise AssertionError("unreachable")

    @staticmethod
    def _fields(doc: dict[str, Any], req: SimRequest) -> dict[str, Any]:
        wanted = [f for f in req.query.get("_fields", "").split(",") if f]
        return {k: v for k, v in doc.items() if k in wanted} if wanted else doc

    @staticmethod
    def _text(value: Any) -> str:
        if isinstance(value, dict):
            value = value.get("raw", "")
        return value if isinstance(value, str) else ""

    # --- routes -------------------------------------------------------------------------------
    @route("GET", f"{API}/users/me")
    def me(self, req: SimRequest) -> SimResponse:
        user, denied = self._user(req)
        if denied:
            return denied
        if user is None:
            return wp_error(401, "rest_not_logged_in", "You are not currently logged in.")
        return SimResponse(200, {"id": 1, "name": user, "slug": user})

    @route("POST", f"{API}/posts")
    def create_post(self, req: SimRequest) -> SimResponse:
        user, denied = self._user(req)
        if denied:
            return denied
        if user is None:
            return wp_error(
                401, "rest_cannot_create", "Sorry, you are not allowed to create posts as this user."
            )
        try:
            doc = req.form() if "json" not in req.header("content-type") else (req.json() or {})
        except ValueError:
            return wp_error(400, "rest_invalid_json", "Invalid JSON body passed.")
        if not isinstance(doc, dict):
            return wp_error(400, "rest_invalid_json", "Invalid JSON body passed.")
        status = doc.get("status", "draft")
        if status not in STATUSES:
            return invalid_param(
                "status",
                "status is not one of publish, future, draft, pending, and private.",
                "rest_not_in_enum",
            )
        title, content = self._text(doc.get("title")), self._text(doc.get("content"))
        featured = doc.get("featured_media", 0)
        try:
            featured = int(featured or 0)
        except (TypeError, ValueError):
            return invalid_param(
                "featured_media", "featured_media is not of type integer.", "rest_invalid_type"
            )
        with self.lock:
            if featured and featured not in self.media:
                return wp_error(400, "rest_invalid_featured_media", "Invalid featured media ID.")
            post_id = next(self._ids)
            slug = sanitize_title(str(doc.get("slug") or "")) or sanitize_title(title) or str(post_id)
            if status not in UNIQUE_SLUG_EXEMPT:
                slug = self._unique_slug(slug, post_id)
            now = self._now()
            post = {
                "id": post_id,
                "date": now,
                "date_gmt": now,
                "slug": slug,
                "status": status,
                "type": "post",
                "link": f"{self._base(req)}/{slug}/",
                "title": {"raw": title, "rendered": title},
                "content": {"raw": content, "rendered": content},
                "featured_media": featured,
                "author": 1,
                "createdAt": time.time(),
            }
            self.posts[post_id] = post
            if featured:
                self.media[featured]["post"] = post_id
        return SimResponse(201, post)

    @route("GET", f"{API}/posts")
    def list_posts(self, req: SimRequest) -> SimResponse:
        user, denied = self._user(req)
        if denied:
            return denied
        statuses = [s for s in req.query.get("status", "publish").split(",") if s]
        bad = [s for s in statuses if s not in LISTABLE]
        if bad:
            return invalid_param(
                "status",
                "status is not one of publish, future, draft, pending, private, and any.",
                "rest_not_in_enum",
            )
        if user is None and any(s != "publish" for s in statuses):
            return invalid_param("status", "Status is forbidden.", "rest_forbidden_status", 401)
        try:
            per_page = int(req.query.get("per_page", "10"))
        except ValueError:
            per_page = 0
        if not 1 <= per_page <= 100:
            return invalid_param(
                "per_page", "per_page must be between 1 (inclusive) and 100 (inclusive)", "rest_out_of_bounds"
            )
        slugs = {s for s in req.query.get("slug", "").split(",") if s}
        with self.lock:
            found = [
                p
                for p in self.posts.values()
                if (p["status"] in statuses or ("any" in statuses and p["status"] != "trash"))
                and (not slugs or p["slug"] in slugs)
            ]
        key = "id" if req.query.get("orderby") == "id" else "createdAt"
        found.sort(key=lambda p: p[key], reverse=req.query.get("order", "desc") != "asc")
        page = found[:per_page]
        return SimResponse(
            200,
            [self._fields(p, req) for p in page],
            headers={"X-WP-Total": str(len(found)), "X-WP-TotalPages": str(-(-len(found) // per_page))},
        )

    @route("GET", f"{API}/posts/{{post_id}}")
    def get_post(self, req: SimRequest) -> SimResponse:
        user, denied = self._user(req)
        if denied:
            return denied
        with self.lock:
            post = self.posts.get(int(req.params["post_id"])) if req.params["post_id"].isdigit() else None
        if post is None or (user is None and post["status"] != "publish"):
            return wp_error(404, "rest_post_invalid_id", "Invalid post ID.")
        return SimResponse(200, self._fields(post, req))

    @route("POST", f"{API}/media", stream=True)
    def upload_media(self, req: SimRequest) -> SimResponse:
        user, denied = self._user(req)
        if denied:
            return denied
        if user is None:
            return wp_error(
                401, "rest_cannot_create", "Sorry, you are not allowed to upload media on this site."
            )
        disposition = req.header("content-disposition")
        if not disposition:
            return wp_error(400, "rest_upload_no_content_disposition", "No Content-Disposition supplied.")
        match = re.search(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', disposition)
        if not match:
            return wp_error(400, "rest_upload_invalid_disposition", "Invalid Content-Disposition supplied.")
        mime = req.header("content-type").split(";")[0].strip().lower()
        if mime not in ALLOWED_UPLOADS:
            return wp_error(
                500, "rest_upload_sideload_error", "Sorry, you are not allowed to upload this file type."
            )
        filename = match.group(1)
        digest, size = hashlib.sha256(), 0
        assert req.body_stream is not None
        for data in req.body_stream:
            digest.update(data)
            size += len(data)
        if not size:
            return wp_error(400, "rest_upload_no_data", "No data supplied.")
        with self.lock:
            media_id = next(self._ids)
            now = self._now()
            media = {
                "id": media_id,
                "date_gmt": now,
                "slug": sanitize_title(filename.rsplit(".", 1)[0]) or str(media_id),
                "type": "attachment",
                "media_type": "image" if mime.startswith("image/") else "file",
                "mime_type": mime,
                "alt_text": req.query.get("alt_text", ""),
                "source_url": f"{self._base(req)}/wp-content/uploads/{media_id}/{filename}",
                "size": size,
                "sha256": digest.hexdigest(),
                "post": None,
            }
            self.media[media_id] = media
        return SimResponse(201, media)

    def _media(self, req: SimRequest) -> dict[str, Any] | None:
        raw = req.params["media_id"]
        with self.lock:
            return self.media.get(int(raw)) if raw.isdigit() else None

    @route("GET", f"{API}/media/{{media_id}}")
    def get_media(self, req: SimRequest) -> SimResponse:
        _, denied = self._user(req)
        if denied:
            return denied
        media = self._media(req)
        if media is None:
            return wp_error(404, "rest_post_invalid_id", "Invalid post ID.")
        return SimResponse(200, self._fields(media, req))

    @route("POST", f"{API}/media/{{media_id}}")
    def update_media(self, req: SimRequest) -> SimResponse:
        user, denied = self._user(req)
        if denied:
            return denied
        if user is None:
            return wp_error(401, "rest_cannot_edit", "Sorry, you are not allowed to edit this post.")
        media = self._media(req)
        if media is None:
            return wp_error(404, "rest_post_invalid_id", "Invalid post ID.")
        doc = req.form()
        with self.lock:
            if "alt_text" in doc:
                media["alt_text"] = doc["alt_text"]
        return SimResponse(200, media)

    @route("DELETE", f"{API}/posts/{{post_id}}")
    def trash_post(self, req: SimRequest) -> SimResponse:
        """Move to the trash like WordPress: the slug becomes ``<slug>__trashed``, freeing it."""
        user, denied = self._user(req)
        if denied:
            return denied
        if user is None:
            return wp_error(401, "rest_cannot_delete", "Sorry, you are not allowed to delete this post.")
        with self.lock:
            post = self.posts.get(int(req.params["post_id"])) if req.params["post_id"].isdigit() else None
            if post is None:
                return wp_error(404, "rest_post_invalid_id", "Invalid post ID.")
            post["status"] = "trash"
            post["slug"] = f"{post['slug']}__trashed"
        return SimResponse(200, post)
