"""What ``mcmp dev`` prints for a delivery that keeps failing to connect: the reason and where to look."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bson import ObjectId

from mcmp.cli.dev import _line


def test_a_retry_on_a_connection_error_says_what_is_unreachable():
    delivery = {
        "_id": ObjectId(),
        "postId": str(ObjectId()),
        "platform": "website",
        "state": "pending",
        "attempt": 3,
        "dueAt": datetime.now(UTC) + timedelta(seconds=8),
        "lastError": "ConnectionError: HTTPConnectionPool(host='127.0.0.1', port=41234): Max retries exceeded",
    }
    line = _line(delivery)
    assert "retrying" in line and "attempt 3" in line and "next try in" in line
    assert "port=41234" in line and "metadata.webhookUrl" in line and "MCMP_<PLATFORM>__BASE_URL" in line
    quiet = _line({**delivery, "lastError": None})
    assert "retrying" not in quiet and "pending" in quiet
