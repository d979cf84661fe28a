"""``mcmp apikey create|revoke`` as real commands; the printed key works, then stops working."""

from __future__ import annotations

import subprocess
import sys

from tests import ROOT
from tests.integration.api.conftest import headers

MCMP = [sys.executable, "-m", "mcmp.cli"]


def _run(env, *args):
    return subprocess.run([*MCMP, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_apikey_create_prints_the_key_once_and_revoke_disables_it(api, env, db, make_client):
    client = make_client()
    created = _run(env, "apikey", "create", "ci-bot", "--client", str(client["_id"]), "--user-id", "u-7")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("mcmp_") and key not in str(list(db.apikeys.find()))
    assert api.get("/v1/posts", headers=headers(key)).status_code == 200
    assert _run(env, "apikey", "create", "nobody").returncode != 0  # a key must have a scope
    revoked = _run(env, "apikey", "revoke", "ci-bot")
    assert revoked.returncode == 0 and "revoked 1" in revoked.stdout
    assert api.get("/v1/posts", headers=headers(key)).status_code == 401
