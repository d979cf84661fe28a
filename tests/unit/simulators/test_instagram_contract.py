"""Contract of the Instagram simulator, built from the examples in Meta's docs (ig-user/media,
ig-container, media_publish, content_publishing_limit, error codes, media insights)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests

from mcmp.simulators import simulator_class
from mcmp.simulators.core import start_in_thread
from mcmp.simulators.instagram import InstagramSimulator

V = "v21.0"
USER = "17841405822304914"  # the ig-user id of Meta's examples
T = {"access_token": "EAAB-doc"}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[InstagramSimulator, str]]:
    sim = InstagramSimulator()
    server, url = start_in_thread(sim)
    yield sim, url
    server.shutdown()


@pytest.fixture
def sim(served: tuple[InstagramSimulator, str]) -> InstagramSimulator:
    served[0].reset()
    served[0].set_faults({"rules": []})
    served[0].quota_total, served[0].container_polls, served[0].container_ttl_seconds = 50, 1, 86_400.0
    return served[0]


@pytest.fixture
def url(sim: InstagramSimulator, served: tuple[InstagramSimulator, str]) -> str:
    return served[1]


def ig_error(r: requests.Response, code: int, subcode: int | None = None) -> dict:
    assert r.status_code >= 400
    error = r.json()["error"]
    assert {"message", "type", "code", "is_transient", "fbtrace_id"} <= set(error)
    assert error["code"] == code and error.get("error_subcode") == subcode
    return error


def container(url: str, **form: str) -> str:
    r = requests.post(f"{url}/{V}/{USER}/media", data={**T, **form}, timeout=2)
    assert r.status_code == 200 and set(r.json()) == {"id"}, r.text
    return r.json()["id"]


def status(url: str, container_id: str) -> dict:
    return requests.get(
        f"{url}/{V}/{container_id}", params={**T, "fields": "status_code,status"}, timeout=2
    ).json()


def publish(url: str, container_id: str) -> requests.Response:
    return requests.post(
        f"{url}/{V}/{USER}/media_publish", data={**T, "creation_id": container_id}, timeout=2
    )


def test_found_by_entry_point() -> None:
    assert simulator_class("instagram") is InstagramSimulator


def test_image_container_polls_publishes_and_reads_published(url: str) -> None:
    cid = container(url, image_url="https://cdn.example/a.jpg", caption="#BronzFonz", alt_text="A statue")
    ig_error(publish(url, cid), 9007, 2207027)  # not processed yet
    assert status(url, cid)["status_code"] == "IN_PROGRESS"  # for container_polls polls
    assert status(url, cid)["status_code"] == "FINISHED"
    r = publish(url, cid)
    assert r.status_code == 200 and set(r.json()) == {"id"}
    assert "X-App-Usage" in r.headers
    [entry] = json.loads(r.headers["X-Business-Use-Case-Usage"])[USER]
    assert entry["type"] == "instagram"
    assert status(url, cid)["status_code"] == "PUBLISHED"
    media = requests.get(
        f"{url}/{V}/{USER}/media", params={**T, "fields": "id,caption,timestamp,permalink"}, timeout=2
    ).json()
    [item] = media["data"]
    assert item["id"] == r.json()["id"] and item["caption"] == "#BronzFonz"
    assert item["timestamp"].endswith("+0000") and item["permalink"].startswith(
        "https://www.instagram.com/p/"
    )


def test_carousel_needs_finished_items_and_2_to_10_children(url: str) -> None:
    a = container(url, image_url="https://cdn.example/a.jpg", is_carousel_item="true")
    v = container(url, media_type="VIDEO", video_url="https://cdn.example/v.mp4", is_carousel_item="true")
    r = requests.post(
        f"{url}/{V}/{USER}/media", data={**T, "media_type": "CAROUSEL", "children": a}, timeout=2
    )
    ig_error(r, 100)
    form = {**T, "media_type": "CAROUSEL", "children": f"{a},{v}", "caption": "Fall"}
    ig_error(
        requests.post(f"{url}/{V}/{USER}/media", data=form, timeout=2), 9007, 2207027
    )  # video processing
    assert [status(url, v)["status_code"] for _ in range(2)] == ["IN_PROGRESS", "FINISHED"]
    parent = requests.post(f"{url}/{V}/{USER}/media", data=form, timeout=2).json()["id"]
    status(url, parent)
    assert publish(url, parent).status_code == 200
    ig_error(publish(url, a), 100)  # an item is never published on its own


def test_reels_and_refused_media(url: str) -> None:
    container(
        url, media_type="REELS", video_url="https://cdn.example/r.mp4", caption="Reel", share_to_feed="true"
    )
    r = requests.post(
        f"{url}/{V}/{USER}/media",
        data={**T, "media_type": "VIDEO", "video_url": "https://x/v.mp4"},
        timeout=2,
    )
    ig_error(r, 100)  # VIDEO is for carousel items only
    r = requests.post(f"{url}/{V}/{USER}/media", data={**T, "image_url": "file:///etc/passwd"}, timeout=2)
    ig_error(r, 9004, 2207052)
    r = requests.post(
        f"{url}/{V}/{USER}/media",
        data={**T, "image_url": "https://x/a.jpg", "caption": "x" * 2201},
        timeout=2,
    )
    ig_error(r, 100)
    r = requests.post(
        f"{url}/{V}/{USER}/media",
        data={**T, "image_url": "https://x/a.jpg", "caption": " ".join(f"#h{i}" for i in range(31))},
        timeout=2,
    )
    ig_error(r, 100)


def test_error_and_expired_containers(url: str, sim: InstagramSimulator) -> None:
    bad = container(url, image_url="https://cdn.example/sim-error-2207003.jpg")
    assert status(url, bad) == {
        "status_code": "ERROR",
        "status": "Error: Media upload has failed with error code 2207003",
        "id": bad,
    }
    error = ig_error(publish(url, bad), -1, 2207032)
    assert error["is_transient"] is True
    sim.container_ttl_seconds = 0.0
    old = container(url, image_url="https://cdn.example/a.jpg")
    assert status(url, old)["status_code"] == "EXPIRED"
    ig_error(publish(url, old), -2, 2207020)


def test_publishing_limit_shape_and_quota_refusal(url: str, sim: InstagramSimulator) -> None:
    r = requests.get(
        f"{url}/{V}/{USER}/content_publishing_limit",
        params={**T, "fields": "quota_usage,config", "since": str(int(time.time()) - 3600)},
        timeout=2,
    )
    assert r.json() == {"data": [{"quota_usage": 0, "config": {"quota_total": 50, "quota_duration": 86400}}]}
    plain = requests.get(f"{url}/{V}/{USER}/content_publishing_limit", params=T, timeout=2).json()
    assert plain == {"data": [{"quota_usage": 0}]}  # quota_usage is the default field
    requests.post(f"{url}/_sim/quota", json={"quota_total": 1}, timeout=2)
    for _ in range(2):
        cid = container(url, image_url="https://cdn.example/a.jpg")
        status(url, cid)
        last = publish(url, cid)
    error = ig_error(last, 9, 2207042)
    assert error["is_transient"] is False and sim.state()["quota_usage"] == {USER: 1}


def test_spam_block_and_revoked_token(url: str) -> None:
    cid = container(url, image_url="https://cdn.example/a.jpg", caption="SIM-SPAM")
    status(url, cid)
    ig_error(publish(url, cid), 4, 2207051)
    requests.post(f"{url}/_sim/tokens", json={"revoke": ["EAAB-doc"]}, timeout=2)
    ig_error(requests.get(f"{url}/{V}/{USER}", params=T, timeout=2), 190, 460)
    requests.post(f"{url}/_sim/tokens", json={"restore": ["EAAB-doc"]}, timeout=2)
    assert requests.get(f"{url}/{V}/{USER}", params=T, timeout=2).status_code == 200


def test_media_insights_and_deprecated_metrics(url: str, sim: InstagramSimulator) -> None:
    cid = container(url, image_url="https://cdn.example/a.jpg")
    status(url, cid)
    media_id = publish(url, cid).json()["id"]
    sim.media[media_id]["created_at"] -= 100
    r = requests.get(
        f"{url}/{V}/{media_id}/insights",
        params={**T, "metric": "views,reach,likes,comments,shares,saved"},
        timeout=2,
    )
    data = {d["name"]: d["values"][0]["value"] for d in r.json()["data"]}
    assert set(data) == {"views", "reach", "likes", "comments", "shares", "saved"}
    assert data["views"] > data["reach"] > data["likes"] > 0
    r = requests.get(f"{url}/{V}/{media_id}/insights", params={**T, "metric": "impressions,reach"}, timeout=2)
    assert "no longer supported" in ig_error(r, 100)["message"]
    requests.post(f"{url}/_sim/delete", json={"id": media_id}, timeout=2)
    ig_error(
        requests.get(f"{url}/{V}/{media_id}/insights", params={**T, "metric": "reach"}, timeout=2), 100, 33
    )


def test_budget_code_80002_and_oauth_exchange(url: str, sim: InstagramSimulator) -> None:
    requests.post(f"{url}/_sim/budget", json={"owner_call_limit": 1}, timeout=2)
    assert requests.get(f"{url}/{V}/{USER}", params=T, timeout=2).status_code == 200
    ig_error(requests.get(f"{url}/{V}/{USER}", params=T, timeout=2), 80002)
    args = {
        "grant_type": "fb_exchange_token",
        "client_id": "a",
        "client_secret": "b",
        "fb_exchange_token": "EAAB-x",
    }
    r = requests.get(f"{url}/{V}/oauth/access_token", params=args, timeout=2)
    assert r.json()["expires_in"] == 5_183_944 and sim.state()["refresh_calls"] == 1
