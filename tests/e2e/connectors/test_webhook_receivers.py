"""The receiver snippets of docs/connectors.md, run as written (Python, and Node with the machine's
``node``), accept what the website connector signs and refuse what it did not."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from mcmp.config import Settings
from mcmp.connectors import AuthError, Credentials, PostContent, PublishRequest, signed_headers
from mcmp.connectors.website import WebsiteConnector
from tests import ROOT
from tests.conftest import LOOPBACK

SECRET = "receiver-secret-0123456789"
DOC = ROOT / "docs" / "connectors.md"

PY_SERVER = """
import http.server, json, sys
from urllib.parse import parse_qs, urlsplit

SECRET = sys.argv[1].encode()
POSTS = {}


class Receiver(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, doc):
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_one(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not mcmp_webhook_is_authentic(SECRET, self.command, self.path, self.headers, body):
            return self.answer(401, {"error": "bad signature"})
        if self.command == "POST":
            key = self.headers["Idempotency-Key"]
            POSTS.setdefault(key, f"py-{len(POSTS) + 1}")
            return self.answer(201, {"id": POSTS[key], "url": None})
        key = parse_qs(urlsplit(self.path).query).get("idempotency_key", [""])[0]
        if key in POSTS:
            return self.answer(200, {"id": POSTS[key], "url": None})
        return self.answer(404, {"error": "unknown key"})

    do_GET = do_POST = handle_one


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
print(server.server_address[1], flush=True)
server.serve_forever()
"""

JS_SERVER = """
const http = require("node:http");
const SECRET = process.argv[2];
const posts = new Map();

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const answer = (status, doc) => {
      res.writeHead(status, { "Content-Type": "application/json" });
      res.end(JSON.stringify(doc));
    };
    if (!mcmpWebhookIsAuthentic(SECRET, req, Buffer.concat(chunks))) return answer(401, { error: "bad signature" });
    if (req.method === "POST") {
      const key = req.headers["idempotency-key"];
      if (!posts.has(key)) posts.set(key, `js-${posts.size + 1}`);
      return answer(201, { id: posts.get(key), url: null });
    }
    const key = new URL(req.url, "http://x").searchParams.get("idempotency_key");
    if (posts.has(key)) return answer(200, { id: posts.get(key), url: null });
    return answer(404, { error: "unknown key" });
  });
});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
"""


def doc_block(language: str, marker: str) -> str:
    """The fenced ``language`` block of docs/connectors.md that contains ``marker``."""
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)
    [block] = [b for b in blocks if marker in b]
    return block


def _start(command: list[str], tmp: Path) -> Iterator[str]:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp)
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        assert port.isdigit(), proc.stderr.read() if proc.stderr else ""
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(params=["python", "node"])
def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "python":
        script = tmp_path / "receiver.py"
        script.write_text(doc_block("python", "def mcmp_webhook_is_authentic") + PY_SERVER)
        yield from _start([sys.executable, str(script), SECRET], tmp_path)
    else:
        node = shutil.which("node")
        assert node, "node is required (the frontend tests need it too)"
        script = tmp_path / "receiver.js"
        script.write_text(doc_block("js", "function mcmpWebhookIsAuthentic") + JS_SERVER)
        yield from _start([node, str(script), SECRET], tmp_path)


def _request(url: str, secret: str, key: str) -> PublishRequest:
    credentials = Credentials("acct", "website", secret, metadata={"webhookUrl": url})
    return PublishRequest(
        key, key, "a1", datetime.now(UTC), PostContent("p1", "c1", "Title", "Hello, wörld"), credentials
    )


def test_the_documented_receivers_accept_what_the_worker_signs_and_nothing_else(receiver: str) -> None:
    connector = WebsiteConnector(Settings(website={"timeout_seconds": 5}, fetch_allowed_networks=[LOOPBACK]))
    url = f"{receiver}/hooks/acme?lang=fr&q=a b"
    published = connector.publish(_request(url, SECRET, "66f0c0ffee0000000000beef"))
    assert published.platform_post_id.endswith("-1")
    found = connector.find_published(_request(url, SECRET, "66f0c0ffee0000000000beef"))  # signed GET
    assert found is not None and found.platform_post_id == published.platform_post_id
    assert connector.find_published(_request(url, SECRET, "66f0c0ffee000000000000ff")) is None

    with pytest.raises(AuthError):  # another secret
        connector.publish(_request(url, "another-secret-0123456789", "k2"))
    body = b'{"title":"T","body":"B"}'
    headers = signed_headers(SECRET, "POST", url, "k3", body)
    with httpx.Client(trust_env=False) as http:
        assert http.post(url, content=body, headers=headers).status_code in (200, 201)
        assert http.post(url, content=body + b" ", headers=headers).status_code == 401  # body
        assert (
            http.post(f"{receiver}/hooks/other?lang=fr&q=a b", content=body, headers=headers).status_code
            == 401
        )
        assert http.post(url, content=body, headers={**headers, "Idempotency-Key": "k4"}).status_code == 401
        old = signed_headers(SECRET, "POST", url, "k3", body, now=datetime.now(UTC).timestamp() - 301)
        assert http.post(url, content=body, headers=old).status_code == 401  # too old
        ahead = signed_headers(SECRET, "POST", url, "k3", body, now=datetime.now(UTC).timestamp() + 120)
        assert http.post(url, content=body, headers=ahead).status_code == 401  # too far ahead
        garbled = {**headers, "X-MCMP-Signature": b"sha256=" + "é".encode() * 32}
        assert http.post(url, content=body, headers=garbled).status_code == 401  # and no crash
        assert http.post(url, content=body, headers=headers).status_code in (200, 201)  # still serving
