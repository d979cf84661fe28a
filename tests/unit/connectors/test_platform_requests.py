"""Platform calls are prepared exactly as requests prepares them, and carry no cookie between calls."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from mcmp.connectors import http
from mcmp.connectors.platform_requests import prepare

GRAPH = "http://127.0.0.1:8123/v21.0/1234_5678/feed"
PLAIN_CALLS: list[dict[str, Any]] = [
    {"method": "post", "url": GRAPH, "data": {"message": "Spring menü & more", "access_token": "EAAB+/="}},
    {"method": "POST", "url": GRAPH, "data": {"published": False, "scheduled": 17, "link": None}},
    {"method": "POST", "url": GRAPH, "data": [("tags", "a"), ("tags", "b")], "params": {"fields": "id,name"}},
    {"method": "GET", "url": GRAPH, "params": {"access_token": "t", "fields": ["id", "message"]}},
    {"method": "GET", "url": GRAPH + "?limit=5", "params": {"after": "QVFIU"}},
    {
        "method": "GET",
        "url": "https://api.linkedin.com/rest/posts?q=author&author=urn%3Ali%3Aorganization%3A1",
    },
    {
        "method": "GET",
        "url": "https://api.linkedin.com/rest/posts/urn%3Ali%3Ashare%3A7",
        "params": {"a": "b"},
    },
    {
        "method": "POST",
        "url": "https://api.linkedin.com/rest/posts",
        "json": {"author": "urn:li:organization:1", "commentary": "Ünïcode ✓", "lifecycleState": "PUBLISHED"},
        "headers": {"Authorization": "Bearer x", "LinkedIn-Version": "202405", "Accept-Encoding": None},
    },
    {"method": "POST", "url": "https://mybusiness.googleapis.com/v4/a/1/l/2/localPosts", "json": [1, "two"]},
    {"method": "POST", "url": GRAPH, "data": "already=encoded", "headers": {"Content-Type": "text/plain"}},
    {"method": "POST", "url": GRAPH, "data": b"raw bytes"},
    {"method": "DELETE", "url": GRAPH},
    {"method": "POST", "url": GRAPH, "json": {"a": 1}, "data": {"b": "2"}},  # data wins, as in requests
]
OTHER_CALLS: list[dict[str, Any]] = [
    {"method": "POST", "url": GRAPH, "files": {"source": ("v.mp4", b"\0" * 10)}},
    {"method": "GET", "url": "https://user:secret@graph.facebook.com/v21.0/me"},
    {"method": "GET", "url": "https://Graph.Facebook.com/v21.0/me"},
    {"method": "GET", "url": "https://graph.facebook.com/v21.0/a%7eb"},  # requests unescapes ~
    {"method": "GET", "url": "https://graph.facebook.com/v21.0/a%zz"},
    {"method": "GET", "url": "https://api.linkedin.com/rest/posts/urn%3ali%3Ashare%3A7"},  # urllib3 raises it
    {"method": "GET", "url": GRAPH, "hooks": {"response": [lambda r, *a, **k: r]}},
    {"method": "GET", "url": "https://graph.facebook.com/v21.0/../me"},
    {"method": "GET", "url": "https://graph.facebook.com/v21.0/me page"},
    {"method": "GET", "url": "https://graph.facebook.com"},
    {"method": "GET", "url": GRAPH, "cookies": {"a": "b"}},
    {"method": "GET", "url": GRAPH, "auth": ("user", "pass")},
    {"method": "POST", "url": GRAPH, "data": {"nested": {"a": 1}}},
    {"method": "POST", "url": GRAPH, "json": {"x": float("nan")}},
]


@pytest.mark.parametrize("call", PLAIN_CALLS, ids=lambda c: f"{c['method']} {c['url'][-22:]}")
def test_a_plain_call_is_sent_exactly_as_requests_would_send_it(call: dict[str, Any]) -> None:
    ours, theirs = http.BaseUrlSession(), requests.Session()
    mine = ours.prepare_request(_request(call))
    reference = requests.Session.prepare_request(theirs, _request(call))
    assert prepare(_request(call), ours) is not None  # the direct path, not requests' own
    assert (mine.method, mine.url, mine.body) == (reference.method, reference.url, reference.body)
    assert dict(mine.headers) == dict(reference.headers)


@pytest.mark.parametrize("call", OTHER_CALLS, ids=lambda c: f"{c['method']} {c['url'][-22:]}")
def test_any_other_call_is_left_to_requests(call: dict[str, Any]) -> None:
    assert prepare(_request(call), http.BaseUrlSession()) is None


def _request(call: dict[str, Any]) -> requests.Request:
    kwargs = {k: v for k, v in call.items() if k not in ("method", "url")}
    request = requests.Request(method=call["method"].upper(), url=call["url"], **kwargs)
    request.data, request.params = request.data or {}, request.params or {}  # as Session.request passes them
    return request


class _SetsCookies(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.cookies_seen.append(self.headers.get("Cookie"))  # type: ignore[attr-defined]
        body = b"{}"
        self.send_response(200)
        self.send_header("Set-Cookie", f"lidc=tenant-{len(self.server.cookies_seen)}; Path=/")  # type: ignore[attr-defined]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def platform() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SetsCookies)
    server.cookies_seen = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_cookie_one_tenants_answer_sets_never_rides_on_the_next_call(platform: ThreadingHTTPServer) -> None:
    session = http.BaseUrlSession()
    url = f"http://127.0.0.1:{platform.server_port}/rest/me"
    first = http.send(session, "GET", url, timeout=5)
    assert first.cookies.get("lidc") == "tenant-1"  # the answer itself still shows what it set
    http.send(session, "GET", url, timeout=5)
    http.send(session, "GET", url, params={"fields": "id"}, cookies={"explicit": "1"}, timeout=5)
    assert platform.cookies_seen == [None, None, "explicit=1"]  # type: ignore[attr-defined]
    assert len(session.cookies) == 0
