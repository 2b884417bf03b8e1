"""Evaluation cost: the program against a replay of its own registrations as literals.

For 1, 10, 30 and 100 app services, the prod stack (hcloud host, Cloudflare DNS, PostgreSQL,
Redis, a volume, observability, backups) is run once under the mock runtime (tools/mockrun.py);
its registrations and the monitor's answers are recorded, and a second program registers exactly
those resources again as literals: same types, names, parents, providers, inputs (secrets as
secrets), dependencies and options, with none of keel's config parsing, validation, rendering or
SDK classes. The timed runs of both go through a monitor that returns the recorded answer for
each URN and does nothing else, so the monitor's own work (the read-back models that make the
answers, the recording the tests need) is not in either side to flatten the ratio. Both run in
this one process, warm (one untimed run of each first), alternately: program, replay, program,
replay... so shared load on the machine affects both alike. The ratio is program / replay,
median of the pairs.

Then the whole process for the prod stack as it is: a fresh interpreter that imports the program
and runs it against the recorded answers, wall and CPU time, alternately with a fresh
interpreter that only starts (`python -c pass`).

Leaves out: the Pulumi engine and the language host's gRPC (the mock monitor answers in process;
a real preview adds the engine's own time on both sides), provider plugins, and invokes (the
replay makes none; the program makes one, Cloudflare's IP ranges, answered by the mock).

Target (issue 15): <= 1.3x at every size; whole process <= 2 s for the prod stack.
Run: `python -m bench eval` (about two minutes here).
"""

from __future__ import annotations

import importlib
import json
import pickle
import re
import resource
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from tools import mockrun

SIZES = (1, 10, 30, 100)
PAIRS = 5
PROCESS_PAIRS = 5
TARGET = 1.3
PROCESS_TARGET_S = 2.0
ROOT = mockrun.ROOT
STORES = ("db", "cache", "uploads")


def topology(apps: int) -> dict[str, Any]:
    """The shared topology (topology/webapp.yaml) with `apps` app services shaped like its `api`
    (stores by host and by secret, a mounted volume, metrics), each behind its own route; the
    first keeps the migration."""
    base = yaml.load((ROOT / "topology" / "webapp.yaml").read_text(), Loader=yaml.CSafeLoader)
    api = base["services"]["api"]
    services = {name: base["services"][name] for name in STORES}
    routes = []
    for index in range(1, apps + 1):
        name = f"app{index:03d}"
        body = {**api, "resources": {"memory_mb": 48, "memory_reservation_mb": 16, "cpus": 0.1}}
        if index > 1:
            body.pop("migration")
        services[name] = body
        routes.append({"path": "/" if index == 1 else f"/{name}/", "service": name, "cache": "api"})
    return {**base, "services": services, "proxy": {**base["proxy"], "routes": routes}}


def stack_values(apps: int, work: Path) -> tuple[dict[str, str], list[str]]:
    path = work / f"topology-{apps}.yaml"
    # Through JSON: no shared objects, so no YAML anchors (the loader refuses them).
    path.write_text(yaml.safe_dump(json.loads(json.dumps(topology(apps))), sort_keys=False))
    prod = mockrun.read_config_file(mockrun.stack_file("prod"))[0]
    db = {"db": yaml.load(prod["keel:services"], Loader=yaml.CSafeLoader)["db"]}
    # A server with room for 100 apps' memory limits, at every size, so that only the count varies.
    host = {**yaml.load(prod["keel:host"], Loader=yaml.CSafeLoader), "server_type": "cx53"}
    base = str(path.relative_to(ROOT))  # the loader reads topologies inside the project only
    return mockrun.stack_values("prod", overrides={"keel:base": base, "keel:services": db, "keel:host": host})


def literal(value: Any) -> Any:
    """An input as sent to the engine, back as a literal: secrets become secret Outputs."""
    if isinstance(value, dict):
        if value.get(mockrun.SECRET_SIG) == mockrun.SECRET_VALUE:
            return pulumi.Output.secret(literal(value.get("value")))
        return {key: literal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [literal(item) for item in value]
    return value


_HUMP = re.compile(r"(?<!^)(?=[A-Z])")


def sdk_class(token: str) -> type[pulumi.CustomResource]:
    """The provider SDK's class for a type token: docker:index/service:Service is
    pulumi_docker.Service, command:remote:Command is pulumi_command.remote.Command."""
    if token.startswith("pulumi:providers:"):
        return importlib.import_module(f"pulumi_{token.removeprefix('pulumi:providers:')}").Provider
    package, module, name = token.split(":")
    owner = f"pulumi_{package}" + ("" if module.startswith("index") else f".{module.split('/')[0]}")
    return getattr(importlib.import_module(owner), name)


def replay(registered: list[mockrun.Registered], *, typed: bool = True) -> Callable[[], Awaitable[None]]:
    """A program that registers `registered` again, in order, as literals: through the provider
    SDKs' classes (what a hand-written program would use), or, not `typed`, as bare
    CustomResources, which skip the SDK classes' own work (their output properties, type tables)."""

    async def program() -> None:
        made: dict[str, pulumi.Resource] = {}
        for r in registered:
            opts = pulumi.ResourceOptions(
                parent=made.get(r.parent),
                depends_on=[made[urn] for urn in r.depends_on if urn in made],
                provider=made.get(r.provider.rsplit("::", 1)[0]) if r.provider else None,  # type: ignore[arg-type]
                protect=r.protect,
                retain_on_delete=r.retain_on_delete,
                ignore_changes=r.ignore_changes or None,
                delete_before_replace=r.delete_before_replace,
                additional_secret_outputs=r.secret_outputs or None,
            )
            props = literal(r.raw_inputs)
            resource: pulumi.Resource
            if not r.custom:
                resource = pulumi.ComponentResource(r.type, r.name, None, opts)
            elif typed:
                kwargs = {_HUMP.sub("_", key).lower(): value for key, value in props.items()}
                resource = sdk_class(r.type)(r.name, opts=opts, **kwargs)
            elif r.type.startswith("pulumi:providers:"):
                resource = pulumi.ProviderResource(r.type.removeprefix("pulumi:providers:"), r.name, props, opts)
            else:
                resource = pulumi.CustomResource(r.type, r.name, props, opts)
            made[r.urn] = resource

    return program


class AnsweringMonitor(pulumi_mocks.MockMonitor):
    """Answers each registration with the response recorded for its URN; nothing else."""

    def __init__(self, answers: dict[str, Any]) -> None:
        super().__init__(mockrun.ProgramMocks())  # for the invoke (Cloudflare's IP ranges)
        self.answers = answers

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (the gRPC method name)
        urn = self.make_urn(request.parent, request.type, request.name)
        return self.answers.get(urn) or resource_pb2.RegisterResourceResponse(urn=urn)


class AnswerRecorder(mockrun.RecordingMonitor):
    """The tests' monitor, keeping each response for AnsweringMonitor."""

    def __init__(self) -> None:
        super().__init__(mockrun.ProgramMocks())
        self.answers: dict[str, Any] = {}

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (the gRPC method name)
        response = super().RegisterResource(request)
        self.answers[response.urn] = response
        return response


def declare(program: Callable[[], Awaitable[None]], monitor: pulumi_mocks.MockMonitor) -> None:
    pulumi_mocks.set_mocks(monitor.mocks, project=mockrun.PROJECT, stack="prod", preview=False, monitor=monitor)
    _sync_await(run_pulumi_func(program))


def keel(values: dict[str, str], secrets: list[str]) -> Callable[[], Awaitable[None]]:
    """The program, as `pulumi preview` runs it: __main__.py with the stack's config."""

    async def program() -> None:
        pulumi.runtime.set_all_config(values, secrets)
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

    return program


def timed(program: Callable[[], Awaitable[None]], answers: dict[str, Any]) -> tuple[float, float]:
    """Wall and CPU seconds (all threads: the SDK registers from a thread pool) of one run."""
    wall, cpu = time.perf_counter(), time.process_time()
    declare(program, AnsweringMonitor(answers))
    return time.perf_counter() - wall, time.process_time() - cpu


def record(values: dict[str, str], secrets: list[str]) -> AnswerRecorder:
    recorder = AnswerRecorder()
    declare(keel(values, secrets), recorder)
    return recorder


Timing = tuple[float, float]


def in_process(apps: int, work: Path) -> tuple[int, list[Timing], list[Timing], list[Timing]]:
    """Program, typed replay and bare replay, alternately: wall and CPU seconds of each run."""
    values, secrets = stack_values(apps, work)
    recorder = record(values, secrets)
    sides = [keel(values, secrets), replay(recorder.registered), replay(recorder.registered, typed=False)]
    for side in sides[1:]:
        check = AnswerRecorder()
        declare(side, check)
        if sorted(r.urn for r in check.registered) != sorted(r.urn for r in recorder.registered):
            raise RuntimeError("the replay does not register what the program registered")
    for side in sides:
        timed(side, recorder.answers)  # warm
    runs: list[list[Timing]] = [[], [], []]
    for _ in range(PAIRS):
        for side, found in zip(sides, runs, strict=True):
            found.append(timed(side, recorder.answers))
    return len(recorder.registered), *runs  # type: ignore[return-value]


def child(answers_file: str) -> None:
    """The whole process: start, import the program, run it for the prod stack against recorded answers."""
    with open(answers_file, "rb") as handle:
        values, secrets, serialized = pickle.load(handle)  # written by this bench, just now
    answers = {urn: resource_pb2.RegisterResourceResponse.FromString(data) for urn, data in serialized.items()}
    declare(keel(values, secrets), AnsweringMonitor(answers))


CHILD = "import sys; from bench.eval_bench import child; child(sys.argv[1])"


def spawn(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of a child process."""
    before, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return time.perf_counter() - wall, cpu


def whole_process(work: Path) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    values, secrets = mockrun.stack_values("prod")
    recorder = record(values, secrets)
    answers = work / "answers.pickle"
    with answers.open("wb") as handle:
        serialized = {urn: response.SerializeToString() for urn, response in recorder.answers.items()}
        pickle.dump((values, secrets, serialized), handle)
    argv = [sys.executable, "-c", CHILD, str(answers)]
    spawn(argv)  # .pyc files written, page cache warm
    programs, bare = [], []
    for _ in range(PROCESS_PAIRS):
        programs.append(spawn(argv))
        bare.append(spawn([sys.executable, "-c", "pass"]))
    return programs, bare


def spread(values: list[float]) -> str:
    return f"{min(values):6.3f} {statistics.median(values):6.3f} {max(values):6.3f}"


def ratio(programs: list[tuple[float, float]], replays: list[tuple[float, float]], column: int) -> float:
    return statistics.median(p[column] / r[column] for p, r in zip(programs, replays, strict=True))


def main() -> None:
    print(f"in one process, warm, {PAIRS} alternating rounds; seconds min/median/max; ratios: median of the rounds")
    print("  typed: the replay through the provider SDKs' classes; bare: as pulumi.CustomResource")
    head = f"{'apps':>4} {'resources':>9}  {'program cpu':>20}  {'typed replay cpu':>20}"
    print(f"{head}  {'cpu':>5} {'wall':>5}  {'vs bare cpu':>11}")
    worst = 0.0
    (ROOT / "build").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="eval-bench-", dir=ROOT / "build") as tmp:
        for apps in SIZES:
            count, programs, typed, bare = in_process(apps, Path(tmp))
            cpu, wall, vs_bare = ratio(programs, typed, 1), ratio(programs, typed, 0), ratio(programs, bare, 1)
            worst = max(worst, cpu, wall)
            cpus = spread([p[1] for p in programs]), spread([t[1] for t in typed])
            print(f"{apps:>4} {count:>9}  {cpus[0]}  {cpus[1]}  {cpu:5.2f} {wall:5.2f}  {vs_bare:11.2f}", flush=True)
        verdict = "met" if worst <= TARGET else "NOT met"
        print(f"worst ratio to the typed replay {worst:.2f}x: {verdict} (target <= {TARGET}x)")
        programs, bare_python = whole_process(Path(tmp))
    median = statistics.median(p[0] for p in programs)
    print(f"whole process, prod stack, fresh interpreter, {PROCESS_PAIRS} runs; seconds min/median/max:")
    print(f"  program  wall {spread([p[0] for p in programs])}  cpu {spread([p[1] for p in programs])}")
    print(f"  `pass`   wall {spread([b[0] for b in bare_python])}  cpu {spread([b[1] for b in bare_python])}")
    verdict = "met" if median <= PROCESS_TARGET_S else "NOT met"
    print(f"  median wall {median:.2f} s: {verdict} (target <= {PROCESS_TARGET_S} s)")
