"""Twin of a client website's signed-webhook receiver (see mcmp.connectors.website.webhook).

Sites are registered with ``POST /_sim/sites {"site": "acme", "secret": "..."}``; the simulator
also accepts any site when signed with ``default_secret`` (``dev-webhook-secret`` unless set),
so ``mcmp dev`` and end-to-end tests need no set-up. It verifies signatures (method, path and
query, ``Idempotency-Key``, timestamp, body; see mcmp.connectors.signing) and timestamps,
stores **every** accepted post (it does not de-duplicate by ``Idempotency-Key``, so a publisher
that posts twice is caught), answers lookups by idempotency key, and injects the core's faults.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from typing import Any

from mcmp.connectors.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_problem
from mcmp.simulators.core import SimRequest, SimResponse, Simulator, route

DEFAULT_SECRET = "dev-webhook-secret"


class WebhookSimulator(Simulator):
    platform = "website"

    def __init__(
        self, latency_ms: float = 0.0, seed: int | None = None, default_secret: str | None = DEFAULT_SECRET
    ):
        self.default_secret = default_secret
        super().__init__(latency_ms=latency_ms, seed=seed)

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.posts: list[dict[str, Any]] = []
            self.secrets: dict[str, str] = {}
            self._ids = itertools.count(1)

    def error_response(self, status: int, message: str) -> SimResponse:
        return SimResponse(status, {"error": message, "status": status})

    def state(self) -> dict[str, Any]:
        keys = Counter(p["idempotencyKey"] for p in self.posts)
        return {
            "posts": list(self.posts),
            "count": len(self.posts),
            "duplicates": sum(n - 1 for n in keys.values() if n > 1),
        }

    def _secret(self, site: str) -> str | None:
        return self.secrets.get(site, self.default_secret)

    def _check_signature(self, req: SimRequest, site: str) -> SimResponse | None:
        secret = self._secret(site)
        if secret is None:
            return self.error_response(401, f"unknown site {site!r}")
        problem = signature_problem(
            secret,
            method=req.method,
            target=req.target,
            idempotency_key=req.header(IDEMPOTENCY_HEADER.lower()),
            timestamp=req.header(TIMESTAMP_HEADER.lower()),
            body=req.body,
            signature=req.header(SIGNATURE_HEADER.lower()),
        )
        if problem:
            return self.error_response(401, f"invalid signature: {problem}")
        return None

    @route("POST", "/_sim/sites")
    def register_site(self, req: SimRequest) -> SimResponse:
        data = req.json() or {}
        with self.lock:
            self.secrets[str(data["site"])] = str(data["secret"])
        return SimResponse(200, {"ok": True})

    @route("POST", "/hooks/{site}")
    def receive(self, req: SimRequest) -> SimResponse:
        site = req.params["site"]
        denied = self._check_signature(req, site)
        if denied:
            return denied
        key = req.header(IDEMPOTENCY_HEADER.lower())
        if not key:
            return self.error_response(400, f"missing {IDEMPOTENCY_HEADER} header")
        try:
            doc = req.json()
        except ValueError:
            return self.error_response(400, "body is not JSON")
        if not isinstance(doc, dict) or not doc.get("title") or not isinstance(doc.get("body"), str):
            return self.error_response(422, "title and body are required")
        with self.lock:
            post_id = f"{site}-{next(self._ids)}"
            stored = {
                "id": post_id,
                "site": site,
                "idempotencyKey": key,
                "title": doc["title"],
                "body": doc["body"],
                "postId": doc.get("postId"),
                "media": doc.get("media") or [],
                "receivedAt": time.time(),
                "url": f"https://{site}.example/posts/{post_id}",
            }
            self.posts.append(stored)
        return SimResponse(201, {"id": post_id, "url": stored["url"]})

    @route("GET", "/hooks/{site}")
    def lookup(self, req: SimRequest) -> SimResponse:
        site = req.params["site"]
        denied = self._check_signature(req, site)
        if denied:
            return denied
        key = req.query.get("idempotency_key", "")
        with self.lock:
            found = [p for p in self.posts if p["site"] == site and p["idempotencyKey"] == key]
        if not found:
            return self.error_response(404, "no post with that idempotency key")
        return SimResponse(200, {"id": found[0]["id"], "url": found[0]["url"]})
