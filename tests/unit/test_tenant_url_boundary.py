"""Tenant URLs reach the network only through ``mcmp.connectors.tenant_fetch``: a static check.

Platform base URLs come from configuration and keep their own ``requests`` sessions; values a
tenant wrote (``MediaItem.url``, ``assetUrls``, ``assets.url``, ``webhookUrl``, ``siteUrl``) must
never flow into one. The scan follows such values through assignments, loops, f-strings and calls
(into the parameters of functions of the same name anywhere in the scanned packages) and fails
when one reaches ``send(session, …)``, ``<session>.get/post/…``, ``<anything>.request(…)`` other
than a fetcher's, or when any module calls ``requests``/``httpx``/``urllib`` at module level
(those bypass every configured session). The scan is first shown to catch the code it replaced.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests import ROOT
from tests.python_source import parse

SCANNED = ("mcmp/connectors", "mcmp/worker", "mcmp/api")
FETCHER = "mcmp/connectors/tenant_fetch/"
VERBS = frozenset({"get", "head", "post", "put", "patch", "delete", "options", "request", "stream", "send"})
MODULE_CLIENTS = frozenset({"requests", "httpx"})
SOURCE_KEYS = frozenset({"webhookUrl", "webhook_url", "siteUrl", "site_url", "assetUrls", "url"})
SOURCE_CALLS = frozenset({"webhook_url", "site_url"})
# Calls that read a tenant URL through the fetcher: what they return is media, not a URL.
FETCHING_CALLS = frozenset({"open_media", "video_facts"})


def _name(node: ast.AST) -> str:
    """Dotted text of a callee or receiver (``self.session``, ``requests``), '' when not simple."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _name(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    if isinstance(node, ast.Call):
        return _name(node.func)
    return ""


@dataclass
class Module:
    path: str
    tree: ast.Module
    functions: list[ast.FunctionDef] = field(default_factory=list)


@dataclass
class Scan:
    modules: list[Module]
    tainted: dict[int, set[str]] = field(default_factory=dict)  # id(function) -> tainted names
    findings: list[str] = field(default_factory=list)

    def by_name(self, name: str) -> list[ast.FunctionDef]:
        if not hasattr(self, "_index"):
            self._index: dict[str, list[ast.FunctionDef]] = {}
            for module in self.modules:
                for fn in module.functions:
                    self._index.setdefault(fn.name, []).append(fn)
        return self._index.get(name, [])

    # --- taint --------------------------------------------------------------------------------
    def is_tainted(self, node: ast.AST | None, names: set[str]) -> bool:
        if node is None:
            return False
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and sub.id in names:
                return True
            if (
                isinstance(sub, ast.Attribute)
                and sub.attr == "url"
                and _name(sub.value) not in ("response", "request")
            ):
                return True
            if isinstance(sub, ast.Call) and _name(sub.func).split(".")[-1] in SOURCE_CALLS:
                return True
            if isinstance(sub, ast.Subscript) and _const(sub.slice) in SOURCE_KEYS:
                return True
            if (
                isinstance(sub, ast.Call)
                and isinstance(sub.func, ast.Attribute)
                and sub.func.attr == "get"
                and sub.args
                and _const(sub.args[0]) in SOURCE_KEYS
            ):
                return True
        return False

    def propagate(self) -> None:
        """Fixed point: tainted names per function, and tainted parameters through calls."""
        changed = True
        while changed:
            changed = False
            for module in self.modules:
                for fn in module.functions:
                    names = self.tainted.setdefault(id(fn), set())
                    for node in ast.walk(fn):
                        targets: list[ast.AST] = []
                        value: ast.AST | None = None
                        if isinstance(node, ast.Assign):
                            targets, value = list(node.targets), node.value
                        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                            targets, value = [node.target], node.value
                        elif isinstance(node, ast.For | ast.comprehension):
                            targets, value = [node.target], node.iter
                        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                            targets, value = [node.optional_vars], node.context_expr
                        if value is not None and _fetched(value):
                            value = None  # bytes read through the fetcher carry no URL on
                        if value is not None and self.is_tainted(value, names):
                            for target in targets:
                                for sub in ast.walk(target):
                                    if isinstance(sub, ast.Name) and sub.id not in names:
                                        names.add(sub.id)
                                        changed = True
                        if isinstance(node, ast.Call):
                            changed |= self._taint_callee(node, names)

    def _taint_callee(self, call: ast.Call, names: set[str]) -> bool:
        receiver, _, callee = _name(call.func).rpartition(".")
        if not callee or "fetcher" in receiver.lower():
            return False  # handing a tenant URL to the fetcher is the sanctioned way
        changed = False
        for fn in self.by_name(callee):
            params = [a.arg for a in fn.args.args]
            if params and params[0] in ("self", "cls"):
                params = params[1:]
            tainted = self.tainted.setdefault(id(fn), set())
            for index, arg in enumerate(call.args):
                if index < len(params) and self.is_tainted(arg, names) and params[index] not in tainted:
                    tainted.add(params[index])
                    changed = True
            for keyword in call.keywords:
                if (
                    keyword.arg in params
                    and self.is_tainted(keyword.value, names)
                    and keyword.arg not in tainted
                ):
                    tainted.add(keyword.arg)
                    changed = True
        return changed

    # --- sinks --------------------------------------------------------------------------------
    def check(self) -> list[str]:
        for module in self.modules:
            if module.path.startswith(FETCHER):
                continue
            for node in ast.walk(module.tree):
                if isinstance(node, ast.Call):
                    self._module_level_call(module, node)
            for fn in module.functions:
                names = self.tainted.get(id(fn), set())
                for node in ast.walk(fn):
                    if isinstance(node, ast.Call):
                        self._tainted_sink(module, fn, node, names)
        return self.findings

    def _module_level_call(self, module: Module, call: ast.Call) -> None:
        callee = _name(call.func)
        root, _, verb = callee.rpartition(".")
        if (root in MODULE_CLIENTS and verb in VERBS) or callee.endswith("urlopen"):
            self.findings.append(
                f"{module.path}:{call.lineno} calls {callee}() outside any configured session"
            )

    def _tainted_sink(self, module: Module, fn: ast.FunctionDef, call: ast.Call, names: set[str]) -> None:
        callee = _name(call.func)
        receiver, _, verb = callee.rpartition(".")
        if "fetcher" in receiver.lower():
            return  # the guarded fetcher is the way tenant URLs are reached
        url: ast.AST | None = None
        if callee == "send" and len(call.args) >= 3:
            url = call.args[2]
        elif verb == "request" and len(call.args) >= 2:
            url = call.args[1]
        elif (
            verb in VERBS
            and call.args
            and any(k in receiver.lower() for k in ("session", "client", "requests"))
        ):
            url = call.args[0]
        url = next((k.value for k in call.keywords if k.arg == "url"), url)
        if url is not None and self.is_tainted(url, names):
            self.findings.append(
                f"{module.path}:{call.lineno} {fn.name}() sends a tenant URL through {callee}() "
                "instead of mcmp.connectors.tenant_fetch"
            )


def _fetched(node: ast.AST) -> bool:
    """Is ``node`` a read through the guarded fetcher (its result is media, not a URL)?"""
    if not isinstance(node, ast.Call):
        return False
    receiver, _, callee = _name(node.func).rpartition(".")
    return callee in FETCHING_CALLS or "fetcher" in receiver.lower()


def _const(node: ast.AST) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def _module(path: str, source: str) -> Module:
    tree = parse(source)
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    return Module(path, tree, functions)


def scan(sources: Iterable[tuple[str, str]]) -> list[str]:
    result = Scan([_module(path, text) for path, text in sources])
    result.propagate()
    return result.check()


def _tree() -> Iterator[tuple[str, str]]:
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield str(path.relative_to(ROOT)), path.read_text()


# The code the fetcher replaced, as it was: each must be caught.
BEFORE = {
    "mcmp/connectors/linkedin/connector.py": """
class LinkedInConnector:
    def publish(self, request):
        item = request.content.media[0]
        media = {"id": self._upload_image(request.credentials, "owner", item.url)}
    def _upload_image(self, creds, owner, url):
        source = send(self.session, "GET", url, timeout=self.timeout)
""",
    "mcmp/worker/publishing/media_checks.py": """
import requests
def probe(url, timeout):
    response = requests.head(url, timeout=timeout, allow_redirects=True)
""",
    "mcmp/connectors/website/webhook.py": """
def webhook_url(credentials):
    return credentials.metadata.get("webhookUrl")
class WebhookPublisher:
    def publish(self, request):
        response = send(self.session, "POST", webhook_url(request.credentials), data=b"")
""",
    "mcmp/connectors/website/wordpress.py": """
class WordPressPublisher:
    def _call(self, step, method, url, creds, **kwargs):
        return send(self.session, method, url, timeout=self.timeout, **kwargs)
    def publish(self, request):
        site = site_url(request.credentials)
        self._call("post", "POST", f"{site}/wp-json/wp/v2/posts", request.credentials, json={})
    def _download(self, item, creds):
        return self._call("download", "GET", item.url, creds, stream=True)
""",
    "mcmp/worker/publishing/content.py": """
def media_for(client_id, urls):
    for url in urls:
        found = fetch(url)
def build(post):
    media_for("c", [u for u in post.get("assetUrls") or []])
def fetch(url):
    session = requests.Session()
    return session.get(url)
""",
}


def test_the_scan_catches_the_code_the_fetcher_replaced() -> None:
    findings = scan(BEFORE.items())
    assert {f.split(":")[0] for f in findings} == set(BEFORE), findings
    assert len(findings) == 5, findings


def test_no_tenant_url_reaches_the_network_except_through_the_fetcher() -> None:
    sources = list(_tree())
    assert any(path.startswith(FETCHER) for path, _ in sources)
    assert len(sources) > 50  # the whole worker, connectors and API were read
    assert scan(sources) == []


def test_the_boundary_holds_for_the_files_that_fetch_tenant_urls() -> None:
    """The files that reach tenant URLs do so through a fetcher, not by avoiding the scan."""
    uses = {path for path, text in _tree() if "fetcher." in text or "fetcher=self.fetcher" in text}
    assert {
        "mcmp/connectors/facebook/video.py",
        "mcmp/connectors/linkedin/uploads.py",
        "mcmp/connectors/website/webhook.py",
        "mcmp/connectors/website/wordpress.py",
    } <= uses
    assert "TenantFetcher" in Path(ROOT / "mcmp/worker/publishing/media_checks.py").read_text()
