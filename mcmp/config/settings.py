"""One typed settings object, read from ``MCMP_*`` environment variables.

Every process (worker, dispatcher, beat, API, CLI) reads its configuration through
:func:`get_settings`, so tests can swap it with :func:`reset_settings` after changing the
environment. A bad or missing value stops startup with *one* message that lists every problem,
instead of failing on the first and hiding the rest.

Nested values use ``__`` as delimiter, e.g. ``MCMP_FACEBOOK__BASE_URL=http://127.0.0.1:9001``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Annotated

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mcmp.config.networks import AllowedNetwork, hazards, parse_allowed
from mcmp.errors import PublisherError


class SettingsError(PublisherError, RuntimeError):
    """Raised at startup when the configuration is invalid; the message lists every problem."""


class PlatformSettings(BaseModel):
    """Where and how one platform is reached. ``base_url`` is overridden to reach a simulator."""

    base_url: str = ""
    api_version: str = ""
    timeout_seconds: float = Field(default=15.0, gt=0)
    app_id: str = ""
    app_secret: SecretStr = SecretStr("")
    token_url: str = ""
    # Refresh a token when it expires within this many seconds.
    refresh_margin_seconds: int = Field(default=3600, ge=0)
    # Analytics request budget (mcmp/worker/analytics/pacing.py), in platform calls (a Graph batch
    # counts each sub-request). Kept below the platform's own limits so publishing keeps headroom.
    analytics_app_calls_per_second: float = Field(default=5.0, gt=0)
    analytics_account_calls_per_second: float = Field(default=1.0, gt=0)
    analytics_burst: int = Field(default=50, gt=0)
    # Publishing pace (mcmp/worker/rate_limit.py) while the platform says a budget is nearly spent
    # (usage headers ≥ 90 %) or after a throttle: calls per second per account and per app. After a
    # block, the deliveries it deferred come due this far apart instead of all at once. The default
    # is Graph's (a Page; Meta publishes no per-second posting rate, 5/s is 300 posts a minute):
    # other platforms set their own. Set it to a Page's real allowance when you know it.
    pace_calls_per_second: float = Field(default=5.0, gt=0)
    pace_app_calls_per_second: float = Field(default=10.0, gt=0)


class WebsiteSettings(PlatformSettings):
    base_url: str = ""  # each account carries its own site / webhook URL
    refresh_margin_seconds: int = 0
    # Every site is its own receiver: after a 429 its Retry-After is honoured, then a brisk pace.
    pace_calls_per_second: float = Field(default=50.0, gt=0)
    pace_app_calls_per_second: float = Field(default=500.0, gt=0)


class FacebookSettings(PlatformSettings):
    base_url: str = "https://graph.facebook.com"
    api_version: str = "v21.0"
    refresh_margin_seconds: int = 7 * 86400
    # Page videos are uploaded to graph-video.facebook.com (empty: the same host as base_url).
    video_base_url: str = "https://graph-video.facebook.com"
    # Resumable upload takes videos up to 10 GB (Meta's video upload guide); lower it to refuse sooner.
    video_max_bytes: int = Field(default=10 * 1024**3, gt=0)
    video_poll_seconds: float = Field(default=3.0, gt=0)
    # How long one attempt waits for a video to finish processing before looking again later.
    video_poll_timeout_seconds: float = Field(default=600.0, gt=0)


class InstagramSettings(PlatformSettings):
    base_url: str = "https://graph.facebook.com"
    api_version: str = "v21.0"
    refresh_margin_seconds: int = 7 * 86400
    container_poll_seconds: float = Field(default=2.0, gt=0)
    # Below the in-flight lease, so a slow container never lets the reaper hand the delivery on.
    container_poll_timeout_seconds: float = Field(default=60.0, gt=0)
    # When the publishing quota is used up, check again after this long (the window is rolling).
    quota_recheck_seconds: float = Field(default=900.0, gt=0)


class LinkedInSettings(PlatformSettings):
    base_url: str = "https://api.linkedin.com"
    # LinkedIn supports each monthly version for about a year; 202510 is sunset by late 2026.
    api_version: str = "202607"
    token_url: str = "https://www.linkedin.com/oauth/v2/accessToken"
    refresh_margin_seconds: int = 7 * 86400
    # Organic video: 500 MB at most (LinkedIn's video specifications); raise it if LinkedIn does.
    video_max_bytes: int = Field(default=500 * 1024**2, gt=0)
    video_poll_seconds: float = Field(default=3.0, gt=0)
    # How long one attempt waits for a video to become AVAILABLE before trying again later.
    video_poll_timeout_seconds: float = Field(default=600.0, gt=0)
    # Daily budgets (reset at midnight UTC): ≈86k app and ≈8.6k member calls a day at most.
    analytics_app_calls_per_second: float = 1.0
    analytics_account_calls_per_second: float = 0.1
    analytics_burst: int = 20
    # LinkedIn documents daily quotas, no per-second rate: pace only after a 429.
    pace_calls_per_second: float = Field(default=5.0, gt=0)
    pace_app_calls_per_second: float = Field(default=50.0, gt=0)


class GoogleBusinessSettings(PlatformSettings):
    base_url: str = "https://mybusiness.googleapis.com"
    api_version: str = "v4"
    token_url: str = "https://oauth2.googleapis.com/token"
    refresh_margin_seconds: int = 600
    # Per-minute project quota (300/min by default): analytics takes at most 240/min.
    analytics_app_calls_per_second: float = 4.0
    analytics_account_calls_per_second: float = 4.0
    analytics_burst: int = 10
    # The project quota is per minute (300/min by default): 5 calls/s is the whole of it.
    pace_calls_per_second: float = Field(default=5.0, gt=0)
    pace_app_calls_per_second: float = Field(default=5.0, gt=0)


class Settings(BaseSettings):
    """All knobs of the publisher. Defaults reach the real platforms and a local MongoDB/Redis."""

    model_config = SettingsConfigDict(
        env_prefix="MCMP_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    env: str = Field(default="dev", description="dev | test | prod; prod refuses placeholder secrets")

    mongodb_uri: str = "mongodb://127.0.0.1:27017/mcmp"
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str = Field(default="", description="Celery broker; empty means redis_url. amqp:// works too")

    # Dispatcher / delivery lifecycle
    dispatch_interval_seconds: float = Field(default=0.25, gt=0)
    # Posts are expanded and their deliveries sent this far ahead of their time, rounded down to a
    # whole second (a second's deliveries go out together, in whole batches): 1-2 s ahead at 2.
    lookahead_seconds: float = Field(default=2.0, ge=0)
    dispatch_batch_size: int = Field(default=200, gt=0)
    queued_lease_seconds: int = Field(default=300, gt=0)
    inflight_lease_seconds: int = Field(default=90, gt=0)
    # The reaper also hands on dead workers' deliveries and re-sends lost messages: keep it short.
    reap_interval_seconds: float = Field(default=2.0, gt=0)
    # A post still "scheduled" this long after expansion is re-derived from its deliveries
    # (recovers a worker killed between recording a delivery and updating its post).
    settle_after_seconds: float = Field(default=30.0, gt=0)
    # How often the dispatcher reads every scheduled post for a non-date scheduleTime (a string
    # written by a buggy client); missing/null times are caught through the index every pass.
    unschedulable_sweep_seconds: float = Field(default=60.0, gt=0)
    # 5 s doubling to 15 min: 12 attempts ride out about an hour of platform outage.
    max_attempts: int = Field(default=12, gt=0)
    retry_base_seconds: float = Field(default=5.0, gt=0)
    retry_max_seconds: float = Field(default=900.0, gt=0)
    reauth_deadline_hours: float = Field(default=72.0, gt=0)
    # Beat looks for tokens due for refresh (within each platform's refresh_margin_seconds) this often.
    token_refresh_interval_seconds: float = Field(default=60.0, gt=0)
    # A worker re-uses an account that was connected and not due for refresh for this long
    # instead of re-reading it for every delivery (mcmp/worker/accounts/cache.py); 0 turns it off.
    account_cache_seconds: float = Field(default=1.0, ge=0)
    task_time_limit_seconds: int = Field(default=300, gt=0)
    # A delivery first picked up later than this after its scheduleTime (or the admin retry that
    # re-opened it) is failed instead of published: "Happy Friday" must not go out on Sunday.
    # A duration (``6h``, ``90m``) or seconds; 0 turns the limit off.
    max_lateness: float = Field(default=6 * 3600.0, ge=0)
    # Deliveries per ``mcmp.publish_batch`` message (formed from what is due now, never waited for).
    batch_size: int = Field(default=25, gt=0, le=500)
    # Platform calls running at once per worker process, across its batches (they wait on the
    # platform, not the CPU); calls start in due order.
    batch_concurrency: int = Field(default=25, gt=0, le=100)
    # A batch records the outcomes it has after this long; slower deliveries record their own.
    batch_record_after_seconds: float = Field(default=2.0, gt=0)
    # Each worker process keeps a Redis key alive with this TTL (renewed 4x per TTL): the reaper
    # hands a dead worker's deliveries on within about this long plus one reap interval.
    liveness_ttl_seconds: float = Field(default=4.0, gt=0)
    # A ``queued`` delivery this far past its due time while the publish queue is empty has lost
    # its message (killed worker's prefetch, broker restart): its message is sent again.
    requeue_after_seconds: float = Field(default=5.0, gt=0)
    worker_prefetch_multiplier: int = Field(default=4, gt=0)

    # Fair share (mcmp/worker/scheduling/fair_share.py, mcmp/worker/publishing/lanes.py): one
    # tenant's volume or slow site never holds another tenant's due posts.
    # Deliveries of one tenant (client) at work at once, fleet-wide (due and unfinished, plus
    # those queued ahead due within a second before; fair_share.InFlight); the rest of its due
    # deliveries wait in MongoDB, while other tenants' are claimed round-robin beside them.
    tenant_max_in_flight: int = Field(default=50, gt=0)
    # A delivery still in preflight this long into its attempt on the "publish" lane (slow media,
    # slow DNS) is moved to the "publish-long" lane before any platform call, and its account
    # (client × platform) is marked long: its next deliveries go to that lane directly. A platform
    # call that takes longer than this marks the account too.
    long_delivery_seconds: float = Field(default=1.0, gt=0)
    # How long an account stays on the long lane after its last long delivery.
    long_mark_seconds: float = Field(default=300.0, gt=0)
    # Platform calls running at once per worker process on the long lane.
    long_lane_concurrency: int = Field(default=64, gt=0, le=500)

    # Bounded work per delivery
    # One deadline for the whole preflight (media checks run concurrently inside it, DNS
    # included); also bounds the admin API's retry/reschedule checks.
    preflight_deadline_seconds: float = Field(default=20.0, gt=0)
    # A media download whose average rate stays below this (after the first 10 s) is cut; a
    # declared size gives it a deadline of that size at this rate.
    media_min_bytes_per_second: int = Field(default=64 * 1024, gt=0)
    # Retry-After and regain times are honoured up to this (a day: daily quotas reset by then);
    # non-finite, negative or absurd values (over 30 days) are treated as absent.
    max_retry_after_seconds: float = Field(default=86400.0, gt=0)
    # An uncertain delivery (the last attempt may have posted) whose lookup on the platform cannot
    # confirm either way this many times fails with a lastError saying what to check.
    max_reconcile_lookups: int = Field(default=6, gt=0)
    # Platform connections (Graph, LinkedIn, Google) kept alive per host in each process, shared
    # by its connectors; 0: batch_concurrency + readiness_concurrency + analytics_backfill_concurrency,
    # every thread of a worker process that may call a platform at once.
    http_pool_per_host: int = Field(default=0, ge=0)

    # Secrets. Without keys no process writes a token (prod refuses to start), unless
    # allow_plaintext_tokens says to store them unencrypted.
    token_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Fernet keys, newest first; comma-separated or JSON list"
    )
    allow_plaintext_tokens: bool = Field(
        default=False,
        description="Store tokens unencrypted when MCMP_TOKEN_KEYS is unset (never in prod)",
    )

    # Tenant URLs (assetUrls, assets.url, webhookUrl, siteUrl) are fetched by
    # mcmp.connectors.tenant_fetch: never inside these networks unless listed here.
    fetch_allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Non-public networks tenant URLs may reach, e.g. 127.0.0.0/8 or 10.0.0.7/32:8443",
    )
    fetch_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    fetch_read_timeout_seconds: float = Field(default=15.0, gt=0)
    # Whole fetch, redirects and body included: a server dripping bytes is cut off here.
    fetch_total_timeout_seconds: float = Field(default=60.0, gt=0)
    # Media read whole into memory (images) when the platform states no smaller limit; a video is
    # streamed from its URL to the platform and capped by the platform's own limit instead.
    fetch_max_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    # Kept-alive connections to tenant sites (one pool per process, keyed by the checked address):
    # at most this many per site (0: as many as batch_concurrency, so no publish thread opens a
    # connection that is then thrown away), idle at most this long (under the 5 s keep-alive of
    # common servers, so a site rarely closes one as a webhook is written on it), for at most this
    # many sites (the least recently used is closed first).
    fetch_pool_idle_per_site: int = Field(default=0, ge=0)
    fetch_pool_idle_seconds: float = Field(default=4.0, gt=0)
    fetch_pool_sites: int = Field(default=256, gt=0)

    # Platforms
    website: WebsiteSettings = Field(default_factory=WebsiteSettings)
    facebook: FacebookSettings = Field(default_factory=FacebookSettings)
    instagram: InstagramSettings = Field(default_factory=InstagramSettings)
    linkedin: LinkedInSettings = Field(default_factory=LinkedInSettings)
    google_business: GoogleBusinessSettings = Field(default_factory=GoogleBusinessSettings)

    # Analytics
    analytics_slots: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["1h", "6h", "24h", "3d", "7d", "30d"]
    )
    analytics_plan_interval_seconds: float = Field(default=30.0, gt=0)
    analytics_batch_size: int = Field(default=50, gt=0, le=500)  # posts per fetch_metrics call
    analytics_plan_limit: int = Field(default=5000, gt=0)  # due deliveries planned per tick
    analytics_backfill_concurrency: int = Field(default=4, gt=0, le=64)
    # An analytics task waits at most this long for the request budget, else it is re-planned.
    analytics_max_wait_seconds: float = Field(default=20.0, ge=0)

    # Readiness (mcmp/worker/readiness): future posts checked ahead on the ``readiness`` queue.
    readiness_interval_seconds: float = Field(default=1.0, gt=0)  # beat sends a pass this often
    # Scheduled posts are checked once more when they come this close to their time.
    readiness_lead_seconds: float = Field(default=3600.0, ge=0)
    # Each pass re-reads changes this far behind its cursor (writers' clocks differ a little).
    readiness_scan_overlap_seconds: float = Field(default=5.0, ge=0)
    readiness_tenant_share: int = Field(default=200, gt=0)  # posts of one client per pass
    readiness_concurrency: int = Field(default=4, gt=0, le=64)  # clients checked side by side
    readiness_pass_seconds: float = Field(default=20.0, gt=0)  # a pass stops checking after this

    # API
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, gt=0, lt=65536)
    # Larger request bodies are refused with 413 before they are read.
    api_max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    # /metrics (API and `mcmp worker --metrics-port`) asks for `Authorization: Bearer <token>`
    # when set; unset, scrapers need none. /metrics' backlog figures and /v1/health/ready's
    # checks are computed at most once per this many seconds (callers in between get the last).
    metrics_token: SecretStr = SecretStr("")
    health_cache_seconds: float = Field(default=5.0, ge=0)

    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("max_lateness", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if isinstance(value, str) and value.strip() and not value.strip().replace(".", "", 1).isdigit():
            from mcmp.config.durations import parse_duration

            return parse_duration(value).total_seconds()
        return value

    @field_validator("token_keys", "analytics_slots", "fetch_allowed_networks", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("analytics_slots")
    @classmethod
    def _slots(cls, value: list[str]) -> list[str]:
        from mcmp.config.durations import parse_slots

        parse_slots(value)  # ValueError names the bad entry
        return value

    @field_validator("fetch_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_allowed(entry)  # ValueError names the bad entry
        return value

    @property
    def fetch_allowed(self) -> tuple[AllowedNetwork, ...]:
        """``fetch_allowed_networks`` parsed (validated at startup)."""
        return tuple(parse_allowed(entry) for entry in self.fetch_allowed_networks)

    def startup_warnings(self) -> list[str]:
        """Settings that are legal but dangerous where they are used; logged by every process at start."""
        warnings = []
        if self.env == "prod":
            warnings += [
                f"MCMP_FETCH_ALLOWED_NETWORKS: {hazard}: tenant URLs can reach this host"
                for hazard in hazards(self.fetch_allowed)
            ]
        if not self.token_keys and self.allow_plaintext_tokens:
            warnings.append("MCMP_ALLOW_PLAINTEXT_TOKENS is set: tokens are stored unencrypted")
        return warnings

    @field_validator("token_keys")
    @classmethod
    def _fernet_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        """A malformed key stops startup here instead of at the first token (the key is not echoed)."""
        from cryptography.fernet import Fernet

        for index, key in enumerate(value, start=1):
            try:
                Fernet(key.get_secret_value())
            except (ValueError, TypeError):
                raise ValueError(
                    f"entry {index} is not a Fernet key (32 url-safe base64 bytes; `mcmp tokens genkey`)"
                ) from None
        return value

    @field_validator("mongodb_uri")
    @classmethod
    def _mongo_scheme(cls, value: str) -> str:
        if not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("must start with mongodb:// or mongodb+srv://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        if value and not value.startswith(
            ("redis://", "rediss://", "redis+socket://", "amqp://", "amqps://", "pyamqp://")
        ):
            raise ValueError("must be a redis:// or amqp:// URL")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return value.upper()

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    def platform(self, name: str) -> PlatformSettings | None:
        """Settings of a built-in platform by its seed name (``google-business`` → ``google_business``)."""
        value = getattr(self, name.replace("-", "_"), None)
        return value if isinstance(value, PlatformSettings) else None

    def check_production(self) -> None:
        """Refuse to run in prod without real encryption keys (a placeholder would leak every token)."""
        if self.env == "prod" and not self.token_keys:
            raise SettingsError("Invalid MCMP settings:\n  - token_keys: required when MCMP_ENV=prod")


def load_settings() -> Settings:
    """Build settings from the environment, turning every validation problem into one message."""
    try:
        settings = Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"  - MCMP_{field.upper().replace('.', '__')}: {err['msg']}")
        raise SettingsError("Invalid MCMP settings:\n" + "\n".join(lines)) from None
    settings.check_production()
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()


def reset_settings() -> None:
    """Forget the cached settings so the next :func:`get_settings` re-reads the environment."""
    get_settings.cache_clear()
