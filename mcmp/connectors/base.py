"""Defaults for the hooks the worker reads beyond a connector's five methods.

Every hook is declared on :class:`~mcmp.connectors.Connector`; a connector that subclasses
:class:`ConnectorBase` gets these defaults and overrides only what its platform needs, and is
handed its HTTP clients by the registry (so its requests are timed like the built-ins'). The
contract, hook by hook, is docs/connectors.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from mcmp.config import Settings
from mcmp.connectors.clients import HttpClients
from mcmp.connectors.media import MediaLimits
from mcmp.connectors.types import Credentials


class ConnectorBase:
    """Subclass it, set ``platform`` and write the five methods of the Protocol."""

    platform: str
    #: What the platform accepts as media, checked before any platform call (preflight and
    #: readiness). None: the reference table of ``mcmp.connectors.media`` for this platform, if
    #: any, else no media rules (the platform decides).
    media_limits: MediaLimits | None = None
    #: Rules per account mode, for a platform whose rules depend on the account (a website's
    #: webhook or WordPress), shown by ``mcmp connectors``. Empty: ``media_limits`` for every mode.
    media_limits_by_mode: Mapping[str, MediaLimits | None] = MappingProxyType({})

    def __init__(self, settings: Settings, *, clients: HttpClients | None = None) -> None:
        self.settings = settings
        #: Where the connector takes its HTTP sessions and tenant fetchers from (the registry's).
        self.clients = clients if clients is not None else HttpClients(settings)

    def metrics_cost(self, credentials: Credentials, count: int) -> int:
        """Platform calls one ``fetch_metrics`` of ``count`` posts costs against the shared budget.

        The analytics refresh sizes its batches so one call fits the rate limiter's burst.
        Default: two calls per post (a post read and an insights read).
        """
        return 2 * count
