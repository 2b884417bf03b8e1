"""Scheduled jobs (swarm services that swarm-cronjob starts): their wrapper, the scheduler's log
reader, and what a deploy does before it changes one.

swarm-cronjob (crazy-max/swarm-cronjob v1.14.0, internal/worker/worker.go) starts a run by setting
the job service's replicas to one and bumping ForceUpdate, and leaves the replicas at one. Pulumi
ignores both fields (they are not drift), so an update of the job's spec (a new script, image or
secret) sends the replicas the state last recorded: zero ends a run in progress, and swarm's
stop-first update ends it as well. So before the spec changes, the deploy pauses the job's schedule
(the update puts the label back) and waits for it to be idle: ``idle_script`` runs on the host
whenever the job's spec fingerprint changes, and the service update waits for it.

One recorded replica is a hazard of its own: after a ``pulumi refresh`` the state holds the one the
scheduler left, the next update sends it, and swarm starts a task for it (the last run's task is
done, so the replicated orchestrator scales up: moby/swarmkit v2.1.2 restart.go marks a finished task
shut down). The wrapper (templates/jobs/job.sh) runs its command only for a run ticket it has not
used yet; the scheduler's log reader (templates/jobs/scheduler.sh) issues one per "Start job", the
one-off command (``run_command``) one more. Such a start runs nothing and says so.

Overlap: swarm-cronjob skips a tick while the service has a task in state Running (``skip-running``;
internal/docker/service.go counts ``Actives``, internal/worker/worker.go logs "Skip running job"); the
reader counts those skips (``keel_job_skipped_runs_total{service}``).
"""

from __future__ import annotations

import re
import shlex

from render import TEMPLATES
from render.backup import schedule_interval_seconds

TEXTFILE_TARGET = "/textfile"
"""Where a job and the scheduler see node-exporter's textfile directory."""
TICKETS_DIR = "job-tickets"
"""Under the textfile directory: one counter of requested runs per job service."""
SCRIPTS_DIR = "/etc/keel-job"
JOB_SCRIPT = "job.sh"
SCHEDULER_SCRIPT = "scheduler.sh"
TICKET_WAIT_S = 30
"""How long a started job waits for its ticket (the reader writes it as the scheduler logs the start,
before swarm has even created the task)."""
DEADLINE_SLACK_S = 60
LATE_SLACK_S = 300
"""A scheduled run may start this much after its tick (an image pull, a busy node) before it is late."""
SKIPS_FILE = "keel_job_skips.prom"

IDLE_WAIT_S = 900
"""How long a deploy waits for a job's run to finish before it fails (and says so)."""
POLL_S = 10
IN_PROGRESS = "New|Allocated|Pending|Assigned|Accepted|Preparing|Ready|Starting|Running"
"""Every state of a task swarm wants running that has not ended (docker/api/types/swarm/task.go)."""
_SERVICE = re.compile(r"[a-z][a-z0-9-]{0,62}")
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


def idle_script(
    *, service: str, fingerprint: str, scheduled: bool = True, timeout_s: int = IDLE_WAIT_S, poll_s: int = POLL_S
) -> str:
    """Runs on the host: pause the job's schedule (``scheduled``), then return once no task of
    ``service`` is running or about to run (or the service does not exist yet).

    The pause closes the gap between this wait and the update: a tick in between would start a run
    that the stop-first update then ends. The update puts ``swarm.cronjob.enable=true`` back (the
    service carries the fingerprint as a label, so every change of it is an update). A task counts
    as a run from the moment swarm wants it running (New, Pending, Preparing, Starting, Running):
    one still pulling its image or waiting for its health check is a run as much as a running one.
    A wait that times out fails the deploy and puts the schedule back first.
    """
    if not _SERVICE.fullmatch(service) or not _FINGERPRINT.fullmatch(fingerprint):
        raise ValueError(f"job service {service!r} / fingerprint {fingerprint!r}: not a service name and a sha256")
    q = shlex.quote
    pause = (
        "# No new run from here on; the service update that follows restores the schedule.\n"
        'docker service update --detach --quiet --label-add swarm.cronjob.enable=false "$service" '
        ">/dev/null 2>&1 || true\n"
        if scheduled
        else ""
    )
    resume = (
        "    # The update will not come: the job keeps its schedule, as before this deploy.\n"
        '    docker service update --detach --quiet --label-add swarm.cronjob.enable=true "$service" '
        ">/dev/null 2>&1 || true\n"
        if scheduled
        else ""
    )
    return f"""#!/bin/sh
# Before {service} changes (spec {fingerprint}): wait until no run of it is in progress.
set -u
service={q(service)}
# Every state of a task swarm wants running that has not ended (docker/api/types/swarm/task.go).
IN_PROGRESS={q(IN_PROGRESS)}
deadline=$(( $(date +%s) + {int(timeout_s)} ))
{pause}while :; do
  if ! states=$(docker service ps --filter desired-state=running \\
    --format '{{{{.CurrentState}}}}' "$service" 2>/dev/null); then
    echo "$service: not deployed yet"
    exit 0
  fi
  running=$(printf '%s\\n' "$states" | grep -c -E "^($IN_PROGRESS)" || true)
  if [ "$running" -eq 0 ]; then
    echo "$service: no run in progress"
    exit 0
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "$service: a run is still in progress after {int(timeout_s)}s; deploy again once it has finished" >&2
{resume}    exit 1
  fi
  sleep {int(poll_s)}
done
"""


def job_script() -> str:
    """The wrapper every scheduled job runs its command through (POSIX sh, env-driven)."""
    return (TEMPLATES / "jobs" / JOB_SCRIPT).read_text()


def scheduler_script() -> str:
    """The scheduler's entry point: swarm-cronjob with its log read for skips and run tickets."""
    return (TEMPLATES / "jobs" / SCHEDULER_SCRIPT).read_text()


def run_deadline_s(*, timeout_s: int, grace_s: int) -> int:
    """How long a job's task may live: the wait for its ticket, its timeout, the grace period after
    SIGTERM, and a minute for the report. Past it the health check fails and swarm ends the task
    (a backstop: the wrapper's own watchdog stops the command at its timeout)."""
    return TICKET_WAIT_S + timeout_s + grace_s + DEADLINE_SLACK_S


def late_after_s(*, schedule: str, timeout_s: int, grace_s: int) -> int:
    """How old a job's last success may be before the job is late: a success ends at most
    timeout + grace after its tick, and ticks are at most the schedule's longest gap apart."""
    return schedule_interval_seconds(schedule) + timeout_s + grace_s + LATE_SLACK_S


def run_command(*, service: str, tickets_dir: str) -> str:
    """The one-off run on demand, run on the host (as the deploy user): a ticket, then one task.

    Refused while a run is in progress, as swarm-cronjob's skip-running refuses a tick: the forced
    update would stop that run to start this one."""
    if not _SERVICE.fullmatch(service):
        raise ValueError(f"job service {service!r}: not a service name")
    q = shlex.quote
    ticket = q(f"{tickets_dir}/{service}")
    return (
        f"if docker service ps --filter desired-state=running --format '{{{{.CurrentState}}}}' {q(service)} "
        f"| grep -q -E {q(f'^({IN_PROGRESS})')}; then "
        f"echo {q(f'{service}: a run is in progress; not starting another')} >&2; false; "
        f"else t=$(cat {ticket} 2>/dev/null || echo 0); echo $((t + 1)) > {ticket}.new && mv {ticket}.new {ticket} && "
        f"docker service update --detach --force --replicas 1 {q(service)}; fi"
    )
