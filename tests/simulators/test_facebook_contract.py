"""Contract of the Facebook simulator, built from the examples in Meta's docs (Pages posts guide,
page/feed, page/photos, page/published_posts, error handling, rate limiting, long-lived tokens,
Page insights)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from mcmp.simulators import simulator_class
from mcmp.simulators.core import start_in_thread
from mcmp.simulators.facebook import FacebookSimulator

V = "v21.0"
PAGE = "1000001"
T = {"access_token": "EAAB-doc"}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FacebookSimulator, str]]:
    sim = FacebookSimulator(app_id="app-1", app_secret="s3cret")
    server, url = start_in_thread(sim)
    yield sim, url
    server.shutdown()


@pytest.fixture
def url(served: tuple[FacebookSimulator, str]) -> str:
    served[0].reset()
    served[0].set_faults({"rules": []})
    served[0].app_call_limit, served[0].owner_call_limit = 200_000, 48_000
    return served[1]


def assert_graph_error(r: requests.Response, code: int, subcode: int | None = None) -> dict:
    assert r.status_code >= 400
    error = r.json()["error"]
    assert {"message", "type", "code", "fbtrace_id"} <= set(error)
    assert error["code"] == code and error.get("error_subcode") == subcode
    if code in (1, 2) and r.status_code >= 500:  # Graph's unknown / service errors: transient
        assert error["is_transient"] is True
    else:
        assert "is_transient" not in error  # Facebook's format; Instagram adds it to every error
    return error


def test_found_by_entry_point() -> None:
    assert simulator_class("facebook") is FacebookSimulator


def test_feed_post_answers_page_scoped_id_with_usage_headers(url: str) -> None:
    r = requests.post(f"{url}/{V}/{PAGE}/feed", data={**T, "message": "Hello Fans!"}, timeout=2)
    assert r.status_code == 200 and set(r.json()) == {"id"}
    assert r.json()["id"].startswith(f"{PAGE}_")
    app = json.loads(r.headers["X-App-Usage"])
    assert set(app) == {"call_count", "total_cputime", "total_time"}
    [entry] = json.loads(r.headers["X-Business-Use-Case-Usage"])[PAGE]
    assert entry["type"] == "pages" and "estimated_time_to_regain_access" in entry


def test_photo_published_and_unpublished_then_attached_media(url: str) -> None:
    r = requests.post(
        f"{url}/{V}/{PAGE}/photos", data={**T, "url": "https://cdn.example/a.jpg", "message": "Hi"}, timeout=2
    )
    assert set(r.json()) == {"id", "post_id"} and r.json()["post_id"].startswith(f"{PAGE}_")
    ids = []
    for name in ("b", "c"):
        r = requests.post(
            f"{url}/{V}/{PAGE}/photos",
            data={**T, "url": f"https://cdn.example/{name}.jpg", "published": "false"},
            timeout=2,
        )
        assert set(r.json()) == {"id"}
        ids.append(r.json()["id"])
    form = {**T, "message": "Two photos"}
    form.update({f"attached_media[{i}]": json.dumps({"media_fbid": fbid}) for i, fbid in enumerate(ids)})
    r = requests.post(f"{url}/{V}/{PAGE}/feed", data=form, timeout=2)
    assert r.status_code == 200
    r = requests.post(f"{url}/{V}/{PAGE}/feed", data=form, timeout=2)  # photos already attached
    assert_graph_error(r, 100)


def test_oauth_errors_use_the_graph_format(url: str) -> None:
    r = requests.post(f"{url}/{V}/{PAGE}/feed", data={"message": "x"}, timeout=2)
    assert_graph_error(r, 190)
    r = requests.post(f"{url}/{V}/{PAGE}/feed", data={"message": "x", "access_token": "garbage"}, timeout=2)
    assert_graph_error(r, 190)
    requests.post(f"{url}/_sim/tokens", json={"action": "revoke", "token": "EAAB-doc"}, timeout=2)
    r = requests.post(f"{url}/{V}/{PAGE}/feed", data={**T, "message": "x"}, timeout=2)
    assert assert_graph_error(r, 190, 460)["type"] == "OAuthException"
    requests.post(
        f"{url}/_sim/tokens", json={"action": "register", "token": "short", "expires_in": -1}, timeout=2
    )
    r = requests.get(f"{url}/{V}/{PAGE}", params={"access_token": "short"}, timeout=2)
    assert_graph_error(r, 190, 463)


def test_unknown_page_and_deleted_post_are_100_33(url: str) -> None:
    r = requests.post(f"{url}/{V}/not-a-page/feed", data={**T, "message": "x"}, timeout=2)
    assert "does not exist" in assert_graph_error(r, 100, 33)["message"]
    post_id = requests.post(f"{url}/{V}/{PAGE}/feed", data={**T, "message": "x"}, timeout=2).json()["id"]
    assert requests.delete(f"{url}/{V}/{post_id}", params=T, timeout=2).json() == {"success": True}
    assert_graph_error(requests.get(f"{url}/{V}/{post_id}", params=T, timeout=2), 100, 33)


def test_duplicate_post_and_unscrapable_link(url: str) -> None:
    data = {**T, "message": "Same again", "link": "https://example.com"}
    assert requests.post(f"{url}/{V}/{PAGE}/feed", data=data, timeout=2).status_code == 200
    assert_graph_error(requests.post(f"{url}/{V}/{PAGE}/feed", data=data, timeout=2), 506)
    r = requests.post(f"{url}/{V}/{PAGE}/feed", data={**T, "link": "ftp://nope"}, timeout=2)
    assert_graph_error(r, 1609005)


def test_published_posts_since_limit_and_cursor(url: str, served: tuple[FacebookSimulator, str]) -> None:
    for i in range(3):
        requests.post(f"{url}/{V}/{PAGE}/feed", data={**T, "message": f"post {i}"}, timeout=2)
    sim = served[0]
    oldest = min(sim.posts.values(), key=lambda p: p["created_time"])
    oldest["created_time"] -= 3600
    params = {**T, "fields": "id,message,created_time,permalink_url", "limit": "1"}
    page1 = requests.get(f"{url}/{V}/{PAGE}/published_posts", params=params, timeout=2).json()
    assert [p["message"] for p in page1["data"]] == ["post 2"] and "next" in page1["paging"]
    assert set(page1["data"][0]) == {"id", "message", "created_time", "permalink_url"}
    after = page1["paging"]["cursors"]["after"]
    page2 = requests.get(f"{url}/{V}/{PAGE}/published_posts", params={**params, "after": after}, timeout=2)
    assert [p["message"] for p in page2.json()["data"]] == ["post 1"]
    since = str(int(oldest["created_time"]) + 60)
    recent = requests.get(f"{url}/{V}/{PAGE}/feed", params={**T, "since": since}, timeout=2).json()
    assert sorted(p["message"] for p in recent["data"]) == ["post 1", "post 2"]


def test_post_engagement_fields_and_insights(url: str, served: tuple[FacebookSimulator, str]) -> None:
    post_id = requests.post(f"{url}/{V}/{PAGE}/feed", data={**T, "message": "x"}, timeout=2).json()["id"]
    served[0].posts[post_id]["created_time"] -= 100
    fields = "reactions.summary(true),comments.summary(true),shares"
    node = requests.get(f"{url}/{V}/{post_id}", params={**T, "fields": fields}, timeout=2).json()
    assert node["reactions"]["summary"]["total_count"] > 0 and node["comments"]["summary"]["total_count"] > 0
    assert node["shares"]["count"] > 0
    r = requests.get(
        f"{url}/{V}/{post_id}/insights",
        params={**T, "metric": "post_media_view,post_total_media_view_unique"},
        timeout=2,
    )
    [views, reach] = r.json()["data"]
    assert views["name"] == "post_media_view" and views["period"] == "lifetime"
    assert views["values"][0]["value"] > reach["values"][0]["value"] > 0
    r = requests.get(
        f"{url}/{V}/{post_id}/insights", params={**T, "metric": "post_media_view,post_impressions"}, timeout=2
    )
    assert "valid insights metric" in assert_graph_error(r, 100)["message"]
    assert_graph_error(requests.get(f"{url}/{V}/{post_id}/insights", params=T, timeout=2), 3001, 1504028)


def test_call_budgets_answer_4_and_80001_with_regain_estimate(url: str) -> None:
    requests.post(f"{url}/_sim/budget", json={"owner_call_limit": 1, "window_seconds": 300}, timeout=2)
    assert requests.get(f"{url}/{V}/{PAGE}", params=T, timeout=2).status_code == 200
    r = requests.get(f"{url}/{V}/{PAGE}", params=T, timeout=2)
    assert_graph_error(r, 80001)
    [entry] = json.loads(r.headers["X-Business-Use-Case-Usage"])[PAGE]
    assert entry["call_count"] == 100 and 1 <= entry["estimated_time_to_regain_access"] <= 5
    requests.post(f"{url}/_sim/budget", json={"app_call_limit": 0, "owner_call_limit": 100}, timeout=2)
    assert_graph_error(requests.get(f"{url}/{V}/{PAGE}", params=T, timeout=2), 4)


def test_token_exchange_long_lived_and_page_tokens(url: str, served: tuple[FacebookSimulator, str]) -> None:
    args = {"grant_type": "fb_exchange_token", "client_id": "app-1", "client_secret": "s3cret"}
    r = requests.get(
        f"{url}/{V}/oauth/access_token", params={**args, "fb_exchange_token": "EAAB-short"}, timeout=2
    )
    assert r.json()["token_type"] == "bearer" and r.json()["expires_in"] == 5_183_944
    requests.post(f"{url}/_sim/tokens", json={"token": "page-tok", "expires_in": None}, timeout=2)
    r = requests.get(
        f"{url}/{V}/oauth/access_token", params={**args, "fb_exchange_token": "page-tok"}, timeout=2
    )
    assert "expires_in" not in r.json()
    new = r.json()["access_token"]
    assert requests.get(f"{url}/{V}/{PAGE}", params={"access_token": new}, timeout=2).status_code == 200
    bad = requests.get(
        f"{url}/{V}/oauth/access_token",
        params={**args, "client_secret": "wrong", "fb_exchange_token": "EAAB-short"},
        timeout=2,
    )
    assert_graph_error(bad, 1)
    assert served[0].state()["refresh_calls"] == 3


def test_fault_injection_speaks_graph(url: str, served: tuple[FacebookSimulator, str]) -> None:
    served[0].set_faults(
        {"rules": [{"kind": "http_500", "count": 1}, {"kind": "rate_limit", "retry_after": 120}]}
    )
    r = requests.post(f"{url}/{V}/{PAGE}/feed", data={**T, "message": "x"}, timeout=2)
    assert r.status_code == 500 and assert_graph_error(r, 1)["message"]
    r = requests.post(f"{url}/{V}/{PAGE}/feed", data={**T, "message": "x"}, timeout=2)
    assert_graph_error(r, 613)
    assert r.headers["Retry-After"] == "120" and "X-App-Usage" in r.headers
    assert served[0].state()["posts"] == []
