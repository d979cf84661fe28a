"""A loopback media host for dev, tests and benchmarks: images and MP4 videos generated on the fly.

Nothing is stored: a request's URL says what to serve, and the bytes are produced while they are
written, so a 1 GiB video costs the server one 1 MiB block of memory. The same URL always gives
the same bytes, so :func:`expected_sha256` tells a test what a platform should have received.

``GET|HEAD /v/<name>.mp4?size=N&duration=S&width=W&height=H[&rotate=90][&moov=end]``
    an MP4 whose header (``ftyp``, ``moov`` with ``mvhd`` and one video ``tkhd``) says
    ``duration``/``width``/``height`` (``rotate=90`` stores it landscape with a rotation, as
    phones do), then ``mdat`` filler up to exactly ``size`` bytes; ``moov=end`` puts the header
    after the data (not "fast start").
``GET|HEAD /i/<name>.jpg?size=N`` / ``.png`` / ``.gif``
    an image with the format's real signature, ``size`` bytes long.
``&status=404`` answers that status; ``&drop_after=N`` cuts the connection after N body bytes;
``&delay=S`` answers only after S seconds (a slow host; at most 60).

``served_bytes`` counts body bytes written, per path.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

BLOCK = 1024 * 1024


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _full_box(kind: bytes, flags: int, payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", flags) + payload)


def _matrix(rotate: int) -> bytes:
    one, w = 0x10000, 0x40000000
    minus_one = -one & 0xFFFFFFFF  # 16.16 fixed point, two's complement
    if rotate == 90:
        a, b, c, d = 0, one, minus_one, 0
    elif rotate == 270:
        a, b, c, d = 0, minus_one, one, 0
    else:
        a, b, c, d = one, 0, 0, one
    return struct.pack(">9I", a, b, 0, c, d, 0, 0, 0, w)


def mp4_boxes(duration: float, width: int, height: int, rotate: int = 0) -> tuple[bytes, bytes]:
    """(ftyp, moov) of a one-track MP4 whose header says ``duration`` s and ``width``×``height``."""
    scale = 1000
    ticks = int(round(duration * scale))
    mvhd = _full_box(
        b"mvhd",
        0,
        struct.pack(">IIII", 0, 0, scale, ticks)
        + struct.pack(">IH", 0x10000, 0x100)
        + b"\0" * 10
        + _matrix(0)
        + b"\0" * 24
        + struct.pack(">I", 2),
    )
    tkhd = _full_box(
        b"tkhd",
        7,
        struct.pack(">IIIII", 0, 0, 1, 0, ticks)
        + b"\0" * 8
        + struct.pack(">hhhH", 0, 0, 0, 0)
        + _matrix(rotate)
        + struct.pack(">II", width << 16, height << 16),
    )
    mdhd = _full_box(b"mdhd", 0, struct.pack(">IIII", 0, 0, scale, ticks) + struct.pack(">HH", 0x55C4, 0))
    hdlr = _full_box(b"hdlr", 0, struct.pack(">I4s", 0, b"vide") + b"\0" * 12 + b"VideoHandler\0")
    moov = _box(b"moov", mvhd + _box(b"trak", tkhd + _box(b"mdia", mdhd + hdlr)))
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isomiso2avc1mp41")
    return ftyp, moov


def _filler(seed: str) -> bytes:
    digest = hashlib.sha256(seed.encode()).digest()
    return (digest * (BLOCK // len(digest) + 1))[:BLOCK]


def _image_head(ext: str) -> bytes:
    if ext == "png":
        return b"\x89PNG\r\n\x1a\n" + _box(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0))
    if ext == "gif":
        return b"GIF89a" + struct.pack("<HH", 64, 64) + b"\x00\x00\x00"
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


def body_parts(path: str, query: dict[str, str]) -> tuple[str, int, list[bytes], bytes, bytes]:
    """(content type, size, prefix parts, filler block, suffix) of what ``path`` serves."""
    name = path.rsplit("/", 1)[-1]
    ext = name.rsplit(".", 1)[-1].lower()
    seed = f"{path}?{query.get('seed', '')}"
    if path.startswith("/v/"):
        ftyp, moov = mp4_boxes(
            float(query.get("duration", "10")),
            int(query.get("width", "1280")),
            int(query.get("height", "720")),
            int(query.get("rotate", "0")),
        )
        size = int(query.get("size", str(4 * BLOCK)))
        at_end = query.get("moov") == "end"
        head = ftyp + (b"" if at_end else moov)
        tail = moov if at_end else b""
        data = size - len(head) - len(tail) - 8
        if data < 0:
            raise ValueError("size is smaller than the MP4 header")
        ctype = "video/quicktime" if ext == "mov" else "video/mp4"
        return ctype, size, [head, struct.pack(">I4s", 8 + data, b"mdat")], _filler(seed), tail
    ctype = {"png": "image/png", "gif": "image/gif"}.get(ext, "image/jpeg")
    size = int(query.get("size", "4096"))
    tail = b"\xff\xd9" if ctype == "image/jpeg" else b""
    return ctype, size, [_image_head(ext)], _filler(seed), tail


def iter_body(path: str, query: dict[str, str]) -> Iterator[bytes]:
    """The bytes of ``path`` in blocks of at most :data:`BLOCK`."""
    _, size, prefix, block, tail = body_parts(path, query)
    head = b"".join(prefix)
    yield head
    left = size - len(head) - len(tail)
    while left > 0:
        piece = block[: min(left, BLOCK)]
        left -= len(piece)
        yield piece
    if tail:
        yield tail


def expected_sha256(url: str) -> str:
    """SHA-256 of what the media host serves at ``url`` (the same generator, no server)."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    digest = hashlib.sha256()
    for piece in iter_body(parts.path, query):
        digest.update(piece)
    return digest.hexdigest()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that stops reading mid-file (a capped or cancelled read) is normal here."""


class MediaHost:
    """The loopback media host (see the module docstring); ``stop()`` when done."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.served_bytes: Counter[str] = Counter()
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def _answer(self, with_body: bool) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                with owner._lock:
                    owner.requests.append((self.command, self.path))
                if "delay" in query:  # a slow host: answers (HEAD or GET) after this many seconds
                    time.sleep(min(60.0, float(query["delay"])))
                status = int(query.get("status", "200"))
                if status != 200 or not parts.path.startswith(("/v/", "/i/")):
                    self.send_response(status if status != 200 else 404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                ctype, size, _, _, _ = body_parts(parts.path, query)
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                if not with_body:
                    return
                drop_after = int(query["drop_after"]) if "drop_after" in query else None
                sent = 0
                try:
                    for piece in iter_body(parts.path, query):
                        if drop_after is not None and sent + len(piece) > drop_after:
                            self.wfile.write(piece[: max(0, drop_after - sent)])
                            self.close_connection = True
                            return
                        self.wfile.write(piece)
                        sent += len(piece)
                        with owner._lock:
                            owner.served_bytes[parts.path] += len(piece)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def do_HEAD(self) -> None:  # noqa: N802 - stdlib hook
                self._answer(False)

            def do_GET(self) -> None:  # noqa: N802 - stdlib hook
                self._answer(True)

        self.httpd = _Server((host, port), Handler)
        self.base_url = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="media-host", daemon=True)
        self._thread.start()

    def video(
        self,
        name: str = "clip.mp4",
        *,
        size: int = 4 * BLOCK,
        duration: float = 10.0,
        width: int = 1280,
        height: int = 720,
        **extra: Any,
    ) -> str:
        query = {"size": size, "duration": duration, "width": width, "height": height, **extra}
        return f"{self.base_url}/v/{name}?{urlencode(query)}"

    def image(self, name: str = "photo.jpg", *, size: int = 4096, **extra: Any) -> str:
        return f"{self.base_url}/i/{name}?{urlencode({'size': size, **extra})}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


__all__ = ["BLOCK", "MediaHost", "body_parts", "expected_sha256", "iter_body", "mp4_boxes"]


def main() -> None:
    """``python -m mcmp.devstack.media [port]``: serve on loopback, print the URL as JSON, run until killed."""
    import json
    import sys
    import time

    host = MediaHost(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(json.dumps({"url": host.base_url}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        host.stop()


if __name__ == "__main__":
    main()
