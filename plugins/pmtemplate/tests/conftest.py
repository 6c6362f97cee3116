"""Fixtures for the module's tests: billcore's testing kit (``app``, ``client_user``, ``client_client`` ...).

At the root of a module's own distribution ``pytest_plugins = ["billcore.testing.pytest_plugin"]`` does
the same; pytest refuses ``pytest_plugins`` in a conftest below the root of the run, so import instead.
"""
from billcore.testing.pytest_plugin import *  # noqa: F401,F403
