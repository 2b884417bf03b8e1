"""Scheduled work: the stack's one scheduler, and the jobs of the ``jobs:`` section.

``Scheduler``: crazymax/swarm-cronjob, one small service on the manager reading the swarm API. It
scales a job service (zero replicas, labelled ``swarm.cronjob.*``) to one replica on its cron
schedule, and skips a tick while the previous run still has a running task (``skip-running``). Its
log goes through a reader (render/jobs.py ``scheduler_script``) that counts those skips for
Prometheus and issues run tickets. The backup jobs (components/backup_job.py) and the jobs below
share it.

``ScheduledJob``: one job, run with an app's container settings (``app:``, so the job always runs the
app's release) or an image of its own. Its command runs through a wrapper (``job_script``) that
stops it at its timeout and writes ``keel_job_*`` metrics for node-exporter's textfile collector.

What a deploy does to a job: when anything in its spec changes, a step on the host first pauses its
schedule and waits for a run in progress to end (``render.jobs.idle_script``), then the service is
updated (which restores the schedule). A start the scheduler did not ask for, such as the one an
update sends when a ``pulumi refresh`` recorded the replica the scheduler left, finds no run ticket
and runs nothing. One-off run: ``run_command`` (stack output ``job_run_commands``).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_docker as docker

from components import swarm
from components.app_service import SECRETS_DIR, AppService, network_id, secret_file_name, secret_value, store_mounts
from components.docker_api import DockerApiProxy
from components.host import Host
from components.networks import Networks
from components.stateful_store import StatefulStore
from config import capacity
from config.loader import Stack
from config.models import NETWORKS, JobSpec, Resources
from render import backup as bk
from render import docker_api, jobs

SCHEDULER_OWNED_FIELDS = ("mode", "taskSpec.forceUpdate")
"""Job service fields swarm-cronjob changes on each run (Pulumi property paths, camelCase): it sets
the replicas to its label's value and TaskTemplate.ForceUpdate to the service's version index
(crazy-max/swarm-cronjob v1.14.0 internal/worker/worker.go). Neither is drift to undo, or
`preview --refresh --expect-no-changes` fails after the first run."""
SPEC_LABEL = "keel.spec"
"""The job's spec fingerprint: every change of it is a service update, which puts the schedule back
after the idle step paused it."""
SCHEDULER_SCRIPTS_DIR = "/etc/keel-scheduler"
JOB_HEALTH_INTERVAL_S = 10
"""swarm-cronjob's skip-running counts tasks in state Running only, and a task with a health check is
Running only once its first probe passed (moby daemon/cluster/executor/container/controller.go,
Start waits for health): a short interval keeps that window small."""


def cron_labels(schedule: str) -> dict[str, str]:
    """The labels swarm-cronjob schedules a service by (internal/app/app.go, crudJob)."""
    return {
        "swarm.cronjob.enable": "true",
        "swarm.cronjob.schedule": schedule,
        "swarm.cronjob.skip-running": "true",
        "swarm.cronjob.replicas": "1",
    }


def fingerprint_of(*values: pulumi.Input[object], static: object) -> pulumi.Output[str]:
    """A digest of everything a job service is sent: resource ids and the settings around them."""
    return pulumi.Output.all(*values).apply(lambda ids: hashlib.sha256(repr([*ids, static]).encode()).hexdigest())


def idle_before_update(
    host: Host,
    resource_name: str,
    *,
    service_name: str,
    fingerprint: pulumi.Output[str],
    scheduled: bool,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
    timeout_s: int = jobs.IDLE_WAIT_S,
) -> pulumi.Resource:
    """The step the job service's update waits for: it runs whenever the fingerprint changes."""
    return host.run(
        resource_name,
        create=fingerprint.apply(
            lambda digest: jobs.idle_script(
                service=service_name, fingerprint=digest, scheduled=scheduled, timeout_s=timeout_s
            )
        ),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )


class Scheduler(pulumi.ComponentResource):
    """swarm-cronjob for the whole stack, with its log reader.

    Outputs: ``service`` (docker.Service), ``job_script`` (the jobs' wrapper, a swarm config, when
    the stack has jobs), ``tickets_dir`` (host directory of the run tickets) and ``prepared`` (the
    host step that creates it).
    """

    service: docker.Service
    api: DockerApiProxy
    job_script: docker.ServiceConfig | None
    tickets_dir: str
    prepared: pulumi.Resource

    def __init__(
        self,
        name: str,
        *,
        stack: Stack,
        host: Host,
        textfile_dir: str,
        with_jobs: bool,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``textfile_dir``: node-exporter's textfile directory on the host (skip counts, tickets and
        the jobs' reports live there); ``with_jobs``: whether the stack has a ``jobs:`` section."""
        super().__init__("keel:index:Scheduler", name, {}, opts)
        cfg = stack.config
        child = pulumi.ResourceOptions(parent=self)
        self.tickets_dir = f"{textfile_dir}/{jobs.TICKETS_DIR}"
        q = shlex.quote
        # The jobs run as their app's user, not root: the textfile directory is writable by all, like
        # /tmp (sticky: no one replaces a report that is not theirs). The tickets belong to the deploy
        # user (the one-off run command) and root (the scheduler); the jobs only read them.
        prepare = f"mkdir -p {q(textfile_dir)}"
        if with_jobs:
            prepare += f" && mkdir -p {q(self.tickets_dir)} && chmod 1777 {q(textfile_dir)}"
        self.prepared = host.run(f"{name}-textfile-dir", create=prepare, opts=child)
        reader = docker.ServiceConfig(
            f"{name}-reader", docker.ServiceConfigArgs(data=swarm.b64(jobs.scheduler_script())), opts=child
        )
        self.job_script = (
            docker.ServiceConfig(
                f"{name}-job-wrapper", docker.ServiceConfigArgs(data=swarm.b64(jobs.job_script())), opts=child
            )
            if with_jobs
            else None
        )
        # The service lived in BackupJob before the jobs shared it: the alias keeps it (an update,
        # not a new service beside the old one of the same name).
        moved_from = pulumi.Alias(name="backup-scheduler", parent=pulumi.create_urn("backup", "keel:index:BackupJob"))
        # swarm-cronjob's Docker client reads DOCKER_HOST (client.FromEnv, swarm-cronjob
        # internal/docker/client.go): a proxy that answers only what scheduling needs, never the socket.
        self.api = DockerApiProxy(
            f"{name}-docker-api",
            service_name=cfg.names.scheduler_api_proxy,
            network_name=cfg.names.scheduler_api_network,
            purpose="swarm-cronjob (services, tasks, nodes, events, service updates)",
            rules=docker_api.SCHEDULER,
            image=cfg.backup.docker_api_proxy_image,
            host=host,
            parent=self,
        )
        self.service = swarm.service(
            f"{name}-service",
            name=cfg.names.scheduler,
            role="scheduler",
            part=cfg.names.scheduler,
            image=host.image(cfg.backup.scheduler_image),
            command=["sh", f"{SCHEDULER_SCRIPTS_DIR}/{jobs.SCHEDULER_SCRIPT}"],
            # JSON lines: what the reader parses (the console format is coloured).
            env={
                "TZ": "UTC",
                "LOG_LEVEL": "info",
                "LOG_JSON": "true",
                "KEEL_TEXTFILE_DIR": jobs.TEXTFILE_TARGET,
                "DOCKER_HOST": self.api.endpoint,
            },
            configs=[swarm.file_config(reader, f"{SCHEDULER_SCRIPTS_DIR}/{jobs.SCHEDULER_SCRIPT}", 0o555)],
            mounts=[
                swarm.bind_mount(textfile_dir, jobs.TEXTFILE_TARGET, read_only=False),
                swarm.tmpfs_mount("/tmp", 1),
            ],
            # Alive. Whether it actually schedules is what the backup-age and job-late alerts watch.
            health=swarm.Health(("CMD-SHELL", "pgrep -x swarm-cronjob >/dev/null"), interval_s=60, start_period_s=10),
            # Root keeps Docker's default capabilities for now: its log reader rewrites run tickets the
            # deploy user created in the textfile directory (issue 17); the socket is no longer mounted.
            hardening=swarm.Hardening(cap_drop_all=False),
            stop_grace_s=10,
            resources=Resources(memory_mb=capacity.SCHEDULER_MB),
            # It drives services through the swarm API, which only managers answer.
            networks=[swarm.Attachment(self.api.network.id)],
            constraints=[host.pin],
            rollout=swarm.STOP_FIRST,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.prepared, self.api.service], aliases=[moved_from]
            ),
        )
        self.register_outputs({"tickets_dir": self.tickets_dir})


class ScheduledJob(pulumi.ComponentResource):
    """One scheduled job: a swarm service with no replica until the scheduler starts a run.

    Outputs: ``service`` (docker.Service), ``service_name`` and ``run_command`` (a one-off run, to
    run on the host).
    """

    service: docker.Service
    service_name: str
    run_command: str

    def __init__(
        self,
        name: str,
        *,
        spec: JobSpec,
        stack: Stack,
        host: Host,
        networks: Networks,
        scheduler: Scheduler,
        apps: Mapping[str, AppService],
        stores: Mapping[str, StatefulStore],
        textfile_dir: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("keel:index:ScheduledJob", name, {}, opts)
        cfg = stack.config
        self.service_name = cfg.names.job(name)
        self.run_command = jobs.run_command(service=self.service_name, tickets_dir=scheduler.tickets_dir)
        child = pulumi.ResourceOptions(parent=self)
        app = apps[spec.app] if spec.app is not None else None
        assert scheduler.job_script is not None  # the Scheduler was told the stack has jobs

        own_secrets = {
            env: docker.Secret(
                f"job-{name}-{secret_file_name(env)}",
                docker.SecretArgs(data=swarm.secret_data(secret_value(ref, stack, stores))),
                opts=child,
            )
            for env, ref in spec.secrets.items()
        }
        own_files = {f"{SECRETS_DIR}/{secret_file_name(env)}" for env in own_secrets}
        if app is not None:
            base = app.container
            # The job's own secret of the same name replaces the app's.
            inherited = tuple(s for s in base.secrets if s.file_name not in own_files)
            mounts = list(base.mounts)
            roles = spec.networks or app.spec.networks
        else:
            assert spec.image is not None  # guaranteed by the config model: app or image
            base = swarm.Container(
                image=host.image(spec.image),
                env={},
                hardening=swarm.Hardening(user=spec.user, init=True),
            )
            inherited = ()
            mounts = store_mounts(spec.volumes, stores)
            roles = spec.networks or list(NETWORKS)
        if not any(mount.target == "/tmp" for mount in mounts):
            mounts.append(swarm.tmpfs_mount("/tmp"))  # the wrapper's clock and markers
        mounts.append(swarm.bind_mount(textfile_dir, jobs.TEXTFILE_TARGET, read_only=False))

        env = {
            **base.env,
            **spec.env,
            **{f"{key}_FILE": f"{SECRETS_DIR}/{secret_file_name(key)}" for key in spec.secrets},
            "KEEL_JOB_NAME": name,
            "KEEL_JOB_SERVICE": self.service_name,
            "KEEL_JOB_TIMEOUT_S": str(spec.timeout_s),
            "KEEL_JOB_GRACE_S": str(spec.stop_grace_period_s),
            "KEEL_TEXTFILE_DIR": jobs.TEXTFILE_TARGET,
            "KEEL_TICKET_WAIT_S": str(jobs.TICKET_WAIT_S),
        }
        secrets = (
            *inherited,
            *(
                swarm.secret_file(secret, f"{SECRETS_DIR}/{secret_file_name(env_name)}")
                for env_name, secret in own_secrets.items()
            ),
        )
        # No aliases: the job must not answer to the app's name on the networks it shares with it.
        attachments = tuple(swarm.Attachment(network_id(networks, role)) for role in roles)
        constraints = tuple(dict.fromkeys([*base.constraints, host.pin]))
        container = swarm.Container(
            image=base.image,
            env=env,
            secrets=secrets,
            mounts=tuple(mounts),
            hardening=base.hardening,
            networks=attachments,
            # The tickets and the textfile directory are on the manager's disk.
            constraints=constraints,
            logging=spec.logging,
        )
        deadline_s = jobs.run_deadline_s(timeout_s=spec.timeout_s, grace_s=spec.stop_grace_period_s)
        fingerprint = fingerprint_of(
            container.image,
            scheduler.job_script.id,
            *[secret.secret_id for secret in secrets],
            *[attachment.network_id for attachment in attachments],
            static=json.dumps(
                {
                    "job": spec.model_dump(mode="json"),
                    "app": app.spec.model_dump(mode="json") if app is not None else None,
                    "textfile_dir": textfile_dir,
                    "deadline_s": deadline_s,
                },
                sort_keys=True,
            ),
        )
        # A job using an app's image changes after the app (its migration first): a run never meets
        # a schema older than its code.
        depends: list[pulumi.Resource] = [scheduler.prepared, *([app.service] if app is not None else [])]
        idle = idle_before_update(
            host,
            f"job-{name}-idle",
            service_name=self.service_name,
            fingerprint=fingerprint,
            scheduled=True,
            parent=self,
            depends_on=depends,
            timeout_s=max(jobs.IDLE_WAIT_S, deadline_s),
        )
        self.service = swarm.service(
            f"job-{name}-service",
            name=self.service_name,
            role="job",
            part=name,
            labels={**cron_labels(spec.schedule), SPEC_LABEL: fingerprint},
            # Zero replicas: the scheduler scales the job to one on its schedule.
            replicas=0,
            command=["sh", f"{jobs.SCRIPTS_DIR}/{jobs.JOB_SCRIPT}", *spec.command],
            configs=[swarm.file_config(scheduler.job_script, f"{jobs.SCRIPTS_DIR}/{jobs.JOB_SCRIPT}", 0o555)],
            # Unhealthy once the run outlives its deadline: swarm then ends it, should the wrapper's
            # own watchdog not have (render.backup.job_health_command).
            health=swarm.Health(
                tuple(bk.job_health_command(deadline_s)),
                interval_s=JOB_HEALTH_INTERVAL_S,
                timeout_s=5,
                start_period_s=30,
            ),
            resources=spec.resources,
            # The command's grace after SIGTERM, and time for the wrapper to write its report.
            stop_grace_s=spec.stop_grace_period_s + 10,
            # Never restarted: a failed run waits for its next tick (and shows in the metrics).
            restart="none",
            rollout=swarm.JOB,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*depends, idle], ignore_changes=list(SCHEDULER_OWNED_FIELDS)
            ),
            **container.settings(),
        )
        self.register_outputs({"service_name": self.service_name, "run_command": self.run_command})
