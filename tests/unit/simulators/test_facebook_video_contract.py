"""Contract of the Facebook simulator's video flows, from the examples in Meta's docs: "Uploading
videos with the Graph API" (resumable ``upload_phase`` start / transfer / finish on
``/{page-id}/videos``), the Reels Publishing API (``/{page-id}/video_reels`` start → upload to the
returned ``upload_url`` with ``offset``/``file_size`` headers → finish with ``video_state``) and the
VideoStatus node (``status.video_status`` and its uploading / processing / publishing phases)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest
import requests

from mcmp.devstack.media import mp4_boxes
from mcmp.simulators.core import start_in_thread
from mcmp.simulators.facebook import FacebookSimulator

V = "v21.0"
PAGE = "1000001"
T = {"access_token": "EAAB-doc"}
CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FacebookSimulator, str]]:
    sim = FacebookSimulator(video_processing_seconds=0.3, video_chunk_bytes=CHUNK)
    server, url = start_in_thread(sim)
    yield sim, url
    server.shutdown()


@pytest.fixture
def url(served: tuple[FacebookSimulator, str]) -> str:
    served[0].reset()
    return served[1]


def video_bytes(size: int) -> bytes:
    ftyp, moov = mp4_boxes(12.0, 1280, 720)
    head = ftyp + moov
    return head + (bytes(range(256)) * (size // 256 + 1))[: size - len(head)]


def resumable_upload(url: str, data: bytes, description: str) -> str:
    r = requests.post(f"{url}/{V}/{PAGE}/videos", data={**T, "upload_phase": "start", "file_size": len(data)})
    start = r.json()
    assert r.status_code == 200, r.text
    assert set(start) == {"upload_session_id", "video_id", "start_offset", "end_offset"}
    assert (start["start_offset"], start["end_offset"]) == ("0", str(min(CHUNK, len(data))))
    session, begin, end = start["upload_session_id"], int(start["start_offset"]), int(start["end_offset"])
    while begin < end:
        r = requests.post(
            f"{url}/{V}/{PAGE}/videos",
            data={**T, "upload_phase": "transfer", "upload_session_id": session, "start_offset": begin},
            files={"video_file_chunk": ("chunk", data[begin:end])},
        )
        assert r.status_code == 200, r.text
        begin, end = int(r.json()["start_offset"]), int(r.json()["end_offset"])
    assert begin == end == len(data)
    r = requests.post(
        f"{url}/{V}/{PAGE}/videos",
        data={
            **T,
            "upload_phase": "finish",
            "upload_session_id": session,
            "title": "T",
            "description": description,
        },
    )
    assert r.status_code == 200 and r.json() == {"success": True}, r.text
    return str(start["video_id"])


def status_of(url: str, video_id: str) -> dict:
    r = requests.get(f"{url}/{V}/{video_id}", params={**T, "fields": "status,post_id,description"})
    assert r.status_code == 200, r.text
    return r.json()


def test_resumable_upload_processes_then_publishes_one_post_with_the_description(url: str, served) -> None:
    data = video_bytes(3 * CHUNK + 123)
    video_id = resumable_upload(url, data, "Launch day")
    first = status_of(url, video_id)
    assert first["status"]["video_status"] == "processing"
    assert first["status"]["uploading_phase"] == {"status": "complete", "bytes_transferred": len(data)}
    assert first["status"]["processing_phase"]["status"] == "in_progress"
    assert "post_id" not in first
    time.sleep(0.4)
    done = status_of(url, video_id)
    assert done["status"]["video_status"] == "ready"
    assert done["status"]["publishing_phase"]["status"] == "complete"
    assert done["status"]["publishing_phase"]["publish_status"] == "published"
    posts = requests.get(f"{url}/{V}/{PAGE}/published_posts", params={**T, "fields": "id,message"}).json()[
        "data"
    ]
    assert posts == [{"id": done["post_id"], "message": "Launch day"}]
    [video] = served[0].state()["videos"]
    assert video["sha256"] == hashlib.sha256(data).hexdigest() and video["received"] == len(data)


def test_a_chunk_at_the_wrong_offset_is_refused_and_the_session_goes_on(url: str) -> None:
    data = video_bytes(2 * CHUNK)
    start = requests.post(
        f"{url}/{V}/{PAGE}/videos", data={**T, "upload_phase": "start", "file_size": len(data)}
    ).json()
    wrong = requests.post(
        f"{url}/{V}/{PAGE}/videos",
        data={
            **T,
            "upload_phase": "transfer",
            "upload_session_id": start["upload_session_id"],
            "start_offset": 5,
        },
        files={"video_file_chunk": ("chunk", data[5:CHUNK])},
    )
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == 6001
    early = requests.post(
        f"{url}/{V}/{PAGE}/videos",
        data={**T, "upload_phase": "finish", "upload_session_id": start["upload_session_id"]},
    )
    assert early.status_code == 400 and early.json()["error"]["error_subcode"] == 1363030
    ok = requests.post(
        f"{url}/{V}/{PAGE}/videos",
        data={
            **T,
            "upload_phase": "transfer",
            "upload_session_id": start["upload_session_id"],
            "start_offset": 0,
        },
        files={"video_file_chunk": ("chunk", data[:CHUNK])},
    )
    assert ok.json() == {"start_offset": str(CHUNK), "end_offset": str(2 * CHUNK)}


def test_finishing_twice_publishes_once(url: str) -> None:
    data = video_bytes(CHUNK)
    video_id = resumable_upload(url, data, "Once")
    session = next(v for v in requests.get(f"{url}/_sim/state").json()["videos"] if v["id"] == video_id)
    again = requests.post(
        f"{url}/{V}/{PAGE}/videos",
        data={
            **T,
            "upload_phase": "finish",
            "upload_session_id": session["upload_session_id"],
            "description": "Once",
        },
    )
    assert again.json() == {"success": True}
    time.sleep(0.4)
    assert requests.get(f"{url}/_sim/state").json()["count"] == 1


def test_reel_start_upload_finish_and_listing(url: str, served) -> None:
    data = video_bytes(200_000)
    start = requests.post(f"{url}/{V}/{PAGE}/video_reels", data={**T, "upload_phase": "start"}).json()
    assert set(start) == {"video_id", "upload_url"}
    headers = {"Authorization": "OAuth EAAB-doc", "offset": "0", "file_size": str(len(data))}
    # An interrupted upload resumes from bytes_transferred.
    r = requests.post(start["upload_url"], headers=headers, data=data[:70_000])
    assert r.status_code == 200
    moved = status_of(url, start["video_id"])["status"]["uploading_phase"]["bytes_transferred"]
    assert moved == 70_000
    wrong = requests.post(start["upload_url"], headers=headers, data=data)
    assert wrong.status_code == 400 and wrong.json()["debug_info"]["type"] == "OffsetInvalidError"
    r = requests.post(start["upload_url"], headers={**headers, "offset": str(moved)}, data=data[moved:])
    assert r.json() == {"success": True}
    missing_headers = requests.post(
        start["upload_url"], headers={"Authorization": "OAuth EAAB-doc"}, data=b"x"
    )
    assert missing_headers.status_code == 400
    fin = requests.post(
        f"{url}/{V}/{PAGE}/video_reels",
        data={
            **T,
            "upload_phase": "finish",
            "video_id": start["video_id"],
            "video_state": "PUBLISHED",
            "description": "Short and vertical",
        },
    )
    assert fin.json() == {"success": True}
    listed = requests.get(
        f"{url}/{V}/{PAGE}/video_reels", params={**T, "fields": "id,description,status"}
    ).json()
    assert [(v["id"], v["description"]) for v in listed["data"]] == [
        (start["video_id"], "Short and vertical")
    ]
    assert listed["data"][0]["status"]["video_status"] == "processing"
    time.sleep(0.4)
    assert status_of(url, start["video_id"])["status"]["video_status"] == "ready"
    [video] = served[0].state()["videos"]
    assert video["sha256"] == hashlib.sha256(data).hexdigest()


def test_bytes_that_are_not_a_video_end_in_a_processing_error_and_no_post(url: str) -> None:
    video_id = resumable_upload(url, b"<html>not a video</html>" * 10, "Broken")
    time.sleep(0.4)
    status = status_of(url, video_id)["status"]
    assert status["video_status"] == "error"
    assert status["processing_phase"]["status"] == "error" and status["processing_phase"]["error"]["message"]
    assert requests.get(f"{url}/_sim/state").json()["count"] == 0


def test_upload_routes_need_a_token(url: str) -> None:
    r = requests.post(f"{url}/{V}/{PAGE}/videos", data={"upload_phase": "start", "file_size": 10})
    assert r.status_code == 400 and r.json()["error"]["code"] == 190
