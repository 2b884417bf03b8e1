"""systemd units and drop-ins the host gets from cloud-init: what keeps it up across reboots,
daemon upgrades and a slowly filling disk. Each is checked with `systemd-analyze verify`
(tests/realtools/test_systemd_units.py).

- docker.service waits for the data volume: the stores' volumes are bind mounts under the
  mount point, and a Docker that started without it would start every store on an empty
  directory of the root disk.
- Docker's own packages (docker.io, containerd, runc) are held out of unattended-upgrades and
  upgraded by a timer in a stated weekly window instead: upgrading them restarts the daemon,
  which restarts every container. Docker's live-restore, which would keep containers running
  through a daemon restart, cannot be used: the daemon refuses to enable swarm mode with it
  (moby v28.5.2, daemon/config/config_linux.go, IsSwarmCompatible: "--live-restore daemon
  configuration is incompatible with swarm mode").
- A daily prune removes stopped one-off containers and images no container uses. Swarm task
  containers are left to swarm (it keeps a few per slot, task-history-retention-limit), so every
  image a service ran recently keeps a container that uses it: the rollback image, and the backup
  job's image, built on the host and pullable from nowhere.
- A timer turns /var/run/reboot-required (written by Ubuntu's update-notifier-common when an
  update needs a reboot) into a metric for node-exporter's textfile collector.
- Another reports each long-running swarm service's running and desired task counts there: no
  exporter has them (cAdvisor sees containers, not services), and the alert on a service
  running fewer tasks than it should reads them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

UNIT_DIR = "/etc/systemd/system"
DOCKER_DROPIN = f"{UNIT_DIR}/docker.service.d/10-keel-data-volume.conf"
PRUNE = "keel-docker-prune"
REBOOT_REQUIRED = "keel-reboot-required"
DOCKER_UPGRADE = "keel-docker-upgrade"
REBOOT_REQUIRED_SCRIPT = "/usr/local/sbin/keel-reboot-required"
REBOOT_REQUIRED_FLAG = "/var/run/reboot-required"
REBOOT_REQUIRED_METRIC = "keel_reboot_required"
SWARM_REPORT = "keel-swarm-report"
SWARM_REPORT_SCRIPT = f"/usr/local/sbin/{SWARM_REPORT}"
SWARM_REPORT_FILE = "swarm-services.prom"
TASKS_RUNNING_METRIC = "keel_swarm_service_tasks_running"
TASKS_DESIRED_METRIC = "keel_swarm_service_tasks_desired"
DOCKER_PACKAGES = ("docker.io", "containerd", "runc")
"""Upgraded together in the window; any of them restarts containers when it is upgraded."""
DOCKER_UPGRADE_WINDOW = "Sun *-*-* 04:30:00 UTC"
"""When Docker's packages are upgraded (a daemon restart: about a minute without service)."""
PRUNE_SCHEDULE = "*-*-* 03:40:00 UTC"
CONTAINER_PRUNE_AGE = "24h"
IMAGE_PRUNE_AGE = "240h"
"""Images younger than this are kept even if unused: a freshly built backup image has no container
until its first scheduled run."""
SWARM_TASK_LABEL = "com.docker.swarm.task.id"
METADATA_BLOCK = "keel-metadata-block"
DOCKER_USER_RULES = "/etc/keel/docker-user.rules"
METADATA_ADDRESS = "169.254.169.254"
"""Hetzner's metadata service: it serves the user data (with the host's private SSH key) to any
address of the server that asks, a container's included."""
FORGET_USER_DATA = "keel-forget-user-data"
CLOUD_INIT_COPIES = (
    "/var/lib/cloud/instances/*/user-data.txt",
    "/var/lib/cloud/instances/*/user-data.txt.i",
    "/var/lib/cloud/instances/*/obj.pkl",
)
"""Where cloud-init keeps the user data after a boot: as fetched, as processed, and inside the
pickled datasource it reuses on the next boot (cloudinit/stages.py, _store_rawdata and
_write_to_cache)."""
CONTAINER_SLICE = "keel-containers.slice"
CONTAINER_TASKS_MAX = 8192
"""Processes and threads of every container together. Swarm services cannot set a PIDs limit
(kreuzwerker/terraform-provider-docker v4.5.0, resource_docker_service_structures.go: "TODO add
pids"), so the daemon puts every container under this slice (cgroup-parent): a fork bomb in one
exhausts the slice, never the host's sshd, dockerd or a deploy."""


@dataclass(frozen=True)
class HostUnitsSpec:
    data_dir: str | None
    """Mount point of the data volume; None: no volume (docker.service then has no drop-in)."""
    metrics_dir: str | None
    """node-exporter's textfile directory on the host; None: no reboot-required metric."""
    upgrade_window: str = DOCKER_UPGRADE_WINDOW
    prune_schedule: str = PRUNE_SCHEDULE
    swarm_report: bool = True
    """The swarm services' task counts (with ``metrics_dir``): on the host only, which answers the swarm
    API; a pool node reports its own reboot-required flag but no copy of the counts."""


def mount_unit(path: str) -> str:
    """The mount unit systemd derives from a mount point (systemd-escape --path --suffix=mount)."""
    parts = [part for part in path.split("/") if part]
    escaped = []
    for part in parts:
        text = "".join(c if c.isalnum() or c in "_." else f"\\x{ord(c):02x}" for c in part)
        escaped.append(("\\x2e" + text[1:]) if text.startswith(".") else text)
    return "-".join(escaped) + ".mount"


def docker_dropin(data_dir: str) -> str:
    unit = mount_unit(data_dir)
    return f"""# Rendered by keel (render/host_units.py).
# The stores' volumes are bind mounts under {data_dir}: without the data volume Docker stays
# down, rather than start the databases on an empty directory of the root disk.
[Unit]
Requires={unit}
After={unit}
"""


def prune_units(schedule: str = PRUNE_SCHEDULE) -> dict[str, str]:
    service = f"""# Rendered by keel (render/host_units.py).
[Unit]
Description=Remove stopped one-off containers and Docker images no container uses
Requires=docker.service
After=docker.service

[Service]
Type=oneshot
# Swarm task containers are swarm's to keep (a few per slot): they hold the images a rollback needs.
ExecStart=/usr/bin/docker container prune --force \
  --filter until={CONTAINER_PRUNE_AGE} --filter label!={SWARM_TASK_LABEL}
ExecStart=/usr/bin/docker image prune --all --force --filter until={IMAGE_PRUNE_AGE}
"""
    return {f"{PRUNE}.service": service, f"{PRUNE}.timer": _timer("Prune Docker daily", schedule, True)}


def reboot_required_units(metrics_dir: str) -> dict[str, str]:
    service = f"""# Rendered by keel (render/host_units.py).
[Unit]
Description=Report whether an installed update waits for a reboot (for node-exporter)
RequiresMountsFor={metrics_dir}

[Service]
Type=oneshot
ExecStart={REBOOT_REQUIRED_SCRIPT}
"""
    timer = """# Rendered by keel (render/host_units.py).
[Unit]
Description=Report a pending reboot every 15 minutes

[Timer]
OnBootSec=1min
OnUnitActiveSec=15min

[Install]
WantedBy=timers.target
"""
    return {f"{REBOOT_REQUIRED}.service": service, f"{REBOOT_REQUIRED}.timer": timer}


def reboot_required_script(metrics_dir: str) -> str:
    target = f"{metrics_dir}/reboot-required.prom"
    return f"""#!/bin/sh
# Rendered by keel (render/host_units.py): node-exporter's textfile collector reads {target};
# it is written whole and renamed, so a scrape never sees half a file.
set -eu
target={shlex.quote(target)}
value=0
if [ -f {REBOOT_REQUIRED_FLAG} ]; then
  value=1
fi
{{
  echo "# HELP {REBOOT_REQUIRED_METRIC} 1 when an installed update waits for a reboot ({REBOOT_REQUIRED_FLAG})."
  echo "# TYPE {REBOOT_REQUIRED_METRIC} gauge"
  echo "{REBOOT_REQUIRED_METRIC} $value"
}} > "$target.tmp"
mv -f "$target.tmp" "$target"
"""


def swarm_report_units(metrics_dir: str) -> dict[str, str]:
    service = f"""# Rendered by keel (render/host_units.py).
[Unit]
Description=Report running and desired tasks of every swarm service (for node-exporter)
After=docker.service
RequiresMountsFor={metrics_dir}

[Service]
Type=oneshot
ExecStart={SWARM_REPORT_SCRIPT}
"""
    timer = """# Rendered by keel (render/host_units.py).
[Unit]
Description=Report swarm services every minute

[Timer]
OnBootSec=1min
OnUnitActiveSec=1min
AccuracySec=5s

[Install]
WantedBy=timers.target
"""
    return {f"{SWARM_REPORT}.service": service, f"{SWARM_REPORT}.timer": timer}


def swarm_report_script(metrics_dir: str) -> str:
    target = f"{metrics_dir}/{SWARM_REPORT_FILE}"
    return f"""#!/bin/sh
# Rendered by keel (render/host_units.py): running and desired tasks of each long-running swarm
# service, for node-exporter's textfile collector ({target}), written whole and renamed.
# When Docker does not answer, the file is left as it is: its age is what the alert then reads.
set -eu
target={shlex.quote(target)}
# Run-to-completion jobs (restart condition none: the backup jobs) are left out: a finished run
# shows 0 running of 1 desired until its scheduler scales the service back to 0.
jobs=$(docker service ls --quiet | xargs -r docker service inspect \\
  --format '{{{{.Spec.Name}}}} {{{{.Spec.TaskTemplate.RestartPolicy.Condition}}}}' | awk '$2 == "none" {{ print $1 }}')
# REPLICAS is running/desired, for global services too ("0/1 (1/1 completed)" and
# "(max 1 per node)" suffixes are ignored).
services=$(docker service ls --format '{{{{.Name}}}} {{{{.Replicas}}}}')
report() {{
  printf '%s\\n' "$services" | while read -r name replicas _; do
    [ -n "$name" ] || continue
    if printf '%s\\n' "$jobs" | grep -qx "$name"; then continue; fi
    running=${{replicas%%/*}}
    desired=${{replicas#*/}}
    if [ "$1" = running ]; then value=$running; else value=$desired; fi
    echo "keel_swarm_service_tasks_$1{{service=\\"$name\\"}} $value"
  done
}}
{{
  echo "# HELP {TASKS_RUNNING_METRIC} Running tasks of a long-running swarm service."
  echo "# TYPE {TASKS_RUNNING_METRIC} gauge"
  report running
  echo "# HELP {TASKS_DESIRED_METRIC} Tasks a long-running swarm service should run."
  echo "# TYPE {TASKS_DESIRED_METRIC} gauge"
  report desired
}} > "$target.tmp"
mv -f "$target.tmp" "$target"
"""


def docker_upgrade_units(window: str) -> dict[str, str]:
    packages = " ".join(DOCKER_PACKAGES)
    service = f"""# Rendered by keel (render/host_units.py).
# Docker's packages are held out of unattended-upgrades (a daemon restart restarts every
# container) and upgraded here, in the window of {DOCKER_UPGRADE}.timer.
[Unit]
Description=Upgrade Docker's packages in their maintenance window
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
Environment=DEBIAN_FRONTEND=noninteractive
ExecStart=/usr/bin/apt-get update -q
ExecStart=/usr/bin/apt-get install -y -q --only-upgrade -o Dpkg::Options::=--force-confold {packages}
"""
    # Not Persistent: a window missed while the host was off waits for the next one.
    return {
        f"{DOCKER_UPGRADE}.service": service,
        f"{DOCKER_UPGRADE}.timer": _timer("Docker upgrade window", window, False),
    }


def _timer(description: str, calendar: str, persistent: bool) -> str:
    return f"""# Rendered by keel (render/host_units.py).
[Unit]
Description={description}

[Timer]
OnCalendar={calendar}
Persistent={"true" if persistent else "false"}

[Install]
WantedBy=timers.target
"""


def unattended_upgrades_blacklist() -> str:
    """apt.conf lines that keep Docker's packages out of unattended-upgrades (entries are regexes)."""
    entries = " ".join(f'"^{package.replace(".", chr(92) + ".")}$";' for package in DOCKER_PACKAGES)
    return f"Unattended-Upgrade::Package-Blacklist {{ {entries} }};"


def docker_user_rules() -> str:
    """iptables-restore input for DOCKER-USER, the chain Docker leaves to the administrator and jumps
    to first from FORWARD: traffic from containers to the metadata service is refused. The host's
    own processes (OUTPUT) still reach it: cloud-init reads it at boot. With --noflush, naming the
    chain flushes it (iptables-restore: an existing user-defined chain is flushed), so loading the
    file again gives the same chain."""
    return f"""# Rendered by keel (render/host_units.py); loaded by {METADATA_BLOCK}.service.
*filter
:DOCKER-USER - [0:0]
-A DOCKER-USER -d {METADATA_ADDRESS}/32 -j REJECT --reject-with icmp-admin-prohibited
-A DOCKER-USER -j RETURN
COMMIT
"""


def metadata_block_unit() -> str:
    return f"""# Rendered by keel (render/host_units.py).
[Unit]
Description=Containers cannot reach the metadata service (DOCKER-USER)
After=docker.service
# Again whenever Docker starts: it creates DOCKER-USER when it is missing.
PartOf=docker.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/iptables-restore --noflush {DOCKER_USER_RULES}

[Install]
WantedBy=docker.service
"""


def forget_user_data_unit() -> str:
    copies = " ".join(CLOUD_INIT_COPIES)
    return f"""# Rendered by keel (render/host_units.py).
[Unit]
Description=Remove cloud-init's copies of the user data, which hold the host's private key
# On every boot, after cloud-init has written them again.
After=cloud-final.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'rm -f {copies}'

[Install]
WantedBy=multi-user.target
"""


def container_slice() -> str:
    return f"""# Rendered by keel (render/host_units.py).
[Unit]
Description=Every Docker container (the daemon's cgroup-parent)
Before=slices.target

[Slice]
TasksMax={CONTAINER_TASKS_MAX}
"""


def host_files(spec: HostUnitsSpec) -> dict[str, tuple[str, str]]:
    """Every file cloud-init writes for these units: path -> (permissions, text)."""
    files: dict[str, tuple[str, str]] = {}
    if spec.data_dir is not None:
        files[DOCKER_DROPIN] = ("0644", docker_dropin(spec.data_dir))
    units = {**prune_units(spec.prune_schedule), **docker_upgrade_units(spec.upgrade_window)}
    units[f"{METADATA_BLOCK}.service"] = metadata_block_unit()
    units[f"{FORGET_USER_DATA}.service"] = forget_user_data_unit()
    units[CONTAINER_SLICE] = container_slice()
    files[DOCKER_USER_RULES] = ("0644", docker_user_rules())
    if spec.metrics_dir is not None:
        units.update(reboot_required_units(spec.metrics_dir))
        files[REBOOT_REQUIRED_SCRIPT] = ("0755", reboot_required_script(spec.metrics_dir))
        if spec.swarm_report:
            units.update(swarm_report_units(spec.metrics_dir))
            files[SWARM_REPORT_SCRIPT] = ("0755", swarm_report_script(spec.metrics_dir))
    for name, text in units.items():
        files[f"{UNIT_DIR}/{name}"] = ("0644", text)
    return files


def boot_units() -> list[str]:
    """The services cloud-init enables (after Docker)."""
    return [f"{METADATA_BLOCK}.service", f"{FORGET_USER_DATA}.service"]


def timers(spec: HostUnitsSpec) -> list[str]:
    """The timers cloud-init enables."""
    names = [f"{PRUNE}.timer", f"{DOCKER_UPGRADE}.timer"]
    if spec.metrics_dir is not None:
        names += [f"{REBOOT_REQUIRED}.timer", *([f"{SWARM_REPORT}.timer"] if spec.swarm_report else [])]
    return names
