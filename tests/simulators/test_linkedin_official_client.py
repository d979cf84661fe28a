"""The LinkedIn simulator accepts what LinkedIn's official Python client (``linkedin-api-client``)
sends: creates, gets, finders, actions, deletes and, when a query passes 4,000 characters, the same
calls tunnelled through ``POST`` (Rest.li query tunnelling). The client talks to the simulator over
real HTTP; only its host (``https://api.linkedin.com``) is pointed at the simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
import requests
from linkedin_api.clients.auth.client import AuthClient
from linkedin_api.clients.restli.client import RestliClient

from mcmp.simulators.core import start_in_thread
from mcmp.simulators.linkedin import LinkedInSimulator
from tests.simulators.loopback import route_to_simulator

TOKEN = "li-test-official"
VERSION = datetime.now(UTC).strftime("%Y%m")
ORG = "urn:li:organization:2414183"
POST = {  # the Posts API "create a text-only post" example
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
def wire() -> list[requests.PreparedRequest]:
    """What the client put on the wire, in order (to show a call really was tunnelled)."""
    return []


@pytest.fixture
def client(
    served: tuple[LinkedInSimulator, str], wire: list[requests.PreparedRequest]
) -> tuple[LinkedInSimulator, RestliClient]:
    sim, url = served
    sim.reset()
    sim.set_faults({"rules": []})
    restli = RestliClient()
    adapter = route_to_simulator(restli.session, "https://api.linkedin.com", url)
    adapter.sent = wire
    return sim, restli


def create_posts(restli: RestliClient, n: int) -> list[str]:
    ids = []
    for i in range(n):
        created = restli.create(
            resource_path="/posts",
            entity={**POST, "commentary": f"Post {i}"},
            access_token=TOKEN,
            version_string=VERSION,
        )
        assert created.status_code == 201
        ids.append(str(created.entity_id))
    return ids


def share_statistics(restli: RestliClient, shares: list[str]) -> Any:
    return restli.finder(
        resource_path="/organizationalEntityShareStatistics",
        finder_name="organizationalEntity",
        query_params={"organizationalEntity": ORG, "shares": shares},
        access_token=TOKEN,
        version_string=VERSION,
    )


def test_create_get_find_and_delete_a_post(client: tuple[LinkedInSimulator, RestliClient]) -> None:
    _, restli = client
    (urn,) = create_posts(restli, 1)
    got = restli.get(
        resource_path="/posts/{id}", path_keys={"id": urn}, access_token=TOKEN, version_string=VERSION
    )
    assert got.status_code == 200 and got.entity["commentary"] == "Post 0"
    found = restli.finder(
        resource_path="/posts",
        finder_name="author",
        query_params={"author": ORG, "count": 10},
        access_token=TOKEN,
        version_string=VERSION,
    )
    assert [e["id"] for e in found.elements] == [urn]
    deleted = restli.delete(
        resource_path="/posts/{id}", path_keys={"id": urn}, access_token=TOKEN, version_string=VERSION
    )
    assert deleted.status_code == 204
    gone = restli.get(
        resource_path="/posts/{id}", path_keys={"id": urn}, access_token=TOKEN, version_string=VERSION
    )
    assert gone.status_code == 404


def test_image_upload_action(client: tuple[LinkedInSimulator, RestliClient]) -> None:
    sim, restli = client
    started = restli.action(
        resource_path="/images",
        action_name="initializeUpload",
        action_params={"initializeUploadRequest": {"owner": ORG}},
        access_token=TOKEN,
        version_string=VERSION,
    )
    assert started.status_code == 200
    upload = requests.put(
        started.value["uploadUrl"],
        data=b"\x89PNG\r\n\x1a\n",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    assert upload.status_code == 201
    image = restli.get(
        resource_path="/images/{id}",
        path_keys={"id": started.value["image"]},
        access_token=TOKEN,
        version_string=VERSION,
    )
    assert image.entity["status"] == "AVAILABLE"


def test_short_statistics_finder_goes_as_get(
    client: tuple[LinkedInSimulator, RestliClient], wire: list[requests.PreparedRequest]
) -> None:
    _, restli = client
    urns = create_posts(restli, 2)
    stats = share_statistics(restli, urns)
    assert stats.status_code == 200
    assert sorted(e["share"] for e in stats.elements) == sorted(urns)
    assert wire[-1].method == "GET"


def test_long_finder_is_tunnelled_and_answered_like_the_get(
    client: tuple[LinkedInSimulator, RestliClient], wire: list[requests.PreparedRequest]
) -> None:
    """120 share URNs make the query longer than 4,000 characters: the client sends POST with
    ``X-HTTP-Method-Override: GET`` and the query as a form body; every share is answered."""
    _, restli = client
    urns = create_posts(restli, 120)
    stats = share_statistics(restli, urns)
    request = wire[-1]
    assert request.method == "POST" and request.headers["X-HTTP-Method-Override"] == "GET"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert len(request.body or "") > 4000
    assert stats.status_code == 200
    assert sorted(e["share"] for e in stats.elements) == sorted(urns)
    assert all(e["totalShareStatistics"]["impressionCount"] >= 0 for e in stats.elements)


def test_tunnelled_finder_checks_like_the_get(client: tuple[LinkedInSimulator, RestliClient]) -> None:
    _, restli = client
    urns = create_posts(restli, 120)
    refused = restli.finder(
        resource_path="/organizationalEntityShareStatistics",
        finder_name="organizationalEntity",
        query_params={"organizationalEntity": ORG, "shares": urns},
        access_token="not-a-linkedin-token",
        version_string=VERSION,
    )
    assert refused.status_code == 401


def test_tunnelled_request_with_body_is_answered_like_the_original(
    served: tuple[LinkedInSimulator, str],
) -> None:
    """A call with a body and a long query goes as ``multipart/mixed``: the query part, then the
    JSON part (Rest.li's query tunnelling). linkedin-api-client 0.3.0 builds this form but fails
    before sending it (its multipart content type is a lambda inside an Enum), so the request
    is built here byte for byte as that client's ``maybe_apply_query_tunneling_requests_with_body``
    would."""
    sim, url = served
    sim.reset()
    query = "action=initializeUpload&padding=" + "x" * 4100
    body = json.dumps({"initializeUploadRequest": {"owner": ORG}})
    boundary = "sImBoUnDaRy"
    payload = (
        f"--{boundary}\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n{query}\r\n"
        f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{body}\r\n--{boundary}--"
    )
    answer = requests.post(
        f"{url}/rest/images",
        data=payload,
        headers={
            "X-RestLi-Protocol-Version": "2.0.0",
            "X-RestLi-Method": "ACTION",
            "X-HTTP-Method-Override": "POST",
            "Authorization": f"Bearer {TOKEN}",
            "LinkedIn-Version": VERSION,
            "Content-Type": f"multipart/mixed; boundary={boundary}",
        },
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["value"]["image"] in sim.state()["images"]


def test_tunnelled_delete_is_answered_like_the_delete(
    client: tuple[LinkedInSimulator, RestliClient], served: tuple[LinkedInSimulator, str]
) -> None:
    sim, restli = client
    (urn,) = create_posts(restli, 1)
    answer = requests.post(
        f"{served[1]}/rest/posts/{quote(urn, safe='')}",
        data="",
        headers={
            "X-RestLi-Protocol-Version": "2.0.0",
            "X-HTTP-Method-Override": "DELETE",
            "Authorization": f"Bearer {TOKEN}",
            "LinkedIn-Version": VERSION,
            "Content-Type": "application/x-www-form-urlencoded",
        },
        timeout=5,
    )
    assert answer.status_code == 204 and sim.state()["count"] == 0


def test_batch_get_posts_images_and_videos(client: tuple[LinkedInSimulator, RestliClient]) -> None:
    """BATCH_GET (``?ids=List(...)``): each found entity under ``results``, a missing one a 404."""
    _, restli = client
    urns = create_posts(restli, 2)
    missing = "urn:li:share:1"
    posts = restli.batch_get(
        resource_path="/posts", ids=[*urns, missing], access_token=TOKEN, version_string=VERSION
    )
    assert posts.status_code == 200
    assert {u: p["commentary"] for u, p in posts.results.items()} == {urns[0]: "Post 0", urns[1]: "Post 1"}
    assert posts.statuses[missing] == 404 and missing in posts.errors
    image = restli.action(
        resource_path="/images",
        action_name="initializeUpload",
        action_params={"initializeUploadRequest": {"owner": ORG}},
        access_token=TOKEN,
        version_string=VERSION,
    ).value["image"]
    images = restli.batch_get(
        resource_path="/images", ids=[image], access_token=TOKEN, version_string=VERSION
    )
    assert images.results[image]["status"] == "WAITING_UPLOAD"
    video = restli.action(
        resource_path="/videos",
        action_name="initializeUpload",
        action_params={"initializeUploadRequest": {"owner": ORG, "fileSizeBytes": 1000}},
        access_token=TOKEN,
        version_string=VERSION,
    ).value["video"]
    videos = restli.batch_get(
        resource_path="/videos", ids=[video], access_token=TOKEN, version_string=VERSION
    )
    assert videos.results[video]["status"] == "WAITING_UPLOAD"


def test_partial_update_edits_the_commentary(client: tuple[LinkedInSimulator, RestliClient]) -> None:
    _, restli = client
    (urn,) = create_posts(restli, 1)
    updated = restli.partial_update(
        resource_path="/posts/{id}",
        path_keys={"id": urn},
        patch_set_object={"commentary": "Corrected text"},
        access_token=TOKEN,
        version_string=VERSION,
    )
    assert updated.status_code == 204
    got = restli.get(
        resource_path="/posts/{id}", path_keys={"id": urn}, access_token=TOKEN, version_string=VERSION
    )
    assert got.entity["commentary"] == "Corrected text"
    refused = restli.partial_update(
        resource_path="/posts/{id}",
        path_keys={"id": urn},
        patch_set_object={"author": "urn:li:organization:1"},
        access_token=TOKEN,
        version_string=VERSION,
    )
    assert refused.status_code == 422


def test_auth_client_refreshes_and_introspects(served: tuple[LinkedInSimulator, str]) -> None:
    sim, url = served
    sim.reset()
    auth = AuthClient(client_id="app", client_secret="app-secret")
    route_to_simulator(auth.session, "https://www.linkedin.com", url)
    refreshed = auth.exchange_refresh_token_for_access_token("li-test-refresh-official")
    assert refreshed.status_code == 200 and refreshed.refresh_token == "li-test-refresh-official"
    active = auth.introspect_access_token(refreshed.access_token)
    assert active.status_code == 200 and active.active is True and active.status == "active"
    assert active.expires_at > active.created_at
    requests.post(f"{url}/_sim/tokens", json={"action": "revoke", "token": refreshed.access_token}, timeout=5)
    revoked = auth.introspect_access_token(refreshed.access_token)
    assert revoked.active is False and revoked.status == "revoked"
    assert auth.introspect_access_token("never-issued").active is False
