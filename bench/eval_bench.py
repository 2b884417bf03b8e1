"""Evaluation cost: the program against a replay of its own registrations as literals.

For 1, 10, 30 and 100 app services, the prod stack (hcloud host, Cloudflare DNS, PostgreSQL,
Redis, a volume, observability, backups) is run once under the mock runtime (tools/mockrun.py);
its registrations and the monitor's answers are recorded, and a second program registers exactly
those resources again as literals: same types, names, parents, providers, inputs (secrets as
secrets), dependencies and options, with none of keel's config parsing, validation, rendering or
SDK classes. The timed runs of both go through a monitor that returns the recorded answer for
each URN and invoke and does nothing else (bench/eval_child.py), so the monitor's own work (the
read-back models that make the answers, the recording the tests need) is not in either side to
flatten the ratio. Both run in this one process, warm (one untimed run of each first),
alternately: program, replay, program, replay... so shared load on the machine affects both
alike. Before each timed run what the bench holds is collected or frozen, so that a run starts
as in a fresh process. The ratio is program / replay, median of the pairs.

The program turns the garbage collector off for its run (components/collector.py); the replay
runs as a hand-written program does, collector on: that is the ratio the target is judged on.
A third side, the replay with the collector off too, shows the program's own work alone; a
fourth registers bare `pulumi.CustomResource`s, skipping the SDK classes' own work.

Then the whole process for the prod stack as it is: a fresh interpreter that imports the program
and runs it against the recorded answers (bench/eval_child.py: the Pulumi SDK and the program,
none of the tests' harness), wall and CPU time and peak memory, alternately with the same with
the collector left on and with an interpreter that only starts (`python -c pass`).

Leaves out: the Pulumi engine and the language host's gRPC (the mock monitor answers in process;
a real preview adds the engine's own time on both sides), provider plugins, and invokes (the
replay makes none; the program makes the registry digest look-ups and Cloudflare's IP ranges,
answered from the recording).

Target (issue 15): <= 1.3x at every size; whole process <= 2 s for the prod stack.
Run: `python -m bench eval` (about four minutes here).
"""

from __future__ import annotations

import gc
import importlib
import json
import pickle
import re
import resource
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

from bench import eval_child
from components import collector
from tools import mockrun

SIZES = (1, 10, 30, 100)
PAIRS = 5
PROCESS_PAIRS = 5
TARGET = 1.3
PROCESS_TARGET_S = 2.0
Timing = tuple[float, float]
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


class RecordingCalls(mockrun.ProgramMocks):
    """The tests' answers to invokes, each kept by token for the timed runs."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, dict[str, Any]] = {}

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]]]:
        answer, failures = super().call(args)
        self.calls[args.token] = answer
        return answer, failures


class AnswerRecorder(mockrun.RecordingMonitor):
    """The tests' monitor, keeping each response (and each invoke's answer) for AnsweringMonitor."""

    def __init__(self) -> None:
        self.recorded_calls = RecordingCalls()
        super().__init__(self.recorded_calls)
        self.answers: dict[str, Any] = {}

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (the gRPC method name)
        response = super().RegisterResource(request)
        self.answers[response.urn] = response
        return response


def declare(program: Callable[[], Awaitable[None]], monitor: pulumi_mocks.MockMonitor, *, paused: bool) -> None:
    """One run, the garbage collector as it was afterwards. The program turns it off for its own run
    (components/collector.py); ``paused`` turns it off for any other program (a replay) as well."""
    with collector.restored():
        if paused:
            gc.disable()
        eval_child.declare(program, monitor, "prod")


def timed(program: Callable[[], Awaitable[None]], recorder: AnswerRecorder, *, paused: bool = False) -> Timing:
    """Wall and CPU seconds (all threads: the SDK registers from a thread pool) of one run.

    Each run starts as a fresh process would, with only its imports behind it: what the bench
    holds (the recorded answers, earlier runs' leftovers) is collected or frozen first, so that a
    collection during a run walks that run's objects only."""
    monitor = eval_child.AnsweringMonitor(recorder.answers, recorder.recorded_calls.calls)
    gc.collect()
    gc.freeze()
    wall, cpu = time.perf_counter(), time.process_time()
    declare(program, monitor, paused=paused)
    return time.perf_counter() - wall, time.process_time() - cpu


def record(values: dict[str, str], secrets: list[str]) -> AnswerRecorder:
    recorder = AnswerRecorder()
    declare(eval_child.keel(values, secrets), recorder, paused=False)
    return recorder


# The sides of the in-process comparison: the program, then the replays. The target is judged
# against the typed replay as a hand-written program runs (collector on); the program's own choice
# to turn the collector off is part of the program. "typed, collector off" shows what is left when
# the replay makes the same choice: the program's own work alone.
SIDES = ("program", "typed", "typed, collector off", "bare")


def in_process(apps: int, work: Path) -> tuple[int, dict[str, list[Timing]]]:
    """Each side of SIDES, alternately: wall and CPU seconds of each run."""
    values, secrets = stack_values(apps, work)
    recorder = record(values, secrets)
    typed = replay(recorder.registered)
    sides = {
        "program": (eval_child.keel(values, secrets), False),
        "typed": (typed, False),
        "typed, collector off": (typed, True),
        "bare": (replay(recorder.registered, typed=False), False),
    }
    for side in (typed, sides["bare"][0]):
        check = AnswerRecorder()
        declare(side, check, paused=False)
        if sorted(r.urn for r in check.registered) != sorted(r.urn for r in recorder.registered):
            raise RuntimeError("the replay does not register what the program registered")
    for program, paused in sides.values():
        timed(program, recorder, paused=paused)  # warm
    runs: dict[str, list[Timing]] = {name: [] for name in SIDES}
    for _ in range(PAIRS):
        for name, (program, paused) in sides.items():
            runs[name].append(timed(program, recorder, paused=paused))
    return len(recorder.registered), runs


Process = tuple[float, float, float]  # wall s, CPU s, peak memory MiB


def spawn(argv: list[str]) -> Process:
    """Wall and CPU seconds and peak resident memory (MiB) of a child process."""
    before, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    peak = json.loads(done.stdout.splitlines()[-1])["peak_kib"] / 1024 if done.stdout.strip() else 0.0
    return time.perf_counter() - wall, cpu, peak


PROCESSES = ("program", "program, collector on", "`pass`")


def whole_process(work: Path) -> dict[str, list[Process]]:
    """The prod stack in a fresh interpreter (bench/eval_child.py); the same with the program's
    collector choice undone; an interpreter that only starts. Alternately."""
    values, secrets = mockrun.stack_values("prod")
    recorder = record(values, secrets)
    answers = work / "answers.pickle"
    with answers.open("wb") as handle:
        serialized = {urn: response.SerializeToString() for urn, response in recorder.answers.items()}
        pickle.dump(("prod", values, secrets, serialized, recorder.recorded_calls.calls), handle)
    child = [sys.executable, str(Path(eval_child.__file__)), str(answers)]
    argvs = dict(zip(PROCESSES, [child, [*child, "--collector-on"], [sys.executable, "-c", "pass"]], strict=True))
    spawn(child)  # .pyc files and compiled templates written, page cache warm
    runs: dict[str, list[Process]] = {name: [] for name in PROCESSES}
    for _ in range(PROCESS_PAIRS):
        for name, argv in argvs.items():
            runs[name].append(spawn(argv))
    return runs


def spread(values: list[float]) -> str:
    return f"{min(values):6.3f} {statistics.median(values):6.3f} {max(values):6.3f}"


def ratio(programs: list[tuple[float, float]], replays: list[tuple[float, float]], column: int) -> float:
    return statistics.median(p[column] / r[column] for p, r in zip(programs, replays, strict=True))


def main() -> None:
    print(f"in one process, warm, {PAIRS} alternating rounds; seconds min/median/max; ratios: median of the rounds")
    print("  typed: the replay through the provider SDKs' classes; bare: as pulumi.CustomResource;")
    print("  collector off: the replay with the garbage collector off, as the program runs (components/collector.py)")
    head = f"{'apps':>4} {'resources':>9}  {'program cpu':>20}  {'typed replay cpu':>20}"
    print(f"{head}  {'cpu':>5} {'wall':>5}  {'vs typed, collector off':>23}  {'vs bare':>7}")
    worst = 0.0
    (ROOT / "build").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="eval-bench-", dir=ROOT / "build") as tmp:
        for apps in SIZES:
            count, runs = in_process(apps, Path(tmp))
            programs, typed = runs["program"], runs["typed"]
            cpu, wall = ratio(programs, typed, 1), ratio(programs, typed, 0)
            off, bare = ratio(programs, runs["typed, collector off"], 1), ratio(programs, runs["bare"], 1)
            worst = max(worst, cpu, wall)
            cpus = spread([p[1] for p in programs]), spread([t[1] for t in typed])
            line = f"{apps:>4} {count:>9}  {cpus[0]}  {cpus[1]}  {cpu:5.2f} {wall:5.2f}  {off:23.2f}  {bare:7.2f}"
            print(line, flush=True)
        verdict = "met" if worst <= TARGET else "NOT met"
        print(f"worst ratio to the typed replay {worst:.2f}x: {verdict} (target <= {TARGET}x)")
        processes = whole_process(Path(tmp))
    print(f"whole process, prod stack, fresh interpreter, {PROCESS_PAIRS} runs of each, alternately;")
    print("seconds min/median/max, peak memory median:")
    for name, found in processes.items():
        peak = statistics.median(p[2] for p in found)
        memory = f"  {peak:5.0f} MiB" if peak else ""
        print(f"  {name:22} wall {spread([p[0] for p in found])}  cpu {spread([p[1] for p in found])}{memory}")
    median = statistics.median(p[0] for p in processes["program"])
    verdict = "met" if median <= PROCESS_TARGET_S else "NOT met"
    print(f"  median wall {median:.2f} s: {verdict} (target <= {PROCESS_TARGET_S} s)")
