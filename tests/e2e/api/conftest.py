"""The admin API's fixtures (``tests/integration/api/conftest.py``), for tests that also start processes."""

from tests.integration.api.conftest import api, app, make_key, make_tenant

__all__ = ["api", "app", "make_key", "make_tenant"]
