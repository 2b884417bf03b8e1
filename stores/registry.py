"""Every store kind, in the order the layers list them (budget lines, backup runs, dashboards).

Adding a kind: a package stores/<kind>/ with its spec model and a StoreKind (stores/base.py), one
line here, its keys in config/reference.yaml, and its tests (README: "Adding a store kind").
"""

from __future__ import annotations

from typing import Any

from config.base import StoreSpec
from stores.base import StoreKind
from stores.external.kind import ExternalKind
from stores.mariadb.kind import MariadbKind
from stores.postgres.kind import PostgresKind
from stores.redis.kind import RedisKind
from stores.volume.kind import VolumeKind

KINDS: dict[str, StoreKind[Any]] = {
    kind.name: kind for kind in (PostgresKind(), RedisKind(), VolumeKind(), ExternalKind(), MariadbKind())
}


def kind(name: str) -> StoreKind[Any]:
    """The kind called ``name`` (a KeyError names a kind the registry does not have)."""
    return KINDS[name]


def kind_of(spec: StoreSpec) -> StoreKind[Any]:
    """The kind of a validated store spec."""
    return KINDS[spec.kind]


def order(name: str) -> int:
    """Where a kind stands in the registry (to list stores kind by kind)."""
    return list(KINDS).index(name)
