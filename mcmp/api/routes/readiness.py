"""Readiness in the admin API: a post's verdict, a draft checked without storing it, accounts at risk.

The verdict is the one the worker writes on the post (``mcmpReadiness``, docs/frontend-contract.md);
when the post changed since, it is computed again for the answer (and not stored: the worker's
next pass does that). ``POST /v1/posts/validate`` runs the same checks on a payload as if it were
scheduled. Accounts at risk are listed by ``GET /v1/accounts?atRisk=true`` (see
:func:`at_risk_page`, used by the accounts route).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from mcmp.api.deps import PostIdDep, TenantScopeDep, id_or_404
from mcmp.api.problems import responses
from mcmp.api.schemas import AccountPage, AccountRiskOut, DraftIn, PostReadinessOut, ReadinessOut
from mcmp.worker import services

router = APIRouter(prefix="/v1/posts", tags=["readiness"], responses=responses(401, 404, 422))


@router.get(
    "/{post_id}/readiness",
    response_model=PostReadinessOut,
    summary="Will this post publish? Per platform, each problem's field, code and message",
)
def post_readiness(post_id: PostIdDep, scope: TenantScopeDep) -> PostReadinessOut:
    return PostReadinessOut.model_validate(services.post_readiness(post_id, scope.query()))


@router.post(
    "/validate",
    response_model=ReadinessOut,
    summary="Check a draft as if it were scheduled (nothing is stored, nothing published)",
)
def validate_draft(draft: DraftIn, scope: TenantScopeDep) -> ReadinessOut:
    client_id = id_or_404(draft.clientId, "client")
    scope.query(client_id)  # 404 outside the caller's tenants
    payload: dict[str, Any] = draft.model_dump(exclude_none=True)
    payload["clientId"] = client_id
    return ReadinessOut.model_validate(services.validate_draft(payload))


def at_risk_page(scope: TenantScopeDep, client_id: str | None, platform: str | None) -> AccountPage:
    """Accounts whose token will fail a scheduled post, newest first, each with its first such post."""
    from mcmp.api.routes.accounts import _account

    query = scope.query(client_id)
    if platform is not None:
        query["platform"] = platform
    risky = {r["accountId"]: r for r in services.accounts_at_risk(query)}
    docs = services.accounts_view(list(risky), query)
    flags = services.token_flags([d["_id"] for d in docs])
    items = []
    for doc in docs:
        found = risky[str(doc["_id"])]
        out = _account(doc, *flags[doc["_id"]])
        out.atRisk = AccountRiskOut(
            reason=found["reason"],
            message=found["message"],
            firstPostId=found["firstPostId"],
            firstPostAt=found["firstPostAt"],
            posts=found["posts"],
        )
        items.append(out)
    return AccountPage(items=items, nextCursor=None)
