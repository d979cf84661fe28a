"""No process writes a token unsealed unless told to by ``MCMP_ALLOW_PLAINTEXT_TOKENS``.

Without ``MCMP_TOKEN_KEYS`` the worker does not even ask the platform for a refreshed token it
could not store (some platforms retire the old refresh token); the explicit setting stores
tokens unencrypted, with a warning. (The admin API's side: ``tests/integration/api/test_token_storage.py``.)
"""

from __future__ import annotations

import pytest

from mcmp.worker.accounts import crypto, secrets
from tests.conftest import allow_plaintext_tokens

ORG = "urn:li:organization:2414183"


def _allow_plaintext(monkeypatch: pytest.MonkeyPatch) -> None:
    allow_plaintext_tokens(monkeypatch)


def test_sealing_without_a_key_is_refused_unless_plaintext_is_allowed(no_token_keys, monkeypatch) -> None:
    with pytest.raises(crypto.TokenKeyError) as refused:
        secrets.seal("li-secret-token", "66f0c0ffee0000000000beef")
    assert "MCMP_TOKEN_KEYS is not set" in str(refused.value) and "li-secret-token" not in str(refused.value)
    assert not secrets.can_seal()
    _allow_plaintext(monkeypatch)
    assert (
        secrets.can_seal()
        and secrets.seal("li-secret-token", "66f0c0ffee0000000000beef") == "li-secret-token"
    )
