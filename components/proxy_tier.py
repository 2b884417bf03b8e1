"""ProxyTier: DNS, TLS and the nginx reverse proxy, the only service that publishes ports.

- DNS: a Cloudflare A and AAAA record per hostname (proxied by default) and the zone's TLS
  settings (SSL strict, always HTTPS, TLS >= 1.2).
- TLS, by `proxy.tls.mode`:
  self-signed (dev): a pulumi-tls key and certificate;
  cloudflare-origin: a pulumi-tls key and CSR signed by Cloudflare's Origin CA;
  acme: Let's Encrypt through DNS-01 on the Cloudflare API, by a renewal service (acme.sh)
  that checks twice a day and writes into a certificate volume the proxy watches.
  Pulumi-made certificates reach nginx as swarm secrets.
- nginx: the official image, ports published in host mode (client IPs survive), configuration
  rendered by render/nginx.py and shipped through a volume so that changes reload nginx
  gracefully instead of restarting it (render/proxy_runtime.py explains the mechanism).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_cloudflare as cloudflare
import pulumi_docker as docker
import pulumi_tls as tls

from components import swarm
from components.access import WORLD
from components.host import Host
from components.networks import Networks, overlay
from config.loader import Stack
from config.models import StackConfig
from render import acme, nginx, proxy_runtime

CERT_SECRET_PATH = "/run/secrets/tls.crt"
KEY_SECRET_PATH = "/run/secrets/tls.key"
ORIGIN_CA_VALIDITY_DAYS = 5475  # 15 years, Cloudflare's longest
SELF_SIGNED_VALIDITY_HOURS = 24 * 365
# What nginx's master needs with every other capability dropped: bind 80/443, switch to the
# worker user, own its cache directories.
NGINX_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID", "NET_BIND_SERVICE"]


def web_sources(cfg: StackConfig) -> pulumi.Input[Sequence[str]]:
    """Who may reach 80/443 on the host: only Cloudflare when its proxy fronts every record."""
    if cfg.dns is not None and cfg.dns.proxied:
        ranges = cloudflare.get_ip_ranges_output()
        return pulumi.Output.all(ranges.ipv4_cidrs, ranges.ipv6_cidrs).apply(lambda r: [*r[0], *r[1]])
    return list(WORLD)


def cloudflare_cidrs(cfg: StackConfig) -> pulumi.Input[Sequence[str]]:
    if cfg.dns is not None and cfg.dns.proxied:
        return web_sources(cfg)
    return []


class ProxyTier(pulumi.ComponentResource):
    """Outputs: ``service_name``, ``urls`` (one https URL per hostname), ``nginx_conf`` (the
    rendered main file) and ``service``."""

    service_name: str
    service: docker.Service
    urls: list[str]
    nginx_conf: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        stack: Stack,
        host: Host,
        networks: Networks,
        extra_upstreams: Sequence[nginx.NginxUpstream] = (),
        extra_routes: Sequence[nginx.NginxRoute] = (),
        extra_access_logs: Sequence[str] = (),
        monitoring_network: docker.Network | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``extra_upstreams``/``extra_routes``: what the proxy serves besides the apps (Grafana);
        ``extra_access_logs``: more destinations of its access log (the log exporter);
        ``monitoring_network``: where the proxy reaches Grafana and its exporters reach it."""
        super().__init__("keel:index:ProxyTier", name, {}, opts)
        cfg = stack.config
        names = cfg.names
        self.service_name = names.proxy
        self._name = name
        self._host = host
        self._child = pulumi.ResourceOptions(parent=self)
        hostnames = cfg.dns.all_hostnames if cfg.dns else []
        port_suffix = "" if cfg.proxy.https_port == 443 else f":{cfg.proxy.https_port}"
        self.urls = [f"https://{h}{port_suffix}/" for h in hostnames] or [f"https://localhost{port_suffix}/"]

        if cfg.dns is not None:
            self._dns(cfg, host)
        tls_files = self._tls(stack, networks, hostnames)
        site = pulumi.Output.from_input(cloudflare_cidrs(cfg)).apply(
            lambda cidrs: nginx.site_from_config(
                cfg.proxy,
                cfg.apps(),
                server_names=hostnames,
                cloudflare_cidrs=cidrs,
                docker_service_name=names.app,
                extra_upstreams=extra_upstreams,
                extra_routes=extra_routes,
                certificate_path=tls_files.certificate_path,
                certificate_key_path=tls_files.key_path,
                include_glob=f"{proxy_runtime.INCLUDE_DIR}/*.conf",
                extra_access_logs=tuple(extra_access_logs),
                # IPv6 only when AAAA records send visitors there.
                listen_addresses=("0.0.0.0", "[::]") if cfg.dns is not None and cfg.dns.ipv6 else (),
            )
        )
        files = site.apply(
            lambda s: {
                "nginx.conf": nginx.render_nginx_conf(s),
                "keel.d/status.conf": nginx.render_status_conf(s),
            }
        )
        self.nginx_conf = files.apply(lambda f: f["nginx.conf"])
        conf_volume = docker.Volume(
            f"{self._name}-conf", docker.VolumeArgs(name=cfg.names.proxy_conf_volume), opts=self._child
        )
        attached = [networks.edge, *([monitoring_network] if monitoring_network is not None else [])]
        self.service = self._nginx(cfg, attached, tls_files, conf_volume)
        self._write_configuration(cfg, host, conf_volume, files)
        self.register_outputs({"service_name": self.service_name, "urls": self.urls})

    # ------------------------------------------------------------------ nginx

    def _write_configuration(
        self, cfg: StackConfig, host: Host, conf_volume: docker.Volume, files: pulumi.Output[dict[str, str]]
    ) -> pulumi.Resource:
        """The step that stages a new configuration set in the proxy's volume and waits for the proxy's
        verdict (see render/proxy_runtime.py). After the service: the running proxy tests each new
        set and acknowledges it (or its refusal, which fails the deploy), and a changed image is
        already the nginx that judges the set."""
        return host.run(
            f"{self._name}-nginx.conf",
            create=pulumi.Output.all(conf_volume.name, files).apply(
                lambda v: proxy_runtime.writer_script(
                    volume=v[0],
                    image=cfg.proxy.image,
                    service=self.service_name,
                    digest=proxy_runtime.set_digest(v[1]),
                )
            ),
            stdin=files.apply(proxy_runtime.writer_stdin),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.service]),
        )

    def _nginx(
        self,
        cfg: StackConfig,
        networks: Sequence[docker.Network],
        tls_files: _TlsFiles,
        conf_volume: docker.Volume,
    ) -> docker.Service:
        proxy = cfg.proxy
        watcher = docker.ServiceConfig(
            f"{self._name}-keel-proxy",
            docker.ServiceConfigArgs(data=swarm.b64(proxy_runtime.watcher_script())),
            opts=self._child,
        )
        configs = [swarm.file_config(watcher, proxy_runtime.WATCHER_PATH, 0o555)]
        if cfg.dns is not None and cfg.dns.proxied:
            # Authenticated Origin Pulls: the CA whose client certificates nginx requires (render/nginx.py).
            ca = docker.ServiceConfig(
                f"{self._name}-origin-pull-ca",
                docker.ServiceConfigArgs(data=swarm.b64(nginx.ORIGIN_PULL_CA_FILE.read_text())),
                opts=self._child,
            )
            configs.append(swarm.file_config(ca, nginx.ORIGIN_PULL_CA_PATH))
        return swarm.service(
            f"{self._name}-service",
            name=self.service_name,
            role="proxy",
            part=self._name,
            image=self._host.image(proxy.image),
            command=["/bin/sh", proxy_runtime.WATCHER_PATH],
            configs=configs,
            secrets=tls_files.secrets,
            mounts=[
                *tls_files.mounts,
                swarm.volume_mount(conf_volume.name, proxy_runtime.CONF_DIR),
                swarm.tmpfs_mount("/var/cache/nginx"),
                swarm.tmpfs_mount("/var/run"),
                swarm.tmpfs_mount("/tmp"),
            ],
            hardening=swarm.Hardening(cap_add=tuple(NGINX_CAPABILITIES)),
            stop_signal="SIGQUIT",
            stop_grace_s=30,
            health=swarm.Health(
                ("CMD-SHELL", proxy_runtime.health_command(swarm.http_probe(80, "/health")[1])),
                interval_s=10,
                timeout_s=5,
                start_period_s=10,
            ),
            resources=proxy.resources,
            logging=proxy.logging,
            constraints=[self._host.pin],
            # Never the data network: the internet-facing process has no route to a store.
            networks=[swarm.Attachment(network.id) for network in networks],
            ports=[
                docker.ServiceEndpointSpecPortArgs(
                    target_port=80, published_port=proxy.http_port, publish_mode="host", protocol="tcp"
                ),
                docker.ServiceEndpointSpecPortArgs(
                    target_port=443, published_port=proxy.https_port, publish_mode="host", protocol="tcp"
                ),
            ],
            # Host-mode ports cannot be held by two tasks: the old one stops first. Changes to this
            # spec are rare on purpose; configuration changes are reloads. `pulumi up` waits for it
            # (a rollback fails the run, before this run deletes secrets the old spec still names).
            rollout=swarm.STOP_FIRST,
            opts=self._child,
        )

    def _tls(self, stack: Stack, networks: Networks, hostnames: list[str]) -> _TlsFiles:
        """Where nginx finds its certificate: swarm secrets made by Pulumi, or (acme) a volume the
        renewal service writes into."""
        cfg = stack.config
        if cfg.proxy.tls.mode == "acme":
            certs = docker.Volume(
                f"{self._name}-certs", docker.VolumeArgs(name=cfg.names.proxy_certs_volume), opts=self._child
            )
            self._acme(stack, networks, certs)
            return _TlsFiles(
                certificate_path=f"{proxy_runtime.CERT_DIR}/tls.crt",
                key_path=f"{proxy_runtime.CERT_DIR}/tls.key",
                mounts=(swarm.volume_mount(certs.name, proxy_runtime.CERT_DIR, read_only=True),),
            )
        certificate, key = self._certificate(cfg, hostnames)
        secrets = []
        for file_name, data in ((CERT_SECRET_PATH, certificate), (KEY_SECRET_PATH, key)):
            secret = docker.Secret(
                f"{self._name}-{file_name.rsplit('/', 1)[-1]}",
                docker.SecretArgs(data=swarm.secret_data(data)),
                opts=self._child,
            )
            secrets.append(swarm.secret_file(secret, file_name, 0o400))
        return _TlsFiles(certificate_path=CERT_SECRET_PATH, key_path=KEY_SECRET_PATH, secrets=tuple(secrets))

    # ------------------------------------------------------------------ DNS and TLS

    def _dns(self, cfg: StackConfig, host: Host) -> None:
        assert cfg.dns is not None
        name = self._name
        child = self._child
        for hostname in cfg.dns.all_hostnames:
            records = [("A", host.ipv4)] + ([("AAAA", host.ipv6)] if cfg.dns.ipv6 else [])
            for record_type, address in records:
                cloudflare.DnsRecord(
                    f"{name}-{hostname}-{record_type.lower()}",
                    cloudflare.DnsRecordArgs(
                        zone_id=cfg.dns.zone_id,
                        name=hostname,
                        type=record_type,
                        content=address,
                        ttl=1,  # automatic
                        proxied=cfg.dns.proxied,
                        comment=f"managed by pulumi ({pulumi.get_stack()})",
                    ),
                    opts=child,
                )
        settings = [("ssl", "strict"), ("always_use_https", "on"), ("min_tls_version", "1.2")]
        if cfg.dns.proxied:
            # Authenticated Origin Pulls, zone-wide with Cloudflare's certificate: the edge presents
            # it to the origin, whose nginx requires it (render/nginx.py, client_ca_path). Setting id
            # from cloudflare/terraform-provider-cloudflare v5.22.0, docs/resources/zone_setting.md.
            settings.append(("tls_client_auth", "on"))
        for setting, value in settings:
            cloudflare.ZoneSetting(
                f"{name}-zone-{setting}",
                cloudflare.ZoneSettingArgs(zone_id=cfg.dns.zone_id, setting_id=setting, value=value),
                opts=child,
            )

    def _certificate(self, cfg: StackConfig, hostnames: list[str]) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        name = self._name
        child = self._child
        key = tls.PrivateKey(f"{name}-tls-key", tls.PrivateKeyArgs(algorithm="ECDSA", ecdsa_curve="P256"), opts=child)
        names = hostnames or ["localhost"]
        if cfg.proxy.tls.mode == "cloudflare-origin":
            csr = tls.CertRequest(
                f"{name}-csr",
                tls.CertRequestArgs(
                    private_key_pem=key.private_key_pem,
                    dns_names=names,
                    subject=tls.CertRequestSubjectArgs(common_name=names[0]),
                ),
                opts=child,
            )
            origin = cloudflare.OriginCaCertificate(
                f"{name}-origin-cert",
                cloudflare.OriginCaCertificateArgs(
                    csr=csr.cert_request_pem,
                    # Sorted, as Cloudflare's API returns them: Read stores the API's order and the
                    # list forces replacement (internal/services/origin_ca_certificate; upstream
                    # issue cloudflare/terraform-provider-cloudflare#6239), so another order would
                    # issue a new certificate on every run.
                    hostnames=sorted(names),
                    request_type="origin-ecc",
                    requested_validity=ORIGIN_CA_VALIDITY_DAYS,
                ),
                opts=child,
            )
            return origin.certificate, key.private_key_pem
        cert = tls.SelfSignedCert(
            f"{name}-self-signed",
            tls.SelfSignedCertArgs(
                private_key_pem=key.private_key_pem,
                dns_names=names,
                ip_addresses=["127.0.0.1"],
                subject=tls.SelfSignedCertSubjectArgs(common_name=names[0], organization="keel dev"),
                validity_period_hours=SELF_SIGNED_VALIDITY_HOURS,
                early_renewal_hours=24 * 30,
                allowed_uses=["key_encipherment", "digital_signature", "server_auth"],
            ),
            opts=child,
        )
        return cert.cert_pem, key.private_key_pem

    def _acme(self, stack: Stack, networks: Networks, certs: docker.Volume) -> None:
        cfg = stack.config
        assert cfg.dns is not None
        name = self._name
        tls_cfg = cfg.proxy.tls
        child = self._child
        state = docker.Volume(
            f"{name}-acme-state",
            docker.VolumeArgs(name=cfg.names.acme_state_volume),
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
        )
        egress = overlay(
            f"{name}-acme-egress",
            name=cfg.names.acme_egress_network,
            role="egress",
            internal=False,
            encrypted=self._host.cluster is not None,
            opts=child,
        )
        token = docker.Secret(
            f"{name}-acme-token",
            docker.SecretArgs(data=swarm.secret_data(stack.secrets[tls_cfg.acme_dns_token_secret])),
            opts=child,
        )
        script = docker.ServiceConfig(
            f"{name}-acme.sh",
            docker.ServiceConfigArgs(
                data=swarm.b64(
                    acme.renewal_script(
                        domains=cfg.dns.all_hostnames,
                        email=tls_cfg.acme_email or "",
                        zone_id=cfg.dns.zone_id,
                        staging=tls_cfg.acme_staging,
                    )
                )
            ),
            opts=child,
        )
        swarm.service(
            f"{name}-acme",
            name=cfg.names.acme,
            role="proxy",
            part=f"{name}-acme",
            image=self._host.image(tls_cfg.acme_image),
            command=["/bin/sh", acme.SCRIPT_PATH],
            configs=[swarm.file_config(script, acme.SCRIPT_PATH, 0o555)],
            secrets=[swarm.secret_file(token, acme.TOKEN_PATH, 0o400)],
            mounts=[
                swarm.volume_mount(state.name, acme.STATE_DIR),
                swarm.volume_mount(certs.name, acme.CERT_DIR),
                # acme.sh's account settings, and the token it would save there, live and die here.
                swarm.tmpfs_mount(acme.RUNTIME_DIR, 8),
            ],
            # Root (its volumes are root's) without a single capability, on a read-only root.
            hardening=swarm.Hardening(),
            health=swarm.Health(tuple(acme.health_command()), interval_s=300, start_period_s=600),
            # Healthy only after its first check (start period 600 s, checked every 300 s).
            stop_grace_s=10,
            resources=tls_cfg.acme_resources,
            logging=cfg.proxy.logging,
            constraints=[self._host.pin],
            # Its own way out (Let's Encrypt, Cloudflare's API), shared with nothing else.
            networks=[swarm.Attachment(egress.id)],
            rollout=swarm.Rollout(order="stop-first", converge_timeout_s=1200),
            opts=child,
        )


@dataclass(frozen=True)
class _TlsFiles:
    """The certificate and key paths nginx reads, and what puts them there."""

    certificate_path: str
    key_path: str
    secrets: tuple[docker.ServiceTaskSpecContainerSpecSecretArgs, ...] = ()
    mounts: tuple[docker.ServiceTaskSpecContainerSpecMountArgs, ...] = ()
