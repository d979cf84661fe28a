"""Twin of Instagram content publishing (Instagram API with Facebook Login, graph.facebook.com).

Tokens: any token starting with ``EAAB`` is valid for every IG user unless revoked; see
``mcmp.simulators.graph_common`` for registration, budgets (BUC code 80002) and control endpoints.
An IG user is any numeric id (``known_owners`` restricts them).

Behaviour from Meta's docs (ig-user/media, ig-container, media_publish,
content_publishing_limit, error codes, media insights); errors carry ``is_transient``:

* ``POST /{v}/{ig-user}/media`` creates a container → ``{"id"}``: image (``image_url``,
  ``caption``, ``alt_text``), ``media_type=REELS`` + ``video_url``, carousel items
  (``is_carousel_item=true``; videos as ``media_type=VIDEO``) and ``media_type=CAROUSEL`` +
  ``children`` (2–10 finished items; ``a,b`` or the JSON array ``["a","b"]`` Meta's SDKs send). Captions over 2,200 characters, > 30 hashtags or > 20
  mentions are refused; a non-http(s) media URL is ``9004``/``2207052``.
* ``GET /{v}/{container}?fields=status_code,status``: ``IN_PROGRESS`` for ``container_polls``
  polls, then ``FINISHED``; ``EXPIRED`` after ``container_ttl_seconds`` (24 h); ``PUBLISHED``
  after publishing; ``ERROR`` when a media URL contains ``sim-error-2207NNN`` (status names it).
* ``POST /{v}/{ig-user}/media_publish?creation_id=`` → ``{"id": media_id}``; when the rolling
  24 h count reached ``quota_total`` → ``9``/``2207042``; an unfinished container →
  ``9007``/``2207027``; expired → ``-2``/``2207020``; errored → ``-1``/``2207032``; a caption
  containing ``spam_trigger`` → ``4``/``2207051``.
* ``GET /{v}/{ig-user}/content_publishing_limit?fields=quota_usage,config`` →
  ``{"data": [{"quota_usage": n, "config": {"quota_total", "quota_duration": 86400}}]}``.
  ``quota_total`` defaults to 50: Meta's media_publish and content_publishing_limit reference
  pages say 50 posts per 24 h (older text said 25, third-party tools 100); the platform docs win.
* ``GET /{v}/{ig-user}/media?fields=id,caption,timestamp,permalink`` (newest first, cursors);
  ``GET /{v}/{media}?fields=…``; ``GET /{v}/{media}/insights?metric=views,reach,likes,comments,
  shares,saved,total_interactions`` (``impressions``/``plays``/``video_views`` were removed on
  2025-04-21: asking for one fails the call with ``100``). Values grow with the media's age.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

from mcmp.simulators.core import SimRequest, SimResponse
from mcmp.simulators.graph_common import (
    GraphSimulator,
    duplicate_markers,
    graph_list,
    graph_time,
    marker_in,
    owner_route,
    split_fields,
)

MAX_CAPTION = 2200
MAX_HASHTAGS = 30
MAX_MENTIONS = 20
QUOTA_DURATION = 86_400
VALID_MEDIA_METRICS = frozenset(
    {
        "views",
        "reach",
        "likes",
        "comments",
        "shares",
        "saved",
        "total_interactions",
        "follows",
        "profile_visits",
    }
)
DEPRECATED_MEDIA_METRICS = frozenset(
    {"impressions", "plays", "video_views", "clips_replays_count", "ig_reels_aggregated_all_plays_count"}
)
_SIM_ERROR = re.compile(r"sim-error-(2207\d{3})")
_HASHTAG = re.compile(r"(?<![\w&])#\w+")
_MENTION = re.compile(r"(?<![\w])@[\w.]+")
STATUS_TEXT = {
    "IN_PROGRESS": "In Progress: Media is still being processed.",
    "FINISHED": "Finished: Media has been uploaded and it is complete.",
    "PUBLISHED": "Published: Media has been successfully published.",
    "EXPIRED": "Expired: Media was not published within 24 hours.",
}


class InstagramSimulator(GraphSimulator):
    platform = "instagram"
    buc_type = "instagram"
    buc_code = 80002
    buc_message = "There have been too many calls to this Instagram account. Wait a bit and try again."
    include_is_transient = True
    default_metrics = VALID_MEDIA_METRICS
    publish_edges = ("media_publish",)

    def __init__(
        self,
        latency_ms: float = 0.0,
        seed: int | None = None,
        *,
        quota_total: int = 50,
        container_polls: int = 1,
        container_ttl_seconds: float = 86_400.0,
        spam_trigger: str = "SIM-SPAM",
        **kwargs: Any,
    ) -> None:
        self.quota_total = quota_total
        self.container_polls = container_polls
        self.container_ttl_seconds = container_ttl_seconds
        self.spam_trigger = spam_trigger
        super().__init__(latency_ms=latency_ms, seed=seed, **kwargs)

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.containers: dict[str, dict[str, Any]] = {}
            self.media: dict[str, dict[str, Any]] = {}
            self.publishes: dict[str, list[float]] = {}

    def seed_object(self, object_id: str, owner: str, created: float) -> None:
        media: dict[str, Any] = {
            "id": object_id,
            "owner": owner,
            "caption": "",
            "media_type": "IMAGE",
            "media_product_type": "FEED",
            "media_url": None,
            "alt_text": None,
            "children": [],
            "created_at": created,
            "timestamp": graph_time(created),
            "permalink": f"https://www.instagram.com/p/{object_id}/",
            "container_id": None,
            "marker": None,
        }
        with self.lock:
            self.media[object_id] = media

    def state(self) -> dict[str, Any]:
        with self.lock:
            media = [dict(m) for m in self.media.values()]
            containers = {k: dict(c) for k, c in self.containers.items()}
            usage = {u: self._usage(u) for u in self.publishes}
            base = super().state()
        return {
            **base,
            "posts": media,
            "media": media,  # the same list, under Instagram's own name
            "count": len(media),
            "containers": containers,
            "quota_usage": usage,
            "quota_total": self.quota_total,
            "duplicate_markers": duplicate_markers(media),
        }

    def control(self, req: SimRequest) -> SimResponse:
        if req.method == "POST" and req.path == "/_sim/quota":
            data = req.json() or {}
            with self.lock:
                self.quota_total = int(data.get("quota_total", self.quota_total))
                user = data.get("user")
                if user is not None and "used" in data:
                    now = time.time()
                    self.publishes[str(user)] = [now] * int(data["used"])
            return SimResponse(200, {"ok": True})
        return super().control(req)

    # --- objects ---------------------------------------------------------------------------------
    def is_owner(self, object_id: str) -> bool:
        """An IG user id; container and media ids are numeric too but are not users."""
        with self.lock:
            taken = object_id in self.containers or object_id in self.media
        return not taken and super().is_owner(object_id)

    def owner_of(self, object_id: str) -> str | None:
        with self.lock:
            found = self.containers.get(object_id) or self.media.get(object_id)
        if found is not None:
            return found["owner"]
        return object_id if self.is_owner(object_id) else None

    def delete_object(self, object_id: str) -> bool:
        with self.lock:
            return self.media.pop(object_id, None) is not None

    def _usage(self, user: str, since: float | None = None) -> int:
        floor = time.time() - QUOTA_DURATION
        if since is not None:
            floor = max(floor, since)
        return sum(1 for t in self.publishes.get(user, []) if t >= floor)

    def permission_error(self) -> SimResponse:
        return self.graph_error(10, "(#10) Application does not have permission for this action")

    def _status(self, container: dict[str, Any], *, poll: bool) -> str:
        if container["published_media_id"]:
            return "PUBLISHED"
        if container["error_subcode"]:
            return "ERROR"
        if time.time() - container["created_at"] > self.container_ttl_seconds:
            return "EXPIRED"
        if container["polls"] < container["polls_needed"]:
            if poll:
                container["polls"] += 1
            return "IN_PROGRESS"
        return "FINISHED"

    # --- containers --------------------------------------------------------------------------------
    @owner_route("POST", "media")
    def create_container(self, req: SimRequest, user: str) -> SimResponse:
        form = req.form()
        media_type = (form.get("media_type") or "IMAGE").upper()
        is_item = form.get("is_carousel_item", "false").lower() == "true"
        caption = form.get("caption", "")
        if len(caption) > MAX_CAPTION:
            return self.graph_error(100, f"(#100) The caption is longer than {MAX_CAPTION} characters")
        if len(_HASHTAG.findall(caption)) > MAX_HASHTAGS:
            return self.graph_error(100, f"(#100) The caption has more than {MAX_HASHTAGS} hashtags")
        if len(_MENTION.findall(caption)) > MAX_MENTIONS:
            return self.graph_error(100, f"(#100) The caption mentions more than {MAX_MENTIONS} accounts")
        children: list[str] = []
        url = ""
        if media_type == "CAROUSEL":
            children = graph_list(form.get("children", ""))
            if not 2 <= len(children) <= 10:
                return self.graph_error(100, "(#100) A carousel needs between 2 and 10 children")
            with self.lock:
                for child_id in children:
                    child = self.containers.get(child_id)
                    if child is None or child["owner"] != user or not child["is_carousel_item"]:
                        return self.graph_error(100, f"(#100) Invalid carousel child {child_id}")
                    status = self._status(child, poll=False)
                    if status != "FINISHED":
                        return self.graph_error(
                            9007,
                            "Media ID is not available",
                            subcode=2207027,
                            user_msg=f"The carousel item {child_id} is {status}, not FINISHED",
                        )
        elif media_type in ("REELS", "VIDEO", "STORIES") and form.get("video_url"):
            url = form["video_url"]
            if media_type == "VIDEO" and not is_item:
                return self.graph_error(
                    100, "(#100) The VIDEO media type is no longer supported for feed posts; use REELS"
                )
            if media_type == "REELS" and is_item:
                return self.graph_error(100, "(#100) REELS cannot be carousel items; use media_type=VIDEO")
            if form.get("alt_text"):
                return self.graph_error(100, "(#100) alt_text is only supported for images")
        elif media_type in ("IMAGE", "STORIES") and form.get("image_url"):
            url = form["image_url"]
        else:
            return self.graph_error(
                100, "(#100) The parameter image_url, video_url or children is required for this media_type"
            )
        if url and not url.startswith(("http://", "https://")):
            return self.graph_error(
                9004,
                "Media download has failed. The media URI doesn't meet our requirements.",
                subcode=2207052,
                user_title="Media could not be fetched from this URI",
            )
        error = _SIM_ERROR.search(url)
        container_id = self.new_id()
        container = {
            "id": container_id,
            "owner": user,
            "media_type": media_type,
            "url": url,
            "image_url": form.get("image_url"),
            "video_url": form.get("video_url"),
            "caption": caption,
            "alt_text": form.get("alt_text"),
            "is_carousel_item": is_item,
            "children": children,
            "created_at": time.time(),
            "polls": 0,
            # Images inside a carousel are ready at once; everything else is processed first.
            "polls_needed": 0 if (is_item and media_type == "IMAGE") else self.container_polls,
            "error_subcode": int(error.group(1)) if error else None,
            "published_media_id": None,
        }
        with self.lock:
            self.containers[container_id] = container
        return SimResponse(200, {"id": container_id})

    def _container_view(self, container: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        with self.lock:
            status = self._status(container, poll="status_code" in fields or "status" in fields)
        view: dict[str, Any] = {}
        for name in fields or ["id"]:
            if name == "id":
                view["id"] = container["id"]
            elif name == "status_code":
                view["status_code"] = status
            elif name == "status":
                view["status"] = (
                    f"Error: Media upload has failed with error code {container['error_subcode']}"
                    if status == "ERROR"
                    else STATUS_TEXT[status]
                )
        view.setdefault("id", container["id"])
        return view

    # --- publishing ----------------------------------------------------------------------------------
    @owner_route("POST", "media_publish")
    def media_publish(self, req: SimRequest, user: str) -> SimResponse:
        creation_id = req.form().get("creation_id", "")
        if not creation_id:
            return self.graph_error(100, "(#100) The parameter creation_id is required")
        with self.lock:
            container = self.containers.get(creation_id)
            if container is None or container["owner"] != user:
                return self.not_found(creation_id)
            if container["is_carousel_item"]:
                return self.graph_error(100, "(#100) A carousel item cannot be published on its own")
            if self._usage(user) >= self.quota_total:
                return self.graph_error(
                    9,
                    "Application request limit reached",
                    subcode=2207042,
                    user_title="Max Number of Posts Reached",
                    user_msg=f"The account reached its limit of {self.quota_total} API-published posts in 24 hours.",
                )
            status = self._status(container, poll=False)
            if status == "IN_PROGRESS":
                return self.graph_error(
                    9007,
                    "Media ID is not available",
                    subcode=2207027,
                    user_msg="The media is not ready for publishing, please wait for a moment",
                    transient=True,
                )
            if status == "EXPIRED":
                return self.graph_error(
                    -2, "The media you are trying to access has expired.", subcode=2207020, transient=True
                )
            if status == "ERROR":
                return self.graph_error(
                    -1, "Create media fail, please try to re-create media", subcode=2207032, transient=True
                )
            if status == "PUBLISHED":
                return self.graph_error(100, "(#100) The media has already been published")
            if self.spam_trigger and self.spam_trigger in container["caption"]:
                return self.graph_error(
                    4,
                    "Action is blocked",
                    subcode=2207051,
                    user_title="Action Is Blocked",
                    user_msg="We restrict certain activity to protect our community.",
                )
            media_id = self.new_id()
            now = time.time()
            children = [self.containers[c] for c in container["children"]]
            kind = container["media_type"]
            self.media[media_id] = {
                "id": media_id,
                "owner": user,
                "caption": container["caption"],
                "media_type": {"CAROUSEL": "CAROUSEL_ALBUM", "REELS": "VIDEO"}.get(kind, kind),
                "media_product_type": "REELS" if kind == "REELS" else "FEED",
                "media_url": container["url"] or None,
                "alt_text": container["alt_text"],
                "children": [
                    {"media_type": c["media_type"], "url": c["url"], "alt_text": c["alt_text"]}
                    for c in children
                ],
                "created_at": now,
                "timestamp": graph_time(now),
                "permalink": f"https://www.instagram.com/p/{secrets.token_urlsafe(8)}/",
                "container_id": creation_id,
                "marker": marker_in(container["caption"]),
            }
            container["published_media_id"] = media_id
            self.publishes.setdefault(user, []).append(now)
        return SimResponse(200, {"id": media_id})

    @owner_route("GET", "content_publishing_limit")
    def publishing_limit(self, req: SimRequest, user: str) -> SimResponse:
        since_raw = req.query.get("since", "")
        since = float(since_raw) if since_raw.isdigit() else None
        if since is not None and since < time.time() - QUOTA_DURATION - 60:
            return self.graph_error(100, "(#100) since must be a Unix timestamp no older than 24 hours")
        fields = split_fields(req.query.get("fields", "")) or ["quota_usage"]
        with self.lock:
            row: dict[str, Any] = {}
            if "quota_usage" in fields:
                row["quota_usage"] = self._usage(user, since)
            if "config" in fields:
                row["config"] = {"quota_total": self.quota_total, "quota_duration": QUOTA_DURATION}
        return SimResponse(200, {"data": [row]})

    # --- reading ---------------------------------------------------------------------------------------
    def _media_view(self, media: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        age = self.age_of(media["id"], media["created_at"])
        view: dict[str, Any] = {}
        for name in fields or ["id"]:
            if name in (
                "id",
                "caption",
                "timestamp",
                "permalink",
                "media_type",
                "media_product_type",
                "media_url",
            ):
                if media.get(name) is not None:
                    view[name] = media[name]
            elif name == "like_count":
                view["like_count"] = int(age / 2)
            elif name == "comments_count":
                view["comments_count"] = int(age / 5)
        view.setdefault("id", media["id"])
        return view

    @owner_route("GET", "media")
    def list_media(self, req: SimRequest, user: str) -> SimResponse:
        fields = split_fields(req.query.get("fields", "")) or ["id"]
        with self.lock:
            mine = [m for m in self.media.values() if m["owner"] == user]
        return self.list_edge(
            req, user, "media", mine, lambda m: m["created_at"], lambda m: self._media_view(m, fields)
        )

    # --- insights and node reads (routes in GraphSimulator) ---------------------------------------
    def insight_values(self, object_id: str) -> dict[str, Any] | None:
        with self.lock:
            media = self.media.get(object_id)
        if media is None:
            return None
        age = self.age_of(media["id"], media["created_at"])
        values = {
            "views": int(age * 10),
            "reach": int(age * 7),
            "likes": int(age / 2),
            "comments": int(age / 5),
            "shares": int(age / 10),
            "saved": int(age / 8),
            "follows": int(age / 50),
            "profile_visits": int(age / 20),
        }
        values["total_interactions"] = (
            values["likes"] + values["comments"] + values["shares"] + values["saved"]
        )
        return values

    def metrics_problem(self, names: list[str]) -> SimResponse | None:
        if not names:
            return self.graph_error(100, "(#100) The parameter metric is required")
        for i, name in enumerate(names):
            if name in DEPRECATED_MEDIA_METRICS:
                return self.graph_error(
                    100,
                    f"(#100) Starting from version v22.0 and above, the {name} metric is no longer supported "
                    "for media; use views",
                )
            if name not in self.valid_metrics:
                allowed = ", ".join(sorted(self.valid_metrics))
                return self.graph_error(
                    100, f"(#100) metric[{i}] must be one of the following values: {allowed}"
                )
        return None

    def node_view(self, object_id: str, fields: list[str]) -> dict[str, Any] | None:
        with self.lock:
            container = self.containers.get(object_id)
            media = self.media.get(object_id)
        if container is not None:
            return self._container_view(container, fields)
        if media is not None:
            return self._media_view(media, fields)
        if self.is_owner(object_id):
            return {"id": object_id, "username": f"sim_{object_id}"}
        return None


__all__ = ["InstagramSimulator"]
