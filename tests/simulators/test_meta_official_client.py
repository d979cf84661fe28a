"""The Facebook and Instagram simulators accept what Meta's official Python client
(``facebook-business``) sends: its JSON-array list parameters, its resumable video uploader and
its reading of transient errors. The client talks to the simulators over real HTTP; only its
Graph host is pointed at the simulator's loopback URL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from facebook_business.adobjects.advideo import AdVideo
from facebook_business.adobjects.igmedia import IGMedia
from facebook_business.adobjects.iguser import IGUser
from facebook_business.adobjects.page import Page
from facebook_business.adobjects.pagepost import PagePost
from facebook_business.api import FacebookAdsApi, FacebookSession
from facebook_business.exceptions import FacebookRequestError
from facebook_business.video_uploader import (
    VideoUploader,
    VideoUploadFinishRequestManager,
    VideoUploadRequestContext,
    VideoUploadTransferRequestManager,
)

from mcmp.simulators.core import start_in_thread
from mcmp.simulators.facebook import FacebookSimulator
from mcmp.simulators.instagram import InstagramSimulator
from tests.simulators.loopback import route_to_simulator

TOKEN = "EAABofficialclient"
PAGE = "1000001"
IG_USER = "17841400000000001"
VIDEO_HOST = "https://graph-video.facebook.com"  # where Meta's uploader sends video bytes
CHUNK = 64 * 1024

# The SDK's own parameter checker warns that a list of metric names "might not be compatible"
# with the list<Object> its generated code declares; the request it then sends is the point here.
pytestmark = pytest.mark.filterwarnings("ignore:value of .* might not be compatible:UserWarning")


class PageVideoApi(FacebookAdsApi):
    """The official client, with its video uploader aimed at a Page.

    ``VideoUploader`` posts to an ad account's ``advideos`` edge; a Page's ``videos`` edge takes
    the same three-phase upload (Meta's "Resumable upload" guide), so the edge is renamed here and
    every parameter, file part and retry decision stays the uploader's own.
    """

    def call(self, method: str, path: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(path, tuple) and path[-1:] == ("advideos",):
            path = (*path[:-1], "videos")
        return super().call(method, path, *args, **kwargs)


def official_api(url: str, api_class: type[FacebookAdsApi] = FacebookAdsApi) -> FacebookAdsApi:
    """The SDK's API object on the simulator (never ``FacebookAdsApi.init``: its crash reporter
    would post to Meta)."""
    session = FacebookSession(access_token=TOKEN, timeout=5)
    session.GRAPH = url  # the client joins GRAPH, the version and the path
    route_to_simulator(session.requests, VIDEO_HOST, url)
    return api_class(session)


@pytest.fixture(scope="module")
def facebook() -> Iterator[tuple[FacebookSimulator, str]]:
    sim = FacebookSimulator(video_chunk_bytes=CHUNK, video_processing_seconds=0.0)
    server, url = start_in_thread(sim)
    yield sim, url
    server.shutdown()


@pytest.fixture(scope="module")
def instagram() -> Iterator[tuple[InstagramSimulator, str]]:
    sim = InstagramSimulator(container_polls=0)
    server, url = start_in_thread(sim)
    yield sim, url
    server.shutdown()


@pytest.fixture
def fb(facebook: tuple[FacebookSimulator, str]) -> tuple[FacebookSimulator, FacebookAdsApi]:
    sim, url = facebook
    sim.reset()
    sim.set_faults({"rules": []})
    return sim, official_api(url)


@pytest.fixture
def ig(instagram: tuple[InstagramSimulator, str]) -> tuple[InstagramSimulator, FacebookAdsApi]:
    sim, url = instagram
    sim.reset()
    sim.set_faults({"rules": []})
    return sim, official_api(url)


def test_page_post_insights_with_metric_as_json_array(fb: tuple[FacebookSimulator, FacebookAdsApi]) -> None:
    _, api = fb
    post = Page(PAGE, api=api).create_feed(params={"message": "Spring menu is out"})
    metrics = ["post_media_view", "post_clicks"]
    rows = PagePost(post["id"], api=api).get_insights(params={"metric": metrics})
    assert [row["name"] for row in rows] == metrics  # sent as metric=["post_media_view","post_clicks"]
    assert all(row["period"] == "lifetime" for row in rows)


def test_deprecated_metric_in_json_array_still_fails_the_call(
    fb: tuple[FacebookSimulator, FacebookAdsApi],
) -> None:
    _, api = fb
    post = Page(PAGE, api=api).create_feed(params={"message": "Old metrics"})
    with pytest.raises(FacebookRequestError) as caught:
        PagePost(post["id"], api=api).get_insights(params={"metric": ["post_clicks", "post_impressions"]})
    assert caught.value.api_error_code() == 100


def test_instagram_carousel_with_children_as_json_array(
    ig: tuple[InstagramSimulator, FacebookAdsApi],
) -> None:
    sim, api = ig
    user = IGUser(IG_USER, api=api)
    items = [
        user.create_media(params={"image_url": f"https://cdn.example.com/{n}.jpg", "is_carousel_item": True})
        for n in (1, 2, 3)
    ]
    carousel = user.create_media(
        params={"media_type": "CAROUSEL", "children": [i["id"] for i in items], "caption": "Three dishes"}
    )
    published = user.create_media_publish(params={"creation_id": carousel["id"]})
    (media,) = sim.state()["media"]
    assert media["id"] == published["id"] and media["media_type"] == "CAROUSEL_ALBUM"
    assert len(media["children"]) == 3
    rows = IGMedia(published["id"], api=api).get_insights(params={"metric": ["views", "reach"]})
    assert [row["name"] for row in rows] == ["views", "reach"]


def test_resumable_upload_resumes_from_error_data_of_1363037(
    facebook: tuple[FacebookSimulator, str], tmp_path: Path
) -> None:
    """An earlier attempt's first chunk arrived but its answer was lost: Meta's uploader sends
    that chunk again, reads where to resume from the 1363037 refusal's ``error_data`` and
    finishes the upload with every byte stored once, in order."""
    sim, url = facebook
    sim.reset()
    api = official_api(url, PageVideoApi)
    data = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 800  # > 3 chunks, an MP4 signature
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    page = Page(PAGE, api=api)
    start = page.create_video(params={"upload_phase": "start", "file_size": len(data)})
    api.call(  # the earlier attempt: stored, answer lost
        "POST",
        (PAGE, "videos"),
        params={
            "upload_phase": "transfer",
            "upload_session_id": start["upload_session_id"],
            "start_offset": 0,
        },
        files={"video_file_chunk": ("clip.mp4", data[:CHUNK], "application/octet-stream")},
    )
    context = VideoUploadRequestContext()
    context.account_id = PAGE
    context.session_id = start["upload_session_id"]
    context.start_offset, context.end_offset = 0, CHUNK  # what the uploader last heard
    context.file_path = str(path)
    VideoUploadTransferRequestManager(api).send_request(context)
    context.file_name = path.name
    finished = VideoUploadFinishRequestManager(api).send_request(context).json()

    assert finished == {"success": True}
    (stored,) = sim.state()["videos"]
    assert stored["received"] == stored["size"] == len(data)
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()


def test_offset_mismatch_names_the_chunk_to_send_next(facebook: tuple[FacebookSimulator, str]) -> None:
    sim, url = facebook
    sim.reset()
    api = official_api(url)
    start = Page(PAGE, api=api).create_video(params={"upload_phase": "start", "file_size": 3 * CHUNK})
    with pytest.raises(FacebookRequestError) as caught:
        api.call(
            "POST",
            (PAGE, "videos"),
            params={
                "upload_phase": "transfer",
                "upload_session_id": start["upload_session_id"],
                "start_offset": CHUNK,
            },
            files={"video_file_chunk": ("clip.mp4", b"x" * CHUNK, "application/octet-stream")},
        )
    assert caught.value.api_error_subcode() == 1363037
    assert caught.value.body()["error"]["error_data"] == {"start_offset": "0", "end_offset": str(CHUNK)}


def test_whole_file_through_the_official_uploader(
    facebook: tuple[FacebookSimulator, str], tmp_path: Path
) -> None:
    sim, url = facebook
    sim.reset()
    data = b"\x00\x00\x00\x18ftypisom" + b"\x01" * (2 * CHUNK + 100)
    path = tmp_path / "whole.mp4"
    path.write_bytes(data)
    video = AdVideo(parent_id=PAGE, api=official_api(url, PageVideoApi))
    video[AdVideo.Field.filepath] = str(path)
    uploaded = VideoUploader().upload(video, wait_for_encoding=False)
    (stored,) = sim.state()["videos"]
    assert uploaded["id"] == stored["id"] and stored["title"] == "whole.mp4"
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(("kind", "code", "status"), [("http_500", 1, 500), ("http_503", 2, 503)])
def test_unknown_and_service_errors_are_transient(
    fb: tuple[FacebookSimulator, FacebookAdsApi], kind: str, code: int, status: int
) -> None:
    sim, api = fb
    sim.set_faults({"rules": [{"kind": kind, "count": 1}]})
    with pytest.raises(FacebookRequestError) as caught:
        Page(PAGE, api=api).create_feed(params={"message": "During an outage"})
    assert caught.value.http_status() == status and caught.value.api_error_code() == code
    assert caught.value.api_transient_error() is True  # the SDK reads error.is_transient


def test_permanent_facebook_errors_carry_no_is_transient(
    fb: tuple[FacebookSimulator, FacebookAdsApi],
) -> None:
    _, api = fb
    with pytest.raises(FacebookRequestError) as caught:
        Page(PAGE, api=api).create_feed(params={})
    assert caught.value.api_error_code() == 100
    assert "is_transient" not in caught.value.body()["error"]


def test_batch_of_posts_and_reads(fb: tuple[FacebookSimulator, FacebookAdsApi]) -> None:
    """The SDK's batch: creates and a node read in one ``POST /{v}/``, each answered on its own;
    a node read names its node (``id``) even when the fields asked leave it out."""
    sim, api = fb
    page = Page(PAGE, api=api)
    answers: list[Any] = []
    batch = api.new_batch()
    for n in range(3):
        page.create_feed(
            params={"message": f"Batched {n}"},
            batch=batch,
            success=lambda r: answers.append(r.json()),
            failure=lambda r: answers.append(("failed", r.json())),
        )
    batch.execute()
    assert [a["id"] for a in answers] == [
        p["id"] for p in sorted(sim.state()["posts"], key=lambda p: p["created_time"])
    ]
    read = api.new_batch()
    PagePost(answers[0]["id"], api=api).api_get(
        fields=["message"], batch=read, success=lambda r: answers.append(r.json())
    )
    read.execute()
    assert answers[-1] == {"message": "Batched 0", "id": answers[0]["id"]}
