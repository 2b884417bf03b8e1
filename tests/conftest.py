"""Tool requirements for every test: the `requires_tool` marker and the run's closing line.

A test that needs a tool from tools/prereqs.py asks tests/tool_requirements.py for it (or carries
the marker); without the tool it is skipped (failed under CI=true), and the run ends with one
line naming each missing tool, the tests it skipped, and the packages that bring them.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.tool_requirements import require_tool, skipped_by_tool, summary_line


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires_tool(*names): the test runs these tools (tools/prereqs.py); skipped without them"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("requires_tool"):
        for name in marker.args:
            require_tool(name)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Generator[None, None, None]:
    # Outermost wrapper: the line comes after pytest's short summary, just before the totals.
    yield
    skipped = skipped_by_tool(terminalreporter.stats.get("skipped", []))
    if skipped:
        terminalreporter.write_line(summary_line(skipped), yellow=True, bold=True)
