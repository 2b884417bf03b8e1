"""swarm-cronjob v1.14.0 and swarm, replayed with real processes for one job service.

Started by the real scheduler entry point (render/templates/jobs/scheduler.sh, as its
KEEL_SCHEDULER_BIN), so its log goes through the real reader. Each line on standard input is one
event, and the replay answers ``replay: <event> done`` when it has handled it:

- ``tick``: the job's cron entry fires: crazy-max/swarm-cronjob v1.14.0 internal/worker/worker.go
  ``Run``. With skip-running set and ``Actives > 0`` it logs ``Skip running job`` (warn) and
  returns; otherwise it logs ``Start job`` (info) and updates the service (replicas 1, ForceUpdate),
  on which swarm starts a task. ``Actives`` is the number of the service's tasks in state Running
  (internal/docker/service.go ``ServiceList``): here, whether the task's process still runs.
- ``deploy-start``: swarm starts a task that nobody asked the scheduler for (an update that sends
  the replicas a ``pulumi refresh`` recorded): no log line from swarm-cronjob.
- ``stop``: swarm stops the running task (SIGTERM to the container's init).
- ``idle``: waits for the task's process to end. The wrapper reports a run's outcome just before
  it exits, so a test that ticks again right after the report would find the task still Running
  and the tick skipped, as swarm-cronjob would; a test that wants the next tick to start waits here.
- ``quit``: ends the replay.

A task is ``sh <job.sh> <command...>`` under ``tini`` (Docker's init, ``init: true``), with the
environment the ScheduledJob component sets. The JSON lines are zerolog's (internal/logging/logger.go
with LOG_JSON=true: level, then the event's fields, the timestamp and the message). Not replayed:
the seconds before a new task's first health probe, during which swarm reports it Starting, not
Running (the component keeps them short: components/scheduled_job.py JOB_HEALTH_INTERVAL_S).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime


def log(level: str, service: str, message: str, **fields: object) -> None:
    event = {"level": level, "service": service, **fields, "time": datetime.now(UTC).isoformat(), "message": message}
    print(json.dumps(event, separators=(",", ":")), flush=True)


def main() -> None:
    service = os.environ["KEEL_JOB_SERVICE"]
    schedule = os.environ.get("REPLAY_SCHEDULE", "* * * * *")
    command = json.loads(os.environ["REPLAY_TASK"])
    tasks_dir = os.environ["REPLAY_TASKS_DIR"]
    log("info", "", "Starting swarm-cronjob v1.14.0-replay")
    log("info", service, f"Add cronjob with schedule {schedule}")
    task: subprocess.Popen[bytes] | None = None
    started = 0
    for line in sys.stdin:
        event = line.strip()
        if event == "quit":
            print("replay: quit done", flush=True)
            break
        running = task is not None and task.poll() is None
        if event == "tick":
            actives = 1 if running else 0
            if actives > 0:
                log("warn", service, "Skip running job", tasks_active=actives)
            else:
                log("info", service, "Start job", tasks_active=actives, status="completed")
                task, started = _start(command, tasks_dir, started)
        elif event == "deploy-start" and not running:
            task, started = _start(command, tasks_dir, started)
        elif event == "idle" and task is not None:
            task.wait(timeout=60)
        elif event == "stop" and running:
            assert task is not None
            task.send_signal(signal.SIGTERM)
        print(f"replay: {event} done", flush=True)
    if task is not None and task.poll() is None:
        task.wait(timeout=60)


def _start(command: list[str], tasks_dir: str, started: int) -> tuple[subprocess.Popen[bytes], int]:
    """One task: a fresh /tmp (its tmpfs), its output in a file of its own, like a container's log."""
    started += 1
    scratch = os.path.join(tasks_dir, f"task-{started}")
    os.makedirs(scratch)
    env = {**os.environ, "KEEL_RUN_DIR": scratch}
    with open(os.path.join(scratch, "log"), "wb") as out:
        task = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return task, started


if __name__ == "__main__":
    main()
