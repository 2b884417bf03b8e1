"""redis.conf for a Redis store, its ACL file, and its health check.

Persistence: AOF (appendfsync everysec, at most one second of writes lost) with RDB snapshots
beside it, which the backup job copies after a BGSAVE.

Memory: ``maxmemory`` is 75% of the container limit. BGSAVE and AOF rewrites fork, and the
child's copy-on-write pages, client buffers and allocator fragmentation are charged to the
same cgroup; the remaining quarter is their headroom, so the kernel's OOM killer does not
end the server in the middle of a save.

Users: redis.conf cannot read a file, and a ``--requirepass`` argument would put the password in
the service spec and the process list. Instead the config names an ``aclfile`` that the
component mounts as a swarm secret (render it with ``redis_acl``). It holds one user per client,
each with only the commands that client uses: the apps as ``default`` (what a client that sends
only a password logs in as) without administrative commands, the exporter, the backup job and the
health check with a handful each. The file holds only the SHA-256 of each password, so not even
the server's own files hold a plaintext; each client reads its own from a secret file. If the ACL
file is missing, Redis refuses to start: it fails closed.
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


EXPORTER_USER = "keel-exporter"
BACKUP_USER = "keel-backup"
HEALTH_USER = "keel-health"
CLIENT_USERS = {"exporter": EXPORTER_USER, "backup": BACKUP_USER, "health": HEALTH_USER}
"""The store's clients other than the apps, each with a user of its own (and a password of its own)."""
HEALTH_PASSWORD_PATH = "/run/secrets/redis-health-password"

APP_RULES = "~* &* +@all -@admin"
"""The apps (the ``default`` user, which a client that sends only a password authenticates as):
every data command, none of the administrative ones: CONFIG (CONFIG SET dir and dbfilename write
files where the server can), ACL, DEBUG, SHUTDOWN, MONITOR (every client's commands, passwords
included), REPLICAOF, SAVE/BGSAVE, MODULE, FAILOVER. What an app does with its own keys it may."""
CLIENT_RULES = {
    # redis_exporter's own list (README, "ACL") without the key commands of --check-keys, unused here.
    EXPORTER_USER: "resetkeys resetchannels -@all +ping +info +select +client|list +client|info +client|setname "
    "+config|get +cluster|info +slowlog|get +slowlog|len +latency|latest +latency|histogram +memory|stats",
    # The backup job: INFO persistence to watch BGSAVE, then BGSAVE; the RDB file it reads from the volume.
    BACKUP_USER: "resetkeys resetchannels -@all +ping +info +bgsave",
    # The container's health check.
    HEALTH_USER: "resetkeys resetchannels -@all +ping",
}


def redis_acl(password: str, clients: dict[str, str] | None = None) -> str:
    """The ACL file: each user identified by the SHA-256 of its password. ``password`` is the apps'
    (the ``default`` user); ``clients``: user name (CLIENT_USERS) -> password."""
    users = {"default": (password, APP_RULES)}
    for user, secret in (clients or {}).items():
        if user not in CLIENT_RULES:
            raise ValueError(f"unknown Redis client user {user!r}; expected one of {sorted(CLIENT_RULES)}")
        users[user] = (secret, CLIENT_RULES[user])
    lines = []
    for user, (secret, rules) in users.items():
        if not secret:
            raise ValueError(f"a Redis password must not be empty (user {user})")
        lines.append(f"user {user} on #{hashlib.sha256(secret.encode()).hexdigest()} {rules}")
    return "\n".join(lines) + "\n"


def redis_command(config_path: str = CONFIG_PATH) -> list[str]:
    """The service's args (the image's CMD); the official entrypoint drops to the redis user before
    exec. Never pass them as swarm `commands`, which replace the entrypoint."""
    return ["redis-server", config_path]


def redis_health_command(
    password_path: str | None = HEALTH_PASSWORD_PATH, port: int = PORT, user: str = HEALTH_USER
) -> list[str]:
    """A swarm health check: PONG to a PING authenticated as the health user (who may only PING).

    REDISCLI_AUTH keeps the password out of redis-cli's arguments (and its warning off stderr).
    """
    if password_path is None:
        return ["CMD-SHELL", f"redis-cli -h 127.0.0.1 -p {port} ping | grep -qx PONG"]
    ping = f"redis-cli --user {user} -h 127.0.0.1 -p {port} ping | grep -qx PONG"
    return ["CMD-SHELL", f'REDISCLI_AUTH="$(cat {password_path})" {ping}']
