from __future__ import annotations

from collections.abc import Generator

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed cluster test's report ends with the tail of every service's log."""
    report = yield
    arena = getattr(item, "funcargs", {}).get("arena")
    if report.failed and arena is not None:
        report.sections.append(("cluster logs (var/cluster/)", arena.log_tails()))
    return report
