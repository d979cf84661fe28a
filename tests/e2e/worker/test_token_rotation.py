"""``mcmp tokens rotate`` as a real subprocess: killed midway through 1,000 accounts sealed the
old way (unbound, ``mcmpenc:v1:``) or plaintext, run again, and every token is then bound to its
account and readable with the new key alone. Also: a wrong key never overwrites."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bson import ObjectId
from cryptography.fernet import Fernet, InvalidToken

from mcmp.devstack import spawn, wait_until
from mcmp.worker.accounts.crypto import PREFIX, UNBOUND_PREFIX
from tests import ROOT

ACCOUNTS = 1000
MCMP = [sys.executable, "-m", "mcmp.cli"]


def _seal(fernet: Fernet, plain: str) -> str:
    """Sealed as before tokens were bound to their account."""
    return UNBOUND_PREFIX + fernet.encrypt(plain.encode()).decode()


def _open_bound(fernet: Fernet, stored: str, account_id: ObjectId) -> str:
    """The token of a value sealed bound to ``account_id`` (asserting both)."""
    assert stored.startswith(PREFIX)
    payload = json.loads(fernet.decrypt(stored[len(PREFIX) :].encode()))
    assert payload["account"] == str(account_id)
    return payload["token"]


def _insert_accounts(db: Any, old: Fernet) -> dict[ObjectId, tuple[str, str]]:
    """990 accounts sealed unbound with the old key, 10 plaintext ones as a frontend writes them."""
    now = datetime.now(UTC)
    docs, plain = [], {}
    for i in range(ACCOUNTS):
        access, refresh = f"access-{i}-{ObjectId()}", f"refresh-{i}-{ObjectId()}"
        _id = ObjectId()
        plain[_id] = (access, refresh)
        sealed = i % 100 != 0
        docs.append(
            {
                "_id": _id,
                "clientId": str(ObjectId()),
                "platform": "linkedin",
                "status": "connected",
                "accessToken": _seal(old, access) if sealed else access,
                "refreshToken": _seal(old, refresh) if sealed else refresh,
                "metadata": {},
                "createdAt": now,
                "updatedAt": now,
                "__v": 0,
            }
        )
    db.integrationaccounts.insert_many(docs)
    return plain


def _on_new_key(new: Fernet, stored: str) -> bool:
    try:
        new.decrypt(stored[len(PREFIX) :].encode())
        return stored.startswith(PREFIX)
    except InvalidToken:
        return False


def test_rotation_killed_midway_then_resumed_leaves_every_token_on_the_new_key(
    env, db, run_dir: Path
) -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    old, new = Fernet(old_key), Fernet(new_key)
    plain = _insert_accounts(db, old)
    rotate_env = dict(env, MCMP_TOKEN_KEYS=f"{new_key},{old_key}")

    first = spawn("rotate-1", [*MCMP, "tokens", "rotate", "--batch-size", "10"], rotate_env, run_dir / "logs")

    def progressed() -> int:
        found = re.findall(r"progress (\d+)/", first.log_text())
        return int(found[-1]) if found else 0

    wait_until(lambda: progressed() >= 200 or not first.alive(), 120, 0.01, "rotation made no progress")
    assert first.alive(), "the rotation finished before it could be interrupted: " + first.log_text()[-500:]
    first.kill9()
    stored = list(db.integrationaccounts.find({}, {"accessToken": 1, "refreshToken": 1}))
    midway = sum(_on_new_key(new, d["accessToken"]) for d in stored)
    print(f"rotation: {midway}/{ACCOUNTS} accounts on the new key when SIGKILLed")
    assert 0 < midway < ACCOUNTS
    for d in stored:  # interrupted, yet every token readable (old key, new key or plaintext)
        access, refresh = plain[d["_id"]]
        opened = MultiOpen(new, old)
        assert opened(d["accessToken"], d["_id"]) == access and opened(d["refreshToken"], d["_id"]) == refresh

    second = subprocess.run(
        [*MCMP, "tokens", "rotate", "--batch-size", "100"],
        env=rotate_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 0, second.stderr[-2000:]
    print(f"second run: {second.stdout.strip()}")
    assert f"already_current={midway}" in second.stdout  # resumed: done work is not redone
    for d in db.integrationaccounts.find({}, {"accessToken": 1, "refreshToken": 1}):
        access, refresh = plain[d["_id"]]
        assert _open_bound(new, d["accessToken"], d["_id"]) == access
        assert _open_bound(new, d["refreshToken"], d["_id"]) == refresh


class MultiOpen:
    """Opens a stored value with any of the given keys, or returns plaintext as is."""

    def __init__(self, *fernets: Fernet) -> None:
        self.fernets = fernets

    def __call__(self, stored: str, account_id: ObjectId) -> str:
        if not stored.startswith((PREFIX, UNBOUND_PREFIX)):
            return stored
        for f in self.fernets:
            try:
                if stored.startswith(PREFIX):
                    return _open_bound(f, stored, account_id)
                return f.decrypt(stored[len(UNBOUND_PREFIX) :].encode()).decode()
            except InvalidToken:
                continue
        raise AssertionError("unreadable token")


def test_a_wrong_key_is_a_clear_error_and_never_overwrites(env, db, make_client, make_account) -> None:
    foreign = Fernet(Fernet.generate_key())
    sealed = _seal(foreign, "li-test-foreign")
    account = make_account(make_client(), "linkedin", accessToken=sealed, refreshToken=sealed)

    result = subprocess.run(
        [*MCMP, "tokens", "rotate"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert f"account {account['_id']}" in result.stderr and "li-test-foreign" not in result.stderr
    assert db.integrationaccounts.find_one({"_id": account["_id"]})["accessToken"] == sealed

    from mcmp.models import IntegrationAccount
    from mcmp.worker.accounts import tokens

    fresh = tokens.ensure_fresh(IntegrationAccount.objects(pk=account["_id"]).first())
    assert fresh.outcome is tokens.Outcome.KEY_ERROR and fresh.credentials is None
    assert "cannot be decrypted with any configured key" in fresh.reason
    assert sealed[len(PREFIX) :] not in fresh.reason
    assert db.integrationaccounts.find_one({"_id": account["_id"]})["accessToken"] == sealed

    missing = subprocess.run(
        [*MCMP, "tokens", "rotate"],
        env=dict(env, MCMP_TOKEN_KEYS=""),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "no token keys configured" in missing.stderr
    malformed = subprocess.run(
        [*MCMP, "tokens", "rotate"],
        env=dict(env, MCMP_TOKEN_KEYS="not-a-key"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert malformed.returncode != 0 and "MCMP_TOKEN_KEYS" in malformed.stderr
    assert "not-a-key" not in malformed.stderr
