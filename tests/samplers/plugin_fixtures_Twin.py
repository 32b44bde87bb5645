"""A plugin whose import path (``plugin_fixtures_Twin:A``) spells the same run folder name as
``plugin_fixtures:Twin_A``, for tests/samplers/test_plugins.py."""

from tests.samplers.plugin_fixtures import Twin_A


class A(Twin_A):
    """Another sampler than Twin_A, by its import path."""
