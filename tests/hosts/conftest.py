"""On a failure, the end of every log of both hosts: the module's fleet has no tmp_path."""

from __future__ import annotations

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    hosts = getattr(item, "funcargs", {}).get("hosts")
    if report.failed and hosts is not None:
        for child in hosts.children():
            report.sections.append((f"log {child.log_path} (end)", child.log()[-2500:]))
    return report
