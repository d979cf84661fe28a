"""The frontend's sealing snippet (docs/tokens.md), run with node as written, produces values the
worker opens for that account, and only for that account."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from bson import ObjectId

from mcmp.models import IntegrationAccount
from mcmp.worker.accounts import crypto, secrets
from mcmp.worker.accounts.store import credentials_for
from tests import ROOT

HARNESS = """
const [token, accountId] = [process.env.TOKEN, process.env.ACCOUNT_ID];
console.log(sealToken(token, accountId, process.env.MCMP_TOKEN_KEYS.split(",")[0]));
"""


def seal_with_node(tmp_path: Path, token: str, account_id: str, keys: str) -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is required (the frontend tests run Mongoose with it)")
    blocks = re.findall(r"```js\n(.*?)```", (ROOT / "docs" / "tokens.md").read_text(), re.S)
    [snippet] = [b for b in blocks if "function sealToken" in b]
    script = tmp_path / "seal.js"
    script.write_text(snippet + HARNESS)
    env = dict(os.environ, TOKEN=token, ACCOUNT_ID=account_id, MCMP_TOKEN_KEYS=keys)
    done = subprocess.run([node, str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_token_sealed_by_the_frontends_snippet_opens_in_the_worker_for_its_account_only(
    env, db, tmp_path, make_client, make_account
) -> None:
    account_id = ObjectId()
    token = "li-test-from-node-ünïcode-✓"
    sealed = seal_with_node(tmp_path, token, str(account_id), env["MCMP_TOKEN_KEYS"])
    assert sealed.startswith(crypto.PREFIX) and token not in sealed
    assert crypto.decrypt(sealed, str(account_id)) == token  # the worker's open
    assert crypto.is_current(sealed, str(account_id))  # nothing left for `mcmp tokens rotate`

    make_account(make_client(), "linkedin", _id=account_id, accessToken=sealed)  # as the frontend writes it
    stored = IntegrationAccount.objects(pk=account_id).first()
    assert credentials_for(stored).access_token == token
    other = ObjectId()
    with pytest.raises(crypto.TokenBindingError):
        secrets.reveal(sealed, str(other))
    assert db.integrationaccounts.find_one({"_id": account_id})["accessToken"] == sealed  # not re-sealed
