"""The config of a volume store (services/<name> with kind: volume)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from config.base import StoreSpec


class VolumeSpec(StoreSpec):
    """A plain protected data volume (SQLite files, uploads, logs)."""

    kind: Literal["volume"]
    sqlite_files: list[str] = Field(default_factory=list)
    """SQLite databases in this volume (relative paths), copied consistently with VACUUM INTO."""
    backup: bool = True
    """Include the volume's files in backups (SQLite files are always backed up consistently)."""
