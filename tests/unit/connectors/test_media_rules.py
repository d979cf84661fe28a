"""Media rules: checked on the facts known (never on a guess), named per item, printed for people."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mcmp.cli.main import app
from mcmp.connectors.errors import ValidationError
from mcmp.connectors.media import MB, MediaLimits, check_media, describe_limits, media_problems
from mcmp.connectors.media_source import parse_video_header
from mcmp.connectors.types import MediaItem
from mcmp.devstack.media import mp4_boxes

REELS = MediaLimits(
    kinds=frozenset({"image", "video"}),
    max_bytes={"video": 300 * MB},
    min_bytes={"video": 100_000},
    duration_seconds={"video": (3.0, 90.0)},
    aspect_ratio={"video": (9 / 16, 9 / 16)},
    max_items=10,
    min_items=2,
    max_per_kind={"video": 1},
    mixed_kinds=False,
)


def test_durations_aspect_ratios_and_sizes_are_checked_when_known() -> None:
    known = MediaItem("https://cdn/long.mp4?sig=secret", "video", None, "video/mp4", 50_000, 95.0, 1920, 1080)
    assert media_problems([known], REELS, "facebook") == [
        "media[0] (https://cdn/long.mp4): video of 49 KB is smaller than facebook's 98 KB minimum",
        "media[0] (https://cdn/long.mp4): video lasts 95.0 s; facebook takes 3 s to 90 s",
        "media[0] (https://cdn/long.mp4): video is 1920x1080 (aspect ratio 16:9); facebook takes 9:16 to 9:16",
    ]
    unknown = MediaItem("https://cdn/clip.mp4", "video")  # header unread: the platform decides
    assert media_problems([unknown], REELS, "facebook") == []


def test_post_level_rules_name_the_rule() -> None:
    a, v = MediaItem("https://cdn/a.jpg", "image"), MediaItem("https://cdn/v.mp4", "video")
    assert media_problems([a], REELS, "linkedin") == []  # one item is not "several"
    assert media_problems([a, v, v], REELS, "linkedin") == [
        "linkedin cannot mix image and video in one post",
        "linkedin takes at most 1 video per post, got 2",
    ]
    with pytest.raises(ValidationError, match=r"^media: linkedin takes at most 10 media items, got 11"):
        check_media([a] * 11, REELS, "linkedin")


def test_video_header_gives_duration_and_displayed_size() -> None:
    ftyp, moov = mp4_boxes(12.5, 1920, 1080, rotate=90)
    facts = parse_video_header(ftyp + moov + b"\0\0\0\x10mdat" + b"\0" * 8)
    assert facts is not None
    assert (facts.duration_seconds, facts.width, facts.height) == (12.5, 1080, 1920)  # phone portrait
    assert parse_video_header(b"<html>not a video</html>") is None
    assert parse_video_header(ftyp + b"\0\0\x10\0mdat" + b"\0" * 100) is None  # moov after the data


def test_rules_table_describes_every_connector() -> None:
    rows = dict(describe_limits(REELS))
    assert rows["post"] == "at most 10 items; several items: at least 2; one kind per post; at most 1 video"
    assert rows["video"] == "98 KB to 300.0 MB; 3 s to 90 s; aspect 9:16 to 9:16"
    result = CliRunner().invoke(app, ["connectors"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for expected in (
        "facebook",
        "a 9:16 video of 3 to 90 s is published as a Reel",
        "linkedin",
        "75 KB to 500.0 MB; 3 s to 30 min; aspect 1:2.4 to 2.4:1",
        "google-business",
        "refused: local posts take photos only",
        "website (wordpress)",
        "website (webhook)",
    ):
        assert expected in result.output
