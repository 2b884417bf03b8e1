"""redis.conf for a Redis store, its ACL file, and its health check.

Persistence: AOF (appendfsync everysec, at most one second of writes lost) with RDB snapshots
beside it, which the backup job copies after a BGSAVE.

Memory: ``maxmemory`` is 75% of the container limit. BGSAVE and AOF rewrites fork, and the
child's copy-on-write pages, client buffers and allocator fragmentation are charged to the
same cgroup; the remaining quarter is their headroom, so the kernel's OOM killer does not
end the server in the middle of a save.

Password: redis.conf cannot read a file, and a ``--requirepass`` argument would put the
password in the service spec and the process list. Instead the config names an ``aclfile``
that the component mounts as a swarm secret (render it with ``redis_acl``). That file holds
only the SHA-256 of the password, so not even the server's own files hold the plaintext.
Clients (apps, the health check, the exporter, the backup job) read the plaintext from the
password secret file. If the ACL file is missing, Redis refuses to start: it fails closed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from render import render_from
from stores.redis.model import RedisSpec

TEMPLATES = Path(__file__).resolve().parent / "templates"

PORT = 6379
CONFIG_PATH = "/usr/local/etc/redis/redis.conf"
ACL_PATH = "/run/secrets/redis-acl"
PASSWORD_PATH = "/run/secrets/redis-password"
DATA_DIR = "/data"
RDB_FILENAME = "dump.rdb"
AOF_FILENAME = "appendonly.aof"
AOF_DIRNAME = "appendonlydir"
MAXMEMORY_SHARE = 0.75


@dataclass(frozen=True)
class RedisSettings:
    """What the rendered redis.conf says, for the component and the tests."""

    memory_mb: int
    maxmemory_bytes: int
    eviction_policy: str


def redis_settings(store: RedisSpec) -> RedisSettings:
    """Memory settings for ``store``: maxmemory is MAXMEMORY_SHARE of its limit, in bytes."""
    limit_bytes = store.resources.memory_mb * 1024 * 1024
    return RedisSettings(
        memory_mb=store.resources.memory_mb,
        maxmemory_bytes=int(limit_bytes * MAXMEMORY_SHARE),
        eviction_policy=store.eviction_policy,
    )


def render_redis_conf(store: RedisSpec, *, acl_path: str | None = ACL_PATH, data_dir: str = DATA_DIR) -> str:
    """The complete redis.conf for ``store``; ``acl_path`` None renders a server without a password.

    ``data_dir`` is the official image's /data unless a test runs the file elsewhere (Redis
    changes into it while reading the file, so it cannot be overridden on the command line).
    """
    return render_from(
        TEMPLATES,
        "redis.conf.j2",
        settings=redis_settings(store),
        port=PORT,
        acl_path=acl_path,
        data_dir=data_dir,
        rdb_filename=RDB_FILENAME,
        aof_file=AOF_FILENAME,
        aof_dir=AOF_DIRNAME,
    )


def redis_acl(password: str) -> str:
    """The ACL file: the default user, full access, identified by the SHA-256 of ``password``."""
    if not password:
        raise ValueError("a Redis password must not be empty")
    digest = hashlib.sha256(password.encode()).hexdigest()
    return f"user default on #{digest} ~* &* +@all\n"


def redis_command(config_path: str = CONFIG_PATH) -> list[str]:
    """The service's args (the image's CMD); the official entrypoint drops to the redis user before
    exec. Never pass them as swarm `commands`, which replace the entrypoint."""
    return ["redis-server", config_path]


def redis_health_command(password_path: str | None = PASSWORD_PATH, port: int = PORT) -> list[str]:
    """A swarm health check: PONG to an authenticated PING.

    REDISCLI_AUTH keeps the password out of redis-cli's arguments (and its warning off stderr).
    """
    ping = f"redis-cli -h 127.0.0.1 -p {port} ping | grep -qx PONG"
    if password_path is None:
        return ["CMD-SHELL", ping]
    return ["CMD-SHELL", f'REDISCLI_AUTH="$(cat {password_path})" {ping}']
