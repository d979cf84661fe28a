"""Twin of the Google Business Profile v4 localPosts API and Google's OAuth token endpoint.

Tokens (for end-to-end tests and ``mcmp dev``; rules in ``mcmp.simulators.oauth``):

* Any access token starting with ``gbp-test-`` is valid for every location unless revoked; any
  refresh token starting with ``gbp-test-refresh-`` is valid unless revoked. Construct with
  ``strict_tokens=True`` to accept registered tokens only.
* ``POST /_sim/tokens`` registers or revokes tokens::

      {"action": "register", "token": "abc", "locations": ["accounts/1/locations/2"],
       "scopes": ["https://www.googleapis.com/auth/business.manage"]}
      {"action": "register", "refresh_token": "r1"}
      {"action": "revoke", "token": "abc"} / {"action": "revoke", "refresh_token": "r1"}

Endpoints: ``/v4/accounts/{a}/locations/{l}/localPosts`` create (LocalPost validation: topicType
required, summary ≤ 1,500, callToAction.actionType enum with url except CALL, media only
``sourceUrl``, several photos allowed, a ``VIDEO`` item refused with "Video uploaded from post
is not currently supported." as the API answers), list (``pageSize`` default 20, max 100, ``nextPageToken``), get, delete,
``localPosts:reportInsights`` (``insights_available=False`` answers 404, as after its removal);
``POST /token`` (refresh_token grant; ``invalid_grant`` "Token has been expired or revoked." for
revoked tokens; no new refresh token is issued). Errors use Google's
``{"error": {"code", "message", "status"}}``; a per-minute project quota answers 429
``RESOURCE_EXHAUSTED``. ``state()`` shows posts, refresh-call counts, quota use and
``over_limit_refused`` (calls refused by the quota). Control: ``POST /_sim/budget
{"quota_per_minute": n}``; ``POST /_sim/seed {"posts": [{"id": "accounts/…/localPosts/…",
"age_seconds": …}]}`` stores published posts (for backfills).
"""

from __future__ import annotations

import base64
import itertools
import secrets
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from mcmp.simulators.core import SimRequest, SimResponse, route
from mcmp.simulators.oauth import OAuthSimulator

TEST_TOKEN_PREFIX = "gbp-test-"
TEST_REFRESH_PREFIX = "gbp-test-refresh-"
SCOPE = "https://www.googleapis.com/auth/business.manage"
ACTION_TYPES = {"BOOK", "ORDER", "SHOP", "LEARN_MORE", "SIGN_UP", "CALL", "GET_OFFER"}
TOPIC_TYPES = {"STANDARD", "EVENT", "OFFER", "ALERT"}
MAX_SUMMARY = 1500
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


class GoogleBusinessSimulator(OAuthSimulator):
    platform = "google-business"
    token_path = "/token"
    access_prefix = TEST_TOKEN_PREFIX
    refresh_prefix = TEST_REFRESH_PREFIX
    access_ttl = 3599.0
    invalid_client_description = "The OAuth client was not found."
    invalid_grant_description = "Token has been expired or revoked."

    def __init__(
        self,
        latency_ms: float = 0.0,
        seed: int | None = None,
        *,
        quota_per_minute: int = 300,
        insights_available: bool = True,
        **kwargs: Any,
    ) -> None:
        self.quota_per_minute = quota_per_minute
        self.insights_available = insights_available
        super().__init__(latency_ms=latency_ms, seed=seed, **kwargs)  # tokens: OAuthSimulator

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.posts: dict[str, dict[str, Any]] = {}
            self.created_at: dict[str, float] = {}
            self.quota: Counter[int] = Counter()  # minute → calls
            self.over_limit_refused = 0
            self._ids = itertools.count(1000)

    def state(self) -> dict[str, Any]:
        texts = Counter(
            (p["name"].rsplit("/localPosts/", 1)[0], p.get("summary")) for p in self.posts.values()
        )
        return {
            "posts": list(self.posts.values()),
            "count": len(self.posts),
            "duplicates": sum(n - 1 for n in texts.values() if n > 1),
            **self.oauth_state(),
            "quota_this_minute": self.quota[int(time.time() // 60)],
            "over_limit_refused": self.over_limit_refused,
        }

    # --- Google error format ---------------------------------------------------------------------
    def error_response(
        self, status: int, message: str, details: list[dict[str, Any]] | None = None
    ) -> SimResponse:
        error: dict[str, Any] = {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}
        if details:
            error["details"] = details
        return SimResponse(status, {"error": error})

    def rate_limit_response(self, retry_after: float | None) -> SimResponse:
        resp = self.error_response(
            429,
            "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute' of service "
            "'mybusiness.googleapis.com' for consumer 'project_number:0'.",
        )
        if retry_after is not None:
            resp.headers["Retry-After"] = str(int(retry_after) if retry_after >= 1 else retry_after)
        return resp

    def token_revoked_response(self) -> SimResponse:
        return self.error_response(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
            "other valid authentication credential.",
        )

    # --- control -----------------------------------------------------------------------------------
    def control(self, req: SimRequest) -> SimResponse:
        if req.path == "/_sim/budget" and req.method == "POST":
            with self.lock:
                self.quota_per_minute = int((req.json() or {}).get("quota_per_minute", self.quota_per_minute))
                self.quota.clear()
            return SimResponse(200, {"ok": True})
        if req.path == "/_sim/seed" and req.method == "POST":
            posts = (req.json() or {}).get("posts") or []
            now = time.time()
            with self.lock:
                for item in posts:
                    name = str(item["id"])
                    created = now - float(item.get("age_seconds", 0))
                    self.posts[name] = {
                        "name": name,
                        "languageCode": "en",
                        "summary": "",
                        "topicType": "STANDARD",
                        "createTime": _rfc3339(created),
                        "updateTime": _rfc3339(created),
                        "state": "LIVE",
                    }
                    self.created_at[name] = created
            return SimResponse(200, {"ok": True, "seeded": len(posts)})
        return super().control(req)

    # --- tokens ------------------------------------------------------------------------------------
    def default_grants(self) -> dict[str, Any]:
        return {"locations": None, "scopes": {SCOPE}}

    def grants_from(self, data: dict[str, Any]) -> dict[str, Any]:
        locations = data.get("locations")
        return {
            "locations": set(locations) if locations is not None else None,
            "scopes": set(data.get("scopes") or [SCOPE]),
        }

    def unsupported_grant_description(self, grant_type: str) -> str:
        return "Invalid grant_type: " + grant_type

    # --- checks --------------------------------------------------------------------------------------
    def _check(self, req: SimRequest, location: str) -> SimResponse | None:
        info, _ = self.token_info(req)
        if info is None:
            return self.token_revoked_response()
        if SCOPE not in info["scopes"]:
            return self.error_response(
                403,
                "Request had insufficient authentication scopes.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                    }
                ],
            )
        if info["locations"] is not None and location not in info["locations"]:
            return self.error_response(403, "The caller does not have permission")
        minute = int(time.time() // 60)
        with self.lock:
            if self.quota[minute] >= self.quota_per_minute:
                self.over_limit_refused += 1
                return self.rate_limit_response(None)
            self.quota[minute] += 1
        return None

    @staticmethod
    def _location(req: SimRequest) -> str:
        return f"accounts/{req.params['a']}/locations/{req.params['l']}"

    def _invalid(self, field: str, description: str) -> SimResponse:
        return self.error_response(
            400,
            "Request contains an invalid argument.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": field, "description": description}],
                }
            ],
        )

    def _validate(self, body: dict[str, Any]) -> SimResponse | None:
        topic = body.get("topicType")
        if topic not in TOPIC_TYPES:
            return self._invalid("topic_type", "Required field topicType is missing or invalid")
        summary = body.get("summary") or ""
        if not isinstance(summary, str) or len(summary) > MAX_SUMMARY:
            return self._invalid("summary", f"summary must be at most {MAX_SUMMARY} characters")
        if topic in ("EVENT", "OFFER") and not body.get("event"):
            return self._invalid("event", "event is required for EVENT and OFFER posts")
        cta = body.get("callToAction")
        if cta is not None:
            action = cta.get("actionType") if isinstance(cta, dict) else None
            if action not in ACTION_TYPES:
                return self._invalid("call_to_action.action_type", "invalid action type")
            if action not in ("CALL",) and not cta.get("url"):
                return self._invalid("call_to_action.url", "url is required for this action type")
        for i, item in enumerate(body.get("media") or []):
            if not isinstance(item, dict) or item.get("mediaFormat") not in ("PHOTO", "VIDEO"):
                return self._invalid(f"media[{i}].media_format", "mediaFormat must be PHOTO or VIDEO")
            if not str(item.get("sourceUrl") or "").startswith(("http://", "https://")):
                return self._invalid(
                    f"media[{i}].source_url", "sourceUrl is the only supported way to add media"
                )
            extra = set(item) - {"mediaFormat", "sourceUrl"}
            if extra:
                return self._invalid(f"media[{i}]", f"unsupported MediaItem fields: {sorted(extra)}")
            if item["mediaFormat"] == "VIDEO":
                return self._invalid(
                    f"media[{i}].media_format", "Video uploaded from post is not currently supported."
                )
        return None

    # --- localPosts ----------------------------------------------------------------------------------
    @route("POST", "/v4/accounts/{a}/locations/{l}/localPosts")
    def create(self, req: SimRequest) -> SimResponse:
        location = self._location(req)
        problem = self._check(req, location)
        if problem:
            return problem
        try:
            body = req.json()
        except ValueError:
            return self.error_response(400, "Invalid JSON payload received.")
        if not isinstance(body, dict):
            return self.error_response(400, "Invalid JSON payload received.")
        invalid = self._validate(body)
        if invalid:
            return invalid
        now = time.time()
        with self.lock:
            post_id = str(next(self._ids)) + secrets.token_hex(4)
            name = f"{location}/localPosts/{post_id}"
            post = {
                k: v
                for k, v in body.items()
                if k not in ("name", "createTime", "updateTime", "state", "searchUrl")
            }
            post.update(
                name=name,
                createTime=_rfc3339(now),
                updateTime=_rfc3339(now),
                state="LIVE",
                searchUrl=f"https://local.google.com/place?id={req.params['l']}&use=posts&lpsid={post_id}",
            )
            self.posts[name] = post
            self.created_at[name] = now
        return SimResponse(200, post)

    @route("GET", "/v4/accounts/{a}/locations/{l}/localPosts")
    def list_posts(self, req: SimRequest) -> SimResponse:
        location = self._location(req)
        problem = self._check(req, location)
        if problem:
            return problem
        try:
            size = int(req.query.get("pageSize", 20))
            offset = (
                int(base64.urlsafe_b64decode(req.query["pageToken"]).decode())
                if req.query.get("pageToken")
                else 0
            )
        except ValueError:
            return self.error_response(400, "Request contains an invalid argument.")
        if not 1 <= size <= 100:
            return self._invalid("page_size", "pageSize must be between 1 and 100")
        with self.lock:
            # Newest first, ties too (posts made within one clock tick): the later one first.
            mine = sorted(
                (p for p in reversed(self.posts.values()) if p["name"].startswith(location + "/")),
                key=lambda p: self.created_at[p["name"]],
                reverse=True,
            )
        page = mine[offset : offset + size]
        body: dict[str, Any] = {"localPosts": page} if page else {}
        if offset + size < len(mine):
            body["nextPageToken"] = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
        return SimResponse(200, body)

    @route("GET", "/v4/accounts/{a}/locations/{l}/localPosts/{p}")
    def get(self, req: SimRequest) -> SimResponse:
        location = self._location(req)
        problem = self._check(req, location)
        if problem:
            return problem
        with self.lock:
            post = self.posts.get(f"{location}/localPosts/{req.params['p']}")
        return SimResponse(200, post) if post else self.error_response(404, "Requested entity was not found.")

    @route("DELETE", "/v4/accounts/{a}/locations/{l}/localPosts/{p}")
    def delete(self, req: SimRequest) -> SimResponse:
        location = self._location(req)
        problem = self._check(req, location)
        if problem:
            return problem
        with self.lock:
            post = self.posts.pop(f"{location}/localPosts/{req.params['p']}", None)
        return SimResponse(200, {}) if post else self.error_response(404, "Requested entity was not found.")

    @route("POST", "/v4/accounts/{a}/locations/{l}/localPosts:reportInsights")
    def report_insights(self, req: SimRequest) -> SimResponse:
        location = self._location(req)
        problem = self._check(req, location)
        if problem:
            return problem
        if not self.insights_available:
            return self.error_response(404, "Method not found.")
        body = req.json() or {}
        names = body.get("localPostNames") or []
        metrics = [m.get("metric") for m in (body.get("basicRequest") or {}).get("metricRequests") or []]
        if not names or not metrics:
            return self.error_response(400, "Request contains an invalid argument.")
        known = {"LOCAL_POST_VIEWS_SEARCH", "LOCAL_POST_ACTIONS_CALL_TO_ACTION", "ALL"}
        if any(m not in known for m in metrics):
            return self._invalid("basic_request.metric_requests", "unsupported metric for local posts")
        if "ALL" in metrics:
            metrics = ["LOCAL_POST_VIEWS_SEARCH", "LOCAL_POST_ACTIONS_CALL_TO_ACTION"]
        out = []
        with self.lock:
            for name in names:
                if name not in self.posts or not name.startswith(location + "/"):
                    continue
                t = self.age_of(name, self.created_at[name])
                values = {
                    "LOCAL_POST_VIEWS_SEARCH": int(t * 4),
                    "LOCAL_POST_ACTIONS_CALL_TO_ACTION": int(t / 3),
                }
                out.append(
                    {
                        "localPostName": name,
                        "metricValues": [
                            {
                                "metric": m,
                                "totalValue": {"metricOption": "AGGREGATED_TOTAL", "value": str(values[m])},
                            }
                            for m in metrics
                        ],
                    }
                )
        return SimResponse(200, {"localPostMetrics": out, "timeZone": "Etc/UTC"} if out else {})

    # --- OAuth -----------------------------------------------------------------------------------------
    @route("POST", "/token")
    def token(self, req: SimRequest) -> SimResponse:
        granted = self.refresh_grant(req)
        if isinstance(granted, SimResponse):
            return granted
        access = granted[0]  # Google issues no new refresh token
        return SimResponse(
            200, {"access_token": access, "expires_in": 3599, "scope": SCOPE, "token_type": "Bearer"}
        )
