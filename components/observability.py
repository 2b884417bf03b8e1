"""ObservabilityStack: metrics, dashboards and alerts for everything on the host.

Declares, as swarm services that publish no port, each on the networks its role needs:

- Prometheus (data on a protected volume, retention from observability/retention_days);
- Alertmanager, routing to the configured receiver (on its own egress network as well when
  there is one: the monitoring network has no way out);
- Grafana, with a provisioned datasource and dashboards, its admin password a swarm secret
  file; the proxy reaches it on ``proxy-metrics`` (``grafana_upstream``);
- node-exporter (global, reading the host's filesystems and the backup job's textfile
  directory) and cAdvisor (global, per-container memory, CPU and limits);
- nginx-prometheus-exporter (the proxy's stub_status), the nginx access-log exporter (status
  codes, for the 5xx alert) and the blackbox exporter (certificate expiry);
- one exporter per store whose kind has one (postgres_exporter, redis_exporter, mysqld_exporter:
  the kind's ``exporter``, stores/<kind>/kind.py), logging in with the store's own exporter
  role or user where its kind has one (``clients``: statistics only).

Networks: everything scraped is on the monitoring network with Prometheus; Alertmanager shares a
network with Prometheus only (``alerting``), so nothing else can silence an alert; the proxy
reaches Grafana and its own exporters reach the proxy on ``proxy-metrics`` (``proxy_network``),
so the internet-facing proxy is on no network with Prometheus, the store exporters or cAdvisor;
store exporters also join the data network (their store), cAdvisor a network of its own with its
read-only Docker API proxy (components/docker_api.py). No service mounts the host's root or
/var/run: node-exporter reads / read-only as nobody (filesystem metrics), cAdvisor reads /sys,
/proc and the container layer ids read-only as nobody, and the Docker API through its proxy.

Every file is a ``docker.ServiceConfig`` without a name: configs are immutable, so Pulumi
creates the replacement first, the service rolls to it, and the old one is deleted.

Two exporters (nginx-prometheus-exporter and the nginx log exporter) ship ``FROM scratch``
images with no shell or HTTP client, so swarm cannot probe them: their health check is
disabled explicitly and their liveness is watched by Prometheus (TargetDown/TargetMissing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components import swarm
from components.docker_api import DockerApiProxy
from components.host import Host
from components.networks import Networks, encryption_labels, overlay, overlay_options, overlay_opts
from components.stateful_store import StoreLike
from config import capacity
from config.loader import Stack
from config.models import Resources
from render import docker_api, nginx
from render import grafana as gf
from render import observability as obs
from stores import registry

ROLE = "observability"
PROMETHEUS_OWNER = "65534:65534"
"""prom/prometheus runs as nobody."""
GRAFANA_OWNER = "472:0"
"""grafana/grafana runs as uid 472, group root."""
NOBODY = "65534:65534"
"""The exporters that read host paths run as nobody: root's files (keys, other users' processes'
environments and roots) stay out of reach of their read-only mounts."""
LAYER_IDS = "/var/lib/docker/image/overlay2/layerdb/mounts"
"""The one directory of Docker's root cAdvisor reads: each container's read-write layer id
(google/cadvisor v0.49.2, container/docker/handler.go, getRwLayerID), and nothing else of Docker's
state (swarm keys, volumes, other containers' files)."""
NODE_MOUNTS_EXCLUDE = "^/(dev|etc|proc|run|sys|textfile|var/lib/docker/.+)($|/)"
"""Mount points node-exporter leaves out (matched after the /host prefix is stripped).

Swarm cannot give a service the host's PID namespace, so node-exporter reads the mount table of
its own container: the host's filesystems under /host (bind-mounted recursively, so /mnt/data is
there) plus the container's own bind mounts (/etc/hosts, /etc/hostname, /etc/resolv.conf and the
textfile directory). Those would each report the root disk again under another mount point, and
the disk alert would fire once per copy.
"""


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
    proxy_network: docker.Network
    """The network the proxy joins to reach Grafana and be watched by its exporters."""

    def __init__(
        self,
        name: str,
        *,
        stack: Stack,
        host: Host,
        stores: Mapping[str, StoreLike],
        networks: Networks,
        textfile_dir: str | None,
        proxy_https_port: int | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``stores``: store name -> StatefulStore (their exporters read the password secrets);
        ``textfile_dir``: host directory node-exporter reads ``*.prom`` files from (the backup job
        writes there); None leaves the textfile collector off. ``proxy_https_port``: the port the
        proxy's container listens on for HTTPS on the overlay (default proxy/https_port)."""
        super().__init__("keel:index:ObservabilityStack", name, {}, opts)
        cfg = stack.config
        self.spec = obs.observability_spec(cfg, proxy_https_port=proxy_https_port)
        self._name = name
        self._host = host
        self._images = cfg.observability
        self._child = pulumi.ResourceOptions(parent=self)
        assert networks.monitoring is not None  # Networks creates it when observability is enabled
        self._monitoring = networks.monitoring
        self._data = networks.data
        names = self.spec.names
        self._alerting = overlay(
            f"{name}-alerting",
            name=names.alerting_network,
            role="alerting",
            internal=True,
            encrypted=host.cluster is not None,
            opts=self._child,
        )
        self.proxy_network = overlay(
            f"{name}-proxy-metrics", name=names.proxy_metrics_network, role="proxy-metrics", internal=True,
            encrypted=host.cluster is not None, opts=self._child,
        )  # fmt: skip
        self.grafana_upstream = self.spec.grafana
        self.access_log_syslog_target = self.spec.syslog_target
        self.proxy_access_log = obs.nginx_access_log_destination(self.spec)
        self.services = {}

        self._prometheus()
        self._alertmanager(stack)
        self._grafana(stack)
        self._host_exporters(textfile_dir)
        self._proxy_exporters()
        self._store_exporters(stores)
        self.register_outputs(
            {
                "grafana_admin_password": self.grafana_admin_password,
                "grafana_url": self.grafana_upstream.root_url,
                "access_log_syslog_target": self.access_log_syslog_target,
            }
        )

    # ------------------------------------------------------------------ parts

    def _prometheus(self) -> None:
        spec = self.spec
        # Thirty days of metrics, on the data volume (bounded by retention.size): the root disk
        # must never fill, or Docker stops.
        self.prometheus_volume = self._host.data_volume(
            f"{self._name}-prometheus-data",
            volume_name=spec.names.prometheus_volume,
            labels={swarm.ROLE_LABEL: ROLE},
            owner=PROMETHEUS_OWNER,
            image=self._images.prometheus_image,
            parent=self,
        )
        self._add(
            "prometheus",
            image=self._images.prometheus_image,
            args=obs.prometheus_args(spec),
            configs=[
                self._config("prometheus-config", obs.render_prometheus_yml(spec), obs.PROMETHEUS_CONFIG_FILE),
                self._config(
                    "prometheus-rules",
                    obs.render_alert_rules(spec),
                    f"{obs.PROMETHEUS_CONFIG_DIR}/{obs.RULES_FILE}",
                ),
            ],
            mounts=[swarm.volume_mount(self.prometheus_volume.name, "/prometheus")],
            health=_wget(f"http://127.0.0.1:{obs.PROMETHEUS_PORT}/-/healthy"),
            # Two Prometheus processes cannot share one TSDB directory: stop the old task first.
            order="stop-first",
            networks=[self._monitoring, self._alerting],
        )

    def _alertmanager(self, stack: Stack) -> None:
        receiver = self.spec.receiver
        self.egress_network = None
        if self.spec.needs_egress:
            # The internal network has no way out; alert delivery needs one.
            self.egress_network = docker.Network(
                f"{self._name}-alerts-egress",
                docker.NetworkArgs(
                    name=self.spec.names.alerts_egress_network,
                    driver="overlay",
                    internal=False,
                    attachable=False,
                    options=overlay_options(self._host.cluster is not None),
                    labels=[
                        docker.NetworkLabelArgs(label=swarm.ROLE_LABEL, value=ROLE),
                        docker.NetworkLabelArgs(label="keel.network", value="egress"),
                        *encryption_labels(self._host.cluster is not None),
                    ],
                ),
                opts=overlay_opts(self._child),
            )
        secrets = []
        if receiver.kind == "email" and receiver.smtp_password_secret:
            smtp_password = stack.secrets[receiver.smtp_password_secret]
            secrets.append(self._secret("alert-smtp-password", smtp_password, obs.SMTP_PASSWORD_FILE))
        if receiver.kind == "webhook" and receiver.webhook_url_secret:
            secrets.append(
                self._secret("alert-webhook-url", stack.secrets[receiver.webhook_url_secret], obs.WEBHOOK_URL_FILE)
            )
        if receiver.heartbeat_url_secret:
            secrets.append(
                self._secret(
                    "alert-heartbeat-url", stack.secrets[receiver.heartbeat_url_secret], obs.HEARTBEAT_URL_FILE
                )
            )
        self._add(
            "alertmanager",
            image=self._images.alertmanager_image,
            args=[
                f"--config.file={obs.ALERTMANAGER_CONFIG_FILE}",
                "--storage.path=/alertmanager",
                # One instance: no gossip port to open.
                "--cluster.listen-address=",
            ],
            configs=[
                self._config(
                    "alertmanager-config", obs.render_alertmanager_yml(self.spec), obs.ALERTMANAGER_CONFIG_FILE
                )
            ],
            secrets=secrets,
            mounts=[swarm.tmpfs_mount("/alertmanager", 64)],
            health=_wget(f"http://127.0.0.1:{obs.ALERTMANAGER_PORT}/-/healthy"),
            # Reachable from Prometheus only: no app, exporter or proxy can silence an alert.
            networks=[self._alerting, *([self.egress_network] if self.egress_network is not None else [])],
        )

    def _grafana(self, stack: Stack) -> None:
        spec = self.spec
        configured = self._images.grafana_admin_password_secret
        if configured:
            password = swarm.as_secret(stack.secrets[configured])
        else:
            generated = random.RandomPassword(
                f"{self._name}-grafana-admin-password",
                random.RandomPasswordArgs(length=32, special=False),
                opts=self._child,
            )
            password = swarm.as_secret(generated.result)
        self.grafana_admin_password = password
        dashboards = gf.render_dashboards(spec)
        volume = self._host.data_volume(
            f"{self._name}-grafana-data",
            volume_name=spec.names.grafana_volume,
            labels={swarm.ROLE_LABEL: ROLE},
            owner=GRAFANA_OWNER,
            image=self._images.grafana_image,
            parent=self,
        )
        self._add(
            "grafana",
            image=self._images.grafana_image,
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
            # Its database (users, sessions, preferences, dashboards saved in the UI) survives restarts;
            # everything else it writes (rendering, uploads in flight) goes to /tmp.
            mounts=[swarm.volume_mount(volume.name, gf.DATA_DIR), swarm.tmpfs_mount("/tmp", 64)],
            health=_wget(f"http://127.0.0.1:{obs.GRAFANA_PORT}/api/health"),
            networks=[self._monitoring, self.proxy_network],
        )

    def _host_exporters(self, textfile_dir: str | None) -> None:
        """node-exporter and cAdvisor, one task on every node."""
        node_mounts = [swarm.bind_mount("/", "/host", propagation="rslave")]
        node_args = ["--path.rootfs=/host", f"--collector.filesystem.mount-points-exclude={NODE_MOUNTS_EXCLUDE}"]
        if textfile_dir is not None:
            node_mounts.append(swarm.bind_mount(textfile_dir, "/textfile"))
            node_args.append("--collector.textfile.directory=/textfile")
        self._add(
            "node-exporter",
            image=self._images.node_exporter_image,
            args=node_args,
            mounts=node_mounts,
            health=_wget(f"http://127.0.0.1:{obs.NODE_EXPORTER_PORT}/"),
            global_mode=True,
            user=NOBODY,
        )
        api = DockerApiProxy(
            f"{self._name}-docker-api",
            service_name=self.spec.names.docker_api_proxy,
            network_name=self.spec.names.docker_api_network,
            purpose="cAdvisor (info, version, container inspection, read-only)",
            rules=docker_api.CADVISOR,
            image=self._images.docker_api_proxy_image,
            host=self._host,
            parent=self,
            # With several nodes, each cAdvisor asks its own node's daemon about its own node's containers.
            node_local=self.spec.names.docker_api_socket_volume if self._host.cluster is not None else None,
        )
        self.services["docker-api"] = api.service
        self._add(
            "cadvisor",
            image=self._images.cadvisor_image,
            args=[
                # The Docker API through its read-only proxy (container/docker/factory.go: --docker
                # takes any endpoint the Docker client accepts).
                f"--docker={api.endpoint}",
                "--docker_only=true",
                "--housekeeping_interval=30s",
                # Only the labels the alerts and dashboards group by: a label per image label
                # would multiply the series.
                "--store_container_labels=false",
                "--whitelisted_container_labels=com.docker.swarm.service.name,com.docker.swarm.task.name",
                "--disable_metrics=advtcp,cpu_topology,cpuset,disk,diskIO,hugetlb,memory_numa,percpu,"
                "perf_event,process,referenced_memory,resctrl,sched,tcp,udp",
            ],
            # /rootfs/proc present makes cAdvisor read each container's network counters from
            # /rootfs/proc/<pid>/net/dev and its layer ids under /rootfs (manager/manager.go,
            # inHostNamespace); as nobody, no process's environment or root is readable there.
            mounts=[
                swarm.bind_mount("/sys", "/sys"),
                swarm.bind_mount("/proc", "/rootfs/proc"),
                swarm.bind_mount(LAYER_IDS, f"/rootfs{LAYER_IDS}"),
                *([api.socket_mount] if api.socket_mount is not None else []),
            ],
            health=_wget(f"http://127.0.0.1:{obs.CADVISOR_PORT}/healthz"),
            global_mode=True,
            user=NOBODY,
            networks=[self._monitoring, api.network],
            depends_on=[api.service],
        )

    def _proxy_exporters(self) -> None:
        """stub_status counts, status codes from the access log, and the certificate's expiry.

        The first two images are built FROM scratch (no shell to probe with): Prometheus'
        TargetDown watches them instead."""
        spec = self.spec
        # Scraped on monitoring; they reach the proxy (and it them) on the proxy's own network.
        networks = [self._monitoring, self.proxy_network]
        self._add(
            "nginx-exporter",
            image=self._images.nginx_exporter_image,
            args=[f"--nginx.scrape-uri={spec.nginx_scrape_uri}", f"--web.listen-address=:{obs.NGINX_EXPORTER_PORT}"],
            health=None,
            networks=networks,
        )
        self._add(
            "nginxlog-exporter",
            image=self._images.nginxlog_exporter_image,
            args=[f"-config-file={obs.NGINXLOG_CONFIG_FILE}"],
            configs=[self._config("nginxlog-config", obs.render_nginxlog_yml(spec), obs.NGINXLOG_CONFIG_FILE)],
            health=None,
            networks=networks,
        )
        self._add(
            "blackbox-exporter",
            image=self._images.blackbox_exporter_image,
            args=[f"--config.file={obs.BLACKBOX_CONFIG_FILE}"],
            configs=[self._config("blackbox-config", obs.render_blackbox_yml(spec), obs.BLACKBOX_CONFIG_FILE)],
            health=_wget(f"http://127.0.0.1:{obs.BLACKBOX_PORT}/-/healthy"),
            networks=networks,
        )

    def _store_exporters(self, stores: Mapping[str, StoreLike]) -> None:
        """One exporter per store whose kind has one, reading the store's password file."""
        for target in self.spec.stores:
            store = stores[target.name]
            exporter = registry.kind_of(store.spec).exporter()
            assert exporter is not None  # the spec watches only stores with an exporter
            password_file = f"{obs.SECRETS_DIR}/{target.name}-password"
            # The store's own exporter credentials where its kind has them (statistics only, never
            # the apps' password); otherwise the store's password.
            secret = store.client_secrets.get("exporter", store.password_secret)
            secrets = [swarm.secret_file(secret, password_file)] if secret is not None else []
            container = exporter.container(
                store.spec,
                target.service_name,
                password_file if secret is not None else None,
                store.client_users.get("exporter"),
            )
            self._add(
                f"{target.name}-exporter",
                image=getattr(self._images, exporter.image_key),
                env=container.env,
                commands=container.command,
                secrets=secrets,
                health=_wget(f"http://127.0.0.1:{exporter.port}{exporter.health_path}"),
                memory_mb=exporter.memory_mb,
                # It reaches its store on the data network and is scraped on monitoring.
                networks=[self._monitoring, self._data],
                depends_on=store.ready,
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

    def _config(self, part: str, text: str, path: str) -> docker.ServiceTaskSpecContainerSpecConfigArgs:
        config = docker.ServiceConfig(
            f"{self._name}-{part}",
            docker.ServiceConfigArgs(
                data=swarm.b64(text), labels=[docker.ServiceConfigLabelArgs(label=swarm.ROLE_LABEL, value=ROLE)]
            ),
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=False),
        )
        return swarm.file_config(config, path)

    def _secret(self, part: str, value: pulumi.Output[str], path: str) -> docker.ServiceTaskSpecContainerSpecSecretArgs:
        secret = docker.Secret(
            f"{self._name}-{part}",
            docker.SecretArgs(
                data=swarm.secret_data(value),
                labels=[docker.SecretLabelArgs(label=swarm.ROLE_LABEL, value=ROLE)],
            ),
            opts=self._child,
        )
        return swarm.secret_file(secret, path)

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
        order: Literal["start-first", "stop-first"] = "start-first",
        user: str | None = None,
        networks: Sequence[docker.Network] | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> docker.Service:
        """One monitoring service: read-only root, every capability dropped; ``networks`` default
        to monitoring alone. ``health`` None is for images without a shell (Prometheus' TargetDown
        watches them instead)."""
        limit_mb = memory_mb if memory_mb is not None else capacity.OBSERVABILITY_LIMITS_MB[part]
        service = swarm.service(
            f"{self._name}-{part}",
            name=self.spec.names.of(part),
            role=ROLE,
            part=part,
            image=self._host.image(image),
            args=args,
            command=commands,
            env=env,
            configs=configs,
            secrets=secrets,
            mounts=mounts,
            health=swarm.Health(tuple(health), timeout_s=5) if health is not None else None,
            hardening=swarm.Hardening(user=user),
            resources=Resources(memory_mb=limit_mb),
            replicas=None if global_mode else 1,
            # A volume of the data disk is on the host's node: the service must run there.
            constraints=self._host.volume_constraints
            if not global_mode and any(mount.type == "volume" for mount in mounts)
            else (),
            networks=[swarm.Attachment(net.id) for net in (networks or [self._monitoring])],
            rollout=swarm.Rollout(order=order, delay_s=5),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )
        self.services[part] = service
        return service
