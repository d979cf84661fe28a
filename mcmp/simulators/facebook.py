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

``state()["posts"]`` lists published posts with their ``marker`` (the invisible delivery marker
found in the message, if any) so tests can check exactly-once per idempotency key.
"""

from __future__ import annotations

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

    def __init__(
        self,
        latency_ms: float = 0.0,
        seed: int | None = None,
        *,
        duplicate_window_seconds: float = 3600.0,
        **kwargs: Any,
    ) -> None:
        self.duplicate_window_seconds = duplicate_window_seconds
        super().__init__(latency_ms=latency_ms, seed=seed, **kwargs)

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.posts: dict[str, dict[str, Any]] = {}
            self.photos: dict[str, dict[str, Any]] = {}

    def state(self) -> dict[str, Any]:
        with self.lock:
            posts = [dict(p) for p in self.posts.values()]
            photos = [dict(p) for p in self.photos.values()]
            base = super().state()
        texts = Counter((p["page_id"], p["message"], p["link"]) for p in posts)
        return {
            **base,
            "posts": posts,
            "count": len(posts),
            "photos": photos,
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
        found = post or photo
        return found["page_id"] if found else None

    def delete_object(self, object_id: str) -> bool:
        with self.lock:
            post = self.posts.pop(object_id, None)
            photo = self.photos.pop(object_id, None)
        return post is not None or photo is not None

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
        self, page_id: str, message: str, link: str | None, photos: list[str], kind: str
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
            post = self.posts.get(object_id)
            photo = self.photos.get(object_id)
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
