"""The volume store kind: a protected data volume that apps mount (SQLite files, uploads). No
container and no exporter; its SQLite databases are copied with VACUUM INTO and its other files
backed up as a directory."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from stores.base import (
    Backup,
    BackupTarget,
    ContainerPlan,
    Credentials,
    Exporter,
    JobTools,
    KeyProblem,
    StoreKind,
    VolumeAccess,
)
from stores.volume.model import VolumeSpec

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Paths that reach the scripts unquoted in snapshot names are limited to these.
_SAFE_PATH = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*", re.ASCII)


@dataclass(frozen=True, kw_only=True)
class VolumeTarget(BackupTarget):
    """A data volume mounted at KEEL_STORES_DIR/<name>: its SQLite files and, optionally, its files."""

    kind = "volume"
    sqlite_files: tuple[str, ...] = ()
    files: bool = True

    def __post_init__(self) -> None:
        for path in self.sqlite_files:
            if not _SAFE_PATH.fullmatch(path) or ".." in path.split("/"):
                raise ValueError(
                    f"store {self.name}: sqlite file {path!r}: expected a relative path of letters, "
                    "digits, dots, dashes and underscores"
                )

    def volume_access(self) -> VolumeAccess:
        # Writable with SQLite files: reading a WAL database creates its -shm.
        return "read-write" if self.sqlite_files else "read-only"


def sqlite_snapshot_name(store: str, path: str) -> str:
    """The file of a SQLite database's snapshot (common.sh's keel_sqlite_name)."""
    return f"/{store}+{path.replace('/', '+')}"


class VolumeKind(StoreKind[VolumeSpec]):
    name = "volume"
    spec_type = VolumeSpec
    summary = "a protected volume apps mount (SQLite files, uploads)"

    def credentials(self, spec: VolumeSpec) -> Credentials:
        return None

    def clients(self, spec: VolumeSpec) -> dict[str, str]:
        return {}

    def mountable(self) -> bool:
        return True

    def images(self, spec: VolumeSpec) -> dict[str, str]:
        return {}

    def problems(self, spec: VolumeSpec) -> list[KeyProblem]:
        return []

    def data_volume(self, spec: VolumeSpec) -> bool:
        return True

    def container(self, name: str, spec: VolumeSpec) -> ContainerPlan | None:
        return None

    def exporter(self) -> Exporter[VolumeSpec] | None:
        return None

    def backup(self) -> Backup[VolumeSpec]:
        return Backup(
            target=_target,
            templates=TEMPLATES,
            functions="backup/backup-functions.sh.j2",
            calls="backup/backup-calls.sh.j2",
            drill_functions="backup/drill-functions.sh.j2",
            drill_calls="backup/drill-calls.sh.j2",
            common="backup/common.sh.j2",
            restore=("restore-sqlite.sh", "restore-files.sh"),
            tool_defaults={"SQLITE3": "sqlite3"},
            tools=job_tools,
        )


def _target(name: str, spec: VolumeSpec, host: str) -> VolumeTarget | None:
    if not (spec.backup or spec.sqlite_files):
        return None
    return VolumeTarget(name=name, sqlite_files=tuple(spec.sqlite_files), files=spec.backup)


def job_tools(specs: list[VolumeSpec]) -> JobTools:
    """sqlite3, for the stacks whose volumes hold SQLite databases."""
    if not any(spec.sqlite_files for spec in specs):
        return JobTools()
    return JobTools(apk=("sqlite",), apt=("sqlite3",), checks=("sqlite3 --version",))
