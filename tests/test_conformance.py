"""The one contract suite, run against every engine (see the ``engine`` fixture in conftest)."""

from wafs.testing import EngineContract


class TestEveryEngine(EngineContract):
    pass
