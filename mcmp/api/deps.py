"""Request dependencies as ``Annotated`` aliases: the calling key, its tenant scope, canonical ids.

Every route that touches tenant data takes :data:`TenantScopeDep` and adds
``scope.query()`` to each MongoDB filter, so a key scoped to tenant A cannot even learn that a
tenant-B object exists: it gets the same 404 as for an absent id.

Ids arrive as text and are stored as text in some places (``postId``, ``clientId``) and as
ObjectIds in others, so a route must use *one* spelling everywhere: every id from a path, a query
or a body is canonicalised here, once, to 24 lowercase hex digits (``6B0B…`` and ``6b0b…`` are
the same post); a value that is not an id is 404, like an absent one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from bson import ObjectId
from fastapi import Depends, Path, Query, Request, Security
from fastapi.security import APIKeyHeader

from mcmp.api.keys import find_active
from mcmp.api.problems import ApiProblem, FieldError, not_found
from mcmp.worker import services

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


def caller_for(key: str | None) -> Caller:
    """The caller a key stands for; 401 problem when it is missing, unknown or revoked."""
    if not key:
        raise ApiProblem(401, "unauthorized", f"missing {API_KEY_HEADER} header")
    found = find_active(key)
    if found is None:
        raise ApiProblem(401, "unauthorized", "unknown or revoked API key")
    return Caller(
        key_id=str(found.pk),
        name=found.name,
        user_id=found.user_id,
        client_ids=frozenset(canonical_id(c) or c for c in found.client_ids or []),
        all_tenants=bool(found.all_tenants),
    )


def authenticate(request: Request, key: Annotated[str | None, Security(_header)] = None) -> Caller:
    """The key's caller; already known when the admission middleware checked it before the body."""
    known = getattr(request.state, "caller", None)
    return known if isinstance(known, Caller) else caller_for(key)


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


def canonical_id(value: str | None) -> str | None:
    """The one spelling of an ObjectId (24 lowercase hex digits); None when ``value`` is not one."""
    if not isinstance(value, str) or not ObjectId.is_valid(value):
        return None
    return str(ObjectId(value))


def id_or_404(value: str, what: str) -> str:
    """``value`` canonicalised; a value that is not an id is simply not found (same as absent)."""
    canonical = canonical_id(value)
    if canonical is None:
        raise not_found(what)
    return canonical


def object_id(value: str, what: str) -> ObjectId:
    """A canonical id as ObjectId (404 when it is not an id)."""
    return ObjectId(id_or_404(value, what))


def _post_id(post_id: Annotated[str, Path(max_length=64)]) -> str:
    return id_or_404(post_id, "post")


def _account_id(account_id: Annotated[str, Path(max_length=64)]) -> str:
    return id_or_404(account_id, "account")


def _campaign_id(campaign_id: Annotated[str, Path(max_length=64)]) -> str:
    return id_or_404(campaign_id, "campaign")


def _backfill_id(backfill_id: Annotated[str, Path(max_length=64)]) -> str:
    return id_or_404(backfill_id, "backfill")


def _client_query(
    client_id: Annotated[str | None, Query(alias="clientId", max_length=64)] = None,
) -> str | None:
    return None if client_id is None else id_or_404(client_id, "client")


def _campaign_query(
    campaign_id: Annotated[str | None, Query(alias="campaignId", max_length=64)] = None,
) -> str | None:
    return None if campaign_id is None else id_or_404(campaign_id, "campaign")


PostIdDep = Annotated[str, Depends(_post_id)]
AccountIdDep = Annotated[str, Depends(_account_id)]
CampaignIdDep = Annotated[str, Depends(_campaign_id)]
BackfillIdDep = Annotated[str, Depends(_backfill_id)]
ClientIdQuery = Annotated[str | None, Depends(_client_query)]
CampaignIdQuery = Annotated[str | None, Depends(_campaign_query)]


def known_platform(value: str | None, field: str) -> str | None:
    """``value`` when a connector is installed for it; else 422 naming ``field`` and the choices."""
    if value is None:
        return None
    known = services.known_platforms()
    if value not in known:
        raise ApiProblem(
            422,
            "validation-error",
            f"invalid request: {field}",
            [FieldError(field=field, message=f"unknown platform {value!r} (known: {', '.join(known)})")],
        )
    return value
