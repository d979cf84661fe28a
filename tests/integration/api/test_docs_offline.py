"""``/docs`` and ``/redoc`` load every script, style and icon from the API itself (no CDN)."""

from __future__ import annotations

import re

import pytest


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_page_and_every_asset_it_references_come_from_the_app(api, page):
    html = api.get(page)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html.text)
    assert refs, html.text
    assert not [r for r in refs if re.match(r"(?:https?:)?//", r)], f"external assets: {refs}"
    spec = re.search(r"""(?:url:|spec-url=)\s*["']([^"']+)["']""", html.text)
    assert spec, html.text
    for ref in [*refs, spec.group(1)]:
        asset = api.get(ref)
        assert asset.status_code == 200 and len(asset.content) > 100, ref
    bundle = [r for r in refs if r.endswith(".js")]
    assert bundle and any(len(api.get(r).content) > 100_000 for r in bundle)  # the real UI, not a stub
    assert api.get(spec.group(1)).json()["info"]["title"] == "MCMP Publisher admin API"
