"""The guarded fetcher of tenant URLs against real local HTTP(S) servers.

All traffic stays on loopback: refused URLs are refused before any connection (the servers
count their connections to prove it), names resolve through the resolver seam or /etc/hosts
(``localhost``), and non-loopback ranges are only ever *resolved to*, never connected to.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mcmp.connectors.errors import AmbiguousError, PermanentError, RetryableError
from mcmp.connectors.tenant_fetch import (
    MAX_REDIRECTS,
    FetchRefused,
    Rule,
    TenantFetcher,
    address_problem,
    set_refusal_observer,
)
from tests.hostile_media import HTML, JPEG, PNG, HostileServer, Route

MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64


@pytest.fixture
def servers() -> Iterator[Callable[..., HostileServer]]:
    started: list[HostileServer] = []

    def start(**kwargs: object) -> HostileServer:
        server = HostileServer(**kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def refusals() -> Iterator[list[Rule]]:
    seen: list[Rule] = []
    set_refusal_observer(seen.append)
    yield seen
    set_refusal_observer(None)


def resolving(table: dict[str, list[str]], calls: list[str] | None = None):
    """A resolver seam: names map to addresses without DNS (no packet leaves the host)."""

    def resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        if calls is not None:
            calls.append(host)
        return [ipaddress.ip_address(a) for a in table[host]]

    return resolve


def refused(fetch: Callable[[], object]) -> FetchRefused:
    with pytest.raises(FetchRefused) as err:
        fetch()
    return err.value


# --- address rules --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "rule", "text"),
    [
        ("0.0.0.0", Rule.UNSPECIFIED, "an unspecified address"),
        ("0.1.2.3", Rule.UNSPECIFIED, "an unspecified address"),
        ("127.0.0.1", Rule.LOOPBACK, "a loopback address"),
        ("127.8.9.10", Rule.LOOPBACK, "a loopback address"),
        ("10.0.0.5", Rule.PRIVATE, "a private address"),
        ("172.16.3.4", Rule.PRIVATE, "a private address"),
        ("192.168.1.1", Rule.PRIVATE, "a private address"),
        ("169.254.169.254", Rule.LINK_LOCAL, "a link-local address"),
        ("100.64.0.1", Rule.SHARED, "a shared (carrier-grade NAT) address"),
        ("224.0.0.251", Rule.MULTICAST, "a multicast address"),
        ("240.0.0.1", Rule.RESERVED, "a reserved address"),
        ("255.255.255.255", Rule.RESERVED, "a reserved address"),
        ("192.0.2.10", Rule.RESERVED, "a reserved address"),
        ("198.18.0.1", Rule.RESERVED, "a reserved address"),
        ("::", Rule.UNSPECIFIED, "an unspecified address"),
        ("::1", Rule.LOOPBACK, "a loopback address"),
        ("fe80::1", Rule.LINK_LOCAL, "a link-local address"),
        ("fc00::1", Rule.UNIQUE_LOCAL, "an IPv6 unique-local address"),
        ("fd12:3456::1", Rule.UNIQUE_LOCAL, "an IPv6 unique-local address"),
        ("ff02::1", Rule.MULTICAST, "a multicast address"),
        ("2001:db8::1", Rule.RESERVED, "a reserved address"),
        ("64:ff9b:1::1", Rule.PRIVATE, "a private address"),
        ("::ffff:10.0.0.5", Rule.PRIVATE, "the IPv4-mapped form of 10.0.0.5, a private address"),
        ("::ffff:127.0.0.1", Rule.LOOPBACK, "the IPv4-mapped form of 127.0.0.1, a loopback address"),
        (
            "::ffff:0:a9fe:a9fe",
            Rule.LINK_LOCAL,
            "the IPv4-translated form of 169.254.169.254, a link-local address",
        ),
        ("64:ff9b::a00:5", Rule.PRIVATE, "the NAT64 form of 10.0.0.5, a private address"),
        ("2002:7f00:1::1", Rule.LOOPBACK, "the 6to4 form of 127.0.0.1, a loopback address"),
        (
            "2001:0:4136:e378:8000:63bf:f5ff:fffa",  # Teredo client 10.0.0.5 (stored inverted)
            Rule.PRIVATE,
            "the Teredo form of 10.0.0.5, a private address",
        ),
        # IPv4-compatible IPv6 (::/96, deprecated): whatever the IPv4 inside, refused
        ("::7f00:1", Rule.RESERVED, "the IPv4-compatible form of 127.0.0.1, a reserved address"),
        ("::a9fe:a9fe", Rule.RESERVED, "the IPv4-compatible form of 169.254.169.254, a reserved address"),
        ("::808:808", Rule.RESERVED, "the IPv4-compatible form of 8.8.8.8, a reserved address"),
        # IETF-reserved IPv6 ranges that Python counts as global
        ("4000::1", Rule.RESERVED, "a reserved address"),
        ("e000::1", Rule.RESERVED, "a reserved address"),
    ],
)
def test_every_non_public_range_is_refused_by_name(address: str, rule: Rule, text: str) -> None:
    assert address_problem(ipaddress.ip_address(address), 80) == (rule, text)


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_and_their_embedded_forms_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address), 443) is None


def test_allowed_networks_admit_a_range_or_one_port_of_it() -> None:
    fetcher = TenantFetcher(["127.0.0.0/8", "10.20.0.7/32:8443", "[fd00::/8]:443"])
    loopback, mapped = ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::ffff:127.0.0.1")
    assert address_problem(loopback, 5, fetcher.allowed) is None
    assert address_problem(mapped, 5, fetcher.allowed) is None  # the same host, written in IPv6
    internal = ipaddress.ip_address("10.20.0.7")
    assert address_problem(internal, 8443, fetcher.allowed) is None
    assert address_problem(internal, 80, fetcher.allowed) == (Rule.PRIVATE, "a private address")
    assert address_problem(ipaddress.ip_address("fd00::9"), 443, fetcher.allowed) is None
    assert address_problem(ipaddress.ip_address("10.20.0.8"), 8443, fetcher.allowed) is not None


# --- refused before connecting ----------------------------------------------------------------
def test_a_name_resolving_inside_is_refused_without_connecting(refusals: list[Rule]) -> None:
    """Any forbidden address among a name's answers refuses it (no address is tried)."""
    fetcher = TenantFetcher(resolver=resolving({"media.example": ["10.0.0.5"]}))
    err = refused(lambda: fetcher.download("http://media.example/x.jpg?sig=secret", what="assetUrls[1]"))
    # the tenant reads the host and the rule, never the internal address it resolved to
    assert str(err) == "assetUrls[1]: http://media.example/x.jpg resolves to a private address"
    assert err.rule is Rule.PRIVATE and err.field == "assetUrls[1]"
    # an admitted address beside a forbidden one (loopback admitted here, so a regression that
    # tried the first address would still only reach this machine)
    mixed = TenantFetcher(
        ["127.0.0.0/8"], resolver=resolving({"cdn.example": ["127.0.0.1", "169.254.169.254"]})
    )
    err = refused(lambda: mixed.request("GET", "https://cdn.example/a.png", what="assetUrls[0]"))
    assert err.rule is Rule.LINK_LOCAL
    assert refusals == [Rule.PRIVATE, Rule.LINK_LOCAL]  # the worker counts these by rule


def test_the_tenant_reads_the_rule_and_the_host_and_the_operator_the_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``lastError`` (the error's text) never names the internal address; the worker's log does."""
    table = {"media.example": ["::ffff:10.0.0.5"], "meta.example": ["169.254.169.254"]}
    fetcher = TenantFetcher(resolver=resolving(table))
    with caplog.at_level("WARNING", logger="mcmp.connectors.tenant_fetch"):
        mapped = refused(lambda: fetcher.download("https://media.example/x.jpg", what="assetUrls[0]"))
        meta = refused(lambda: fetcher.head("http://meta.example/latest", what="assetUrls[1]"))
    assert str(mapped) == "assetUrls[0]: https://media.example/x.jpg resolves to a private address"
    assert str(meta) == "assetUrls[1]: http://meta.example/latest resolves to a link-local address"
    assert "10.0.0.5" not in str(mapped) and "169.254" not in str(meta)
    logged = caplog.text
    assert "resolved to ::ffff:a00:5, the IPv4-mapped form of 10.0.0.5, a private address" in logged
    assert "resolved to 169.254.169.254" in logged


def test_a_failed_lookup_names_the_host_and_keeps_the_resolver_words_in_our_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def failing(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        raise OSError(-2, "Name or service not known (search corp.internal via 10.1.0.2)")

    fetcher = TenantFetcher(resolver=failing)
    with caplog.at_level("WARNING"), pytest.raises(RetryableError) as err:
        fetcher.request("GET", "https://gone.example/x", what="assetUrls[0]", connect_retries=1)
    assert str(err.value) == (
        "assetUrls[0]: network error before the site answered (gone.example could not be resolved)"
    )
    assert "corp.internal via 10.1.0.2" in caplog.text


def test_schemes_credentials_and_garbage_are_refused(servers, refusals: list[Rule]) -> None:
    server = servers()
    server.add("/x.jpg", Route("serve", "image/jpeg", JPEG))
    fetcher = TenantFetcher(["127.0.0.0/8"])
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/x.jpg", "gopher://127.0.0.1:70/_x", "data:,x"):
        assert refused(lambda url=url: fetcher.download(url, what="assetUrls[0]")).rule is Rule.SCHEME
    with_password = f"http://admin:hunter2@127.0.0.1:{server.port}/x.jpg"
    err = refused(lambda: fetcher.download(with_password, what="assetUrls[0]"))
    assert err.rule is Rule.CREDENTIALS and "hunter2" not in str(err) and "admin" not in str(err)
    assert refused(lambda: fetcher.download("http://[::1", what="assetUrls[0]")).rule is Rule.INVALID
    assert server.connections == 0


def test_the_unspecified_address_is_refused_even_with_loopback_allowed(servers) -> None:
    server = servers()
    server.add("/x.jpg", Route("serve", "image/jpeg", JPEG))
    fetcher = TenantFetcher(["127.0.0.0/8"])
    err = refused(lambda: fetcher.download(f"http://0.0.0.0:{server.port}/x.jpg", what="assetUrls[0]"))
    assert str(err) == (
        f"assetUrls[0]: http://0.0.0.0:{server.port}/x.jpg resolves to an unspecified address"
    )
    assert server.connections == 0


def test_a_name_resolving_to_loopback_is_refused_when_loopback_is_not_allowed(servers) -> None:
    server, other = servers(), servers()
    server.add("/x.jpg", Route("serve", "image/jpeg", JPEG))
    other.add("/x.jpg", Route("serve", "image/jpeg", JPEG))
    only_other = TenantFetcher([f"127.0.0.1/32:{other.port}"])  # one test server's port, nothing else
    err = refused(lambda: only_other.download(f"http://localhost:{server.port}/x.jpg", what="assetUrls[0]"))
    assert err.rule is Rule.LOOPBACK and f"localhost:{server.port}/x.jpg resolves to " in str(err)
    err = refused(lambda: only_other.download(f"http://127.0.0.1:{server.port}/x.jpg", what="assetUrls[0]"))
    assert err.rule is Rule.LOOPBACK
    assert server.connections == 0
    assert only_other.download(f"http://127.0.0.1:{other.port}/x.jpg", what="assetUrls[0]").content == JPEG


# --- redirects --------------------------------------------------------------------------------
def test_a_redirect_to_a_refused_address_is_refused_at_that_hop(servers, refusals: list[Rule]) -> None:
    allowed, inside = servers(), servers()
    inside.add("/secret.jpg", Route("serve", "image/jpeg", JPEG))
    hop = allowed.add("/x.jpg", Route("redirect", location=f"http://127.0.0.1:{inside.port}/secret.jpg"))
    allowed.add("/zero", Route("redirect", location=f"http://0.0.0.0:{inside.port}/secret.jpg"))
    allowed.add("/file", Route("redirect", location="file:///etc/passwd"))
    fetcher = TenantFetcher([f"127.0.0.1/32:{allowed.port}"])
    err = refused(lambda: fetcher.download(hop, what="assetUrls[2]"))
    assert str(err) == (
        f"assetUrls[2]: {hop} redirected to http://127.0.0.1:{inside.port}/secret.jpg, "
        "which resolves to a loopback address"
    )
    assert refused(lambda: fetcher.head(allowed.base + "/zero", what="a")).rule is Rule.UNSPECIFIED
    err = refused(lambda: fetcher.request("GET", allowed.base + "/file", what="a"))
    assert err.rule is Rule.SCHEME and "redirected to file://" in str(err)
    assert inside.connections == 0 and allowed.connections == 3
    assert refusals == [Rule.LOOPBACK, Rule.UNSPECIFIED, Rule.SCHEME]


def test_a_redirect_from_https_to_plain_http_is_refused(servers, tmp_path: Path) -> None:
    server_ctx, client_ctx = _certificate(tmp_path, "media.test")
    secure, plain = servers(tls=server_ctx), servers()
    plain.add("/x.jpg", Route("serve", "image/jpeg", JPEG))
    secure.add("/x.jpg", Route("redirect", location=f"http://127.0.0.1:{plain.port}/x.jpg"))
    secure.add("/ok.jpg", Route("serve", "image/jpeg", JPEG))
    secure.add("/same.jpg", Route("redirect", location="/ok.jpg"))
    fetcher = TenantFetcher(
        ["127.0.0.0/8"], resolver=resolving({"media.test": ["127.0.0.1"]}), ssl_context=client_ctx
    )
    start = f"https://media.test:{secure.port}"
    err = refused(lambda: fetcher.download(f"{start}/x.jpg", what="assetUrls[0]"))
    assert err.rule is Rule.SCHEME
    assert str(err) == (
        f"assetUrls[0]: {start}/x.jpg redirected to http://127.0.0.1:{plain.port}/x.jpg, "
        "which leaves https for plain http"
    )
    assert plain.connections == 0
    assert fetcher.download(f"{start}/same.jpg", what="assetUrls[0]").content == JPEG  # https → https


def test_at_most_three_redirects_are_followed(servers) -> None:
    server = servers()
    server.add("/x.jpg", Route("serve", "image/jpeg", JPEG))
    for n in range(1, MAX_REDIRECTS + 2):
        server.add(f"/r{n}", Route("redirect", location=f"/r{n - 1}" if n > 1 else "/x.jpg"))
    fetcher = TenantFetcher(["127.0.0.0/8"])
    assert fetcher.download(f"{server.base}/r{MAX_REDIRECTS}", what="a").content == JPEG
    err = refused(lambda: fetcher.download(f"{server.base}/r{MAX_REDIRECTS + 1}", what="assetUrls[0]"))
    assert err.rule is Rule.REDIRECTS and "redirected more than 3 times" in str(err)


def test_writes_never_follow_a_redirect(servers) -> None:
    server = servers()
    server.add("/hook", Route("redirect", status=307, location="/elsewhere"))
    answer = TenantFetcher(["127.0.0.0/8"]).request("POST", server.base + "/hook", what="w", content=b"{}")
    assert answer.status_code == 307
    assert [(m, p) for m, p, _ in server.requests] == [("POST", "/hook")]


def test_a_cookie_a_site_sets_never_reaches_another_fetch(servers) -> None:
    """Cookies live at most along one fetch's redirect chain: fetches share connections, not a jar."""
    server = servers()
    server.add("/x.jpg", Route("serve", "image/jpeg", JPEG))
    server.add(
        "/login", Route("redirect", location="/x.jpg", headers={"Set-Cookie": "session=tenant-a; Path=/"})
    )
    server.add("/hook", Route("serve", "application/json", b"{}", headers={"Set-Cookie": "seen=1; Path=/"}))
    fetcher = TenantFetcher(["127.0.0.0/8"])
    assert fetcher.download(server.base + "/login", what="assetUrls[0]").content == JPEG
    fetcher.request("POST", server.base + "/hook", what="w", content=b"{}")
    fetcher.request("POST", server.base + "/hook", what="w", content=b"{}")
    assert fetcher.download(server.base + "/x.jpg", what="assetUrls[0]").content == JPEG
    cookies = [(path, headers.get("Cookie")) for _, path, headers in server.requests]
    assert cookies == [
        ("/login", None),
        ("/x.jpg", "session=tenant-a"),  # the same fetch's next hop
        ("/hook", None),
        ("/hook", None),
        ("/x.jpg", None),
    ]


# --- pinned address, Host header, TLS name -----------------------------------------------------
def test_the_connection_goes_to_the_checked_address_with_the_original_host_header(servers) -> None:
    """DNS rebinding: a second lookup would answer 10.0.0.5; there is none."""
    server = servers()
    server.add("/x.jpg", Route("serve", "image/jpeg", JPEG))
    calls: list[str] = []
    answers = iter([["127.0.0.1"], ["10.0.0.5"], ["10.0.0.5"]])

    def rebinding(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        calls.append(host)
        return [ipaddress.ip_address(a) for a in next(answers)]

    fetcher = TenantFetcher([f"127.0.0.1/32:{server.port}"], resolver=rebinding)
    media = fetcher.download(f"http://media.test:{server.port}/x.jpg", what="assetUrls[0]")
    assert media.content == JPEG and media.content_type == "image/jpeg"
    assert calls == ["media.test"]  # resolved once, connected to that address
    assert server.requests[-1][2]["Host"] == f"media.test:{server.port}"


def _certificate(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A CA and a leaf for ``name``: (server context, client context trusting only that CA)."""
    now = dt.datetime.now(dt.UTC)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcmp test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "leaf.pem", tmp_path / "leaf.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server, client


def test_tls_uses_the_url_host_for_sni_and_the_certificate_check(servers, tmp_path: Path) -> None:
    server_ctx, client_ctx = _certificate(tmp_path, "media.test")
    names: list[str | None] = []
    server_ctx.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,misc,return-value]
    server = servers(tls=server_ctx)
    server.add("/x.png", Route("serve", "image/png", PNG))
    table = {"media.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}
    fetcher = TenantFetcher(["127.0.0.0/8"], resolver=resolving(table), ssl_context=client_ctx)
    media = fetcher.download(f"https://media.test:{server.port}/x.png", what="assetUrls[0]")
    assert media.content == PNG and names == ["media.test"]
    # The same address under another name: the certificate does not match that name.
    with pytest.raises(RetryableError, match="TLS certificate not valid"):
        fetcher.download(f"https://other.test:{server.port}/x.png", what="assetUrls[0]")
    assert names == ["media.test", "other.test"]


# --- sizes, time, types -----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["endless", "lie"])
def test_bodies_stop_at_the_cap_whatever_content_length_says(servers, kind: str) -> None:
    server = servers()
    url = server.add(f"/{kind}.jpg", Route(kind, "image/jpeg"))
    fetcher = TenantFetcher(["127.0.0.0/8"], max_bytes=1024 * 1024)
    started = time.monotonic()
    err = refused(lambda: fetcher.download(url, what="assetUrls[0]"))
    assert err.rule is Rule.TOO_LARGE and str(err) == f"assetUrls[0]: {url} is larger than 1.0 MB"
    assert time.monotonic() - started < 5
    time.sleep(0.2)
    sent = server.sent
    time.sleep(0.5)
    assert server.sent == sent  # the connection is closed: the server cannot push more


def test_a_declared_size_above_the_cap_is_refused_before_the_body(servers) -> None:
    server = servers()
    url = server.add("/big.jpg", Route("serve", "image/jpeg", JPEG + b"\0" * (2 * 1024 * 1024)))
    err = refused(lambda: TenantFetcher(["127.0.0.0/8"]).download(url, what="a", max_bytes=1024 * 1024))
    assert str(err) == f"a: {url} declares 2.0 MB, more than 1.0 MB"


def test_a_server_dripping_one_byte_a_second_is_cut_off_by_the_total_timeout(servers) -> None:
    server = servers()
    url = server.add("/slow.jpg", Route("drip", "image/jpeg"))
    fetcher = TenantFetcher(["127.0.0.0/8"], read_timeout=5, total_timeout=2)
    started = time.monotonic()
    with pytest.raises(RetryableError, match=r"no complete answer within 2 s"):
        fetcher.download(url, what="assetUrls[0]")
    assert 1.8 < time.monotonic() - started < 3.5  # each read came within the read timeout


def test_media_types_are_checked_against_the_bytes(servers, refusals: list[Rule]) -> None:
    server = servers()
    html = server.add("/photo.jpg", Route("serve", "image/jpeg", HTML))
    png_as_jpeg = server.add("/logo.jpg", Route("serve", "image/jpeg", PNG))
    clip_as_image = server.add("/clip.jpg", Route("serve", "image/jpeg", MP4))
    generic = server.add("/blob", Route("serve", "application/octet-stream", JPEG))
    fetcher = TenantFetcher(["127.0.0.0/8"])
    err = refused(lambda: fetcher.download(html, what="assetUrls[0]"))
    assert str(err) == (
        f"assetUrls[0]: {html} is served as image/jpeg but its bytes are not an image or video "
        "(they look like HTML or text)"
    )
    assert fetcher.download(png_as_jpeg, what="a").content_type == "image/png"  # the bytes decide
    assert refused(lambda: fetcher.download(clip_as_image, what="a")).rule is Rule.MEDIA_TYPE
    assert fetcher.download(generic, what="a").content_type == "image/jpeg"
    jpeg_only = frozenset({"image/jpeg"})
    err = refused(lambda: fetcher.download(png_as_jpeg, what="assetUrls[3]", accept=jpeg_only))
    assert (
        str(err)
        == f"assetUrls[3]: {png_as_jpeg} is image/png, which is not accepted here (accepted: image/jpeg)"
    )
    assert refusals == [Rule.MEDIA_TYPE] * 3


def test_media_host_errors_say_whether_to_retry(servers) -> None:
    server = servers()
    server.add("/down.jpg", Route("serve", "text/plain", b"down", status=503))
    fetcher = TenantFetcher(["127.0.0.0/8"])
    with pytest.raises(
        PermanentError, match=r"^assetUrls\[0\]: .*/gone.jpg answered HTTP 404 \(media not found\)$"
    ):
        fetcher.download(server.base + "/gone.jpg", what="assetUrls[0]")
    with pytest.raises(RetryableError, match="answered HTTP 503"):
        fetcher.download(server.base + "/down.jpg", what="assetUrls[0]")


def test_the_streaming_interface_yields_chunks_and_reads_like_a_file(servers) -> None:
    server = servers()
    body = MP4 + bytes(range(256)) * 4096  # ~1 MB of video
    url = server.add("/clip.mp4", Route("serve", "video/mp4", body))
    fetcher = TenantFetcher(["127.0.0.0/8"])
    with fetcher.stream(url, what="assetUrls[0]", accept=frozenset({"video/mp4"})) as media:
        assert media.content_type == "video/mp4" and media.declared_size == len(body)
        chunks = list(media.iter_bytes(100_000))
    assert b"".join(chunks) == body and max(map(len, chunks)) == 100_000
    with fetcher.stream(url, what="assetUrls[0]") as media:
        assert media.read(10) == body[:10]
        assert media.read() == body[10:] and media.read(5) == b""
    cap = len(body) - 1
    with pytest.raises(FetchRefused, match=f"declares {len(body):,} bytes, more than {cap:,} bytes"):
        with fetcher.stream(url, what="a", max_bytes=cap):
            pytest.fail("the declared length already exceeds the cap")


def test_answers_are_capped_and_a_lost_answer_to_a_write_is_ambiguous(servers) -> None:
    server = servers()
    url = server.add("/hook", Route("endless", "application/json"))
    fetcher = TenantFetcher(["127.0.0.0/8"])
    assert refused(lambda: fetcher.request("GET", url, what="w", max_bytes=4096)).rule is Rule.TOO_LARGE
    with pytest.raises(AmbiguousError, match="larger than"):
        fetcher.request("POST", url, what="w", content=b"{}", max_bytes=4096)


# --- DNS inside the deadline --------------------------------------------------------------------
@pytest.fixture
def slow_dns() -> Iterator[Callable[[str, int], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]]:
    """A resolver that answers only when the test ends (a name server that does not answer)."""
    release = threading.Event()
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        calls.append(host)
        release.wait(60)
        return [ipaddress.ip_address("127.0.0.1")]

    resolve.calls = calls  # type: ignore[attr-defined]
    yield resolve
    release.set()


def test_a_lookup_that_hangs_ends_within_the_connect_timeout(slow_dns) -> None:
    fetcher = TenantFetcher(["127.0.0.0/8"], resolver=slow_dns, connect_timeout=0.5, total_timeout=30)
    started = time.monotonic()
    with pytest.raises(RetryableError, match=r"slow\.example did not resolve within 0\.5 s"):
        fetcher.request("GET", "http://slow.example/x", what="assetUrls[0]", connect_retries=1)
    assert time.monotonic() - started < 5  # not the 60 s the name server takes


def test_lookups_and_their_retries_count_inside_the_fetch_deadline(slow_dns) -> None:
    """The whole fetch, every retry's lookup included, ends at its total deadline."""
    fetcher = TenantFetcher(["127.0.0.0/8"], resolver=slow_dns, connect_timeout=5, total_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(RetryableError, match="slow.example did not resolve within"):
        fetcher.request("GET", "http://slow.example/x", what="assetUrls[0]", connect_retries=3)
    assert time.monotonic() - started < 4  # not 3 tries x 5 s
    with pytest.raises(RetryableError):
        fetcher.head("http://slow.example/x", what="assetUrls[0]")
    with pytest.raises(RetryableError):
        fetcher.download("http://slow.example/x.jpg", what="assetUrls[0]")
    assert time.monotonic() - started < 8


def test_a_site_that_refused_the_first_connection_is_tried_again_and_answers() -> None:
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with socket.socket() as probe:  # a port nobody listens on yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started: list[ThreadingHTTPServer] = []

    def listen() -> None:
        server = ThreadingHTTPServer(("127.0.0.1", port), Hook)
        started.append(server)
        server.serve_forever()

    threading.Timer(0.1, lambda: threading.Thread(target=listen, daemon=True).start()).start()
    try:
        answer = TenantFetcher(["127.0.0.0/8"]).request(
            "POST", f"http://127.0.0.1:{port}/hook", what="webhookUrl", json={"id": 1}
        )
        assert answer.status_code == 202
    finally:
        for server in started:
            server.shutdown()
