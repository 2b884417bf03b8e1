"""The rendered redis.conf and ACL file, run by a real redis-server."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from pg_helpers import Redis, free_port, redis_server

from stores.redis.model import RedisSpec
from stores.redis.server import (
    BACKUP_USER,
    CLIENT_USERS,
    EXPORTER_USER,
    HEALTH_USER,
    redis_acl,
    redis_health_command,
    render_redis_conf,
)
from tests.tool_requirements import require_tool

PASSWORD = "correct-horse-battery-staple"
CLIENT_PASSWORDS = {user: f"{user}-password" for user in CLIENT_USERS.values()}
ACL = redis_acl(PASSWORD, CLIENT_PASSWORDS)


def _as(server: Redis, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A command as one of the client users (the password through REDISCLI_AUTH, never an argument)."""
    return server.cli("--user", user, "--pass", CLIENT_PASSWORDS[user], "--no-auth-warning", *args, auth=False)


def _store(memory_mb: int = 256, policy: str = "allkeys-lru") -> RedisSpec:
    return RedisSpec.model_validate({"kind": "redis", "resources": {"memory_mb": memory_mb}, "eviction_policy": policy})


def _config(store: RedisSpec) -> Callable[[str], str]:
    return lambda data_dir: render_redis_conf(store, data_dir=data_dir)


def test_server_runs_rendered_memory_and_persistence_settings(tmp_path: Path) -> None:
    store = _store(256, "volatile-lfu")
    with redis_server(tmp_path, _config(store), acl_text=ACL, password=PASSWORD) as server:
        settings = {}
        for name in ("maxmemory", "maxmemory-policy", "appendonly", "appendfsync", "save", "protected-mode"):
            # CONFIG is not the apps': the exporter reads it.
            reply = _as(server, EXPORTER_USER, "CONFIG", "GET", name).stdout.split("\n")
            settings[reply[0]] = reply[1]
        persistence = _as(server, EXPORTER_USER, "INFO", "persistence").stdout
    assert settings == {
        "maxmemory": str(192 * 1024 * 1024),
        "maxmemory-policy": "volatile-lfu",
        "appendonly": "yes",
        "appendfsync": "everysec",
        "save": "3600 1 300 100 60 10000",
        "protected-mode": "yes",
    }
    assert "aof_enabled:1" in persistence


def test_commands_without_the_password_are_refused(tmp_path: Path) -> None:
    with redis_server(tmp_path, _config(_store()), acl_text=ACL, password=PASSWORD) as server:
        anonymous = server.cli("SET", "k", "v", auth=False)
        wrong = server.cli("--user", "default", "--pass", "wrong", "--no-auth-warning", "SET", "k", "v", auth=False)
        authenticated = server.cli("SET", "k", "v")
    assert anonymous.stdout.startswith("NOAUTH"), anonymous
    assert "WRONGPASS" in wrong.stdout + wrong.stderr, wrong
    assert authenticated.stdout.strip() == "OK", authenticated


def test_acl_file_names_each_password_by_its_hash_only() -> None:
    lines = ACL.splitlines()
    assert PASSWORD not in ACL and not any(p in ACL for p in CLIENT_PASSWORDS.values())
    assert [line.split()[1] for line in lines] == ["default", *CLIENT_USERS.values()]
    for line in lines:
        digest = line.split()[3]
        assert digest.startswith("#") and len(digest) == 65
    assert lines[0].split()[4:] == ["~*", "&*", "+@all", "-@admin"]


def _refused(reply: subprocess.CompletedProcess[str]) -> bool:
    return "NOPERM" in reply.stdout + reply.stderr


def test_each_client_may_run_only_the_commands_it_uses(tmp_path: Path) -> None:
    """The apps keep every data command but no administrative one (CONFIG SET dir would write files
    where the server can, MONITOR shows every client's commands); the exporter reads statistics,
    the backup asks for a snapshot, the health check pings: none of them reads or writes a key."""
    with redis_server(tmp_path, _config(_store()), acl_text=ACL, password=PASSWORD) as server:
        app = {
            "set": server.cli("SET", "k", "v"),
            "get": server.cli("GET", "k"),
            "config set": server.cli("CONFIG", "SET", "dir", "/tmp"),
            "acl": server.cli("ACL", "LIST"),
            "shutdown": server.cli("SHUTDOWN", "NOSAVE"),
            "monitor": server.cli("MONITOR"),
        }
        exporter = {
            "info": _as(server, EXPORTER_USER, "INFO", "memory"),
            "config get": _as(server, EXPORTER_USER, "CONFIG", "GET", "maxmemory"),
            "get": _as(server, EXPORTER_USER, "GET", "k"),
            "config set": _as(server, EXPORTER_USER, "CONFIG", "SET", "maxmemory", "1"),
        }
        backup = {
            "bgsave": _as(server, BACKUP_USER, "BGSAVE"),
            "info": _as(server, BACKUP_USER, "INFO", "persistence"),
            "get": _as(server, BACKUP_USER, "GET", "k"),
            "flushall": _as(server, BACKUP_USER, "FLUSHALL"),
        }
        health = {"ping": _as(server, HEALTH_USER, "PING"), "get": _as(server, HEALTH_USER, "GET", "k")}
        still_up = server.cli("GET", "k")
    assert app["set"].stdout.strip() == "OK" and app["get"].stdout.strip() == "v"
    assert [name for name in ("config set", "acl", "shutdown", "monitor") if not _refused(app[name])] == []
    assert "used_memory:" in exporter["info"].stdout and exporter["config get"].stdout.startswith("maxmemory")
    assert _refused(exporter["get"]) and _refused(exporter["config set"])
    assert "Background saving started" in backup["bgsave"].stdout and "rdb_" in backup["info"].stdout
    assert _refused(backup["get"]) and _refused(backup["flushall"])
    assert health["ping"].stdout.strip() == "PONG" and _refused(health["get"])
    assert still_up.stdout.strip() == "v"


def test_health_command_passes_with_the_password_file_and_fails_without(tmp_path: Path) -> None:
    password_file = tmp_path / "redis-health-password"
    password_file.write_text(CLIENT_PASSWORDS[HEALTH_USER])
    with redis_server(tmp_path, _config(_store()), acl_text=ACL, password=PASSWORD) as server:
        kind, script = redis_health_command(str(password_file), port=server.port)
        healthy = subprocess.run(["sh", "-c", script], capture_output=True, timeout=30, check=False)
        password_file.write_text(PASSWORD)  # the apps' password is not the health user's
        unhealthy = subprocess.run(["sh", "-c", script], capture_output=True, timeout=30, check=False)
    assert kind == "CMD-SHELL"
    assert healthy.returncode == 0, healthy
    assert unhealthy.returncode != 0, unhealthy


def test_server_without_its_acl_file_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "redis.conf"
    missing = tmp_path / "missing.acl"
    config.write_text(render_redis_conf(_store(), acl_path=str(missing), data_dir=str(tmp_path)))
    result = subprocess.run(
        [require_tool("redis-server"), str(config), "--port", str(free_port()), "--bind", "127.0.0.1"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert str(missing) in result.stdout + result.stderr
