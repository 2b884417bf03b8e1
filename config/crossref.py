"""Rules that span sections. They run once, after every section has validated on its own."""

from __future__ import annotations

import re

from croniter import croniter

from config import capacity
from config.errors import ConfigError, key_path, show
from config.models import (
    AppSpec,
    ExternalSpec,
    HcloudHostSpec,
    LocalHostSpec,
    PostgresSpec,
    RedisSpec,
    RegistryAuth,
    StackConfig,
    VolumeSpec,
    image_is_pinned,
)


def check(cfg: StackConfig) -> None:
    """Raise one ConfigError listing every cross-reference problem, or return."""
    problems: list[str] = []
    problems += _routes(cfg)
    problems += _volumes(cfg)
    problems += _store_refs(cfg)
    problems += _images(cfg)
    problems += _redis_versions(cfg)
    problems += _tls_and_dns(cfg)
    problems += _schedules(cfg)
    problems += _metrics_paths(cfg)
    problems += _registries(cfg)
    if not problems:
        problems += _capacity(cfg)
    if problems:
        raise ConfigError(problems)


def _routes(cfg: StackConfig) -> list[str]:
    out = []
    apps = cfg.apps()
    hostnames = set(cfg.dns.all_hostnames) if cfg.dns else None
    for index, route in enumerate(cfg.proxy.routes):
        where = f"proxy/routes/{index}"
        if route.host is not None and hostnames is not None and route.host not in hostnames:
            out.append(
                f"{where}/host: {show(route.host)} is not one of dns/hostnames; "
                f"expected one of {', '.join(sorted(hostnames))}"
            )
        if route.service is None:
            continue  # a deny route: nothing to reach
        target = cfg.services.get(route.service)
        if target is None:
            known = ", ".join(sorted(apps)) or "none defined"
            out.append(f"{where}/service: {show(route.service)} is not a service; expected one of {known}")
        elif not isinstance(target, AppSpec):
            out.append(
                f"{where}/service: {show(route.service)} is a {target.kind} store; "
                "expected an app service (stores are never exposed through the proxy)"
            )
        elif target.port is None:
            out.append(f"{where}/service: {show(route.service)} has no port; set services/{route.service}/port")
        elif "edge" not in target.networks:
            out.append(
                f"{where}/service: {show(route.service)} is not on the edge network, where the proxy reaches it; "
                f"add edge to services/{route.service}/networks"
            )
    return out


def _volumes(cfg: StackConfig) -> list[str]:
    out = []
    volume_stores = {n for n, s in cfg.services.items() if isinstance(s, VolumeSpec)}
    for name, app in cfg.apps().items():
        for mount, volume in app.volumes.items():
            if volume not in volume_stores:
                known = ", ".join(sorted(volume_stores)) or "none defined"
                out.append(
                    f"{key_path('services', name, 'volumes', mount)}: {show(volume)} is not a volume store; "
                    f"expected one of {known} (declare it under services with kind: volume)"
                )
    return out


def _store_refs(cfg: StackConfig) -> list[str]:
    out = []
    with_secret = {n for n, s in cfg.services.items() if isinstance(s, (PostgresSpec, RedisSpec, ExternalSpec))}
    for name, app in cfg.apps().items():
        for env, ref in app.secrets.items():
            if ref.store is not None and ref.store not in with_secret:
                known = (
                    ", ".join(f"{ref.source}:{n}" for n in sorted(with_secret))
                    or "none (no postgres, redis or external store)"
                )
                out.append(
                    f"services/{name}/secrets/{env}: {show(str(ref))} names no store with a password or URL; "
                    f"expected one of {known}"
                )
    return out


def _images(cfg: StackConfig) -> list[str]:
    if cfg.environment == "dev":
        return []
    out = []
    images: list[tuple[str, str]] = [("proxy/image", cfg.proxy.image)]
    if cfg.proxy.tls.mode == "acme":
        images.append(("proxy/tls/acme_image", cfg.proxy.tls.acme_image))
    for name, service in cfg.services.items():
        if isinstance(service, (AppSpec, PostgresSpec, RedisSpec)):
            images.append((f"services/{name}/image", service.image))
    if cfg.observability.enabled:
        for key in type(cfg.observability).model_fields:
            if key.endswith("_image"):
                images.append((f"observability/{key}", getattr(cfg.observability, key)))
    if cfg.backup.enabled:
        images.append(("backup/image", cfg.backup.image))
        images.append(("backup/scheduler_image", cfg.backup.scheduler_image))
        images.append(("backup/docker_api_proxy_image", cfg.backup.docker_api_proxy_image))
    for path, image in images:
        if not image_is_pinned(image):
            out.append(
                f"{path}: {show(image)} is not pinned; expected a fixed tag or a digest "
                f"(latest is allowed only in dev, and this stack's environment is {cfg.environment})"
            )
    return out


# The rendered redis.conf uses Redis 7 directives (appenddirname: the multi-part AOF of 7.0), which
# Redis 6 refuses at start-up; say so at load time instead of in a crash-looping task.
MIN_REDIS_MAJOR = 7


def _redis_versions(cfg: StackConfig) -> list[str]:
    out = []
    for name, service in cfg.services.items():
        if not isinstance(service, RedisSpec):
            continue
        tag = service.image.split("@", 1)[0].rsplit("/", 1)[-1].partition(":")[2]
        major = re.match(r"^([0-9]+)", tag)
        if major is not None and int(major.group(1)) < MIN_REDIS_MAJOR:
            out.append(
                f"services/{name}/image: {show(service.image)} is Redis {major.group(1)}, whose server refuses the "
                f"redis.conf keel renders (multi-part AOF); expected Redis {MIN_REDIS_MAJOR} or later, "
                "which reads the older RDB and AOF files as they are"
            )
    return out


def _tls_and_dns(cfg: StackConfig) -> list[str]:
    out = []
    mode = cfg.proxy.tls.mode
    if mode in ("cloudflare-origin", "acme") and cfg.dns is None:
        out.append(f"proxy/tls/mode: {show(mode)} needs a dns section with the Cloudflare zone; add dns")
    if mode == "cloudflare-origin" and cfg.dns is not None and not cfg.dns.proxied:
        out.append(
            'proxy/tls/mode: "cloudflare-origin" certificates are trusted only by Cloudflare\'s proxy, '
            "but dns/proxied is false; use acme for unproxied records"
        )
    if mode == "self-signed" and cfg.dns is not None and cfg.dns.proxied:
        out.append(
            'proxy/tls/mode: "self-signed" fails Cloudflare\'s strict SSL mode for proxied records; '
            "expected cloudflare-origin (or acme)"
        )
    if cfg.dns is not None and isinstance(cfg.host, LocalHostSpec):
        out.append("dns: a local host has no public address to point records at; remove dns or use provider hcloud")
    grafana = cfg.observability.grafana_host
    if cfg.observability.enabled and grafana is not None:
        names = cfg.dns.all_hostnames if cfg.dns else []
        if grafana not in names:
            out.append(
                f"observability/grafana_host: {show(grafana)} is not one of dns/hostnames; add it there "
                "so it gets a DNS record and a certificate"
            )
    return out


def _schedules(cfg: StackConfig) -> list[str]:
    out = []
    for key in ("schedule", "check_schedule"):
        value = getattr(cfg.backup, key)
        if not croniter.is_valid(value) or len(value.split()) != 5:
            out.append(f"backup/{key}: found {show(value)}; expected a 5-field cron expression such as '0 * * * *'")
    return out


def _metrics_paths(cfg: StackConfig) -> list[str]:
    """An app's metrics are scraped only with monitoring on, on its port (the app joins the
    monitoring network for it)."""
    problems: list[str] = []
    if not cfg.observability.enabled:
        return problems
    for name, app in cfg.apps().items():
        if app.metrics_path is None:
            continue
        where = f"services/{name}/metrics_path"
        if not app.metrics_path.startswith("/"):
            problems.append(f'{where}: found "{app.metrics_path}"; expected a path starting with /, such as /metrics')
        if app.port is None:
            problems.append(f"{where}: is set but the service has no port to scrape; set services/{name}/port")
    return problems


def _registries(cfg: StackConfig) -> list[str]:
    """One login per registry: the Docker provider holds it, so two apps cannot pull from one
    server with different credentials."""
    problems = []
    first: dict[str, tuple[str, RegistryAuth]] = {}
    for name, app in cfg.apps().items():
        if app.registry is None:
            continue
        owner, login = first.setdefault(app.registry.server, (name, app.registry))
        if login != app.registry:
            problems.append(
                f"services/{name}/registry: logs in to {show(login.server)} as {show(app.registry.username)} "
                f"with {show(app.registry.password_secret)}, but services/{owner}/registry uses "
                f"{show(login.username)} with {show(login.password_secret)}; "
                "expected one username and password_secret per registry server"
            )
    return problems


def _capacity(cfg: StackConfig) -> list[str]:
    plan = capacity.budget(cfg)
    if plan.total_mb <= plan.allowed_mb:
        return []
    where = "host/server_type" if isinstance(cfg.host, HcloudHostSpec) else "host/memory_mib"
    biggest = sorted(plan.lines, key=lambda line: -line.memory_mb)[:3]
    detail = ", ".join(f"{line.name} {line.memory_mb}" for line in biggest)
    return [
        f"{where}: memory limits add up to {plan.total_mb} MiB (largest: {detail}; rollout headroom "
        f"{plan.rollout_headroom_mb}), over {int(capacity.MAX_SHARE * 100)}% of the host's "
        f"{plan.host_memory_mb} MiB ({plan.allowed_mb} MiB); expected a larger server type or smaller limits"
    ]


def referenced_secrets(cfg: StackConfig) -> dict[str, str]:
    """Every secret the config names -> the key path that names it."""
    refs: dict[str, str] = {}
    for name, service in cfg.services.items():
        if isinstance(service, AppSpec):
            for env, ref in service.secrets.items():
                if ref.source == "secret":
                    refs.setdefault(ref.name, f"services/{name}/secrets/{env}")
            if service.registry is not None:
                refs.setdefault(service.registry.password_secret, f"services/{name}/registry/password_secret")
        elif isinstance(service, (PostgresSpec, RedisSpec)) and service.password_secret:
            refs.setdefault(service.password_secret, f"services/{name}/password_secret")
        elif isinstance(service, ExternalSpec):
            refs.setdefault(service.url_secret, f"services/{name}/url_secret")
    if cfg.proxy.tls.mode == "acme":
        refs.setdefault(cfg.proxy.tls.acme_dns_token_secret, "proxy/tls/acme_dns_token_secret")
    obs = cfg.observability
    if obs.enabled:
        if obs.grafana_admin_password_secret:
            refs.setdefault(obs.grafana_admin_password_secret, "observability/grafana_admin_password_secret")
        # Only the active receiver's secret is needed.
        key = {"email": "smtp_password_secret", "webhook": "webhook_url_secret"}.get(obs.alerts.kind)
        value = getattr(obs.alerts, key) if key else None
        if value:
            refs.setdefault(value, f"observability/alerts/{key}")
        if obs.alerts.heartbeat_url_secret:
            refs.setdefault(obs.alerts.heartbeat_url_secret, "observability/alerts/heartbeat_url_secret")
    if cfg.backup.enabled and cfg.backup.repository is not None:
        repo = cfg.backup.repository
        for key in ("access_key_secret", "secret_key_secret", "password_secret"):
            refs.setdefault(getattr(repo, key), f"backup/repository/{key}")
    return refs
