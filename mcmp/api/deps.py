"""Request dependencies as ``Annotated`` aliases: the calling key and its tenant scope.

Every route that touches tenant data takes :data:`TenantScopeDep` and adds
``scope.query()`` to each MongoDB filter, so a key scoped to tenant A cannot even learn that a
tenant-B object exists: it gets the same 404 as for an absent id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from bson import ObjectId
from fastapi import Depends, Security
from fastapi.security import APIKeyHeader

from mcmp.api.keys import find_active
from mcmp.api.problems import ApiProblem, not_found

API_KEY_HEADER = "X-API-Key"
_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="Key from `mcmp apikey create`")


@dataclass(frozen=True)
class Caller:
    """The authenticated key: its name, the user it acts for, its tenants."""

    key_id: str
    name: str
    user_id: str | None
    client_ids: frozenset[str]
    all_tenants: bool

    @property
    def actor(self) -> str:
        """``byUserId`` of the status changes this caller makes."""
        return self.user_id or f"apikey:{self.name}"


def authenticate(key: Annotated[str | None, Security(_header)] = None) -> Caller:
    if not key:
        raise ApiProblem(401, "unauthorized", f"missing {API_KEY_HEADER} header")
    found = find_active(key)
    if found is None:
        raise ApiProblem(401, "unauthorized", "unknown or revoked API key")
    return Caller(
        key_id=str(found.pk),
        name=found.name,
        user_id=found.user_id,
        client_ids=frozenset(found.client_ids or []),
        all_tenants=bool(found.all_tenants),
    )


ApiKeyDep = Annotated[Caller, Depends(authenticate)]


@dataclass(frozen=True)
class TenantScope:
    """The tenants a request may see, as MongoDB filters."""

    all_tenants: bool
    client_ids: frozenset[str]

    def allows(self, client_id: str | None) -> bool:
        return self.all_tenants or (client_id is not None and client_id in self.client_ids)

    def query(self, client_id: str | None = None, field: str = "clientId") -> dict[str, Any]:
        """Filter on ``field``; narrowed to ``client_id`` when given (404 if outside the scope)."""
        if client_id is not None:
            if not self.allows(client_id):
                raise not_found("client")
            return {field: client_id}
        if self.all_tenants:
            return {}
        return {field: {"$in": sorted(self.client_ids)}}


def tenant_scope(caller: ApiKeyDep) -> TenantScope:
    return TenantScope(all_tenants=caller.all_tenants, client_ids=caller.client_ids)


TenantScopeDep = Annotated[TenantScope, Depends(tenant_scope)]


def object_id(value: str, what: str) -> ObjectId:
    """A path id as ObjectId; a malformed one is simply not found (same answer as absent)."""
    if not ObjectId.is_valid(value):
        raise not_found(what)
    return ObjectId(value)
