"""Google Business Profile local posts through the v4 REST API (``mybusiness.googleapis.com``).

Transport choice: ``requests`` through ``mcmp.connectors.http.send`` on one pooled session, with the
``Authorization`` header produced by google-auth (``Credentials(token).apply``), rather than
``googleapiclient.discovery.build_from_document``. google-api-python-client has no bundled
``mybusiness v4`` document (we would vendor one), runs on ``httplib2`` whose ``Http`` objects
are not thread-safe, and its socket errors do not tell "never sent" from "sent, no answer" — the
distinction reconciliation depends on. ``google.auth.transport.requests.AuthorizedSession`` was
not used either: its built-in refresh-on-401 would refresh tokens outside the worker's
single-flight refresh. URLs are ``{settings.google_business.base_url}/{api_version}/…`` so a
simulator is reached by configuration alone.

Refresh uses google-auth itself (``Credentials(refresh_token=…).refresh(Request())``) against
``settings.google_business.token_url``.

Deleted posts: ``reportInsights`` leaves a deleted post out of its answer (or refuses the call),
so a post that comes back without insights is looked up with ``GET v4/{localPost name}``;
404 ``NOT_FOUND`` there gives ``MetricsSnapshot(deleted=True)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import google.oauth2.credentials
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
from mcmp.connectors.google_business.classify import classify
from mcmp.connectors.http import send
from mcmp.connectors.markers import MARKER_LENGTH, SENTINEL, marker_for, strip_markers
from mcmp.connectors.media import MB, MediaLimits, check_media, item_name
from mcmp.connectors.types import (
    Credentials,
    MetricsRef,
    MetricsSnapshot,
    PostContent,
    PublishRequest,
    PublishResult,
    TokenGrant,
)

MAX_SUMMARY_CHARS = 1500
# LocalPost CallToAction.actionType (v4 reference). GET_OFFER is only for OFFER posts (and
# deprecated), so STANDARD posts accept these; CALL uses the location's phone number, no url.
CTA_ACTION_TYPES = frozenset({"BOOK", "ORDER", "SHOP", "LEARN_MORE", "SIGN_UP", "CALL"})
PAGE_SIZE = 100  # localPosts.list maximum
RECONCILE_MAX_PAGES = 10
WINDOW_SKEW = timedelta(minutes=10)
INSIGHTS_BATCH = 10
INSIGHTS_LOOKBACK = timedelta(days=365)
_POST_NAME = re.compile(r"accounts/[^/]+/locations/[^/]+/localPosts/[^/]+")

# Seed metric ← LocalPostMetric (localPosts:reportInsights). Only two per-post metrics exist;
# reach/likes/comments/shares/saves stay absent.
# Deprecation: Google's pages carry a banner moving v4 reportInsights to the Business Profile
# Performance API, whose changelog lists "Removal of accounts.locations.localPosts.reportInsights"
# and which has location-level daily metrics only — so per-post metrics may stop entirely. A
# 404/400/501 from this call therefore yields empty metrics instead of failing the snapshot (each
# post is then looked up, so a deleted one is still recognised).
INSIGHT_METRICS = {
    "LOCAL_POST_VIEWS_SEARCH": "impressions",
    "LOCAL_POST_ACTIONS_CALL_TO_ACTION": "clicks",
}


class _TimeoutRequest(google.auth.transport.requests.Request):
    """google-auth's transport with our timeout (its default is 120 s)."""

    def __init__(self, session: requests.Session, timeout: float) -> None:
        super().__init__(session)
        self._timeout = timeout

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: Any = None,
        **kwargs: Any,
    ) -> Any:
        return super().__call__(  # type: ignore[no-untyped-call]  # google-auth leaves it unannotated
            url, method=method, body=body, headers=headers, timeout=self._timeout, **kwargs
        )


def location_name(credentials: Credentials) -> str:
    """``accounts/{a}/locations/{l}`` from ``externalAccountId`` or ``metadata`` (locationName or accountId + locationId)."""
    meta = credentials.metadata
    raw = str(meta.get("locationName") or credentials.external_account_id or "").strip().strip("/")
    if raw.startswith("accounts/") and "/locations/" in raw:
        parts = raw.split("/")
        if len(parts) == 4 and all(parts):
            return raw
    account = str(meta.get("accountId") or "").removeprefix("accounts/")
    location = str(meta.get("locationId") or raw).removeprefix("locations/")
    if account and location and "/" not in location:
        return f"accounts/{account}/locations/{location}"
    raise ValidationError(
        "account.externalAccountId",
        "needs the location resource name accounts/{accountId}/locations/{locationId}",
    )


def summary_text(content: PostContent) -> str:
    return content.body.strip() or content.title.strip()


def call_to_action(content: PostContent) -> dict[str, str] | None:
    """``options.callToAction`` ({actionType, url}); else LEARN_MORE to ``content.link`` when there is one."""
    cta = content.options.get("callToAction")
    if cta is None:
        return {"actionType": "LEARN_MORE", "url": content.link} if content.link else None
    if not isinstance(cta, dict):
        raise ValidationError("options.callToAction", "must be an object {actionType, url}")
    action = str(cta.get("actionType") or "").upper()
    if action not in CTA_ACTION_TYPES:
        raise ValidationError(
            "options.callToAction.actionType", f"must be one of {', '.join(sorted(CTA_ACTION_TYPES))}"
        )
    url = cta.get("url") or (content.link if action != "CALL" else None)
    if action == "CALL":
        return {"actionType": action}
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValidationError("options.callToAction.url", f"{action} needs an http(s) url")
    return {"actionType": action, "url": url}


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    if "." in text:  # RFC 3339 with up to nanoseconds: trim to microseconds for fromisoformat
        head, rest = text.split(".", 1)
        digits = "".join(ch for ch in rest if ch.isdigit())
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits) :]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class GoogleBusinessConnector(ConnectorBase):
    """Publishes STANDARD local posts (text, optional call to action, photos) to one location.

    Media: every photo of the post goes in ``media[]`` as ``{"mediaFormat": "PHOTO",
    "sourceUrl": …}`` (Google fetches it; ``sourceUrl`` is the only MediaItem field local posts
    take). Videos are refused before any call: the API answers a VIDEO item in a local post with
    "Video uploaded from post is not currently supported."
    """

    platform = "google-business"
    media_limits = MediaLimits(
        kinds=frozenset({"image"}),
        max_bytes={"image": 5 * MB},  # Business Profile photos: JPG or PNG up to 5 MB
        mime_types={"image": frozenset({"image/jpeg", "image/png"})},
        notes={
            "image": "several photos per post, fetched by Google from their URL",
            "video": "local posts take photos only (the API refuses videos in posts)",
        },
    )

    def __init__(self, settings: Settings, *, clients: HttpClients | None = None) -> None:
        super().__init__(settings, clients=clients)
        self.cfg = settings.google_business
        self.base = f"{self.cfg.base_url.rstrip('/')}/{self.cfg.api_version.strip('/')}"
        self.timeout = self.cfg.timeout_seconds
        self.session = self.clients.session()

    def _headers(self, token: str) -> dict[str, str]:
        headers: dict[str, str] = {"Content-Type": "application/json"}
        google.oauth2.credentials.Credentials(token=token).apply(headers)
        return headers

    def _call(
        self, method: str, url: str, creds: Credentials, *, write: bool, **kwargs: Any
    ) -> requests.Response:
        response = send(
            self.session,
            method,
            url,
            timeout=self.timeout,
            headers=self._headers(creds.access_token),
            **kwargs,
        )
        if response.status_code >= 400:
            raise classify(response, write=write, account_id=creds.account_id)
        return response

    # --- Protocol ------------------------------------------------------------------------------
    def validate(self, content: PostContent, credentials: Credentials) -> None:
        location_name(credentials)
        text = summary_text(content)
        if not text:
            raise ValidationError("body", "a Google Business post needs a summary")
        if len(text) + MARKER_LENGTH > MAX_SUMMARY_CHARS:
            raise ValidationError(
                "body",
                f"Google Business allows {MAX_SUMMARY_CHARS} characters; this text needs {len(text) + MARKER_LENGTH} "
                f"(including the {MARKER_LENGTH}-character delivery marker)",
            )
        call_to_action(content)
        for i, item in enumerate(content.media):
            if item.kind == "video":
                raise ValidationError(
                    "media",
                    f"{item_name(i, item)}: Google Business Profile local posts take photos only "
                    "(the API refuses videos in posts)",
                )
            if item.kind not in (None, "image"):
                raise ValidationError(
                    "media", f"{item_name(i, item)}: only photos can be attached to a Google Business post"
                )
            if not item.url.startswith(("http://", "https://")):
                raise ValidationError(
                    "media",
                    f"{item_name(i, item)}: Google fetches photos from a public http(s) URL (sourceUrl)",
                )
        check_media(content.media, self.media_limits, self.platform)

    def _body(self, request: PublishRequest) -> dict[str, Any]:
        content = request.content
        body: dict[str, Any] = {
            "languageCode": str(
                content.options.get("languageCode")
                or request.credentials.metadata.get("languageCode")
                or "en"
            ),
            "summary": summary_text(content) + marker_for(request.idempotency_key),
            "topicType": "STANDARD",
        }
        cta = call_to_action(content)
        if cta:
            body["callToAction"] = cta
        if content.media:
            body["media"] = [{"mediaFormat": "PHOTO", "sourceUrl": item.url} for item in content.media]
        return body

    def publish(self, request: PublishRequest) -> PublishResult:
        creds = request.credentials
        location = location_name(creds)
        response = self._call(
            "POST",
            f"{self.base}/{location}/localPosts",
            creds,
            write=True,
            data=json.dumps(self._body(request)),
        )
        try:
            post = response.json()
            name = str(post["name"])
        except (ValueError, KeyError, TypeError):
            raise AmbiguousError(f"Google answered {response.status_code} without the post's name") from None
        if post.get("state") == "REJECTED":
            raise PermanentError(f"Google rejected the post for a content policy violation ({name})")
        return PublishResult(
            name, post.get("searchUrl"), _parse_time(post.get("createTime")) or datetime.now(UTC)
        )

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        creds = request.credentials
        location = location_name(creds)
        first = request.first_attempt_at or request.attempt_started_at
        since = min(first, request.attempt_started_at) - WINDOW_SKEW
        marker = marker_for(request.idempotency_key)
        expected = summary_text(request.content)
        fallback: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(RECONCILE_MAX_PAGES):
            params: dict[str, Any] = {"pageSize": PAGE_SIZE}
            if token:
                params["pageToken"] = token
            data = (
                self._call(
                    "GET", f"{self.base}/{location}/localPosts", creds, write=False, params=params
                ).json()
                or {}
            )
            for post in data.get("localPosts") or []:
                created = _parse_time(post.get("createTime"))
                if created is not None and created < since:
                    continue
                summary = str(post.get("summary") or "")
                if SENTINEL in summary and marker not in summary:
                    continue  # another delivery's post (same text)
                if marker in summary:
                    return self._found(post)
                if (
                    strip_markers(summary).strip() == expected
                    and post.get("topicType", "STANDARD") == "STANDARD"
                ):
                    fallback.append(post)
            token = data.get("nextPageToken")
            if not token:
                break
        else:
            raise LookupIncompleteError(self.platform, RECONCILE_MAX_PAGES * PAGE_SIZE, since)
        # Marker lost: accept an exact summary match in the window only when it is unambiguous.
        return self._found(fallback[0]) if len(fallback) == 1 else None

    @staticmethod
    def _found(post: dict[str, Any]) -> PublishResult:
        return PublishResult(str(post["name"]), post.get("searchUrl"), _parse_time(post.get("createTime")))

    def refresh_token(self, credentials: Credentials) -> TokenGrant:
        if not credentials.refresh_token:
            raise AuthError("Google Business account has no refresh token; it must be reconnected")
        creds = google.oauth2.credentials.Credentials(
            token=None,
            refresh_token=credentials.refresh_token,
            token_uri=self.cfg.token_url,
            client_id=self.cfg.app_id,
            client_secret=self.cfg.app_secret.get_secret_value(),
        )
        try:
            creds.refresh(_TimeoutRequest(self.session, self.timeout))
        except google.auth.exceptions.RefreshError as exc:
            raise self._refresh_error(exc) from None
        except google.auth.exceptions.TransportError:
            raise RetryableError("network error while refreshing the Google token") from None
        expiry = creds.expiry.replace(tzinfo=UTC) if creds.expiry else None
        rotated = creds.refresh_token if creds.refresh_token != credentials.refresh_token else None
        return TokenGrant(access_token=str(creds.token), expires_at=expiry, refresh_token=rotated)

    @staticmethod
    def _refresh_error(exc: google.auth.exceptions.RefreshError) -> Exception:
        """RefreshError → the tree. Messages are ours: the library's text may quote the response."""
        data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
        error = str(data.get("error") or "")
        if error == "invalid_grant" or (
            not error and "invalid_grant" in str(exc.args[0] if exc.args else "")
        ):
            return AuthError(
                "Google refresh token expired or revoked (invalid_grant); the account must be reconnected",
                platform_code="invalid_grant",
            )
        if getattr(exc, "retryable", False):
            return RetryableError(
                "Google token endpoint temporarily unavailable", platform_code=error or None
            )
        if error in ("invalid_client", "unauthorized_client"):
            return PermanentError(
                f"Google rejected the OAuth client ({error}); check MCMP_GOOGLE_BUSINESS__APP_ID / APP_SECRET",
                platform_code=error,
            )
        return RetryableError(
            f"Google token refresh failed ({error or 'unknown error'})", platform_code=error or None
        )

    def metrics_cost(self, credentials: Credentials, count: int) -> int:
        """One ``localPosts:reportInsights`` call per INSIGHTS_BATCH posts.

        Not counted: one ``localPosts.get`` per post that came back without insights.
        """
        return -(-count // INSIGHTS_BATCH)

    def fetch_metrics(self, credentials: Credentials, refs: Sequence[MetricsRef]) -> list[MetricsSnapshot]:
        """Insights per post; a post without insights that ``localPosts.get`` says is gone is ``deleted``."""
        location = location_name(credentials)
        found: dict[str, dict[str, int]] = {}
        gone: set[str] = set()
        names = list(dict.fromkeys(r.platform_post_id for r in refs))
        for i in range(0, len(names), INSIGHTS_BATCH):
            batch = names[i : i + INSIGHTS_BATCH]
            answered = self._insights(credentials, location, batch)
            missing = {
                n for n in batch if n not in (answered or {}) and not self._post_exists(credentials, n)
            }
            if answered is None and missing and len(missing) < len(batch):
                # A deleted post may be why the call was refused: ask again for the others.
                answered = self._insights(credentials, location, [n for n in batch if n not in missing])
            found.update(answered or {})
            gone |= missing
        return [
            MetricsSnapshot(r.platform_post_id, {}, deleted=True)
            if r.platform_post_id in gone
            else MetricsSnapshot(r.platform_post_id, found.get(r.platform_post_id, {}))
            for r in refs
        ]

    def _insights(
        self, credentials: Credentials, location: str, names: list[str]
    ) -> dict[str, dict[str, int]] | None:
        """One ``localPosts:reportInsights`` call: metrics by post name; None when Google refuses it."""
        end = datetime.now(UTC)
        start = end - INSIGHTS_LOOKBACK
        body = {
            "localPostNames": names,
            "basicRequest": {
                "metricRequests": [{"metric": m} for m in INSIGHT_METRICS],
                "timeRange": {
                    "startTime": start.isoformat().replace("+00:00", "Z"),
                    "endTime": end.isoformat().replace("+00:00", "Z"),
                },
            },
        }
        try:
            response = self._call(
                "POST",
                f"{self.base}/{location}/localPosts:reportInsights",
                credentials,
                write=False,
                data=json.dumps(body),
            )
        except PermanentError as exc:
            if exc.platform_code in (
                "NOT_FOUND",
                "UNIMPLEMENTED",
                "INVALID_ARGUMENT",
                "FAILED_PRECONDITION",
                404,
                501,
            ):
                return None  # per-post insights retired or refused: metrics stay absent
            raise
        found: dict[str, dict[str, int]] = {}
        for entry in (response.json() or {}).get("localPostMetrics") or []:
            metrics: dict[str, int] = {}
            for value in entry.get("metricValues") or []:
                seed = INSIGHT_METRICS.get(str(value.get("metric")))
                total = (value.get("totalValue") or {}).get("value")
                if seed and total is not None:
                    metrics[seed] = int(total)
            found[str(entry.get("localPostName"))] = metrics
        return found

    def _post_exists(self, credentials: Credentials, name: str) -> bool:
        """``GET v4/{name}`` (localPosts.get): False on 404 ``NOT_FOUND`` only; other errors are raised."""
        if not _POST_NAME.fullmatch(name):
            return True  # not a local post name: nothing to look up, never reported deleted
        response = send(
            self.session,
            "GET",
            f"{self.base}/{name}",
            timeout=self.timeout,
            headers=self._headers(credentials.access_token),
        )
        if response.status_code == 404:
            return False
        if response.status_code >= 400:
            raise classify(response, write=False, account_id=credentials.account_id)
        return True
