"""Scheduled jobs with real processes: the rendered scheduler entry point and job wrapper, driven by
a replay of swarm-cronjob's own rules (cronjob_replay.py, from crazy-max/swarm-cronjob v1.14.0).

- No overlap: a tick while the previous run's task is Running starts nothing, and is counted in
  keel_job_skipped_runs_total{service} (the reader of the scheduler's log writes it).
- Timeout: a run that outlives timeout_s gets SIGTERM, then SIGKILL after the grace period (a
  command that ignores SIGTERM), and is reported failed with reason timeout.
- A start nobody asked for (a deploy after `pulumi refresh`) runs nothing; the one-off run
  command's ticket does run it.
- Swarm stopping a task mid-run (SIGTERM to its init) reaches the command, reported as stopped.

Tasks run under tini (Docker's init), once with the system's shell and tools and once with
busybox's (an alpine image's userland). No Docker engine, no sleeps: every wait polls a condition
with a deadline.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from backup_helpers import busybox_userland

from render import jobs
from tests.tool_requirements import require_tool

HERE = Path(__file__).resolve().parent
SERVICE = "shop-job-report"
NAME = "report"
DEADLINE_S = 30


def wait_for(condition: Callable[[], object], what: str, timeout_s: float = DEADLINE_S) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def metrics(path: Path) -> dict[str, str]:
    """A Prometheus text file as {'name{labels}': value}."""
    if not path.exists():
        return {}
    found = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            found[key] = value
    return found


@dataclass
class World:
    root: Path
    textfile: Path
    tickets: Path
    tasks: Path
    job_log: Path
    gate: Path
    process: subprocess.Popen[str]
    lines: queue.Queue[str]

    def send(self, event: str) -> list[str]:
        """One event to the replay; the scheduler log lines it produced (through the reader)."""
        assert self.process.stdin is not None
        self.process.stdin.write(event + "\n")
        self.process.stdin.flush()
        seen: list[str] = []
        deadline = time.monotonic() + DEADLINE_S
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line == f"replay: {event} done":
                return seen
            seen.append(line)

    @property
    def report(self) -> dict[str, str]:
        return metrics(self.textfile / f"keel_job_{NAME}.prom")

    @property
    def skips(self) -> dict[str, str]:
        return metrics(self.textfile / jobs.SKIPS_FILE)

    def runs(self) -> list[str]:
        return self.job_log.read_text().splitlines() if self.job_log.exists() else []

    def task_log(self, number: int) -> str:
        return (self.tasks / f"task-{number}" / "log").read_text()

    def finished(self, run_number: int) -> bool:
        """The run_number-th run has ended and the wrapper has written its outcome."""
        report = self.report
        return (
            len([line for line in self.runs() if line.startswith("start")]) >= run_number
            and f'keel_job_run_deadline_timestamp_seconds{{job_name="{NAME}"}}' not in report
            and any(key.startswith("keel_job_last_run_duration_seconds") for key in report)
        )


def ticks_skipped(lines: list[str]) -> int:
    return sum('"message":"Skip running job"' in line for line in lines)


def ticks_started(lines: list[str]) -> int:
    return sum('"message":"Start job"' in line for line in lines)


@contextmanager
def world(
    tmp_path: Path,
    command: list[str],
    *,
    timeout_s: int = 60,
    grace_s: int = 2,
    ticket_wait_s: int = 5,
    userland: Path | None = None,
) -> Iterator[World]:
    textfile = tmp_path / "textfile"
    tickets = textfile / jobs.TICKETS_DIR
    tasks = tmp_path / "tasks"
    for directory in (textfile, tickets, tasks):
        directory.mkdir(parents=True)
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / jobs.JOB_SCRIPT).write_text(jobs.job_script())
    (scripts / jobs.SCHEDULER_SCRIPT).write_text(jobs.scheduler_script())
    replay = scripts / "swarm-cronjob"
    replay.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(HERE / 'cronjob_replay.py'))}\n")
    replay.chmod(0o755)
    path = os.environ["PATH"] if userland is None else f"{userland}:{os.environ['PATH']}"
    env = {
        "PATH": path,
        "TZ": "UTC",
        # What components/scheduled_job.py sets on the job's task, with the host paths of this test.
        "KEEL_JOB_NAME": NAME,
        "KEEL_JOB_SERVICE": SERVICE,
        "KEEL_JOB_TIMEOUT_S": str(timeout_s),
        "KEEL_JOB_GRACE_S": str(grace_s),
        "KEEL_TEXTFILE_DIR": str(textfile),
        "KEEL_TICKET_WAIT_S": str(ticket_wait_s),
        # The scheduler's side.
        "KEEL_SCHEDULER_BIN": str(replay),
        "KEEL_SCHEDULER_FIFO": str(tmp_path / "scheduler.fifo"),
        "REPLAY_TASK": json.dumps([require_tool("tini"), "-s", "--", "sh", str(scripts / jobs.JOB_SCRIPT), *command]),
        "REPLAY_TASKS_DIR": str(tasks),
    }
    process = subprocess.Popen(
        ["sh", str(scripts / jobs.SCHEDULER_SCRIPT)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    try:
        the_world = World(tmp_path, textfile, tickets, tasks, tmp_path / "job.log", tmp_path / "gate", process, lines)
        # The reader makes the counter exist from zero as the job is scheduled.
        wait_for(lambda: the_world.skips, "the skip counter of the scheduled job")
        yield the_world
        the_world.send("quit")
        process.stdin.close()  # type: ignore[union-attr]
        assert process.wait(timeout=DEADLINE_S) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait(timeout=DEADLINE_S)


def one_off_run(tmp_path: Path, task_state: str, *, ok: bool = True) -> list[str]:
    """The job's one-off run command with ``docker service ps`` answering ``task_state``; the
    ``docker service update`` calls it made."""
    bin_dir = tmp_path / "docker-bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "docker-updates.log"
    calls.unlink(missing_ok=True)
    docker = bin_dir / "docker"
    docker.write_text(
        f'#!/bin/sh\nif [ "$2" = update ]; then echo "$*" >> {shlex.quote(str(calls))}; exit 0; fi\n'
        f"echo {shlex.quote(task_state)}\n"
    )
    docker.chmod(0o755)
    command = jobs.run_command(service=SERVICE, tickets_dir=str(tmp_path / "textfile" / jobs.TICKETS_DIR))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=DEADLINE_S)
    assert (result.returncode == 0) == ok, result.stderr
    return calls.read_text().splitlines() if calls.exists() else []


def test_a_run_request_while_a_run_is_going_is_refused_and_issues_no_ticket(tmp_path: Path):
    tickets = tmp_path / "textfile" / jobs.TICKETS_DIR
    tickets.mkdir(parents=True)
    (tickets / SERVICE).write_text("4\n")
    # Forced, the update would stop the run in progress to start this one.
    for state in ("Running 3 minutes ago", "Starting 2 seconds ago", "Preparing 5 seconds ago"):
        assert one_off_run(tmp_path, state, ok=False) == [], state
    assert (tickets / SERVICE).read_text() == "4\n"
    assert one_off_run(tmp_path, "Complete 1 hour ago") == [f"service update --detach --force --replicas 1 {SERVICE}"]
    assert (tickets / SERVICE).read_text() == "5\n"


def gated(tmp_path: Path) -> list[str]:
    """A job that records its start, waits for the test to open its gate, and records its end."""
    log, gate = tmp_path / "job.log", tmp_path / "gate"
    script = (
        f'echo "start $$" >> {shlex.quote(str(log))}; '
        f"while [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.1; done; "
        f'echo "end $$" >> {shlex.quote(str(log))}'
    )
    return ["sh", "-c", script]


def test_the_scripts_pass_shellcheck():
    for text in (jobs.job_script(), jobs.scheduler_script()):
        result = subprocess.run(
            [require_tool("shellcheck"), "-s", "sh", "-"], input=text, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("userland", ["system", "busybox"])
def test_a_tick_during_a_run_is_skipped_and_counted_and_runs_never_overlap(tmp_path: Path, userland: str):
    tools = busybox_userland(tmp_path / "busybox") if userland == "busybox" else None
    with world(tmp_path, gated(tmp_path), userland=tools) as w:
        assert w.skips == {f'keel_job_skipped_runs_total{{service="{SERVICE}"}}': "0"}
        assert ticks_started(w.send("tick")) == 1
        wait_for(lambda: w.runs(), "the first run to start")
        # Still running: swarm-cronjob's skip-running leaves these two ticks alone, and counts them.
        assert ticks_skipped(w.send("tick")) == 1
        assert ticks_skipped(w.send("tick")) == 1
        wait_for(lambda: w.skips.get(f'keel_job_skipped_runs_total{{service="{SERVICE}"}}') == "2", "two skips")
        w.gate.touch()
        wait_for(lambda: w.finished(1), "the first run to end")
        w.send("idle")
        # Idle again: the next tick runs.
        assert ticks_started(w.send("tick")) == 1
        wait_for(lambda: w.finished(2), "the second run to end")
        assert (w.tickets / SERVICE).read_text().strip() == "2"
        report = w.report
    runs = [line.split()[0] for line in w.runs()]
    assert runs == ["start", "end", "start", "end"], "two runs, one after the other"
    assert report[f'keel_job_last_run_success{{job_name="{NAME}"}}'] == "1"
    assert report[f'keel_job_last_run_exit_code{{job_name="{NAME}"}}'] == "0"
    assert int(report[f'keel_job_last_success_timestamp_seconds{{job_name="{NAME}"}}']) >= int(
        report[f'keel_job_last_run_timestamp_seconds{{job_name="{NAME}"}}']
    )
    assert f'keel_job_last_failure_timestamp_seconds{{job_name="{NAME}"}}' not in report
    assert w.skips == {f'keel_job_skipped_runs_total{{service="{SERVICE}"}}': "2"}


def test_a_run_that_outlives_its_timeout_is_killed_and_reported(tmp_path: Path):
    # SIGTERM ignored (and exec: the command is the process the wrapper signals), so only the
    # SIGKILL after the grace period ends it.
    stubborn = ["sh", "-c", f'echo "start $$" >> {shlex.quote(str(tmp_path / "job.log"))}; trap "" TERM; exec sleep 60']
    with world(tmp_path, stubborn, timeout_s=2, grace_s=2) as w:
        began = time.monotonic()
        assert ticks_started(w.send("tick")) == 1
        wait_for(lambda: w.runs(), "the run to start")
        # Overrunning: the next tick is skipped, not started beside it.
        assert ticks_skipped(w.send("tick")) == 1
        wait_for(lambda: w.finished(1), "the run to be ended", timeout_s=DEADLINE_S)
        took = time.monotonic() - began
        report = w.report
        log = w.task_log(1)
    assert report[f'keel_job_last_run_success{{job_name="{NAME}",reason="timeout"}}'] == "0"
    assert report[f'keel_job_last_run_exit_code{{job_name="{NAME}"}}'] == "137"  # SIGKILL
    assert int(report[f'keel_job_last_run_duration_seconds{{job_name="{NAME}"}}']) >= 4  # timeout + grace
    assert f'keel_job_last_failure_timestamp_seconds{{job_name="{NAME}"}}' in report
    assert took < 20, f"the run was not stopped at its timeout: {took:.1f}s"
    assert "still running after 2s: SIGTERM, then SIGKILL after 2s" in log
    assert "stopped at its timeout of 2s (exit 137)" in log


def test_a_run_that_stops_on_sigterm_at_its_timeout_is_reported_as_timed_out(tmp_path: Path):
    with world(tmp_path, ["sleep", "60"], timeout_s=1, grace_s=10) as w:
        began = time.monotonic()
        w.send("tick")
        wait_for(lambda: w.finished(0) and w.report.get(f'keel_job_last_run_exit_code{{job_name="{NAME}"}}'), "end")
        took = time.monotonic() - began
        report = w.report
    assert report[f'keel_job_last_run_success{{job_name="{NAME}",reason="timeout"}}'] == "0"
    assert report[f'keel_job_last_run_exit_code{{job_name="{NAME}"}}'] == "143"  # SIGTERM, well before the grace
    assert took < 10


def test_a_start_nobody_asked_for_runs_nothing_and_a_run_request_does(tmp_path: Path):
    with world(tmp_path, gated(tmp_path), ticket_wait_s=1) as w:
        w.gate.touch()
        assert ticks_started(w.send("tick")) == 1
        wait_for(lambda: w.finished(1), "the scheduled run")
        before = w.report
        w.send("idle")
        # A deploy's update sends the replica a refresh recorded: swarm starts a task, the
        # scheduler logged nothing, so there is no new ticket.
        w.send("deploy-start")
        wait_for(lambda: "nothing run" in w.task_log(2), "the unasked-for start to give up")
        assert w.report == before and len(w.runs()) == 2
        # The one-off run command (render/jobs.py run_command), against a stand-in docker that
        # reports the job idle and records the update; the replay then starts the task it asks for.
        w.send("idle")
        updates = one_off_run(tmp_path, "Complete 1 minute ago")
        assert updates == [f"service update --detach --force --replicas 1 {SERVICE}"]
        w.send("deploy-start")
        wait_for(lambda: w.finished(2) and len(w.runs()) == 4, "the requested run")
    assert "started without a run ticket (ticket 1, already used)" in w.task_log(2)
    assert (w.tickets / SERVICE).read_text().strip() == "2"


def test_swarm_stopping_a_run_reaches_the_command_and_is_reported(tmp_path: Path):
    record = tmp_path / "job.log"
    polite = [
        "sh",
        "-c",
        f'echo "start $$" >> {shlex.quote(str(record))}; '
        f"trap 'echo \"term $$\" >> {shlex.quote(str(record))}; exit 0' TERM; "
        "sleep 60 & wait $!",
    ]
    with world(tmp_path, polite) as w:
        w.send("tick")
        wait_for(lambda: w.runs(), "the run to start")
        w.send("stop")
        wait_for(lambda: w.finished(1), "the stopped run's report")
        report = w.report
    assert [line.split()[0] for line in w.runs()] == ["start", "term"]
    assert report[f'keel_job_last_run_success{{job_name="{NAME}",reason="stopped"}}'] == "0"


def test_a_failing_command_is_reported_with_its_exit_code_and_keeps_the_last_success(tmp_path: Path):
    flag = tmp_path / "fail"
    command = ["sh", "-c", f'echo "start $$" >> {shlex.quote(str(tmp_path / "job.log"))}; [ ! -e {flag} ] || exit 3']
    with world(tmp_path, command) as w:
        w.send("tick")
        wait_for(lambda: w.finished(1), "the good run")
        success = w.report[f'keel_job_last_success_timestamp_seconds{{job_name="{NAME}"}}']
        flag.touch()
        w.send("idle")
        assert ticks_started(w.send("tick")) == 1
        wait_for(lambda: w.finished(2) and "reason" in "".join(w.report), "the failed run")
        report = w.report
    assert report[f'keel_job_last_run_success{{job_name="{NAME}",reason="failed"}}'] == "0"
    assert report[f'keel_job_last_run_exit_code{{job_name="{NAME}"}}'] == "3"
    assert report[f'keel_job_last_success_timestamp_seconds{{job_name="{NAME}"}}'] == success
    assert re.fullmatch(r"\d+", report[f'keel_job_last_failure_timestamp_seconds{{job_name="{NAME}"}}'])
