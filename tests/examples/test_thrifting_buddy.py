"""thrifting-buddy (seed 002) under the mock runtime: its services, networks, environment
standards, container security and resource allocation."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest

from config import ConfigError, parse
from tests.examples.example_helpers import (
    MIB,
    NETWORK,
    SECRET,
    SERVICE,
    config_file,
    config_values,
    container,
    example_run,
    is_pulumi_secret,
    limits,
    location,
    nginx_conf,
    probe_url,
    reservation,
    role,
    secret_text,
    service,
    service_config_text,
)
from tests.helpers import base_image, tag_of
from tools import mockrun

NAME = "thrifting-buddy"


@pytest.fixture(scope="module")
def run() -> mockrun.Run:
    return example_run(NAME)


def network_ids(svc: mockrun.Registered) -> set[str]:
    return {n["id"] for n in svc.inputs["taskSpec"]["networksAdvanceds"]}


def test_postgres_is_15_and_redis_is_7(run):
    # Archived (point-in-time recovery, on in prod): the store's image is built from the official one.
    db_image = base_image(run, container(service(run, "db"))["image"])
    assert re.fullmatch(r"postgres:15\.[0-9]+-alpine", tag_of(db_image))
    assert re.fullmatch(r"redis:7\.[0-9.]+-alpine", tag_of(container(service(run, "cache"))["image"]))


def test_redis_persists_with_aof_and_rdb_on_a_protected_volume(run):
    conf = service_config_text(run, "cache-redis.conf")
    assert "\nappendonly yes\n" in conf and "\nappendfsync everysec\n" in conf and "\nsave 3600 1" in conf
    volume = run.one("docker:index/volume:Volume", "cache-data")
    assert volume.protect and volume.retain_on_delete
    mounts = {m["target"]: m["source"] for m in container(service(run, "cache"))["mounts"] if m["type"] == "volume"}
    assert mounts == {"/data": "thrifting-cache-data"}


def test_backend_listens_on_3000_scaled_to_3_behind_nginx(run):
    backend = service(run, "backend")
    assert backend.inputs["mode"]["replicated"]["replicas"] == 3
    assert probe_url(backend) == "http://127.0.0.1:3000/health"
    conf = nginx_conf(run)
    assert "server tasks.thrifting-backend:3000 resolve" in conf
    assert "proxy_pass http://backend;" in location(conf, "/api/")
    assert "client_max_body_size 10m;" in location(conf, "/api/")  # MAX_FILE_SIZE_MB=10
    assert "proxy_pass http://frontend;" in location(conf, "/")


def test_an_edge_network_and_an_internal_data_network(run):
    networks = {n.inputs["name"]: n for n in run.of_type(NETWORK)}
    assert set(networks) >= {"thrifting-edge", "thrifting-data"}
    assert networks["thrifting-data"].inputs["internal"] is True
    assert not networks["thrifting-edge"].inputs.get("internal")
    edge, data = networks["thrifting-edge"].id, networks["thrifting-data"].id
    monitoring = {networks["thrifting-monitoring"].id} if "thrifting-monitoring" in networks else set()
    assert network_ids(service(run, "frontend")) - monitoring == {edge}
    assert network_ids(service(run, "backend")) - monitoring == {edge, data}
    assert network_ids(service(run, "cache")) == {data}, "cache must be on the data network only"
    # The database also reaches S3 for its WAL archive (point-in-time recovery), on that network alone.
    assert network_ids(service(run, "db")) == {data, networks["thrifting-pitr-egress"].id}
    assert all(
        not (s.inputs.get("endpointSpec") or {}).get("ports") for s in run.of_type(SERVICE) if role(s) != "proxy"
    )


def test_the_environment_standards_reach_the_backend(run):
    env = container(service(run, "backend"))["env"]
    expected = {
        "NODE_ENV": "production",
        "PORT": "3000",
        "JWT_ACCESS_EXPIRES_IN": "15m",
        "JWT_REFRESH_EXPIRES_IN": "7d",
        "BCRYPT_ROUNDS": "12",
        "AWS_REGION": "us-east-1",
        "RATE_LIMIT_WINDOW_MS": "900000",
        "RATE_LIMIT_MAX_REQUESTS": "100",
        "MAX_FILE_SIZE_MB": "10",
        "LOG_LEVEL": "info",
    }
    assert {key: env[key] for key in expected} == expected
    for secret in (
        "DATABASE_URL",
        "JWT_ACCESS_SECRET",
        "JWT_REFRESH_SECRET",
        "OPENAI_API_KEY",
        "AWS_SECRET_ACCESS_KEY",
    ):
        assert env[f"{secret}_FILE"] == f"/run/secrets/{secret.lower()}"
        assert secret not in env, f"{secret} must be a file, not a plain variable"


def test_database_url_names_the_generated_password_the_db_host_and_the_database(run):
    secret = run.one(SECRET, "backend-database_url")
    assert is_pulumi_secret(secret, "data")
    url = urlsplit(secret_text(secret))
    password = run.one("random:index/randomPassword:RandomPassword", "db-password").outputs["result"]
    assert (url.scheme, url.username, url.password, url.hostname, url.port, url.path) == (
        "postgresql",
        "thrifting",
        password,
        "db",
        5432,
        "/thrifting_buddy",
    )
    redis = urlsplit(secret_text(run.one(SECRET, "backend-redis_url")))
    assert (redis.scheme, redis.hostname, redis.port) == ("redis", "cache", 6379)


@pytest.mark.parametrize("secret", ["jwt_access_secret", "jwt_refresh_secret"])
def test_a_jwt_secret_shorter_than_32_characters_is_refused_before_anything_is_created(secret):
    short = mockrun.run(
        NAME,
        config_file=config_file(NAME),
        overrides={f"keel:{secret}": "x" * 31},
        secret_keys=[f"keel:{secret}"],
    )
    assert short.error is not None
    assert (
        f'secret_rules/{secret}: the value of "{secret}" (used by services/backend/secrets/'
        f"{secret.upper()}) is 31 characters long; expected at least 32 (generate one with: "
        "openssl rand -base64 32)"
    ) in str(short.error)
    assert "x" * 31 not in str(short.error)
    assert [r for r in short.resources if r.custom] == []


def test_a_jwt_secret_of_exactly_32_characters_is_accepted():
    exact = mockrun.run(
        NAME,
        config_file=config_file(NAME),
        overrides={"keel:jwt_access_secret": "y" * 32},
        secret_keys=["keel:jwt_access_secret"],
    )
    assert exact.error is None, exact.error


@pytest.mark.parametrize("app", ["backend", "frontend"])
def test_apps_run_as_a_uid_above_10000_with_a_read_only_root(run, app):
    spec = container(service(run, app))
    uid, gid = (int(part) for part in spec["user"].split(":"))
    assert uid > 10000 and gid > 10000, spec["user"]
    assert spec["readOnly"] is True and spec["capDrops"] == ["ALL"]


def test_apps_stores_and_the_proxy_have_read_only_roots(run):
    # "Where possible": the certificate renewal task (acme.sh) keeps a writable root.
    checked = [service(run, name) for name in ("backend", "frontend", "db", "cache", "proxy")]
    assert [s.urn for s in checked if container(s).get("readOnly") is not True] == []


def test_backend_is_limited_to_1_cpu_1g_and_reserves_half_a_cpu_512m(run):
    backend = service(run, "backend")
    assert limits(backend) == {"memoryBytes": 1024 * MIB, "nanoCpus": 1_000_000_000}
    assert reservation(backend) == {"memoryBytes": 512 * MIB, "nanoCpus": 500_000_000}


def test_migrations_run_before_each_backend_rollout(run):
    migration = run.one("command:remote:Command", "backend-migration")
    # The job's command line, one argument per continued line.
    assert "npm run migrate" in migration.inputs["create"].replace(" \\\n  ", " ")
    assert migration.urn in service(run, "backend").depends_on


def test_the_database_is_backed_up_daily(run):
    job = run.one(SERVICE, "backup-backup")
    labels = {item["label"]: item["value"] for item in job.inputs["labels"]}
    assert labels["swarm.cronjob.schedule"] == "0 2 * * *"
    assert "backup_postgres db" in service_config_text(run, "backup-backup.sh")


def test_a_store_url_naming_a_store_without_one_is_refused():
    values = config_values(NAME)
    services = dict(values["keel:services"])
    services["uploads"] = {"kind": "volume"}
    services["backend"] = {**services["backend"], "secrets": {"UPLOADS_URL": "store-url:uploads"}}
    raw = {key.split(":", 1)[1]: value for key, value in {**values, "keel:services": services}.items()}
    with pytest.raises(ConfigError) as refused:
        parse({key: value if isinstance(value, str) else json.dumps(value) for key, value in raw.items()})
    assert str(refused.value) == (
        'services/backend/secrets/UPLOADS_URL: "store-url:uploads" names no store with a password or URL; '
        "expected one of store-url:cache, store-url:db"
    )
