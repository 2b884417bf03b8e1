"""The config of a MariaDB store (services/<name> with kind: mariadb)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from config.base import Image, Logging, Resources, SecretName, StoreSpec
from config.errors import show

# A database or user name: lower case, `_` and `-`; short enough that the drill's scratch database
# (<database>_keel_drill) stays within MariaDB's 64 characters.
MariadbName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,52}$")]
RESERVED_USERS = ("root", "mysql", "healthcheck", "keel_exporter", "keel_backup")
"""Users the official image creates itself (its entrypoint refuses MARIADB_USER=root), and the
exporter's and the backup job's (stores/mariadb/server.py, CLIENT_USERS)."""


class MariadbSpec(StoreSpec):
    """MariaDB (official image), tuned from its memory limit."""

    kind: Literal["mariadb"]
    image: Image = "mariadb:11.4.12"
    database: MariadbName = "app"
    user: MariadbName = "app"
    """The app's user, with every privilege on the database (the exporter and the backup job have
    users of their own)."""
    password_secret: SecretName | None = None
    """Secret holding the user's password; unset means a generated one (pulumi-random). The root
    password is always generated, and root may sign in only inside the store's container."""
    resources: Resources = Field(default_factory=lambda: Resources(memory_mb=1024))
    max_connections: int = Field(default=100, ge=10, le=5000)
    logging: Logging = Field(default_factory=Logging)

    @field_validator("user")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_USERS:
            raise ValueError(
                f"found {show(value)}, a user the official image or keel creates itself; expected the app's own user"
            )
        return value
