"""Creating, revoking and checking admin-API keys (the plaintext exists only when created)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from bson import ObjectId

from mcmp.models import ApiKey
from mcmp.models.api_key import api_keys
from mcmp.models.base import utcnow

KEY_PREFIX = "mcmp_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedKey:
    key: str  # shown once
    api_key: ApiKey


def create_key(
    name: str, client_ids: list[str] | None = None, all_tenants: bool = False, user_id: str | None = None
) -> CreatedKey:
    """A new key scoped to ``client_ids`` (or every tenant); refuses a key that could see nothing.

    Client ids are stored in their one spelling (24 lowercase hex digits), as every request's ids
    are compared in it; a value that is not an id is refused.
    """
    wrong = [c for c in client_ids or [] if not ObjectId.is_valid(c)]
    if wrong:
        raise ValueError(f"--client takes client ids (24 hex digits), not {', '.join(map(repr, wrong))}")
    client_ids = list(dict.fromkeys(str(ObjectId(c)) for c in client_ids or []))
    if not all_tenants and not client_ids:
        raise ValueError("give at least one --client, or --all-tenants")
    if all_tenants and client_ids:
        raise ValueError("--all-tenants and --client are exclusive")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    doc = ApiKey(
        name=name,
        prefix=key[:12],
        key_hash=hash_key(key),
        client_ids=client_ids,
        all_tenants=all_tenants,
        user_id=user_id,
    ).save()
    return CreatedKey(key, doc)


def revoke_key(name_or_prefix: str) -> int:
    """Revoke every active key with this name or prefix; returns how many."""
    now = utcnow()
    query = {"$or": [{"name": name_or_prefix}, {"prefix": name_or_prefix}], "revokedAt": None}
    return api_keys().update_many(query, {"$set": {"revokedAt": now, "updatedAt": now}}).modified_count


def find_active(key: str) -> ApiKey | None:
    if not key.startswith(KEY_PREFIX):
        return None
    found: ApiKey | None = ApiKey.objects(key_hash=hash_key(key), revoked_at=None).first()
    return found
