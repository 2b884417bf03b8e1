"""redis.conf from a store's memory limit and eviction policy: golden text and the derived values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stores.redis.model import RedisSpec
from stores.redis.server import redis_acl, redis_health_command, redis_settings, render_redis_conf

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "stores"


def _store(memory_mb: int = 256, policy: str = "allkeys-lru") -> RedisSpec:
    return RedisSpec.model_validate({"kind": "redis", "resources": {"memory_mb": memory_mb}, "eviction_policy": policy})


def test_rendered_config_matches_golden() -> None:
    text = render_redis_conf(_store())
    golden = GOLDEN / "redis-256mb.conf"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"rendered redis.conf differs from {golden}; UPDATE_GOLDEN=1 to accept"


@pytest.mark.parametrize(("memory_mb", "maxmemory"), [(256, 201326592), (128, 100663296), (1000, 786432000)])
def test_maxmemory_is_three_quarters_of_the_limit(memory_mb: int, maxmemory: int) -> None:
    assert redis_settings(_store(memory_mb)).maxmemory_bytes == maxmemory
    assert f"\nmaxmemory {maxmemory}\n" in render_redis_conf(_store(memory_mb))


def test_eviction_policy_comes_from_the_model() -> None:
    assert "\nmaxmemory-policy noeviction\n" in render_redis_conf(_store(policy="noeviction"))


def test_server_without_password_has_no_aclfile_line() -> None:
    text = render_redis_conf(_store(), acl_path=None)
    assert "aclfile" not in text
    assert "\nprotected-mode yes\n" in text


def test_empty_password_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        redis_acl("")


def test_health_check_reads_the_password_file_not_an_argument() -> None:
    assert redis_health_command("/run/secrets/redis-health-password") == [
        "CMD-SHELL",
        'REDISCLI_AUTH="$(cat /run/secrets/redis-health-password)" '
        "redis-cli --user keel-health -h 127.0.0.1 -p 6379 ping | grep -qx PONG",
    ]
    assert redis_health_command(None) == ["CMD-SHELL", "redis-cli -h 127.0.0.1 -p 6379 ping | grep -qx PONG"]
