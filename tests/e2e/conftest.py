"""End-to-end tests run only when asked for (`make e2e`, i.e. `pytest -m e2e`).

A default `pytest` run collects them but skips them, even on a machine that has the Pulumi CLI
and Docker: they deploy real containers and take minutes.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "e2e" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="end-to-end test: run with `make e2e` or `make e2e-nodes` (pytest -m e2e tests/e2e)")
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)
