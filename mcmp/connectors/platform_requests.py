"""How a platform call becomes a ``requests.PreparedRequest``: requests' rules, without the generic parts.

Every Graph, LinkedIn and Google call is a method, an ASCII URL, a few headers and a JSON or form
body. requests prepares each one by merging cookie jars and settings through runtime-checked
``Protocol`` ``isinstance`` tests (about 10 µs each on CPython 3.11, nine per call in requests
2.34) and re-parsing the URL; that was a third of a platform call's client CPU. ``prepare``
builds the same request directly when the call is of that plain shape, with requests' own
rules written out (a request's headers over the session's, ``None`` dropping one; ``None``
form values dropped; ``json`` only without ``data``; the same content types and lengths).
Anything else (files, auth, cookies, a URL requests would re-quote or normalise) returns
``None`` and goes through requests' own preparation.

Platform calls carry their tokens, never cookies: a worker's session serves every tenant, so a
cookie one tenant's answer sets must never ride on another tenant's call. ``NoCookies`` is that
session's jar: it keeps nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import urlencode

from requests import PreparedRequest, Request, Session
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict

# URLs requests sends unchanged: lowercase scheme and host, a path, no userinfo, no fragment, no
# dot segment (urllib3 removes those), and escapes only in upper case (urllib3 raises the others)
# of characters requests leaves escaped.
_PLAIN_URL = re.compile(
    r"https?://[a-z0-9.\-]+(?::[1-9][0-9]{0,4})?/(?:[A-Za-z0-9\-._~/:@!$&'()*+,;=?]|%[0-9A-F]{2})*\Z"
)
_ESCAPE = re.compile(r"%([0-9A-F]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_FORM_VALUES = (str, bytes, int, float)


class NoCookies(RequestsCookieJar):
    """A cookie jar that keeps nothing: platform answers' cookies never reach another call."""

    def set_cookie(self, cookie: Any, *args: Any, **kwargs: Any) -> None:
        """Dropped: see the module docstring."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        """Nothing is read from an answer's ``Set-Cookie``."""


def _form(value: object) -> str | None:
    """``application/x-www-form-urlencoded`` of a dict or a list of pairs as requests encodes it
    (``None`` values left out), or None when a key or value is not a plain form value."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list | tuple) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        items = list(value)
    else:
        return None
    encoded: list[tuple[bytes, Any]] = []
    for key, values in items:
        if not isinstance(key, str | bytes):
            return None
        for v in values if isinstance(values, list | tuple) else (values,):
            if v is None:
                continue
            if not isinstance(v, _FORM_VALUES):
                return None
            encoded.append(
                (key.encode() if isinstance(key, str) else key, v.encode() if isinstance(v, str) else v)
            )
    return urlencode(encoded, doseq=True)


def prepare(request: Request, session: Session) -> PreparedRequest | None:
    """``request`` prepared as ``session`` would, or None when it is not a plain platform call."""
    url, data, params = request.url, request.data, request.params
    if request.files or request.cookies or request.auth or session.auth or not isinstance(url, str):
        return None
    if request.hooks.get("response"):  # requests' merge of a call's hooks with the session's
        return None
    if not isinstance(session.cookies, NoCookies) or session.params:
        return None
    if not _PLAIN_URL.match(url) or "/." in url:
        return None
    if "%" in url and any(chr(int(h, 16)) in _UNRESERVED for h in _ESCAPE.findall(url)):
        return None  # requests would unescape it
    query = _form(params or {})
    form = "" if isinstance(data, str | bytes) else _form(data or {})
    if query is None or form is None:
        return None
    body: bytes | str | None = None
    content_type: str | None = None
    if not data and request.json is not None:
        try:
            body = json.dumps(request.json, allow_nan=False).encode()
        except ValueError:  # requests raises its InvalidJSONError for this
            return None
        content_type = "application/json"
    elif isinstance(data, str | bytes):
        body = data or None
    elif data:
        body, content_type = form, "application/x-www-form-urlencoded"

    if query:
        url += ("&" if "?" in url else "?") + query
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict(cast(Mapping[str, str], session.headers))
    headers.update(request.headers or {})
    for name in [k for k, v in headers.items() if v is None]:
        del headers[name]

    prepared = PreparedRequest()
    prepared.method = str(request.method).upper()
    prepared.url = url
    prepared.prepare_headers(headers)
    prepared.prepare_content_length(body)
    if content_type and "content-type" not in prepared.headers:
        prepared.headers["Content-Type"] = content_type
    prepared.body = body
    prepared._cookies = session.cookies  # type: ignore[attr-defined]  # a redirect's go to the empty jar
    prepared.prepare_hooks(session.hooks)
    return prepared
