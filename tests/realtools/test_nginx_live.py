"""The rendered nginx.conf run by a real nginx on loopback, asserted with real requests and sslyze.

The site is the prod stack's (topology/webapp.yaml routes, Cloudflare-style realip) with the
ports remapped, the certificate from a test CA, and every upstream pointed at small local
servers through a loopback DNS server, so the `resolve` path production uses is the one
exercised. Extra routes cover what prod's topology does not use: a host-specific server,
proxy_cache, strip_prefix, cache policy `none`, and an upstream that appears after start.
"""

from __future__ import annotations

import dataclasses
import gzip
import http.client
import json
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect as websocket_connect

from render import observability as obs
from render.nginx import (
    CACHE_CONTROL,
    STATUS_PATH,
    NginxRoute,
    NginxSite,
    NginxUpstream,
    render_nginx_conf,
    render_status_conf,
)
from tests.realtools.nginx_harness import (
    LOOPBACK,
    LoopbackDns,
    NginxProcess,
    Pki,
    UpstreamServer,
    WebsocketEcho,
    debian_nginx,
    free_port,
    make_pki,
    stack_site,
    upstream_servers,
    wheel_nginx,
    work_dir,
)

HOST = "app.test"
ADMIN_HOST = "admin.test"
TRUSTED_PEER = "127.0.0.2"  # stands in for a Cloudflare edge address
LOGIN_PEER = "127.0.0.3"  # its own rate-limit bucket, so other tests never spend it
GRAFANA_API_PEER = "127.0.0.4"
GRAFANA_LOGIN_PEER = "127.0.0.5"
CLIENT_IP = "198.51.100.7"


@dataclass
class Proxy:
    site: NginxSite
    nginx: NginxProcess
    pki: Pki
    upstreams: dict[str, UpstreamServer]
    dns: LoopbackDns
    directory: Path

    def request(
        self,
        path: str,
        *,
        host: str = HOST,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        source: str = LOOPBACK,
        body: bytes | None = None,
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """One HTTPS request with SNI and Host set to `host`, from the loopback address `source`."""
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        connection = http.client.HTTPSConnection(LOOPBACK, self.site.https_port, context=context, timeout=10)
        # SNI must name the host, and the peer address is the point of some tests: connect by hand.
        raw = socket.create_connection((LOOPBACK, self.site.https_port), 10, (source, 0))
        connection.sock = context.wrap_socket(raw, server_hostname=host)
        try:
            connection.request(method, path, body=body, headers={"Host": host, **(headers or {})})
            response = connection.getresponse()
            return response, response.read()
        finally:
            connection.close()

    def plain_request(self, path: str, *, host: str = HOST) -> tuple[http.client.HTTPResponse, bytes]:
        connection = http.client.HTTPConnection(LOOPBACK, self.site.http_port, timeout=10)
        try:
            connection.request("GET", path, headers={"Host": host})
            response = connection.getresponse()
            return response, response.read()
        finally:
            connection.close()


def log_entry(proxy: Proxy, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The last access-log entry that `match` accepts; nginx logs just after the response is sent."""
    deadline = time.monotonic() + 5
    while True:
        lines = (proxy.directory / "access.log").read_text().splitlines()
        entries = [json.loads(line) for line in lines]  # every line must be JSON
        found = [e for e in entries if match(e)]
        if found or time.monotonic() > deadline:
            assert found, "no matching access-log entry"
            return dict(found[-1])
        time.sleep(0.05)


def echoed(body: bytes) -> dict[str, object]:
    """What the upstream saw, from its JSON reply or the JSON embedded in its HTML page."""
    text = body.decode()
    match = re.search(r"<script type='application/json'>(.*?)</script>", text)
    return dict(json.loads(match.group(1) if match else text))


def live_site(directory: Path, pki: Pki, dns_port: int, ports: dict[str, int], include_dir: Path) -> NginxSite:
    prod = stack_site("prod")
    upstreams = (
        NginxUpstream("web", (f"web.keel.test:{ports['web']}",)),
        # Two replicas of api behind one name, as tasks.<service> returns them.
        NginxUpstream("api", (f"api.keel.test:{ports['api']}", f"api.keel.test:{ports['api-2']}")),
        NginxUpstream("ws", (f"ws.keel.test:{ports['ws']}",)),
        NginxUpstream("admin", (f"admin.keel.test:{ports['admin']}",)),
        NginxUpstream("late", (f"late.keel.test:{ports['late']}",)),
        NginxUpstream("grafana", (f"grafana.keel.test:{ports['grafana']}",)),
    )
    # prod's websocket route goes to a websocket server of its own; the rest keep prod's targets.
    routes = tuple(dataclasses.replace(r, upstream="ws") if r.websocket else r for r in prod.routes)
    routes += (
        NginxRoute("/assets/", "web", cache="static", proxy_cache=True),
        NginxRoute("/raw/", "web", cache="none"),
        NginxRoute("/strip/", "web", strip_prefix=True),
        NginxRoute("/late/", "late"),
        NginxRoute("/", "admin", host=ADMIN_HOST, cache="api"),
        # The observability stack's routes to Grafana, as ObservabilityStack.nginx_routes gives them.
        *obs.grafana_routes(
            obs.GrafanaUpstream(
                "grafana", 3100, host=None, path_prefix="/grafana/", root_url="https://app.test/grafana/"
            )
        ),
    )
    return dataclasses.replace(
        prod,
        upstreams=upstreams,
        routes=routes,
        server_names=(HOST,),
        trusted_cidrs=(f"{TRUSTED_PEER}/32",),
        certificate_path=str(pki.certificate),
        certificate_key_path=str(pki.key),
        listen_addresses=(LOOPBACK,),
        http_port=free_port(),
        https_port=(https_port := free_port()),
        public_https_port=https_port,
        status_port=free_port(),
        resolver=f"{LOOPBACK}:{dns_port}",
        resolver_valid_s=1,
        access_log=str(directory / "access.log"),
        error_log=str(directory / "error.log"),
        pid_path=str(directory / "nginx.pid"),
        worker_user=None,
        worker_processes="2",
        mime_types_path="/etc/nginx/mime.types",
        cache_dir=str(directory / "cache"),
        acme_webroot=str(directory / "acme"),
        include_glob=str(include_dir / "*.conf"),
        # Origin pulls and unknown names are tests/realtools/test_origin_live.py's: these requests carry no
        # client certificate.
        client_ca_path=None,
        reject_unknown_names=False,
    )


@pytest.fixture(scope="module")
def proxy() -> Iterator[Proxy]:
    with work_dir("keel-nginx-live-") as directory:
        yield from run_proxy(directory)


def run_proxy(directory: Path) -> Iterator[Proxy]:
    pki = make_pki(directory, [HOST, ADMIN_HOST])
    challenge = directory / "acme" / ".well-known" / "acme-challenge"
    challenge.mkdir(parents=True)
    (challenge / "token123").write_text("token123.thumbprint")
    include_dir = directory / "keel.d"
    include_dir.mkdir()
    records = {f"{name}.keel.test": [LOOPBACK] for name in ("web", "api", "ws", "admin", "grafana")}
    with (
        upstream_servers("web", "api", "api-2", "admin", "late", "grafana") as upstreams,
        WebsocketEcho() as websocket,
        LoopbackDns(records) as dns,
    ):
        ports = {name: server.port for name, server in upstreams.items()} | {"ws": websocket.port}
        site = live_site(directory, pki, dns.port, ports, include_dir)
        nginx = NginxProcess(wheel_nginx(), directory, render_nginx_conf(site), [site.http_port, site.https_port])
        with nginx:
            yield Proxy(site, nginx, pki, upstreams, dns, directory)


def test_wheel_nginx_accepts_the_rendered_config(proxy: Proxy) -> None:
    result = proxy.nginx.test_config()
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "[warn]" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("path", "upstreams"),
    [
        ("/", {"web"}),
        ("/about/team", {"web"}),
        ("/api/items", {"api", "api-2"}),
        ("/api/auth/logout", {"api", "api-2"}),
        ("/uploads/cat.png", {"api", "api-2"}),
    ],
)
def test_routes_each_path_prefix_to_its_service(proxy: Proxy, path: str, upstreams: set[str]) -> None:
    response, _ = proxy.request(path)
    assert response.status == 200
    assert response.getheader("X-Upstream") in upstreams


def test_host_specific_routes_form_their_own_server(proxy: Proxy) -> None:
    response, body = proxy.request("/dashboard", host=ADMIN_HOST)
    assert response.status == 200
    assert echoed(body)["upstream"] == "admin"
    # The default host's /api/ is not inherited by admin.test: its "/" route takes it.
    response, body = proxy.request("/api/items", host=ADMIN_HOST)
    assert echoed(body)["upstream"] == "admin"


def test_strip_prefix_drops_the_route_path(proxy: Proxy) -> None:
    response, body = proxy.request("/strip/a/b?q=1")
    assert response.status == 200
    assert echoed(body)["path"] == "/a/b?q=1"


def test_http_redirects_to_https_on_the_public_port(proxy: Proxy) -> None:
    response, _ = proxy.plain_request("/api/items?page=2")
    assert response.status == 301
    assert response.getheader("Location") == f"https://{HOST}:{proxy.site.public_https_port}/api/items?page=2"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_health_is_answered_by_nginx_itself(proxy: Proxy, scheme: str) -> None:
    hits_before = sum(sum(s.hits.values()) for s in proxy.upstreams.values())
    response, body = proxy.plain_request("/health") if scheme == "http" else proxy.request("/health")
    assert (response.status, body) == (200, b"ok\n")
    assert sum(sum(s.hits.values()) for s in proxy.upstreams.values()) == hits_before


def test_acme_challenge_is_served_over_http_without_redirect(proxy: Proxy) -> None:
    response, body = proxy.plain_request("/.well-known/acme-challenge/token123")
    assert (response.status, body) == (200, b"token123.thumbprint")


@pytest.mark.parametrize("path", ["/", "/api/items", "/raw/missing"])
def test_security_headers_are_on_every_response(proxy: Proxy, path: str) -> None:
    response, _ = proxy.request(path)
    site = proxy.site
    assert response.getheader("Strict-Transport-Security") == f"max-age={site.hsts_max_age_s}"
    assert response.getheader("X-Frame-Options") == "SAMEORIGIN"
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert response.getheader("Referrer-Policy") == "strict-origin-when-cross-origin"
    assert response.getheader("Permissions-Policy") == site.permissions_policy
    assert response.getheader("Content-Security-Policy") == site.csp
    assert response.getheader("Server") == "nginx"  # server_tokens off: no version
    assert response.getheader("X-Powered-By") is None


def test_gzip_compresses_text_but_not_images(proxy: Proxy) -> None:
    response, body = proxy.request("/", headers={"Accept-Encoding": "gzip"})
    assert response.getheader("Content-Encoding") == "gzip"
    assert gzip.decompress(body).startswith(b"<!doctype html>")
    response, body = proxy.request("/api/items", headers={"Accept-Encoding": "gzip"})
    assert response.getheader("Content-Encoding") == "gzip"
    response, body = proxy.request("/uploads/cat.png", headers={"Accept-Encoding": "gzip"})
    assert response.getheader("Content-Encoding") is None
    assert body.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("path", "cache_control"),
    [
        ("/", CACHE_CONTROL["pages_html"]),
        ("/about", CACHE_CONTROL["pages_html"]),
        ("/static/main.3f2a9c1d.js", CACHE_CONTROL["pages_fingerprinted"]),
        ("/static/app-5d41402abc4b2a76.css", CACHE_CONTROL["pages_fingerprinted"]),
        ("/static/main.js", CACHE_CONTROL["pages_html"]),
        ("/assets/site.css", CACHE_CONTROL["static"]),
        ("/uploads/cat.png", CACHE_CONTROL["images"]),
        ("/api/items", "no-store"),
        ("/api/auth/logout", "no-store"),
        ("/raw/page", "private, max-age=5"),  # cache "none": the upstream's own header
    ],
)
def test_cache_headers_follow_the_route_policy(proxy: Proxy, path: str, cache_control: str) -> None:
    response, _ = proxy.request(path)
    assert response.status == 200
    assert response.getheaders().count(("Cache-Control", cache_control)) == 1, response.getheaders()
    assert [h for h, _ in response.getheaders()].count("Cache-Control") == 1


def test_api_no_store_holds_for_errors_too(proxy: Proxy) -> None:
    response, _ = proxy.request("/api/missing")
    assert response.status == 404
    assert response.getheader("Cache-Control") == "no-store"


def test_proxy_cache_serves_repeat_requests_without_the_upstream(proxy: Proxy) -> None:
    path = "/assets/cached-once.css"
    first, body = proxy.request(path)
    second, body_again = proxy.request(path)
    assert (first.getheader("X-Cache-Status"), second.getheader("X-Cache-Status")) == ("MISS", "HIT")
    assert body == body_again
    assert proxy.upstreams["web"].hits[path] == 1


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/.env", 403),
        ("/.git/config", 403),
        ("/api/.htpasswd", 403),
        ("/uploads/.secret/cat.png", 403),
        ("/.well-known/security.txt", 200),
    ],
)
def test_dotfiles_are_refused_but_well_known_is_public(proxy: Proxy, path: str, status: int) -> None:
    response, _ = proxy.request(path)
    assert response.status == status


def test_login_burst_is_then_refused_with_the_configured_status(proxy: Proxy) -> None:
    limits = proxy.site.rate_limits
    statuses = [
        proxy.request("/api/auth/login", method="POST", body=b"{}", source=LOGIN_PEER)[0].status for _ in range(6)
    ]
    allowed = 1 + limits.login_burst
    assert statuses == [200] * allowed + [limits.status] * (6 - allowed)


@pytest.mark.parametrize("path", ["/grafana/", "/grafana/d/abc/overview", "/grafana/login", "/grafana/api/health"])
def test_grafanas_routes_carry_a_policy_that_lets_its_inline_boot_script_run(proxy: Proxy, path: str) -> None:
    response, body = proxy.request(path)
    assert response.status == 200
    assert echoed(body)["upstream"] == "grafana"
    policy = response.getheader("Content-Security-Policy")
    assert policy == obs.GRAFANA_CSP
    assert "'unsafe-inline'" in next(d for d in policy.split(";") if d.strip().startswith("script-src"))
    # One policy only: two would both be enforced, the stricter winning.
    assert response.headers.get_all("Content-Security-Policy") == [obs.GRAFANA_CSP]
    assert response.getheader("Strict-Transport-Security") == f"max-age={proxy.site.hsts_max_age_s}"
    # Everything else keeps the site's policy.
    assert proxy.request("/")[0].getheader("Content-Security-Policy") == proxy.site.csp


def test_grafana_login_attempts_are_rate_limited(proxy: Proxy) -> None:
    limits = proxy.site.rate_limits
    statuses = [
        proxy.request("/grafana/login", method="POST", body=b"{}", source=GRAFANA_LOGIN_PEER)[0].status
        for _ in range(6)
    ]
    allowed = 1 + limits.login_burst
    assert statuses == [200] * allowed + [limits.status] * (6 - allowed)


def test_grafana_api_calls_are_rate_limited(proxy: Proxy) -> None:
    """At least burst + 1 and at most burst + 1 + rate x elapsed calls pass (nginx's limit_req,
    nodelay); the rest are refused. Eight keep-alive connections from one client call until the
    first refusal (within a deadline), together far faster than the rate that refills the bucket."""
    limits = proxy.site.rate_limits
    context = ssl.create_default_context(cafile=str(proxy.pki.ca))
    statuses: list[int] = []
    refused = threading.Event()

    def caller() -> None:
        raw = socket.create_connection((LOOPBACK, proxy.site.https_port), 10, (GRAFANA_API_PEER, 0))
        connection = http.client.HTTPSConnection(LOOPBACK, proxy.site.https_port, context=context, timeout=10)
        connection.sock = context.wrap_socket(raw, server_hostname=HOST)
        try:
            while not refused.is_set() and time.monotonic() - started < 15:
                connection.request("GET", "/grafana/api/search", headers={"Host": HOST})
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
                if response.status == limits.status:
                    refused.set()
        finally:
            connection.close()

    started = time.monotonic()
    callers = [threading.Thread(target=caller) for _ in range(8)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(30)
    elapsed = time.monotonic() - started
    assert refused.is_set(), f"no refusal after {len(statuses)} calls in {elapsed:.1f}s"
    assert set(statuses) == {200, limits.status}
    allowed = 1 + limits.api_burst
    assert allowed <= statuses.count(200) <= allowed + limits.api_rps * elapsed + 1


def test_websocket_upgrade_works_end_to_end(proxy: Proxy) -> None:
    context = ssl.create_default_context(cafile=str(proxy.pki.ca))
    uri = f"wss://{HOST}:{proxy.site.https_port}/api/ws"
    sock = socket.create_connection((LOOPBACK, proxy.site.https_port), 10)
    with websocket_connect(uri, ssl=context, sock=sock, server_hostname=HOST, open_timeout=10) as websocket:
        for message in ("hello", "second message"):
            websocket.send(message)
            assert websocket.recv(timeout=10) == message


@pytest.mark.parametrize(
    ("source", "expected_client"),
    [(TRUSTED_PEER, CLIENT_IP), (LOOPBACK, LOOPBACK)],
    ids=["trusted-peer", "untrusted-peer"],
)
def test_client_ip_is_believed_only_from_trusted_peers(proxy: Proxy, source: str, expected_client: str) -> None:
    headers = {"CF-Connecting-IP": CLIENT_IP, "X-Forwarded-For": "203.0.113.66", "User-Agent": f"probe-{source}"}
    response, body = proxy.request("/api/whoami", headers=headers, source=source)
    assert response.status == 200
    seen = echoed(body)["headers"]
    assert isinstance(seen, dict)
    assert (seen["x-real-ip"], seen["x-forwarded-for"]) == (expected_client, expected_client)
    entry = log_entry(proxy, lambda e: e["user_agent"] == f"probe-{source}")
    assert (entry["remote_addr"], entry["peer_addr"], entry["status"]) == (expected_client, source, 200)


def test_access_log_is_one_json_object_per_request(proxy: Proxy) -> None:
    proxy.request('/api/log-probe?x="quoted"', headers={"User-Agent": 'agent "with quotes"'})
    probe = log_entry(proxy, lambda e: str(e["uri"]).startswith("/api/log-probe"))
    assert probe["user_agent"] == 'agent "with quotes"'
    assert probe["method"] == "GET" and probe["tls"] in {"TLSv1.2", "TLSv1.3"}
    assert probe["upstream"].startswith("127.0.0.1:")


def test_least_conn_sends_new_requests_to_the_idle_replica(proxy: Proxy) -> None:
    slow: dict[str, str] = {}

    def hold() -> None:
        response, _ = proxy.request("/api/slow")
        slow["upstream"] = str(response.getheader("X-Upstream"))

    holder = threading.Thread(target=hold)
    holder.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(s.hits["/api/slow"] for s in proxy.upstreams.values()):
        time.sleep(0.02)
    busy = next(name for name in ("api", "api-2") if proxy.upstreams[name].hits["/api/slow"])
    quick = [proxy.request(f"/api/quick/{n}")[0].getheader("X-Upstream") for n in range(4)]
    holder.join(10)
    assert slow["upstream"] == busy
    assert set(quick) == {"api-2" if busy == "api" else "api"}


def test_upstream_that_resolves_after_start_is_used_without_reload(proxy: Proxy) -> None:
    response, _ = proxy.request("/late/x")
    assert response.status == 502  # no task yet: nginx started anyway and answers 502
    proxy.dns.set("late.keel.test", [LOOPBACK])
    deadline = time.monotonic() + 15
    status = 502
    while time.monotonic() < deadline and status != 200:
        time.sleep(0.25)
        status = proxy.request("/late/x")[0].status
    assert status == 200
    assert proxy.dns.queries["late.keel.test"] >= 2


def test_sslyze_finds_the_tls_setup_compliant_with_mozilla_intermediate(proxy: Proxy) -> None:
    target = f"{HOST}:{proxy.site.https_port}{{{LOOPBACK}}}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sslyze",
            "--mozilla_config=intermediate",
            "--certinfo_ca_file",
            str(proxy.pki.ca),
            target,
        ],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    # sslyze exits 0 when it cannot connect at all, so the verdict line is what counts.
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK - Compliant" in result.stdout, result.stdout + result.stderr


# ----------------------------------------------------------------------------- status include (Debian's nginx)


def status_host(directory: Path, site: NginxSite) -> str:
    """A minimal main config around the rendered status include, as the image's nginx.conf includes it."""
    (directory / "status.conf").write_text(render_status_conf(site))
    return (
        f"pid {directory}/nginx.pid;\nerror_log {directory}/error.log;\nevents {{}}\n"
        f"http {{\n    access_log off;\n    include {directory}/status.conf;\n}}\n"
    )


@pytest.mark.parametrize(
    ("allow", "status"),
    [((), 403), ((f"{LOOPBACK}/32",), 200)],
    ids=["private-ranges-only", "loopback-allowed"],
)
def test_stub_status_answers_only_allowed_networks(allow: tuple[str, ...], status: int) -> None:
    base = NginxSite(upstreams=(), routes=(), listen_addresses=(LOOPBACK,), status_port=free_port())
    site = dataclasses.replace(base, status_allow=allow or base.status_allow)
    with work_dir("keel-nginx-status-") as directory:
        nginx = NginxProcess(debian_nginx(), directory, status_host(directory, site), [site.status_port])
        checked = nginx.test_config()
        assert checked.returncode == 0, checked.stderr
        with nginx:
            connection = http.client.HTTPConnection(LOOPBACK, site.status_port, timeout=10)
            connection.request("GET", STATUS_PATH)
            response = connection.getresponse()
            body = response.read()
            connection.close()
    assert response.status == status
    if status == 200:
        assert body.startswith(b"Active connections:")
