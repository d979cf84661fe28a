"""What the LinkedIn and Google Business simulators share: an OAuth 2 server's bearer tokens.

Both platforms take ``Authorization: Bearer <access token>`` and refresh through a
``grant_type=refresh_token`` endpoint. :class:`OAuthSimulator` keeps the token registry and
answers the refresh grant's checks; each twin names its own token prefixes, lifetimes, grants
(what a token may act for) and error texts, and shapes its own success body.

Token rules:

* an access token registered with ``POST /_sim/tokens`` is valid until it expires or is revoked;
* unless the simulator was built with ``strict_tokens=True``, any access token starting with
  ``access_prefix`` is valid for everything (unless revoked), and any refresh token starting
  with ``refresh_prefix`` is valid (unless revoked);
* a refresh token is refused (``invalid_grant``) once revoked or, when ``refresh_ttl`` is set,
  that long after it was first seen: refreshing does not extend it.

Control (``POST /_sim/tokens``)::

    {"action": "register", "token": "abc", "expires_in": 3600, ...grants}   # see grants_from
    {"action": "register", "refresh_token": "r1"}
    {"action": "revoke", "token": "abc"} / {"action": "revoke", "refresh_token": "r1"}

``state()`` includes ``refresh_calls`` (every call to the refresh endpoint) and
``issued_tokens`` (access tokens the refresh endpoint handed out).
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

from mcmp.simulators.core import SimRequest, SimResponse, Simulator

TokenProblem = Literal["missing", "revoked", "unknown", "expired"]


class OAuthSimulator(Simulator):
    """Bearer access tokens and the ``refresh_token`` grant of a platform twin."""

    #: Path of the refresh endpoint under the simulator's URL (``token_url`` points there in dev).
    token_path = ""
    access_prefix = "test-"
    refresh_prefix = "test-refresh-"
    access_ttl = 3600.0
    refresh_ttl: float | None = None  # None: a refresh token does not age out
    invalid_client_description = "Client authentication failed"
    invalid_grant_description = "The refresh token is invalid, expired or revoked."

    def __init__(
        self,
        latency_ms: float = 0.0,
        seed: int | None = None,
        *,
        strict_tokens: bool = False,
        client_id: str | None = None,
        client_secret: str | None = None,
        metrics_per_second: float = 1.0,
    ) -> None:
        self.strict_tokens = strict_tokens
        self.client_id = client_id
        self.client_secret = client_secret
        super().__init__(latency_ms=latency_ms, seed=seed, metrics_per_second=metrics_per_second)

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.tokens: dict[str, dict[str, Any]] = {}
            self.refresh_tokens: dict[str, float] = {}  # token → first seen (its TTL is not extended)
            self.revoked: set[str] = set()
            self.revoked_refresh: set[str] = set()
            self.refresh_calls = 0
            self.issued_tokens: list[str] = []

    def oauth_state(self) -> dict[str, Any]:
        return {"refresh_calls": self.refresh_calls, "issued_tokens": list(self.issued_tokens)}

    # --- hooks for subclasses -------------------------------------------------------------------
    def default_grants(self) -> dict[str, Any]:
        """What a test-prefix token or a refreshed token may act for (all of it)."""
        return {}

    def grants_from(self, data: dict[str, Any]) -> dict[str, Any]:
        """What a token registered through ``/_sim/tokens`` may act for."""
        return self.default_grants()

    def unsupported_grant_description(self, grant_type: str) -> str:
        return f"Unsupported grant_type: {grant_type}"

    # --- control --------------------------------------------------------------------------------
    def control(self, req: SimRequest) -> SimResponse:
        if req.path == "/_sim/tokens" and req.method == "POST":
            return self._control_tokens(req.json() or {})
        return super().control(req)

    def _control_tokens(self, data: dict[str, Any]) -> SimResponse:
        action = data.get("action", "register")
        token, refresh = str(data.get("token") or ""), str(data.get("refresh_token") or "")
        with self.lock:
            if action == "register":
                if token:
                    expires_at = time.time() + float(data.get("expires_in", self.access_ttl))
                    self.tokens[token] = {**self.grants_from(data), "expires_at": expires_at}
                    self.revoked.discard(token)
                if refresh:
                    self.refresh_tokens[refresh] = time.time()
                    self.revoked_refresh.discard(refresh)
            elif action == "revoke":
                if token:
                    self.revoked.add(token)
                if refresh:
                    self.revoked_refresh.add(refresh)
            else:
                return SimResponse(400, {"error": "action must be register or revoke"})
        return SimResponse(200, {"ok": True})

    # --- access tokens --------------------------------------------------------------------------
    @staticmethod
    def bearer(req: SimRequest) -> str:
        header = req.header("authorization")
        return header[7:].strip() if header.lower().startswith("bearer ") else ""

    def token_info(self, req: SimRequest) -> tuple[dict[str, Any] | None, TokenProblem | None]:
        """The grants of the request's bearer token, or why it is not accepted."""
        return self.token_status(self.bearer(req))

    def token_status(self, token: str) -> tuple[dict[str, Any] | None, TokenProblem | None]:
        """The grants of an access token, or why it is not accepted."""
        if not token:
            return None, "missing"
        with self.lock:
            if token in self.revoked:
                return None, "revoked"
            info = self.tokens.get(token)
        if info is None and not self.strict_tokens and token.startswith(self.access_prefix):
            info = {**self.default_grants(), "expires_at": None}
        if info is None:
            return None, "unknown"
        if info["expires_at"] is not None and info["expires_at"] < time.time():
            return None, "expired"
        return info, None

    # --- refresh grant --------------------------------------------------------------------------
    @staticmethod
    def oauth_error(status: int, error: str, description: str) -> SimResponse:
        return SimResponse(status, {"error": error, "error_description": description})

    def refresh_grant(self, req: SimRequest) -> tuple[str, str, float] | SimResponse:
        """Check a refresh request; on success a new access token, the refresh token and when the
        refresh token was first seen. Every call counts in ``refresh_calls``."""
        form = req.form()
        with self.lock:
            self.refresh_calls += 1
        grant_type = form.get("grant_type", "")
        if grant_type != "refresh_token":
            return self.oauth_error(
                400, "unsupported_grant_type", self.unsupported_grant_description(grant_type)
            )
        client = (form.get("client_id"), form.get("client_secret"))
        if not all(client) or (self.client_id is not None and client != (self.client_id, self.client_secret)):
            return self.oauth_error(401, "invalid_client", self.invalid_client_description)
        refresh = form.get("refresh_token", "")
        with self.lock:
            issued = self.refresh_tokens.get(refresh)
            if issued is None and not self.strict_tokens and refresh.startswith(self.refresh_prefix):
                issued = self.refresh_tokens.setdefault(refresh, time.time())
            aged_out = (
                issued is not None
                and self.refresh_ttl is not None
                and issued + self.refresh_ttl <= time.time()
            )
            if issued is None or refresh in self.revoked_refresh or aged_out:
                return self.oauth_error(400, "invalid_grant", self.invalid_grant_description)
            access = f"{self.access_prefix}{secrets.token_hex(12)}"
            self.tokens[access] = {**self.default_grants(), "expires_at": time.time() + self.access_ttl}
            self.issued_tokens.append(access)
        return access, refresh, issued


__all__ = ["OAuthSimulator", "TokenProblem"]
