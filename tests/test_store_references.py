"""Which stores an app waits for on a deploy (config.crossref.referenced_stores): the ones it uses.

The prod topology has the stores db (postgres), cache (redis) and uploads (volume), name prefix
"shop"; each case adds one app, `worker`, to it.
"""

from __future__ import annotations

from typing import Any

import pytest

from config.crossref import referenced_stores
from tests.helpers import parsed

HEALTH = {"command": ["true"]}
RESOURCES = {"memory_mb": 64}


def used_by_worker(**app: Any) -> set[str]:
    body = {"image": "example/worker:1.0", "health": HEALTH, "resources": RESOURCES, **app}
    cfg = parsed("prod", {"keel:services": {"worker": body}})
    return referenced_stores(cfg.apps()["worker"], cfg)


@pytest.mark.parametrize(
    ("app", "stores"),
    [
        ({}, set()),
        ({"secrets": {"DATABASE_URL": "store-url:db"}}, {"db"}),
        ({"secrets": {"REDIS_PASSWORD": "store:cache"}}, {"cache"}),
        ({"volumes": {"/data": "uploads"}}, {"uploads"}),
        ({"env": {"DATABASE_HOST": "db"}}, {"db"}),
        ({"env": {"CACHE": "redis://cache:6379/0"}}, {"cache"}),
        ({"env": {"PGHOST": "shop-db"}}, {"db"}),  # the swarm service name
        ({"env": {"PGHOST": "tasks.db"}}, {"db"}),
        ({"env": {"HOST": "DB"}}, {"db"}),  # host names are case-insensitive
        ({"command": ["worker", "--redis=cache:6379"]}, {"cache"}),
        ({"args": ["--db", "postgres://app@db:5432/app"]}, {"db"}),
        ({"health": {"command": ["pg_isready", "-h", "db"]}}, {"db"}),
        ({"migration": {"command": ["migrate", "--host", "db"]}}, {"db"}),
        # Not a host: a longer name that contains a store's.
        ({"env": {"BACKUP_DIR": "/var/db-backups", "MODE": "cached"}}, set()),
        # A secret the user set may hold any store's URL: keel cannot read it before the deploy.
        ({"secrets": {"API_KEY": "api_key"}}, {"db", "cache", "uploads"}),
    ],
)
def test_an_app_on_the_internal_network_uses_the_stores_it_names(app: dict[str, Any], stores: set[str]) -> None:
    assert used_by_worker(**app) == stores


def test_an_app_off_the_data_network_reaches_no_store_by_host() -> None:
    # Stores sit on the data network only; a mount and a store: secret still count.
    public = {"networks": ["edge"]}
    assert used_by_worker(**public, env={"DATABASE_HOST": "db"}, secrets={"API_KEY": "api_key"}) == set()
    assert used_by_worker(**public, volumes={"/data": "uploads"}, secrets={"P": "store:cache"}) == {"uploads", "cache"}
