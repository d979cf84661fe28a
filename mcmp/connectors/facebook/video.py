"""Facebook videos: Page videos by resumable upload and Reels, uploaded, finished and polled.

Mixed into :class:`~mcmp.connectors.facebook.connector.FacebookConnector` (whose docstring tells
the whole flow). Only ``finish`` can create a post; an upload cut short never becomes one, so the
next attempt starts over. After ``finish`` the video is polled until published, failed
(permanent) or still processing at the timeout (ambiguous: the next attempt finds it).
"""

from __future__ import annotations

import time
from typing import Any

from mcmp.config.settings import FacebookSettings
from mcmp.connectors.errors import (
    AmbiguousError,
    ConnectorError,
    PermanentError,
    RetryableError,
    ValidationError,
)
from mcmp.connectors.graph import (
    GraphClient,
    parse_graph_time,
)
from mcmp.connectors.http import send
from mcmp.connectors.media import MB, item_name, ratio_text
from mcmp.connectors.media_source import MediaSource, StreamedBody, open_media
from mcmp.connectors.tenant_fetch import TenantFetcher
from mcmp.connectors.types import (
    Credentials,
    MediaItem,
    PostContent,
    PublishRequest,
    PublishResult,
)

MAX_TRANSFER_CHUNK = 64 * MB  # Facebook names each chunk's offsets; we never hold more than this
REEL_SECONDS = (3.0, 90.0)  # Reels Publishing API: 3 to 90 seconds
REEL_RATIO = 9 / 16  # Reels: 9:16, at least 540×960
REEL_MIN_SIZE = (540, 960)
VIDEO_RATIOS = (9 / 16, 16 / 9)  # Page videos: between 9x16 and 16x9
VIDEO_SECONDS = (0.0, 4 * 3600.0)  # resumable upload: up to 4 hours


def video_of(content: PostContent) -> tuple[int, MediaItem] | None:
    """The post's video and its position, if it has one."""
    return next(((i, m) for i, m in enumerate(content.media) if m.kind == "video"), None)


def is_reel_shaped(item: MediaItem) -> bool:
    """What Reels take: 3 to 90 s, 9:16, at least 540×960 — all known from the header."""
    return (
        item.duration_seconds is not None
        and REEL_SECONDS[0] <= item.duration_seconds <= REEL_SECONDS[1]
        and item.aspect_ratio is not None
        and abs(item.aspect_ratio - REEL_RATIO) < 0.01
        and (item.width or 0) >= REEL_MIN_SIZE[0]
        and (item.height or 0) >= REEL_MIN_SIZE[1]
    )


def check_reel(index: int, item: MediaItem) -> None:
    """Reels' rules, on the facts the header gave (unknown facts are left to Facebook)."""
    where = item_name(index, item)
    problems = []
    if item.duration_seconds is not None and not REEL_SECONDS[0] <= item.duration_seconds <= REEL_SECONDS[1]:
        problems.append(
            f"lasts {item.duration_seconds:.1f} s; a Reel takes {REEL_SECONDS[0]:g} to {REEL_SECONDS[1]:g} s"
        )
    if item.aspect_ratio is not None and abs(item.aspect_ratio - REEL_RATIO) >= 0.01:
        problems.append(f"is {item.width}x{item.height}; a Reel is {ratio_text(REEL_RATIO)}")
    elif (
        item.width is not None
        and item.height is not None
        and (item.width < REEL_MIN_SIZE[0] or item.height < REEL_MIN_SIZE[1])
    ):
        problems.append(f"is {item.width}x{item.height}; a Reel is at least 540x960")
    if problems:
        raise ValidationError("publishOptions.facebook.videoType", f"reel: {where} " + " and ".join(problems))


def as_reel(content: PostContent, item: MediaItem) -> bool:
    """A Reel when asked for, or when the options are silent and the video has a Reel's shape."""
    kind = content.options.get("videoType")
    return kind == "reel" or (kind is None and is_reel_shaped(item))


class FacebookVideos:
    """The video half of the Facebook connector (its settings, Graph clients and fetcher)."""

    cfg: FacebookSettings
    client: GraphClient
    video_client: GraphClient
    fetcher: TenantFetcher

    def _publish_video(
        self, request: PublishRequest, page: str, index: int, item: MediaItem, message: str
    ) -> PublishResult:
        creds = request.credentials
        reel = as_reel(request.content, item)
        what = f"assetUrls[{index}]"
        with open_media(
            item.url, what=what, max_bytes=self.cfg.video_max_bytes, fetcher=self.fetcher
        ) as source:
            size = source.declared_size
            if not size:
                raise PermanentError(
                    f"{what}: the media host did not say the video's size (Content-Length), "
                    "which Facebook's video upload needs"
                )
            if reel:
                video_id = self._upload_reel(request, page, source, size)
            else:
                video_id, session = self._upload_video(request, page, source, size)
        request.still_working()
        if reel:  # the one write that can create a post
            finish: dict[str, Any] = {
                "upload_phase": "finish",
                "video_id": video_id,
                "video_state": "PUBLISHED",
                "description": message,
            }
            result = self.client.call(
                creds.access_token,
                f"{page}/video_reels",
                account_id=creds.account_id,
                post_args=finish,
                write=True,
            )
        else:
            finish = {
                "upload_phase": "finish",
                "upload_session_id": session,
                "description": message,
            }
            if request.content.title.strip():
                finish["title"] = request.content.title.strip()[:255]
            result = self.video_client.call(
                creds.access_token,
                f"{page}/videos",
                account_id=creds.account_id,
                post_args=finish,
                write=True,
            )
        if result.get("success") is not True:
            raise AmbiguousError("Facebook answered the video's finish without success")
        return self._wait_for_video(request, video_id)

    def _upload_video(
        self, request: PublishRequest, page: str, source: MediaSource, size: int
    ) -> tuple[str, str]:
        """Resumable upload: start, then each chunk at the offsets Facebook names. No post yet."""
        creds = request.credentials
        try:
            start = self.video_client.call(
                creds.access_token,
                f"{page}/videos",
                account_id=creds.account_id,
                post_args={"upload_phase": "start", "file_size": str(size)},
            )
            video_id, session = str(start["video_id"]), str(start["upload_session_id"])
            begin, end = int(start["start_offset"]), int(start["end_offset"])
            while begin < end:
                data = source.read(min(end - begin, MAX_TRANSFER_CHUNK))
                if not data:
                    raise RetryableError("the video ended before the size its host declared")
                answer = self.video_client.call(
                    creds.access_token,
                    f"{page}/videos",
                    account_id=creds.account_id,
                    post_args={
                        "upload_phase": "transfer",
                        "upload_session_id": session,
                        "start_offset": str(begin),
                    },
                    files={"video_file_chunk": ("chunk", data, "application/octet-stream")},
                )
                del data
                begin, end = int(answer["start_offset"]), int(answer["end_offset"])
                request.still_working()
        except (KeyError, TypeError, ValueError):
            raise RetryableError("Facebook answered the video upload without its offsets") from None
        except AmbiguousError as exc:  # an unfinished upload is never a post: starting over is safe
            raise RetryableError(f"video upload interrupted ({exc.message})") from None
        except PermanentError as exc:
            raise self._upload_refused(exc) from None
        if begin != size:
            raise RetryableError(f"Facebook stopped the upload at {begin} of {size} bytes")
        return video_id, session

    def _upload_reel(self, request: PublishRequest, page: str, source: MediaSource, size: int) -> str:
        """Reel: start, then the whole file streamed to the returned upload URL. No post yet."""
        creds = request.credentials
        try:
            start = self.client.call(
                creds.access_token,
                f"{page}/video_reels",
                account_id=creds.account_id,
                post_args={"upload_phase": "start"},
            )
            video_id, upload_url = str(start["video_id"]), str(start["upload_url"])
            response = send(
                self.client.session,
                "POST",
                upload_url,
                timeout=self.cfg.timeout_seconds,
                data=StreamedBody(source, size, request.still_working),
                headers={
                    "Authorization": f"OAuth {creds.access_token}",
                    "offset": "0",
                    "file_size": str(size),
                    "Content-Type": "application/octet-stream",
                },
            )
            if response.status_code >= 400:
                raise self.client.classify(response, write=False, account_id=creds.account_id)
            if not (response.json() or {}).get("success"):
                raise RetryableError("Facebook did not confirm the Reel's upload")
        except (KeyError, TypeError, ValueError):
            raise RetryableError("Facebook answered the Reel upload without video_id/upload_url") from None
        except AmbiguousError as exc:  # an unfinished Reel is never a post: starting over is safe
            raise RetryableError(f"Reel upload interrupted ({exc.message})") from None
        except PermanentError as exc:
            raise self._upload_refused(exc) from None
        return video_id

    @staticmethod
    def _upload_refused(exc: PermanentError) -> ConnectorError:
        """A refusal during the upload: the upload's own failures (6000/6001) are worth a new attempt."""
        code = str(exc.platform_code or "").split("/")[0]
        if code in ("6000", "6001") or code.isdigit() and int(code) >= 500:
            return RetryableError(f"video upload failed ({exc.message})", platform_code=exc.platform_code)
        return exc

    def _video_state(self, creds: Credentials, video_id: str) -> dict[str, Any]:
        return self.client.call(
            creds.access_token,
            video_id,
            account_id=creds.account_id,
            args={"fields": "status,post_id,permalink_url,created_time"},
        )

    def _wait_for_video(self, request: PublishRequest, video_id: str) -> PublishResult:
        """Poll until published (the result) or failed (permanent); Ambiguous if still processing."""
        creds = request.credentials
        deadline = time.monotonic() + self.cfg.video_poll_timeout_seconds
        while True:
            request.still_working()
            try:
                video = self._video_state(creds, video_id)
            except RetryableError as exc:  # the video exists: never post again on a failed read
                raise AmbiguousError(f"Facebook video {video_id} status unknown ({exc.message})") from None
            outcome = self._settled(video)
            if outcome is not None:
                return outcome
            if time.monotonic() + self.cfg.video_poll_seconds > deadline:
                raise AmbiguousError(
                    f"Facebook video {video_id} still processing after {self.cfg.video_poll_timeout_seconds:.0f} s; "
                    "looking again later"
                )
            time.sleep(self.cfg.video_poll_seconds)

    @staticmethod
    def _settled(video: dict[str, Any]) -> PublishResult | None:
        """The published post, ``None`` while processing; ``PermanentError`` if processing failed."""
        status = video.get("status") or {}
        phases = [status.get(p) or {} for p in ("uploading_phase", "processing_phase", "publishing_phase")]
        if status.get("video_status") == "error" or any(p.get("status") == "error" for p in phases):
            detail = next(
                (str((p.get("error") or {}).get("message")) for p in phases if p.get("error")), "no detail"
            )
            raise PermanentError(f"Facebook could not process the video ({detail[:300]})")
        publishing = phases[2]
        if status.get("video_status") == "ready" and publishing.get("status") in (None, "complete"):
            post_id = str(video.get("post_id") or video["id"])
            when = parse_graph_time(publishing.get("publish_time")) or parse_graph_time(
                video.get("created_time")
            )
            url = video.get("permalink_url")
            link = f"https://www.facebook.com{url}" if isinstance(url, str) and url.startswith("/") else url
            return PublishResult(post_id, str(link or f"https://www.facebook.com/{post_id}"), when)
        return None
