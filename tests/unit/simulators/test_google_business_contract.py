"""Contract of the Google Business Profile simulator, built from Google's v4 localPosts examples
(create / list / get / delete / reportInsights), its error format and the OAuth token endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from mcmp.simulators.core import start_in_thread
from mcmp.simulators.google_business import GoogleBusinessSimulator

LOC = "accounts/1/locations/2"
H = {"Authorization": "Bearer gbp-test-doc"}
DOC_CTA_POST = {  # the "Call to action Posts" example, as a STANDARD post
    "languageCode": "en-US",
    "summary": "Come in for our spooky Halloween event!",
    "callToAction": {"actionType": "ORDER", "url": "http://www.example.com"},
    "media": [{"mediaFormat": "PHOTO", "sourceUrl": "https://www.google.com/real-image.jpg"}],
    "topicType": "STANDARD",
}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[GoogleBusinessSimulator, str]]:
    sim = GoogleBusinessSimulator()
    server, url = start_in_thread(sim)
    yield sim, url
    server.shutdown()


@pytest.fixture
def url(served: tuple[GoogleBusinessSimulator, str]) -> str:
    served[0].reset()
    served[0].set_faults({"rules": []})
    served[0].quota_per_minute = 300
    return served[1]


def test_create_returns_the_local_post(url: str) -> None:
    post = requests.post(f"{url}/v4/{LOC}/localPosts", json=DOC_CTA_POST, headers=H, timeout=2).json()
    assert post["name"].startswith(f"{LOC}/localPosts/")
    assert post["createTime"].endswith("Z") and post["state"] in ("LIVE", "PROCESSING") and post["searchUrl"]
    assert post["callToAction"] == DOC_CTA_POST["callToAction"]


def test_invalid_argument_uses_google_error_format(url: str) -> None:
    r = requests.post(f"{url}/v4/{LOC}/localPosts", json={"summary": "no topic"}, headers=H, timeout=2)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT" and error["message"]
    bad_cta = {**DOC_CTA_POST, "callToAction": {"actionType": "BOOK"}}
    assert requests.post(f"{url}/v4/{LOC}/localPosts", json=bad_cta, headers=H, timeout=2).status_code == 400
    call = {**DOC_CTA_POST, "callToAction": {"actionType": "CALL"}}
    assert requests.post(f"{url}/v4/{LOC}/localPosts", json=call, headers=H, timeout=2).status_code == 200


def test_list_pages_get_and_delete(url: str) -> None:
    names = [
        requests.post(
            f"{url}/v4/{LOC}/localPosts", json={**DOC_CTA_POST, "summary": f"s{i}"}, headers=H, timeout=2
        ).json()["name"]
        for i in range(25)
    ]
    first = requests.get(f"{url}/v4/{LOC}/localPosts", headers=H, timeout=2).json()
    assert len(first["localPosts"]) == 20 and first["nextPageToken"]  # default page size 20
    rest = requests.get(
        f"{url}/v4/{LOC}/localPosts", params={"pageToken": first["nextPageToken"]}, headers=H, timeout=2
    ).json()
    assert len(rest["localPosts"]) == 5 and "nextPageToken" not in rest
    assert (
        requests.get(f"{url}/v4/{LOC}/localPosts", params={"pageSize": 101}, headers=H, timeout=2).status_code
        == 400
    )
    post_id = names[0].rsplit("/", 1)[1]
    assert (
        requests.get(f"{url}/v4/{LOC}/localPosts/{post_id}", headers=H, timeout=2).json()["summary"] == "s0"
    )
    assert requests.delete(f"{url}/v4/{LOC}/localPosts/{post_id}", headers=H, timeout=2).json() == {}
    missing = requests.get(f"{url}/v4/{LOC}/localPosts/{post_id}", headers=H, timeout=2)
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"


def test_report_insights_shape(url: str) -> None:
    name = requests.post(f"{url}/v4/{LOC}/localPosts", json=DOC_CTA_POST, headers=H, timeout=2).json()["name"]
    body = {
        "localPostNames": [name],
        "basicRequest": {
            "metricRequests": [
                {"metric": "LOCAL_POST_VIEWS_SEARCH"},
                {"metric": "LOCAL_POST_ACTIONS_CALL_TO_ACTION"},
            ],
            "timeRange": {"startTime": "2026-01-01T00:00:00Z", "endTime": "2026-12-31T00:00:00Z"},
        },
    }
    r = requests.post(f"{url}/v4/{LOC}/localPosts:reportInsights", json=body, headers=H, timeout=2).json()
    (entry,) = r["localPostMetrics"]
    assert entry["localPostName"] == name
    assert {v["metric"] for v in entry["metricValues"]} == {
        "LOCAL_POST_VIEWS_SEARCH",
        "LOCAL_POST_ACTIONS_CALL_TO_ACTION",
    }
    assert all(isinstance(v["totalValue"]["value"], str) for v in entry["metricValues"])


def test_auth_errors(url: str) -> None:
    r = requests.get(f"{url}/v4/{LOC}/localPosts", headers={"Authorization": "Bearer unknown"}, timeout=2)
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"
    requests.post(
        f"{url}/_sim/tokens",
        json={"action": "register", "token": "t1", "locations": ["accounts/9/locations/9"]},
        timeout=2,
    )
    r = requests.get(f"{url}/v4/{LOC}/localPosts", headers={"Authorization": "Bearer t1"}, timeout=2)
    assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"


def test_token_endpoint(url: str) -> None:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": "gbp-test-refresh-a",
        "client_id": "id",
        "client_secret": "s",
    }
    ok = requests.post(f"{url}/token", data=form, timeout=2).json()
    assert ok["token_type"] == "Bearer" and ok["expires_in"] > 0 and "refresh_token" not in ok
    requests.post(
        f"{url}/_sim/tokens", json={"action": "revoke", "refresh_token": "gbp-test-refresh-a"}, timeout=2
    )
    r = requests.post(f"{url}/token", data=form, timeout=2)
    assert r.status_code == 400 and r.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    assert requests.get(f"{url}/_sim/state", timeout=2).json()["refresh_calls"] == 2


def test_per_minute_quota(url: str, served: tuple[GoogleBusinessSimulator, str]) -> None:
    served[0].quota_per_minute = 2
    codes = [requests.get(f"{url}/v4/{LOC}/localPosts", headers=H, timeout=2).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = requests.get(f"{url}/v4/{LOC}/localPosts", headers=H, timeout=2)
    assert r.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_several_photos_in_one_post_and_videos_refused(
    url: str, served: tuple[GoogleBusinessSimulator, str]
) -> None:
    photos = [{"mediaFormat": "PHOTO", "sourceUrl": f"https://cdn.example/p{i}.jpg"} for i in range(4)]
    r = requests.post(
        f"{url}/v4/{LOC}/localPosts", json={**DOC_CTA_POST, "media": photos}, headers=H, timeout=2
    )
    assert r.status_code == 200, r.text
    assert [m["sourceUrl"] for m in r.json()["media"]] == [p["sourceUrl"] for p in photos]
    video = {"mediaFormat": "VIDEO", "sourceUrl": "https://cdn.example/clip.mp4"}
    r = requests.post(
        f"{url}/v4/{LOC}/localPosts", json={**DOC_CTA_POST, "media": [video]}, headers=H, timeout=2
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    [violation] = error["details"][0]["fieldViolations"]
    assert violation == {
        "field": "media[0].media_format",
        "description": "Video uploaded from post is not currently supported.",
    }


def test_local_posts_list_the_newest_first_also_within_one_clock_tick(url: str) -> None:
    """As on LinkedIn: a reconciliation reading newest first within a budget must not meet the
    older of two posts made at the same instant first."""
    seeded = [{"id": f"{LOC}/localPosts/p{i}", "age_seconds": 0} for i in range(1, 4)]
    assert requests.post(f"{url}/_sim/seed", json={"posts": seeded}, timeout=2).json()["seeded"] == 3
    posts = requests.get(f"{url}/v4/{LOC}/localPosts", headers=H, timeout=2).json()["localPosts"]
    assert [p["name"].rsplit("/", 1)[1] for p in posts] == ["p3", "p2", "p1"]
