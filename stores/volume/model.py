"""The config of a volume store (services/<name> with kind: volume)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from config import grammar
from config.base import StoreSpec
from config.errors import KeyPathError, show


class VolumeSpec(StoreSpec):
    """A plain protected data volume (SQLite files, uploads, logs)."""

    kind: Literal["volume"]
    sqlite_files: list[str] = Field(default_factory=list, max_length=50)
    """SQLite databases in this volume (paths relative to it), copied consistently with VACUUM INTO."""
    backup: bool = True
    """Include the volume's files in backups (SQLite files are always backed up consistently)."""

    @field_validator("sqlite_files")
    @classmethod
    def _inside_the_volume(cls, files: list[str]) -> list[str]:
        for index, path in enumerate(files):
            problem = grammar.relative_file_problem(path)
            if problem is not None:
                raise KeyPathError(index, problem)
            if path in files[:index]:
                raise KeyPathError(index, f"{show(path)} is listed twice; expected each file once")
        return files
