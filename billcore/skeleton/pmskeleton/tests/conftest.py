"""billcore's test fixtures (``app``, ``client_user`` ...) for the module's tests, on SQLite and, with
``BILLCORE_TEST_DATABASE_URL``, PostgreSQL."""
from billcore.testing.pytest_plugin import *  # noqa: F401,F403
