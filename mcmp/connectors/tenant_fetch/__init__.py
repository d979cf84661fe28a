"""Fetching URLs that tenants wrote: the only way a connector or the worker reaches one.

``assetUrls``, ``assets.url``, a website's ``webhookUrl`` and a WordPress ``siteUrl`` are written
by client users, while the worker runs inside a private network. A URL pointing back inside
(``http://169.254.169.254/…``, ``http://127.0.0.1:6379``, ``http://0.0.0.0:8080``) would be read
by the worker and, for media, uploaded to a public page. So every fetch of such a URL here:

* accepts only ``http``/``https`` URLs without credentials in them;
* resolves the host once, through an injectable :data:`Resolver` given at most the connect
  timeout and what is left of the fetch's deadline, and refuses it when any of its addresses is
  unspecified, loopback, private, link-local, shared (CGNAT), multicast, reserved (anything
  ``is_reserved``, and every IPv4-compatible ``::/96`` address) or IPv6 unique-local — or an
  IPv4-mapped, IPv4-translated, 6to4, NAT64 or Teredo form of one — unless
  ``MCMP_FETCH_ALLOWED_NETWORKS`` admits it;
* connects to the very address it checked (no second lookup, so DNS rebinding cannot swap it),
  while the ``Host`` header, the TLS server name (SNI) and the certificate check keep the URL's
  host name; connections are kept alive in one pool per process, keyed by host, port, TLS name and
  the addresses that passed, and chosen only after each request's own check (``pool``);
* checks every redirect hop again (at most :data:`MAX_REDIRECTS`, never from https to plain
  http; writes never follow one);
* bounds connect, read and **total** time (every socket read is cut at the deadline, so a server
  dripping a byte a second cannot hold a worker), and counts body bytes while streaming, whatever
  ``Content-Length`` says;
* for media, checks the bytes' signature against the declared type (an HTML page served as
  ``image/jpeg`` is refused).

A refusal raises :class:`FetchRefused`, a ``ValidationError`` naming the item, the host and the
rule (``assetUrls[1]: https://cdn.example/x.jpg resolves to a private address``: what the tenant
reads in ``lastError``; the address it resolved to is in the worker's log only), so the
delivery fails permanently without a retry loop; the observer installed with
:func:`set_refusal_observer` (the worker's Prometheus counter) is told the rule. Nothing is sent
to a refused address: every check happens before connecting.

Interfaces (``what`` names the item in errors, e.g. ``assetUrls[0]``)::

    fetcher = TenantFetcher.from_settings(settings)
    answer = fetcher.request("POST", url, what="account.metadata.webhookUrl", content=body)
    head = fetcher.head(url, what="assetUrls[0]")                       # redirects followed
    media = fetcher.download(url, what="assetUrls[0]", max_bytes=8 * MB, accept=IMAGE_TYPES)
    with fetcher.stream(url, what="assetUrls[0]", max_bytes=1 << 30, accept=VIDEO_TYPES) as media:
        media.content_type, media.declared_size   # type already checked against the bytes
        for chunk in media.iter_bytes(4 << 20):     # or media.read(n): a file-like object
            upload(chunk)

:meth:`TenantFetcher.stream` is the streaming interface for large media: the first bytes are read
and checked before the ``with`` body runs, the rest flows in chunks under the byte cap and the
total deadline (pass ``total_timeout`` for long transfers: the caller's time between chunks
counts too). Answers are read with ``Accept-Encoding: identity``: a body is never decompressed,
so a compressed bomb cannot outgrow the cap.

Built on httpx (requests, redirects, auth) over httpcore, whose network backend is the one seam
that both pins the address and bounds every read. Modules: ``refusals`` (rules, the error, the
observer), ``addresses`` (ranges, resolver), ``transport`` (deadline, error tree), ``pool`` (kept,
pinned, deadline-bound connections), ``media`` (signatures, the stream), ``fetcher`` (checks,
redirects, caps).
"""

from mcmp.connectors.tenant_fetch.addresses import Resolver, address_problem, system_resolver
from mcmp.connectors.tenant_fetch.fetcher import (
    MAX_ANSWER_BYTES,
    MAX_REDIRECTS,
    FetchResponse,
    Head,
    TenantFetcher,
)
from mcmp.connectors.tenant_fetch.media import MEDIA_TYPES, Media, MediaStream, media_type, sniff
from mcmp.connectors.tenant_fetch.refusals import FetchRefused, Rule, set_refusal_observer, show

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_REDIRECTS",
    "MEDIA_TYPES",
    "FetchRefused",
    "FetchResponse",
    "Head",
    "Media",
    "MediaStream",
    "Resolver",
    "Rule",
    "TenantFetcher",
    "address_problem",
    "media_type",
    "set_refusal_observer",
    "show",
    "sniff",
    "system_resolver",
]
