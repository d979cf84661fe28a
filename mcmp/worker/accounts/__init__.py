"""Integration accounts: finding them, sealing tokens at rest, refreshing and rotating keys.

Owns every write to ``integrationaccounts``. May use models, connectors (refresh calls) and config.
"""
