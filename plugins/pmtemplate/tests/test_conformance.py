"""pmtemplate runs billcore's conformance suite (see billcore.testing.conformance)."""
from billcore.testing.conformance import ConformanceSuite

from .adapter import TemplateAdapter


class TestConformance(ConformanceSuite):
    """Every check of the suite, for pmtemplate."""

    adapter = TemplateAdapter()
