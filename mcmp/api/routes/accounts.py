"""Integration accounts: listed without their tokens, refreshed by a task, given a new token.

Tokens never leave the database through the API, not even a prefix: the response model has no
field for them, only ``hasAccessToken`` / ``hasRefreshToken``. The refresh action enqueues the
token task with the account id (the API never calls a platform).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from mcmp.api.deps import AccountIdDep, ClientIdQuery, TenantScopeDep, known_platform
from mcmp.api.pagination import CursorParam, LimitParam, page
from mcmp.api.problems import not_found, responses
from mcmp.api.schemas import AccountOut, AccountPage, TaskOut, TokenIn, utc
from mcmp.api.tasks import TOKEN_REFRESH_TASK, enqueue
from mcmp.models.integration_account import AccountDoc
from mcmp.worker import services

router = APIRouter(prefix="/v1/accounts", tags=["accounts"], responses=responses(401, 404, 422))


def _account(doc: AccountDoc, has_access: bool, has_refresh: bool) -> AccountOut:
    auth_error = (doc.get("metadata") or {}).get("authError")
    return AccountOut(
        id=str(doc["_id"]),
        clientId=str(doc.get("clientId")),
        platform=str(doc.get("platform")),
        accountName=None if doc.get("accountName") is None else str(doc.get("accountName")),
        externalAccountId=None if doc.get("externalAccountId") is None else str(doc.get("externalAccountId")),
        status=None if doc.get("status") is None else str(doc.get("status")),
        expiresAt=utc(doc.get("expiresAt")),
        hasAccessToken=has_access,
        hasRefreshToken=has_refresh,
        authError=None if auth_error is None else str(auth_error),
    )


@router.get("", response_model=AccountPage, summary="List integration accounts (tokens never shown)")
def list_accounts(
    scope: TenantScopeDep,
    client_id: ClientIdQuery,
    platform: Annotated[str | None, Query(max_length=64)] = None,
    cursor: CursorParam = None,
    limit: LimitParam = 50,
    at_risk: Annotated[
        bool,
        Query(alias="atRisk", description="Only accounts whose token will fail a scheduled post (one page)"),
    ] = False,
) -> AccountPage:
    if at_risk:
        from mcmp.api.routes.readiness import at_risk_page

        return at_risk_page(scope, client_id, known_platform(platform, "query.platform"))
    query = scope.query(client_id)
    if known_platform(platform, "query.platform") is not None:
        query["platform"] = platform
    docs, next_cursor = page(lambda before, n: services.account_page(query, before, n), cursor, limit)
    flags = services.token_flags([d["_id"] for d in docs])
    return AccountPage(items=[_account(d, *flags[d["_id"]]) for d in docs], nextCursor=next_cursor)


def _load(account_id: str, scope: TenantScopeDep) -> AccountDoc:
    doc = services.account_view(account_id, scope.query())
    if doc is None:
        raise not_found("account")
    return doc


@router.get(
    "/{account_id}", response_model=AccountOut, summary="One integration account (tokens never shown)"
)
def get_account(account_id: AccountIdDep, scope: TenantScopeDep) -> AccountOut:
    doc = _load(account_id, scope)
    return _account(doc, *services.token_flags([doc["_id"]])[doc["_id"]])


@router.post(
    "/{account_id}/refresh",
    response_model=TaskOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(503),
    summary="Enqueue a token refresh for this account",
)
def refresh_account(account_id: AccountIdDep, scope: TenantScopeDep) -> TaskOut:
    doc = _load(account_id, scope)
    return enqueue(TOKEN_REFRESH_TASK, str(doc["_id"]))


@router.put(
    "/{account_id}/token", response_model=AccountOut, summary="Store a new token (account becomes connected)"
)
def put_token(account_id: AccountIdDep, body: TokenIn, scope: TenantScopeDep) -> AccountOut:
    doc = services.store_token(
        account_id,
        scope.query(),
        body.accessToken,
        refresh_token=body.refreshToken,
        expires_at=body.expiresAt,
    )
    return _account(doc, bool(doc.get("accessToken")), bool(doc.get("refreshToken")))
