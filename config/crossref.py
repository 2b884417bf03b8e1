"""Rules that span sections. They run once, after every section has validated on its own."""

from __future__ import annotations

import inspect
import re

from config import capacity, grammar
from config.base import image_is_pinned
from config.errors import ConfigError, key_path, show
from config.models import AppSpec, HcloudHostSpec, JobSpec, LocalHostSpec, RegistryAuth, StackConfig, WorkerSpec
from config.names import Names
from stores import registry
from stores.base import Password, SecretUrl

# Where Grafana is served when observability/grafana_host is unset, and the routes the proxy adds
# for it under that prefix (render.observability.grafana_routes; a test keeps the two in step).
GRAFANA_PATH = "/grafana/"
GRAFANA_SUBPATHS = ("", "login", "api/")
# The ports the Hetzner firewall keel declares opens to the web (components/host.py, _firewall).
HCLOUD_WEB_PORTS = (80, 443)
# Ports Cloudflare's proxy forwards to an origin (developers.cloudflare.com, Fundamentals,
# "Network ports"): traffic to any other port never reaches a proxied origin.
CLOUDFLARE_HTTP_PORTS = (80, 8080, 8880, 2052, 2082, 2086, 2095)
CLOUDFLARE_HTTPS_PORTS = (443, 2053, 2083, 2087, 2096, 8443)
CREDENTIAL_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "APIKEY", "CREDENTIALS", "PRIVATE")


def check(cfg: StackConfig) -> None:
    """Raise one ConfigError listing every cross-reference problem, or return."""
    problems: list[str] = []
    problems += _routes(cfg)
    problems += _generated_routes(cfg)
    problems += _volumes(cfg)
    problems += _store_refs(cfg)
    problems += _images(cfg)
    problems += _store_problems(cfg)
    problems += _tls_and_dns(cfg)
    problems += _ports(cfg)
    problems += _trusted_proxies(cfg)
    problems += _metrics_paths(cfg)
    problems += _registries(cfg)
    problems += _jobs(cfg)
    problems += _backups(cfg)
    problems += _hardening(cfg)
    problems += _derived_names(cfg)
    problems += _pitr(cfg)
    problems += _node_labels(cfg)
    if not problems:
        problems += _capacity(cfg)
    if problems:
        raise ConfigError(problems)


def _routes(cfg: StackConfig) -> list[str]:
    out = []
    # Workers serve no requests: never a route's target, so never offered as one.
    apps = {n: s for n, s in cfg.apps().items() if not isinstance(s, WorkerSpec)}
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
        elif isinstance(target, WorkerSpec):
            out.append(
                f"{where}/service: {show(route.service)} is a worker, which serves no requests; "
                "expected an app service (kind app, with a port)"
            )
        elif target.port is None:
            out.append(f"{where}/service: {show(route.service)} has no port; set services/{route.service}/port")
        elif target.replicas == 0:
            out.append(
                f"{where}/service: {show(route.service)} has 0 replicas, so every request to {route.path} "
                f"would fail with 502; expected services/{route.service}/replicas of at least 1, or no route"
            )
        elif "edge" not in target.networks:
            out.append(
                f"{where}/service: {show(route.service)} is not on the edge network, where the proxy reaches it; "
                f"add edge to services/{route.service}/networks"
            )
    return out


def _generated_routes(cfg: StackConfig) -> list[str]:
    """Grafana's routes (observability on) must not meet an app's: nginx refuses a location twice."""
    obs = cfg.observability
    if not obs.enabled:
        return []
    out = []
    grafana = obs.grafana_host
    prefix = "/" if grafana is not None else GRAFANA_PATH
    taken = {(grafana, prefix + subpath) for subpath in GRAFANA_SUBPATHS}
    for index, route in enumerate(cfg.proxy.routes):
        if (route.host, route.path) in taken:
            where = f" on {route.host}" if route.host else ""
            out.append(
                f"proxy/routes/{index}/path: {show(route.path)}{where} is where the proxy serves Grafana; "
                "expected another path, or observability/grafana_host set to a hostname of its own"
            )
        elif grafana is not None and route.host == grafana:
            out.append(
                f"proxy/routes/{index}/host: {show(grafana)} is observability/grafana_host, which serves Grafana "
                "only; expected another hostname for this route"
            )
    if grafana is not None and cfg.dns is not None and any(r.host is None for r in cfg.proxy.routes):
        if grafana in (cfg.dns.zone, f"www.{cfg.dns.zone}") or grafana == cfg.dns.all_hostnames[0]:
            out.append(
                f"observability/grafana_host: {show(grafana)} is the site's own address, where the apps' routes "
                "would no longer be served; expected a hostname of its own, such as "
                f"grafana.{cfg.dns.zone}"
            )
    return out


def _volumes(cfg: StackConfig) -> list[str]:
    out = []
    volume_stores = {n for n, s in cfg.stores().items() if registry.kind_of(s).mountable()}
    mounting: list[tuple[tuple[str, str], dict[str, str]]] = [
        *((("services", name), app.volumes) for name, app in cfg.apps().items()),
        *((("jobs", name), job.volumes) for name, job in cfg.jobs.items()),
    ]
    for (section, name), volumes in mounting:
        for mount, volume in volumes.items():
            if volume not in volume_stores:
                known = ", ".join(sorted(volume_stores)) or "none defined"
                out.append(
                    f"{key_path(section, name, 'volumes', mount)}: {show(volume)} is not a volume store; "
                    f"expected one of {known} (declare it under services with kind: volume)"
                )
    return out


def _store_refs(cfg: StackConfig) -> list[str]:
    out = []
    with_secret = {n for n, s in cfg.stores().items() if registry.kind_of(s).credentials(s) is not None}
    owners: list[tuple[str, AppSpec | JobSpec]] = [
        *((f"services/{name}", app) for name, app in cfg.apps().items()),
        *((f"jobs/{name}", job) for name, job in cfg.jobs.items()),
    ]
    for where, spec in owners:
        for env, ref in spec.secrets.items():
            if ref.store is not None and ref.store not in with_secret:
                known = (
                    ", ".join(f"{ref.source}:{n}" for n in sorted(with_secret))
                    or "none (no store with a password or a URL)"
                )
                out.append(
                    f"{where}/secrets/{env}: {show(str(ref))} names no store with a password or URL; "
                    f"expected one of {known}"
                )
            elif ref.store is not None and ref.source == "store":
                credentials = registry.kind_of(cfg.stores()[ref.store]).credentials(cfg.stores()[ref.store])
                if isinstance(credentials, Password) and credentials.password_alone is not None:
                    out.append(
                        f"{where}/secrets/{env}: {show(str(ref))} is a password alone, and services/{ref.store}: "
                        f"{credentials.password_alone}; expected store-url:{ref.store}"
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
        if isinstance(service, AppSpec):
            images.append((f"services/{name}/image", service.image))
        else:
            for key, image in registry.kind_of(service).images(service).items():
                images.append((f"services/{name}/{key}", image))
    if cfg.observability.enabled:
        for key in type(cfg.observability).model_fields:
            if key.endswith("_image"):
                images.append((f"observability/{key}", getattr(cfg.observability, key)))
    for name, job in cfg.jobs.items():
        if job.image is not None:
            images.append((f"jobs/{name}/image", job.image))
    if cfg.backup.enabled or cfg.jobs:
        images.append(("backup/scheduler_image", cfg.backup.scheduler_image))
        images.append(("backup/docker_api_proxy_image", cfg.backup.docker_api_proxy_image))
    if cfg.backup.enabled:
        images.append(("backup/image", cfg.backup.image))
    for path, image in images:
        if not image_is_pinned(image):
            out.append(
                f"{path}: {show(image)} is not pinned; expected a fixed tag or a digest "
                f"(latest is allowed only in dev, and this stack's environment is {cfg.environment})"
            )
    return out


def _store_problems(cfg: StackConfig) -> list[str]:
    """What each store's kind finds wrong with it (a server version, a memory limit)."""
    return [
        f"services/{name}/{problem.key}: {problem.message}"
        for name, store in cfg.stores().items()
        for problem in registry.kind_of(store).problems(store)
    ]


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


def _ports(cfg: StackConfig) -> list[str]:
    """The published ports must be ones the firewall and Cloudflare's proxy carry to the host."""
    out = []
    proxy = cfg.proxy
    proxied = cfg.dns is not None and cfg.dns.proxied
    for key, port, allowed in (
        ("http_port", proxy.http_port, CLOUDFLARE_HTTP_PORTS),
        ("https_port", proxy.https_port, CLOUDFLARE_HTTPS_PORTS),
    ):
        if isinstance(cfg.host, HcloudHostSpec) and port not in HCLOUD_WEB_PORTS:
            expected = HCLOUD_WEB_PORTS[0] if key == "http_port" else HCLOUD_WEB_PORTS[1]
            out.append(
                f"proxy/{key}: found {port}, but the Hetzner firewall keel declares opens only 80 and 443 "
                f"to the web; expected {expected}"
            )
        elif proxied and port not in allowed:
            out.append(
                f"proxy/{key}: found {port}, a port Cloudflare's proxy does not forward; "
                f"expected one of {', '.join(map(str, allowed))}"
            )
    return out


def _trusted_proxies(cfg: StackConfig) -> list[str]:
    """Believing X-Forwarded-For from the whole internet lets any client pick its own address
    (rate limits, logs). Behind Cloudflare the firewall admits only Cloudflare, so it is moot."""
    if cfg.dns is not None and cfg.dns.proxied:
        return []
    world = grammar.covers_everything(cfg.proxy.trusted_proxies)
    if world is None:
        return []
    return [
        f"proxy/trusted_proxies: found networks that together cover {world} while the origin is not behind "
        "Cloudflare's proxy, so any client could set its own address (X-Forwarded-For) and escape rate limits; "
        "expected only the proxies in front of this host"
    ]


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
        if app.port is None:
            problems.append(f"{where}: is set but the service has no port to scrape; set services/{name}/port")
    return problems


def _registries(cfg: StackConfig) -> list[str]:
    """One login per registry: the Docker provider holds it, so two apps cannot pull from one
    server with different credentials."""
    problems = []
    first: dict[str, tuple[str, RegistryAuth]] = {}
    owners: list[tuple[str, RegistryAuth | None]] = [
        *((f"services/{name}", app.registry) for name, app in cfg.apps().items()),
        *((f"jobs/{name}", job.registry) for name, job in cfg.jobs.items()),
    ]
    for where, auth in owners:
        if auth is None:
            continue
        owner, login = first.setdefault(auth.server, (where, auth))
        if login != auth:
            problems.append(
                f"{where}/registry: logs in to {show(login.server)} as {show(auth.username)} "
                f"with {show(auth.password_secret)}, but {owner}/registry uses "
                f"{show(login.username)} with {show(login.password_secret)}; "
                "expected one username and password_secret per registry server"
            )
    return problems


def _jobs(cfg: StackConfig) -> list[str]:
    """A job names an app or worker to run as, and its service name is its own."""
    problems = []
    for name, job in cfg.jobs.items():
        if job.app is not None:
            target = cfg.services.get(job.app)
            if not isinstance(target, AppSpec):
                known = ", ".join(sorted(cfg.apps())) or "none defined"
                found = "is not a service" if target is None else f"is a {target.kind} store"
                problems.append(
                    f"jobs/{name}/app: {show(job.app)} {found}; expected an app or worker whose image the job runs "
                    f"(one of {known})"
                )
        if f"job-{name}" in cfg.services:
            problems.append(
                f"jobs/{name}: its service would be named {cfg.names.job(name)}, like services/job-{name}; "
                "rename one of them"
            )
        # As for apps (_hardening), but a job has no exemptions: one that must run as root runs with
        # app: set to an app whose exemption says why.
        if cfg.environment == "prod" and job.app is None and (job.user is None or grammar.runs_as_root(job.user)):
            found = "is null, which runs the image's own USER, often root" if job.user is None else "is root"
            problems.append(
                f'jobs/{name}/user: {found}; expected a uid:gid such as "10001:10001" (prod), or app: set to an '
                "app whose exemptions/root says why"
            )
    return problems


def _backups(cfg: StackConfig) -> list[str]:
    if not cfg.backup.enabled:
        return []
    for name, spec in cfg.stores().items():
        backup = registry.kind_of(spec).backup()
        if backup is not None and backup.target(name, spec, cfg.names.store(name)) is not None:
            return []
    backed_up = [name for name, kind in registry.KINDS.items() if kind.backup() is not None]
    kinds = f"{', '.join(backed_up[:-1])} or {backed_up[-1]}"
    return [
        f"backup/enabled: is true but the stack has nothing to back up (no {kinds} store, or volume with "
        "backup: true or sqlite_files; external stores are backed up by their provider); expected enabled: false"
    ]


def _hardening(cfg: StackConfig) -> list[str]:
    """In prod, root, every capability or a writable root needs an explicit, reasoned exemption."""
    if cfg.environment != "prod":
        return []
    out = []
    for name, app in cfg.apps().items():
        exempt = app.exemptions
        if exempt.root is None:
            if app.user is None:
                out.append(
                    f"services/{name}/user: is null, which runs the image's own USER, often root; expected a uid:gid "
                    f'such as "10001:10001", or exemptions/root with the reason (prod)'
                )
            elif grammar.runs_as_root(app.user):
                out.append(
                    f"services/{name}/user: found {show(app.user)}, which is root; expected a uid:gid such as "
                    '"10001:10001", or exemptions/root with the reason (prod)'
                )
        if "ALL" in app.cap_add and exempt.all_capabilities is None:
            out.append(
                f"services/{name}/cap_add: holds ALL, every capability of root; expected the capabilities the "
                "service needs, such as NET_BIND_SERVICE, or exemptions/all_capabilities with the reason (prod)"
            )
        if not app.read_only and exempt.writable_root is None:
            out.append(
                f"services/{name}/read_only: is false; expected true with tmpfs or volumes for the paths it writes, "
                "or exemptions/writable_root with the reason (prod)"
            )
    return out


def _pitr(cfg: StackConfig) -> list[str]:
    out = []
    if cfg.backup.pitr.enabled and not cfg.backup.enabled:
        out.append(
            "backup/pitr/enabled: is true but backup/enabled is false; point-in-time recovery archives to the "
            "backup repository's bucket and runs beside the backup jobs: enable backups too"
        )
    archived = cfg.pitr_stores()
    for name, spec in cfg.services.items():
        restore_to = getattr(spec, "restore_to", None)
        if restore_to is not None and name not in archived:
            out.append(
                f"services/{name}/restore_to: found {show(restore_to)} but the store's WAL is not archived "
                f"(backup/pitr/enabled, services/{name}/pitr); expected point-in-time recovery on for a restore"
            )
    return out


def _derived_names(cfg: StackConfig) -> list[str]:
    """Two things named alike after derivation (config/names.py) would be one Docker object, or two
    resources fighting over it: a store named prometheus, a service named <store>-exporter."""
    names = cfg.names
    owners: dict[tuple[str, str], str] = {}
    for attribute, _ in inspect.getmembers(Names, lambda member: isinstance(member, property)):
        kind = "volume" if attribute.endswith("_volume") else "network" if attribute.endswith("_network") else "service"
        owners[(kind, getattr(names, attribute))] = f"keel's own {attribute.replace('_', ' ')}"
    for role in ("edge", "data", "monitoring"):
        owners[("network", names.network(role))] = f"keel's {role} network"
    owners[("upstream", names.grafana)] = "keel's Grafana upstream"
    out = []
    for name, spec in cfg.services.items():
        claims: list[tuple[str, str, str]] = []
        if isinstance(spec, AppSpec):
            claims += [("service", names.app(name), f"services/{name}"), ("upstream", name, f"services/{name}")]
        else:
            store_kind = registry.kind_of(spec)
            if store_kind.container(name, spec) is not None:
                claims.append(("service", names.store(name), f"services/{name}"))
                if store_kind.exporter() is not None:
                    claims.append(("service", names.store_exporter(name), f"the exporter of services/{name}"))
            if store_kind.data_volume(spec):
                claims.append(("volume", names.store_volume(name), f"the volume of services/{name}"))
            generation = getattr(spec, "volume_generation", None)
            if generation is not None:
                generations = {generation - 1, generation, generation + 1} - {-1, 0}
                claims += [("volume", names.store_volume(name, g), f"a volume of services/{name}") for g in generations]
                if name in cfg.pitr_stores():
                    claims += [
                        ("service", names.pitr_job(name, job), f"the point-in-time {job} of services/{name}")
                        for job in ("heartbeat", "full", "diff", "drill", "restore")
                    ]
                    claims.append(("volume", names.store_socket_volume(name), f"the socket volume of services/{name}"))
                    claims.append(("volume", names.pitr_scratch_volume(name), f"the scratch volume of services/{name}"))
        for kind, derived, owner in claims:
            first = owners.setdefault((kind, derived), owner)
            if first != owner:
                out.append(
                    f"services/{name}: its {kind} name {derived} is also the name of {first}; "
                    "expected another service name"
                )
                break
    return out


_LABEL_CONSTRAINT = re.compile(r"node\.labels\.([A-Za-z0-9._-]+) ?(==|!=) ?([A-Za-z0-9._-]+)")


def _node_labels(cfg: StackConfig) -> list[str]:
    """With node pools, an app's ``node.labels.<key>==<value>`` names a label some node has: a pool
    lowered to 0 nodes, or a label removed, would leave the app nowhere to run (its tasks pending
    forever). ``keel.node`` is keel's: an app pins to a pool by the pool's labels instead."""
    if not isinstance(cfg.host, HcloudHostSpec) or not cfg.host.clustered:
        return []
    offered = {
        (key, value): name for name, pool in cfg.host.pools.items() if pool.count for key, value in pool.labels.items()
    }
    declared = {(key, value): name for name, pool in cfg.host.pools.items() for key, value in pool.labels.items()}
    out = []
    for name, app in cfg.apps().items():
        for index, constraint in enumerate(app.constraints):
            match = _LABEL_CONSTRAINT.fullmatch(constraint.strip())
            if match is None or match.group(2) != "==":
                continue
            key, value = match.group(1), match.group(3)
            where = f"services/{name}/constraints/{index}"
            if key.startswith(grammar.RESERVED_LABEL_PREFIX):
                out.append(
                    f"{where}: found {show(constraint)}; keel.* labels are keel's own (keel.node pins its stores "
                    "to the host); expected a label of a pool, such as node.labels.tier==app"
                )
            elif (key, value) not in offered:
                pool = declared.get((key, value))
                why = (
                    f"pool {pool} has that label but no nodes (count 0): move services/{name} first (change or "
                    "remove this constraint), then lower the count"
                    if pool is not None
                    else "no pool has that label"
                )
                out.append(f"{where}: found {show(constraint)}, but no node would run it: {why}")
    return out


def _capacity(cfg: StackConfig) -> list[str]:
    plan = capacity.budget(cfg)
    nodes = capacity.node_budgets(cfg)
    out = []
    if plan.total_mb > plan.allowed_mb:
        where = "host/server_type" if isinstance(cfg.host, HcloudHostSpec) else "host/memory_mib"
        if nodes:
            where = "host/pools"
        biggest = sorted(plan.lines, key=lambda line: -line.memory_mb)[:3]
        detail = ", ".join(f"{line.name} {line.memory_mb}" for line in biggest)
        whose = f"the {len(nodes)} nodes'" if nodes else "the host's"
        out.append(
            f"{where}: memory limits add up to {plan.total_mb} MiB (largest: {detail}; rollout headroom "
            f"{plan.rollout_headroom_mb}), over {int(capacity.MAX_SHARE * 100)}% of {whose} "
            f"{plan.host_memory_mb} MiB ({plan.allowed_mb} MiB); expected a larger server type, more nodes "
            "or smaller limits"
            if nodes
            else f"{where}: memory limits add up to {plan.total_mb} MiB (largest: {detail}; rollout headroom "
            f"{plan.rollout_headroom_mb}), over {int(capacity.MAX_SHARE * 100)}% of {whose} "
            f"{plan.host_memory_mb} MiB ({plan.allowed_mb} MiB); expected a larger server type or smaller limits"
        )
    for key, node in nodes.items():
        if node.total_mb > node.allowed_mb:
            where = "host/server_type" if key == "host" else f"host/pools/{key.rsplit('-', 1)[0]}/server_type"
            biggest = sorted(node.lines, key=lambda line: -line.memory_mb)[:3]
            detail = ", ".join(f"{line.name} {line.memory_mb}" for line in biggest)
            out.append(
                f"{where}: the tasks that must run on node {key} add up to {node.total_mb} MiB (largest: {detail}), "
                f"over {int(capacity.MAX_SHARE * 100)}% of its {node.host_memory_mb} MiB ({node.allowed_mb} MiB); "
                "expected a larger server type or smaller limits"
            )
    if nodes and not out:
        room = max(node.allowed_mb - node.total_mb for node in nodes.values())
        for line in plan.lines:
            if line.where == "any" and line.task_mb > room:
                out.append(
                    f"services/{line.name}/resources/memory_mb: found {line.task_mb}, more than the {room} MiB "
                    "the roomiest node has left beside the tasks pinned to it; expected a smaller limit or a "
                    "larger server type"
                )
    return out


def plaintext_credentials(cfg: StackConfig) -> list[str]:
    """Warnings for literal env values under names that look like credentials (DB_PASSWORD, API_KEY)."""
    out = []
    for name, app in cfg.apps().items():
        for env, value in app.env.items():
            words = env.upper().split("_")
            if value and any(word in CREDENTIAL_WORDS for word in words):
                secret = env.lower()
                out.append(
                    f"services/{name}/env/{env}: a literal value under a name that looks like a credential is stored "
                    f"in plaintext in the stack and the service spec; make it a secret: "
                    f"pulumi config set --secret {secret} <value>, then move it to "
                    f"services/{name}/secrets/{env}: {secret}"
                )
    return out


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
        else:
            credentials = registry.kind_of(service).credentials(service)
            if isinstance(credentials, (Password, SecretUrl)) and credentials.secret:
                refs.setdefault(credentials.secret, f"services/{name}/{credentials.key}")
            if isinstance(credentials, Password):
                for login in credentials.standby:
                    if login.secret:
                        refs.setdefault(login.secret, f"services/{name}/{credentials.key}")
    for name, job in cfg.jobs.items():
        for env, ref in job.secrets.items():
            if ref.source == "secret":
                refs.setdefault(ref.name, f"jobs/{name}/secrets/{env}")
        if job.registry is not None:
            refs.setdefault(job.registry.password_secret, f"jobs/{name}/registry/password_secret")
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
        if cfg.pitr_stores():
            for key in ("access_key_secret", "secret_key_secret", "cipher_secret"):
                refs.setdefault(getattr(cfg.backup.pitr, key), f"backup/pitr/{key}")
    return refs


_HOST_TOKEN = re.compile(r"[a-z0-9-]+")


def referenced_stores(app: AppSpec, cfg: StackConfig) -> set[str]:
    """The stores an app uses, which it waits for on a deploy; conservatively, so a reference
    keel cannot see counts.

    Named: a ``store:``/``store-url:`` secret and a mounted volume. Over the network, only for an
    app on the data network (stores sit on no other): a store's short name or swarm service
    name as a host in an env value, the command, args, the health command or the migration
    command (``postgres://app@db:5432/app``, ``--redis=cache:6379``); and every store when the app
    holds a secret set in the config, whose value (a URL the user wrote) is unknown until deploy.
    """
    stores = cfg.stores()
    found = {ref.store for ref in app.secrets.values() if ref.store is not None} | set(app.volumes.values())
    if "data" not in app.networks:
        return found & set(stores)
    if any(ref.source == "secret" for ref in app.secrets.values()):
        return set(stores)
    texts = [*app.env.values(), *(app.command or ()), *(app.args or ()), *(app.health.command or ())]
    if app.migration is not None:
        texts += app.migration.command
    hosts = {token for text in texts for token in _HOST_TOKEN.findall(text.lower())}
    found |= {name for name in stores if name in hosts or cfg.names.store(name) in hosts}
    return found & set(stores)
