"""The connector contract as one test class: every connector, built-in or third-party, inherits it.

In the spirit of singer-sdk's standard tap tests: a connector's test module subclasses
:class:`ConnectorConformance` (its name starting with ``Test`` so pytest collects it), fills in
the hooks below and provides the fixtures ``sim`` (its platform fake, a
:class:`~mcmp.connectors.testing.PlatformFake` emptied for each test), ``base`` (the fake's URL;
:func:`~mcmp.connectors.testing.platform_fixtures` makes both) and ``connector`` (built against
``base``). Every test then runs against that connector over real HTTP:

* publish: the post exists once on the platform, and reconciling a published delivery finds it;
* each error class, as the platform would answer: a 5xx on the write that creates the post is
  ambiguous, on a read retryable; a throttle is rate-limited with its wait; a revoked token is an
  auth error naming no token; a post the platform refuses is permanent;
* ambiguous → ``find_published``: found (committed, then no answer), not found (no answer, nothing
  committed), incomplete (a feed lookup that cannot reach its window says so, never "not found");
* refresh: ok (the new token publishes), revoked (auth), transient (retryable, never auth);
  a secret that never expires refreshes without a platform call, whatever the platform says;
* metrics: one snapshot per post, in order, in the seed's metric names only;
* validate: the longest body the platform takes passes, one character more fails on ``body``,
  neither makes a platform call;
* one connector instance serves many threads.

A connector's own test module keeps only what is peculiar to its platform. The suite imports
nothing of MCMP but ``mcmp.connectors``: a plugin runs it from its own repository.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any, ClassVar

import pytest

from mcmp.connectors import (
    AmbiguousError,
    AuthError,
    Connector,
    Credentials,
    LookupIncompleteError,
    MetricsRef,
    PermanentError,
    PostContent,
    PublishRequest,
    RateLimitedError,
    RetryableError,
    UsageReport,
    ValidationError,
)
from mcmp.connectors.testing.fixtures import usage_reports

SEED_METRICS = frozenset({"impressions", "reach", "clicks", "likes", "comments", "shares", "saves"})
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def check_lookup_budget(
    monkeypatch: pytest.MonkeyPatch,
    module: ModuleType,
    page_size_name: str,
    connector: Any,
    request: Callable[[str], PublishRequest],
    publish_other: Callable[[int], object],
) -> None:
    """Ten newer posts than ours and a two-page budget of five: neither found nor not found.

    Reconciliation that stops reading before the start of its window and answers "not found"
    makes the worker publish again: a duplicate whenever the earlier attempt's post sat on a page
    it did not read (a worker killed after posting, reaped after many newer posts).
    """
    monkeypatch.setattr(module, page_size_name, 5)
    monkeypatch.setattr(module, "RECONCILE_MAX_PAGES", 2)
    connector.publish(request("ours"))
    for i in range(10):
        publish_other(i)
    with pytest.raises(LookupIncompleteError, match=f"{connector.platform} lookup read 10 recent posts"):
        connector.find_published(request("ours"))
    with pytest.raises(LookupIncompleteError):
        connector.find_published(request("never-sent"))
    monkeypatch.setattr(module, "RECONCILE_MAX_PAGES", 3)
    found = connector.find_published(request("ours"))
    assert found is not None
    assert connector.find_published(request("never-sent")) is None


class ConnectorConformance:
    """Inherit, fill in the hooks; the ``test_*`` methods prove the Connector contract."""

    # --- hooks: what the platform is ------------------------------------------------------------
    #: The path (substring) of the request that creates the post on the platform.
    write_path: ClassVar[str]
    #: The path (substring) of the token endpoint; None when the secret never expires.
    token_path: ClassVar[str | None] = None
    #: The longest ``body`` the connector accepts for ``content()``'s other fields (None: no limit).
    body_limit: ClassVar[int | None]
    #: The seed metric names ``fetch_metrics`` reports for an aged post (empty: none reported).
    metric_names: ClassVar[frozenset[str]] = frozenset()
    #: (connector module, page size attribute) for feed lookups that may be incomplete;
    #: None when the lookup is exact (by idempotency key or slug).
    lookup_budget: ClassVar[tuple[ModuleType, str] | None] = None
    #: The field of ``sim.state()["posts"]`` entries holding the platform post id.
    post_id_field: ClassVar[str] = "id"

    def credentials(self, base: str, token: str | None = None) -> Credentials:
        """Credentials the simulator accepts (``token`` replaces the access token)."""
        raise NotImplementedError

    def content(self, key: str, body: str | None = None) -> PostContent:
        """A post the platform accepts; its text distinct per ``key``."""
        raise NotImplementedError

    def refused_content(self, base: str) -> PostContent:
        """A post that passes no validation of ours the platform would not also do, and is refused."""
        raise NotImplementedError

    def revoked_grant(self, base: str) -> Credentials:
        """Revoke a grant in the simulator and return credentials carrying it (refreshing ones)."""
        raise NotImplementedError

    def age(self, sim: Any, platform_post_id: str) -> None:
        """Make a published post old enough to have engagement (no-op without metrics)."""

    # --- fixtures -------------------------------------------------------------------------------
    @pytest.fixture
    def reports(self) -> Iterator[list[UsageReport]]:
        """Every usage report the connector sends to the shared rate limiter during the test."""
        yield from usage_reports()

    # --- helpers --------------------------------------------------------------------------------
    def request(
        self,
        base: str,
        key: str = "delivery-1",
        content: PostContent | None = None,
        credentials: Credentials | None = None,
    ) -> PublishRequest:
        now = datetime.now(UTC)
        return PublishRequest(
            delivery_id=key,
            idempotency_key=key,
            attempt_id=f"attempt-{key}",
            attempt_started_at=now,
            content=content or self.content(key),
            credentials=credentials or self.credentials(base),
            first_attempt_at=now - timedelta(seconds=5),
        )

    def stored_ids(self, sim: Any) -> list[str]:
        return [str(post[self.post_id_field]) for post in sim.state()["posts"]]

    def requests_seen(self, sim: Any) -> int:
        return len(sim.request_log)

    # --- publish --------------------------------------------------------------------------------
    def test_publish_creates_the_post_once_and_reconcile_finds_it(
        self, connector: Connector, sim: Any, base: str
    ) -> None:
        request = self.request(base)
        result = connector.publish(request)
        assert self.stored_ids(sim) == [result.platform_post_id]
        assert result.published_at is None or result.published_at.tzinfo is not None
        found = connector.find_published(request)
        assert found is not None and found.platform_post_id == result.platform_post_id
        assert self.stored_ids(sim) == [result.platform_post_id]

    def test_one_connector_serves_many_threads(self, connector: Connector, sim: Any, base: str) -> None:
        keys = [f"delivery-{i}" for i in range(8)]
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda key: connector.publish(self.request(base, key)), keys))
        assert sorted(self.stored_ids(sim)) == sorted(r.platform_post_id for r in results)
        assert len(set(self.stored_ids(sim))) == len(keys)
        for key, result in zip(keys, results, strict=True):
            found = connector.find_published(self.request(base, key))
            assert found is not None and found.platform_post_id == result.platform_post_id

    # --- error classes ----------------------------------------------------------------------------
    def test_5xx_on_the_write_is_ambiguous(self, connector: Connector, sim: Any, base: str) -> None:
        sim.set_faults({"rules": [{"kind": "http_500", "count": 1, "path": self.write_path}]})
        with pytest.raises(AmbiguousError):
            connector.publish(self.request(base))

    def test_5xx_on_a_read_is_retryable_not_ambiguous(
        self, connector: Connector, sim: Any, base: str
    ) -> None:
        sim.set_faults({"rules": [{"kind": "http_503", "methods": ["GET"]}]})
        with pytest.raises(RetryableError) as err:
            connector.find_published(self.request(base))
        assert not isinstance(err.value, AmbiguousError)

    def test_throttled_is_rate_limited_for_at_least_the_wait_asked(
        self, connector: Connector, sim: Any, base: str, reports: list[UsageReport]
    ) -> None:
        sim.set_faults(
            {"rules": [{"kind": "rate_limit", "count": 1, "retry_after": 7, "path": self.write_path}]}
        )
        with pytest.raises(RateLimitedError) as err:
            connector.publish(self.request(base))
        assert err.value.retry_after >= 7
        assert self.stored_ids(sim) == []
        assert any(r.platform == connector.platform for r in reports), "the shared rate limiter was not told"

    def test_revoked_token_is_auth_and_names_no_token(
        self, connector: Connector, sim: Any, base: str
    ) -> None:
        sim.set_faults({"rules": [{"kind": "token_revoked", "count": 1, "methods": ALL_METHODS}]})
        credentials = self.credentials(base)
        with pytest.raises(AuthError) as err:
            connector.publish(self.request(base, credentials=credentials))
        assert credentials.access_token not in str(err.value)
        assert self.stored_ids(sim) == []

    def test_refused_post_is_permanent(self, connector: Connector, sim: Any, base: str) -> None:
        with pytest.raises(PermanentError) as err:
            connector.publish(self.request(base, content=self.refused_content(base)))
        assert not isinstance(err.value, ValidationError), "the platform's refusal, not our own check"
        assert self.stored_ids(sim) == []

    # --- ambiguous → find_published ---------------------------------------------------------------
    def test_committed_then_no_answer_is_ambiguous_then_found(
        self, connector: Connector, sim: Any, base: str
    ) -> None:
        sim.set_faults({"rules": [{"kind": "commit_then_timeout", "count": 1, "path": self.write_path}]})
        request = self.request(base)
        with pytest.raises(AmbiguousError):
            connector.publish(request)
        [stored] = self.stored_ids(sim)
        found = connector.find_published(request)
        assert found is not None and found.platform_post_id == stored
        assert connector.find_published(self.request(base, "another-delivery")) is None

    def test_no_answer_and_nothing_committed_is_ambiguous_then_not_found(
        self, connector: Connector, sim: Any, base: str
    ) -> None:
        sim.set_faults({"rules": [{"kind": "timeout", "count": 1, "path": self.write_path}]})
        request = self.request(base)
        with pytest.raises(AmbiguousError):
            connector.publish(request)
        assert self.stored_ids(sim) == []
        assert connector.find_published(request) is None

    def test_lookup_is_exact_or_says_it_is_incomplete(
        self, connector: Connector, sim: Any, base: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def publish_other(i: int) -> object:
            return connector.publish(self.request(base, f"other-{i}", self.content(f"other-{i}")))

        if self.lookup_budget is not None:
            module, page_size_name = self.lookup_budget
            check_lookup_budget(
                monkeypatch,
                module,
                page_size_name,
                connector,
                lambda key: self.request(base, key),
                publish_other,
            )
            return
        ours = connector.publish(self.request(base, "ours"))
        for i in range(10):
            publish_other(i)
        found = connector.find_published(self.request(base, "ours"))
        assert found is not None and found.platform_post_id == ours.platform_post_id
        assert connector.find_published(self.request(base, "never-sent")) is None

    # --- tokens -----------------------------------------------------------------------------------
    def test_refresh_ok_gives_a_token_that_publishes(self, connector: Connector, sim: Any, base: str) -> None:
        credentials = self.credentials(base)
        before = self.requests_seen(sim)
        grant = connector.refresh_token(credentials)
        assert grant.access_token
        assert grant.expires_at is None or grant.expires_at > datetime.now(UTC)
        if self.token_path is None:
            assert grant.access_token == credentials.access_token and grant.expires_at is None
            assert self.requests_seen(sim) == before, "a secret that never expires needs no platform call"
        connector.publish(self.request(base, credentials=self.credentials(base, grant.access_token)))
        assert len(self.stored_ids(sim)) == 1

    def test_refresh_of_a_revoked_grant_is_auth(self, connector: Connector, sim: Any, base: str) -> None:
        if self.token_path is None:  # nothing to revoke: the platform is never asked
            sim.set_faults({"rules": [{"kind": "token_revoked", "methods": ALL_METHODS}]})
            grant = connector.refresh_token(self.credentials(base))
            assert grant.access_token == self.credentials(base).access_token
            assert sim.fault_log == []
            return
        credentials = self.revoked_grant(base)
        with pytest.raises(AuthError) as err:
            connector.refresh_token(credentials)
        for secret in (credentials.access_token, credentials.refresh_token):
            assert not secret or secret not in str(err.value)

    def test_refresh_transient_failure_is_retryable_never_auth(
        self, connector: Connector, sim: Any, base: str
    ) -> None:
        path = self.token_path  # an outage, not one failed call: a client library may retry once itself
        sim.set_faults({"rules": [{"kind": "http_503", "methods": ALL_METHODS, "path": path}]})
        if path is None:
            grant = connector.refresh_token(self.credentials(base))
            assert grant.access_token == self.credentials(base).access_token and sim.fault_log == []
            return
        with pytest.raises(RetryableError) as err:
            connector.refresh_token(self.credentials(base))
        assert not isinstance(err.value, AmbiguousError)

    # --- metrics ----------------------------------------------------------------------------------
    def test_metrics_one_snapshot_per_post_in_seed_names(
        self, connector: Connector, sim: Any, base: str
    ) -> None:
        first = connector.publish(self.request(base, "first")).platform_post_id
        second = connector.publish(self.request(base, "second")).platform_post_id
        self.age(sim, first)
        self.age(sim, second)
        snapshots = connector.fetch_metrics(
            self.credentials(base), [MetricsRef("post-1", first), MetricsRef("post-2", second)]
        )
        assert [s.platform_post_id for s in snapshots] == [first, second]
        for snapshot in snapshots:
            assert not snapshot.deleted
            assert set(snapshot.metrics) == self.metric_names <= SEED_METRICS
            assert all(isinstance(v, int) and v >= 0 for v in snapshot.metrics.values())

    # --- validate ---------------------------------------------------------------------------------
    def test_validate_takes_the_longest_body_and_refuses_one_more_character_offline(
        self, connector: Connector, sim: Any, base: str
    ) -> None:
        credentials = self.credentials(base)
        before = self.requests_seen(sim)
        if self.body_limit is None:  # the platform takes any length: a long body passes
            connector.validate(self.content("long", "x" * 100_000), credentials)
        else:
            connector.validate(self.content("longest", "x" * self.body_limit), credentials)
            with pytest.raises(ValidationError) as err:
                connector.validate(self.content("too-long", "x" * (self.body_limit + 1)), credentials)
            assert err.value.field == "body"
        assert self.requests_seen(sim) == before, "validate must not call the platform"
