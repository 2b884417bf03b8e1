"""ObservabilityStack: metrics, dashboards and alerts for everything on the host.

Declares, as swarm services on the internal overlay network only (no published port):

- Prometheus (data on a protected volume, retention from observability/retention_days);
- Alertmanager, routing to the configured receiver (on its own egress network as well when
  there is one: the internal network has no way out);
- Grafana, with a provisioned datasource and dashboards, its admin password a swarm secret
  file; the proxy reaches it on the internal network (``grafana_upstream``);
- node-exporter (global, reading the host's filesystems and the backup job's textfile
  directory) and cAdvisor (global, per-container memory, CPU and limits);
- nginx-prometheus-exporter (the proxy's stub_status), the nginx access-log exporter (status
  codes, for the 5xx alert) and the blackbox exporter (certificate expiry);
- one postgres_exporter or redis_exporter per postgres or redis store.

Every file is a ``docker.ServiceConfig`` without a name: configs are immutable, so Pulumi
creates the replacement first, the service rolls to it, and the old one is deleted.

Two exporters (nginx-prometheus-exporter and the nginx log exporter) ship ``FROM scratch``
images with no shell or HTTP client, so swarm cannot probe them: their health check is
disabled explicitly and their liveness is watched by Prometheus (TargetDown/TargetMissing).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components import swarm
from components.host import Host
from config import capacity
from config.loader import Stack
from config.models import AppService, Logging, PostgresStore, RedisStore, Store
from render import grafana as gf
from render import nginx
from render import observability as obs
from render.data_volume import prepare_script

ROLE_LABEL = "keel.role"
ROLE = "observability"
MIB = 1024 * 1024
PROMETHEUS_OWNER = "65534:65534"
"""prom/prometheus runs as nobody."""
GRAFANA_OWNER = "472:0"
"""grafana/grafana runs as uid 472, group root."""
NODE_MOUNTS_EXCLUDE = "^/(dev|etc|proc|run|sys|textfile|var/lib/docker/.+)($|/)"
"""Mount points node-exporter leaves out (matched after the /host prefix is stripped).

Swarm cannot give a service the host's PID namespace, so node-exporter reads the mount table of
its own container: the host's filesystems under /host (bind-mounted recursively, so /mnt/data is
there) plus the container's own bind mounts (/etc/hosts, /etc/hostname, /etc/resolv.conf and the
textfile directory). Those would each report the root disk again under another mount point, and
the disk alert would fire once per copy.
"""


class AppLike(Protocol):
    """What the stack needs of an AppService component."""

    @property
    def spec(self) -> AppService: ...

    @property
    def service_name(self) -> str: ...


class StoreLike(Protocol):
    """What the stack needs of a StatefulStore component."""

    @property
    def spec(self) -> Store: ...

    @property
    def service_name(self) -> str: ...

    @property
    def password(self) -> pulumi.Output[str] | None: ...

    @property
    def password_secret(self) -> docker.Secret | None: ...


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _as_secret(value: pulumi.Output[str]) -> pulumi.Output[str]:
    """The value, marked secret whatever its source (Output.secret's stub types it too loosely for mypy)."""
    return cast(pulumi.Output[str], pulumi.Output.secret(cast(Any, value)))


def _wget(url: str) -> list[str]:
    return ["CMD", "wget", "-q", "-O", "/dev/null", url]


class ObservabilityStack(pulumi.ComponentResource):
    """Prometheus, Alertmanager, Grafana and the exporters of one stack.

    Outputs: ``grafana_admin_password`` (secret), ``grafana_upstream`` (where the proxy sends
    Grafana's traffic), ``access_log_syslog_target`` (where the proxy sends its access log),
    ``services`` (part name -> docker.Service), ``prometheus_volume``.
    """

    spec: obs.ObservabilitySpec
    grafana_upstream: obs.GrafanaUpstream
    grafana_admin_password: pulumi.Output[str]
    access_log_syslog_target: str
    proxy_access_log: str
    """The proxy's extra access_log destination (syslog to the log exporter): the 5xx alert's source."""
    services: dict[str, docker.Service]
    prometheus_volume: docker.Volume
    egress_network: docker.Network | None

    def __init__(
        self,
        name: str,
        *,
        stack: Stack,
        apps: Mapping[str, AppLike],
        stores: Mapping[str, StoreLike],
        proxy_service_name: str,
        network: docker.Network,
        textfile_dir: str | None,
        name_prefix: str,
        proxy_https_port: int | None = None,
        host: Host | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``textfile_dir``: host directory node-exporter reads ``*.prom`` files from (the backup job
        writes there); None leaves the textfile collector off. ``proxy_https_port``: the port the
        proxy's container listens on for HTTPS on the overlay (default proxy/https_port).
        ``host``: where Prometheus' and Grafana's volumes live (under its data directory, the data
        volume on hcloud); None keeps them in Docker's own storage."""
        cfg = stack.config
        # Validate (and render nothing) before registering anything: a config mistake leaves no trace.
        self.spec = obs.observability_spec(
            cfg,
            name_prefix=name_prefix,
            proxy_service_name=proxy_service_name,
            app_service_names={key: app.service_name for key, app in apps.items()},
            store_service_names={key: store.service_name for key, store in stores.items()},
            proxy_https_port=proxy_https_port,
        )
        super().__init__("keel:index:ObservabilityStack", name, {}, opts)
        self._name = name
        self._network = network
        self._child = pulumi.ResourceOptions(parent=self)
        spec = self.spec
        images = cfg.observability
        self.grafana_upstream = spec.grafana
        self.access_log_syslog_target = spec.syslog_target
        self.proxy_access_log = obs.nginx_access_log_destination(spec)
        self.services = {}

        receiver = spec.receiver
        self.egress_network = None
        if spec.needs_egress:
            self.egress_network = docker.Network(
                f"{name}-alerts-egress",
                docker.NetworkArgs(
                    name=f"{name_prefix}-alerts-egress",
                    driver="overlay",
                    internal=False,
                    attachable=False,
                    labels=[docker.NetworkLabelArgs(label=ROLE_LABEL, value=ROLE)],
                ),
                opts=self._child,
            )

        # ---------------------------------------------------------------- prometheus
        # Thirty days of metrics, on the data volume (bounded by retention.size): the root disk
        # must never fill, or Docker stops.
        self.prometheus_volume = self._volume(
            "prometheus-data", f"{name_prefix}-prometheus-data", PROMETHEUS_OWNER, images.prometheus_image, host
        )
        self._add(
            "prometheus",
            image=images.prometheus_image,
            args=obs.prometheus_args(spec),
            configs=[
                self._config("prometheus-config", obs.render_prometheus_yml(spec), obs.PROMETHEUS_CONFIG_FILE),
                self._config(
                    "prometheus-rules",
                    obs.render_alert_rules(spec),
                    f"{obs.PROMETHEUS_CONFIG_DIR}/{obs.RULES_FILE}",
                ),
            ],
            mounts=[
                docker.ServiceTaskSpecContainerSpecMountArgs(
                    target="/prometheus", source=self.prometheus_volume.name, type="volume"
                )
            ],
            health=_wget(f"http://127.0.0.1:{obs.PROMETHEUS_PORT}/-/healthy"),
            # Two Prometheus processes cannot share one TSDB directory: stop the old task first.
            order="stop-first",
        )

        # ---------------------------------------------------------------- alertmanager
        alert_secrets = []
        if receiver.kind == "email" and receiver.smtp_password_secret:
            smtp_password = stack.secrets[receiver.smtp_password_secret]
            alert_secrets.append(self._secret("alert-smtp-password", smtp_password, obs.SMTP_PASSWORD_FILE))
        if receiver.kind == "webhook" and receiver.webhook_url_secret:
            alert_secrets.append(
                self._secret("alert-webhook-url", stack.secrets[receiver.webhook_url_secret], obs.WEBHOOK_URL_FILE)
            )
        if receiver.heartbeat_url_secret:
            alert_secrets.append(
                self._secret(
                    "alert-heartbeat-url", stack.secrets[receiver.heartbeat_url_secret], obs.HEARTBEAT_URL_FILE
                )
            )
        self._add(
            "alertmanager",
            image=images.alertmanager_image,
            args=[
                f"--config.file={obs.ALERTMANAGER_CONFIG_FILE}",
                "--storage.path=/alertmanager",
                # One instance: no gossip port to open.
                "--cluster.listen-address=",
            ],
            configs=[
                self._config("alertmanager-config", obs.render_alertmanager_yml(spec), obs.ALERTMANAGER_CONFIG_FILE)
            ],
            secrets=alert_secrets,
            mounts=[_tmpfs("/alertmanager")],
            health=_wget(f"http://127.0.0.1:{obs.ALERTMANAGER_PORT}/-/healthy"),
            extra_networks=[self.egress_network] if self.egress_network is not None else [],
        )

        # ---------------------------------------------------------------- grafana
        if images.grafana_admin_password_secret:
            password = _as_secret(stack.secrets[images.grafana_admin_password_secret])
        else:
            generated = random.RandomPassword(
                f"{name}-grafana-admin-password",
                random.RandomPasswordArgs(length=32, special=False),
                opts=self._child,
            )
            password = _as_secret(generated.result)
        self.grafana_admin_password = password
        dashboards = gf.render_dashboards(spec)
        grafana_volume = self._volume(
            "grafana-data", f"{name_prefix}-grafana-data", GRAFANA_OWNER, images.grafana_image, host
        )
        self._add(
            "grafana",
            image=images.grafana_image,
            env=gf.grafana_env(spec),
            configs=[
                self._config("grafana-datasources", gf.render_datasources(spec), gf.DATASOURCES_FILE),
                self._config("grafana-dashboard-provider", gf.render_dashboard_provider(), gf.DASHBOARD_PROVIDER_FILE),
                *(
                    self._config(f"grafana-dashboard-{file.removesuffix('.json')}", text, f"{gf.DASHBOARDS_DIR}/{file}")
                    for file, text in dashboards.items()
                ),
            ],
            secrets=[self._secret("grafana-admin-password", password, gf.ADMIN_PASSWORD_FILE)],
            # Its database (users, sessions, preferences, dashboards saved in the UI) survives restarts.
            mounts=[
                docker.ServiceTaskSpecContainerSpecMountArgs(
                    target=gf.DATA_DIR, source=grafana_volume.name, type="volume"
                )
            ],
            health=_wget(f"http://127.0.0.1:{obs.GRAFANA_PORT}/api/health"),
            read_only=False,
        )

        # ---------------------------------------------------------------- host and containers
        node_mounts = [_bind("/", "/host", propagation="rslave")]
        node_args = ["--path.rootfs=/host", f"--collector.filesystem.mount-points-exclude={NODE_MOUNTS_EXCLUDE}"]
        if textfile_dir is not None:
            node_mounts.append(_bind(textfile_dir, "/textfile"))
            node_args.append("--collector.textfile.directory=/textfile")
        self._add(
            "node-exporter",
            image=images.node_exporter_image,
            args=node_args,
            mounts=node_mounts,
            health=_wget(f"http://127.0.0.1:{obs.NODE_EXPORTER_PORT}/"),
            global_mode=True,
        )
        self._add(
            "cadvisor",
            image=images.cadvisor_image,
            args=[
                "--docker_only=true",
                "--housekeeping_interval=30s",
                # Only the labels the alerts and dashboards group by: a label per image label
                # would multiply the series.
                "--store_container_labels=false",
                "--whitelisted_container_labels=com.docker.swarm.service.name,com.docker.swarm.task.name",
                "--disable_metrics=advtcp,cpu_topology,cpuset,disk,diskIO,hugetlb,memory_numa,percpu,"
                "perf_event,process,referenced_memory,resctrl,sched,tcp,udp",
            ],
            mounts=[
                _bind("/", "/rootfs"),
                _bind("/var/run", "/var/run"),
                _bind("/sys", "/sys"),
                _bind("/var/lib/docker", "/var/lib/docker"),
                _bind("/dev/disk", "/dev/disk"),
            ],
            health=_wget(f"http://127.0.0.1:{obs.CADVISOR_PORT}/healthz"),
            global_mode=True,
            user="0:0",
        )

        # ---------------------------------------------------------------- the proxy
        self._add(
            "nginx-exporter",
            image=images.nginx_exporter_image,
            args=[f"--nginx.scrape-uri={spec.nginx_scrape_uri}", f"--web.listen-address=:{obs.NGINX_EXPORTER_PORT}"],
            health=None,
        )
        self._add(
            "nginxlog-exporter",
            image=images.nginxlog_exporter_image,
            args=[f"-config-file={obs.NGINXLOG_CONFIG_FILE}"],
            configs=[self._config("nginxlog-config", obs.render_nginxlog_yml(spec), obs.NGINXLOG_CONFIG_FILE)],
            health=None,
        )
        self._add(
            "blackbox-exporter",
            image=images.blackbox_exporter_image,
            args=[f"--config.file={obs.BLACKBOX_CONFIG_FILE}"],
            configs=[self._config("blackbox-config", obs.render_blackbox_yml(spec), obs.BLACKBOX_CONFIG_FILE)],
            health=_wget(f"http://127.0.0.1:{obs.BLACKBOX_PORT}/-/healthy"),
        )

        # ---------------------------------------------------------------- stores
        for target in spec.stores:
            store = stores[target.name]
            password_file = f"{obs.SECRETS_DIR}/{target.name}-password"
            secrets = []
            if store.password_secret is not None:
                secrets.append(_mount_secret(store.password_secret, password_file))
            part = f"{target.name}-exporter"
            if isinstance(store.spec, PostgresStore):
                self._add(
                    part,
                    image=images.postgres_exporter_image,
                    env=obs.postgres_exporter_env(
                        target,
                        store.spec.database,
                        store.spec.user,
                        password_file if store.password_secret is not None else None,
                    ),
                    secrets=secrets,
                    health=_wget(f"http://127.0.0.1:{obs.POSTGRES_EXPORTER_PORT}/"),
                    memory_mb=capacity.POSTGRES_EXPORTER_MB,
                )
            elif isinstance(store.spec, RedisStore):
                self._add(
                    part,
                    image=images.redis_exporter_image,
                    commands=obs.redis_exporter_command(
                        target, password_file if store.password_secret is not None else None
                    ),
                    secrets=secrets,
                    health=_wget(f"http://127.0.0.1:{obs.REDIS_EXPORTER_PORT}/health"),
                    memory_mb=capacity.REDIS_EXPORTER_MB,
                )

        self.register_outputs(
            {
                "grafana_admin_password": self.grafana_admin_password,
                "grafana_url": self.grafana_upstream.root_url,
                "access_log_syslog_target": self.access_log_syslog_target,
            }
        )

    def nginx_upstream(self) -> nginx.NginxUpstream:
        """The upstream the proxy adds for Grafana (every task, re-resolved at run time)."""
        upstream = self.grafana_upstream
        server = f"tasks.{upstream.service_name}:{upstream.port}"
        return nginx.NginxUpstream(name=upstream.service_name, servers=(server,))

    def nginx_routes(self) -> tuple[nginx.NginxRoute, ...]:
        """The proxy's routes to Grafana (render.observability.grafana_routes)."""
        return obs.grafana_routes(self.grafana_upstream)

    # ------------------------------------------------------------------ helpers

    def _volume(self, part: str, volume_name: str, owner: str, image: str, host: Host | None) -> docker.Volume:
        """A protected volume; on a host with a data directory, bind-backed there and owned by ``owner``."""
        labels = [docker.VolumeLabelArgs(label=ROLE_LABEL, value=ROLE)]
        protected = pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True)
        if host is None or host.data_dir is None:
            return docker.Volume(
                f"{self._name}-{part}", docker.VolumeArgs(name=volume_name, labels=labels), opts=protected
            )
        directory = f"{host.data_dir}/volumes/{volume_name}"
        prepared = host.run(
            f"{self._name}-{part}-dir",
            create=prepare_script(directory=directory, owner=owner, image=image),
            opts=self._child,
        )
        return docker.Volume(
            f"{self._name}-{part}",
            docker.VolumeArgs(
                name=volume_name,
                driver="local",
                driver_opts={"type": "none", "o": "bind", "device": directory},
                labels=labels,
            ),
            opts=pulumi.ResourceOptions.merge(protected, pulumi.ResourceOptions(depends_on=[prepared])),
        )

    def _config(self, part: str, text: str, path: str) -> docker.ServiceTaskSpecContainerSpecConfigArgs:
        config = docker.ServiceConfig(
            f"{self._name}-{part}",
            docker.ServiceConfigArgs(
                data=_b64(text), labels=[docker.ServiceConfigLabelArgs(label=ROLE_LABEL, value=ROLE)]
            ),
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=False),
        )
        return docker.ServiceTaskSpecContainerSpecConfigArgs(
            config_id=config.id, config_name=config.name, file_name=path, file_mode=0o444
        )

    def _secret(self, part: str, value: pulumi.Output[str], path: str) -> docker.ServiceTaskSpecContainerSpecSecretArgs:
        secret = docker.Secret(
            f"{self._name}-{part}",
            docker.SecretArgs(
                data=_as_secret(value).apply(_b64),
                labels=[docker.SecretLabelArgs(label=ROLE_LABEL, value=ROLE)],
            ),
            opts=self._child,
        )
        return _mount_secret(secret, path)

    def _add(
        self,
        part: str,
        *,
        image: str,
        health: list[str] | None,
        args: Sequence[str] | None = None,
        commands: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        configs: Sequence[docker.ServiceTaskSpecContainerSpecConfigArgs] = (),
        secrets: Sequence[docker.ServiceTaskSpecContainerSpecSecretArgs] = (),
        mounts: Sequence[docker.ServiceTaskSpecContainerSpecMountArgs] = (),
        memory_mb: int | None = None,
        global_mode: bool = False,
        order: str = "start-first",
        read_only: bool = True,
        user: str | None = None,
        extra_networks: Sequence[docker.Network] = (),
    ) -> docker.Service:
        limit_mb = memory_mb if memory_mb is not None else capacity.OBSERVABILITY_LIMITS_MB[part]
        logging = Logging()
        service_name = f"{self.spec.names.prefix}-{part}"
        healthcheck = (
            docker.ServiceTaskSpecContainerSpecHealthcheckArgs(
                tests=health, interval="30s", timeout="5s", retries=3, start_period="30s"
            )
            if health is not None
            else docker.ServiceTaskSpecContainerSpecHealthcheckArgs(tests=["NONE"])
        )
        service = docker.Service(
            f"{self._name}-{part}",
            docker.ServiceArgs(
                name=service_name,
                labels=[
                    docker.ServiceLabelArgs(label=ROLE_LABEL, value=ROLE),
                    *(
                        []
                        if health is not None
                        # No shell in the image to probe with: Prometheus' TargetDown watches it.
                        else [docker.ServiceLabelArgs(label=swarm.HEALTH_LABEL, value=swarm.HEALTH_BY_PROMETHEUS)]
                    ),
                ],
                mode=docker.ServiceModeArgs(global_=True)
                if global_mode
                else docker.ServiceModeArgs(replicated=docker.ServiceModeReplicatedArgs(replicas=1)),
                task_spec=docker.ServiceTaskSpecArgs(
                    container_spec=docker.ServiceTaskSpecContainerSpecArgs(
                        image=image,
                        args=list(args) if args is not None else None,
                        commands=list(commands) if commands is not None else None,
                        env=dict(env) if env else None,
                        configs=list(configs) or None,
                        secrets=list(secrets) or None,
                        mounts=list(mounts) or None,
                        healthcheck=healthcheck,
                        read_only=read_only,
                        user=user,
                        stop_grace_period="30s",
                    ),
                    resources=docker.ServiceTaskSpecResourcesArgs(
                        limits=docker.ServiceTaskSpecResourcesLimitsArgs(memory_bytes=limit_mb * MIB),
                        reservation=docker.ServiceTaskSpecResourcesReservationArgs(memory_bytes=limit_mb // 2 * MIB),
                    ),
                    restart_policy=docker.ServiceTaskSpecRestartPolicyArgs(
                        condition="any", delay="5s", window="30s", max_attempts=0
                    ),
                    log_driver=docker.ServiceTaskSpecLogDriverArgs(
                        name="json-file", options={"max-size": logging.max_size, "max-file": str(logging.max_file)}
                    ),
                    networks_advanceds=[
                        docker.ServiceTaskSpecNetworksAdvancedArgs(id=net.id)
                        for net in (self._network, *extra_networks)
                    ],
                ),
                endpoint_spec=docker.ServiceEndpointSpecArgs(mode="vip"),
                update_config=docker.ServiceUpdateConfigArgs(
                    parallelism=1, delay="5s", order=order, failure_action="rollback", monitor="30s"
                ),
                rollback_config=docker.ServiceRollbackConfigArgs(
                    parallelism=1, delay="5s", order=order, failure_action="pause", monitor="30s"
                ),
            ),
            opts=self._child,
        )
        self.services[part] = service
        return service


def _bind(source: str, target: str, *, propagation: str | None = None) -> docker.ServiceTaskSpecContainerSpecMountArgs:
    return docker.ServiceTaskSpecContainerSpecMountArgs(
        target=target,
        source=source,
        type="bind",
        read_only=True,
        bind_options=docker.ServiceTaskSpecContainerSpecMountBindOptionsArgs(propagation=propagation)
        if propagation
        else None,
    )


def _tmpfs(target: str) -> docker.ServiceTaskSpecContainerSpecMountArgs:
    return docker.ServiceTaskSpecContainerSpecMountArgs(
        target=target,
        type="tmpfs",
        tmpfs_options=docker.ServiceTaskSpecContainerSpecMountTmpfsOptionsArgs(size_bytes=64 * MIB),
    )


def _mount_secret(secret: docker.Secret, path: str) -> docker.ServiceTaskSpecContainerSpecSecretArgs:
    return docker.ServiceTaskSpecContainerSpecSecretArgs(
        secret_id=secret.id, secret_name=secret.name, file_name=path, file_mode=0o444
    )
