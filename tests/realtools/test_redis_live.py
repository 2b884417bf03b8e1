"""The rendered redis.conf and ACL file, run by a real redis-server."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from pg_helpers import free_port, redis_server

from stores.redis.model import RedisSpec
from stores.redis.server import redis_acl, redis_health_command, render_redis_conf
from tests.tool_requirements import require_tool

PASSWORD = "correct-horse-battery-staple"


def _store(memory_mb: int = 256, policy: str = "allkeys-lru") -> RedisSpec:
    return RedisSpec.model_validate({"kind": "redis", "resources": {"memory_mb": memory_mb}, "eviction_policy": policy})


def _config(store: RedisSpec) -> Callable[[str], str]:
    return lambda data_dir: render_redis_conf(store, data_dir=data_dir)


def test_server_runs_rendered_memory_and_persistence_settings(tmp_path: Path) -> None:
    store = _store(256, "volatile-lfu")
    with redis_server(tmp_path, _config(store), acl_text=redis_acl(PASSWORD), password=PASSWORD) as server:
        settings = {}
        for name in ("maxmemory", "maxmemory-policy", "appendonly", "appendfsync", "save", "protected-mode"):
            reply = server.cli("CONFIG", "GET", name).stdout.split("\n")
            settings[reply[0]] = reply[1]
        persistence = server.cli("INFO", "persistence").stdout
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
    with redis_server(tmp_path, _config(_store()), acl_text=redis_acl(PASSWORD), password=PASSWORD) as server:
        anonymous = server.cli("SET", "k", "v", auth=False)
        wrong = server.cli("--user", "default", "--pass", "wrong", "--no-auth-warning", "SET", "k", "v", auth=False)
        authenticated = server.cli("SET", "k", "v")
    assert anonymous.stdout.startswith("NOAUTH"), anonymous
    assert "WRONGPASS" in wrong.stdout + wrong.stderr, wrong
    assert authenticated.stdout.strip() == "OK", authenticated


def test_acl_file_names_the_password_by_its_hash_only() -> None:
    acl = redis_acl(PASSWORD)
    assert PASSWORD not in acl
    prefix, digest, permissions = acl.split(maxsplit=3)[0:2], acl.split()[3], acl.split()[4:]
    assert prefix == ["user", "default"]
    assert digest.startswith("#") and len(digest) == 65
    assert permissions == ["~*", "&*", "+@all"]


def test_health_command_passes_with_the_password_file_and_fails_without(tmp_path: Path) -> None:
    password_file = tmp_path / "redis-password"
    password_file.write_text(PASSWORD)
    with redis_server(tmp_path, _config(_store()), acl_text=redis_acl(PASSWORD), password=PASSWORD) as server:
        kind, script = redis_health_command(str(password_file), port=server.port)
        healthy = subprocess.run(["sh", "-c", script], capture_output=True, timeout=30, check=False)
        password_file.write_text("not-the-password")
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
