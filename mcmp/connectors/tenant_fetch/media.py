"""Media a tenant URL serves: the type its bytes' signature shows, streamed under the byte cap."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import filetype  # type: ignore[import-untyped]
import httpx

from mcmp.connectors.tenant_fetch.refusals import Rule, refused, show, size_text
from mcmp.connectors.tenant_fetch.transport import TRANSPORT, Deadline, transport_error

SNIFF_BYTES = 8192  # enough for every signature ``filetype`` knows


@dataclass(frozen=True)
class Media:
    """Downloaded media: the bytes and their type as the signature shows it."""

    content: bytes
    content_type: str
    url: str


# Media signatures recognised as what the platforms take (``filetype``'s names).
MEDIA_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/apng",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/heic",
        "image/bmp",
        "image/tiff",
        "image/x-icon",
        "video/mp4",
        "video/x-m4v",
        "video/quicktime",
        "video/webm",
        "video/x-matroska",
        "video/3gpp",
        "video/mpeg",
        "video/x-msvideo",
    }
)
_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}


def media_type(value: str | None) -> str | None:
    """A Content-Type header as a bare, lowercase MIME type (aliases folded); None when empty."""
    if not value:
        return None
    mime = value.split(";", 1)[0].strip().lower()
    return _ALIASES.get(mime, mime) or None


def sniff(head: bytes) -> str | None:
    """The media type the bytes' signature shows, or None when they are not media we know."""
    found = filetype.guess_mime(head[:SNIFF_BYTES])
    return found if found in MEDIA_TYPES else None


def _kind(mime: str | None) -> str | None:
    major = (mime or "").split("/", 1)[0]
    return major if major in ("image", "video") else None


class MediaStream:
    """An open media download: type checked, bytes flowing under the cap and the deadline.

    Iterate :meth:`iter_bytes` or call :meth:`read` like a file. Errors while reading are
    ``RetryableError`` (the connection broke or the deadline passed) or ``FetchRefused``
    (more bytes than ``max_bytes``).
    """

    def __init__(
        self,
        response: httpx.Response,
        deadline: Deadline,
        what: str,
        url: str,
        max_bytes: int,
    ) -> None:
        self._chunks = response.iter_raw()
        self._deadline = deadline
        self.what = what
        self.url = url
        self.max_bytes = max_bytes
        self.declared_type = media_type(response.headers.get("Content-Type"))
        length = response.headers.get("Content-Length", "")
        # Only a hint: with chunked framing it says nothing, and bytes are counted regardless.
        self.declared_size = int(length) if length.isdigit() else None
        self.content_type = ""
        self.received = 0
        self._buffer = bytearray()
        self._done = False
        # Told the byte count after each chunk; may raise to cut a download (a rate floor).
        self.on_progress: Callable[[int], None] | None = None

    def _next_raw(self) -> bytes | None:
        try:
            chunk = next(self._chunks, None)
        except TRANSPORT as exc:
            raise transport_error(exc, self._deadline, self.what, write=False) from None
        if chunk is None:
            self._done = True
            return None
        self.received += len(chunk)
        if self.on_progress is not None:
            self.on_progress(self.received)
        if self.received > self.max_bytes:
            raise refused(
                self.what, f"{show(self.url)} is larger than {size_text(self.max_bytes)}", Rule.TOO_LARGE
            )
        return chunk

    def _check_type(self, accept: frozenset[str] | None) -> None:
        while len(self._buffer) < SNIFF_BYTES and not self._done:
            chunk = self._next_raw()
            if chunk:
                self._buffer += chunk
        declared = self.declared_type
        found = sniff(bytes(self._buffer[:SNIFF_BYTES]))
        where = show(self.url)
        if found is None:
            looks = " (they look like HTML or text)" if self._buffer.lstrip()[:1] == b"<" else ""
            raise refused(
                self.what,
                f"{where} is served as {declared or 'an unknown type'} but its bytes are not an "
                f"image or video{looks}",
                Rule.MEDIA_TYPE,
            )
        if _kind(declared) is not None and _kind(declared) != _kind(found):
            raise refused(
                self.what, f"{where} is served as {declared} but its bytes are {found}", Rule.MEDIA_TYPE
            )
        if accept is not None and found not in accept:
            raise refused(
                self.what,
                f"{where} is {found}, which is not accepted here (accepted: {', '.join(sorted(accept))})",
                Rule.MEDIA_TYPE,
            )
        self.content_type = found

    def iter_bytes(self, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """The body in chunks of at most ``chunk_size`` bytes (the last may be shorter)."""
        while True:
            data = self.read(chunk_size)
            if not data:
                return
            yield data

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all remaining when negative); ``b""`` at the end."""
        while (size < 0 or len(self._buffer) < size) and not self._done:
            chunk = self._next_raw()
            if chunk:
                self._buffer += chunk
        if size < 0 or size >= len(self._buffer):
            data, self._buffer = bytes(self._buffer), bytearray()
        else:
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
        return data
