"""Instagram (Graph API content publishing for business accounts, Facebook Login host).

Flow: check the rolling-24 h publishing quota → create the media container(s) → poll each until
``FINISHED`` → ``media_publish``. Only ``media_publish`` can create a post, so only its failure
without an answer is ambiguous; container failures are retried with a new container. The caption
carries the invisible per-delivery marker of ``connectors.markers`` so ``find_published`` can
recognise this delivery's media in ``/{ig-user-id}/media`` after a lost answer. The IG user id
is the account's ``externalAccountId``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import requests

from config import Settings
from connectors.errors import RateLimitedError, RetryableError, ValidationError
from connectors.http import BaseUrlSession, send
from connectors.instagram.classify import classify, read_usage
from connectors.markers import MARKER_LENGTH, marker_for, strip_markers
from connectors.types import (
    Credentials,
    MediaItem,
    MetricsRef,
    MetricsSnapshot,
    PostContent,
    PublishRequest,
    PublishResult,
    TokenGrant,
)

CAPTION_MAX = 2200
MAX_HASHTAGS = 30
MAX_MENTIONS = 20
CAROUSEL_MAX = 10
# Seed metric name ← Instagram media insight (``impressions`` was retired for all versions on
# 2025-04-21; ``views`` replaces it). Instagram reports no clicks at media level.
METRICS = {
    "impressions": "views",
    "reach": "reach",
    "likes": "likes",
    "comments": "comments",
    "shares": "shares",
    "saves": "saved",
}


def _caption(content: PostContent, key: str) -> str:
    return f"{content.body}{marker_for(key)}"


class InstagramConnector:
    platform = "instagram"

    def __init__(self, settings: Settings) -> None:
        self.cfg = settings.instagram
        self.session = BaseUrlSession()

    # --- plumbing ---------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        return f"{self.cfg.base_url.rstrip('/')}/{self.cfg.api_version}/{path.lstrip('/')}"

    def _call(
        self,
        method: str,
        path: str,
        creds: Credentials,
        *,
        write: bool = False,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        args = {**(params or {}), "access_token": creds.access_token}
        kwargs: dict[str, Any] = {"data": args} if method == "POST" else {"params": args}
        response = send(self.session, method, self._url(path), timeout=self.cfg.timeout_seconds, **kwargs)
        read_usage(response, creds.account_id)
        if response.status_code >= 400 or "error" in _json(response):
            raise classify(
                response,
                write=write,
                account_id=creds.account_id,
                quota_recheck=self.cfg.quota_recheck_seconds,
            )
        return _json(response)

    # --- Protocol ------------------------------------------------------------------------------
    def validate(self, content: PostContent, credentials: Credentials) -> None:
        if not credentials.external_account_id:
            raise ValidationError("account.externalAccountId", "the Instagram business account id is missing")
        if not content.media:
            raise ValidationError("assetUrls", "Instagram needs at least one image or video")
        if len(content.media) > CAROUSEL_MAX:
            raise ValidationError("assetUrls", f"a carousel takes at most {CAROUSEL_MAX} items")
        for item in content.media:
            if item.kind not in ("image", "video"):
                raise ValidationError(
                    "assetUrls", f"Instagram accepts images and videos, not {item.kind or 'unknown'} media"
                )
        if len(content.body) + MARKER_LENGTH > CAPTION_MAX:
            raise ValidationError("body", f"longer than Instagram's {CAPTION_MAX - MARKER_LENGTH} characters")
        if content.body.count("#") > MAX_HASHTAGS:
            raise ValidationError("body", f"more than {MAX_HASHTAGS} hashtags")
        if content.body.count("@") > MAX_MENTIONS:
            raise ValidationError("body", f"more than {MAX_MENTIONS} @mentions")

    def _quota(self, creds: Credentials) -> None:
        data = self._call(
            "GET",
            f"{creds.external_account_id}/content_publishing_limit",
            creds,
            params={"fields": "quota_usage,config"},
        )
        entry = (data.get("data") or [{}])[0]
        total = (entry.get("config") or {}).get("quota_total")
        if total is not None and entry.get("quota_usage", 0) >= total:
            raise RateLimitedError(
                f"Instagram publishing quota used up ({entry.get('quota_usage')}/{total} in 24 h)",
                retry_after=self.cfg.quota_recheck_seconds,
                scope="ig-publish-quota",
            )

    def _container(
        self, creds: Credentials, item: MediaItem, caption: str | None, carousel_item: bool
    ) -> str:
        params: dict[str, Any] = {}
        if item.kind == "video":
            params.update(media_type="VIDEO" if carousel_item else "REELS", video_url=item.url)
        else:
            params["image_url"] = item.url
            if item.alt_text:
                params["alt_text"] = item.alt_text
        if carousel_item:
            params["is_carousel_item"] = "true"
        if caption is not None:
            params["caption"] = caption
        return str(self._call("POST", f"{creds.external_account_id}/media", creds, params=params)["id"])

    def _wait_finished(self, creds: Credentials, container: str) -> None:
        deadline = time.monotonic() + self.cfg.container_poll_timeout_seconds
        while True:
            status = self._call("GET", container, creds, params={"fields": "status_code,status"}).get(
                "status_code"
            )
            if status in ("FINISHED", "PUBLISHED"):
                return
            if status in ("ERROR", "EXPIRED"):
                raise RetryableError(f"Instagram container {status.lower()}; a new one will be created")
            if time.monotonic() > deadline:
                raise RetryableError("Instagram container still processing; retrying with a new container")
            time.sleep(self.cfg.container_poll_seconds)

    def publish(self, request: PublishRequest) -> PublishResult:
        creds, content = request.credentials, request.content
        self._quota(creds)
        caption = _caption(content, request.idempotency_key)
        if len(content.media) == 1:
            container = self._container(creds, content.media[0], caption, carousel_item=False)
        else:
            children = [self._container(creds, m, None, carousel_item=True) for m in content.media]
            for child in children:
                self._wait_finished(creds, child)
            container = str(
                self._call(
                    "POST",
                    f"{creds.external_account_id}/media",
                    creds,
                    params={"media_type": "CAROUSEL", "children": ",".join(children), "caption": caption},
                )["id"]
            )
        self._wait_finished(creds, container)
        media = self._call(
            "POST",
            f"{creds.external_account_id}/media_publish",
            creds,
            write=True,
            params={"creation_id": container},
        )
        return PublishResult(str(media["id"]), None, datetime.now(UTC))

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        creds = request.credentials
        marker = marker_for(request.idempotency_key)
        data = self._call(
            "GET",
            f"{creds.external_account_id}/media",
            creds,
            params={"fields": "id,caption,timestamp,permalink", "limit": 100},
        )
        for item in data.get("data", []):
            caption = item.get("caption") or ""
            if caption.endswith(marker) and strip_markers(caption) == strip_markers(request.content.body):
                return PublishResult(str(item["id"]), item.get("permalink"), _parse_ts(item.get("timestamp")))
        return None

    def refresh_token(self, credentials: Credentials) -> TokenGrant:
        """Long-lived token exchange (Facebook Login path); a token without expiry stays as it is."""
        data = self._call(
            "GET",
            "oauth/access_token",
            credentials,
            params={
                "grant_type": "fb_exchange_token",
                "client_id": self.cfg.app_id,
                "client_secret": self.cfg.app_secret.get_secret_value(),
                "fb_exchange_token": credentials.access_token,
            },
        )
        expires = data.get("expires_in")
        expires_at = datetime.fromtimestamp(time.time() + float(expires), UTC) if expires else None
        return TokenGrant(access_token=str(data["access_token"]), expires_at=expires_at)

    def fetch_metrics(self, credentials: Credentials, refs: Sequence[MetricsRef]) -> list[MetricsSnapshot]:
        snapshots = []
        for ref in refs:
            try:
                data = self._call(
                    "GET",
                    f"{ref.platform_post_id}/insights",
                    credentials,
                    params={"metric": ",".join(METRICS.values())},
                )
            except Exception as exc:  # a deleted media answers "does not exist"
                if "does not exist" in str(exc):
                    snapshots.append(MetricsSnapshot(ref.platform_post_id, {}, deleted=True))
                    continue
                raise
            values = {
                row["name"]: (row.get("values") or [{}])[0].get("value") for row in data.get("data", [])
            }
            mapped = {
                seed: int(values[ig]) for seed, ig in METRICS.items() if isinstance(values.get(ig), int)
            }
            snapshots.append(MetricsSnapshot(ref.platform_post_id, mapped))
        return snapshots


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _parse_ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z").astimezone(UTC)
    except ValueError:
        return None
