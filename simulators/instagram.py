"""Twin of the Instagram Graph API content-publishing endpoints (Facebook Login host).

Paths are ``/{version}/…`` as on ``graph.facebook.com``:
* ``POST /{ig-user-id}/media`` creates a container (``image_url`` + ``caption`` + ``alt_text``;
  ``media_type=REELS|VIDEO`` + ``video_url``; ``is_carousel_item=true`` children; a
  ``media_type=CAROUSEL`` parent with ``children=id1,id2``) → ``{"id": container}``;
* ``GET /{container-id}?fields=status_code,status`` → ``IN_PROGRESS`` for ``processing_polls``
  polls, then ``FINISHED``; ``PUBLISHED`` once published;
* ``POST /{ig-user-id}/media_publish?creation_id=`` → ``{"id": media}``; refuses past the
  rolling-24 h quota with code 9 / subcode 2207042;
* ``GET /{ig-user-id}/content_publishing_limit`` → ``quota_usage`` and ``config.quota_total``;
* ``GET /{ig-user-id}/media?fields=id,caption,timestamp`` (reconciliation);
* ``GET /{ig-media-id}/insights?metric=views,reach,likes,comments,shares,saved`` (growing values).

Tokens: any ``access_token`` starting with ``EAAB`` is valid unless revoked through
``POST /_sim/tokens {"revoke": [...]}``; others get Graph error 190. Errors use the Graph
format ``{"error": {"message","type","code","error_subcode","is_transient","fbtrace_id"}}``;
every answer carries ``X-App-Usage``. ``POST /_sim/quota {"quota_total": N}`` sets the quota.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from simulators.core import SimRequest, SimResponse, Simulator, route

TEST_TOKEN_PREFIX = "EAAB"
QUOTA_WINDOW = 24 * 3600


def graph_error(
    status: int,
    message: str,
    code: int,
    subcode: int | None = None,
    transient: bool = False,
    type_: str = "OAuthException",
) -> SimResponse:
    error: dict[str, Any] = {
        "message": message,
        "type": type_,
        "code": code,
        "is_transient": transient,
        "fbtrace_id": "AsimTrace",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return SimResponse(status, {"error": error})


class InstagramSimulator(Simulator):
    platform = "instagram"

    def __init__(
        self,
        latency_ms: float = 0.0,
        seed: int | None = None,
        quota_total: int = 100,
        processing_polls: int = 1,
    ) -> None:
        self.quota_total = quota_total
        self.processing_polls = processing_polls
        super().__init__(latency_ms=latency_ms, seed=seed)

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.containers: dict[str, dict[str, Any]] = {}
            self.media: dict[str, dict[str, Any]] = {}
            self.revoked: set[str] = set()
            self._ids = itertools.count(17900000000000001)
            self.calls = 0

    # --- platform error formats -----------------------------------------------------------
    def error_response(self, status: int, message: str) -> SimResponse:
        if status >= 500:
            return graph_error(
                status,
                "An unexpected error has occurred. Please retry your request later.",
                2,
                transient=True,
            )
        return graph_error(status, message, 100, type_="GraphMethodException")

    def rate_limit_response(self, retry_after: float | None) -> SimResponse:
        resp = graph_error(400, "Application request limit reached", 4, transient=True)
        resp.headers["X-App-Usage"] = json.dumps({"call_count": 100, "total_cputime": 20, "total_time": 30})
        if retry_after is not None:
            resp.headers["Retry-After"] = str(int(retry_after))
        return resp

    def token_revoked_response(self) -> SimResponse:
        return graph_error(400, "Error validating access token: The session has been invalidated.", 190, 460)

    def state(self) -> dict[str, Any]:
        return {
            "containers": dict(self.containers),
            "media": list(self.media.values()),
            "published": len(self.media),
            "quota_total": self.quota_total,
        }

    # --- helpers -----------------------------------------------------------------------------
    def _auth(self, req: SimRequest) -> SimResponse | None:
        token = req.form().get("access_token") or req.header("authorization").removeprefix("Bearer ").strip()
        if not token:
            return graph_error(
                400, "An active access token must be used to query information about the current user.", 2500
            )
        if token in self.revoked or not token.startswith(TEST_TOKEN_PREFIX):
            return graph_error(
                400, "Error validating access token: The user has not authorized application.", 190, 458
            )
        self.calls += 1
        return None

    def _usage(self, resp: SimResponse) -> SimResponse:
        pct = min(100, self.calls // 10)
        resp.headers.setdefault(
            "X-App-Usage", json.dumps({"call_count": pct, "total_cputime": 1, "total_time": 1})
        )
        return resp

    def _quota_usage(self, user: str) -> int:
        cutoff = time.time() - QUOTA_WINDOW
        return sum(1 for m in self.media.values() if m["owner"] == user and m["ts"] >= cutoff)

    # --- control -----------------------------------------------------------------------------
    @route("POST", "/_sim/tokens")
    def control_tokens(self, req: SimRequest) -> SimResponse:
        data = req.json() or {}
        with self.lock:
            self.revoked.update(data.get("revoke", []))
            self.revoked.difference_update(data.get("restore", []))
        return SimResponse(200, {"ok": True})

    @route("POST", "/_sim/quota")
    def control_quota(self, req: SimRequest) -> SimResponse:
        with self.lock:
            self.quota_total = int((req.json() or {})["quota_total"])
        return SimResponse(200, {"ok": True})

    # --- Graph endpoints ---------------------------------------------------------------------
    @route("POST", "/{version}/{user}/media")
    def create_container(self, req: SimRequest) -> SimResponse:
        denied = self._auth(req)
        if denied:
            return denied
        form = req.form()
        media_type = form.get("media_type", "IMAGE").upper()
        with self.lock:
            cid = str(next(self._ids))
            container: dict[str, Any] = {
                "id": cid,
                "owner": req.params["user"],
                "media_type": media_type,
                "caption": form.get("caption", ""),
                "alt_text": form.get("alt_text"),
                "status_code": "IN_PROGRESS",
                "polls": 0,
                "created": time.time(),
                "is_carousel_item": form.get("is_carousel_item") == "true",
            }
            if media_type in ("REELS", "VIDEO"):
                if not form.get("video_url"):
                    return graph_error(400, "The parameter video_url is required", 100, 2207052)
                container["video_url"] = form["video_url"]
            elif media_type == "CAROUSEL":
                children = [c for c in form.get("children", "").split(",") if c]
                if not 2 <= len(children) <= 10 or any(c not in self.containers for c in children):
                    return graph_error(400, "Invalid children for the carousel", 100, 2207028)
                container["children"] = children
            else:
                if not form.get("image_url"):
                    return graph_error(400, "The parameter image_url is required", 100, 2207052)
                container["image_url"] = form["image_url"]
            self.containers[cid] = container
        return self._usage(SimResponse(200, {"id": cid}))

    @route("GET", "/{version}/{node}")
    def read_node(self, req: SimRequest) -> SimResponse:
        denied = self._auth(req)
        if denied:
            return denied
        node = req.params["node"]
        with self.lock:
            container = self.containers.get(node)
            if container is not None:
                container["polls"] += 1
                if container["status_code"] == "IN_PROGRESS" and container["polls"] > self.processing_polls:
                    container["status_code"] = "FINISHED"
                if (
                    time.time() - container["created"] > QUOTA_WINDOW
                    and container["status_code"] != "PUBLISHED"
                ):
                    container["status_code"] = "EXPIRED"
                return self._usage(
                    SimResponse(
                        200,
                        {
                            "id": node,
                            "status_code": container["status_code"],
                            "status": container["status_code"],
                        },
                    )
                )
            media = self.media.get(node)
        if media is None:
            return graph_error(
                400,
                f"Unsupported get request. Object with ID '{node}' does not exist",
                100,
                33,
                type_="GraphMethodException",
            )
        return self._usage(
            SimResponse(200, {"id": node, "caption": media["caption"], "timestamp": media["timestamp"]})
        )

    @route("POST", "/{version}/{user}/media_publish")
    def publish(self, req: SimRequest) -> SimResponse:
        denied = self._auth(req)
        if denied:
            return denied
        user = req.params["user"]
        creation_id = req.form().get("creation_id", "")
        with self.lock:
            container = self.containers.get(creation_id)
            if container is None or container["owner"] != user:
                return graph_error(400, "The media is not found", 24, 2207008)
            if container["status_code"] == "IN_PROGRESS":
                return graph_error(
                    400, "The media is not ready for publishing, please wait for a moment", 9007, 2207027
                )
            if container["status_code"] == "PUBLISHED":
                return graph_error(400, "The media has already been published", 9007, 2207006)
            if self._quota_usage(user) >= self.quota_total:
                return graph_error(400, "Application request limit reached", 9, 2207042, transient=True)
            mid = str(next(self._ids))
            now = time.time()
            self.media[mid] = {
                "id": mid,
                "owner": user,
                "caption": container["caption"],
                "ts": now,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(now)),
                "container": creation_id,
                "alt_text": container.get("alt_text"),
                "media_type": container["media_type"],
                "children": container.get("children", []),
            }
            container["status_code"] = "PUBLISHED"
        return self._usage(SimResponse(200, {"id": mid}))

    @route("GET", "/{version}/{user}/content_publishing_limit")
    def publishing_limit(self, req: SimRequest) -> SimResponse:
        denied = self._auth(req)
        if denied:
            return denied
        with self.lock:
            usage = self._quota_usage(req.params["user"])
        return self._usage(
            SimResponse(
                200,
                {
                    "data": [
                        {
                            "quota_usage": usage,
                            "config": {"quota_total": self.quota_total, "quota_duration": QUOTA_WINDOW},
                        }
                    ]
                },
            )
        )

    @route("GET", "/{version}/{user}/media")
    def list_media(self, req: SimRequest) -> SimResponse:
        denied = self._auth(req)
        if denied:
            return denied
        user = req.params["user"]
        with self.lock:
            items = sorted((m for m in self.media.values() if m["owner"] == user), key=lambda m: -m["ts"])
        data = [{"id": m["id"], "caption": m["caption"], "timestamp": m["timestamp"]} for m in items[:100]]
        return self._usage(SimResponse(200, {"data": data}))

    @route("GET", "/{version}/{media}/insights")
    def insights(self, req: SimRequest) -> SimResponse:
        denied = self._auth(req)
        if denied:
            return denied
        with self.lock:
            media = self.media.get(req.params["media"])
        if media is None:
            return graph_error(400, "Object does not exist", 100, 33, type_="GraphMethodException")
        age_h = max(0.0, (time.time() - media["ts"]) / 3600)
        base = int(media["id"]) % 97 + 10
        grow = {"views": 40, "reach": 25, "likes": 3, "comments": 1, "shares": 1, "saved": 1}
        metrics = [m for m in req.query.get("metric", "").split(",") if m]
        unknown = [m for m in metrics if m not in grow]
        if unknown:
            return graph_error(
                400, f"(#100) metric[0] must be one of the following values: {', '.join(grow)}", 100
            )
        data = [
            {"name": m, "period": "lifetime", "values": [{"value": int(base * grow[m] * (1 + age_h) ** 0.5)}]}
            for m in metrics
        ]
        return self._usage(SimResponse(200, {"data": data}))
