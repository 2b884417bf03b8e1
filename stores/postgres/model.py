"""The config of a PostgreSQL store (services/<name> with kind: postgres)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from config.base import Logging, Resources, SecretName, StoreSpec, check_image

# A PostgreSQL database or role name: lower case, and `_` as well as `-` (thrifting_buddy, spoon_admin).
PostgresName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]


class PostgresSpec(StoreSpec):
    """PostgreSQL (official image), tuned from its memory limit."""

    kind: Literal["postgres"]
    image: str = "postgres:16.6-alpine"
    database: PostgresName = "app"
    user: PostgresName = "app"
    password_secret: SecretName | None = None
    """Secret holding the password; unset means a generated one (pulumi-random)."""
    resources: Resources = Field(default_factory=lambda: Resources(memory_mb=1024))
    max_connections: int = Field(default=100, ge=10, le=5000)
    logging: Logging = Field(default_factory=Logging)

    _image = field_validator("image")(classmethod(lambda cls, v: check_image(v)))
