"""Twin of the Facebook Pages Graph API: feed/photo posts, listing, node reads, insights, OAuth.

Tokens (for end-to-end tests and ``mcmp dev``): any token starting with ``EAAB`` is a valid Page
token for every Page unless revoked; ``POST /_sim/tokens`` registers, revokes or expires tokens
(see ``mcmp.simulators.graph_common`` for the rules, budgets and control endpoints). A Page is any
numeric id (``known_owners`` restricts them); anything else is ``100``/``33`` "does not exist".

Behaviour from Meta's docs (Pages posts guide, page/feed, page/photos, error handling):

* ``POST /{v}/{page}/feed`` (``message``, ``link``, ``attached_media[i]={"media_fbid":…}`` or a
  JSON list) → ``{"id": "{page}_{post}"}``; the same message and link as the Page's latest post
  within ``duplicate_window_seconds`` → ``506`` "Duplicate status message"; a link that is not
  http(s) (or contains ``sim-scrape-fail``) → ``1609005``.
* ``POST /{v}/{page}/photos`` (``url``, ``message``, ``published``) → ``{"id", "post_id"}``,
  or ``{"id"}`` for an unpublished upload meant for ``attached_media``.
* ``GET /{v}/{page}/published_posts`` and ``/feed`` (``fields``, ``since``, ``until``, ``limit``,
  ``after``), newest first, with cursor paging.
* ``GET /{v}/{post}?fields=…,reactions.summary(true),comments.summary(true),shares``,
  ``DELETE /{v}/{post}`` (or ``POST /_sim/delete``) → later reads are ``100``/``33``.
* ``GET /{v}/{post}/insights?metric=…``: the "views" metrics of the Nov 2025 migration
  (``valid_metrics``); one invalid or deprecated metric fails the whole call with ``100``.
  Values grow with the post's age like real engagement (``mcmp.simulators.engagement``; time runs
  ``metrics_per_second`` times faster). ``POST /{v}/`` with ``batch`` runs Graph batch requests.

Videos (Meta's "Uploading videos with the Graph API" and Reels Publishing guides):

* Page video, resumable: ``POST /{v}/{page}/videos`` with ``upload_phase=start`` and
  ``file_size`` → ``{"upload_session_id", "video_id", "start_offset": "0", "end_offset"}``;
  ``upload_phase=transfer`` with ``upload_session_id``, ``start_offset`` and the bytes as the
  multipart file ``video_file_chunk`` → the next ``{"start_offset", "end_offset"}`` (equal when
  all bytes arrived; a chunk at the wrong offset is refused with 6001/1363037, whose
  ``error_data`` carries the ``start_offset``/``end_offset`` to resume from, and nothing is lost);
  ``upload_phase=finish`` with ``upload_session_id``, ``title``, ``description`` →
  ``{"success": true}``. A second ``finish`` of the same session is answered the same way and
  creates nothing more.
* Reel: ``POST /{v}/{page}/video_reels`` with ``upload_phase=start`` → ``{"video_id",
  "upload_url"}``; ``POST {upload_url}`` with ``Authorization: OAuth {token}``, ``offset`` and
  ``file_size`` headers and the bytes as the body (an upload resumes from
  ``status.uploading_phase.bytes_transferred``); ``upload_phase=finish`` with ``video_id``,
  ``video_state=PUBLISHED`` and ``description`` → ``{"success": true}``.
* After ``finish`` a video processes for ``video_processing_seconds``, then is published: a
  Page post (``type`` video, ``message`` = the description) appears in ``published_posts``.
  ``GET /{v}/{video}?fields=status,…`` shows ``status.video_status`` (``upload_complete``,
  ``processing``, ``ready``, ``error``) and the uploading / processing / publishing phases;
  ``post_id`` once published. Bytes that are not an MP4/QuickTime file, or a description
  containing ``sim-processing-fail``, end in ``error`` (no post).
* ``GET /{v}/{page}/videos`` and ``/video_reels`` list finished videos (description, status,
  ``post_id``) newest first, processing ones included.

Uploaded bytes are counted and hashed while they arrive, never kept: ``state()["videos"]``
shows each video's ``size``, ``received`` and ``sha256``.

``state()["posts"]`` lists published posts with their ``marker`` (the invisible delivery marker
found in the message, if any) so tests can check exactly-once per idempotency key.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from typing import Any

from mcmp.simulators.core import SimRequest, SimResponse, route
from mcmp.simulators.graph_common import (
    GraphSimulator,
    duplicate_markers,
    graph_time,
    marker_in,
    owner_route,
    split_fields,
)

MAX_MESSAGE = 63_206
RUPLOAD_VERSION = "v21.0"  # rupload.facebook.com/video-upload/{version}/{video id}
VALID_POST_METRICS = frozenset(
    {
        "post_media_view",
        "post_total_media_view_unique",
        "post_clicks",
        "post_clicks_by_type",
        "post_reactions_by_type_total",
        "post_video_views",
    }
)
# Deprecated for all versions (June/November 2025): asking for one fails the call.
DEPRECATED_POST_METRICS = frozenset(
    {
        "post_impressions",
        "post_impressions_unique",
        "post_impressions_paid_unique",
        "post_impressions_fan_unique",
        "post_impressions_organic_unique",
        "post_impressions_viral_unique",
        "post_impressions_nonviral_unique",
        "post_engaged_users",
    }
)


class FacebookSimulator(GraphSimulator):
    platform = "facebook"
    buc_type = "pages"
    buc_code = 80001
    default_metrics = VALID_POST_METRICS
    publish_edges = ("feed", "photos")

    def __init__(
        self,
        latency_ms: float = 0.0,
        seed: int | None = None,
        *,
        duplicate_window_seconds: float = 3600.0,
        video_processing_seconds: float = 1.0,
        video_chunk_bytes: int = 4 * 1024 * 1024,
        **kwargs: Any,
    ) -> None:
        self.duplicate_window_seconds = duplicate_window_seconds
        self.video_processing_seconds = video_processing_seconds
        self.video_chunk_bytes = video_chunk_bytes
        super().__init__(latency_ms=latency_ms, seed=seed, **kwargs)

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.posts: dict[str, dict[str, Any]] = {}
            self.photos: dict[str, dict[str, Any]] = {}
            self.videos: dict[str, dict[str, Any]] = {}
            self._hashes: dict[str, Any] = {}  # video id → running sha256 of the bytes received

    def state(self) -> dict[str, Any]:
        with self.lock:
            self._settle_videos()
            posts = [dict(p) for p in self.posts.values()]
            photos = [dict(p) for p in self.photos.values()]
            videos = [{k: v for k, v in video.items() if k != "head"} for video in self.videos.values()]
            base = super().state()
        texts = Counter((p["page_id"], p["message"], p["link"]) for p in posts)
        return {
            **base,
            "posts": posts,
            "count": len(posts),
            "photos": photos,
            "videos": videos,
            "duplicates": sum(n - 1 for n in texts.values() if n > 1),
            "duplicate_markers": duplicate_markers(posts),
        }

    # --- objects ---------------------------------------------------------------------------------
    def owner_of(self, object_id: str) -> str | None:
        if self.is_owner(object_id):
            return object_id
        with self.lock:
            post = self.posts.get(object_id)
            photo = self.photos.get(object_id)
            video = self.videos.get(object_id)
        found = post or photo or video
        return found["page_id"] if found else None

    def delete_object(self, object_id: str) -> bool:
        with self.lock:
            post = self.posts.pop(object_id, None)
            photo = self.photos.pop(object_id, None)
            video = self.videos.pop(object_id, None)
        return post is not None or photo is not None or video is not None

    def seed_object(self, object_id: str, owner: str, created: float) -> None:
        post: dict[str, Any] = {
            "id": object_id,
            "page_id": owner,
            "message": "",
            "link": None,
            "type": "status",
            "attached_photos": [],
            "created_time": created,
            "marker": None,
        }
        with self.lock:
            self.posts[object_id] = post

    def _store_post(
        self,
        page_id: str,
        message: str,
        link: str | None,
        photos: list[str],
        kind: str,
        video_id: str | None = None,
    ) -> dict[str, Any]:
        post_id = f"{page_id}_{self.new_id()}"
        now = time.time()
        post = {
            "id": post_id,
            "page_id": page_id,
            "message": message,
            "link": link,
            "type": kind,
            "attached_photos": photos,
            "video_id": video_id,
            "created_time": now,
            "marker": marker_in(message),
        }
        with self.lock:
            self.posts[post_id] = post
            for photo_id in photos:
                if photo_id in self.photos:
                    self.photos[photo_id]["post_id"] = post_id
        return post

    def _duplicate(self, page_id: str, message: str, link: str | None) -> bool:
        with self.lock:
            mine = [p for p in self.posts.values() if p["page_id"] == page_id]
        if not mine or not (message or link):
            return False
        last = max(mine, key=lambda p: p["created_time"])
        return (
            last["message"] == message
            and last["link"] == link
            and time.time() - last["created_time"] < self.duplicate_window_seconds
        )

    # --- publishing ------------------------------------------------------------------------------
    @owner_route("POST", "feed")
    def create_feed_post(self, req: SimRequest, page_id: str) -> SimResponse:
        form = req.form()
        message = form.get("message", "")
        link = form.get("link") or None
        attached = self._attached_media(form)
        if attached is None:
            return self.graph_error(100, '(#100) attached_media must be a list of {"media_fbid": id} objects')
        if not message and not link and not attached:
            return self.graph_error(100, "(#100) Missing message or attachment")
        if len(message) > MAX_MESSAGE:
            return self.graph_error(100, f"(#100) The message is too long (max {MAX_MESSAGE} characters)")
        if link and (not link.startswith(("http://", "https://")) or "sim-scrape-fail" in link):
            return self.graph_error(
                1609005, "Error Posting Link: the link could not be scraped", user_title="Error Posting Link"
            )
        with self.lock:
            for fbid in attached:
                photo = self.photos.get(fbid)
                if photo is None or photo["page_id"] != page_id or photo["published"] or photo["post_id"]:
                    return self.graph_error(
                        100, f"(#100) param attached_media must be unpublished photos of this Page ({fbid})"
                    )
        if self._duplicate(page_id, message, link):
            return self.graph_error(506, "Duplicate status message", user_title="Duplicate Post")
        post = self._store_post(
            page_id, message, link, attached, "photo" if attached else ("link" if link else "status")
        )
        return SimResponse(200, {"id": post["id"]})

    @staticmethod
    def _attached_media(form: dict[str, str]) -> list[str] | None:
        items: list[Any] = []
        if form.get("attached_media"):
            try:
                loaded = json.loads(form["attached_media"])
            except ValueError:
                return None
            if not isinstance(loaded, list):
                return None
            items.extend(loaded)
        indexed = sorted(
            (int(k[len("attached_media[") : -1]), v)
            for k, v in form.items()
            if k.startswith("attached_media[")
            and k.endswith("]")
            and k[len("attached_media[") : -1].isdigit()
        )
        for _, raw in indexed:
            try:
                items.append(json.loads(raw))
            except ValueError:
                return None
        out = []
        for item in items:
            if not isinstance(item, dict) or not item.get("media_fbid"):
                return None
            out.append(str(item["media_fbid"]))
        return out

    @owner_route("POST", "photos")
    def create_photo(self, req: SimRequest, page_id: str) -> SimResponse:
        form = req.form()
        url = form.get("url", "")
        if not url:
            return self.graph_error(324, "(#324) Requires upload file")
        if not url.startswith(("http://", "https://")):
            return self.graph_error(100, "(#100) url should represent a valid URL")
        message = form.get("message") or form.get("caption") or ""
        if len(message) > MAX_MESSAGE:
            return self.graph_error(100, f"(#100) The message is too long (max {MAX_MESSAGE} characters)")
        published = form.get("published", "true").lower() not in ("false", "0")
        photo_id = self.new_id()
        photo = {
            "id": photo_id,
            "page_id": page_id,
            "url": url,
            "published": published,
            "post_id": None,
            "created_time": time.time(),
        }
        with self.lock:
            self.photos[photo_id] = photo
        if not published:
            return SimResponse(200, {"id": photo_id})
        if self._duplicate(page_id, message, None) and message:
            with self.lock:
                self.photos.pop(photo_id, None)
            return self.graph_error(506, "Duplicate status message", user_title="Duplicate Post")
        post = self._store_post(page_id, message, None, [photo_id], "photo")
        return SimResponse(200, {"id": photo_id, "post_id": post["id"]})

    # --- videos ----------------------------------------------------------------------------------
    def _new_video(self, page_id: str, kind: str, file_size: int | None) -> dict[str, Any]:
        video_id = self.new_id()
        video: dict[str, Any] = {
            "id": video_id,
            "page_id": page_id,
            "kind": kind,
            "size": file_size,
            "received": 0,
            "sha256": None,
            "head": b"",
            "upload_session_id": self.new_id() if kind == "video" else None,
            "title": None,
            "description": None,
            "finished_time": None,
            "ready_at": None,
            "state": "uploading",
            "error": None,
            "post_id": None,
            "created_time": time.time(),
        }
        with self.lock:
            self.videos[video_id] = video
            self._hashes[video_id] = hashlib.sha256()
        return video

    def _take_bytes(self, video: dict[str, Any], data: bytes) -> None:
        """Count and hash bytes as they arrive; keep only the first few KB (the file's signature)."""
        with self.lock:
            self._hashes[video["id"]].update(data)
            video["received"] += len(data)
            if len(video["head"]) < 64:
                video["head"] += data[: 64 - len(video["head"])]
            if video["size"] is not None and video["received"] >= video["size"]:
                video["sha256"] = self._hashes[video["id"]].hexdigest()
                video["state"] = "uploaded"

    def _finish_video(self, video: dict[str, Any], title: str | None, description: str) -> None:
        with self.lock:
            if video["finished_time"] is not None:
                return  # finishing twice publishes once
            video.update(
                title=title,
                description=description,
                finished_time=time.time(),
                ready_at=time.time() + self.video_processing_seconds,
                state="processing",
                marker=marker_in(description),
            )

    def _settle_videos(self) -> None:
        """Processing ends when its time has come: the video is published, or fails (caller holds the lock)."""
        now = time.time()
        for video in self.videos.values():
            if video["state"] != "processing" or video["ready_at"] > now:
                continue
            head = video["head"]
            if head[4:8] not in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
                video.update(
                    state="error", error="The video file you selected is in a format that we don't support."
                )
            elif "sim-processing-fail" in (video["description"] or ""):
                video.update(state="error", error="Your video could not be processed.")
            else:
                post = self._store_post(
                    video["page_id"], video["description"] or "", None, [], "video", video["id"]
                )
                video.update(state="published", post_id=post["id"])

    def _video_status(self, video: dict[str, Any]) -> dict[str, Any]:
        size = video["size"] or 0
        state = video["state"]
        uploading = (
            "complete" if state != "uploading" else ("in_progress" if video["received"] else "not_started")
        )
        processing = {"uploading": "not_started", "uploaded": "not_started", "processing": "in_progress"}.get(
            state, "error" if state == "error" else "complete"
        )
        status: dict[str, Any] = {
            "video_status": {
                "uploading": "upload_complete" if video["received"] >= size and size else "uploading",
                "uploaded": "upload_complete",
                "processing": "processing",
                "published": "ready",
                "error": "error",
            }[state],
            "uploading_phase": {"status": uploading, "bytes_transferred": video["received"]},
            "processing_phase": {"status": processing},
            "publishing_phase": {"status": "complete" if state == "published" else "not_started"},
        }
        if state == "error":
            status["processing_phase"]["error"] = {"message": video["error"]}
        if state == "published":
            status["publishing_phase"].update(
                publish_status="published", publish_time=graph_time(video["ready_at"])
            )
        return status

    def _video_view(self, video: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        view: dict[str, Any] = {"id": video["id"]}
        for name in fields:
            if name == "status":
                view["status"] = self._video_status(video)
            elif name == "description" and video["description"]:
                view["description"] = video["description"]
            elif name == "title" and video["title"]:
                view["title"] = video["title"]
            elif name == "created_time":
                view["created_time"] = graph_time(video["finished_time"] or video["created_time"])
            elif name == "permalink_url":
                path = "reel" if video["kind"] == "reel" else f"{video['page_id']}/videos"
                view["permalink_url"] = f"/{path}/{video['id']}"
            elif name == "post_id" and video["post_id"]:
                view["post_id"] = video["post_id"]
            elif name == "published":
                view["published"] = video["state"] == "published"
        return view

    def _session_video(self, page_id: str, session_id: str) -> dict[str, Any] | None:
        with self.lock:
            for video in self.videos.values():
                if video["upload_session_id"] == session_id and video["page_id"] == page_id:
                    return video
        return None

    def _offset_mismatch(self, video: dict[str, Any], detail: str) -> SimResponse:
        """1363037: the chunk does not continue the upload; ``error_data`` names the chunk Graph
        expects next, which Meta's uploader resumes from (nothing already received is lost)."""
        received = video["received"]
        return self.graph_error(
            6001,
            f"There was a problem uploading your video: {detail}",
            subcode=1363037,
            user_title="Upload Failed",
            user_msg="There was a problem uploading your video. Please try again.",
            error_data={
                "start_offset": str(received),
                "end_offset": str(min(received + self.video_chunk_bytes, video["size"])),
            },
        )

    @owner_route("POST", "videos")
    def create_video(self, req: SimRequest, page_id: str) -> SimResponse:
        fields, files = req.multipart() if "multipart" in req.header("content-type") else (req.form(), {})
        form = {**req.query, **fields}
        phase = form.get("upload_phase", "")
        if phase == "start":
            size = form.get("file_size", "")
            if not size.isdigit() or int(size) <= 0:
                return self.graph_error(100, "(#100) file_size must be a positive integer")
            if int(size) > 10 * 1024**3:
                return self.graph_error(
                    6000, "There was a problem uploading your video file: it is too large", subcode=1363023
                )
            started = self._new_video(page_id, "video", int(size))
            return SimResponse(
                200,
                {
                    "upload_session_id": started["upload_session_id"],
                    "video_id": started["id"],
                    "start_offset": "0",
                    "end_offset": str(min(self.video_chunk_bytes, int(size))),
                },
            )
        video = self._session_video(page_id, form.get("upload_session_id", ""))
        if phase in ("transfer", "finish") and video is None:
            return self.graph_error(
                6001, "There was a problem uploading your video: upload session not found", subcode=1363019
            )
        assert video is None or isinstance(video, dict)
        if phase == "transfer" and video is not None:
            chunk = files.get("video_file_chunk")
            if chunk is None:
                return self.graph_error(100, "(#100) video_file_chunk is required for upload_phase=transfer")
            offset = form.get("start_offset", "")
            if offset != str(video["received"]):
                return self._offset_mismatch(
                    video, f"start_offset {offset} does not match {video['received']}"
                )
            if video["received"] + len(chunk) > video["size"]:
                return self._offset_mismatch(video, "more bytes than file_size")
            self._take_bytes(video, chunk)
            nxt = video["received"]
            return SimResponse(
                200,
                {
                    "start_offset": str(nxt),
                    "end_offset": str(min(nxt + self.video_chunk_bytes, video["size"])),
                },
            )
        if phase == "finish" and video is not None:
            if video["received"] < (video["size"] or 0):
                return self.graph_error(
                    6001,
                    "There was a problem uploading your video: the upload is incomplete",
                    subcode=1363030,
                )
            description = form.get("description", "")
            if len(description) > MAX_MESSAGE:
                return self.graph_error(
                    100, f"(#100) The description is too long (max {MAX_MESSAGE} characters)"
                )
            self._finish_video(video, form.get("title"), description)
            return SimResponse(200, {"success": True})
        return self.graph_error(100, "(#100) upload_phase must be start, transfer or finish")

    @owner_route("POST", "video_reels")
    def create_reel(self, req: SimRequest, page_id: str) -> SimResponse:
        form = req.form()
        phase = form.get("upload_phase", "")
        if phase == "start":
            started = self._new_video(page_id, "reel", None)
            host = req.header("host", "127.0.0.1")
            return SimResponse(
                200,
                {
                    "video_id": started["id"],
                    "upload_url": f"http://{host}/video-upload/{RUPLOAD_VERSION}/{started['id']}",
                },
            )
        if phase != "finish":
            return self.graph_error(100, "(#100) upload_phase must be start or finish")
        with self.lock:
            video = self.videos.get(form.get("video_id", ""))
        if video is None or video["page_id"] != page_id or video["kind"] != "reel":
            return self.graph_error(100, "(#100) video_id is not a reel upload of this Page")
        if video["size"] is None or video["received"] < video["size"]:
            return self.graph_error(
                6001, "There was a problem uploading your video: the upload is incomplete", subcode=1363030
            )
        if form.get("video_state", "") not in ("PUBLISHED", "DRAFT", "SCHEDULED"):
            return self.graph_error(100, "(#100) video_state must be PUBLISHED, DRAFT or SCHEDULED")
        description = form.get("description", "")
        if len(description) > MAX_MESSAGE:
            return self.graph_error(100, f"(#100) The description is too long (max {MAX_MESSAGE} characters)")
        self._finish_video(video, form.get("title"), description)
        return SimResponse(200, {"success": True})

    @route("POST", "/video-upload/{version}/{video_id}", stream=True)
    def rupload(self, req: SimRequest) -> SimResponse:
        with self.lock:
            video = self.videos.get(req.params["video_id"])
        if video is None or video["kind"] != "reel":
            return SimResponse(
                404,
                {"debug_info": {"retriable": False, "type": "NotFoundError", "message": "video not found"}},
            )
        if not self.may_access(req, video["page_id"]):
            return self.permission_error()
        offset, size = req.header("offset"), req.header("file_size")
        if not offset.isdigit() or not size.isdigit():
            return SimResponse(
                400,
                {
                    "debug_info": {
                        "retriable": False,
                        "type": "ParameterValidationError",
                        "message": "HeaderValuePredicate: Header Offset not convertable to unsigned long",
                    }
                },
            )
        with self.lock:
            if video["size"] is None:
                video["size"] = int(size)
        if int(size) != video["size"] or int(offset) != video["received"]:
            return SimResponse(
                400,
                {
                    "debug_info": {
                        "retriable": False,
                        "type": "OffsetInvalidError",
                        "message": f"offset must be {video['received']} of {video['size']}",
                    }
                },
            )
        stream = req.body_stream
        assert stream is not None
        for data in stream:
            if video["received"] + len(data) > video["size"]:
                return SimResponse(
                    400,
                    {
                        "debug_info": {
                            "retriable": False,
                            "type": "BodyTooLong",
                            "message": "more bytes than file_size",
                        }
                    },
                )
            self._take_bytes(video, data)
        return SimResponse(200, {"success": True})

    def _list_videos(self, req: SimRequest, page_id: str, edge: str, kinds: tuple[str, ...]) -> SimResponse:
        fields = split_fields(req.query.get("fields", "")) or ["id", "description", "created_time"]
        with self.lock:
            self._settle_videos()
            mine = [
                v
                for v in self.videos.values()
                if v["page_id"] == page_id and v["kind"] in kinds and v["finished_time"] is not None
            ]
        return self.list_edge(
            req, page_id, edge, mine, lambda v: v["finished_time"], lambda v: self._video_view(v, fields)
        )

    @owner_route("GET", "videos")
    def list_videos(self, req: SimRequest, page_id: str) -> SimResponse:
        return self._list_videos(req, page_id, "videos", ("video", "reel"))

    @owner_route("GET", "video_reels")
    def list_reels(self, req: SimRequest, page_id: str) -> SimResponse:
        return self._list_videos(req, page_id, "video_reels", ("reel",))

    # --- reading ---------------------------------------------------------------------------------
    def _post_view(self, post: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        age = self.age_of(post["id"], post["created_time"])
        view: dict[str, Any] = {}
        for name in fields:
            if name == "id":
                view["id"] = post["id"]
            elif name == "message" and post["message"]:
                view["message"] = post["message"]
            elif name == "created_time":
                view["created_time"] = graph_time(post["created_time"])
            elif name == "permalink_url":
                page, _, story = post["id"].partition("_")
                view["permalink_url"] = f"https://www.facebook.com/{page}/posts/{story}"
            elif name == "link" and post["link"]:
                view["link"] = post["link"]
            elif name == "reactions":
                view["reactions"] = {
                    "data": [],
                    "summary": {"total_count": int(age / 2), "viewer_reaction": "NONE"},
                }
            elif name == "comments":
                view["comments"] = {
                    "data": [],
                    "summary": {"order": "ranked", "total_count": int(age / 5), "can_comment": True},
                }
            elif name == "shares" and int(age / 10) > 0:  # Graph omits shares when there are none
                view["shares"] = {"count": int(age / 10)}
        view.setdefault("id", post["id"])  # a Graph node read always names the node
        return view

    @owner_route("GET", "published_posts")
    def published_posts(self, req: SimRequest, page_id: str) -> SimResponse:
        return self._list_posts(req, page_id, "published_posts")

    @owner_route("GET", "feed")
    def feed(self, req: SimRequest, page_id: str) -> SimResponse:
        return self._list_posts(req, page_id, "feed")

    def _list_posts(self, req: SimRequest, page_id: str, edge: str) -> SimResponse:
        fields = split_fields(req.query.get("fields", "")) or ["created_time", "message", "id"]
        with self.lock:
            self._settle_videos()
            mine = [p for p in self.posts.values() if p["page_id"] == page_id]
        return self.list_edge(
            req, page_id, edge, mine, lambda p: p["created_time"], lambda p: self._post_view(p, fields)
        )

    # --- insights and node reads (routes in GraphSimulator) ---------------------------------------
    def insight_values(self, object_id: str) -> dict[str, Any] | None:
        with self.lock:
            post = self.posts.get(object_id)
        if post is None:
            return None
        age = self.age_of(post["id"], post["created_time"])
        return {
            "post_media_view": int(age * 10),
            "post_total_media_view_unique": int(age * 7),
            "post_clicks": int(age),
            "post_clicks_by_type": {"link clicks": int(age / 2), "other clicks": int(age) - int(age / 2)},
            "post_reactions_by_type_total": {"like": int(age / 2)},
            "post_video_views": 0,
        }

    def metrics_problem(self, names: list[str]) -> SimResponse | None:
        if not names:
            return self.graph_error(
                3001,
                "Invalid query",
                subcode=1504028,
                user_title="No Metric Specified",
                user_msg="No metric was specified to be fetched. Please specify one or more metrics to be fetched and try again.",
            )
        for name in names:
            if name not in self.valid_metrics or name in DEPRECATED_POST_METRICS:
                return self.graph_error(100, "(#100) The value must be a valid insights metric")
        return None

    def node_view(self, object_id: str, fields: list[str]) -> dict[str, Any] | None:
        with self.lock:
            self._settle_videos()
            post = self.posts.get(object_id)
            photo = self.photos.get(object_id)
            video = self.videos.get(object_id)
        if video is not None:
            return self._video_view(video, fields or ["id", "description", "created_time"])
        if post is not None:
            return self._post_view(post, fields or ["created_time", "message", "id"])
        if photo is not None:
            return {
                "id": photo["id"],
                "created_time": graph_time(photo["created_time"]),
                "link": photo["url"],
            }
        if self.is_owner(object_id):
            return {"id": object_id, "name": f"Simulated Page {object_id}"}
        return None

    @route("DELETE", "/{object_id}")
    def delete(self, req: SimRequest) -> SimResponse:
        object_id = req.params["object_id"]
        owner = self.owner_of(object_id)
        if owner is None or object_id == owner:
            return self.not_found(object_id, "delete")
        if not self.may_access(req, owner):
            return self.permission_error()
        self.delete_object(object_id)
        return SimResponse(200, {"success": True})


__all__ = ["FacebookSimulator", "marker_in"]
