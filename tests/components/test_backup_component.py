"""The BackupJob component under Pulumi's mock runtime, built directly with fake stores."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

import pulumi_docker as docker
import pytest

from components.backup_job import CACHE_DIR, IMAGE_CONTEXT, JOB_MB, SCHEDULER_MB, BackupJob
from config import capacity
from config.loader import parse
from config.models import StackConfig
from render import backup as bk
from tests.helpers import FakeStore, host_scaffold, stack_values, store_clients, store_password, with_fragment
from tools import mockrun

SERVICE = "docker:index/service:Service"
CONFIG = "docker:index/serviceConfig:ServiceConfig"
SECRET = "docker:index/secret:Secret"
NETWORK = "docker:index/network:Network"
IMAGE = "docker:index/remoteImage:RemoteImage"
SECRETS = {
    "backup_password": "restic-repo-password-5b1e",
    "backup_access_key": "s3-access-key-77c2",
    "backup_secret_key": "s3-secret-key-0e9a",
}
BACKUP = {
    "enabled": True,
    "schedule": "15 */2 * * *",
    "check_schedule": "45 3 * * 6",
    "retention": {"hourly": 12, "daily": 5, "weekly": 3, "monthly": 2},
    "repository": {"bucket": "shop-backups", "endpoint": "https://fsn1.your-objectstorage.com"},
}


def stack_config(extra: dict[str, Any] | None = None) -> StackConfig:
    fragment = {
        "keel:backup": BACKUP,
        "keel:services": {"uploads": {"kind": "volume", "sqlite_files": ["data/app.db"]}},
        **(extra or {}),
    }
    values = stack_values("prod")
    values.update(with_fragment("prod", fragment))
    raw = {key.split(":", 1)[1]: json.dumps(v) if isinstance(v, (dict, list)) else str(v) for key, v in values.items()}
    return parse(raw)


@dataclass
class Declared:
    resources: list[mockrun.Registered]
    component: BackupJob

    def services(self) -> dict[str, mockrun.Registered]:
        return {r.inputs["name"]: r for r in self.resources if r.type == SERVICE}

    def by_id(self, type_: str, resource_id: str) -> mockrun.Registered:
        # The mocks give every resource the id "<name>-id".
        found = [r for r in self.resources if r.type == type_ and r.name == resource_id.removesuffix("-id")]
        assert len(found) == 1, f"expected one {type_} with id {resource_id}"
        return found[0]

    def container(self, service: str) -> dict[str, Any]:
        return dict(self.services()[service].inputs["taskSpec"]["containerSpec"])

    def labels(self, service: str) -> dict[str, str]:
        return {label["label"]: label["value"] for label in self.services()[service].inputs.get("labels", [])}


def declare(cfg: StackConfig) -> Declared:
    holder: dict[str, Any] = {}

    async def program() -> None:
        host = host_scaffold(cfg, stack_name="prod", secrets=SECRETS)
        stores: dict[str, FakeStore] = {}
        for key, store in cfg.stores().items():
            volume = docker.Volume(f"{key}-data", docker.VolumeArgs(name=f"shop-{key}-data"), opts=host.on_host)
            password, secret = store_password(key, store, host.on_host)
            users, client_secrets = store_clients(key, store, host.on_host)
            stores[key] = FakeStore(store, f"shop-{key}", volume, password, secret, users, client_secrets)
        holder["component"] = BackupJob(
            "backup",
            stack=host.stack,
            host=host.host,
            stores=stores,
            network=host.network,
            textfile_dir="/mnt/data/textfile",
            opts=host.on_host,
        )

    resources, error = mockrun.declare(program, stack="prod")
    assert error is None, error
    return Declared(resources, holder["component"])


@pytest.fixture(scope="module")
def prod() -> Declared:
    return declare(stack_config())


def test_declares_backup_check_and_drill_jobs(prod: Declared) -> None:
    # Their scheduler is the stack's (components/scheduled_job.py Scheduler, tests/components/test_jobs_graph.py).
    assert sorted(prod.services()) == ["shop-backup", "shop-backup-check", "shop-backup-drill"]
    component = [r for r in prod.resources if r.type == "keel:index:BackupJob"]
    assert len(component) == 1
    for resource in prod.resources:
        if resource.type in (SERVICE, CONFIG, SECRET, IMAGE) and resource.name.startswith("backup-"):
            assert resource.parent == component[0].urn, resource.urn


def test_jobs_run_on_their_cron_schedules_and_never_restart(prod: Declared) -> None:
    for service, schedule in (("shop-backup", "15 */2 * * *"), ("shop-backup-check", "45 3 * * 6")):
        labels = prod.labels(service)
        assert labels["swarm.cronjob.enable"] == "true", service
        assert labels["swarm.cronjob.schedule"] == schedule, service
        assert labels["swarm.cronjob.skip-running"] == "true", service
        registered = prod.services()[service]
        assert registered.inputs["mode"]["replicated"]["replicas"] == 0, registered.urn
        assert registered.inputs["taskSpec"]["restartPolicy"]["condition"] == "none", registered.urn
        # The scheduler scales the job up and down: not drift for Pulumi to undo.
        assert "mode" in registered.ignore_changes, registered.urn
    assert not any(label.startswith("swarm.cronjob") for label in prod.labels("shop-backup-drill"))
    assert prod.container("shop-backup")["commands"] == ["sh", "/etc/keel-backup/backup.sh"]
    assert prod.container("shop-backup-check")["commands"] == ["sh", "/etc/keel-backup/check.sh"]
    assert prod.container("shop-backup-drill")["commands"] == ["sh", "/etc/keel-backup/drill.sh"]
    assert prod.component.drill_command == "docker service update --force --replicas 1 shop-backup-drill"


def test_what_the_scheduler_changes_on_each_run_is_not_drift(prod: Declared) -> None:
    # swarm-cronjob (internal/worker/worker.go) sets the replicas to 1 and TaskTemplate.ForceUpdate
    # to the service's version on every run; a refresh would otherwise show both as changes.
    for service in ("shop-backup", "shop-backup-check", "shop-backup-drill"):
        registered = prod.services()[service]
        assert set(registered.ignore_changes) >= {"mode", "taskSpec.forceUpdate"}, registered.urn
    # The path names a real input (taskSpec.force_update, camelCase as the engine sees it).
    assert isinstance(docker.ServiceTaskSpecArgs.force_update, property)


def test_a_job_changes_only_once_no_run_of_it_is_in_progress(prod: Declared) -> None:
    # Its replicas are ignored (the scheduler's), so an update sends the state's: zero would end a
    # run in progress. A host step waits for the job to be idle whenever its spec changes.
    by_urn = {r.urn: r for r in prod.resources}
    for service in ("shop-backup", "shop-backup-check", "shop-backup-drill"):
        registered = prod.services()[service]
        idle = [by_urn[urn] for urn in registered.depends_on if by_urn.get(urn) and urn.endswith("-idle")]
        assert len(idle) == 1, registered.urn
        script = idle[0].inputs["create"]
        assert f"service={service}" in script and "desired-state=running" in script
        # A scheduled job's schedule is paused until the update (which carries the spec's
        # fingerprint as a label, so it always follows the step) puts it back.
        paused = "--label-add swarm.cronjob.enable=false" in script
        assert paused == (service != "shop-backup-drill"), idle[0].urn
        assert prod.labels(service)["keel.spec"] in script, registered.urn


def test_temporary_files_go_to_the_disk_cache_not_the_small_tmpfs(prod: Declared) -> None:
    # restic writes its 16 MiB pack files (one per S3 connection) and check's fresh cache to
    # TMPDIR; the 16 MiB /tmp tmpfs would end the first real dump with "no space left on device".
    for service in ("shop-backup", "shop-backup-check", "shop-backup-drill"):
        container = prod.container(service)
        mounts = {m["target"]: m for m in container["mounts"]}
        tmpdir = container["env"]["TMPDIR"]
        assert tmpdir.startswith(f"{CACHE_DIR}/"), service
        assert mounts[CACHE_DIR]["type"] == "volume", service
        assert mounts["/tmp"]["type"] == "tmpfs" and not tmpdir.startswith("/tmp"), service
        # common.sh creates KEEL_WORK_DIR before any tool runs, on a fresh volume too.
        assert container["env"]["KEEL_WORK_DIR"] == tmpdir, service


def test_every_store_has_a_backup_in_the_mounted_script(prod: Declared) -> None:
    scripts = {}
    for mounted in prod.container("shop-backup")["configs"]:
        config = prod.by_id(CONFIG, mounted["configId"])
        # Immutable configs are autonamed, so a changed script is created before the old one goes.
        assert "name" not in config.inputs, config.urn
        assert mounted["fileMode"] == 0o555
        scripts[mounted["fileName"]] = base64.b64decode(config.inputs["data"]).decode()
    expected = bk.render_backup_scripts(prod.component.spec)
    assert scripts == {f"/etc/keel-backup/{name}": text for name, text in expected.items()}
    backup_sh = scripts["/etc/keel-backup/backup.sh"]
    assert 'backup_postgres db "${KEEL_HOST_DB:-shop-db}"' in backup_sh
    assert 'backup_redis cache "${KEEL_HOST_CACHE:-shop-cache}"' in backup_sh
    # The run's deadline in its metrics is the one its health check enforces.
    assert "keel_deadline=$((keel_run_started + 7200))" in backup_sh
    assert "backup_sqlite uploads data/app.db" in backup_sh
    assert "backup_files uploads data/app.db" in backup_sh
    # The host only adds: no script the job mounts forgets or prunes (the maintenance workflow does).
    commands = {
        name: [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        for name, text in scripts.items()
    }
    assert not [
        (name, line) for name, lines in commands.items() for line in lines if re.search(r"\b(forget|prune)\b", line)
    ]
    common = scripts["/etc/keel-backup/common.sh"]
    assert "keel_default_repository=s3:https://fsn1.your-objectstorage.com/shop-backups/shop/prod\n" in common
    assert ': "${RESTIC_REPOSITORY:=$keel_default_repository}"' in common


def test_secrets_reach_the_jobs_as_files_and_never_as_plaintext(prod: Declared) -> None:
    mounted = {s["fileName"]: s for s in prod.container("shop-backup")["secrets"]}
    assert sorted(mounted) == [
        "/run/secrets/cache-password",
        "/run/secrets/db-password",
        "/run/secrets/restic-password",
        "/run/secrets/s3-access-key",
        "/run/secrets/s3-secret-key",
    ]
    for file_name, key in (
        ("/run/secrets/restic-password", "backup_password"),
        ("/run/secrets/s3-access-key", "backup_access_key"),
        ("/run/secrets/s3-secret-key", "backup_secret_key"),
    ):
        secret = prod.by_id(SECRET, mounted[file_name]["secretId"])
        assert base64.b64decode(secret.inputs["data"]).decode() == SECRETS[key], secret.urn
        assert secret.raw_inputs["data"].get(mockrun.SECRET_SIG) == mockrun.SECRET_VALUE, secret.urn
    # Each store's backup credentials (its backup role or user), never the apps' password.
    assert mounted["/run/secrets/db-password"]["secretId"] == "db-backup-password-id"
    assert mounted["/run/secrets/cache-password"]["secretId"] == "cache-backup-password-id"
    values = [*SECRETS.values(), "store-password-db", "store-password-cache"]
    for resource in prod.resources:
        for path, text in resource.plaintext_strings():
            for value in values:
                assert value not in text, f"{resource.urn} {path} holds a secret in plaintext"
                assert base64.b64encode(value.encode()).decode() not in text, f"{resource.urn} {path}"


def test_jobs_reach_stores_on_the_data_network_and_s3_through_their_own_egress(prod: Declared) -> None:
    networks = prod.services()["shop-backup"].inputs["taskSpec"]["networksAdvanceds"]
    assert [n["id"] for n in networks] == ["networks-data-id", "backup-egress-id"]
    egress = prod.by_id(NETWORK, "backup-egress-id")
    assert egress.inputs["name"] == "shop-backup-egress"
    assert not egress.inputs.get("internal", False), egress.urn


def test_store_volumes_are_mounted_read_only_unless_they_hold_sqlite(prod: Declared) -> None:
    mounts = {m["target"]: m for m in prod.container("shop-backup")["mounts"]}
    assert mounts["/stores/cache"]["source"] == "shop-cache-data" and mounts["/stores/cache"]["readOnly"] is True
    # Reading a WAL-mode SQLite file creates its -shm beside it.
    assert mounts["/stores/uploads"]["readOnly"] is False
    # PostgreSQL is dumped over the network; its files are never read directly.
    assert "/stores/db" not in mounts
    assert mounts["/textfile"] == {
        "type": "bind",
        "source": "/mnt/data/textfile",
        "target": "/textfile",
        "readOnly": False,
    }
    assert mounts["/cache"]["source"] == "shop-backup-cache"


def test_image_is_built_from_the_stores_postgres_and_redis_and_the_pinned_restic(prod: Declared) -> None:
    [image] = [r for r in prod.resources if r.type == IMAGE]
    # The store's own Redis: the drill's redis-check-rdb must read the RDB format it writes.
    assert image.inputs["build"]["buildArgs"] == {
        "POSTGRES_IMAGE": "postgres:16.6-alpine",
        "RESTIC_IMAGE": "restic/restic:0.18.0",
        "REDIS_IMAGE": "redis:7.4.1-alpine",
        # sqlite3 for the volume's SQLite file, from the base image's distribution.
        "APK_PACKAGES": "sqlite",
        "APT_PACKAGES": "sqlite3",
        "TOOL_CHECKS": "pg_dump --version && pg_dumpall --version && pg_restore --version && psql --version"
        " && redis-cli --version && redis-check-rdb --version && sqlite3 --version",
    }
    assert image.inputs["name"].startswith("shop-backup:")
    assert prod.container("shop-backup")["image"] == image.inputs["name"]


def test_image_is_built_through_the_providers_own_connection_to_the_host(prod: Declared) -> None:
    # The /build call on the docker provider's connection (ssh:// on Hetzner) sends the local
    # context to the host's daemon; the buildx path resolves its own "default builder" instead.
    [image] = [r for r in prod.resources if r.type == IMAGE]
    assert image.inputs["build"]["useLegacyBuilder"] is True
    assert image.inputs["build"]["context"] == str(IMAGE_CONTEXT)
    assert image.inputs["keepLocally"] is True


def test_job_limits_fit_the_backup_budget(prod: Declared) -> None:
    # The rest of the budget: the stack's scheduler and its Docker API proxy.
    assert JOB_MB + SCHEDULER_MB + capacity.DOCKER_API_PROXY_MB == capacity.BACKUP_MB
    for service in prod.services().values():
        limit = service.inputs["taskSpec"]["resources"]["limits"]["memoryBytes"]
        assert limit == JOB_MB * 1024 * 1024, service.urn
        assert service.inputs["taskSpec"]["logDriver"]["name"] == "json-file", service.urn


def test_jobs_are_ended_when_a_run_outlives_its_deadline(prod: Declared) -> None:
    deadlines = {}
    for service in ("shop-backup", "shop-backup-check", "shop-backup-drill"):
        tests = prod.container(service)["healthcheck"]["tests"]
        assert tests[0] == "CMD-SHELL", service
        deadlines[service] = int(tests[1].rsplit("-lt ", 1)[1].rstrip(" ]"))
    # The backup runs every two hours ("15 */2 * * *"); check and drill get the six-hour ceiling.
    assert deadlines == {"shop-backup": 7200, "shop-backup-check": 21600, "shop-backup-drill": 21600}


def test_jobs_of_a_node_share_one_hostname_so_their_restic_locks_are_told_apart(prod: Declared) -> None:
    hostnames = {prod.container(s).get("hostname") for s in ("shop-backup", "shop-backup-check", "shop-backup-drill")}
    assert hostnames == {"{{.Node.Hostname}}-keel-backup"}


def test_volume_left_out_of_backups_gets_no_job_step() -> None:
    declared = declare(stack_config({"keel:services": {"uploads": {"kind": "volume", "backup": False}}}))
    assert "uploads" not in declared.component.spec.store_names
    mounts = {m["target"] for m in declared.container("shop-backup")["mounts"]}
    assert "/stores/uploads" not in mounts
    # Nor its kind's scripts, nor sqlite3 in the image.
    assert "restore-sqlite.sh" not in bk.render_backup_scripts(declared.component.spec)
    [image] = [r for r in declared.resources if r.type == IMAGE]
    assert image.inputs["build"]["buildArgs"]["APK_PACKAGES"] == ""
