"""Workers and scheduled jobs as the program declares them, under the mock runtime (prod with a
worker and two jobs merged in, and the dev stack's own worker)."""

from __future__ import annotations

from typing import Any

import pytest

from components.app_service import monitor_seconds
from components.scheduled_job import SCHEDULER_OWNED_FIELDS
from components.swarm import CREATE_ONLY_FIELDS
from config import capacity
from config.models import SWARM_STOP_DELAY_S
from render import jobs, nginx
from render.backup import job_health_command
from tests.helpers import parsed, run_with, seconds, tag_of
from tools import mockrun

SERVICE = "docker:index/service:Service"
SECRET = "docker:index/secret:Secret"
COMMAND = "command:remote:Command"
FRAGMENT: dict[str, Any] = {
    "keel:services": {
        "mailer": {
            "kind": "worker",
            "image": "ghcr.io/example/shop-api:1.4.2",
            "command": ["node", "dist/worker.js"],
            "replicas": 2,
            "secrets": {"REDIS_URL": "store-url:cache"},
            "health": {"heartbeat_file": "/tmp/heartbeat", "heartbeat_max_age_s": 45},
            "stop_grace_period_s": 300,
            # Small enough that prod, with PITR's jobs and the Docker API proxies in its budget, fits its server.
            "resources": {"memory_mb": 96},
            "networks": ["data"],
        }
    },
    "keel:jobs": {
        "report": {
            "app": "api",
            "command": ["node", "dist/report.js"],
            "schedule": "0 3 * * *",
            "timeout_s": 1800,
            "env": {"REPORT_TO": "ops@example.com"},
            "secrets": {"JWT_SECRET": "jwt_secret", "SMTP_PASSWORD": "smtp_password"},
            "resources": {"memory_mb": 96},
        },
        "prune": {
            "image": "alpine:3.21",
            "command": ["sh", "-c", "find /uploads -type f -mtime +30 -delete"],
            "schedule": "30 4 * * *",
            "timeout_s": 600,
            "volumes": {"/uploads": "uploads"},
            "resources": {"memory_mb": 32},
            "networks": ["data"],
        },
    },
}


@pytest.fixture(scope="module")
def prod() -> mockrun.Run:
    run = run_with("prod", FRAGMENT)
    assert run.error is None, run.error
    return run


def labels(service: mockrun.Registered) -> dict[str, str]:
    return {item["label"]: item["value"] for item in service.inputs["labels"]}


def container(service: mockrun.Registered) -> dict[str, Any]:
    return dict(service.inputs["taskSpec"]["containerSpec"])


def by_name(run: mockrun.Run, name: str) -> mockrun.Registered:
    [found] = [s for s in run.of_type(SERVICE) if s.inputs["name"] == name]
    return found


# ----------------------------------------------------------------------------- workers


def test_a_worker_is_a_service_of_its_own_role_with_no_port_and_no_route(prod: mockrun.Run) -> None:
    worker = by_name(prod, "shop-mailer")
    assert labels(worker)["keel.role"] == "worker", worker.urn
    assert not (worker.inputs.get("endpointSpec") or {}).get("ports")
    assert worker.inputs["mode"]["replicated"]["replicas"] == 2
    cfg = parsed("prod", FRAGMENT)
    site = nginx.site_from_config(cfg.proxy, cfg.apps(), docker_service_name=cfg.names.app)
    upstreams = [server for upstream in site.upstreams for server in upstream.servers]
    assert "tasks.shop-api:3000" in upstreams and not [u for u in upstreams if "mailer" in u]


def test_a_worker_gets_an_apps_image_pinning_secrets_hardening_and_networks(prod: mockrun.Run) -> None:
    spec = container(by_name(prod, "shop-mailer"))
    assert tag_of(spec["image"]) == "ghcr.io/example/shop-api:1.4.2"
    assert spec["commands"] == ["node", "dist/worker.js"]
    assert spec["user"] == "10001:10001" and spec["readOnly"] is True and spec["capDrops"] == ["ALL"]
    assert spec["init"] is True
    assert spec["env"]["REDIS_URL_FILE"] == "/run/secrets/redis_url"
    assert [s["fileName"] for s in spec["secrets"]] == ["/run/secrets/redis_url"]
    networks = by_name(prod, "shop-mailer").inputs["taskSpec"]["networksAdvanceds"]
    assert networks == [{"id": "networks-data-id", "aliases": ["mailer"]}]


def test_a_worker_is_healthy_while_its_heartbeat_is_fresh(prod: mockrun.Run) -> None:
    health = container(by_name(prod, "shop-mailer"))["healthcheck"]
    assert health["tests"] == [
        "CMD-SHELL",
        '[ "$(( $(date +%s) - $(stat -c %Y /tmp/heartbeat) ))" -lt 45 ]',
    ]


def test_a_worker_stops_with_its_grace_period_and_rolls_like_an_app(prod: mockrun.Run) -> None:
    worker = by_name(prod, "shop-mailer")
    spec = parsed("prod", FRAGMENT).workers()["mailer"]
    assert container(worker)["stopSignal"] == "SIGTERM"
    assert container(worker)["stopGracePeriod"] == "5m"
    update = worker.inputs["updateConfig"]
    assert update["order"] == "start-first" and update["failureAction"] == "rollback"
    # The monitor window covers the old task's drain: 300 s of grace and swarm's 2 s stop delay.
    assert seconds(update["monitor"]) == monitor_seconds(spec) == 300 + SWARM_STOP_DELAY_S
    assert seconds(worker.inputs["convergeConfig"]["timeout"]) > 2 * seconds(update["monitor"])


def test_old_workers_finishing_their_jobs_are_budgeted_beside_their_replacements() -> None:
    budget = capacity.budget(parsed("prod", FRAGMENT))
    assert budget.limits()["mailer"] == 192
    # The api's start-first batch is 768 MiB; both old mailers draining beside two new ones is 192.
    assert budget.rollout_headroom_mb == 768
    small_api = {**FRAGMENT, "keel:services": {**FRAGMENT["keel:services"], "api": {"replicas": 1}}}
    assert capacity.budget(parsed("prod", small_api)).rollout_headroom_mb == 768


def test_the_dev_stack_shows_a_worker_with_public_images() -> None:
    run = mockrun.run("dev")
    assert run.error is None, run.error
    worker = by_name(run, "dev-worker")
    assert labels(worker)["keel.role"] == "worker"
    assert tag_of(container(worker)["image"]) == "redis:7.4.1-alpine"
    assert container(worker)["env"]["REDIS_PASSWORD_FILE"] == "/run/secrets/redis_password"


# ----------------------------------------------------------------------------- jobs


def test_a_job_runs_the_apps_release_with_the_apps_container_settings(prod: mockrun.Run) -> None:
    api, job = container(by_name(prod, "shop-api")), container(by_name(prod, "shop-job-report"))
    # The same pinned image (tag and digest) as the app.
    assert job["image"] == api["image"]
    assert job["user"] == api["user"] and job["readOnly"] == api["readOnly"] and job["capDrops"] == api["capDrops"]
    # The app's env and secrets, then the job's own (its JWT_SECRET replaces the app's file).
    for key, value in api["env"].items():
        assert job["env"][key] == value, key
    assert job["env"]["REPORT_TO"] == "ops@example.com"
    assert job["env"]["SMTP_PASSWORD_FILE"] == "/run/secrets/smtp_password"
    app_secrets = {s["fileName"]: s["secretId"] for s in api["secrets"]}
    job_secrets = {s["fileName"]: s["secretId"] for s in job["secrets"]}
    assert set(job_secrets) == set(app_secrets) | {"/run/secrets/smtp_password"}
    shared = set(app_secrets) - {"/run/secrets/jwt_secret"}
    assert {job_secrets[f] for f in shared} == {app_secrets[f] for f in shared}, "the app's swarm secrets, reused"
    assert job_secrets["/run/secrets/jwt_secret"] == "job-report-jwt_secret-id"
    assert {m["target"] for m in api["mounts"]} <= {m["target"] for m in job["mounts"]}


def test_a_job_answers_to_no_name_of_its_app(prod: mockrun.Run) -> None:
    job = by_name(prod, "shop-job-report")
    api = by_name(prod, "shop-api")
    attachments = job.inputs["taskSpec"]["networksAdvanceds"]
    # The app's networks by role; not monitoring, where Prometheus scrapes the app (a job serves no metrics).
    api_networks = {a["id"] for a in api.inputs["taskSpec"]["networksAdvanceds"]}
    assert {a["id"] for a in attachments} == api_networks - {"networks-monitoring-id"}
    assert all(not a.get("aliases") for a in attachments), attachments


def test_a_job_with_an_image_of_its_own_runs_as_an_unprivileged_user_with_its_volume(prod: mockrun.Run) -> None:
    job = container(by_name(prod, "shop-job-prune"))
    assert tag_of(job["image"]) == "alpine:3.21"
    assert job["user"] == "10001:10001" and job["readOnly"] is True and job["init"] is True
    mounts = {m["target"]: m for m in job["mounts"]}
    assert mounts["/uploads"]["source"] == "shop-uploads-data"
    assert mounts["/tmp"]["type"] == "tmpfs"
    assert by_name(prod, "shop-job-prune").inputs["taskSpec"]["networksAdvanceds"] == [{"id": "networks-data-id"}]


@pytest.mark.parametrize("name", ["report", "prune"])
def test_a_job_is_started_by_the_scheduler_and_never_restarts(prod: mockrun.Run, name: str) -> None:
    service = by_name(prod, f"shop-job-{name}")
    job = parsed("prod", FRAGMENT).jobs[name]
    found = labels(service)
    assert found["keel.role"] == "job"
    assert found["swarm.cronjob.enable"] == "true" and found["swarm.cronjob.schedule"] == job.schedule
    assert found["swarm.cronjob.skip-running"] == "true" and found["swarm.cronjob.replicas"] == "1"
    assert service.inputs["mode"]["replicated"]["replicas"] == 0
    assert service.inputs["taskSpec"]["restartPolicy"]["condition"] == "none"
    assert service.ignore_changes == [*SCHEDULER_OWNED_FIELDS, *CREATE_ONLY_FIELDS]
    assert service.inputs["taskSpec"]["placement"]["constraints"] == ["node.role==manager"]


@pytest.mark.parametrize("name", ["report", "prune"])
def test_a_jobs_command_runs_through_the_wrapper_within_its_deadline(prod: mockrun.Run, name: str) -> None:
    service = by_name(prod, f"shop-job-{name}")
    job = parsed("prod", FRAGMENT).jobs[name]
    spec = container(service)
    assert spec["commands"] == ["sh", f"{jobs.SCRIPTS_DIR}/{jobs.JOB_SCRIPT}", *job.command]
    [wrapper] = spec["configs"]
    assert wrapper["fileName"] == "/etc/keel-job/job.sh" and wrapper["fileMode"] == 0o555
    config = prod.one("docker:index/serviceConfig:ServiceConfig", "scheduler-job-wrapper")
    assert wrapper["configId"] == config.id
    assert spec["env"]["KEEL_JOB_NAME"] == name and spec["env"]["KEEL_JOB_SERVICE"] == f"shop-job-{name}"
    assert spec["env"]["KEEL_JOB_TIMEOUT_S"] == str(job.timeout_s)
    assert spec["env"]["KEEL_JOB_GRACE_S"] == str(job.stop_grace_period_s)
    assert spec["env"]["KEEL_TEXTFILE_DIR"] == "/textfile"
    textfile = [m for m in spec["mounts"] if m["target"] == "/textfile"]
    assert textfile == [{"target": "/textfile", "type": "bind", "readOnly": False, "source": "/mnt/data/metrics"}]
    deadline = jobs.run_deadline_s(timeout_s=job.timeout_s, grace_s=job.stop_grace_period_s)
    assert spec["healthcheck"]["tests"] == job_health_command(deadline)
    assert seconds(spec["stopGracePeriod"]) == job.stop_grace_period_s + 10


def test_a_job_changes_only_after_its_app_and_once_no_run_is_in_progress(prod: mockrun.Run) -> None:
    service = by_name(prod, "shop-job-report")
    idle = prod.one(COMMAND, "job-report-idle")
    assert idle.urn in service.depends_on
    assert by_name(prod, "shop-api").urn in service.depends_on and by_name(prod, "shop-api").urn in idle.depends_on
    script = idle.inputs["create"]
    assert "service=shop-job-report" in script
    assert "--label-add swarm.cronjob.enable=false" in script
    # The fingerprint the step ran for is a label of the service: each new one is an update.
    assert labels(service)["keel.spec"] in script
    # It waits as long as a run may last, not less.
    job = parsed("prod", FRAGMENT).jobs["report"]
    assert f"+ {jobs.run_deadline_s(timeout_s=job.timeout_s, grace_s=job.stop_grace_period_s)} ))" in script


def test_a_changed_job_gets_a_new_fingerprint_and_an_unchanged_one_keeps_it(prod: mockrun.Run) -> None:
    changed = {**FRAGMENT, "keel:jobs": {**FRAGMENT["keel:jobs"], "report": {**FRAGMENT["keel:jobs"]["report"]}}}
    changed["keel:jobs"]["report"]["env"] = {"REPORT_TO": "finance@example.com"}
    again = run_with("prod", changed)
    assert again.error is None, again.error
    assert (
        labels(by_name(again, "shop-job-report"))["keel.spec"] != labels(by_name(prod, "shop-job-report"))["keel.spec"]
    )
    assert labels(by_name(again, "shop-job-prune"))["keel.spec"] == labels(by_name(prod, "shop-job-prune"))["keel.spec"]


def test_the_one_off_run_command_is_an_output(prod: mockrun.Run) -> None:
    commands = prod.outputs["job_run_commands"]
    assert set(commands) == {"report", "prune"}
    assert "docker service update --detach --force --replicas 1 shop-job-report; fi" in commands["report"]
    assert "/mnt/data/metrics/job-tickets/shop-job-report" in commands["report"]


def test_jobs_are_in_the_memory_budget() -> None:
    limits = capacity.budget(parsed("prod", FRAGMENT)).limits()
    assert limits["job-report"] == 96 and limits["job-prune"] == 32
    prune = {**FRAGMENT["keel:jobs"]["prune"], "networks": None}
    only_jobs = parsed("dev", {"keel:jobs": {"prune": prune}})
    assert capacity.budget(only_jobs).limits()["scheduler"] == capacity.SCHEDULER_MB


# ----------------------------------------------------------------------------- the scheduler


def test_one_scheduler_serves_the_backups_and_the_jobs(prod: mockrun.Run) -> None:
    schedulers = [s for s in prod.of_type(SERVICE) if labels(s)["keel.role"] == "scheduler"]
    assert [s.inputs["name"] for s in schedulers] == ["shop-cronjob"]
    scheduled = [s.inputs["name"] for s in prod.of_type(SERVICE) if "swarm.cronjob.schedule" in labels(s)]
    backups = ["shop-backup", "shop-backup-check"]
    archive = ["shop-db-pitr-diff", "shop-db-pitr-drill", "shop-db-pitr-full"]
    assert sorted(scheduled) == [*backups, *archive, "shop-job-prune", "shop-job-report"]


def test_the_scheduler_moved_out_of_backups_keeps_its_state(prod: mockrun.Run) -> None:
    scheduler = by_name(prod, "shop-cronjob")
    # Where BackupJob declared it before the jobs shared it: an alias, so an update and not a
    # second service of the same name beside the old one.
    assert scheduler.aliases == [
        "urn:pulumi:prod::keel::keel:index:BackupJob$docker:index/service:Service::backup-scheduler"
    ]


def test_the_scheduler_logs_json_through_its_reader_into_the_textfile_directory(prod: mockrun.Run) -> None:
    scheduler = by_name(prod, "shop-cronjob")
    spec = container(scheduler)
    assert tag_of(spec["image"]) == "crazymax/swarm-cronjob:1.14.0"
    assert spec["commands"] == ["sh", "/etc/keel-scheduler/scheduler.sh"]
    assert spec["env"]["LOG_JSON"] == "true" and spec["env"]["TZ"] == "UTC"
    mounts = {m["target"]: m for m in spec["mounts"]}
    assert "/var/run/docker.sock" not in mounts  # the swarm API through its proxy (below)
    assert mounts["/textfile"]["source"] == "/mnt/data/metrics" and mounts["/textfile"]["readOnly"] is False
    assert mounts["/tmp"]["type"] == "tmpfs"  # its log's FIFO, on a read-only root
    assert scheduler.inputs["taskSpec"]["placement"]["constraints"] == ["node.role==manager"]
    prepare = prod.one(COMMAND, "scheduler-textfile-dir")
    assert prepare.urn in scheduler.depends_on
    assert prepare.inputs["create"] == (
        "mkdir -p /mnt/data/metrics && mkdir -p /mnt/data/metrics/job-tickets && chmod 1777 /mnt/data/metrics"
    )


def test_the_scheduler_drives_swarm_through_its_own_proxy_never_the_socket(prod: mockrun.Run) -> None:
    scheduler = by_name(prod, "shop-cronjob")
    spec = container(scheduler)
    assert all(m.get("source") != "/var/run/docker.sock" for m in spec["mounts"])
    assert spec["env"]["DOCKER_HOST"] == "tcp://shop-cronjob-docker-api:2375"
    assert spec["readOnly"] is True
    proxy = by_name(prod, "shop-cronjob-docker-api")
    [network] = [n["id"] for n in scheduler.inputs["taskSpec"]["networksAdvanceds"]]
    assert [n["id"] for n in proxy.inputs["taskSpec"]["networksAdvanceds"]] == [network]
    [net] = [r for r in prod.of_type("docker:index/network:Network") if f"{r.name}-id" == network]
    assert net.inputs["internal"] is True
    [socket] = container(proxy)["mounts"][:1]
    assert (socket["source"], socket["readOnly"]) == ("/var/run/docker.sock", True)
    assert labels(proxy)["keel.role"] == "socket-proxy"


def test_a_stack_with_jobs_and_no_backups_still_has_its_scheduler() -> None:
    run = run_with("dev", {"keel:jobs": {"tick": {"image": "alpine:3.21", "command": ["true"], "schedule": "* * * * *",
                                                    "resources": {"memory_mb": 16}}}})  # fmt: skip
    assert run.error is None, run.error
    assert by_name(run, "dev-cronjob") and by_name(run, "dev-job-tick")
    assert not [s for s in run.of_type(SERVICE) if s.inputs["name"].startswith("dev-backup")]
