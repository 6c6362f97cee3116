"""pmrobokassa runs billcore's conformance suite (see billcore.testing.conformance)."""
from billcore.testing.conformance import ConformanceSuite

from .adapter import RobokassaAdapter


class TestConformance(ConformanceSuite):
    """Every check of the suite, for pmrobokassa."""

    adapter = RobokassaAdapter()
