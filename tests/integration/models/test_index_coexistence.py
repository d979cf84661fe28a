"""The frontend's Mongoose builds its schema indexes itself: whoever starts first, both work."""

from __future__ import annotations

import logging

import pytest

from mcmp.models.db import FRONTEND_INDEXES, IndexMismatch, ensure_schema


def test_indexes_made_as_mongoose_makes_them_are_accepted(db):
    """Mongoose sends {unique?, background: true}; the worker then starts without complaint."""
    db.users.drop_indexes()
    db.users.create_index([("email", 1)], unique=True, background=True)
    db.posts.create_index([("clientId", 1)], background=True)
    ensure_schema(db)
    email = db.users.index_information()["email_1"]
    assert email["unique"] is True and email["background"] is True
    db.users.insert_one({"email": "a@example.com"})
    with pytest.raises(Exception, match="duplicate key"):
        db.users.insert_one({"email": "a@example.com"})


def test_our_indexes_carry_mongooses_options_so_its_init_is_a_no_op(db):
    for collection, names in FRONTEND_INDEXES.items():
        info = db[collection].index_information()
        for name in names:
            assert info[name].get("background") is True, f"{collection}.{name}: {info[name]}"
    assert db.users.index_information()["email_1"]["unique"] is True
    # Mongoose's own request, option for option: nothing to do, nothing refused
    db.users.create_index([("email", 1)], unique=True, background=True)
    db.clients.create_index([("slug", 1)], unique=True, background=True)
    db.posts.create_index([("campaignId", 1)], background=True)


def test_same_key_other_build_options_is_used_and_said_once(db, caplog):
    """An index an earlier version built with background: false does the same job."""
    db.deliveries.drop_index("state_1_dueAt_1")
    db.deliveries.create_index([("state", 1), ("dueAt", 1)], background=False)
    with caplog.at_level(logging.INFO, logger="mcmp.models.db"):
        ensure_schema(db)
        ensure_schema(db)
    said = [r.getMessage() for r in caplog.records if "deliveries.state_1_dueAt_1" in r.getMessage()]
    assert len(said) == 1, said
    assert "differs only in background" in said[0]


def test_a_unique_index_that_exists_as_non_unique_stops_the_start_naming_it(db):
    db.users.drop_index("email_1")
    db.users.create_index([("email", 1)], background=True)
    with pytest.raises(IndexMismatch) as failure:
        ensure_schema(db)
    message = str(failure.value)
    assert "\n" not in message
    assert "users.email_1" in message and "unique=True" in message and "(no options)" in message
