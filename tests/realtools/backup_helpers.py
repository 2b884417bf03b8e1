"""Run the rendered backup scripts outside a container: local restic repository, local servers."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from render.backup import BackupSpec, env_suffix, render_backup_scripts
from tests.tool_requirements import require_tool
from tools import prereqs

SNAPSHOT_HOST = "keel-test"
# The scripts' own hooks for their tools (common.sh): given the paths tools/prereqs.py finds.
TOOL_VARIABLES = {
    "RESTIC": "restic",
    "PG_DUMP": "pg_dump",
    "PG_RESTORE": "pg_restore",
    "PSQL": "psql",
    "REDIS_CLI": "redis-cli",
    "SQLITE3": "sqlite3",
}


@dataclass
class BackupWorld:
    """Where the scripts, the repository, the secrets, the store volumes and the metrics live."""

    root: Path
    scripts: Path
    repository: Path
    secrets: Path
    stores: Path
    textfile: Path
    work: Path
    ports: dict[str, int]
    path_prefix: Path | None = None
    """A directory searched first for ``sh`` and every tool (busybox's applets: the job image's userland)."""
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        password_file = self.root / "restic-password"
        path = os.environ["PATH"] if self.path_prefix is None else f"{self.path_prefix}:{os.environ['PATH']}"
        env = {
            "PATH": path,
            "HOME": str(self.root),
            "RESTIC_REPOSITORY": str(self.repository),
            "RESTIC_PASSWORD_FILE": str(password_file),
            "RESTIC_CACHE_DIR": str(self.root / "restic-cache"),
            "KEEL_SNAPSHOT_HOST": SNAPSHOT_HOST,
            "KEEL_SECRETS_DIR": str(self.secrets),
            "KEEL_STORES_DIR": str(self.stores),
            "KEEL_TEXTFILE_DIR": str(self.textfile),
            "KEEL_WORK_DIR": str(self.work),
            "KEEL_SCRIPTS_DIR": str(self.scripts),
            "KEEL_RUN_STARTED_FILE": str(self.root / "run-started"),
        }
        for variable, tool in TOOL_VARIABLES.items():
            found = prereqs.find(tool)
            if found is not None:
                env[variable] = found
        for store, port in self.ports.items():
            env[f"KEEL_HOST_{env_suffix(store)}"] = "127.0.0.1"
            env[f"KEEL_PORT_{env_suffix(store)}"] = str(port)
        env.update(self.extra_env)
        return env

    def run(self, script: str, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(self.scripts / script), *args],
            env=self.env(), capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip

    def restic(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [require_tool("restic"), *args], env=self.env(), capture_output=True, text=True, timeout=120, check=False
        )

    def snapshots(self, *filters: str) -> list[dict[str, object]]:
        result = self.restic("snapshots", "--json", *filters)
        assert result.returncode == 0, result.stderr
        return list(json.loads(result.stdout) or [])

    def metrics(self, name: str = "keel_backup.prom") -> dict[str, float]:
        """The textfile's samples, "metric{labels}" -> value."""
        samples = {}
        for line in (self.textfile / name).read_text().splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                samples[key] = float(value)
        return samples


def backup_world(root: Path, spec: BackupSpec, *, ports: dict[str, int] | None = None) -> BackupWorld:
    """Render ``spec``'s scripts into ``root`` and prepare the directories they use."""
    require_tool("restic")
    world = BackupWorld(
        root=root, scripts=root / "scripts", repository=root / "repo", secrets=root / "secrets",
        stores=root / "stores", textfile=root / "textfile", work=root / "work", ports=dict(ports or {}),
    )  # fmt: skip
    for directory in (world.scripts, world.secrets, world.stores, world.work):
        directory.mkdir(parents=True, exist_ok=True)
    (root / "restic-password").write_text("test-repository-password")
    for name, text in render_backup_scripts(spec).items():
        (world.scripts / name).write_text(text)
    return world


def busybox_userland(directory: Path) -> Path:
    """``directory`` filled with busybox's applets (sh, sed, awk, date, mktemp, find, ...): what the
    job image's alpine base runs the scripts with. Put it first on PATH to run them the same way."""
    busybox = require_tool("busybox")
    directory.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([busybox, "--list"], capture_output=True, text=True, timeout=30, check=True)
    for applet in result.stdout.split():
        (directory / applet).symlink_to(busybox)
    return directory
