"""The config of a PostgreSQL store (services/<name> with kind: postgres)."""

from __future__ import annotations

import datetime
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from config.base import Image, Logging, Resources, SecretName, StoreSpec
from config.errors import KeyPathError, show

# A PostgreSQL database or role name: lower case, and `_` as well as `-` (thrifting_buddy, spoon_admin).
PostgresName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
# PostgreSQL creates these databases itself (initdb); the image's POSTGRES_DB must name another.
RESERVED_DATABASES = ("postgres", "template0", "template1")
Login = Literal["owner", "a", "b"]
"""Who an app logs in as: ``owner`` is the role ``user`` itself; ``a`` and ``b`` are ``<user>_a`` and
``<user>_b``, two login roles that act as ``user`` (stores/postgres/server.py, roles_sql)."""
SLOT_SUFFIX_CHARS = 2


def _owner_only() -> list[Login]:
    return ["owner"]


MAX_ROLE_CHARS = 63


class PostgresSpec(StoreSpec):
    """PostgreSQL (official image), tuned from its memory limit."""

    kind: Literal["postgres"]
    image: Image = "postgres:16.6-alpine"
    database: PostgresName = "app"
    """The application's database; not postgres, template0 or template1."""
    user: PostgresName = "app"
    """The application's role (the image's superuser); not pg_* (reserved by PostgreSQL)."""
    password_secret: SecretName | None = None
    """Secret holding the owner's password; unset means a generated one (pulumi-random)."""
    logins: list[Login] = Field(default_factory=_owner_only, min_length=1, max_length=2)
    """Who may log in for the apps. The first is the credential the apps receive; a second one logs in
    too (a rotation in progress). ``owner`` is the role ``user``; ``a`` and ``b`` are the login roles
    ``<user>_a`` and ``<user>_b``, which act as ``user`` (what they create, it owns), each with a generated
    password that exists only while it may log in. Rotating without a gap is three deploys:
    ``[a]`` -> ``[a, b]`` -> ``[b, a]`` -> ``[b]`` (docs/runbooks.md)."""
    resources: Resources = Field(default_factory=lambda: Resources(memory_mb=1024))
    max_connections: int = Field(default=100, ge=10, le=5000)
    logging: Logging = Field(default_factory=Logging)
    pitr: bool = True
    """Archive this store's WAL for point-in-time recovery when backup/pitr is on; false opts it out."""
    volume_generation: int = Field(default=0, ge=0, le=999)
    """Which data volume the store runs on: 0 is <prefix>-<name>-data, N is <prefix>-<name>-data-gN. A
    point-in-time restore fills generation N+1 beside the live volume; setting this swaps it in
    (docs/restore.md). Earlier volumes are never deleted by a deploy."""
    restore_to: str | None = None
    """A point-in-time restore in progress: ``latest`` or an instant (``2026-11-29T14:03:07Z``, UTC). A
    deploy fills data volume generation volume_generation+1 with the store as it was then and verifies it;
    the live store is untouched until volume_generation is raised (docs/restore.md)."""

    @field_validator("database")
    @classmethod
    def _database(cls, value: str) -> str:
        if value in RESERVED_DATABASES:
            raise ValueError(
                f"found {show(value)}, a database PostgreSQL creates for itself; "
                "expected the application's own name, such as app"
            )
        return value

    @field_validator("user")
    @classmethod
    def _role(cls, value: str) -> str:
        if value.startswith("pg_"):
            raise ValueError(f"found {show(value)}; role names starting with pg_ are reserved by PostgreSQL")
        return value

    @field_validator("logins")
    @classmethod
    def _logins(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(
                f"found [{', '.join(value)}], a login twice; expected one or two different ones, such as [a, b]"
            )
        return value

    @model_validator(mode="after")
    def _slots(self) -> PostgresSpec:
        if self.logins == ["owner"]:
            return self
        if len(self.user) + SLOT_SUFFIX_CHARS > MAX_ROLE_CHARS:
            raise KeyPathError(
                "user",
                f"found {show(self.user)} ({len(self.user)} characters); with logins a or b, expected at most "
                f"{MAX_ROLE_CHARS - SLOT_SUFFIX_CHARS}, so that <user>_a and <user>_b fit PostgreSQL's "
                f"{MAX_ROLE_CHARS}-byte names",
            )
        if self.password_secret is not None and "owner" not in self.logins:
            raise KeyPathError(
                "password_secret",
                f"found {show(self.password_secret)}, the owner's password, while logins [{', '.join(self.logins)}] "
                "leave the owner unable to log in (a and b have generated passwords); expected it removed",
            )
        return self

    def login_role(self, login: str) -> str:
        """The role name of a login: ``user`` for owner, ``<user>_a`` / ``<user>_b``."""
        return self.user if login == "owner" else f"{self.user}_{login}"

    @field_validator("restore_to")
    @classmethod
    def _restore_to(cls, value: str | None) -> str | None:
        if value is None or value == "latest":
            return value
        try:
            when = datetime.datetime.fromisoformat(value)
        except ValueError:
            when = None
        if when is None or when.utcoffset() != datetime.timedelta(0):
            raise ValueError(f"found {show(value)}; expected 'latest' or a UTC instant such as 2026-11-29T14:03:07Z")
        return value

    @property
    def restore_target(self) -> str | None:
        """restore_to as pgBackRest's --target reads it (``YYYY-MM-DD HH:MM:SS[.ffffff]+00``), or ``latest``."""
        if self.restore_to is None or self.restore_to == "latest":
            return self.restore_to
        when = datetime.datetime.fromisoformat(self.restore_to)
        return when.strftime("%Y-%m-%d %H:%M:%S" + (".%f" if when.microsecond else "") + "+00")
