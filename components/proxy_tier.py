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

import pulumi
import pulumi_cloudflare as cloudflare
import pulumi_docker as docker
import pulumi_tls as tls

from components import swarm
from components.host import WORLD, Host
from components.networks import Networks
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
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``extra_upstreams``/``extra_routes``: what the proxy serves besides the apps (Grafana);
        ``extra_access_logs``: more destinations of its access log (the log exporter)."""
        super().__init__("keel:index:ProxyTier", name, {}, opts)
        cfg = stack.config
        proxy = cfg.proxy
        prefix = cfg.name_prefix
        self.service_name = f"{prefix}-{name}"
        child = pulumi.ResourceOptions(parent=self)
        hostnames = cfg.dns.all_hostnames if cfg.dns else []
        port_suffix = "" if proxy.https_port == 443 else f":{proxy.https_port}"
        self.urls = [f"https://{h}{port_suffix}/" for h in hostnames] or [f"https://localhost{port_suffix}/"]

        if cfg.dns is not None:
            self._dns(name, cfg, host)

        acme_mode = proxy.tls.mode == "acme"
        secrets: list[docker.ServiceTaskSpecContainerSpecSecretArgs] = []
        mounts: list[docker.ServiceTaskSpecContainerSpecMountArgs] = []
        if acme_mode:
            certs = docker.Volume(f"{name}-certs", docker.VolumeArgs(name=f"{prefix}-{name}-certs"), opts=child)
            self._acme(name, stack, networks, certs)
            mounts.append(
                docker.ServiceTaskSpecContainerSpecMountArgs(
                    type="volume", source=certs.name, target=proxy_runtime.CERT_DIR, read_only=True
                )
            )
            cert_path, key_path = f"{proxy_runtime.CERT_DIR}/tls.crt", f"{proxy_runtime.CERT_DIR}/tls.key"
        else:
            certificate, key = self._certificate(name, cfg, hostnames)
            for file_name, data in ((CERT_SECRET_PATH, certificate), (KEY_SECRET_PATH, key)):
                secret = docker.Secret(
                    f"{name}-{file_name.rsplit('/', 1)[-1]}",
                    docker.SecretArgs(data=swarm.secret_data(data)),
                    opts=child,
                )
                secrets.append(
                    docker.ServiceTaskSpecContainerSpecSecretArgs(
                        secret_id=secret.id, secret_name=secret.name, file_name=file_name, file_mode=0o400
                    )
                )
            cert_path, key_path = CERT_SECRET_PATH, KEY_SECRET_PATH

        apps = cfg.apps()
        site = pulumi.Output.from_input(cloudflare_cidrs(cfg)).apply(
            lambda cidrs: nginx.site_from_config(
                proxy,
                apps,
                server_names=hostnames,
                cloudflare_cidrs=cidrs,
                docker_service_name=lambda service: f"{prefix}-{service}",
                extra_upstreams=extra_upstreams,
                extra_routes=extra_routes,
                certificate_path=cert_path,
                certificate_key_path=key_path,
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

        conf_volume = docker.Volume(f"{name}-conf", docker.VolumeArgs(name=f"{prefix}-{name}-conf"), opts=child)
        watcher = docker.ServiceConfig(
            f"{name}-keel-proxy",
            docker.ServiceConfigArgs(data=swarm.b64(proxy_runtime.watcher_script())),
            opts=child,
        )
        mounts += [
            docker.ServiceTaskSpecContainerSpecMountArgs(
                type="volume", source=conf_volume.name, target=proxy_runtime.CONF_DIR
            ),
            _tmpfs("/var/cache/nginx"),
            _tmpfs("/var/run"),
            _tmpfs("/tmp"),
        ]
        self.service = docker.Service(
            f"{name}-service",
            docker.ServiceArgs(
                name=self.service_name,
                labels=swarm.labels("proxy", name),
                mode=docker.ServiceModeArgs(replicated=docker.ServiceModeReplicatedArgs(replicas=1)),
                endpoint_spec=docker.ServiceEndpointSpecArgs(
                    ports=[
                        docker.ServiceEndpointSpecPortArgs(
                            target_port=80, published_port=proxy.http_port, publish_mode="host", protocol="tcp"
                        ),
                        docker.ServiceEndpointSpecPortArgs(
                            target_port=443, published_port=proxy.https_port, publish_mode="host", protocol="tcp"
                        ),
                    ]
                ),
                task_spec=docker.ServiceTaskSpecArgs(
                    container_spec=docker.ServiceTaskSpecContainerSpecArgs(
                        image=proxy.image,
                        commands=["/bin/sh", proxy_runtime.WATCHER_PATH],
                        configs=[swarm.file_config(watcher, proxy_runtime.WATCHER_PATH, 0o555)],
                        secrets=secrets or None,
                        mounts=mounts,
                        read_only=True,
                        cap_drops=["ALL"],
                        cap_adds=NGINX_CAPABILITIES,
                        stop_signal="SIGQUIT",
                        stop_grace_period="30s",
                        healthcheck=swarm.healthcheck(
                            swarm.http_probe(80, "/health"), interval_s=10, timeout_s=5, start_period_s=10, retries=3
                        ),
                    ),
                    resources=swarm.resources(proxy.resources),
                    restart_policy=swarm.restart_policy(),
                    log_driver=swarm.log_driver(proxy.logging),
                    placement=docker.ServiceTaskSpecPlacementArgs(constraints=[swarm.ON_MANAGER]),
                    networks_advanceds=swarm.networks(networks.public.id, networks.internal.id),
                ),
                # Host-mode ports cannot be held by two tasks: the old one stops first. Changes
                # to this spec are rare on purpose; configuration changes are reloads.
                update_config=docker.ServiceUpdateConfigArgs(
                    order="stop-first", failure_action="rollback", monitor="30s", parallelism=1, delay="0s"
                ),
                rollback_config=docker.ServiceRollbackConfigArgs(order="stop-first", monitor="30s", parallelism=1),
            ),
            opts=child,
        )
        # After the service: the running proxy tests each new set and acknowledges it (or its refusal,
        # which fails the deploy), and a changed image is already the nginx that judges the set.
        host.run(
            f"{name}-nginx.conf",
            create=pulumi.Output.all(conf_volume.name, files).apply(
                lambda v: proxy_runtime.writer_script(
                    volume=v[0], image=proxy.image, service=self.service_name, digest=proxy_runtime.set_digest(v[1])
                )
            ),
            stdin=files.apply(proxy_runtime.writer_stdin),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.service]),
        )
        self.register_outputs({"service_name": self.service_name, "urls": self.urls})

    # ------------------------------------------------------------------ DNS and TLS

    def _dns(self, name: str, cfg: StackConfig, host: Host) -> None:
        assert cfg.dns is not None
        child = pulumi.ResourceOptions(parent=self)
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
        for setting, value in (("ssl", "strict"), ("always_use_https", "on"), ("min_tls_version", "1.2")):
            cloudflare.ZoneSetting(
                f"{name}-zone-{setting}",
                cloudflare.ZoneSettingArgs(zone_id=cfg.dns.zone_id, setting_id=setting, value=value),
                opts=child,
            )

    def _certificate(
        self, name: str, cfg: StackConfig, hostnames: list[str]
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        child = pulumi.ResourceOptions(parent=self)
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
                    hostnames=names,
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

    def _acme(self, name: str, stack: Stack, networks: Networks, certs: docker.Volume) -> None:
        cfg = stack.config
        assert cfg.dns is not None
        tls_cfg = cfg.proxy.tls
        child = pulumi.ResourceOptions(parent=self)
        state = docker.Volume(
            f"{name}-acme-state",
            docker.VolumeArgs(name=f"{cfg.name_prefix}-{name}-acme"),
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
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
        docker.Service(
            f"{name}-acme",
            docker.ServiceArgs(
                name=f"{cfg.name_prefix}-{name}-acme",
                labels=swarm.labels("proxy", f"{name}-acme"),
                mode=docker.ServiceModeArgs(replicated=docker.ServiceModeReplicatedArgs(replicas=1)),
                task_spec=docker.ServiceTaskSpecArgs(
                    container_spec=docker.ServiceTaskSpecContainerSpecArgs(
                        image=tls_cfg.acme_image,
                        commands=["/bin/sh", acme.SCRIPT_PATH],
                        configs=[swarm.file_config(script, acme.SCRIPT_PATH, 0o555)],
                        secrets=[
                            docker.ServiceTaskSpecContainerSpecSecretArgs(
                                secret_id=token.id, secret_name=token.name, file_name=acme.TOKEN_PATH, file_mode=0o400
                            )
                        ],
                        mounts=[
                            docker.ServiceTaskSpecContainerSpecMountArgs(
                                type="volume", source=state.name, target=acme.STATE_DIR
                            ),
                            docker.ServiceTaskSpecContainerSpecMountArgs(
                                type="volume", source=certs.name, target=acme.CERT_DIR
                            ),
                        ],
                        healthcheck=swarm.healthcheck(acme.health_command(), interval_s=300, start_period_s=600),
                        stop_grace_period="10s",
                    ),
                    resources=swarm.resources(tls_cfg.acme_resources),
                    restart_policy=swarm.restart_policy(),
                    log_driver=swarm.log_driver(cfg.proxy.logging),
                    placement=docker.ServiceTaskSpecPlacementArgs(constraints=[swarm.ON_MANAGER]),
                    networks_advanceds=swarm.networks(networks.public.id),
                ),
            ),
            opts=child,
        )


def _tmpfs(target: str) -> docker.ServiceTaskSpecContainerSpecMountArgs:
    return docker.ServiceTaskSpecContainerSpecMountArgs(type="tmpfs", target=target)
