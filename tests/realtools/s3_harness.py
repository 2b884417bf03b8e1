"""A real S3 API on loopback for the backup tests: moto's server, over TLS, with signatures checked.

- TLS with a certificate from a CA made for the session. restic trusts that CA through
  SSL_CERT_FILE, as the job's restic trusts the image's system store (ca-certificates); without it
  the endpoint's certificate is untrusted, as a self-signed or MITM certificate would be.
- Signatures and IAM policies are checked (moto's INITIAL_NO_AUTH_ACTION_COUNT, switched to 0 once
  the users exist): a wrong secret key is refused the way the real endpoint refuses it.
- Users: ``backup`` may do anything to the bucket; ``no-delete`` may do anything but delete (a key
  that cannot prune); ``pitr`` may read, list and write but delete only pgBackRest's ``latest``
  marker (the archive key of render/pitr.py); ``admin`` is the test's own, for looking into the bucket.
- Every TLS connection ends with a close_notify, as real endpoints send: werkzeug drops the TLS
  layer without one, and OpenSSL 3 clients that read a response to the end (pgBackRest) then fail
  with "unexpected eof while reading".
- Clients reach it through a TCP relay that can be cut (connection refused, as for an endpoint
  that is down) and restored without losing the bucket's content.
- ``stall_after_next_lock()``: once restic has written its next lock file, every request hangs
  until ``release()``, like an endpoint that goes silent mid-operation.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

BUCKET = "keel-backups"
REGION = "us-east-1"
STALL_LIMIT_S = 120
"""A stalled request is let through after this long at the latest, so no server thread outlives a test."""

_ALL = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
_POLICIES = {
    "admin": [_ALL, {"Effect": "Allow", "Action": "iam:*", "Resource": "*"}],
    "backup": [_ALL],
    # Deletes its own locks (restic cannot work without that), nothing else: retention cannot run.
    # pgBackRest removes backup/<stanza>/latest after each backup (a symlink on a file system, never
    # an object on S3: the delete is of nothing); every other delete is refused.
    "pitr": [
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:GetBucketLocation"],
            "Resource": "*",
        },
        {"Effect": "Allow", "Action": "s3:DeleteObject", "Resource": f"arn:aws:s3:::{BUCKET}/*/backup/*/latest"},
    ],
    "no-delete": [
        _ALL,
        {
            "Effect": "Deny",
            "Action": "s3:DeleteObject",
            "Resource": [f"arn:aws:s3:::{BUCKET}/*/snapshots/*", f"arn:aws:s3:::{BUCKET}/*/data/*"],
        },
    ],
}


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 and localhost: (ca.pem, cert.pem, key.pem)."""
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
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


class _Faults:
    """WSGI middleware in front of moto: the stall switch, for the clients' traffic (through the
    relay); the test's own requests (straight to moto) always pass."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self.client_host = ""
        self._armed = ""
        self._open = threading.Event()
        self._open.set()
        self.tripped = threading.Event()

    def arm(self, path_part: str) -> None:
        self.tripped.clear()
        self._armed = path_part

    def release(self) -> None:
        self._armed = ""
        self._open.set()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_HOST") == self.client_host:
            self._open.wait(timeout=STALL_LIMIT_S)
        result = self._app(environ, start_response)
        if self._armed and environ["REQUEST_METHOD"] == "PUT" and self._armed in environ["PATH_INFO"]:
            # This request completes (e.g. restic holds its lock); every later one hangs.
            self._armed = ""
            self._open.clear()
            self.tripped.set()
        return result


class Relay:
    """A TCP relay on a fixed loopback port that can be cut and restored."""

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self.up()

    def up(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and break the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            listener.close()
        for sock in sockets:
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=10)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    _close(client)
                    _close(upstream)
                    return
                self._sockets.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                _close(sock)
            with self._lock:
                self._sockets.difference_update((source, sink))


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@dataclass
class S3Server:
    """The running server: ``endpoint`` (through the relay), the CA, the users' keys."""

    endpoint: str
    direct_endpoint: str
    ca_file: Path
    keys: dict[str, tuple[str, str]]
    relay: Relay
    faults: _Faults

    def repository(self, path: str, bucket: str = BUCKET) -> str:
        """The restic URL of a repository in the bucket, in the form the job uses (render.backup.repository_url)."""
        return f"s3:{self.endpoint}/{bucket}/{path}"

    def client(self, user: str = "admin") -> Any:
        """An S3 client as ``user`` (the admin by default), straight to moto (not through the relay)."""
        access, secret = self.keys[user]
        return boto3.client(
            "s3", endpoint_url=self.direct_endpoint, region_name=REGION, aws_access_key_id=access,
            aws_secret_access_key=secret, verify=str(self.ca_file),
        )  # fmt: skip

    def iam(self) -> Any:
        access, secret = self.keys["admin"]
        return boto3.client(
            "iam", endpoint_url=self.direct_endpoint, region_name=REGION, aws_access_key_id=access,
            aws_secret_access_key=secret, verify=str(self.ca_file),
        )  # fmt: skip

    def add_user(self, name: str, statements: list[dict[str, Any]] | None = None) -> tuple[str, str]:
        """A user of the test's own that may do anything to the bucket (until ``deny``), or what
        ``statements`` (an identity policy's) allow."""
        iam = self.iam()
        iam.create_user(UserName=name)
        policy = {"Version": "2012-10-17", "Statement": [_ALL] if statements is None else statements}
        iam.put_user_policy(UserName=name, PolicyName="keel-test", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        self.keys[name] = (key["AccessKeyId"], key["SecretAccessKey"])
        return self.keys[name]

    def deny(self, name: str, denied: bool = True) -> None:
        """Take every right on the bucket from a user (its key is refused with AccessDenied), or give it back."""
        iam = self.iam()
        if denied:
            policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "s3:*", "Resource": "*"}]}
            iam.put_user_policy(UserName=name, PolicyName="keel-deny", PolicyDocument=json.dumps(policy))
        else:
            iam.delete_user_policy(UserName=name, PolicyName="keel-deny")

    def objects(self, prefix: str, bucket: str = BUCKET) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def upload_tree(self, source: Path, prefix: str, bucket: str = BUCKET) -> None:
        """Copy a local restic repository into the bucket under ``prefix``."""
        client = self.client()
        for path in sorted(source.rglob("*")):
            if path.is_file():
                client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(source).as_posix()}")

    def stall_after_next_lock(self, path_part: str = "/locks/") -> threading.Event:
        """After the next lock file (or the next object whose path has ``path_part``) is written,
        every request of the clients hangs until release(); returns the event set when that happened."""
        self.faults.arm(path_part)
        return self.faults.tripped

    def release(self) -> None:
        self.faults.release()


def _close_tls_cleanly(server: BaseWSGIServer) -> None:
    plain = server.shutdown_request

    def shutdown_request(request: Any) -> None:
        try:
            request.settimeout(5)
            request.unwrap()
        except (OSError, ValueError):
            pass  # the client went first, or never finished its handshake
        plain(request)

    server.shutdown_request = shutdown_request  # type: ignore[method-assign]


@contextmanager
def s3_server(directory: Path) -> Iterator[S3Server]:
    """Start moto on loopback with TLS, create the bucket and users, then turn signature checks on."""
    directory.mkdir(parents=True, exist_ok=True)
    # One log line per request would bury a failing test's own output.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    ca_file, cert_file, key_file = _tls_files(directory)
    faults = _Faults(DomainDispatcherApplication(create_backend_app))
    server: BaseWSGIServer = make_server(
        "127.0.0.1", 0, faults, threaded=True, request_handler=MotoRequestHandler,
        ssl_context=(str(cert_file), str(key_file)),
    )  # fmt: skip
    _close_tls_cleanly(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = int(server.server_address[1])
    relay = Relay(port)
    faults.client_host = f"127.0.0.1:{relay.port}"
    direct = f"https://127.0.0.1:{port}"
    previous = settings.INITIAL_NO_AUTH_ACTION_COUNT
    try:
        anyone = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        session = {"endpoint_url": direct, "region_name": REGION, "verify": str(ca_file), **anyone}
        boto3.client("s3", **session).create_bucket(Bucket=BUCKET)
        iam = boto3.client("iam", **session)
        keys = {}
        for user, statements in _POLICIES.items():
            iam.create_user(UserName=user)
            policy = {"Version": "2012-10-17", "Statement": statements}
            iam.put_user_policy(UserName=user, PolicyName="keel-test", PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
        # From here on every request is authenticated and authorised.
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0
        yield S3Server(
            endpoint=f"https://127.0.0.1:{relay.port}", direct_endpoint=direct, ca_file=ca_file, keys=keys,
            relay=relay, faults=faults,
        )  # fmt: skip
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = previous
        faults.release()
        relay.down()
        server.shutdown()
        thread.join(timeout=30)
