"""A MariaDB store added to a stack (spoon's, under the mock runtime): every layer reaches it
through its record alone (its service, secrets, tuning, exporter, scrape job, dashboard, alert,
backup, the app's URL), and the second preview after an up is empty."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from stores.mariadb.server import BACKUP_USER, EXPORTER_USER, render_keel_cnf, users_sql
from tests.examples.example_helpers import (
    MIB,
    SERVICE,
    config_file,
    config_values,
    container,
    limits,
    secret_text,
    service,
    service_config_text,
)
from tests.test_idempotency import described
from tools import mockrun, readback

STACK = "spoon"


def _services() -> dict[str, Any]:
    services = copy.deepcopy(config_values(STACK)["keel:services"])
    services["orders"] = {"kind": "mariadb", "database": "orders", "user": "orders", "resources": {"memory_mb": 512}}
    services["nextjs"]["secrets"]["ORDERS_URL"] = "store-url:orders"
    return services


@pytest.fixture(scope="module")
def run() -> mockrun.Run:
    result = mockrun.run(STACK, config_file=config_file(STACK), overrides={"keel:services": _services()})
    assert result.error is None, result.error
    return result


def test_the_store_runs_the_official_image_tuned_from_its_limit(run: mockrun.Run) -> None:
    orders = service(run, "orders")
    spec = container(orders)
    assert spec["image"].startswith("mariadb:11.4.12@sha256:")
    assert spec["args"] == ["mariadbd"] and "commands" not in spec
    assert limits(orders)["memoryBytes"] == 512 * MIB
    assert spec["env"] == {
        "MARIADB_DATABASE": "orders",
        "MARIADB_USER": "orders",
        "MARIADB_PASSWORD_FILE": "/run/secrets/mariadb-password",
        "MARIADB_ROOT_PASSWORD_FILE": "/run/secrets/mariadb-root-password",
        "MARIADB_ROOT_HOST": "localhost",
        "MARIADB_AUTO_UPGRADE": "1",
    }
    assert service_config_text(run, "orders-keel.cnf") == render_keel_cnf(512, 100)
    configs = {c["fileName"] for c in spec["configs"]}
    assert configs == {"/etc/mysql/conf.d/keel.cnf"}
    assert {s["fileName"] for s in spec["secrets"]} == {
        "/run/secrets/mariadb-password",
        "/run/secrets/mariadb-root-password",
    }
    assert spec["healthcheck"]["tests"] == ["CMD", "healthcheck.sh", "--connect", "--innodb_initialized"]
    volume = run.one("docker:index/volume:Volume", "orders-data")
    assert volume.protect
    assert {m["target"]: m["type"] for m in spec["mounts"]} == {
        "/var/lib/mysql": "volume",
        "/run/mysqld": "tmpfs",
        "/tmp": "tmpfs",
    }


def test_the_server_runs_as_the_images_user_with_no_capability(run: mockrun.Run) -> None:
    spec = container(service(run, "orders"))
    assert spec["user"] == "mysql"
    assert spec["capDrops"] == ["ALL"] and not spec.get("capAdds")
    assert spec["readOnly"] is True
    # The data directory is handed to that user when the volume is prepared.
    prepare = next(r for r in run.resources if r.name == "orders-data-dir")
    assert 'owner="$(id -u mysql):$(id -g mysql)"' in prepare.inputs["create"]
    assert " mariadb:11.4.12 -c " in prepare.inputs["create"]


def test_the_exporter_and_the_backup_sign_in_as_users_of_their_own(run: mockrun.Run) -> None:
    passwords = {
        user: run.one("random:index/randomPassword:RandomPassword", f"orders-{client}-password").outputs["result"]
        for client, user in (("exporter", EXPORTER_USER), ("backup", BACKUP_USER))
    }
    users = next(r for r in run.resources if r.name == "orders-users")
    assert users.inputs["stdin"] == users_sql("orders", "orders", passwords)
    assert service(run, "orders").urn in users.depends_on
    # The apps wait for the users step, as for the store itself.
    assert users.urn in run.one(SERVICE, "nextjs-service").depends_on
    exporter = container(run.one(SERVICE, "observability-orders-exporter"))
    assert f"--mysqld.username={EXPORTER_USER}" in exporter["commands"]
    assert [s["secretId"] for s in exporter["secrets"]] == ["orders-exporter-password-id"]
    backup = service_config_text(run, "backup-backup.sh")
    assert '  "${KEEL_PORT_ORDERS:-3306}" orders keel_backup' in backup.splitlines()
    for job in ("backup-backup", "backup-drill"):
        mounted = {s["fileName"]: s["secretId"] for s in container(run.one(SERVICE, job))["secrets"]}
        assert mounted["/run/secrets/orders-password"] == "orders-backup-password-id"


def test_the_app_gets_a_mysql_url_with_the_generated_password(run: mockrun.Run) -> None:
    url = secret_text(run.one("docker:index/secret:Secret", "nextjs-orders_url"))
    assert url.startswith("mysql://orders:") and url.endswith("@orders:3306/orders")


def test_its_exporter_is_scraped_on_its_own_port_with_its_dashboard_and_alert(run: mockrun.Run) -> None:
    exporter = container(run.one(SERVICE, "observability-orders-exporter"))
    assert exporter["image"].startswith("prom/mysqld-exporter:v0.17.2@sha256:")
    assert "--mysqld.address=spoon-orders:3306" in exporter["commands"]
    assert exporter["healthcheck"]["tests"][-1] == "http://127.0.0.1:9104/"
    prometheus = yaml.safe_load(service_config_text(run, "observability-prometheus-config"))
    [job] = [job for job in prometheus["scrape_configs"] if job["job_name"] == "mariadb-orders"]
    [discovery] = job["dns_sd_configs"]
    assert (discovery["names"], discovery["port"]) == (["tasks.spoon-orders-exporter"], 9104)
    dashboard = json.loads(service_config_text(run, "observability-grafana-dashboard-mariadb"))
    assert dashboard["uid"] == "keel-mariadb"
    assert "alert: MariaDBDown" in service_config_text(run, "observability-prometheus-rules")


def test_the_backup_job_dumps_restores_and_drills_it_with_the_client_in_its_image(run: mockrun.Run) -> None:
    backup = service_config_text(run, "backup-backup.sh")
    assert "backup_mariadb orders " in backup and "keel_record orders $?" in backup
    assert "drill_mariadb orders " in service_config_text(run, "backup-drill.sh")
    assert "restore-mariadb.sh" in service_config_text(run, "backup-restore-mariadb.sh")
    build_args = run.one("docker:index/remoteImage:RemoteImage", "backup-image").inputs["build"]["buildArgs"]
    assert "mariadb-client" in build_args["APK_PACKAGES"].split()
    assert "mariadb-dump --version" in build_args["TOOL_CHECKS"]


def test_the_second_preview_after_an_up_is_empty(run: mockrun.Run) -> None:
    state = readback.state_after_up(run.resources)
    second = mockrun.run(STACK, config_file=config_file(STACK), overrides={"keel:services": _services()}, prior=state)
    assert second.error is None, second.error
    plan = readback.plan(state, second.resources)
    assert plan.empty, described(plan, second)
