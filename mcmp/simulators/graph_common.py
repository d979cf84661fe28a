"""What the Facebook and Instagram simulators share: Meta's Graph API conventions.

* Paths are ``/{version}/...`` (``v21.0``; an unversioned path is accepted like Graph does).
* ``access_token`` comes from the query string, the form body or ``Authorization: Bearer|OAuth``.
  Token rules (see ``TEST_TOKEN_PREFIX``):

  - a token registered with ``POST /_sim/tokens`` is valid until it expires (190/463) or is
    revoked (190/460 by default);
  - unless the simulator was built with ``strict_tokens=True``, any token starting with
    ``EAAB`` is valid too (a long-lived user/Page token for every object) unless revoked;
  - anything else, or no token, is ``190`` "Invalid OAuth access token".

* Errors use Graph's format ``{"error": {"message", "type", "code", "error_subcode",
  "fbtrace_id"}}``, HTTP 400 (500/503 for codes 1/2). Instagram adds ``is_transient`` to every
  error; on both twins the unknown (code 1) and service (code 2) errors carry
  ``"is_transient": true`` as Graph sends them. ``error_data`` carries an error's details (the
  offsets a resumable upload resumes from).
* A list parameter (insights ``metric``, carousel ``children``) is a comma-separated string or
  a JSON array (``["a","b"]``), as Graph accepts both: Meta's SDKs send the JSON form.
* Every answer carries ``X-App-Usage`` and, when an object owner is known,
  ``X-Business-Use-Case-Usage`` (percentages; ``estimated_time_to_regain_access`` in minutes).
* Budgets: ``app_call_limit`` calls per ``budget_window_seconds`` for the app (then code 4) and
  ``owner_call_limit`` per Page / IG user (then the BUC code, 80001 for Pages, 80002 for IG).
* ``GET /{version}/oauth/access_token?grant_type=fb_exchange_token`` exchanges a valid token for
  a long-lived one (``expires_in`` 5183944 s), or for a non-expiring one when the old token was
  registered with ``"expires_in": null`` (a Page token); ``state()["refresh_calls"]`` counts calls.

Control endpoints (besides the core's ``/_sim/faults``, ``/_sim/state``, ``/_sim/reset``)::

    POST /_sim/tokens {"action": "register", "token": "t", "expires_in": 3600 | null,
                       "owners": ["1000001"]}          # owners omitted → every object
    POST /_sim/tokens {"action": "revoke", "token": "t", "subcode": 460}
    POST /_sim/tokens {"action": "expire", "token": "t"}  # → 190/463
    POST /_sim/tokens {"revoke": ["t1"], "restore": ["t2"]}
    POST /_sim/budget {"app_call_limit": 100, "owner_call_limit": 5, "window_seconds": 60}
    POST /_sim/delete {"id": "<post or media id>"}     # deleted on the platform
    POST /_sim/paging {"style": "time" | "cursor", "owners": ["1000001"]}  # owners omitted → all
    POST /_sim/throttle {"posts_per_minute": 300, "window_seconds": 60, "regain": true,
                         "owners": ["1000001"]}     # posts_per_minute null/0 → off

Page throttling (``/_sim/throttle``): a post (a POST to one of the twin's ``publish_edges``) that
would make more than ``posts_per_minute`` accepted posts of its owner in the trailing
``window_seconds`` is refused with Graph's code 32 "Page request limit reached" and an
``X-Page-Usage`` header (``call_count`` ≥ 100; ``estimated_time_to_regain_access`` in minutes,
until the oldest post leaves the window, unless ``"regain": false``). Accepted posts carry
``X-Page-Usage`` with the share of the limit used. ``state()["throttle_log"]`` lists each refusal
with the block it announced (seconds, or null).
    POST /_sim/seed {"posts": [{"id": "…", "owner": "<page or IG user>", "age_seconds": 86400}]}

Batch requests (Meta's ``POST /{version}/`` with ``batch=[{"method", "relative_url"}, …]``, at
most 50): each sub-request is answered as if sent alone and **counts against the budgets one by
one**, as Meta counts them; the answer is a list of ``{"code", "headers", "body"}`` (``body`` a
JSON string). ``state()["over_limit_refused"]`` counts calls refused for exceeding a budget.

Shared by both twins as well: owner checks (an owner is a numeric Page / IG user id, optionally
restricted to ``known_owners``), the node read ``GET /{v}/{id}`` and ``GET /{v}/{id}/insights``
(each twin supplies the view and the metric values), edge listings newest first with cursor
(default) or time-based paging, engagement ages and the invisible delivery marker found in a message or caption.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import re
import secrets
import string
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from mcmp.simulators.core import Handler, SimRequest, SimResponse, Simulator, route

TEST_TOKEN_PREFIX = "EAAB"
LONG_LIVED_SECONDS = 5_183_944
API_VERSION = "v21.0"  # the version written into paging URLs (any version is accepted)
_VERSION = re.compile(r"^/(v\d+\.\d+)(/.*)?$")
_ALNUM = string.ascii_letters + string.digits

MARKER_CHARS = frozenset("\u2063\u200b\u200c\u200d\u2060")
NOT_FOUND = (
    "Unsupported {verb} request. Object with ID '{id}' does not exist, cannot be loaded due to missing "
    "permissions, or does not support this operation. Please read the Graph API documentation at "
    "https://developers.facebook.com/docs/graph-api"
)


def split_fields(raw: str) -> list[str]:
    """Top-level names of a Graph ``fields`` list (``a,b.summary(true),c{d,e}`` → a, b, c)."""
    names, depth, current = [], 0, ""
    for ch in raw:
        if ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
        if ch == "," and depth == 0:
            names.append(current)
            current = ""
        else:
            current += ch
    names.append(current)
    return [re.split(r"[.({]", n.strip(), maxsplit=1)[0] for n in names if n.strip()]


def graph_list(raw: str) -> list[str]:
    """A Graph list parameter: ``a,b`` or the JSON array ``["a","b"]`` that Meta's SDKs send."""
    text = raw.strip()
    if text.startswith("["):
        try:
            loaded = json.loads(text)
        except ValueError:
            loaded = None
        if isinstance(loaded, list):
            return [str(item).strip() for item in loaded if str(item).strip()]
    return [item.strip() for item in text.split(",") if item.strip()]


def marker_in(text: str) -> str | None:
    """The trailing run of invisible marker characters in ``text``, if any."""
    tail = ""
    for ch in reversed(text):
        if ch not in MARKER_CHARS:
            break
        tail = ch + tail
    return tail or None


def duplicate_markers(items: Iterable[dict[str, Any]]) -> int:
    """How many stored posts repeat another's delivery marker (exactly-once checks in tests)."""
    markers = Counter(item["marker"] for item in items if item["marker"])
    return sum(n - 1 for n in markers.values() if n > 1)


def graph_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(epoch))


def cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def offset_of(raw: str | None) -> int:
    if not raw:
        return 0
    try:
        return max(0, int(base64.urlsafe_b64decode(raw.encode()).decode().split(":", 1)[1]))
    except (ValueError, IndexError):
        return 0


OwnerHandler = Callable[[Any, SimRequest, str], SimResponse]


def owner_route(method: str, edge: str) -> Callable[[OwnerHandler], Handler]:
    """Route ``/{owner}/{edge}``: Graph's not-found / permission answer comes before the handler,
    which receives the owner (Page / IG user) id."""
    verb = "get" if method.upper() == "GET" else "post"

    def decorate(fn: OwnerHandler) -> Handler:
        @functools.wraps(fn)
        def handler(sim: Any, req: SimRequest) -> SimResponse:
            owner = req.params["owner"]
            return sim.owner_problem(req, owner, verb) or fn(sim, req, owner)

        return route(method, f"/{{owner}}/{edge}")(handler)

    return decorate


class GraphSimulator(Simulator):
    """Token registry, budgets, usage headers, error format and OAuth exchange for Graph twins."""

    platform = "graph"
    buc_type = "pages"
    buc_code = 80001
    buc_message = "There have been too many calls to this Page account. Wait a bit and try again."
    include_is_transient = False
    default_metrics: frozenset[str] = frozenset()  # insights metrics the platform answers

    def __init__(
        self,
        latency_ms: float = 0.0,
        seed: int | None = None,
        *,
        known_owners: set[str] | None = None,
        valid_metrics: set[str] | None = None,
        strict_tokens: bool = False,
        app_id: str | None = None,
        app_secret: str | None = None,
        app_call_limit: int = 200_000,
        owner_call_limit: int = 48_000,
        budget_window_seconds: float = 3600.0,
        metrics_per_second: float = 1.0,
    ) -> None:
        self.known_owners = set(known_owners) if known_owners is not None else None
        self.valid_metrics = set(valid_metrics) if valid_metrics is not None else set(self.default_metrics)
        self.strict_tokens = strict_tokens
        self.app_id = app_id
        self.app_secret = app_secret
        self.app_call_limit = app_call_limit
        self.owner_call_limit = owner_call_limit
        self.budget_window_seconds = budget_window_seconds
        super().__init__(latency_ms=latency_ms, seed=seed, metrics_per_second=metrics_per_second)

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.tokens: dict[str, dict[str, Any]] = {}
            self.revoked: dict[str, int] = {}
            self.refresh_calls = 0
            self.calls = 0
            self.window_started = time.time()
            self.app_calls = 0
            self.owner_calls: Counter[str] = Counter()
            self.over_limit_refused = 0
            self.paging_styles: dict[str, str] = {}  # owner (or "*") → "cursor" | "time"
            self.throttle: dict[str, Any] | None = None  # see /_sim/throttle
            self.throttle_posts: dict[str, list[float]] = {}  # owner → accepted post times
            self.throttle_log: list[dict[str, Any]] = []
            self._next_id = 1_000_000_000_000 + self.rng.randrange(1_000_000)

    def new_id(self) -> str:
        with self.lock:
            self._next_id += self.rng.randrange(1, 97)
            return str(self._next_id)

    def state(self) -> dict[str, Any]:
        return {
            "refresh_calls": self.refresh_calls,
            "calls": self.calls,
            "app_calls": self.app_calls,
            "owner_calls": dict(self.owner_calls),
            "tokens": len(self.tokens),
            "revoked": len(self.revoked),
            "over_limit_refused": self.over_limit_refused,
            "throttled": len(self.throttle_log),
            "throttle_log": list(self.throttle_log),
        }

    # --- hooks for subclasses -------------------------------------------------------------------
    def owner_of(self, object_id: str) -> str | None:
        """The Page / IG user an object belongs to (for budgets and the BUC header)."""
        return None

    def delete_object(self, object_id: str) -> bool:
        return False

    def seed_object(self, object_id: str, owner: str, created: float) -> None:
        """Store a published post/media directly (``/_sim/seed``: thousands for a backfill)."""
        raise NotImplementedError

    def node_view(self, object_id: str, fields: list[str]) -> dict[str, Any] | None:
        """``GET /{v}/{id}``: the object's fields, or None when it does not exist."""
        return None

    def insight_values(self, object_id: str) -> dict[str, Any] | None:
        """Every metric's current value for an object, or None when it has no insights."""
        return None

    def metrics_problem(self, names: list[str]) -> SimResponse | None:
        """The platform's refusal of an insights ``metric`` list (empty, unknown, deprecated)."""
        return None

    # --- owners and objects ---------------------------------------------------------------------
    def is_owner(self, object_id: str) -> bool:
        """A Page / IG user: a numeric id, one of ``known_owners`` when that is set."""
        return object_id.isdigit() and (self.known_owners is None or object_id in self.known_owners)

    def owner_problem(self, req: SimRequest, owner: str, verb: str) -> SimResponse | None:
        """Graph's answer when ``owner`` does not exist or the token may not act for it."""
        if not self.is_owner(owner):
            return self.not_found(owner, verb)
        if not self.may_access(req, owner):
            return self.permission_error()
        return None

    def list_edge(
        self,
        req: SimRequest,
        owner: str,
        edge: str,
        items: Iterable[dict[str, Any]],
        created: Callable[[dict[str, Any]], float],
        view: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> SimResponse:
        """An edge listing newest first (``since``/``until`` unix filters, ``limit`` ≤ 100).

        Paging is cursor based (``paging.cursors`` and ``next`` with ``after``) unless time-based
        paging is switched on for the owner (``POST /_sim/paging``): then ``next`` carries
        ``until`` and ``__paging_token`` and there are no cursors, as Graph pages some edges.
        """
        since = float(req.query["since"]) if req.query.get("since", "").isdigit() else None
        until = float(req.query["until"]) if req.query.get("until", "").isdigit() else None
        limit = min(100, max(1, int(req.query.get("limit", "25") or 25)))
        ordered = [
            item
            for item in sorted(items, key=lambda i: (created(i), str(i.get("id"))), reverse=True)
            # Graph times are whole seconds: ``until`` takes in the whole second it names.
            if (since is None or created(item) >= since) and (until is None or int(created(item)) <= until)
        ]
        with self.lock:
            style = self.paging_styles.get(owner, self.paging_styles.get("*", "cursor"))
        if style == "time":
            return self._time_page(req, owner, edge, ordered, created, view, limit)
        start = offset_of(req.query.get("after"))
        page = ordered[start : start + limit]
        paging: dict[str, Any] = {"cursors": {"before": cursor(start), "after": cursor(start + len(page))}}
        if start + limit < len(ordered):
            paging["next"] = self._edge_url(req, owner, edge, {"after": cursor(start + limit)})
        return SimResponse(200, {"data": [view(item) for item in page], "paging": paging})

    def _time_page(
        self,
        req: SimRequest,
        owner: str,
        edge: str,
        ordered: list[dict[str, Any]],
        created: Callable[[dict[str, Any]], float],
        view: Callable[[dict[str, Any]], dict[str, Any]],
        limit: int,
    ) -> SimResponse:
        """Time-based paging: the page after the item named by ``__paging_token``."""
        token = req.query.get("__paging_token", "")
        if token:
            last = base64.urlsafe_b64decode(token.encode()).decode()
            ids = [str(item.get("id")) for item in ordered]
            ordered = ordered[ids.index(last) + 1 :] if last in ids else ordered
        page = ordered[:limit]
        paging: dict[str, Any] = {}
        if page:
            newest = int(created(page[0]))
            paging["previous"] = self._edge_url(req, owner, edge, {"since": str(newest), "__previous": "1"})
        if len(ordered) > limit:
            last_item = page[-1]
            paging["next"] = self._edge_url(
                req,
                owner,
                edge,
                {
                    "until": str(int(created(last_item))),
                    "__paging_token": base64.urlsafe_b64encode(str(last_item.get("id")).encode()).decode(),
                },
            )
        return SimResponse(200, {"data": [view(item) for item in page], "paging": paging})

    def _edge_url(self, req: SimRequest, owner: str, edge: str, extra: dict[str, str]) -> str:
        """A ``paging`` URL as Graph writes it: its own host, the version, the original query."""
        host = req.header("host") or "graph.facebook.com"
        scheme = "https" if host == "graph.facebook.com" else "http"
        keep = {
            k: v for k, v in req.query.items() if k not in ("after", "until", "__paging_token", "__previous")
        }
        keep.update(extra)
        return f"{scheme}://{host}/{API_VERSION}/{owner}/{edge}?{urlencode(keep)}"

    @route("GET", "/{object_id}")
    def read_object(self, req: SimRequest) -> SimResponse:
        object_id = req.params["object_id"]
        view = self.node_view(object_id, split_fields(req.query.get("fields", "")))
        return SimResponse(200, view) if view is not None else self.not_found(object_id)

    @route("GET", "/{object_id}/insights")
    def insights(self, req: SimRequest) -> SimResponse:
        object_id = req.params["object_id"]
        values = self.insight_values(object_id)
        if values is None:
            return self.not_found(object_id)
        names = graph_list(req.query.get("metric", ""))
        problem = self.metrics_problem(names)
        if problem is not None:
            return problem
        return SimResponse(200, {"data": insights_rows(object_id, names, values)})

    # --- error format ---------------------------------------------------------------------------
    def graph_error(
        self,
        code: int,
        message: str,
        *,
        subcode: int | None = None,
        status: int = 400,
        type_: str = "OAuthException",
        transient: bool = False,
        user_title: str | None = None,
        user_msg: str | None = None,
        headers: dict[str, str] | None = None,
        error_data: dict[str, Any] | None = None,
    ) -> SimResponse:
        error: dict[str, Any] = {"message": message, "type": type_, "code": code}
        if subcode is not None:
            error["error_subcode"] = subcode
        if self.include_is_transient or transient:
            error["is_transient"] = transient
        if error_data is not None:
            error["error_data"] = error_data
        if user_title:
            error["error_user_title"] = user_title
        if user_msg:
            error["error_user_msg"] = user_msg
        error["fbtrace_id"] = "".join(self.rng.choice(_ALNUM) for _ in range(11))
        resp = SimResponse(status, {"error": error}, dict(headers or {}))
        for key, value in self.usage_headers(None).items():
            resp.headers.setdefault(key, value)
        return resp

    def error_response(self, status: int, message: str) -> SimResponse:
        if status >= 500:
            code = 2 if status == 503 else 1
            text = "Service temporarily unavailable" if code == 2 else "An unknown error has occurred."
            return self.graph_error(code, text, status=status, transient=True)
        if status == 404:
            return self.graph_error(2500, message)
        return self.graph_error(100, message)

    def rate_limit_response(self, retry_after: float | None) -> SimResponse:
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["Retry-After"] = str(int(retry_after) if retry_after >= 1 else retry_after)
        resp = self.graph_error(613, "Calls to this api have exceeded the rate limit.", headers=headers)
        if retry_after is not None:
            minutes = max(1, math.ceil(retry_after / 60))
            resp.headers["X-Business-Use-Case-Usage"] = self._buc_header("0", 100, minutes)
        return resp

    def token_revoked_response(self) -> SimResponse:
        return self.graph_error(
            190,
            "Error validating access token: The session has been invalidated because the user changed "
            "their password or Facebook has changed the session for security reasons.",
            subcode=460,
        )

    # --- usage ----------------------------------------------------------------------------------
    def _roll_window(self) -> None:
        if time.time() - self.window_started >= self.budget_window_seconds:
            self.window_started = time.time()
            self.app_calls = 0
            self.owner_calls.clear()

    def _regain_minutes(self) -> int:
        left = self.window_started + self.budget_window_seconds - time.time()
        return max(1, math.ceil(left / 60))

    def _buc_header(self, owner: str, pct: int, minutes: int) -> str:
        entry = {
            "type": self.buc_type,
            "call_count": pct,
            "total_cputime": pct // 2,
            "total_time": pct // 2,
            "estimated_time_to_regain_access": minutes,
        }
        return json.dumps({owner: [entry]})

    def usage_headers(self, owner: str | None) -> dict[str, str]:
        with self.lock:
            app_pct = min(100, int(100 * self.app_calls / max(1, self.app_call_limit)))
            headers = {
                "X-App-Usage": json.dumps(
                    {"call_count": app_pct, "total_cputime": app_pct // 2, "total_time": app_pct // 2}
                )
            }
            if owner is not None:
                pct = min(100, int(100 * self.owner_calls[owner] / max(1, self.owner_call_limit)))
                minutes = self._regain_minutes() if pct >= 100 else 0
                headers["X-Business-Use-Case-Usage"] = self._buc_header(owner, pct, minutes)
        return headers

    def _spend(self, owner: str | None) -> SimResponse | None:
        with self.lock:
            self._roll_window()
            self.app_calls += 1
            if owner is not None:
                self.owner_calls[owner] += 1
            app_over = self.app_calls > self.app_call_limit
            owner_over = owner is not None and self.owner_calls[owner] > self.owner_call_limit
            if app_over or owner_over:
                self.over_limit_refused += 1
        if app_over:
            return self.graph_error(4, "(#4) Application request limit reached")
        if owner_over:
            return self.graph_error(self.buc_code, f"(#{self.buc_code}) {self.buc_message}")
        return None

    # --- tokens ---------------------------------------------------------------------------------
    @staticmethod
    def token_of(req: SimRequest) -> str:
        auth = req.header("authorization")
        if auth.lower().startswith(("bearer ", "oauth ")):
            return auth.split(" ", 1)[1].strip()
        return req.form().get("access_token", "")

    def check_token(self, token: str) -> SimResponse | None:
        if not token:
            return self.graph_error(190, "An access token is required to request this resource.")
        with self.lock:
            if token in self.revoked:
                subcode = self.revoked[token]
                if subcode == 463:
                    return self.graph_error(
                        190, "Error validating access token: Session has expired.", subcode=463
                    )
                return (
                    self.token_revoked_response()
                    if subcode == 460
                    else self.graph_error(
                        190, "Error validating access token: the session is no longer valid.", subcode=subcode
                    )
                )
            info = self.tokens.get(token)
            if info is not None:
                if info["expires_at"] is not None and info["expires_at"] <= time.time():
                    return self.graph_error(
                        190, "Error validating access token: Session has expired.", subcode=463
                    )
                return None
        if not self.strict_tokens and token.startswith(TEST_TOKEN_PREFIX):
            return None
        return self.graph_error(190, "Invalid OAuth access token - Cannot parse access token")

    def may_access(self, req: SimRequest, owner: str) -> bool:
        with self.lock:
            info = self.tokens.get(self.token_of(req))
        return info is None or info["owners"] is None or owner in info["owners"]

    def permission_error(self) -> SimResponse:
        return self.graph_error(
            200,
            "(#200) If posting to a page, requires both pages_read_engagement and pages_manage_posts as an "
            "admin with sufficient administrative permission",
            type_="OAuthException",
        )

    def not_found(self, object_id: str, verb: str = "get") -> SimResponse:
        return self.graph_error(
            100, NOT_FOUND.format(verb=verb, id=object_id), subcode=33, type_="GraphMethodException"
        )

    # --- control --------------------------------------------------------------------------------
    def control(self, req: SimRequest) -> SimResponse:
        if req.method == "POST" and req.path == "/_sim/tokens":
            return self._control_tokens(req.json() or {})
        if req.method == "POST" and req.path == "/_sim/budget":
            data = req.json() or {}
            with self.lock:
                self.app_call_limit = int(data.get("app_call_limit", self.app_call_limit))
                self.owner_call_limit = int(data.get("owner_call_limit", self.owner_call_limit))
                self.budget_window_seconds = float(data.get("window_seconds", self.budget_window_seconds))
                self.window_started = time.time()
                self.app_calls = 0
                self.owner_calls.clear()
            return SimResponse(200, {"ok": True})
        if req.method == "POST" and req.path == "/_sim/seed":
            now = time.time()
            posts = (req.json() or {}).get("posts") or []
            for item in posts:
                self.seed_object(str(item["id"]), str(item["owner"]), now - float(item.get("age_seconds", 0)))
            return SimResponse(200, {"ok": True, "seeded": len(posts)})
        if req.method == "POST" and req.path == "/_sim/throttle":
            data = req.json() or {}
            limit = data.get("posts_per_minute")
            with self.lock:
                self.throttle = (
                    {
                        "limit": int(limit),
                        "window": float(data.get("window_seconds", 60.0)),
                        "regain": bool(data.get("regain", True)),
                        "owners": set(map(str, data["owners"])) if data.get("owners") else None,
                    }
                    if limit
                    else None
                )
                self.throttle_posts.clear()
            return SimResponse(200, {"ok": True})
        if req.method == "POST" and req.path == "/_sim/paging":
            data = req.json() or {}
            style = str(data.get("style", "cursor"))
            if style not in ("cursor", "time"):
                return SimResponse(400, {"error": "style must be cursor or time"})
            with self.lock:
                for owner in data.get("owners") or ["*"]:
                    self.paging_styles[str(owner)] = style
            return SimResponse(200, {"ok": True})
        if req.method == "POST" and req.path == "/_sim/delete":
            deleted = self.delete_object(str((req.json() or {}).get("id", "")))
            return SimResponse(200 if deleted else 404, {"ok": deleted})
        return super().control(req)

    def register_token(
        self, token: str, expires_in: float | None = LONG_LIVED_SECONDS, owners: Any = None
    ) -> None:
        with self.lock:
            self.tokens[token] = {
                "expires_at": None if expires_in is None else time.time() + float(expires_in),
                "owners": set(map(str, owners)) if owners is not None else None,
            }
            self.revoked.pop(token, None)

    def _control_tokens(self, data: dict[str, Any]) -> SimResponse:
        if "revoke" in data or "restore" in data:  # list form: {"revoke": [...], "restore": [...]}
            with self.lock:
                for token in data.get("revoke") or []:
                    self.revoked[str(token)] = 460
                for token in data.get("restore") or []:
                    self.revoked.pop(str(token), None)
            return SimResponse(200, {"ok": True})
        action, token = data.get("action", "register"), str(data.get("token") or "")
        if not token:
            return SimResponse(400, {"error": "token is required"})
        if action == "register":
            self.register_token(token, data.get("expires_in", LONG_LIVED_SECONDS), data.get("owners"))
        elif action == "revoke":
            with self.lock:
                self.revoked[token] = int(data.get("subcode", 460))
        elif action == "expire":
            with self.lock:
                self.revoked[token] = 463
        else:
            return SimResponse(400, {"error": "action must be register, revoke or expire"})
        return SimResponse(200, {"ok": True})

    # --- dispatch -------------------------------------------------------------------------------
    def streams_body(self, method: str, path: str) -> bool:
        match = _VERSION.match(path)
        return super().streams_body(method, (match.group(2) or "/") if match else path)

    def dispatch(self, req: SimRequest) -> SimResponse:
        match = _VERSION.match(req.path)
        path = (match.group(2) or "/") if match else req.path
        routed = SimRequest(req.method, path, req.query, req.headers, req.body, body_stream=req.body_stream)
        first = path.strip("/").split("/", 1)[0]
        owner = self.owner_of(first) if first else None
        if req.method == "POST" and path == "/":
            return self._batch(routed)
        with self.lock:
            self.calls += 1
        if path.startswith("/oauth/"):
            resp = super().dispatch(routed)
        else:
            resp = (
                self.check_token(self.token_of(routed)) or self._spend(owner) or self._publish(routed, owner)
            )
        for key, value in self.usage_headers(owner).items():
            resp.headers[key] = value
        return resp

    # --- page throttling (posts per minute) ------------------------------------------------------
    publish_edges: tuple[str, ...] = ()  # the edges whose POST creates a post (counted when throttling)

    def _publish(self, req: SimRequest, owner: str | None) -> SimResponse:
        """Route the request; a post beyond the owner's posts-per-window limit is Graph's code 32."""
        parts = req.path.strip("/").split("/")
        with self.lock:
            config = self.throttle
        counted = (
            config is not None
            and owner is not None
            and req.method == "POST"
            and len(parts) == 2
            and parts[1] in self.publish_edges
            and (config["owners"] is None or owner in config["owners"])
        )
        if not counted or config is None or owner is None:
            return super().dispatch(req)
        now = time.time()
        with self.lock:
            recent = [t for t in self.throttle_posts.get(owner, []) if t > now - config["window"]]
            self.throttle_posts[owner] = recent
            full = len(recent) >= config["limit"]
            regain = (recent[0] + config["window"] - now) if full else 0.0
        if full:
            minutes = max(1, math.ceil(regain / 60)) if config["regain"] else None
            with self.lock:
                self.throttle_log.append(
                    {"t": now, "owner": owner, "announced": minutes * 60 if minutes else None}
                )
            resp = self.graph_error(32, "(#32) Page request limit reached")
            resp.headers["X-Page-Usage"] = self._page_usage(
                100 * (len(recent) + 1) // config["limit"], minutes
            )
            return resp
        resp = super().dispatch(req)
        with self.lock:
            if resp.status < 400:
                self.throttle_posts[owner].append(now)
            used = len(self.throttle_posts[owner])
        resp.headers["X-Page-Usage"] = self._page_usage(100 * used // config["limit"], None)
        return resp

    @staticmethod
    def _page_usage(pct: int, regain_minutes: int | None) -> str:
        """``X-Page-Usage``: percentages like ``X-App-Usage``, plus the regain time when throttled."""
        usage: dict[str, Any] = {"call_count": pct, "total_cputime": pct // 4, "total_time": pct // 4}
        if regain_minutes is not None:
            usage["estimated_time_to_regain_access"] = regain_minutes
        return json.dumps(usage)

    def _batch(self, req: SimRequest) -> SimResponse:
        token = self.token_of(req)
        problem = self.check_token(token)
        if problem is not None:
            return problem
        try:
            calls = json.loads(req.form().get("batch") or "")
        except ValueError:
            calls = None
        if not isinstance(calls, list) or not 1 <= len(calls) <= 50:
            return self.graph_error(100, "(#100) batch must be a JSON array of 1 to 50 requests")
        out = []
        for call in calls:
            parts = urlsplit("/" + str(call.get("relative_url", "")).lstrip("/"))
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            query.setdefault("access_token", token)
            body = str(call.get("body") or "").encode()
            sub = SimRequest(str(call.get("method", "GET")).upper(), parts.path, query, {}, body)
            resp = self.dispatch(sub)
            payload, _ = resp.encode()
            headers = [{"name": k, "value": v} for k, v in resp.headers.items()]
            out.append({"code": resp.status, "headers": headers, "body": payload.decode()})
        resp = SimResponse(200, out)
        resp.headers.update(self.usage_headers(None))
        return resp

    # --- OAuth ----------------------------------------------------------------------------------
    @route("GET", "/oauth/access_token")
    def exchange(self, req: SimRequest) -> SimResponse:
        q = req.form()
        with self.lock:
            self.refresh_calls += 1
        if q.get("grant_type") != "fb_exchange_token":
            return self.graph_error(100, "(#100) Unsupported grant_type; use fb_exchange_token")
        if not q.get("client_id") or (self.app_id is not None and q["client_id"] != self.app_id):
            return self.graph_error(101, "Error validating application. Invalid application ID.")
        if not q.get("client_secret") or (
            self.app_secret is not None and q["client_secret"] != self.app_secret
        ):
            return self.graph_error(1, "Error validating client secret.")
        old = q.get("fb_exchange_token", "")
        problem = self.check_token(old)
        if problem is not None:
            return problem
        with self.lock:
            info = self.tokens.get(old)
        never = info is not None and info["expires_at"] is None
        owners = info["owners"] if info is not None else None
        new = f"{TEST_TOKEN_PREFIX}{secrets.token_hex(16)}"
        self.register_token(new, None if never else LONG_LIVED_SECONDS, owners)
        body: dict[str, Any] = {"access_token": new, "token_type": "bearer"}
        if not never:
            body["expires_in"] = LONG_LIVED_SECONDS
        return SimResponse(200, body)


def insights_rows(object_id: str, names: list[str], values: dict[str, int]) -> list[dict[str, Any]]:
    """The ``data`` rows of a Graph ``/insights`` answer (lifetime period), as Meta shapes them."""
    return [
        {
            "name": name,
            "period": "lifetime",
            "values": [{"value": values.get(name, 0)}],
            "title": name.replace("_", " ").capitalize(),
            "description": f"Lifetime: {name}",
            "id": f"{object_id}/insights/{name}/lifetime",
        }
        for name in names
    ]


__all__ = [
    "LONG_LIVED_SECONDS",
    "MARKER_CHARS",
    "TEST_TOKEN_PREFIX",
    "GraphSimulator",
    "cursor",
    "duplicate_markers",
    "graph_list",
    "graph_time",
    "insights_rows",
    "marker_in",
    "offset_of",
    "owner_route",
    "split_fields",
]
