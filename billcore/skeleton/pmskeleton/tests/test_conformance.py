"""The module keeps billcore's contract: billcore's conformance suite, run with this module's adapter."""
from billcore.gateway import ConformanceSuite

from .adapter import SkeletonAdapter


class TestConformance(ConformanceSuite):
    """Every check of the suite, for this module."""

    adapter = SkeletonAdapter()
