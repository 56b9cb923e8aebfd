"""Suites that need something from the machine, and a pytest plugin that fails a run
where a suite it must run was skipped.

A test that cannot run here skips with :func:`skip_suite` (or a ``skipif`` whose reason
is :func:`suite_reason`), which tags the reason with its suite. ``make test`` prints every
skip reason (``-rs``). ``OMNIMIND_REQUIRE_SUITES=multihost,rabbitmq,prometheus`` (what
``.ci/run`` sets) turns each skip of a named suite into a failure, so that a CI image
without ``ip``, ``rabbitmq-server`` or ``promtool`` cannot pass with whole suites skipped.
Loaded by tests/conftest.py (``pytest_plugins``).
"""
from __future__ import annotations

import os
import re

import pytest

#: Each suite, and what it needs.
SUITES = {
    "multihost": "root and iproute2's `ip netns` (tests/multihost)",
    "rabbitmq": "a RabbitMQ on 127.0.0.1:5672 and rabbitmqctl (the broker tests)",
    "prometheus": "promtool and the prometheus server, Debian's prometheus package (tests/ops, the scrape test)",
}
REQUIRE_ENV = "OMNIMIND_REQUIRE_SUITES"
_TAG = re.compile(r"\[suite (\w+)\]")
_required = pytest.StashKey[frozenset]()


def suite_reason(suite: str, reason: str) -> str:
    """A skip reason tagged with its suite.

    >>> suite_reason("rabbitmq", "no RabbitMQ answers")
    '[suite rabbitmq] no RabbitMQ answers'
    """
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; one of {sorted(SUITES)}")
    return f"[suite {suite}] {reason}"


def skip_suite(suite: str, reason: str) -> None:
    """Skip the running test, a member of ``suite`` that cannot run here."""
    pytest.skip(suite_reason(suite, reason))


def required_suites(value: str) -> frozenset[str]:
    """The suites named in ``OMNIMIND_REQUIRE_SUITES`` (comma-separated).

    >>> sorted(required_suites(" rabbitmq, multihost,"))
    ['multihost', 'rabbitmq']
    """
    names = frozenset(name.strip() for name in value.split(",") if name.strip())
    unknown = names - set(SUITES)
    if unknown:
        raise pytest.UsageError(f"{REQUIRE_ENV}: unknown suite(s) {sorted(unknown)}; known: {sorted(SUITES)}")
    return names


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_required] = required_suites(os.environ.get(REQUIRE_ENV, ""))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    tag = _TAG.search(reason)
    if tag and tag.group(1) in item.config.stash.get(_required, frozenset()):
        report.outcome = "failed"
        report.longrepr = (f"{REQUIRE_ENV} names the {tag.group(1)} suite ({SUITES[tag.group(1)]}), "
                           f"but this test skipped: {reason}")
