"""Contract of the LinkedIn simulator, built from the examples in LinkedIn's docs (Posts API,
Images API, versioning, member/organisation statistics, programmatic refresh tokens)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
import requests

from mcmp.simulators.core import start_in_thread
from mcmp.simulators.linkedin import LinkedInSimulator

VERSION = datetime.now(UTC).strftime("%Y%m")
ORG = "urn:li:organization:2414183"
H = {"Authorization": "Bearer li-test-doc", "LinkedIn-Version": VERSION, "X-Restli-Protocol-Version": "2.0.0"}
DOC_POST = {  # the Posts API "create a text-only post" example
    "author": ORG,
    "commentary": "Sample text Post",
    "visibility": "PUBLIC",
    "distribution": {
        "feedDistribution": "MAIN_FEED",
        "targetEntities": [],
        "thirdPartyDistributionChannels": [],
    },
    "lifecycleState": "PUBLISHED",
    "isReshareDisabledByAuthor": False,
}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[LinkedInSimulator, str]]:
    sim = LinkedInSimulator()
    server, url = start_in_thread(sim)
    yield sim, url
    server.shutdown()


@pytest.fixture
def url(served: tuple[LinkedInSimulator, str]) -> str:
    served[0].reset()
    served[0].set_faults({"rules": []})
    return served[1]


def test_create_post_answers_201_with_x_restli_id_and_empty_body(url: str) -> None:
    r = requests.post(f"{url}/rest/posts", json=DOC_POST, headers=H, timeout=2)
    assert r.status_code == 201 and r.content == b""
    assert r.headers["x-restli-id"].startswith("urn:li:share:")


def test_version_header_missing_or_sunset(url: str) -> None:
    r = requests.post(f"{url}/rest/posts", json=DOC_POST, headers={**H, "LinkedIn-Version": ""}, timeout=2)
    assert r.status_code == 400 and r.json()["code"] == "VERSION_MISSING"
    r = requests.post(
        f"{url}/rest/posts", json=DOC_POST, headers={**H, "LinkedIn-Version": "202401"}, timeout=2
    )
    assert r.status_code == 426
    assert r.json() == {
        "status": 426,
        "serviceErrorCode": 0,
        "code": "NONEXISTENT_VERSION",
        "message": "Requested version 202401 is not active",
    }


def test_required_fields_and_protocol_header(url: str) -> None:
    r = requests.post(f"{url}/rest/posts", json={"commentary": "x"}, headers=H, timeout=2)
    assert r.status_code == 422 and "/author :: field is required" in r.json()["message"]
    r = requests.post(
        f"{url}/rest/posts", json=DOC_POST, headers={**H, "X-Restli-Protocol-Version": "1.0.0"}, timeout=2
    )
    assert r.status_code == 400


def test_tokens_revoked_unknown_and_registered(url: str, served: tuple[LinkedInSimulator, str]) -> None:
    requests.post(f"{url}/_sim/tokens", json={"action": "revoke", "token": "li-test-doc"}, timeout=2)
    r = requests.post(f"{url}/rest/posts", json=DOC_POST, headers=H, timeout=2)
    assert (
        r.status_code == 401
        and r.json()["serviceErrorCode"] == 65601
        and r.json()["code"] == "REVOKED_ACCESS_TOKEN"
    )
    r = requests.post(
        f"{url}/rest/posts", json=DOC_POST, headers={**H, "Authorization": "Bearer nope"}, timeout=2
    )
    assert r.status_code == 401
    requests.post(f"{url}/_sim/tokens", json={"action": "register", "token": "nope"}, timeout=2)
    assert (
        requests.post(
            f"{url}/rest/posts", json=DOC_POST, headers={**H, "Authorization": "Bearer nope"}, timeout=2
        ).status_code
        == 201
    )


def test_image_upload_flow(url: str) -> None:
    init = requests.post(
        f"{url}/rest/images?action=initializeUpload",
        json={"initializeUploadRequest": {"owner": ORG}},
        headers=H,
        timeout=2,
    ).json()["value"]
    assert init["image"].startswith("urn:li:image:") and init["uploadUrlExpiresAt"] > 0
    post = {**DOC_POST, "content": {"media": {"id": init["image"]}}}
    assert (
        requests.post(f"{url}/rest/posts", json=post, headers=H, timeout=2).status_code == 400
    )  # WAITING_UPLOAD
    put = requests.put(
        init["uploadUrl"], data=b"\x89PNG...", headers={"Authorization": H["Authorization"]}, timeout=2
    )
    assert put.status_code == 201
    assert (
        requests.get(f"{url}/rest/images/{init['image']}", headers=H, timeout=2).json()["status"]
        == "AVAILABLE"
    )
    assert requests.post(f"{url}/rest/posts", json=post, headers=H, timeout=2).status_code == 201


def test_find_posts_by_author(url: str) -> None:
    for text in ("one", "two", "three"):
        requests.post(f"{url}/rest/posts", json={**DOC_POST, "commentary": text}, headers=H, timeout=2)
    r = requests.get(
        f"{url}/rest/posts?author=urn%3Ali%3Aorganization%3A2414183&q=author&count=2&sortBy=LAST_MODIFIED",
        headers=H,
        timeout=2,
    ).json()
    assert [e["commentary"] for e in r["elements"]] == ["three", "two"] and r["paging"]["total"] == 3
    assert all(e["createdAt"] > 0 and e["lastModifiedAt"] >= e["createdAt"] for e in r["elements"])


def test_get_and_delete_post_by_encoded_urn(url: str) -> None:
    urn = requests.post(f"{url}/rest/posts", json=DOC_POST, headers=H, timeout=2).headers["x-restli-id"]
    path = f"{url}/rest/posts/{quote(urn, safe='')}"
    assert requests.get(path, headers=H, timeout=2).json()["id"] == urn
    assert requests.delete(path, headers=H, timeout=2).status_code == 204
    assert requests.delete(path, headers=H, timeout=2).status_code == 204  # idempotent
    missing = requests.get(path, headers=H, timeout=2)
    assert missing.status_code == 404
    assert missing.json() == {
        "status": 404,
        "serviceErrorCode": 0,
        "code": "NOT_FOUND",
        "message": "Not Found",
    }


def test_refresh_grant_counts_and_revocation(url: str, served: tuple[LinkedInSimulator, str]) -> None:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": "li-test-refresh-a",
        "client_id": "id",
        "client_secret": "s",
    }
    body = requests.post(f"{url}/oauth/v2/accessToken", data=form, timeout=2).json()
    assert set(body) == {"access_token", "expires_in", "refresh_token", "refresh_token_expires_in"}
    assert body["expires_in"] == 60 * 86400 and body["refresh_token"] == "li-test-refresh-a"
    requests.post(
        f"{url}/_sim/tokens", json={"action": "revoke", "refresh_token": "li-test-refresh-a"}, timeout=2
    )
    r = requests.post(f"{url}/oauth/v2/accessToken", data=form, timeout=2)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert requests.get(f"{url}/_sim/state", timeout=2).json()["refresh_calls"] == 2


def test_statistics_grow_over_time(url: str, served: tuple[LinkedInSimulator, str]) -> None:
    urn = requests.post(f"{url}/rest/posts", json=DOC_POST, headers=H, timeout=2).headers["x-restli-id"]
    served[0].posts[urn]["createdAt"] -= 50_000
    enc = urn.replace(":", "%3A")
    org = requests.get(
        f"{url}/rest/organizationalEntityShareStatistics?q=organizationalEntity&organizationalEntity=urn%3Ali%3Aorganization%3A2414183&shares=List({enc})",
        headers=H,
        timeout=2,
    ).json()["elements"][0]
    assert org["share"] == urn and org["totalShareStatistics"]["impressionCount"] >= 500
    member = requests.get(
        f"{url}/rest/memberCreatorPostAnalytics?q=entity&entity=(share:{enc})&queryType=IMPRESSION&aggregation=TOTAL",
        headers=H,
        timeout=2,
    ).json()["elements"][0]
    assert member["count"] >= 500
    served[0].posts[urn]["createdAt"] -= 50_000
    member2 = requests.get(
        f"{url}/rest/memberCreatorPostAnalytics?q=entity&entity=(share:{enc})&queryType=IMPRESSION&aggregation=TOTAL",
        headers=H,
        timeout=2,
    ).json()["elements"][0]
    assert member2["count"] > member["count"]


def test_daily_member_budget_answers_429(url: str, served: tuple[LinkedInSimulator, str]) -> None:
    served[0].member_daily_limit = 2
    try:
        answers = [requests.post(f"{url}/rest/posts", json=DOC_POST, headers=H, timeout=2) for _ in range(3)]
    finally:
        served[0].member_daily_limit = 10_000
    assert [r.status_code for r in answers] == [201, 201, 429]
    assert answers[2].json()["serviceErrorCode"] == 101 and "MEMBER DAY limit" in answers[2].json()["message"]
    assert "Retry-After" not in answers[2].headers  # LinkedIn documents none; limits reset at midnight UTC


def test_posts_by_author_list_the_newest_first_also_within_one_millisecond(url: str) -> None:
    """A reconciliation reads the newest posts first and stops at a page budget: posts made in
    the same millisecond must not list the older one first (it would be found within a budget it
    lies beyond)."""
    seeded = [{"id": f"urn:li:share:{i}", "owner": ORG, "age_seconds": 0} for i in range(1, 4)]
    assert requests.post(f"{url}/_sim/seed", json={"posts": seeded}, timeout=2).json()["seeded"] == 3
    query = f"q=author&author={quote(ORG, safe='')}&count=10&sortBy=LAST_MODIFIED"
    elements = requests.get(f"{url}/rest/posts?{query}", headers=H, timeout=2).json()["elements"]
    assert len({e["lastModifiedAt"] for e in elements}) == 1  # one millisecond
    assert [e["id"] for e in elements] == ["urn:li:share:3", "urn:li:share:2", "urn:li:share:1"]
