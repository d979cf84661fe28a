"""Typed configuration for every MCMP Publisher process (see :mod:`mcmp.config.settings`)."""

from mcmp.config.settings import (
    PlatformSettings,
    Settings,
    SettingsError,
    get_settings,
    load_settings,
    reset_settings,
)

__all__ = ["PlatformSettings", "Settings", "SettingsError", "get_settings", "load_settings", "reset_settings"]
