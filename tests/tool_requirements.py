"""A test that needs a tool asks for it here; a missing tool skips the test, naming the tool.

    from tests.tool_requirements import require_tool
    restic = require_tool("restic")                      # its path, or the test is skipped

    pytestmark = pytest.mark.requires_tool("restic")     # the same, checked before the test runs

The tools are those of tools/prereqs.py TOOLS (a name not listed there is an error: add the line).
With CI=true a missing tool fails the test instead: CI must have every tool. tests/conftest.py
counts the skips and ends the run with one line naming each missing tool.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import NoReturn

import pytest

from tools import prereqs

SKIP_PREFIX = "missing: "
"""Every skip for a missing tool starts with this, then the tool's name (the summary parses it)."""
_SKIPPED_FOR = re.compile(re.escape(SKIP_PREFIX) + r"(\S+)")
ROOT_REQUIREMENT = "root"
"""Not a tool: a test that must run as root is skipped (or failed) the same way."""


def _unmet(name: str, why: str) -> NoReturn:
    message = f"{SKIP_PREFIX}{name} ({why})"
    if prereqs.in_ci():
        pytest.fail(f"{message}; CI=true: a missing tool is a failure, not a skip", pytrace=False)
    pytest.skip(message)


def require_tool(name: str) -> str:
    """The tool's path; skips the test (fails it under CI=true) when the tool is missing."""
    found = prereqs.find(name)
    if found is None:
        tool = prereqs.BY_NAME[name]
        _unmet(name, f"{tool.needed_by}; {tool.install_hint()}")
    return found


def require_root(why: str) -> None:
    """Skips the test (fails it under CI=true) for a user who is not root; ``why`` says what needs root."""
    if os.geteuid() != 0:
        _unmet(ROOT_REQUIREMENT, f"{why}; run make test as root, as CI does")


def skipped_by_tool(reports: Iterable[pytest.TestReport]) -> dict[str, list[str]]:
    """Tool name -> the ids of the tests skipped for want of it, read from the skip reasons."""
    skipped: dict[str, list[str]] = defaultdict(list)
    for report in reports:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        match = _SKIPPED_FOR.search(reason)
        if match:
            skipped[match.group(1)].append(report.nodeid)
    return dict(skipped)


def summary_line(skipped: dict[str, list[str]]) -> str:
    """One line: each missing tool, how many tests it skipped and in which files, and the fix."""
    parts = []
    for name, tests in sorted(skipped.items()):
        files = sorted({test.split("::", 1)[0] for test in tests})
        parts.append(f"{name}: {len(tests)} test{'' if len(tests) == 1 else 's'} in {', '.join(files)}")
    hint = prereqs.fix_hint(prereqs.BY_NAME[name] for name in skipped if name in prereqs.BY_NAME)
    fix = f" -- to run them: {hint} (make test does it as root)" if hint else ""
    return f"skipped for missing tools: {'; '.join(parts)}{fix}"
