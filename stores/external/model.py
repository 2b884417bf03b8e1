"""The config of an external store (services/<name> with kind: external)."""

from __future__ import annotations

from typing import Literal

from config.base import SecretName, StoreSpec


class ExternalSpec(StoreSpec):
    """A managed database outside the host (Neon, Supabase, RDS): a secret URL, no container."""

    kind: Literal["external"]
    url_secret: SecretName
    engine: Literal["postgres", "mysql", "redis", "other"] = "postgres"
