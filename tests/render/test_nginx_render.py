"""The nginx renderer: golden text per stack, the real nginx's verdict on it, and its rules."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.loader import parse
from config.models import RateLimits
from render.nginx import (
    MAIN_CONF_PATH,
    ORIGIN_PULL_CA_FILE,
    ORIGIN_PULL_CA_PATH,
    STATUS_CONF_PATH,
    NginxRoute,
    NginxSite,
    NginxUpstream,
    render_nginx_conf,
    render_nginx_files,
    render_status_conf,
)
from tests.helpers import stack_values, with_fragment
from tests.realtools.nginx_harness import NginxProcess, make_pki, stack_config, stack_site, wheel_nginx, work_dir
from tests.tool_requirements import require_root

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "nginx"


def check_golden(name: str, text: str) -> None:
    golden = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), f"rendered text differs from {golden}; UPDATE_GOLDEN=1 to accept"


def site(*routes: NginxRoute, **changes: object) -> NginxSite:
    upstreams = (NginxUpstream("web", ("tasks.web:8080",)), NginxUpstream("api", ("tasks.api:3000",)))
    return NginxSite(upstreams=upstreams, routes=routes or (NginxRoute("/", "web"),), **changes)  # type: ignore[arg-type]


def server_blocks(text: str) -> list[str]:
    """The HTTPS server blocks of a rendered config, as text."""
    return [
        block
        for block in text.split("\n    server {\n")[1:]
        if " ssl" in block.split("\n", 2)[0] and "ssl_reject_handshake on;" not in block
    ]


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_main_config_matches_golden(stack: str) -> None:
    check_golden(f"{stack}.nginx.conf", render_nginx_conf(stack_site(stack)))


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_status_include_matches_golden(stack: str) -> None:
    check_golden(f"{stack}.status.conf", render_status_conf(stack_site(stack)))


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_real_nginx_accepts_the_exact_production_text(stack: str) -> None:
    """`nginx -t` (nginx 1.31, as the 1.28 image parses it) on the golden text; only the
    certificate paths and the worker user, which exist only in the container, are swapped (the
    origin-pull CA for the file shipped in the repository)."""
    require_root("nginx -t binds the production ports (80, 443) and creates /var/run/nginx.pid")
    text = render_nginx_conf(stack_site(stack))
    assert "\nuser nginx;\n" in text
    with work_dir(f"keel-nginx-t-{stack}-") as directory:
        pki = make_pki(directory, ["example.com"])
        text = text.replace("\nuser nginx;\n", "\n")
        text = text.replace("/run/secrets/tls.crt", str(pki.certificate)).replace("/run/secrets/tls.key", str(pki.key))
        text = text.replace(ORIGIN_PULL_CA_PATH, str(ORIGIN_PULL_CA_FILE))
        result = NginxProcess(wheel_nginx(), directory, text, []).test_config()
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr, result.stderr


def test_upstreams_are_every_task_of_the_swarm_service_resolved_at_run_time() -> None:
    text = render_nginx_conf(stack_site("prod"))
    assert "resolver 127.0.0.11 valid=1s ipv6=off;" in text
    assert "        server tasks.shop-api:3000 resolve max_fails=1 fail_timeout=5s;" in text
    assert "        server tasks.shop-web:8080 resolve max_fails=1 fail_timeout=5s;" in text
    api = text[text.index("upstream api {") :]
    api = api[: api.index("}")]
    assert api.index("least_conn;") < api.index("keepalive 32;")  # nginx needs the method first
    # Below every common app server's idle timeout (gunicorn 2 s, uvicorn and Node 5 s): nginx closes first.
    assert "keepalive_timeout 1s;" in api
    assert "zone upstream_api 64k;" in api


def test_config_does_not_change_when_an_app_scales() -> None:
    base = stack_config("prod")
    scaled_apps = {name: app.model_copy(update={"replicas": app.replicas + 5}) for name, app in base.apps().items()}
    from render.nginx import site_from_config

    def render(apps: dict[str, object]) -> str:
        return render_nginx_conf(
            site_from_config(base.proxy, apps, server_names=("example.com",))  # type: ignore[arg-type]
        )

    assert render(scaled_apps) == render(base.apps())


def test_without_hostnames_the_default_server_answers_any_name() -> None:
    text = render_nginx_conf(stack_site("dev"))
    assert [b.split("server_name ")[1].split(";")[0] for b in server_blocks(text)] == ["_"]


def test_host_routes_get_a_server_block_of_their_own() -> None:
    routes = (NginxRoute("/", "web"), NginxRoute("/api/", "api"), NginxRoute("/", "api", host="grafana.example.com"))
    text = render_nginx_conf(site(*routes, server_names=("example.com", "grafana.example.com")))
    default, grafana = server_blocks(text)
    # The names the site serves are never the default server: unknown names are refused (reject_handshake).
    assert "server_name example.com;" in default and "default_server" not in default
    assert "server_name grafana.example.com;" in grafana and "default_server" not in grafana
    assert "location /api/ {" in default and "location /api/ {" not in grafana
    assert re.findall(r"proxy_pass http://(\w+);", grafana) == ["api"]


def test_a_server_without_a_root_route_answers_404_elsewhere() -> None:
    text = render_nginx_conf(site(NginxRoute("/api/", "api")))
    assert "        location / {\n            return 404;\n        }" in text


def test_real_ip_comes_from_cf_connecting_ip_when_proxied() -> None:
    text = render_nginx_conf(stack_site("prod"))
    https = server_blocks(text)[0]
    assert "real_ip_header CF-Connecting-IP;" in https
    assert "set_real_ip_from 173.245.48.0/20;" in https and "set_real_ip_from 2400:cb00::/32;" in https


def test_real_ip_comes_from_x_forwarded_for_of_trusted_proxies_without_cloudflare() -> None:
    cfg = stack_config("dev")
    proxy = cfg.proxy.model_copy(update={"trusted_proxies": ["10.1.0.0/16"]})
    from render.nginx import site_from_config

    text = render_nginx_conf(site_from_config(proxy, cfg.apps()))
    assert "set_real_ip_from 10.1.0.0/16;\n        real_ip_header X-Forwarded-For;" in text


def test_nothing_is_trusted_when_no_proxy_is_configured() -> None:
    text = render_nginx_conf(stack_site("dev"))
    assert "set_real_ip_from" not in text and "real_ip_header" not in text


def test_redirect_names_the_public_https_port_when_remapped() -> None:
    assert "return 301 https://$host:8443$request_uri;" in render_nginx_conf(stack_site("dev"))
    assert "return 301 https://$host$request_uri;" in render_nginx_conf(stack_site("prod"))


def test_rate_limit_zones_and_bursts_come_from_the_config() -> None:
    limits = RateLimits(api_rps=7, api_burst=9, login_rpm=2, login_burst=1, connections_per_ip=11, status=503)
    routes = (NginxRoute("/api/", "api", rate_limit="api"), NginxRoute("/login", "api", rate_limit="login"))
    text = render_nginx_conf(site(*routes, rate_limits=limits))
    assert "limit_req_zone $binary_remote_addr zone=req_api:10m rate=7r/s;" in text
    assert "limit_req_zone $binary_remote_addr zone=req_login:10m rate=2r/m;" in text
    assert "limit_req zone=req_api burst=9 nodelay;" in text
    assert "limit_req zone=req_login burst=1 nodelay;" in text
    assert "limit_conn conn_per_ip 11;" in text
    assert "limit_req_status 503;" in text and "limit_conn_status 503;" in text


def test_strip_prefix_pattern_drops_the_prefix_with_or_without_slash() -> None:
    assert NginxRoute("/api/", "api", strip_prefix=True).strip_pattern == "^/api/?(.*)$"
    assert NginxRoute("/v1.0", "api", strip_prefix=True).strip_pattern == r"^/v1\.0/?(.*)$"


def test_render_nginx_files_names_the_container_paths() -> None:
    files = render_nginx_files(stack_site("prod"))
    assert sorted(files) == sorted([MAIN_CONF_PATH, STATUS_CONF_PATH])
    assert "include /etc/nginx/keel.d/*.conf;" in files[MAIN_CONF_PATH]
    assert STATUS_CONF_PATH.startswith("/etc/nginx/keel.d/")
    assert "    listen 8081;" in files[STATUS_CONF_PATH]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: site(NginxRoute("/", "nope")), "route /: upstream 'nope' is not one of ['api', 'web']"),
        (lambda: site(NginxRoute("/", "web"), NginxRoute("/", "api")), "route / on the default host is declared twice"),
        (lambda: site(csp='default-src "self"'), "csp: double quotes, backslashes, $ and control characters"),
        (lambda: site(status_port=443), "http_port, https_port and status_port must differ; found (80, 443, 443)"),
        (lambda: NginxRoute("/api/", "api", cache="api", proxy_cache=True), "proxy_cache on a no-store (api) route"),
        (lambda: NginxRoute("/a b", "api"), "route path '/a b': expected a URL path prefix"),
        (lambda: NginxUpstream("api", ("tasks.api",)), "server 'tasks.api' is not host:port"),
        (lambda: NginxUpstream("Api", ("tasks.api:1",)), "upstream name 'Api'"),
        (lambda: site(real_ip_header="X Real"), "real_ip_header 'X Real' is not a header name"),
        (lambda: site(trusted_cidrs=("10.0.0.0/33",)), "does not appear to be an IPv4 or IPv6 network"),
    ],
)
def test_site_refuses_what_nginx_would_reject_or_misread(build: object, message: str) -> None:
    with pytest.raises(ValueError) as error:
        build()  # type: ignore[operator]
    assert message in str(error.value)


def test_duplicate_upstream_names_are_refused() -> None:
    with pytest.raises(ValueError, match="upstream 'web' is declared twice"):
        NginxSite(upstreams=(NginxUpstream("web", ("a:1",)), NginxUpstream("web", ("b:1",))), routes=())


def test_extra_upstreams_and_routes_are_rendered_beside_the_apps() -> None:
    grafana = NginxUpstream("grafana", ("tasks.shop-grafana:3000",))
    text = render_nginx_conf(
        stack_site("prod", extra_upstreams=(grafana,), extra_routes=(NginxRoute("/grafana/", "grafana"),))
    )
    assert "upstream grafana {" in text and "proxy_pass http://grafana;" in text
    assert dataclasses.replace(NginxRoute("/grafana/", "grafana")).upstream == "grafana"


@pytest.mark.parametrize(
    ("proxy_fragment", "message"),
    [
        (
            {"csp": "default-src 'self'; script-src \"x\""},
            "proxy/csp: found a double quote in the policy; expected a Content-Security-Policy of printable ASCII "
            "without double quotes",
        ),
        ({"csp": "script-src 'nonce-$x'"}, "proxy/csp: found a $ in the policy"),
        (
            {"routes": [{"path": "/api/", "service": "api", "cache": "api", "proxy_cache": True}]},
            "proxy/routes/0/proxy_cache: an api route is sent as no-store and is never cached",
        ),
    ],
)
def test_config_refuses_proxy_settings_nginx_cannot_honour(proxy_fragment: dict[str, object], message: str) -> None:
    values = with_fragment("dev", {"keel:proxy": proxy_fragment})
    raw = {
        key.removeprefix("keel:"): value if isinstance(value, str) else json.dumps(value)
        for key, value in {**stack_values("dev"), **values}.items()
    }
    with pytest.raises(ConfigError) as error:
        parse(raw)
    assert message in str(error.value)


def test_a_route_policy_replaces_the_sites_on_that_route_only():
    site = NginxSite(
        upstreams=(NginxUpstream("web", ("web:80",)), NginxUpstream("grafana", ("grafana:3100",))),
        routes=(NginxRoute("/", "web"), NginxRoute("/grafana/", "grafana", csp="script-src 'self' 'unsafe-inline'")),
    )
    text = render_nginx_conf(site)
    assert text.count(f'add_header Content-Security-Policy "{site.csp}" always;') == 1
    assert text.count("add_header Content-Security-Policy \"script-src 'self' 'unsafe-inline'\" always;") == 1


def test_a_route_policy_cannot_break_out_of_its_nginx_string():
    with pytest.raises(ValueError, match="csp"):
        NginxRoute("/grafana/", "grafana", csp='default-src "self"; return 200')


# ----------------------------------------------------------------------------- origin and private paths

ORIGIN_PULL_CA_SHA256 = "fa7511982d758634477a48dc6375f8fc8d5fed9fdb43235bc3923887fdea0597"
"""The file's digest, pinned: the same PEM as Cloudflare's documentation ("Set up authenticated origin
pulls", zone-level, Cloudflare certificate) and cloudflared's embedded copy, byte for byte."""


def test_the_shipped_origin_pull_ca_is_cloudflares_and_pinned() -> None:
    import hashlib

    from cryptography import x509

    data = ORIGIN_PULL_CA_FILE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == ORIGIN_PULL_CA_SHA256
    ca = x509.load_pem_x509_certificate(data)
    assert ca.subject.rfc4514_string().startswith("CN=origin-pull.cloudflare.net,")
    assert ca.not_valid_after_utc.year == 2029


def test_a_proxied_site_verifies_cloudflares_client_certificate_on_every_https_server() -> None:
    text = render_nginx_conf(stack_site("prod"))
    for block in server_blocks(text):
        assert f"ssl_client_certificate {ORIGIN_PULL_CA_PATH};\n        ssl_verify_client on;" in block
    assert "ssl_verify_client" not in render_nginx_conf(stack_site("dev"))


def test_unknown_names_are_refused_only_by_a_site_that_knows_its_names() -> None:
    prod = render_nginx_conf(stack_site("prod"))
    refusing = prod.split("ssl_reject_handshake on;")[0].rsplit("server {", 1)[1]
    assert "listen 443 ssl default_server;" in refusing
    assert prod.count("default_server;") == 2  # port 80's catch-all and the refusing 443 server
    assert "ssl_reject_handshake" not in render_nginx_conf(stack_site("dev"))


def test_private_patterns_cover_the_spellings_an_app_server_accepts() -> None:
    directory = NginxRoute("/actuator/", None, deny=True)
    assert directory.private_pattern == "^/actuator(?:[/;]|$)"
    for path in ("/actuator", "/actuator/", "/actuator/env", "/actuator;x/env"):
        assert re.match(directory.private_pattern, path, re.IGNORECASE), path
    for path in ("/actuators", "/shop/actuator/"):
        assert not re.match(directory.private_pattern, path, re.IGNORECASE), path
    file_like = NginxRoute("/metrics", None, deny=True)
    assert re.match(file_like.private_pattern, "/metrics.json") and file_like.private_pattern == "^/metrics"


def test_private_routes_come_first_longest_first() -> None:
    routes = (
        NginxRoute("/", "web"),
        NginxRoute("/actuator/", None, deny=True),
        NginxRoute("/actuator/health", "web", allow_from=("10.0.0.0/8",)),
    )
    text = render_nginx_conf(site(*routes))
    block = server_blocks(text)[0]
    health = block.index('location ~* "^/actuator/health"')
    actuator = block.index('location ~* "^/actuator(?:[/;]|$)"')
    assert health < actuator < block.index("location = /health") < block.index("location / {")
    assert "geo $keel_allowed_0 {\n        default 0;\n        10.0.0.0/8 1;\n    }" in text
    assert "if ($keel_allowed_0 = 0) {\n                return 404;" in block


def test_metrics_paths_are_denied_where_a_route_reaches_them() -> None:
    from config.models import AppSpec, HealthCheck, Resources, Route
    from render.nginx import metrics_denials

    def app(metrics_path: str) -> AppSpec:
        return AppSpec(
            image="x/y:1", port=1, health=HealthCheck(command=["true"]), resources=Resources(memory_mb=16),
            metrics_path=metrics_path,
        )  # fmt: skip

    apps = {"web": app("/metrics"), "api": app("/metrics"), "spring": app("/actuator/prometheus")}
    routes = [
        Route(path="/", service="web"),
        Route(path="/api/", service="api"),  # upstream sees /api/...: its /metrics is not reachable here
        Route(path="/svc/", service="api", strip_prefix=True),
        Route(path="/", service="spring", host="spring.example.com"),
        Route(path="/actuator/prometheus", service="spring", host="spring.example.com", allow_from=["10.0.0.0/8"]),
    ]
    denied = {(r.host, r.path) for r in metrics_denials(routes, apps)}
    # An explicit route for the path (here admitting a network) wins over the default denial.
    assert denied == {(None, "/metrics"), (None, "/svc/metrics")}
