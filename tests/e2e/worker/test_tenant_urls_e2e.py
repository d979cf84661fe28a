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
from pathlib import Path
from typing import Any

import pytest
import requests

from mcmp.devstack import free_port, wait_until
from tests.conftest import MCMP
from tests.hostile_media import HTML, JPEG, HostileServer, Route


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
    assert linkedin["lastError"] == (f"assetUrls[0]: {asset} resolves to an unspecified address")
    assert doc["platformPostIds"].get("website")  # the post's other platform is unaffected
    assert _delivery(db, post, "website")["state"] == "published"
    assert inside.connections == 0  # refused before connecting, probe and download alike
    sim = platform_lab.sims["linkedin"].state()
    assert sim["posts"] == [] and not sim["images"]


def _sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{wanted}}} not exported")


@pytest.mark.platforms("linkedin")
def test_a_redirect_from_an_allowed_host_to_a_refused_one_is_refused_and_counted(
    env, db, platform_lab, make_client, make_account, make_post, servers, procs, tmp_path, start_dispatcher
) -> None:
    """Only the media server's own port is allowed: its redirect to another loopback port is refused."""
    client = make_client()
    make_account(client, "linkedin", **platform_lab.account_fields("linkedin", client))
    outside, inside = _start(servers), _start(servers)
    inside.add("/secret.jpg", Route("serve", "image/jpeg", JPEG))
    asset = outside.add("/x.jpg", Route("redirect", location=f"http://127.0.0.1:{inside.port}/secret.jpg"))
    good = outside.add("/ok.jpg", Route("serve", "image/jpeg", JPEG))
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    lab_env = dict(
        platform_lab.env,
        MCMP_FETCH_ALLOWED_NETWORKS=f"127.0.0.1/32:{outside.port}",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    port = free_port()
    worker = procs(
        "worker", [*MCMP, "worker", "-c", "2", "--metrics-port", str(port), "-n", "guard@%h"], lab_env
    )
    wait_until(
        lambda: "worker ready" in worker.log_text() or not worker.alive(), 60, 0.2, "worker did not start"
    )
    assert worker.alive(), worker.log_text()[-3000:]
    start_dispatcher(lab_env)
    soon = datetime.now(UTC) + timedelta(seconds=1)
    refused = make_post(client, ["linkedin"], when=soon, assetUrls=[asset])
    published = make_post(client, ["linkedin"], when=soon, assetUrls=[good])

    assert _settled(db, published)["status"] == "published"
    assert _settled(db, refused)["status"] == "failed"
    delivery = _delivery(db, refused, "linkedin")
    assert delivery["attempt"] == 1 and delivery["errorClass"] == "permanent"
    assert delivery["lastError"] == (
        f"assetUrls[0]: {asset} redirected to http://127.0.0.1:{inside.port}/secret.jpg, "
        "which resolves to a loopback address"
    )
    assert inside.connections == 0
    sim = platform_lab.sims["linkedin"].state()
    assert len(sim["posts"]) == 1 and len(sim["images"]) == 1  # only the good post's image
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert _sample(text, "mcmp_fetch_refusals_total", rule="loopback") >= 1


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc")


@pytest.mark.platforms("linkedin")
def test_endless_bodies_stop_at_the_cap_with_the_worker_memory_bounded(
    env, db, platform_lab, make_client, make_account, make_post, servers, start_worker, start_dispatcher
) -> None:
    """A body with no length and one whose Content-Length lies (chunked, endless) stop at 4 MB;
    an HTML page served as ``image/jpeg`` is refused by its signature. None reaches LinkedIn."""
    client = make_client()
    make_account(client, "linkedin", **platform_lab.account_fields("linkedin", client))
    media = _start(servers)
    good = media.add("/ok.jpg", Route("serve", "image/jpeg", JPEG))
    endless = media.add("/endless.jpg", Route("endless", "image/jpeg"))
    lie = media.add("/lie.jpg", Route("lie", "image/jpeg"))
    page = media.add("/photo.jpg", Route("serve", "image/jpeg", HTML))
    lab_env = dict(
        platform_lab.env,
        MCMP_FETCH_ALLOWED_NETWORKS=f"127.0.0.1/32:{media.port}",
        MCMP_FETCH_MAX_BYTES=str(4 * 1024 * 1024),
        MCMP_FETCH_TOTAL_TIMEOUT_SECONDS="60",
    )
    worker = start_worker(lab_env, concurrency=1, pool="solo")  # the download runs in this process
    start_dispatcher(lab_env)
    warm = make_post(client, ["linkedin"], when=datetime.now(UTC) + timedelta(seconds=1), assetUrls=[good])
    assert _settled(db, warm)["status"] == "published"  # every module a download needs is loaded
    before = _peak_rss_kb(worker.popen.pid)
    soon = datetime.now(UTC) + timedelta(seconds=1)
    posts = {url: make_post(client, ["linkedin"], when=soon, assetUrls=[url]) for url in (endless, lie)}

    html = make_post(client, ["linkedin"], when=soon, assetUrls=[page])

    for url, post in posts.items():
        assert _settled(db, post)["status"] == "failed"
        delivery = _delivery(db, post, "linkedin")
        assert delivery["attempt"] == 1 and delivery["errorClass"] == "permanent"
        assert delivery["lastError"] == f"assetUrls[0]: {url} is larger than 4.0 MB"
    assert _settled(db, html)["status"] == "failed"
    assert _delivery(db, html, "linkedin")["lastError"] == (
        f"assetUrls[0]: {page} is served as image/jpeg but its bytes are not an image or video "
        "(they look like HTML or text)"
    )
    growth_mb = (_peak_rss_kb(worker.popen.pid) - before) / 1024
    # Unbounded, each endless body would fill memory at loopback speed for the whole 60 s.
    assert growth_mb < 40, f"worker peak RSS grew by {growth_mb:.1f} MB"
    assert media.sent < 64 * 1024 * 1024  # the worker stopped reading; the server could not push more
    assert len(platform_lab.sims["linkedin"].state()["posts"]) == 1  # only the warm-up post
    print(f"worker peak RSS growth {growth_mb:.1f} MB; media server sent {media.sent / 1024 / 1024:.1f} MB")


def test_production_with_loopback_allowed_warns_at_start_and_bad_entries_stop_it(env) -> None:
    import subprocess

    def start(**values: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*MCMP, "apikey", "revoke", "nobody"],
            env=dict(env, **values),
            capture_output=True,
            text=True,
            timeout=60,
        )

    prod = start(MCMP_ENV="prod", MCMP_FETCH_ALLOWED_NETWORKS="127.0.0.0/8,10.1.2.0/24:8443")
    output = prod.stdout + prod.stderr
    assert "MCMP_FETCH_ALLOWED_NETWORKS: 127.0.0.0/8 overlaps loopback" in output
    assert "10.1.2.0/24" not in output  # a private range an operator chose is not a hazard
    quiet = start(MCMP_ENV="test", MCMP_FETCH_ALLOWED_NETWORKS="127.0.0.0/8")
    assert "overlaps" not in quiet.stdout + quiet.stderr
    broken = start(MCMP_FETCH_ALLOWED_NETWORKS="10.0.0.0/8,intranet")
    assert broken.returncode != 0
    assert "MCMP_FETCH_ALLOWED_NETWORKS" in broken.stderr and "'intranet' is not a network" in broken.stderr
