"""Shared fixtures: one local Ray instance for every test of the search that needs one."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray (2 CPUs, no dashboard) started once for the session; the search reuses it."""
    from search.cluster import connect, disconnect

    started = connect(None, num_cpus=2)
    yield
    disconnect(started)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: starts processes or Ray clusters of its own (seconds to tens "
                            "of seconds); part of the default run")
