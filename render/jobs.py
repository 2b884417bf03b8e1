"""Scheduled jobs (swarm services that swarm-cronjob starts): what a deploy does before it changes one.

swarm-cronjob (crazy-max/swarm-cronjob v1.14.0, internal/worker/worker.go) starts a run by setting
the job service's replicas to one and bumping ForceUpdate, and leaves the replicas at one. Pulumi
ignores both fields (they are not drift), so an update of the job's spec (a new script, image or
secret) sends the replicas the state last recorded: zero ends a run in progress, and swarm's
stop-first update ends it as well. So before the spec changes, the deploy waits for the job to be
idle: ``idle_script`` runs on the host whenever the job's spec fingerprint changes, and the
service update waits for it.
"""

from __future__ import annotations

import re
import shlex

IDLE_WAIT_S = 900
"""How long a deploy waits for a job's run to finish before it fails (and says so)."""
POLL_S = 10
_SERVICE = re.compile(r"[a-z][a-z0-9-]{0,62}")
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


def idle_script(*, service: str, fingerprint: str, timeout_s: int = IDLE_WAIT_S, poll_s: int = POLL_S) -> str:
    """Runs on the host: return once no task of ``service`` is running (or it does not exist yet)."""
    if not _SERVICE.fullmatch(service) or not _FINGERPRINT.fullmatch(fingerprint):
        raise ValueError(f"job service {service!r} / fingerprint {fingerprint!r}: not a service name and a sha256")
    q = shlex.quote
    return f"""#!/bin/sh
# Before {service} changes (spec {fingerprint}): wait until no run of it is in progress.
set -u
service={q(service)}
deadline=$(( $(date +%s) + {int(timeout_s)} ))
while :; do
  if ! states=$(docker service ps --filter desired-state=running \
    --format '{{{{.CurrentState}}}}' "$service" 2>/dev/null); then
    echo "$service: not deployed yet"
    exit 0
  fi
  running=$(printf '%s\\n' "$states" | grep -c '^Running' || true)
  if [ "$running" -eq 0 ]; then
    echo "$service: no run in progress"
    exit 0
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "$service: a run is still in progress after {int(timeout_s)}s; deploy again once it has finished" >&2
    exit 1
  fi
  sleep {int(poll_s)}
done
"""
