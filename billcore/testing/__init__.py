"""Testing kit for billcore payment modules: app fixtures and the conformance suite.

* :mod:`billcore.testing.fixtures`    plain helpers (``make_app``, ``add_paymethod``, users ...);
* :mod:`billcore.testing.pytest_plugin` the same as pytest fixtures (``app``, ``client_user`` ...);
* :mod:`billcore.testing.conformance` the contract every payment module must pass
  (:class:`~billcore.testing.conformance.ConformanceAdapter`, :class:`~billcore.testing.conformance.ConformanceSuite`).

See ``docs/plugins.md``, "Testing a module".
"""
