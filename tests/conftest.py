"""Shared fixtures: one local Ray instance for every test of the search that needs one; the default
records folder of the whole session is a temporary one, never the user's."""

from __future__ import annotations

import os
import tempfile

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray (2 CPUs, no dashboard) started once for the session; the search reuses it. The workers'
    output comes to this driver, as in a search (`search.ray_output` files it)."""
    from search.cluster import connect, disconnect

    started = connect(None, num_cpus=2, worker_logs=True)
    yield
    disconnect(started)


def pytest_configure(config):
    # Before any Ray worker or subprocess starts, so that they inherit it: a test that exports without
    # naming a folder writes here, not into ~/.local/share/nos/rules.
    os.environ["NOS_RULES_DIR"] = tempfile.mkdtemp(prefix="nos-rules-")
    config.addinivalue_line("markers", "slow: starts processes or Ray clusters of its own (seconds to tens "
                            "of seconds); part of the default run")
