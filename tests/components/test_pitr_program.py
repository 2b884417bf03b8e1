"""Point-in-time recovery as the whole program declares it (mock runtime): which stores archive,
what the store's service gains, the jobs beside it, and the volume generations of a restore."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from config import ConfigError
from render import pitr
from stores.postgres.server import ADMIN_ROLE
from tests.helpers import run_with
from tools import mockrun
from tools import pitr as pitr_tool

SERVICE = "docker:index/service:Service"
CONFIG = "docker:index/serviceConfig:ServiceConfig"
SECRET = "docker:index/secret:Secret"
VOLUME = "docker:index/volume:Volume"


def _text(resource: mockrun.Registered) -> str:
    return base64.b64decode(resource.inputs["data"]).decode()


def _services(run: mockrun.Run) -> dict[str, mockrun.Registered]:
    return {r.inputs["name"]: r for r in run.of_type(SERVICE)}


def _labels(service: mockrun.Registered) -> dict[str, str]:
    return {label["label"]: label["value"] for label in service.inputs.get("labels", [])}


def _mounts(service: mockrun.Registered) -> dict[str, str]:
    """Target -> source of the service's volume mounts."""
    return {
        m["target"]: m.get("source", "")
        for m in service.inputs["taskSpec"]["containerSpec"].get("mounts", [])
        if m["type"] == "volume"
    }


def _config_at(run: mockrun.Run, service: mockrun.Registered, path: str) -> str:
    for config in service.inputs["taskSpec"]["containerSpec"]["configs"]:
        if config["fileName"] == path:
            return _text(run.one(CONFIG, config["configId"].removesuffix("-id")))
    raise AssertionError(f"{service.inputs['name']} has no config at {path}")


@pytest.fixture(scope="module")
def prod() -> mockrun.Run:
    run = run_with("prod")
    assert run.error is None, run.error
    return run


def test_prod_archives_its_postgres_store_by_default(prod: mockrun.Run) -> None:
    assert [r.name for r in prod.of_type("keel:index:PitrArchive")] == ["db-pitr"]
    store = _services(prod)["shop-db"]
    # The store runs the image built from its own official image plus pgBackRest.
    image = prod.one("docker:index/remoteImage:RemoteImage", "db-pitr-image")
    assert store.inputs["taskSpec"]["containerSpec"]["image"] == image.inputs["name"]
    assert image.inputs["build"]["context"] == "render/templates/pitr/image"
    assert image.inputs["build"]["buildArgs"]["POSTGRES_IMAGE"].startswith("postgres:16.6-alpine@sha256:")
    conf = _config_at(prod, store, "/etc/postgresql/postgresql.conf")
    assert "archive_mode = on" in conf
    assert "archive_command = 'pgbackrest --stanza=db archive-push %p'" in conf
    assert "archive_timeout = 60s" in conf
    backrest = _config_at(prod, store, "/etc/pgbackrest/pgbackrest.conf")
    assert "repo1-retention-full=14\n" in backrest
    assert "expire-auto=n" in backrest
    assert "repo1-path=/shop/prod/pitr\n" in backrest
    # archive_command needs S3: the store joins the egress network beside the internal one.
    networks = [n["id"] for n in store.inputs["taskSpec"]["networksAdvanceds"]]
    assert networks == ["networks-data-id", "networks-pitr-egress-id"]


def test_the_archive_key_and_cipher_passphrase_reach_the_store_as_a_secret_only(prod: mockrun.Run) -> None:
    secret = prod.one(SECRET, "db-pitr-pgbackrest-secrets")
    text = base64.b64decode(secret.inputs["data"]).decode()
    keys = dict(line.split("=", 1) for line in text.splitlines()[1:])
    assert sorted(keys) == ["repo1-cipher-pass", "repo1-s3-key", "repo1-s3-key-secret"]
    assert all(value in prod.secret_values for value in keys.values())
    assert "4dabf18193072939515e22adb298388d" in str(secret.raw_inputs["data"])  # still a Pulumi secret
    for config in prod.of_type(CONFIG):
        assert not any(value in _text(config) for value in keys.values()), config.name


def test_base_backups_and_the_drill_run_on_their_schedules_beside_the_store(prod: mockrun.Run) -> None:
    services = _services(prod)
    for job, schedule, script in (
        ("full", "0 2 * * 0", ["sh", "/etc/keel-pitr/pitr-backup.sh", "full"]),
        ("diff", "0 2 * * 1-6", ["sh", "/etc/keel-pitr/pitr-backup.sh", "diff"]),
        ("drill", "30 5 * * *", ["sh", "/etc/keel-pitr/pitr-drill.sh"]),
    ):
        service = services[f"shop-db-pitr-{job}"]
        assert _labels(service)["swarm.cronjob.schedule"] == schedule
        assert service.inputs["mode"]["replicated"]["replicas"] == 0
        assert service.inputs["taskSpec"]["restartPolicy"]["condition"] == "none"
        assert service.inputs["taskSpec"]["containerSpec"]["commands"] == script
        # pgBackRest needs the server's data directory at the server's path, and its socket.
        mounts = _mounts(service)
        assert mounts["/var/lib/postgresql/data"] == "shop-db-data"
        assert mounts["/var/run/postgresql"] == "shop-db-socket"
        assert "mode" in service.ignore_changes
    assert _mounts(services["shop-db"])["/var/run/postgresql"] == "shop-db-socket"
    heartbeat = services["shop-db-pitr-heartbeat"]
    assert heartbeat.inputs["mode"]["replicated"]["replicas"] == 1
    assert heartbeat.inputs["taskSpec"].get("networksAdvanceds") is None


def test_pitr_logs_in_as_the_superuser_over_the_socket_and_holds_no_password(prod: mockrun.Run) -> None:
    # The app's role owns its database and is no superuser (issue 18); archiving needs one.
    assert pitr.SUPERUSER == ADMIN_ROLE
    services = _services(prod)
    assert f"pg1-user={ADMIN_ROLE}" in _config_at(
        prod, services["shop-db-pitr-full"], "/etc/pgbackrest/pgbackrest.conf"
    )
    heartbeat = services["shop-db-pitr-heartbeat"]
    assert _mounts(heartbeat)["/var/run/postgresql"] == "shop-db-socket"
    assert not heartbeat.inputs["taskSpec"]["containerSpec"].get("secrets")
    script = _config_at(prod, heartbeat, "/etc/keel-pitr/pitr-heartbeat.sh")
    assert ': "${KEEL_HOST:=/var/run/postgresql}"' in script and f"--username {ADMIN_ROLE}" in script


def test_other_environments_and_opted_out_stores_do_not_archive() -> None:
    staging = run_with("staging", {"keel:backup": {"enabled": True, "repository": {"bucket": "shop-backups"}}})
    assert staging.error is None, staging.error
    assert not staging.of_type("keel:index:PitrArchive")
    opted_out = run_with("prod", {"keel:services": {"db": {"pitr": False}}})
    assert opted_out.error is None, opted_out.error
    assert not opted_out.of_type("keel:index:PitrArchive")
    store = _services(opted_out)["shop-db"]
    assert "archive_mode" not in _config_at(opted_out, store, "/etc/postgresql/postgresql.conf")
    assert store.inputs["taskSpec"]["containerSpec"]["image"].startswith("postgres:16.6-alpine@sha256:")


def test_a_restore_fills_the_next_volume_generation_and_leaves_the_live_one_alone() -> None:
    run = run_with("prod", {"keel:services": {"db": {"restore_to": "2026-11-29T14:03:07Z"}}})
    assert run.error is None, run.error
    volumes = {r.inputs["name"]: r for r in run.of_type(VOLUME) if r.name.startswith("db-data")}
    assert sorted(volumes) == ["shop-db-data", "shop-db-data-g1"]
    assert volumes["shop-db-data"].protect and volumes["shop-db-data"].retain_on_delete
    # The next generation is kept when dropped from the program, but can be dropped (not protected).
    assert not volumes["shop-db-data-g1"].protect and volumes["shop-db-data-g1"].retain_on_delete
    services = _services(run)
    assert _mounts(services["shop-db"])["/var/lib/postgresql/data"] == "shop-db-data"
    restore = services["shop-db-pitr-restore"]
    assert restore.inputs["taskSpec"]["containerSpec"]["commands"] == [
        "sh", "/etc/keel-pitr/pitr-restore.sh", "/var/lib/postgresql/data/pgdata", "2026-11-29 14:03:07+00",
        "keep-archiving",
    ]  # fmt: skip
    assert _mounts(restore)["/var/lib/postgresql/data"] == "shop-db-data-g1"
    assert restore.inputs["mode"]["replicated"]["replicas"] == 1
    assert restore.inputs["taskSpec"]["restartPolicy"]["condition"] == "none"


def test_raising_the_generation_swaps_the_store_and_unprotects_the_volume_it_leaves() -> None:
    run = run_with("prod", {"keel:services": {"db": {"volume_generation": 1}}})
    assert run.error is None, run.error
    volumes = {r.inputs["name"]: r for r in run.of_type(VOLUME) if r.name.startswith("db-data")}
    assert sorted(volumes) == ["shop-db-data", "shop-db-data-g1"]
    assert volumes["shop-db-data-g1"].protect
    assert not volumes["shop-db-data"].protect and volumes["shop-db-data"].retain_on_delete
    services = _services(run)
    assert "shop-db-pitr-restore" not in services
    for name in ("shop-db", "shop-db-pitr-full", "shop-db-pitr-drill"):
        assert _mounts(services[name])["/var/lib/postgresql/data"] == "shop-db-data-g1", name


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        (
            {"keel:services": {"db": {"pitr": False, "restore_to": "latest"}}},
            'services/db/restore_to: found "latest" but the store\'s WAL is not archived (backup/pitr/enabled, '
            "services/db/pitr); expected point-in-time recovery on for a restore",
        ),
        (
            {"keel:services": {"db": {"restore_to": "2026-11-29 14:03"}}},
            "services/db/restore_to: found \"2026-11-29 14:03\"; expected 'latest' or a UTC instant such as "
            "2026-11-29T14:03:07Z",
        ),
        (
            {"keel:backup": {"pitr": {"archive_timeout_s": 120}}},
            "backup/pitr/targets/rpo_s: found 60, below archive_timeout_s (120), which bounds the recovery point; "
            "expected at least archive_timeout_s",
        ),
        (
            {"keel:backup": {"pitr": {"drill_schedule": "daily"}}},
            'backup/pitr/drill_schedule: found "daily"; expected 5 cron fields (minute hour day-of-month month '
            "day-of-week) such as '0 3 * * *', separated by single spaces",
        ),
    ],
    ids=["restore without archive", "restore time not UTC ISO", "rpo below archive_timeout", "bad drill schedule"],
)
def test_bad_pitr_config_fails_with_its_key_path_before_any_resource(fragment: dict[str, Any], expected: str) -> None:
    run = run_with("prod", fragment)
    assert isinstance(run.error, ConfigError), run.error
    assert str(run.error) == expected
    assert run.resources == []


def test_the_expiry_configuration_is_printed_for_the_place_that_may_delete(capsys: pytest.CaptureFixture[str]) -> None:
    assert pitr_tool.main(["expire-config", "prod"]) == 0
    out = capsys.readouterr().out
    assert "pgbackrest --config=expire-db.conf --stanza=db expire" in out
    assert "repo1-path=/shop/prod/pitr\n" in out and "repo1-retention-full=14\n" in out
    assert "repo1-s3-key" not in out
    assert pitr_tool.main(["expire-config", "staging"]) == 2
    assert "archives no PostgreSQL store" in capsys.readouterr().err


def test_the_expiry_configuration_is_written_one_file_per_store_for_the_workflow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert pitr_tool.main(["expire-config", "prod", "--output-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "db\n"  # .github/scripts/pitr-expire.sh reads the store names
    assert [p.name for p in tmp_path.iterdir()] == ["expire-db.conf"]
    assert (tmp_path / "expire-db.conf").read_text() == pitr_tool.expire_configs("prod")["db"]
