"""The program runs with the cyclic garbage collector off (components/collector.py), and a process
that runs it many times (the tests, the benchmarks) gets the collector back after each run."""

from __future__ import annotations

import gc
import runpy
from collections.abc import Iterator

import pulumi
import pytest

from tools import mockrun


@pytest.fixture
def collecting() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_the_program_runs_with_the_collector_off_and_the_harness_turns_it_back_on(collecting: None) -> None:
    values, secrets = mockrun.stack_values("dev")
    seen: dict[str, bool] = {}

    async def program() -> None:
        pulumi.runtime.set_all_config(values, secrets)
        seen["before"] = gc.isenabled()
        runpy.run_path(str(mockrun.ROOT / "__main__.py"), run_name="__main__")
        seen["after"] = gc.isenabled()

    resources, error = mockrun.declare(program, stack="dev")
    assert error is None
    assert resources
    assert seen == {"before": True, "after": False}
    assert gc.isenabled()


def test_a_refused_config_leaves_the_collector_as_it_was(collecting: None) -> None:
    run = mockrun.run("dev", overrides={"keel:host": {"provider": "nowhere"}})
    assert run.error is not None
    assert gc.isenabled()


def test_a_harness_that_had_the_collector_off_keeps_it_off() -> None:
    was = gc.isenabled()
    gc.disable()
    try:
        run = mockrun.run("dev")
        assert run.error is None
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()
