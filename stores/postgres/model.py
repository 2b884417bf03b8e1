"""The config of a PostgreSQL store (services/<name> with kind: postgres)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from config.base import Image, Logging, Resources, SecretName, StoreSpec
from config.errors import show

# A PostgreSQL database or role name: lower case, and `_` as well as `-` (thrifting_buddy, spoon_admin).
PostgresName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
# PostgreSQL creates these databases itself (initdb); the image's POSTGRES_DB must name another.
RESERVED_DATABASES = ("postgres", "template0", "template1")


class PostgresSpec(StoreSpec):
    """PostgreSQL (official image), tuned from its memory limit."""

    kind: Literal["postgres"]
    image: Image = "postgres:16.6-alpine"
    database: PostgresName = "app"
    """The application's database; not postgres, template0 or template1."""
    user: PostgresName = "app"
    """The application's role (the image's superuser); not pg_* (reserved by PostgreSQL)."""
    password_secret: SecretName | None = None
    """Secret holding the password; unset means a generated one (pulumi-random)."""
    resources: Resources = Field(default_factory=lambda: Resources(memory_mb=1024))
    max_connections: int = Field(default=100, ge=10, le=5000)
    logging: Logging = Field(default_factory=Logging)

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
