"""Twin of LinkedIn's versioned REST API (Posts, Images, statistics) and OAuth refresh endpoint.

OAuth (www.linkedin.com/oauth/v2): ``POST /oauth/v2/accessToken`` with ``grant_type=refresh_token``
and ``POST /oauth/v2/introspectToken`` (``token``, ``client_id``, ``client_secret`` → ``active``,
``status``, ``expires_at``; an unknown token is ``{"active": false}``).

Tokens (for end-to-end tests and ``mcmp dev``; rules in ``mcmp.simulators.oauth``):

* Any access token starting with ``li-test-`` is valid (member ``urn:li:person:sim``, admin of
  every organisation) unless revoked; any refresh token starting with ``li-test-refresh-`` is
  valid unless revoked, for 365 days from its first use (refreshing does not extend it).
  Construct with ``strict_tokens=True`` to accept registered tokens only.
* ``POST /_sim/tokens`` registers or revokes tokens::

      {"action": "register", "token": "abc", "member": "urn:li:person:42",
       "authors": ["urn:li:organization:7"]}          # authors omitted → any author
      {"action": "register", "refresh_token": "r1"}
      {"action": "revoke", "token": "abc"} / {"action": "revoke", "refresh_token": "r1"}

Media (LinkedIn's Images, Videos and MultiImage API pages):

* ``POST /rest/images?action=initializeUpload`` → ``value.uploadUrl`` and ``value.image``;
  ``PUT`` the bytes there; the image is then ``AVAILABLE``.
* ``POST /rest/videos?action=initializeUpload`` with ``owner`` and ``fileSizeBytes`` →
  ``value.video``, ``value.uploadToken`` and ``value.uploadInstructions`` (one ``uploadUrl``
  per part of ``video_part_bytes``, 4 MiB as LinkedIn uses, with ``firstByte``/``lastByte``);
  each part is ``PUT`` and answered with an ``ETag``; ``POST /rest/videos?action=finalizeUpload``
  with ``video``, ``uploadToken`` and ``uploadedPartIds`` (the ETags, in order) → 200; the video
  is ``PROCESSING`` for ``video_processing_seconds``, then ``AVAILABLE`` (``GET
  /rest/videos/{urn}``), or ``PROCESSING_FAILED`` when its bytes are not an MP4.
* A post's ``content.media.id`` (image or video URN) must be ``AVAILABLE``; ``content.multiImage
  .images`` takes 2 to 20 available images (``id``, ``altText``).

Uploaded bytes are counted and hashed as they arrive, never kept (``state()["videos"]`` shows
``size``, ``received`` and ``sha256``).

Query tunnelling (Rest.li's "send request query in request body", used by LinkedIn's client when a
query passes 4,000 characters): ``POST`` with ``X-HTTP-Method-Override: GET|DELETE|PUT|POST`` and
the query in a form body (``multipart/mixed``, query part then JSON part, for a request with a
body) is answered exactly as the original request, on every ``/rest`` route.

Behaviour taken from LinkedIn's docs: every ``/rest`` call needs ``LinkedIn-Version`` (missing →
400 ``VERSION_MISSING``; sunset or unknown → 426 ``NONEXISTENT_VERSION``; by default a version is
active for 12 months after its month, override with ``active_versions``) and
``X-Restli-Protocol-Version: 2.0.0``; a post is created with an empty 201 and its URN in
``x-restli-id``, read with ``GET /rest/posts/{encoded urn}`` (404 ``NOT_FOUND`` once deleted) or
``GET /rest/posts?ids=List(…)`` (BATCH_GET; images and videos too), edited with ``POST
/rest/posts/{encoded urn}`` and ``{"patch": {"$set": {"commentary": …}}}`` (PARTIAL_UPDATE, 204) and
deleted with ``DELETE /rest/posts/{encoded urn}`` (204, idempotent); a deleted post is left out
of share statistics and answers 404 to memberCreatorPostAnalytics; errors are ``{"status","serviceErrorCode","code","message"}``; throttling is a
daily per-application and per-member budget per resource that resets at midnight UTC (429, no
``Retry-After``). Share statistics grow with the post's age (``metrics_per_second``).
``state()`` shows posts, images, refresh-call counts, the access tokens the refresh endpoint
issued (``issued_tokens``), the token each post was created with (``post_tokens``), budgets and
``over_limit_refused`` (calls answered 429 for exceeding a daily budget). Control:
``POST /_sim/budget {"app_daily_limit", "member_daily_limit"}`` and
``POST /_sim/seed {"posts": [{"id": "urn:li:share:…", "owner": "urn:li:organization:…",
"age_seconds": …}]}`` (published posts for backfills).
"""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

from mcmp.simulators.core import SimRequest, SimResponse, route
from mcmp.simulators.oauth import OAuthSimulator

TEST_TOKEN_PREFIX = "li-test-"
TEST_REFRESH_PREFIX = "li-test-refresh-"
DEFAULT_MEMBER = "urn:li:person:sim"
ACCESS_TTL = 60 * 86400
REFRESH_TTL = 365 * 86400
MAX_COMMENTARY = 3000
# What a PARTIAL_UPDATE may ``$set`` on a post (Posts API, "Update Posts").
UPDATABLE_POST_FIELDS = frozenset(
    {"commentary", "contentCallToActionLabel", "contentLandingPage", "lifecycleState", "adContext"}
)
REQUIRED_POST_FIELDS = ("author", "commentary", "visibility", "distribution", "lifecycleState")
MEMBER_QUERY_TYPES = {"IMPRESSION", "MEMBERS_REACHED", "RESHARE", "REACTION", "COMMENT"}
MEMBER_QUERY_TYPES_202603 = {"POST_SAVE", "LINK_CLICKS"}
TUNNELLED_METHODS = frozenset({"GET", "DELETE", "PUT", "POST"})  # what Rest.li tunnels through POST
_VERSION = re.compile(r"^(\d{4})(\d{2})(?:\.\d{2})?$")
_CODES = {
    400: "ILLEGAL_ARGUMENT",
    401: "INVALID_ACCESS_TOKEN",
    403: "ACCESS_DENIED",
    404: "NOT_FOUND",
    422: "UNPROCESSABLE_ENTITY",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_SERVER_ERROR",
    503: "SERVICE_UNAVAILABLE",
}


def _mixed_parts(body: bytes, ctype: str) -> list[tuple[str, bytes]] | None:
    """The (content type, content) parts of a ``multipart/mixed`` body, or None when malformed
    (the boundary is case-sensitive: ``ctype`` is the header as sent)."""
    found = re.search(r'boundary="?([^";]+)"?', ctype)
    if not found:
        return None
    parts = []
    for raw in body.split(b"--" + found.group(1).encode())[1:]:
        if raw.startswith(b"--"):
            break
        head, sep, content = raw.lstrip(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            return None
        part_type = next(
            (
                line.split(":", 1)[1].strip().lower()
                for line in head.decode(errors="replace").split("\r\n")
                if line.lower().startswith("content-type:")
            ),
            "",
        )
        parts.append((part_type, content[:-2] if content.endswith(b"\r\n") else content))
    return parts


def _now_ms() -> int:
    return int(time.time() * 1000)


def _months_since(version: str, now: datetime) -> int | None:
    match = _VERSION.match(version)
    if not match:
        return None
    year, month = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12:
        return None
    return (now.year - year) * 12 + (now.month - month)


class LinkedInSimulator(OAuthSimulator):
    platform = "linkedin"
    token_path = "/oauth/v2/accessToken"
    access_prefix = TEST_TOKEN_PREFIX
    refresh_prefix = TEST_REFRESH_PREFIX
    access_ttl = float(ACCESS_TTL)
    refresh_ttl = float(REFRESH_TTL)
    invalid_client_description = "Client authentication failed"
    invalid_grant_description = (
        "The provided authorization grant or refresh token is invalid, expired or revoked."
    )

    def __init__(
        self,
        latency_ms: float = 0.0,
        seed: int | None = None,
        *,
        active_versions: set[str] | None = None,
        support_months: int = 12,
        app_daily_limit: int = 100_000,
        member_daily_limit: int = 10_000,
        video_part_bytes: int = 4 * 1024 * 1024,
        video_processing_seconds: float = 1.0,
        **kwargs: Any,
    ) -> None:
        self.video_part_bytes = video_part_bytes
        self.video_processing_seconds = video_processing_seconds
        self.active_versions = active_versions
        self.support_months = support_months
        self.app_daily_limit = app_daily_limit
        self.member_daily_limit = member_daily_limit
        super().__init__(latency_ms=latency_ms, seed=seed, **kwargs)  # tokens: OAuthSimulator

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.posts: dict[str, dict[str, Any]] = {}
            self.images: dict[str, dict[str, Any]] = {}
            self.videos: dict[str, dict[str, Any]] = {}
            self._hashes: dict[str, Any] = {}
            self.post_tokens: dict[str, str] = {}  # post urn → access token it was created with
            self.usage: Counter[tuple[str, str, str]] = Counter()  # (day, scope key, resource)
            self.over_limit_refused = 0
            self._ids = itertools.count(7_000_000_000_000_000_001)

    def state(self) -> dict[str, Any]:
        texts = Counter((p["author"], p["commentary"]) for p in self.posts.values())
        return {
            "posts": list(self.posts.values()),
            "count": len(self.posts),
            "duplicates": sum(n - 1 for n in texts.values() if n > 1),
            "images": {k: {kk: vv for kk, vv in v.items() if kk != "bytes"} for k, v in self.images.items()},
            "videos": [{k: v for k, v in video.items() if k != "head"} for video in self.videos.values()],
            **self.oauth_state(),
            "post_tokens": dict(self.post_tokens),
            "usage": {"|".join(k): v for k, v in self.usage.items()},
            "over_limit_refused": self.over_limit_refused,
        }

    # --- platform error formats ----------------------------------------------------------------
    def error_response(
        self, status: int, message: str, service_code: int | None = None, code: str | None = None
    ) -> SimResponse:
        body = {
            "status": status,
            "serviceErrorCode": service_code if service_code is not None else (100 if status == 403 else 0),
            "code": code or _CODES.get(status, "ERROR"),
            "message": message,
        }
        return SimResponse(status, body, {"x-restli-protocol-version": "2.0.0"})

    def rate_limit_response(self, retry_after: float | None) -> SimResponse:
        resp = self.error_response(
            429, "Resource level throttle APPLICATION DAY limit for calls to this resource is reached.", 101
        )
        if retry_after is not None:  # only when a fault rule asks; LinkedIn documents no Retry-After
            resp.headers["Retry-After"] = str(int(retry_after) if retry_after >= 1 else retry_after)
        return resp

    def token_revoked_response(self) -> SimResponse:
        return self.error_response(
            401, "The token used in the request has been revoked by the user", 65601, "REVOKED_ACCESS_TOKEN"
        )

    # --- control ---------------------------------------------------------------------------------
    def control(self, req: SimRequest) -> SimResponse:
        if req.path == "/_sim/budget" and req.method == "POST":
            data = req.json() or {}
            with self.lock:
                self.app_daily_limit = int(data.get("app_daily_limit", self.app_daily_limit))
                self.member_daily_limit = int(data.get("member_daily_limit", self.member_daily_limit))
                self.usage.clear()
            return SimResponse(200, {"ok": True})
        if req.path == "/_sim/seed" and req.method == "POST":
            posts = (req.json() or {}).get("posts") or []
            now = _now_ms()
            with self.lock:
                for item in posts:
                    created = now - int(float(item.get("age_seconds", 0)) * 1000)
                    self.posts[str(item["id"])] = {
                        "id": str(item["id"]),
                        "author": str(item["owner"]),
                        "commentary": "",
                        "visibility": "PUBLIC",
                        "distribution": {"feedDistribution": "MAIN_FEED"},
                        "lifecycleState": "PUBLISHED",
                        "isReshareDisabledByAuthor": False,
                        "content": None,
                        "createdAt": created,
                        "lastModifiedAt": created,
                        "publishedAt": created,
                    }
            return SimResponse(200, {"ok": True, "seeded": len(posts)})
        return super().control(req)

    def default_grants(self) -> dict[str, Any]:
        return {"member": DEFAULT_MEMBER, "authors": None}

    def grants_from(self, data: dict[str, Any]) -> dict[str, Any]:
        authors = data.get("authors")
        return {
            "member": data.get("member", DEFAULT_MEMBER),
            "authors": set(authors) if authors is not None else None,
        }

    def unsupported_grant_description(self, grant_type: str) -> str:
        return "grant_type must be refresh_token here"

    # --- query tunnelling (Rest.li "Send Rest.li request query in request body") -----------------
    def dispatch(self, req: SimRequest) -> SimResponse:
        """Route a request, first undoing Rest.li query tunnelling on ``/rest``.

        A client whose query is too long for a URL (LinkedIn's client: over 4,000 characters)
        sends ``POST`` with ``X-HTTP-Method-Override: <method>`` and the query moved into the body:
        ``application/x-www-form-urlencoded`` for a request without a body, or ``multipart/mixed``
        (the query part, then the original body) for one with a body. LinkedIn answers it exactly
        as the original request.
        """
        override = req.header("x-http-method-override").strip().upper()
        if req.method == "POST" and override and req.path.startswith("/rest/"):
            untunnelled = self._untunnel(req, override)
            if isinstance(untunnelled, SimResponse):
                return untunnelled
            req = untunnelled
        return super().dispatch(req)

    def _untunnel(self, req: SimRequest, method: str) -> SimRequest | SimResponse:
        if method not in TUNNELLED_METHODS:
            return self.error_response(400, f"X-HTTP-Method-Override: unsupported method {method!r}")
        ctype = req.header("content-type")
        headers = dict(req.headers)
        query_text, body = "", req.body
        if ctype.lower().startswith("application/x-www-form-urlencoded"):
            query_text, body = req.body.decode(errors="replace"), b""
            headers.pop("content-type", None)
        elif ctype.lower().startswith("multipart/mixed"):
            parts = _mixed_parts(req.body, ctype)
            if parts is None:
                return self.error_response(400, "multipart/mixed tunnelled request could not be parsed")
            query_text, body = "", b""
            headers.pop("content-type", None)
            for part_type, content in parts:
                if part_type.startswith("application/x-www-form-urlencoded"):
                    query_text = content.decode(errors="replace")
                else:
                    body = content
                    headers["content-type"] = part_type or "application/json"
        query = dict(req.query)
        query.update({k: v[-1] for k, v in parse_qs(query_text, keep_blank_values=True).items()})
        return SimRequest(method, req.path, query, headers, body, target=req.target)

    # --- checks shared by /rest endpoints -------------------------------------------------------
    def _version_ok(self, req: SimRequest) -> SimResponse | None:
        version = req.header("linkedin-version")
        if not version:
            return self.error_response(
                400,
                "A version must be present. Please specify a version by adding the LinkedIn-Version header.",
                code="VERSION_MISSING",
            )
        if self.active_versions is not None:
            active = version in self.active_versions
        else:
            age = _months_since(version, datetime.now(UTC))
            active = age is not None and 0 <= age <= self.support_months
        if not active:
            return self.error_response(
                426, f"Requested version {version} is not active", code="NONEXISTENT_VERSION"
            )
        return None

    def _auth(self, req: SimRequest) -> tuple[dict[str, Any] | None, SimResponse | None]:
        info, problem = self.token_info(req)
        if problem == "missing":
            return None, self.error_response(401, "Empty oauth2_access_token", 401, "EMPTY_ACCESS_TOKEN")
        if problem == "revoked":
            return None, self.token_revoked_response()
        if problem == "expired":
            return None, self.error_response(
                401, "The token used in the request has expired", 65602, "EXPIRED_ACCESS_TOKEN"
            )
        if info is None:
            return None, self.error_response(401, "Invalid access token", 65600, "INVALID_ACCESS_TOKEN")
        return info, None

    def _budget(self, member: str, resource: str) -> SimResponse | None:
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        with self.lock:
            app_key, member_key = (day, "app", resource), (day, member, resource)
            if self.usage[app_key] >= self.app_daily_limit:
                self.over_limit_refused += 1
                return self.error_response(
                    429,
                    "Resource level throttle APPLICATION DAY limit for calls to this resource is reached.",
                    101,
                )
            if self.usage[member_key] >= self.member_daily_limit:
                self.over_limit_refused += 1
                return self.error_response(
                    429,
                    "Resource level throttle MEMBER DAY limit for calls to this resource is reached.",
                    101,
                )
            self.usage[app_key] += 1
            self.usage[member_key] += 1
        return None

    def _rest(self, req: SimRequest, resource: str) -> tuple[dict[str, Any] | None, SimResponse | None]:
        problem = self._version_ok(req)
        if problem:
            return None, problem
        if req.header("x-restli-protocol-version") != "2.0.0":
            return None, self.error_response(
                400, "X-Restli-Protocol-Version: 2.0.0 is required", code="ILLEGAL_ARGUMENT"
            )
        info, denied = self._auth(req)
        if denied:
            return None, denied
        assert info is not None
        throttled = self._budget(str(info["member"]), resource)
        return (None, throttled) if throttled else (info, None)

    # --- posts -----------------------------------------------------------------------------------
    @route("POST", "/rest/posts")
    def create_post(self, req: SimRequest) -> SimResponse:
        info, problem = self._rest(req, "posts")
        if problem:
            return problem
        assert info is not None
        try:
            body = req.json()
        except ValueError:
            return self.error_response(
                400, "Request body could not be converted to data map", code="ILLEGAL_ARGUMENT"
            )
        if not isinstance(body, dict):
            return self.error_response(
                400, "Request body could not be converted to data map", code="ILLEGAL_ARGUMENT"
            )
        missing = [f for f in REQUIRED_POST_FIELDS if f not in body]
        if missing:
            lines = "".join(
                f"ERROR :: /{f} :: field is required but not found and has no default value\n"
                for f in missing
            )
            return SimResponse(422, {"message": lines, "status": 422})
        author = str(body["author"])
        if not author.startswith(("urn:li:organization:", "urn:li:person:")):
            return self.error_response(422, f"ERROR :: /author :: invalid urn {author}", 0)
        if info["authors"] is not None and author not in info["authors"] and author != info["member"]:
            return self.error_response(
                403,
                f"Not enough permissions to access: partnerApiPostsExternal.CREATE.{req.header('linkedin-version')}",
                100,
            )
        commentary = str(body["commentary"])
        if len(commentary) > MAX_COMMENTARY:
            return self.error_response(
                422, f"ERROR :: /commentary :: length {len(commentary)} exceeds {MAX_COMMENTARY}", 0
            )
        if body["visibility"] not in ("PUBLIC", "CONNECTIONS", "LOGGED_IN", "CONTAINER"):
            return self.error_response(422, "ERROR :: /visibility :: invalid enum value", 0)
        if body["lifecycleState"] not in ("PUBLISHED", "DRAFT"):
            return self.error_response(422, "ERROR :: /lifecycleState :: invalid enum value", 0)
        problem = self._content_problem(body.get("content"), author)
        if problem is not None:
            return problem
        now = _now_ms()
        with self.lock:
            urn = f"urn:li:share:{next(self._ids)}"
            self.posts[urn] = {
                "id": urn,
                "author": author,
                "commentary": commentary,
                "visibility": body["visibility"],
                "distribution": body["distribution"],
                "lifecycleState": body["lifecycleState"],
                "isReshareDisabledByAuthor": bool(body.get("isReshareDisabledByAuthor", False)),
                "content": body.get("content"),
                "createdAt": now,
                "lastModifiedAt": now,
                "publishedAt": now,
            }
            self.post_tokens[urn] = self.bearer(req)
        return SimResponse(201, None, {"x-restli-id": urn, "x-linkedin-id": urn})

    @route("GET", "/rest/posts")
    def find_posts(self, req: SimRequest) -> SimResponse:
        _, problem = self._rest(req, "posts")
        if problem:
            return problem
        if "ids" in req.query and "q" not in req.query:
            return self._batch_get(req, self._post_view)
        if req.query.get("q") != "author" or not req.query.get("author"):
            return self.error_response(400, "q=author and author are required for this finder")
        author = req.query["author"]
        count = min(int(req.query.get("count", 10)), 100)
        start = int(req.query.get("start", 0))
        sort_key = "createdAt" if req.query.get("sortBy") == "CREATED" else "lastModifiedAt"
        with self.lock:
            # Newest first, ties too (posts made within one millisecond): a feed lists the later one first.
            mine = sorted(
                (p for p in reversed(self.posts.values()) if p["author"] == author),
                key=lambda p: p[sort_key],
                reverse=True,
            )
        page = mine[start : start + count]
        return SimResponse(
            200,
            {"paging": {"start": start, "count": count, "links": [], "total": len(mine)}, "elements": page},
        )

    def _post_view(self, urn: str) -> dict[str, Any] | None:
        with self.lock:
            post = self.posts.get(urn)
            return dict(post) if post else None

    @route("GET", "/rest/posts/{urn}")
    def get_post(self, req: SimRequest) -> SimResponse:
        _, problem = self._rest(req, "posts")
        if problem:
            return problem
        post = self._post_view(unquote(req.params["urn"]))
        return SimResponse(200, post) if post else self.error_response(404, "Not Found", 0)

    @route("POST", "/rest/posts/{urn}")
    def update_post(self, req: SimRequest) -> SimResponse:
        """PARTIAL_UPDATE (Posts API "Update Posts"): ``{"patch": {"$set": {...}}}`` → 204."""
        _, problem = self._rest(req, "posts")
        if problem:
            return problem
        try:
            body = req.json()
        except ValueError:
            body = None
        patch = body.get("patch") if isinstance(body, dict) else None
        changes = patch.get("$set") if isinstance(patch, dict) else None
        if not isinstance(patch, dict) or not isinstance(changes, dict) or set(patch) - {"$set"}:
            return self.error_response(
                400, 'Request body must be {"patch": {"$set": {...}}}', code="ILLEGAL_ARGUMENT"
            )
        refused = sorted(set(changes) - UPDATABLE_POST_FIELDS)
        if refused:
            return self.error_response(422, f"ERROR :: /{refused[0]} :: field cannot be updated", 0)
        commentary = changes.get("commentary")
        if commentary is not None and len(str(commentary)) > MAX_COMMENTARY:
            return self.error_response(
                422, f"ERROR :: /commentary :: length {len(str(commentary))} exceeds {MAX_COMMENTARY}", 0
            )
        if changes.get("lifecycleState", "PUBLISHED") not in ("PUBLISHED", "DRAFT"):
            return self.error_response(422, "ERROR :: /lifecycleState :: invalid enum value", 0)
        with self.lock:
            post = self.posts.get(unquote(req.params["urn"]))
            if post is None:
                return self.error_response(404, "Not Found", 0)
            post.update(changes)
            post["lastModifiedAt"] = _now_ms()
        return SimResponse(204, None)

    @route("DELETE", "/rest/posts/{urn}")
    def delete_post(self, req: SimRequest) -> SimResponse:
        _, problem = self._rest(req, "posts")
        if problem:
            return problem
        with self.lock:
            self.posts.pop(unquote(req.params["urn"]), None)
        return SimResponse(204, None)

    # --- images ----------------------------------------------------------------------------------
    @route("POST", "/rest/images")
    def initialize_upload(self, req: SimRequest) -> SimResponse:
        _, problem = self._rest(req, "images")
        if problem:
            return problem
        if req.query.get("action") != "initializeUpload":
            return self.error_response(400, "action=initializeUpload is required")
        owner = ((req.json() or {}).get("initializeUploadRequest") or {}).get("owner")
        if not owner:
            return self.error_response(
                422,
                "ERROR :: /initializeUploadRequest/owner :: field is required but not found and has no default value",
            )
        host = req.header("host", "127.0.0.1")
        with self.lock:
            upload_id = secrets.token_hex(8)
            urn = f"urn:li:image:D4E10AQ{upload_id}"
            expires = _now_ms() + 86_400_000
            self.images[urn] = {
                "owner": owner,
                "uploaded": False,
                "upload_id": upload_id,
                "size": 0,
                "bytes": b"",
            }
        return SimResponse(
            200,
            {
                "value": {
                    "uploadUrlExpiresAt": expires,
                    "uploadUrl": f"http://{host}/dms-uploads/{upload_id}",
                    "image": urn,
                }
            },
        )

    @route("PUT", "/dms-uploads/{upload_id}")
    def upload(self, req: SimRequest) -> SimResponse:
        _, denied = self._auth(req)
        if denied:
            return denied
        with self.lock:
            for image in self.images.values():
                if image["upload_id"] == req.params["upload_id"]:
                    image.update(
                        uploaded=True,
                        size=len(req.body),
                        sha256=hashlib.sha256(req.body).hexdigest(),
                        bytes=req.body[:64],
                    )
                    return SimResponse(201, None)
        return self.error_response(404, "upload URL not found or expired")

    def _image_view(self, urn: str) -> dict[str, Any] | None:
        with self.lock:
            image = self.images.get(urn)
        if image is None:
            return None
        return {
            "id": urn,
            "owner": image["owner"],
            "status": "AVAILABLE" if image["uploaded"] else "WAITING_UPLOAD",
        }

    @route("GET", "/rest/images/{urn}")
    def get_image(self, req: SimRequest) -> SimResponse:
        _, problem = self._rest(req, "images")
        if problem:
            return problem
        view = self._image_view(unquote(req.params["urn"]))
        return SimResponse(200, view) if view else self.error_response(404, "Not Found")

    @route("GET", "/rest/images")
    def batch_get_images(self, req: SimRequest) -> SimResponse:
        _, problem = self._rest(req, "images")
        return problem or self._batch_get(req, self._image_view)

    # --- media in posts --------------------------------------------------------------------------
    def _media_status(self, urn: str) -> str | None:
        with self.lock:
            if urn in self.images:
                return "AVAILABLE" if self.images[urn]["uploaded"] else "WAITING_UPLOAD"
            video = self.videos.get(urn)
            if video is None:
                return None
            if video["status"] == "PROCESSING" and time.time() >= video["ready_at"]:
                video["status"] = (
                    "AVAILABLE"
                    if video["head"][4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide")
                    else "PROCESSING_FAILED"
                )
            return str(video["status"])

    def _content_problem(self, content: Any, author: str) -> SimResponse | None:
        if content is None:
            return None
        if not isinstance(content, dict):
            return self.error_response(422, "ERROR :: /content :: must be a record", 0)
        media_id = (content.get("media") or {}).get("id")
        if media_id is not None:
            status = self._media_status(str(media_id))
            if status is None:
                return self.error_response(400, f"Media {media_id} not found", 0)
            if status != "AVAILABLE":
                return self.error_response(400, f"Media {media_id} is not AVAILABLE ({status})", 0)
        multi = content.get("multiImage")
        if multi is not None:
            images = multi.get("images") if isinstance(multi, dict) else None
            if not isinstance(images, list) or not 2 <= len(images) <= 20:
                return self.error_response(
                    422, "ERROR :: /content/multiImage/images :: a MultiImage post takes 2 to 20 images", 0
                )
            for entry in images:
                urn = str((entry or {}).get("id") or "")
                if not urn.startswith("urn:li:image:"):
                    return self.error_response(
                        422, f"ERROR :: /content/multiImage/images :: {urn!r} is not an image URN", 0
                    )
                status = self._media_status(urn)
                if status != "AVAILABLE":
                    return self.error_response(
                        400, f"Media {urn} is not AVAILABLE ({status or 'NOT_FOUND'})", 0
                    )
        return None

    # --- videos ----------------------------------------------------------------------------------
    @route("POST", "/rest/videos")
    def video_action(self, req: SimRequest) -> SimResponse:
        _, problem = self._rest(req, "videos")
        if problem:
            return problem
        action = req.query.get("action")
        body = req.json() or {}
        if action == "initializeUpload":
            init = body.get("initializeUploadRequest") or {}
            owner, size = init.get("owner"), init.get("fileSizeBytes")
            if not owner or not isinstance(size, int) or size <= 0:
                return self.error_response(
                    422,
                    "ERROR :: /initializeUploadRequest :: owner and a positive fileSizeBytes are required",
                    0,
                )
            host = req.header("host", "127.0.0.1")
            video_id = secrets.token_hex(8)
            urn = f"urn:li:video:C5F10AQ{video_id}"
            parts = [
                {
                    "uploadUrl": f"http://{host}/dms-uploads/video/{video_id}/{i}",
                    "firstByte": first,
                    "lastByte": min(first + self.video_part_bytes, size) - 1,
                }
                for i, first in enumerate(range(0, size, self.video_part_bytes))
            ]
            with self.lock:
                self.videos[urn] = {
                    "id": urn,
                    "owner": owner,
                    "upload_id": video_id,
                    "size": size,
                    "parts": len(parts),
                    "etags": {},
                    "received": 0,
                    "next_part": 0,
                    "sha256": None,
                    "head": b"",
                    "upload_token": secrets.token_hex(6),
                    "status": "WAITING_UPLOAD",
                    "ready_at": None,
                }
                self._hashes[urn] = hashlib.sha256()
                token = self.videos[urn]["upload_token"]
            return SimResponse(
                200,
                {
                    "value": {
                        "uploadUrlsExpireAt": _now_ms() + 86_400_000,
                        "video": urn,
                        "uploadInstructions": parts,
                        "uploadToken": token,
                    }
                },
            )
        if action == "finalizeUpload":
            fin = body.get("finalizeUploadRequest") or {}
            with self.lock:
                video = self.videos.get(str(fin.get("video") or ""))
                if video is None:
                    return self.error_response(404, f"Video {fin.get('video')} not found", 0)
                if fin.get("uploadToken", "") != video["upload_token"]:
                    return self.error_response(400, "uploadToken does not match the upload", 0)
                expected = [video["etags"].get(i) for i in range(video["parts"])]
                if None in expected or video["received"] != video["size"]:
                    return self.error_response(400, "Not all parts of the video were uploaded", 0)
                given = fin.get("uploadedPartIds")
                if not isinstance(given, list) or [str(e).strip('"') for e in given] != expected:
                    return self.error_response(400, "uploadedPartIds do not match the uploaded parts", 0)
                if video["status"] == "WAITING_UPLOAD":
                    video.update(status="PROCESSING", ready_at=time.time() + self.video_processing_seconds)
            return SimResponse(200, None)
        return self.error_response(400, "action must be initializeUpload or finalizeUpload")

    @route("PUT", "/dms-uploads/video/{upload_id}/{part}", stream=True)
    def upload_video_part(self, req: SimRequest) -> SimResponse:
        _, denied = self._auth(req)
        if denied:
            return denied
        with self.lock:
            video = next((v for v in self.videos.values() if v["upload_id"] == req.params["upload_id"]), None)
        part = int(req.params["part"]) if req.params["part"].isdigit() else -1
        if video is None or not 0 <= part < video["parts"]:
            return self.error_response(404, "upload URL not found or expired")
        first = part * self.video_part_bytes
        length = min(first + self.video_part_bytes, video["size"]) - first
        digest = hashlib.sha256()
        got = 0
        stream = req.body_stream
        assert stream is not None
        in_order = part == video["next_part"]
        for data in stream:
            got += len(data)
            digest.update(data)
            if in_order:
                with self.lock:
                    self._hashes[video["id"]].update(data)
                    if len(video["head"]) < 64:
                        video["head"] += data[: 64 - len(video["head"])]
        if got != length:
            return self.error_response(400, f"part {part} must be {length} bytes, got {got}")
        etag = digest.hexdigest()[:32]
        with self.lock:
            if part not in video["etags"]:
                video["received"] += got
            video["etags"][part] = etag
            if in_order:
                video["next_part"] += 1
            if video["received"] == video["size"] and video["next_part"] == video["parts"]:
                video["sha256"] = self._hashes[video["id"]].hexdigest()
        return SimResponse(200, None, {"ETag": f'"{etag}"'})

    def _video_view(self, urn: str) -> dict[str, Any] | None:
        status = self._media_status(urn)
        if status is None or not urn.startswith("urn:li:video:"):
            return None
        with self.lock:
            video = self.videos[urn]
        return {
            "id": urn,
            "owner": video["owner"],
            "status": status,
            "uploadedAt": video["ready_at"] and int(video["ready_at"] * 1000),
        }

    @route("GET", "/rest/videos/{urn}")
    def get_video(self, req: SimRequest) -> SimResponse:
        _, problem = self._rest(req, "videos")
        if problem:
            return problem
        view = self._video_view(unquote(req.params["urn"]))
        return SimResponse(200, view) if view else self.error_response(404, "Not Found")

    @route("GET", "/rest/videos")
    def batch_get_videos(self, req: SimRequest) -> SimResponse:
        _, problem = self._rest(req, "videos")
        return problem or self._batch_get(req, self._video_view)

    # --- BATCH_GET (``GET /rest/{resource}?ids=List(urn,…)``) --------------------------------------
    def _batch_get(self, req: SimRequest, view: Callable[[str], dict[str, Any] | None]) -> SimResponse:
        """Rest.li 2.0 BATCH_GET: each id's entity under ``results``, a 404 under ``errors``."""
        ids = self._list_param(req.query.get("ids", ""))
        if not ids:
            return self.error_response(400, "ids=List(...) is required for a batch get")
        results: dict[str, Any] = {}
        statuses: dict[str, int] = {}
        errors: dict[str, Any] = {}
        for urn in ids:
            found = view(urn)
            if found is None:
                statuses[urn] = 404
                errors[urn] = {"status": 404, "code": "NOT_FOUND", "message": "Not Found"}
            else:
                statuses[urn] = 200
                results[urn] = found
        return SimResponse(200, {"results": results, "statuses": statuses, "errors": errors})

    # --- OAuth -----------------------------------------------------------------------------------
    @route("POST", "/oauth/v2/accessToken")
    def access_token(self, req: SimRequest) -> SimResponse:
        granted = self.refresh_grant(req)
        if isinstance(granted, SimResponse):
            return granted
        access, refresh, first_seen = granted
        # Refreshing does not extend the refresh token's TTL: the same token, with what is left.
        return SimResponse(
            200,
            {
                "access_token": access,
                "expires_in": ACCESS_TTL,
                "refresh_token": refresh,
                "refresh_token_expires_in": int(first_seen + REFRESH_TTL - time.time()),
            },
        )

    @route("POST", "/oauth/v2/introspectToken")
    def introspect_token(self, req: SimRequest) -> SimResponse:
        """Token introspection (LinkedIn's "Token Introspection" page): is an access token active,
        and until when. A token the platform does not know is ``{"active": false}``."""
        form = req.form()
        client = (form.get("client_id"), form.get("client_secret"))
        if not all(client) or (self.client_id is not None and client != (self.client_id, self.client_secret)):
            return self.oauth_error(401, "invalid_client", self.invalid_client_description)
        info, problem = self.token_status(form.get("token", ""))
        if problem in ("revoked", "expired"):
            return SimResponse(200, {"active": False, "status": problem, "client_id": client[0]})
        if info is None:
            return SimResponse(200, {"active": False})
        now = int(time.time())
        expires_at = int(info["expires_at"]) if info["expires_at"] is not None else now + ACCESS_TTL
        created_at = expires_at - ACCESS_TTL
        return SimResponse(
            200,
            {
                "active": True,
                "client_id": client[0],
                "authorized_at": created_at,
                "created_at": created_at,
                "status": "active",
                "expires_at": expires_at,
                "scope": "w_organization_social,r_organization_social,w_member_social",
                "auth_type": "3L",
            },
        )

    # --- statistics --------------------------------------------------------------------------------
    def _grown(self, post: dict[str, Any]) -> dict[str, int]:
        t = self.age_of(post["id"], post["createdAt"] / 1000.0)
        return {
            "impressionCount": int(t * 10),
            "uniqueImpressionsCount": int(t * 7),
            "clickCount": int(t),
            "likeCount": int(t / 2),
            "commentCount": int(t / 5),
            "shareCount": int(t / 10),
        }

    @staticmethod
    def _list_param(raw: str) -> list[str]:
        raw = raw.strip()
        if raw.startswith("List(") and raw.endswith(")"):
            raw = raw[5:-1]
        return [unquote(p) for p in raw.split(",") if p]

    @route("GET", "/rest/organizationalEntityShareStatistics")
    def share_statistics(self, req: SimRequest) -> SimResponse:
        _, problem = self._rest(req, "organizationalEntityShareStatistics")
        if problem:
            return problem
        org = req.query.get("organizationalEntity", "")
        if req.query.get("q") != "organizationalEntity" or not org.startswith("urn:li:organization:"):
            return self.error_response(400, "q=organizationalEntity and an organization URN are required")
        wanted = [("share", u) for u in self._list_param(req.query.get("shares", ""))]
        wanted += [("ugcPost", u) for u in self._list_param(req.query.get("ugcPosts", ""))]
        elements = []
        with self.lock:
            for key, urn in wanted:
                post = self.posts.get(urn)
                if post is None or post["author"] != org:
                    continue
                stats: dict[str, float] = dict(self._grown(post))
                stats["engagement"] = round(
                    (stats["clickCount"] + stats["likeCount"] + stats["commentCount"] + stats["shareCount"])
                    / max(1, stats["impressionCount"]),
                    4,
                )
                elements.append({"organizationalEntity": org, key: urn, "totalShareStatistics": stats})
        return SimResponse(200, {"paging": {"start": 0, "count": 10, "links": []}, "elements": elements})

    @route("GET", "/rest/memberCreatorPostAnalytics")
    def member_analytics(self, req: SimRequest) -> SimResponse:
        _, problem = self._rest(req, "memberCreatorPostAnalytics")
        if problem:
            return problem
        query_type = req.query.get("queryType", "")
        allowed = set(MEMBER_QUERY_TYPES)
        if req.header("linkedin-version")[:6] >= "202603":
            allowed |= MEMBER_QUERY_TYPES_202603
        if req.query.get("q") != "entity" or query_type not in allowed:
            return self.error_response(
                400, f"Invalid queryType {query_type!r} or finder", code="ILLEGAL_ARGUMENT"
            )
        match = re.match(r"^\((share|ugc):(.+)\)$", req.query.get("entity", ""))
        if not match:
            return self.error_response(400, "entity must be (share:<urn>) or (ugc:<urn>)")
        with self.lock:
            post = self.posts.get(unquote(match.group(2)))
        if post is None:
            return self.error_response(404, "Not Found")
        g = self._grown(post)
        counts = {
            "IMPRESSION": g["impressionCount"],
            "MEMBERS_REACHED": g["uniqueImpressionsCount"],
            "RESHARE": g["shareCount"],
            "REACTION": g["likeCount"],
            "COMMENT": g["commentCount"],
            "POST_SAVE": g["shareCount"] // 2,
            "LINK_CLICKS": g["clickCount"],
        }
        element = {
            "count": counts[query_type],
            "metricType": {
                "com.linkedin.adsexternalapi.memberanalytics.v1.CreatorPostAnalyticsMetricTypeV1": query_type
            },
            "targetEntity": {match.group(1): post["id"]},
        }
        return SimResponse(
            200, {"paging": {"start": 0, "count": 10, "links": [], "total": 1}, "elements": [element]}
        )
