"""LinkedIn media uploads: images (Images API) and videos (Videos API, in parts, then polled).

No post exists while media upload, so every failure here is Retryable: a new attempt uploads again.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

from mcmp.connectors.errors import (
    AmbiguousError,
    PermanentError,
    RetryableError,
)
from mcmp.connectors.linkedin.rest import LinkedInRest
from mcmp.connectors.media import MB
from mcmp.connectors.media_source import open_media
from mcmp.connectors.tenant_fetch import TenantFetcher
from mcmp.connectors.types import (
    Credentials,
    MediaItem,
    PublishRequest,
)

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif"})
MAX_IMAGE_BYTES = 20 * MB  # what we read of one image; LinkedIn caps images by pixels (36,152,320)


class LinkedInUploads(LinkedInRest):
    """The upload half of the LinkedIn connector (its fetcher reads the tenant's media URLs)."""

    fetcher: TenantFetcher

    def _upload_image(self, creds: Credentials, owner: str, url: str, what: str) -> str:
        """Upload one image; failures here are Retryable (no post exists yet, a new image is harmless)."""
        with open_media(
            url,
            what=what,
            max_bytes=min(MAX_IMAGE_BYTES, self.fetcher.max_bytes),
            fetcher=self.fetcher,
            accept=IMAGE_TYPES,
        ) as source:
            data = source.read()
            content_type = source.content_type or "application/octet-stream"
        try:
            init = self._call(
                "POST",
                f"{self.base}/rest/images?action=initializeUpload",
                creds,
                write=False,
                data=json.dumps({"initializeUploadRequest": {"owner": owner}}),
                headers=self._headers(creds.access_token, json_body=True),
            )
            value = (init.json() or {}).get("value") or {}
            upload_url, image = value.get("uploadUrl"), value.get("image")
            if not upload_url or not image:
                raise RetryableError("LinkedIn initializeUpload answered without uploadUrl/image")
            headers = {"Authorization": f"Bearer {creds.access_token}", "Content-Type": content_type}
            self._call("PUT", upload_url, creds, write=False, data=data, headers=headers)
            return str(image)
        except AmbiguousError as exc:
            raise RetryableError(f"image upload interrupted ({exc.message})") from None

    def _upload_video(self, request: PublishRequest, owner: str, index: int, item: MediaItem) -> str:
        """Videos API upload, then wait until AVAILABLE; the video URN. No post exists yet."""
        creds = request.credentials
        what = f"assetUrls[{index}]"
        try:
            with open_media(
                item.url, what=what, max_bytes=self.cfg.video_max_bytes, fetcher=self.fetcher
            ) as source:
                size = source.declared_size
                if not size:
                    raise PermanentError(
                        f"{what}: the media host did not say the video's size (Content-Length), "
                        "which LinkedIn's upload needs"
                    )
                init = self._call(
                    "POST",
                    f"{self.base}/rest/videos?action=initializeUpload",
                    creds,
                    write=False,
                    data=json.dumps(
                        {
                            "initializeUploadRequest": {
                                "owner": owner,
                                "fileSizeBytes": size,
                                "uploadCaptions": False,
                                "uploadThumbnail": False,
                            }
                        }
                    ),
                    headers=self._headers(creds.access_token, json_body=True),
                )
                value = (init.json() or {}).get("value") or {}
                urn, token = value.get("video"), value.get("uploadToken", "")
                parts = value.get("uploadInstructions") or []
                if not urn or not parts:
                    raise RetryableError(
                        "LinkedIn initializeUpload answered without video/uploadInstructions"
                    )
                etags = []
                for part in sorted(parts, key=lambda p: int(p["firstByte"])):
                    length = int(part["lastByte"]) - int(part["firstByte"]) + 1
                    data = source.read(length)
                    if len(data) != length:
                        raise RetryableError("the video ended before the size its host declared")
                    answer = self._call(
                        "PUT",
                        str(part["uploadUrl"]),
                        creds,
                        write=False,
                        data=data,
                        headers={
                            "Authorization": f"Bearer {creds.access_token}",
                            "Content-Type": "application/octet-stream",
                        },
                    )
                    del data
                    etag = answer.headers.get("ETag")
                    if not etag:
                        raise RetryableError("LinkedIn answered a video part without an ETag")
                    etags.append(etag)
                    request.still_working()
            self._call(
                "POST",
                f"{self.base}/rest/videos?action=finalizeUpload",
                creds,
                write=False,
                data=json.dumps(
                    {"finalizeUploadRequest": {"video": urn, "uploadToken": token, "uploadedPartIds": etags}}
                ),
                headers=self._headers(creds.access_token, json_body=True),
            )
        except AmbiguousError as exc:  # no post exists yet: a new upload is harmless
            raise RetryableError(f"video upload interrupted ({exc.message})") from None
        except (KeyError, TypeError, ValueError):
            raise RetryableError("LinkedIn answered the video upload in an unexpected shape") from None
        self._wait_until_available(request, str(urn))
        return str(urn)

    def _wait_until_available(self, request: PublishRequest, urn: str) -> None:
        creds = request.credentials
        deadline = time.monotonic() + self.cfg.video_poll_timeout_seconds
        while True:
            request.still_working()
            response = self._get(f"/rest/videos/{quote(urn, safe='')}", creds)
            status = str((response.json() or {}).get("status") or "")
            if status == "AVAILABLE":
                return
            if status == "PROCESSING_FAILED":
                raise PermanentError(f"LinkedIn could not process the video {urn} (PROCESSING_FAILED)")
            if time.monotonic() + self.cfg.video_poll_seconds > deadline:
                raise RetryableError(
                    f"LinkedIn video {urn} still {status or 'PROCESSING'} after "
                    f"{self.cfg.video_poll_timeout_seconds:.0f} s; a new attempt will upload it again"
                )
            time.sleep(self.cfg.video_poll_seconds)
