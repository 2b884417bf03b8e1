"""The origin's own defences, with a real nginx on loopback and `openssl s_client`:

- Authenticated Origin Pulls: only a TLS client whose certificate the origin-pull CA signed (in
  production Cloudflare's edge, here a test CA standing in for Cloudflare's) is served; a client
  without one, or with one from another CA, gets 400 and never reaches an app.
- Unknown names: a handshake for a name the site does not serve (or for none, as a scanner that
  connects to the bare address sends) is refused; the site's certificate is never shown.
- Private paths: a deny route answers 404 in every spelling an app server accepts (case, ";params",
  percent-encoding, doubled slashes), an allow_from route serves only the named networks (the
  visitor's address behind the trusted edge, not the edge's), and an app's metrics_path is denied
  at the proxy by default.

The site is built the way the ProxyTier builds it (``site_from_config`` from config models), with
the ports, certificates and upstream addresses of this machine.
"""

from __future__ import annotations

import dataclasses
import datetime
import http.client
import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from config.models import AppSpec, HealthCheck, ProxyConfig, Resources, Route
from render.nginx import NginxSite, NginxUpstream, render_nginx_conf, site_from_config
from tests.realtools.nginx_harness import (
    LOOPBACK,
    LoopbackDns,
    NginxProcess,
    Pki,
    UpstreamServer,
    free_port,
    make_pki,
    upstream_servers,
    wheel_nginx,
    work_dir,
)

HOST = "shop.test"
EDGE_PEER = "127.0.0.2"
"""Stands in for a Cloudflare edge address: the only peer whose CF-Connecting-IP is believed."""
OFFICE = "198.51.100.0/24"
OFFICE_CLIENT = "198.51.100.23"
STRANGER = "203.0.113.9"


@dataclass(frozen=True)
class ClientCert:
    certificate: Path
    key: Path


def _client_ca(directory: Path, name: str) -> tuple[Path, ClientCert]:
    """A CA (as Cloudflare's origin-pull CA) and a client certificate it signed (as the edge's)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} origin pull CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "origin-pull.cloudflare.net")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (directory / f"{name}-ca.pem", directory / f"{name}.crt", directory / f"{name}.key")
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, ClientCert(cert_path, key_path)


def _app(port: int, metrics_path: str | None = None) -> AppSpec:
    return AppSpec(
        image="example/app:1.0.0",
        port=port,
        health=HealthCheck(http_path="/health"),
        resources=Resources(memory_mb=64),
        metrics_path=metrics_path,
    )


def origin_site(directory: Path, pki: Pki, client_ca: Path, dns_port: int) -> NginxSite:
    proxy = ProxyConfig(
        routes=[
            Route(path="/", service="web"),
            Route(path="/actuator/", deny=True),
            Route(path="/admin/", service="web", allow_from=[OFFICE]),
            Route(path="/svc/", service="api", strip_prefix=True),
        ]
    )
    apps = {"web": _app(8080, metrics_path="/metrics"), "api": _app(3000, metrics_path="/prometheus")}
    site = site_from_config(
        proxy,
        apps,
        server_names=(HOST,),
        cloudflare_cidrs=(f"{EDGE_PEER}/32",),
        docker_service_name=lambda service: f"{service}.keel.test",
    )
    # The ProxyTier's site, as it would be rendered for Cloudflare, moved onto this machine.
    assert site.client_ca_path is not None and site.rejects_unknown_names
    https_port = free_port()
    return dataclasses.replace(
        site,
        client_ca_path=str(client_ca),
        certificate_path=str(pki.certificate),
        certificate_key_path=str(pki.key),
        listen_addresses=(LOOPBACK,),
        http_port=free_port(),
        https_port=https_port,
        public_https_port=https_port,
        status_port=free_port(),
        resolver=f"{LOOPBACK}:{dns_port}",
        access_log=str(directory / "access.log"),
        error_log=str(directory / "error.log"),
        pid_path=str(directory / "nginx.pid"),
        worker_user=None,
        worker_processes="1",
        mime_types_path="/etc/nginx/mime.types",
        cache_dir=str(directory / "cache"),
        acme_webroot=str(directory / "acme"),
        include_glob=str(directory / "keel.d" / "*.conf"),
    )


@dataclass
class Origin:
    site: NginxSite
    pki: Pki
    edge: ClientCert
    rogue: ClientCert
    upstreams: dict[str, UpstreamServer]
    directory: Path

    def request(
        self,
        path: str,
        *,
        client: ClientCert | None = None,
        source: str = LOOPBACK,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """One HTTPS request for HOST from the loopback address ``source``, with a client certificate or none."""
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        if client is not None:
            context.load_cert_chain(str(client.certificate), str(client.key))
        raw = socket.create_connection((LOOPBACK, self.site.https_port), 10, (source, 0))
        connection = http.client.HTTPSConnection(LOOPBACK, self.site.https_port, context=context, timeout=10)
        connection.sock = context.wrap_socket(raw, server_hostname=HOST)
        try:
            # http.client would normalise nothing, so the path reaches nginx exactly as written.
            connection.request("GET", path, headers={"Host": HOST, **(headers or {})})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def edge_request(self, path: str, visitor: str) -> tuple[int, bytes]:
        """A request as Cloudflare's edge sends it: its certificate, its address, the visitor's in a header."""
        return self.request(path, client=self.edge, source=EDGE_PEER, headers={"CF-Connecting-IP": visitor})

    def s_client(self, *args: str, request: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        """openssl s_client against the origin, sending ``request`` once the handshake is done."""
        command = ["openssl", "s_client", "-connect", f"{LOOPBACK}:{self.site.https_port}", "-CAfile", str(self.pki.ca)]
        # With a request, wait for the server to close (Connection: close); without, end at stdin's end.
        wait = ["-ign_eof"] if request else []
        return subprocess.run([*command, *wait, *args], input=request, capture_output=True, timeout=30, check=False)


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    with work_dir("keel-origin-") as directory:
        pki = make_pki(directory, [HOST])
        edge_ca, edge = _client_ca(directory, "edge")
        _, rogue = _client_ca(directory, "rogue")
        (directory / "keel.d").mkdir()
        with upstream_servers("web", "api") as upstreams:
            records = {f"{name}.keel.test": [LOOPBACK] for name in upstreams}
            with LoopbackDns(records) as dns:
                site = origin_site(directory, pki, edge_ca, dns.port)
                # The upstreams listen on ports of their own: point each upstream at its server.
                site = dataclasses.replace(
                    site,
                    upstreams=tuple(
                        NginxUpstream(u.name, (f"{u.name}.keel.test:{upstreams[u.name].port}",)) for u in site.upstreams
                    ),
                )
                nginx = NginxProcess(wheel_nginx(), directory, render_nginx_conf(site), [site.https_port])
                with nginx:
                    yield Origin(site, pki, edge, rogue, upstreams, directory)


def _echoed(body: bytes) -> dict[str, object]:
    """What the upstream saw: its JSON, embedded in the HTML page it answers with."""
    text = body.decode()
    start = text.index("<script type='application/json'>") + len("<script type='application/json'>")
    return dict(json.loads(text[start : text.index("</script>", start)]))


def _upstream_hits(origin: Origin) -> int:
    return sum(sum(server.hits.values()) for server in origin.upstreams.values())


# ----------------------------------------------------------------------------- origin pulls


def test_openssl_with_the_edge_certificate_is_served(origin: Origin) -> None:
    request = f"GET /shop HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    result = origin.s_client(
        "-servername", HOST, "-cert", str(origin.edge.certificate), "-key", str(origin.edge.key), request=request
    )
    assert b"HTTP/1.1 200 OK" in result.stdout, result.stdout.decode(errors="replace")
    assert b"Verify return code: 0 (ok)" in result.stdout


@pytest.mark.parametrize("client", ["none", "rogue"])
def test_openssl_without_a_certificate_the_edge_ca_signed_gets_400_and_no_app(origin: Origin, client: str) -> None:
    hits = _upstream_hits(origin)
    request = f"GET /shop HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    args = ["-servername", HOST]
    if client == "rogue":
        args += ["-cert", str(origin.rogue.certificate), "-key", str(origin.rogue.key)]
    result = origin.s_client(*args, request=request)
    assert b"HTTP/1.1 400 Bad Request" in result.stdout, result.stdout.decode(errors="replace")
    expected = b"No required SSL certificate was sent" if client == "none" else b"The SSL certificate error"
    assert expected in result.stdout
    assert _upstream_hits(origin) == hits


def test_python_clients_see_the_same_verdicts(origin: Origin) -> None:
    assert origin.request("/shop", client=origin.edge)[0] == 200
    assert origin.request("/shop")[0] == 400
    assert origin.request("/shop", client=origin.rogue)[0] == 400


# ----------------------------------------------------------------------------- unknown names


@pytest.mark.parametrize("name", ["other.test", None])
def test_a_handshake_for_a_name_the_site_does_not_serve_is_refused(origin: Origin, name: str | None) -> None:
    args = ["-servername", name] if name else ["-noservername"]
    args += ["-cert", str(origin.edge.certificate), "-key", str(origin.edge.key)]
    result = origin.s_client(*args, request=b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
    assert result.returncode != 0
    # TLS alert 112, unrecognized_name: nginx's ssl_reject_handshake.
    assert b"unrecognized name" in result.stderr or b"alert number 112" in result.stderr, result.stderr
    assert b"BEGIN CERTIFICATE" not in result.stdout and b"subject=" not in result.stdout
    assert b"HTTP/1.1" not in result.stdout


def test_the_served_name_shows_the_site_certificate(origin: Origin) -> None:
    result = origin.s_client("-servername", HOST, "-cert", str(origin.edge.certificate), "-key", str(origin.edge.key))
    assert f"CN = {HOST}".encode() in result.stdout or f"CN={HOST}".encode() in result.stdout, result.stdout


# ----------------------------------------------------------------------------- private paths


@pytest.mark.parametrize(
    "path",
    [
        "/actuator/env",
        "/actuator/",
        "/actuator",
        "/ACTUATOR/env",
        "/Actuator/heapdump",
        "/actuator;jsessionid=x/env",
        "/actuator;/env",
        "/%61ctuator/env",
        "//actuator/env",
        "/actuator/../actuator/env",
        "/actuator/env?x=1",
    ],
)
def test_a_denied_prefix_is_404_in_every_spelling_an_app_server_accepts(origin: Origin, path: str) -> None:
    hits = _upstream_hits(origin)
    status, body = origin.edge_request(path, OFFICE_CLIENT)
    assert status == 404, (path, body)
    assert _upstream_hits(origin) == hits, f"{path} reached an app"


def test_paths_that_only_look_alike_are_served(origin: Origin) -> None:
    assert origin.edge_request("/actuators-guide", STRANGER)[0] == 200
    assert origin.edge_request("/shop/actuator/env", STRANGER)[0] == 200


@pytest.mark.parametrize("path", ["/admin/users", "/ADMIN/users", "/admin;x=1/users", "/admin"])
def test_a_restricted_prefix_is_404_for_other_networks(origin: Origin, path: str) -> None:
    hits = _upstream_hits(origin)
    assert origin.edge_request(path, STRANGER)[0] == 404
    assert _upstream_hits(origin) == hits


def test_a_restricted_prefix_serves_the_named_network_by_the_visitor_address(origin: Origin) -> None:
    status, body = origin.edge_request("/admin/users", OFFICE_CLIENT)
    assert status == 200
    seen = _echoed(body)
    assert seen["upstream"] == "web" and seen["path"] == "/admin/users"


def test_a_restricted_prefix_believes_the_visitor_header_only_from_the_edge(origin: Origin) -> None:
    # The same header from an address that is not the edge's: the peer is what counts, and it is not
    # in the office network.
    status, _ = origin.request("/admin/users", client=origin.edge, headers={"CF-Connecting-IP": OFFICE_CLIENT})
    assert status == 404


@pytest.mark.parametrize("path", ["/metrics", "/metrics/", "/METRICS", "/svc/prometheus", "/svc/prometheus;x"])
def test_an_app_metrics_path_is_denied_at_the_proxy(origin: Origin, path: str) -> None:
    hits = _upstream_hits(origin)
    assert origin.edge_request(path, OFFICE_CLIENT)[0] == 404
    assert _upstream_hits(origin) == hits


def test_the_rest_of_a_stripped_route_is_served(origin: Origin) -> None:
    status, body = origin.edge_request("/svc/orders", STRANGER)
    assert status == 200
    assert _echoed(body)["path"] == "/orders"
