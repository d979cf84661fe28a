"""Contract of the LinkedIn simulator's media flows, from the examples in LinkedIn's docs: the
Videos API (``initializeUpload`` with ``fileSizeBytes`` → PUT each part of ``uploadInstructions``
→ ``finalizeUpload`` with the parts' ETags → ``GET /rest/videos/{urn}`` until AVAILABLE → a post
whose ``content.media.id`` is the video) and the MultiImage API (``content.multiImage.images``,
2 to 20 images uploaded through the Images API)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
import requests

from mcmp.devstack.media import mp4_boxes
from mcmp.simulators.core import start_in_thread
from mcmp.simulators.linkedin import LinkedInSimulator

VERSION = datetime.now(UTC).strftime("%Y%m")
ORG = "urn:li:organization:2414183"
H = {"Authorization": "Bearer li-test-doc", "LinkedIn-Version": VERSION, "X-Restli-Protocol-Version": "2.0.0"}
PART = 100_000


def post_body(content: dict[str, Any]) -> dict[str, Any]:
    return {
        "author": ORG,
        "commentary": "With media",
        "visibility": "PUBLIC",
        "distribution": {
            "feedDistribution": "MAIN_FEED",
            "targetEntities": [],
            "thirdPartyDistributionChannels": [],
        },
        "content": content,
        "lifecycleState": "PUBLISHED",
        "isReshareDisabledByAuthor": False,
    }


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[LinkedInSimulator, str]]:
    sim = LinkedInSimulator(video_part_bytes=PART, video_processing_seconds=0.3)
    server, url = start_in_thread(sim)
    yield sim, url
    server.shutdown()


@pytest.fixture
def url(served: tuple[LinkedInSimulator, str]) -> str:
    served[0].reset()
    return served[1]


def video_bytes(size: int) -> bytes:
    ftyp, moov = mp4_boxes(8.0, 1280, 720)
    head = ftyp + moov
    return head + (bytes(range(251)) * (size // 251 + 1))[: size - len(head)]


def initialize(url: str, size: int) -> dict[str, Any]:
    r = requests.post(
        f"{url}/rest/videos?action=initializeUpload",
        json={
            "initializeUploadRequest": {
                "owner": ORG,
                "fileSizeBytes": size,
                "uploadCaptions": False,
                "uploadThumbnail": False,
            }
        },
        headers=H,
    )
    assert r.status_code == 200, r.text
    return r.json()["value"]


def test_video_upload_in_parts_finalize_with_etags_then_post(url: str, served) -> None:
    data = video_bytes(2 * PART + 777)
    value = initialize(url, len(data))
    assert value["video"].startswith("urn:li:video:")
    parts = value["uploadInstructions"]
    assert [(p["firstByte"], p["lastByte"]) for p in parts] == [
        (0, PART - 1),
        (PART, 2 * PART - 1),
        (2 * PART, len(data) - 1),
    ]
    etags = []
    for part in parts:
        r = requests.put(
            part["uploadUrl"],
            data=data[part["firstByte"] : part["lastByte"] + 1],
            headers={"Authorization": H["Authorization"], "Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 200 and r.headers["ETag"]
        etags.append(r.headers["ETag"])
    status = requests.get(f"{url}/rest/videos/{quote(value['video'], safe='')}", headers=H).json()["status"]
    assert status == "WAITING_UPLOAD"
    wrong = requests.post(
        f"{url}/rest/videos?action=finalizeUpload",
        json={
            "finalizeUploadRequest": {
                "video": value["video"],
                "uploadToken": value["uploadToken"],
                "uploadedPartIds": etags[::-1],
            }
        },
        headers=H,
    )
    assert wrong.status_code == 400
    r = requests.post(
        f"{url}/rest/videos?action=finalizeUpload",
        json={
            "finalizeUploadRequest": {
                "video": value["video"],
                "uploadToken": value["uploadToken"],
                "uploadedPartIds": etags,
            }
        },
        headers=H,
    )
    assert r.status_code == 200
    early = requests.post(f"{url}/rest/posts", json=post_body({"media": {"id": value["video"]}}), headers=H)
    assert early.status_code == 400 and "PROCESSING" in early.json()["message"]
    time.sleep(0.4)
    video = requests.get(f"{url}/rest/videos/{quote(value['video'], safe='')}", headers=H).json()
    assert video["status"] == "AVAILABLE"
    r = requests.post(
        f"{url}/rest/posts", json=post_body({"media": {"id": value["video"], "title": "Launch"}}), headers=H
    )
    assert r.status_code == 201 and r.headers["x-restli-id"]
    [stored] = served[0].state()["videos"]
    assert stored["sha256"] == hashlib.sha256(data).hexdigest() and stored["received"] == len(data)


def test_a_part_of_the_wrong_size_is_refused(url: str) -> None:
    value = initialize(url, 2 * PART)
    r = requests.put(
        value["uploadInstructions"][0]["uploadUrl"],
        data=b"x" * 10,
        headers={"Authorization": H["Authorization"]},
    )
    assert r.status_code == 400


def test_bytes_that_are_not_a_video_fail_processing(url: str) -> None:
    value = initialize(url, 1000)
    part = value["uploadInstructions"][0]
    etag = requests.put(
        part["uploadUrl"], data=b"<" * 1000, headers={"Authorization": H["Authorization"]}
    ).headers["ETag"]
    requests.post(
        f"{url}/rest/videos?action=finalizeUpload",
        json={
            "finalizeUploadRequest": {
                "video": value["video"],
                "uploadToken": value["uploadToken"],
                "uploadedPartIds": [etag],
            }
        },
        headers=H,
    ).raise_for_status()
    time.sleep(0.4)
    video = requests.get(f"{url}/rest/videos/{quote(value['video'], safe='')}", headers=H).json()
    assert video["status"] == "PROCESSING_FAILED"


def upload_image(url: str) -> str:
    init = requests.post(
        f"{url}/rest/images?action=initializeUpload",
        json={"initializeUploadRequest": {"owner": ORG}},
        headers=H,
    ).json()["value"]
    requests.put(
        init["uploadUrl"], data=b"\xff\xd8\xff" + b"1" * 100, headers={"Authorization": H["Authorization"]}
    ).raise_for_status()
    return str(init["image"])


def test_multi_image_post_takes_2_to_20_available_images(url: str, served) -> None:
    images = [upload_image(url) for _ in range(4)]
    content = {
        "multiImage": {"images": [{"id": urn, "altText": f"photo {i}"} for i, urn in enumerate(images)]}
    }
    r = requests.post(f"{url}/rest/posts", json=post_body(content), headers=H)
    assert r.status_code == 201, r.text
    [post] = served[0].state()["posts"]
    assert [i["altText"] for i in post["content"]["multiImage"]["images"]] == [
        "photo 0",
        "photo 1",
        "photo 2",
        "photo 3",
    ]
    one = requests.post(
        f"{url}/rest/posts", json=post_body({"multiImage": {"images": [{"id": images[0]}]}}), headers=H
    )
    assert one.status_code == 422
    many = requests.post(
        f"{url}/rest/posts", json=post_body({"multiImage": {"images": [{"id": images[0]}] * 21}}), headers=H
    )
    assert many.status_code == 422
    init = requests.post(
        f"{url}/rest/images?action=initializeUpload",
        json={"initializeUploadRequest": {"owner": ORG}},
        headers=H,
    ).json()["value"]
    waiting = requests.post(
        f"{url}/rest/posts",
        json=post_body({"multiImage": {"images": [{"id": images[0]}, {"id": init["image"]}]}}),
        headers=H,
    )
    assert waiting.status_code == 400 and "WAITING_UPLOAD" in waiting.json()["message"]
