"""The host's systemd units and drop-ins, as cloud-init writes them, checked by systemd itself.

`systemd-analyze verify --root` loads each unit with its drop-ins and dependencies from a
throw-away root: the units cloud-init writes (taken from the rendered user data of a stack), the
mount unit systemd's own fstab generator makes from the fstab line cloud-init writes, and this
machine's systemd units (sysinit.target, timers.target, systemd-fsck@.service...). Any warning
counts as a failure. Docker is not installed here: docker.service is a stand-in with the real
unit's name, and the Docker binaries are stubs (the host gets them from the docker.io package).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from render import host_units
from render.cloud_init import DATA_DIR
from tests.tool_requirements import require_tool
from tools import mockrun

SYSTEMD_UNITS = Path("/lib/systemd/system")
FSTAB_GENERATOR = Path("/lib/systemd/system-generators/systemd-fstab-generator")
# What the host has that this machine has not: Docker's binaries, from the docker.io package.
FROM_DOCKER_IO = ("/usr/bin/docker", "/usr/bin/dockerd")
DOCKER_STAND_IN = """[Unit]
Description=Docker (a stand-in for the unit of Ubuntu's docker.io package)

[Service]
ExecStart=/usr/bin/dockerd
"""


def analyze() -> str:
    return require_tool("systemd-analyze")


@functools.cache
def user_data() -> dict:
    """prod's user data (read only: every test builds its own root from it)."""
    run = mockrun.run("prod")
    assert run.error is None, run.error
    return yaml.safe_load(str(run.one("hcloud:index/server:Server").inputs["userData"]))


def fstab_line(entry: list[str]) -> str:
    """The line cloud-init's mounts module writes for one `mounts` entry: its options gain
    comment=cloudconfig (cloudinit/config/cc_mounts.py), fields are tab-separated."""
    device, mount_point, fstype, options, dump, passno = entry
    return "\t".join([device, mount_point, fstype, f"{options},comment=cloudconfig", dump, passno]) + "\n"


def build_root(root: Path, document: dict, *, with_mount_unit: bool = True) -> list[str]:
    """A root with this machine's systemd units, the rendered files, the generated mount unit and
    the Docker stand-ins; returns the names of the units to verify."""
    analyze()  # the units and the fstab generator come with systemd-analyze's package
    shutil.copytree(SYSTEMD_UNITS, root / "lib/systemd/system", symlinks=True)
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    names = ["docker.service"]
    for item in document["write_files"]:
        path = item["path"]
        if not path.startswith(("/etc/systemd/", "/usr/local/sbin/keel-")):
            continue
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(item["content"])
        target.chmod(int(item["permissions"], 8))
        if path.startswith(f"{host_units.UNIT_DIR}/keel-"):
            names.append(Path(path).name)
    (root / "lib/systemd/system/docker.service").write_text(DOCKER_STAND_IN)
    for binary in FROM_DOCKER_IO:
        stub = root / binary.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    # Ubuntu's base system, as on this Debian machine.
    for binary in ("/usr/bin/apt-get", "/bin/sh", "/usr/sbin/iptables-restore"):
        assert Path(binary).exists(), binary
        (root / binary.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(binary, root / binary.lstrip("/"))
    if with_mount_unit:
        fstab = root / "fstab"
        fstab.write_text("".join(fstab_line(entry) for entry in document["mounts"]))
        generated = root / "generator"
        for sub in ("normal", "early", "late"):
            (generated / sub).mkdir(parents=True)
        env = {**os.environ, "SYSTEMD_FSTAB": str(fstab), "SYSTEMD_PROC_CMDLINE": ""}
        subprocess.run(
            [str(FSTAB_GENERATOR), *(str(generated / sub) for sub in ("normal", "early", "late"))],
            env=env,
            check=True,
            timeout=30,
        )
        for unit in (generated / "normal").glob("*.mount"):
            shutil.copy2(unit, units / unit.name)
    return names


def verify(root: Path, names: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [analyze(), "verify", "--man=no", f"--root={root}", *names],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_rendered_unit_and_drop_in_passes_systemd_analyze_verify(tmp_path: Path):
    document = user_data()
    names = build_root(tmp_path, document)
    assert sorted(names) == sorted(
        [
            "docker.service",
            *(f"{base}.{kind}" for base in ("keel-docker-prune", "keel-docker-upgrade", "keel-reboot-required",
                                             "keel-swarm-report")
              for kind in ("service", "timer")),
            "keel-metadata-block.service",
            "keel-forget-user-data.service",
            "keel-containers.slice",
        ]
    )  # fmt: skip
    result = verify(tmp_path, names)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_the_fstab_generator_makes_the_mount_unit_docker_requires(tmp_path: Path):
    names = build_root(tmp_path, user_data())
    unit = host_units.mount_unit(DATA_DIR)
    mount = (tmp_path / "etc/systemd/system" / unit).read_text()
    assert f"Where={DATA_DIR}" in mount
    dropin = (tmp_path / host_units.DOCKER_DROPIN.lstrip("/")).read_text()
    assert f"Requires={unit}" in dropin and f"After={unit}" in dropin
    assert verify(tmp_path, names).returncode == 0


def test_verify_fails_when_docker_would_wait_for_a_mount_nobody_declares(tmp_path: Path):
    # The checks above mean something: without the fstab entry the drop-in's Requires= dangles.
    names = build_root(tmp_path, user_data(), with_mount_unit=False)
    result = verify(tmp_path, ["docker.service"])
    assert result.returncode != 0
    assert f"{host_units.mount_unit(DATA_DIR)} not found" in result.stdout + result.stderr
    assert "docker.service" in names


def test_verify_reports_a_misspelt_directive(tmp_path: Path):
    names = build_root(tmp_path, user_data())
    timer = tmp_path / "etc/systemd/system/keel-docker-prune.timer"
    timer.write_text(timer.read_text().replace("OnCalendar=", "OnCalender="))
    result = verify(tmp_path, names)
    assert "Unknown key" in result.stdout + result.stderr


@pytest.mark.parametrize("calendar", [host_units.DOCKER_UPGRADE_WINDOW, host_units.PRUNE_SCHEDULE])
def test_the_stated_windows_are_calendar_events_systemd_understands(calendar: str):
    result = subprocess.run([analyze(), "calendar", calendar], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "Next elapse" in result.stdout


def test_the_reboot_required_script_writes_the_metric_and_passes_shellcheck(tmp_path: Path):
    script = host_units.reboot_required_script(str(tmp_path))
    flag = host_units.REBOOT_REQUIRED_FLAG
    path = tmp_path / "keel-reboot-required"
    path.write_text(script.replace(flag, str(tmp_path / "reboot-required")))
    check = subprocess.run([require_tool("shellcheck"), str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    subprocess.run(["sh", str(path)], check=True, timeout=30)
    assert "keel_reboot_required 0\n" in (tmp_path / "reboot-required.prom").read_text()
    (tmp_path / "reboot-required").write_text("*** System restart required ***\n")
    subprocess.run(["sh", str(path)], check=True, timeout=30)
    text = (tmp_path / "reboot-required.prom").read_text()
    assert "keel_reboot_required 1\n" in text
    assert not (tmp_path / "reboot-required.prom.tmp").exists()
    result = subprocess.run(
        [require_tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


FAKE_DOCKER = """#!/bin/sh
# `docker service ls/inspect` as a host with three services and one finished backup job answers.
case "$1 $2" in
  "service ls")
    case "$*" in
      *--quiet*) printf 'id-api\\nid-proxy\\nid-node\\nid-backup\\n' ;;
      *) printf 'shop-api 2/3\\nshop-proxy 1/1\\nshop-node-exporter 1/1\\nshop-backup 0/1 (1/1 completed)\\n' ;;
    esac ;;
  "service inspect")
    printf 'shop-api any\\nshop-proxy any\\nshop-node-exporter any\\nshop-backup none\\n' ;;
  *) echo "fake docker: $*" >&2; exit 1 ;;
esac
"""


def test_the_swarm_report_counts_long_running_services_only_and_promtool_reads_it(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    script = tmp_path / "keel-swarm-report"
    script.write_text(host_units.swarm_report_script(str(tmp_path)))
    check = subprocess.run([require_tool("shellcheck"), str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run(["sh", str(script)], check=True, timeout=30, env=env)
    text = (tmp_path / host_units.SWARM_REPORT_FILE).read_text()
    assert 'keel_swarm_service_tasks_running{service="shop-api"} 2\n' in text
    assert 'keel_swarm_service_tasks_desired{service="shop-api"} 3\n' in text
    assert 'keel_swarm_service_tasks_desired{service="shop-proxy"} 1\n' in text
    assert "shop-backup" not in text  # a finished run-to-completion job is not a missing task
    promtool = require_tool("promtool")
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_swarm_report_keeps_the_last_file_when_docker_does_not_answer(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    (bin_dir / "docker").chmod(0o755)
    previous = tmp_path / host_units.SWARM_REPORT_FILE
    previous.write_text('keel_swarm_service_tasks_running{service="shop-api"} 3\n')
    script = tmp_path / "keel-swarm-report"
    script.write_text(host_units.swarm_report_script(str(tmp_path)))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(["sh", str(script)], timeout=30, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    # Untouched: its growing age is what SwarmReportStale alerts on.
    assert previous.read_text() == 'keel_swarm_service_tasks_running{service="shop-api"} 3\n'
    assert not (tmp_path / f"{host_units.SWARM_REPORT_FILE}.tmp").exists()
