"""The config of a Redis store (services/<name> with kind: redis)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from config.base import Image, Logging, Resources, SecretName, StoreSpec


class RedisSpec(StoreSpec):
    """Redis (official image) with AOF persistence and a bounded memory."""

    kind: Literal["redis"]
    image: Image = "redis:7.4.1-alpine"
    password_secret: SecretName | None = None
    resources: Resources = Field(default_factory=lambda: Resources(memory_mb=256))
    eviction_policy: Literal[
        "noeviction", "allkeys-lru", "volatile-lru", "allkeys-lfu", "volatile-lfu", "allkeys-random", "volatile-ttl"
    ] = "allkeys-lru"
    logging: Logging = Field(default_factory=Logging)
