"""Admin API fixtures: the app in-process (TestClient) on the test's real database, keys, tenants."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

with warnings.catch_warnings():
    # Starlette 1.x prefers "httpx2" for its TestClient; httpx (installed, pinned by the test extra) works.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture
def app(env: dict[str, str]) -> Any:
    from mcmp.api.app import create_app

    return create_app()


@pytest.fixture
def api(app: Any) -> Iterator[TestClient]:
    """In-process client; server errors come back as 500 problems (asserted on, not raised)."""
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def make_key(env: dict[str, str]) -> Callable[..., str]:
    from mcmp.api.keys import create_key

    def make(
        *client_ids: str, all_tenants: bool = False, name: str = "test", user_id: str | None = None
    ) -> str:
        return create_key(name, list(client_ids), all_tenants=all_tenants, user_id=user_id).key

    return make


def headers(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


@dataclass
class Tenant:
    client: dict[str, Any]
    post: dict[str, Any]
    account: dict[str, Any]
    campaign: dict[str, Any]
    backfill_id: str

    @property
    def id(self) -> str:
        return str(self.client["_id"])


@pytest.fixture
def make_tenant(
    db: Any,
    make_client: Callable[..., dict[str, Any]],
    make_account: Callable[..., dict[str, Any]],
    make_post: Callable[..., dict[str, Any]],
) -> Callable[[], Tenant]:
    """A client with one failed post (failed delivery), an account with tokens, a campaign, a backfill job."""
    from mcmp.worker.publishing import delivery_states
    from mcmp.worker.publishing.delivery_states import NewDelivery

    def make() -> Tenant:
        from mcmp.models import DeliveryState, ErrorClass

        client = make_client()
        cid = str(client["_id"])
        campaign = {"_id": ObjectId(), "clientId": cid, "name": "Launch", "tags": [], "__v": 0}
        db.campaigns.insert_one(campaign)
        post = make_post(
            client,
            ["website"],
            when=datetime.now(UTC) - timedelta(minutes=5),
            status="failed",
            campaignId=str(campaign["_id"]),
            lastError="website: refused",
        )
        delivery_states.ensure(
            [
                NewDelivery(
                    str(post["_id"]),
                    cid,
                    "website",
                    post["scheduleTime"],
                    state=DeliveryState.FAILED,
                    last_error="refused",
                    error_class=ErrorClass.PERMANENT,
                )
            ]
        )
        account = make_account(
            client, "linkedin", accessToken="AT-secret-" + cid, refreshToken="RT-secret-" + cid
        )
        backfill = {"_id": ObjectId(), "clientId": cid, "status": "running", "done": 1, "total": 3}
        db.analyticsbackfills.insert_one(backfill)
        return Tenant(client, post, account, campaign, str(backfill["_id"]))

    return make
