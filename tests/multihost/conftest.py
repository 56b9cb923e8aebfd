"""Fixtures of the multi-host suite: a farm across network namespaces (root only)."""
from __future__ import annotations

import pytest

from tests.multihost.netns import unavailable
from tests.suites import skip_suite


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/multihost/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.multihost)


@pytest.fixture
def network():
    """An empty :class:`~tests.multihost.netns.Network`; removed afterwards, also on failure."""
    reason = unavailable()
    if reason:
        skip_suite("multihost", reason)
    from tests.multihost.netns import Network

    net = Network()
    try:
        yield net
    finally:
        net.close()
        assert not net.leftovers(), net.leftovers()


@pytest.fixture
def farm(tmp_path):
    """A :class:`~tests.multihost.farm.Farm`, not started; stopped and removed afterwards."""
    reason = unavailable()
    if reason:
        skip_suite("multihost", reason)
    from tests.multihost.farm import Farm

    built = Farm(tmp_path)
    try:
        yield built
    finally:
        built.close()
        assert not built.net.leftovers(), built.net.leftovers()
