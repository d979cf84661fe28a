"""Campaign bounds: a post is published only while its campaign runs.

Checked by the publish pipeline (mcmp.worker.publishing.pipeline ``_run``) just before the platform is
touched, against the current time (the moment the post would actually appear), so a post held
back by an outage does not go out after its campaign ended.

* **Ended** (``endDate`` in the past): that delivery fails permanently; ``lastError`` says which
  campaign ended when. A late "sale ends today" post is worse than none.
* **Not started** (``startDate`` in the future): the delivery is *held*, not failed — released
  back to pending until the start (re-checked at least every :data:`RECHECK` so an edited
  campaign takes effect), with the reason in ``lastError``. Scheduling a post slightly before
  its campaign is a common slip; the careful outcome is to publish at the campaign's start
  rather than lose the post or publish early.
* **Override**: a post with ``campaignOverride: true`` ignores the bounds. The admin API sets it
  with :func:`override` (then re-opens failed deliveries with its usual retry action).
* Dates are instants (BSON dates, compared in UTC). A missing campaign, or one of another
  client, imposes no bounds: campaigns group posts, they do not own them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from bson import ObjectId

from mcmp.models.base import as_utc, utcnow
from mcmp.models.campaign import campaigns
from mcmp.models.post import PostDoc
from mcmp.worker.publishing import post_status

log = logging.getLogger(__name__)

OVERRIDE_FIELD = "campaignOverride"
RECHECK = timedelta(hours=1)


@dataclass(frozen=True)
class OutsideCampaign:
    """Why a post may not be published now; ``hold_until`` None means never (campaign ended)."""

    reason: str
    hold_until: datetime | None = None


def _when(value: object) -> datetime | None:
    return as_utc(value) if isinstance(value, datetime) else None


def check(post: PostDoc, now: datetime | None = None) -> OutsideCampaign | None:
    """None when the post may be published now (no campaign, inside its bounds, or overridden)."""
    campaign_id = post.get("campaignId")
    if not campaign_id or post.get(OVERRIDE_FIELD) is True:
        return None
    if not ObjectId.is_valid(str(campaign_id)):
        log.warning(
            "post %s: campaignId %r is not an id; no campaign bounds apply", post.get("_id"), campaign_id
        )
        return None
    campaign = campaigns().find_one(
        {"_id": ObjectId(str(campaign_id)), "clientId": post.get("clientId")},
        {"name": 1, "startDate": 1, "endDate": 1},
    )
    if campaign is None:
        return None
    now = as_utc(now) or utcnow()
    name = campaign.get("name") or str(campaign_id)
    end, start = _when(campaign.get("endDate")), _when(campaign.get("startDate"))
    if end is not None and end <= now:
        return OutsideCampaign(
            f"campaign {name!r} ended {end:%Y-%m-%d %H:%M} UTC; not publishing "
            f"(an admin can set {OVERRIDE_FIELD} to publish anyway)"
        )
    if start is not None and start > now:
        return OutsideCampaign(
            f"campaign {name!r} starts {start:%Y-%m-%d %H:%M} UTC; held until then",
            min(start, now + RECHECK),
        )
    return None


def override(post_id: str, client_id: str, enabled: bool = True) -> bool:
    """Let a post of ``client_id`` ignore its campaign's bounds (admin action); True if found."""
    result = post_status.posts().update_one(
        {"_id": ObjectId(post_id), "clientId": client_id},
        {"$set": {OVERRIDE_FIELD: enabled, "updatedAt": utcnow()}},
    )
    return result.matched_count == 1


__all__ = ["OVERRIDE_FIELD", "OutsideCampaign", "check", "override"]
