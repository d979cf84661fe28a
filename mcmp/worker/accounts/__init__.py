"""Integration accounts: finding them, sealing tokens at rest, refreshing and rotating keys.

Owns every write to ``integrationaccounts`` (tests/test_write_ownership.py) and the one rule
choosing a client's account for a platform (``store.choose_account``). May use models, connectors (refresh calls) and config.
"""
