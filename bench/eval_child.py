"""The whole process `python -m bench eval` times: a fresh interpreter that imports the program and
runs it for one stack against answers recorded by the bench (bench/eval_bench.py).

Only what a `pulumi preview` process also loads is imported here (the Pulumi SDK, the program):
the tests' harness (tools/mockrun.py and its read-back models) made the answers beforehand and
is not in the timed process.
"""

from __future__ import annotations

import json
import pickle
import runpy
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "keel"


class RecordedCalls(pulumi_mocks.Mocks):
    """Invokes answered with what the bench recorded for their token; registrations never reach it."""

    def __init__(self, calls: dict[str, dict[str, Any]]) -> None:
        self.calls = calls

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]]]:
        return self.calls[args.token], []

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        raise AssertionError(f"{args.typ} {args.name}: AnsweringMonitor answers registrations itself")


class AnsweringMonitor(pulumi_mocks.MockMonitor):
    """Answers each registration with the response recorded for its URN; nothing else."""

    def __init__(self, answers: dict[str, Any], calls: dict[str, dict[str, Any]]) -> None:
        super().__init__(RecordedCalls(calls))
        self.answers = answers

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (the gRPC method name)
        urn = self.make_urn(request.parent, request.type, request.name)
        return self.answers.get(urn) or resource_pb2.RegisterResourceResponse(urn=urn)


def declare(program: Callable[[], Awaitable[None]], monitor: pulumi_mocks.MockMonitor, stack: str) -> None:
    pulumi_mocks.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    _sync_await(run_pulumi_func(program))


def keel(values: dict[str, str], secrets: list[str]) -> Callable[[], Awaitable[None]]:
    """The program, as `pulumi preview` runs it: __main__.py with the stack's config."""

    async def program() -> None:
        pulumi.runtime.set_all_config(values, secrets)
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

    return program


def main(answers_file: str, *, collector_on: bool = False) -> None:
    """One run; prints the process's peak memory. ``collector_on``: with the program's choice to
    turn the garbage collector off undone (components/collector.py), to measure what it saves."""
    with open(answers_file, "rb") as handle:
        stack, values, secrets, serialized, calls = pickle.load(handle)  # written by the bench, just now
    answers = {urn: resource_pb2.RegisterResourceResponse.FromString(data) for urn, data in serialized.items()}
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if collector_on:
        from components import collector

        collector.pause = lambda: None  # the run leaves the collector as it is
    declare(keel(values, secrets), AnsweringMonitor(answers, calls), stack)
    print(json.dumps({"peak_kib": peak_memory_kib()}))


def peak_memory_kib() -> int:
    """This process's peak resident memory since its exec (VmHWM; ru_maxrss would also count the
    copy of the parent it was forked from)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    main(sys.argv[1], collector_on="--collector-on" in sys.argv[2:])
