"""Tenant URLs never reach the worker's own network: end to end through a real worker.

A post's ``assetUrls`` are written by any client user. The worker downloads the bytes for
LinkedIn (and uploads them to a public page), so an asset pointing inside the worker's network
is a server-side request forgery with the page as the exfiltration channel. These tests run a
real worker, dispatcher and LinkedIn simulator; all traffic stays on loopback, and the refused
servers prove they were never connected to.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mcmp.devstack import wait_until
from tests.hostile_media import JPEG, HostileServer, Route


@pytest.fixture
def servers() -> Iterator[list[HostileServer]]:
    started: list[HostileServer] = []
    yield started
    for server in started:
        server.stop()


def _start(servers: list[HostileServer]) -> HostileServer:
    server = HostileServer()
    servers.append(server)
    return server


def _settled(db: Any, post: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        doc = db.posts.find_one({"_id": post["_id"]})
        return doc if doc and doc["status"] in ("published", "failed") else None

    return wait_until(done, timeout, 0.2, "post did not settle")


def _delivery(db: Any, post: dict[str, Any], platform: str) -> dict[str, Any]:
    return db.deliveries.find_one({"postId": str(post["_id"]), "platform": platform})


@pytest.mark.platforms("linkedin", "website")
def test_an_asset_on_the_unspecified_address_is_refused_and_nothing_reaches_linkedin(
    env, db, platform_lab, make_client, make_account, make_post, servers, start_worker, start_dispatcher
) -> None:
    """``http://0.0.0.0:PORT/x.jpg`` reaches the worker's own host on Linux: refused before connecting."""
    client = make_client()
    for platform in ("linkedin", "website"):
        make_account(client, platform, **platform_lab.account_fields(platform, client))
    inside = _start(servers)
    inside.add("/x.jpg", Route("serve", "image/jpeg", JPEG))
    asset = f"http://0.0.0.0:{inside.port}/x.jpg"
    lab_env = dict(platform_lab.env, MCMP_FETCH_ALLOWED_NETWORKS="127.0.0.0/8")
    start_worker(lab_env)
    start_dispatcher(lab_env)
    post = make_post(
        client, ["linkedin", "website"], when=datetime.now(UTC) + timedelta(seconds=1), assetUrls=[asset]
    )

    doc = _settled(db, post)
    linkedin = _delivery(db, post, "linkedin")
    assert linkedin["state"] == "failed", linkedin
    assert linkedin["errorClass"] == "permanent" and linkedin["attempt"] == 1  # no retry loop
    assert linkedin["lastError"] == (f"assetUrls[0]: {asset} resolves to 0.0.0.0, an unspecified address")
    assert doc["platformPostIds"].get("website")  # the post's other platform is unaffected
    assert _delivery(db, post, "website")["state"] == "published"
    assert inside.connections == 0  # refused before connecting, probe and download alike
    sim = platform_lab.sims["linkedin"].state()
    assert sim["posts"] == [] and not sim["images"]
