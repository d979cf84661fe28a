"""Reading a post's media from its URL: the one place connectors and the worker read media bytes.

``assetUrls`` are written by tenants, so every read of them must go through the guarded fetcher
(addresses inside our network refused before connecting, redirects re-checked, bytes and time
capped). :func:`open_media` is the single function that opens such a URL for reading; it keeps
the guarded fetcher's streaming interface (``TenantFetcher.stream``: a context manager yielding
an object with ``content_type``, ``declared_size``, ``iter_bytes(n)`` and ``read(n)``), so
switching to the fetcher is a change to this function's body alone.

Large media is never held whole: callers read it in chunks and send each chunk on before reading
the next, so a worker's memory stays bounded by the chunk size whatever the file's size.

:func:`video_facts` reads a video's duration and displayed size from its MP4/QuickTime header
(``moov``: ``mvhd`` for the duration, the video track's ``tkhd`` for the size and rotation),
with ``hachoir``. Only the first :data:`HEADER_BYTES` are read: a file whose ``moov`` comes
after its media data (not "fast start") gives no facts, and unknown facts never refuse a post.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter

from mcmp.connectors.errors import PermanentError, RetryableError, ValidationError
from mcmp.connectors.http import retry_after_seconds
from mcmp.connectors.media import display_url, human_size

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0  # between two socket reads, not for the whole file
HEADER_BYTES = 2 * 1024 * 1024  # a fast-start MP4's moov box fits well inside this
FACTS_CACHE_SECONDS = 300.0

_session = requests.Session()
_session.mount("http://", HTTPAdapter(pool_connections=8, pool_maxsize=32, max_retries=0))
_session.mount("https://", HTTPAdapter(pool_connections=8, pool_maxsize=32, max_retries=0))


class MediaSource:
    """An open media read: status checked, bytes flowing under the byte cap.

    ``declared_size`` is the ``Content-Length`` the host sent (``None`` when it sent none);
    bytes are counted regardless, and more than ``max_bytes`` stops the read.
    """

    def __init__(self, response: requests.Response, what: str, url: str, max_bytes: int) -> None:
        self._response = response
        self._chunks: Iterator[bytes] = response.iter_content(256 * 1024)
        self.what = what
        self.url = url
        self.max_bytes = max_bytes
        self.content_type = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        length = response.headers.get("Content-Length", "")
        self.declared_size = int(length) if length.isdigit() else None
        self.received = 0
        self._buffer = bytearray()
        self._done = False

    def _next(self) -> bytes | None:
        try:
            chunk: bytes | None = next(self._chunks, None)
        except requests.RequestException as exc:
            raise RetryableError(
                f"{self.what}: reading {display_url(self.url)} was interrupted ({type(exc).__name__})"
            ) from None
        if chunk is None:
            self._done = True
            return None
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise ValidationError(
                self.what, f"{display_url(self.url)} is larger than {human_size(self.max_bytes)}"
            )
        return chunk

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all remaining when negative); ``b""`` at the end."""
        while (size < 0 or len(self._buffer) < size) and not self._done:
            chunk = self._next()
            if chunk:
                self._buffer += chunk
        if size < 0 or size >= len(self._buffer):
            data, self._buffer = bytes(self._buffer), bytearray()
        else:
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
        return data

    def iter_bytes(self, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """The body in chunks of at most ``chunk_size`` bytes (the last may be shorter)."""
        while True:
            data = self.read(chunk_size)
            if not data:
                return
            yield data


def _raise_for_status(response: requests.Response, what: str, url: str) -> None:
    """A media host's answer as meaning (its 401/403 say nothing of the platform account)."""
    status = response.status_code
    if 200 <= status < 300:
        return
    where = f"{what}: {display_url(url)} answered HTTP {status}"
    if status in (408, 425, 429) or status >= 500:
        raise RetryableError(where, retry_after=retry_after_seconds(response))
    if status in (404, 410):
        raise PermanentError(f"{where} (media not found)", platform_code=status)
    raise PermanentError(where, platform_code=status)


@contextmanager
def open_media(url: str, *, what: str, max_bytes: int) -> Iterator[MediaSource]:
    """``GET`` media for reading in chunks; refuses (``ValidationError`` naming ``what``) past ``max_bytes``.

    ``what`` names the item in errors (``assetUrls[0]``). A ``Content-Length`` above the cap is
    refused before any byte is read; a transport failure is Retryable (no platform call was made
    because of it, so nothing can have been published).
    """
    if not url.startswith(("http://", "https://")):
        raise ValidationError(what, f"{display_url(url)} is not an http(s) URL")
    try:
        response = _session.get(
            url,
            stream=True,
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            headers={"Accept-Encoding": "identity"},
        )
    except requests.RequestException as exc:
        raise RetryableError(f"{what}: {display_url(url)} could not be read ({type(exc).__name__})") from None
    with response:
        _raise_for_status(response, what, url)
        source = MediaSource(response, what, url, max_bytes)
        if source.declared_size is not None and source.declared_size > max_bytes:
            raise ValidationError(
                what,
                f"{display_url(url)} declares {human_size(source.declared_size)}, more than {human_size(max_bytes)}",
            )
        yield source


class StreamedBody:
    """A request body read from a :class:`MediaSource` while it is sent, of a known length.

    ``requests`` sends it with ``Content-Length`` (not chunked framing, which some servers
    refuse), one piece at a time; after each piece ``tick`` runs (the worker keeps the attempt's
    claim alive). More bytes than ``size`` stop the upload: the media changed under us.
    """

    def __init__(
        self, source: MediaSource, size: int, tick: Callable[[], None], piece: int = 1024 * 1024
    ) -> None:
        self.source, self.size, self.tick, self.piece = source, size, tick, piece
        self.sent = 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        for data in self.source.iter_bytes(self.piece):
            self.sent += len(data)
            if self.sent > self.size:
                raise RetryableError(f"{self.source.what}: the media changed size while it was read")
            yield data
            self.tick()


# --- video facts -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoFacts:
    """What a video's header says; ``None`` where it says nothing."""

    duration_seconds: float | None = None
    width: int | None = None
    height: int | None = None


def parse_video_header(head: bytes) -> VideoFacts | None:
    """Duration and displayed size from the first bytes of an MP4/QuickTime file, or None.

    The video track is the first ``tkhd`` with a non-zero size (audio tracks have 0×0); a
    rotation of ±90° in its matrix (phones store portrait video as landscape plus a rotation)
    swaps width and height, so the size is the one people see.
    """
    import hachoir.core.config as hachoir_config  # type: ignore[import-untyped]
    from hachoir.parser import guessParser  # type: ignore[import-untyped]
    from hachoir.stream import InputIOStream  # type: ignore[import-untyped]

    hachoir_config.quiet = True  # a header cut short is expected, not worth a warning
    try:
        parser = guessParser(InputIOStream(io.BytesIO(head), source="media header"))
    except Exception:
        return None
    if parser is None or type(parser).__name__ != "MP4File":
        return None
    duration: float | None = None
    width = height = None
    try:
        for atom in parser:
            if "movie" not in atom:
                continue
            for field in atom["movie"]:
                if "movie_hdr" in field:
                    hdr = field["movie_hdr"]
                    scale = hdr["time_scale"].value
                    if scale:
                        duration = float(hdr["duration"].value) / scale
                if "track" in field and width is None:
                    for part in field["track"]:
                        if "track_hdr" not in part:
                            continue
                        tkhd = part["track_hdr"]
                        w, h = int(tkhd["frame_size_width"].value), int(tkhd["frame_size_height"].value)
                        if w and h:
                            rotated = abs(tkhd["geom_a"].value) < 1e-6 and abs(tkhd["geom_b"].value) > 1e-6
                            width, height = (h, w) if rotated else (w, h)
    except Exception:  # a damaged or truncated header: keep what was read
        log.debug("video header partly unreadable", exc_info=True)
    if duration is None and width is None:
        return None
    return VideoFacts(duration, width, height)


_facts_cache: dict[str, tuple[float, VideoFacts | None]] = {}
_facts_lock = threading.Lock()


def video_facts(url: str, *, what: str) -> VideoFacts | None:
    """The video's facts from the first bytes at ``url`` (cached briefly), or None when unknown.

    Never raises for an unreadable or slow host: unknown facts leave the decision to the platform.
    """
    with _facts_lock:
        hit = _facts_cache.get(url)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
    facts: VideoFacts | None = None
    try:
        with open_media(url, what=what, max_bytes=1 << 62) as source:
            facts = parse_video_header(source.read(HEADER_BYTES))
    except (PermanentError, RetryableError):
        facts = None
    with _facts_lock:
        if len(_facts_cache) > 1024:
            _facts_cache.clear()
        _facts_cache[url] = (time.monotonic() + FACTS_CACHE_SECONDS, facts)
    return facts


def clear_facts_cache() -> None:
    with _facts_lock:
        _facts_cache.clear()


__all__ = [
    "HEADER_BYTES",
    "MediaSource",
    "StreamedBody",
    "VideoFacts",
    "clear_facts_cache",
    "open_media",
    "parse_video_header",
    "video_facts",
]
