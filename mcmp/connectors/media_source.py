"""Reading a post's media from its URL: the one place connectors and the worker read media bytes.

``assetUrls`` are written by tenants, so every read goes through the guarded fetcher
(:class:`mcmp.connectors.tenant_fetch.TenantFetcher`: addresses inside our network refused
before connecting, redirects re-checked, bytes and time capped, the bytes' signature checked).
:func:`open_media` opens such a URL for reading in chunks; large media is never held whole:
callers send each chunk on before reading the next, so a worker's memory stays bounded by the
chunk size whatever the file's size.

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

from mcmp.connectors.errors import PermanentError, RetryableError
from mcmp.connectors.tenant_fetch import MediaStream, TenantFetcher

log = logging.getLogger(__name__)

HEADER_BYTES = 2 * 1024 * 1024  # a fast-start MP4's moov box fits well inside this
FACTS_CACHE_SECONDS = 300.0

# The slowest average transfer a media read is allowed (MCMP_MEDIA_MIN_BYTES_PER_SECOND, set by
# the worker's bootstrap through :func:`configure`): measured from the first byte asked for, after
# a grace of RATE_GRACE_SECONDS; a read below it is cut. A declared size gives the read a deadline
# of that size at this rate (never less than the fetcher's own), never the platform's cap: a
# dripping host cannot hold an attempt for hours, and a large video from a healthy host is never
# cut off.
MIN_BYTES_PER_SECOND = 64 * 1024
RATE_GRACE_SECONDS = 10.0
_min_rate = MIN_BYTES_PER_SECOND


def configure(min_bytes_per_second: int) -> None:
    global _min_rate
    _min_rate = max(1, int(min_bytes_per_second))


def min_rate() -> int:
    return _min_rate


class RateFloor:
    """Cuts a download whose average rate stays below the floor, or that outlives its size's deadline."""

    def __init__(self, what: str, floor: int, minimum: float, declared: int | None, cap: int) -> None:
        self.what, self.floor = what, floor
        self.started = time.monotonic()
        self.deadline = max(minimum, (declared if declared is not None else cap) / floor)

    def __call__(self, received: int) -> None:
        elapsed = time.monotonic() - self.started
        if elapsed > self.deadline:
            raise RetryableError(
                f"{self.what}: the download did not finish within {self.deadline:.0f} s "
                f"(its size at {_rate(self.floor)}, MCMP_MEDIA_MIN_BYTES_PER_SECOND)"
            )
        if elapsed > RATE_GRACE_SECONDS and received / elapsed < self.floor:
            raise RetryableError(
                f"{self.what}: the media host sent {_rate(received / elapsed)} on average, below "
                f"the floor of {_rate(self.floor)} (MCMP_MEDIA_MIN_BYTES_PER_SECOND); cut after {elapsed:.0f} s"
            )


def _rate(bytes_per_second: float) -> str:
    return f"{bytes_per_second / 1024:.1f} KiB/s"


MediaSource = MediaStream  # what open_media yields: content_type, declared_size, iter_bytes, read


@contextmanager
def open_media(
    url: str,
    *,
    what: str,
    max_bytes: int,
    fetcher: TenantFetcher,
    accept: frozenset[str] | None = None,
    total_timeout: float | None = None,
) -> Iterator[MediaStream]:
    """``GET`` media through the guarded fetcher for reading in chunks, under ``max_bytes``.

    ``what`` names the item in errors (``assetUrls[0]``). A refused address, a ``Content-Length``
    above the cap or bytes that are no image/video (or not in ``accept``) raise ``FetchRefused``
    (permanent, naming ``what`` and the rule); a transport failure is Retryable (no platform call
    was made because of it, so nothing can have been published). The read is cut below the
    average-rate floor (:class:`RateFloor`), and by the deadline its declared size gives it.
    """
    floor = min_rate()
    total = total_timeout or max(fetcher.total_timeout, max_bytes / floor)
    guard = RateFloor(what, floor, total_timeout or fetcher.total_timeout, None, max_bytes)
    with fetcher.stream(
        url, what=what, max_bytes=max_bytes, accept=accept, total_timeout=total, on_progress=guard
    ) as media:
        if media.declared_size is not None and total_timeout is None:
            guard.deadline = max(fetcher.total_timeout, media.declared_size / floor)
        yield media


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


def video_facts(url: str, *, what: str, fetcher: TenantFetcher) -> VideoFacts | None:
    """The video's facts from the first bytes at ``url`` (cached briefly), or None when unknown.

    Never raises for an unreadable or slow host: unknown facts leave the decision to the platform.
    """
    with _facts_lock:
        hit = _facts_cache.get(url)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
    facts: VideoFacts | None = None
    try:
        with open_media(
            url, what=what, max_bytes=1 << 62, fetcher=fetcher, total_timeout=fetcher.total_timeout
        ) as source:
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
    "configure",
    "open_media",
    "parse_video_header",
    "video_facts",
]
