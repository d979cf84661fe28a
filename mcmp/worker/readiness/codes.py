"""Problem codes: one stable, documented word per kind of problem (docs/frontend-contract.md).

The publish path's checks raise ``ValidationError(field, reason)`` with readable reasons; the
frontend needs a code it can switch on. The code is read from the field and the reason's
wording here, in one ordered table, so the checks themselves stay exactly the publish path's.
A reason no rule knows still gets a code named after its field (``<field>_invalid``).
"""

from __future__ import annotations

import re

# (field prefix, reason pattern, code): the first match wins.
_RULES: tuple[tuple[str, str, str], ...] = (
    ("scheduleTime", "", "schedule_time_invalid"),
    ("clientId", "", "client_missing"),
    ("platforms", "", "platform_unknown"),
    ("title", r"longer than", "title_too_long"),
    ("title", "", "title_empty"),
    ("body", r"hashtag", "too_many_hashtags"),
    ("body", r"@mention|mentions", "too_many_mentions"),
    ("body", r"characters", "body_too_long"),
    ("body", "", "body_empty"),
    ("assetUrls", r"not found|answered 40", "media_not_found"),
    ("assetUrls", "", "media_url_invalid"),
    (
        "media",
        r"does not accept|takes? photos only|only photos|takes images and videos",
        "media_kind_unsupported",
    ),
    ("media", r"is not accepted by|type \S+ is not accepted", "media_type_unsupported"),
    ("media", r"larger than", "media_too_large"),
    ("media", r"smaller than", "media_too_small"),
    ("media", r" lasts ", "media_duration"),
    ("media", r"aspect ratio", "media_aspect_ratio"),
    ("media", r"needs at least one", "media_required"),
    ("media", r"at most \d+|at least \d+|carousel|cannot mix|items", "media_count"),
    ("media", r"http\(s\)", "media_url_invalid"),
    ("link", "", "link_invalid"),
    ("account", "", "account_settings_invalid"),
    ("cta", "", "cta_invalid"),
    ("options", "", "options_invalid"),
    ("publishOptions", "", "options_invalid"),
)

# Codes the readiness checks give themselves (not read from a reason).
ACCOUNT_MISSING = "account_missing"
ACCOUNT_NOT_CONNECTED = "account_not_connected"
TOKEN_MISSING = "token_missing"
TOKEN_EXPIRES = "token_expires_before_post"
CAMPAIGN_ENDED = "campaign_ended"
CAMPAIGN_NOT_STARTED = "campaign_not_started"
POSTING_WINDOW = "posting_window_invalid"
SCHEDULE_PAST = "schedule_time_past"
CHECK_FAILED = "check_unavailable"


def for_field(field: str, reason: str) -> str:
    """The code of a ``ValidationError``'s (field, reason)."""
    for prefix, pattern, code in _RULES:
        if (field == prefix or field.startswith((prefix + ".", prefix + "["))) and (
            not pattern or re.search(pattern, reason)
        ):
            return code
    root = re.split(r"[.\[]", field, maxsplit=1)[0] or "post"
    snake = re.sub(r"(?<!^)([A-Z])", r"_\1", root).lower()
    return f"{snake}_invalid"


__all__ = ["for_field"]
