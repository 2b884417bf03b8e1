"""Hostile and careless configuration, table-driven: each case is refused with its exact message,
starting with its key path, by the whole program under the mock runtime, and nothing is registered.

Part one crosses every field whose value reaches another language (shell, YAML, JSON, nginx,
PromQL, sshd_config, authorized_keys, Docker labels) with values an attacker or a slip would
write: quotes, command substitution, backticks, newlines, ;, {, NUL, 5000 characters, look-alike
Unicode, and the field's own valid value with a trailing newline (a `$` anchor would accept it).
Part two is the dangerous-but-well-typed: values of the right type that would break production,
lock the owner out or expose the host.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from config import ConfigError
from config.models import SECTIONS
from tests.helpers import BACKUP_ON, EMAIL_ALERTS, run_with, stack_values
from tools import mockrun

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmtrCxHTDSu4Fgp8J/vvH4cZ3PpW0d0T2Ez8gq+Rdxw ops@example.com"

HOSTILE: dict[str, str] = {
    "double quote": 'x"y',
    "single quote": "x'y",
    "command substitution": "$(touch /tmp/pwned)",
    "backticks": "`id`",
    "newline": "x\ninjected: true",
    "semicolon": "x; reboot",
    "brace": "x{y}",
    "NUL": "x\x00y",
    "5000 characters": "a" * 5000,
    "look-alike Unicode": "\u0430pi",  # Cyrillic а, then "pi"
}


def shown(value: str) -> str:
    """How a message shows a found value: quoted, escaped, cut at 80 characters with its length."""
    out = []
    for char in value[:80]:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn"):
            out.append(f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")
        else:
            out.append(char)
    text = '"' + "".join(out) + ("…" if len(value) > 80 else "") + '"'
    return text + (f" ({len(value)} characters)" if len(value) > 80 else "")


NUL_MESSAGE = "which holds a NUL character; expected text without it"


@dataclass(frozen=True)
class Field:
    """A field that reaches another language: where it is, how a value is put there, and what
    the refusal says (``expected`` gets the field's value as shown)."""

    name: str
    stack: str
    path: str
    fragment: Callable[[str], dict[str, Any]]
    expected: Callable[[str], str]
    valid: str
    wrap: Callable[[str], str] = lambda value: value
    accepts: tuple[str, ...] = ()
    """Hostile values the field takes (they reach a renderer that quotes them; the property test
    checks those renders)."""
    key: bool = False
    """The value is a mapping key (an env name, a service name, a mount point)."""


def found(tail: str) -> Callable[[str], str]:
    return lambda value: f"found {shown(value)}; {tail}"


def cron(value: str) -> str:
    if value.endswith("\n") and len(value.split(" ")) == 5:
        last = value.split(" ")[-1]
        return (
            f"found {shown(value)}: the day of week field {shown(last)} is not valid; expected *, */step, "
            "or a list of values, ranges a-b and a-b/step or their names (jan, mon)"
        )
    return (
        f"found {shown(value)}; expected 5 cron fields (minute hour day-of-month month day-of-week) such as "
        "'0 3 * * *', separated by single spaces"
    )


def csp_problem(value: str) -> str:
    names = {'"': "a double quote", "\\": "a backslash", "$": "a $"}
    for char in value:
        if char in names:
            return names[char]
        if not " " <= char <= "~":
            return "a control character" if char.isascii() else "a non-ASCII character"
    raise AssertionError(f"{value!r} has no character the policy refuses")


def pattern(regex: str) -> Callable[[str], str]:
    return lambda value: f"found {shown(value)}; expected text matching {regex}"


def app(**changes: Any) -> Callable[[str], dict[str, Any]]:
    return lambda value: {"keel:services": {"api": {key: f(value) for key, f in changes.items()}}}


IMAGE = "expected an image reference such as nginx:1.28.0-alpine or ghcr.io/org/app@sha256:<64 hex>"
HOSTNAME = "expected a lower-case DNS name such as app.example.com"
SECRET_REF = (
    "expected a secret name (lower-case letters, digits, _ and -), store:<store name> or store-url:<store name>"
)
SECRET_NAME = "^[a-z][a-z0-9_-]{0,62}$"
MOUNT = "expected an absolute path such as /app/data (letters, digits, . _ @ + -)"
ALL_QUOTED = ("double quote", "single quote", "command substitution", "backticks", "semicolon", "brace")
# smtp_username, env values and commands reach only renderers that quote them (YAML dump, swarm's
# exec form, shlex.quote): printable text is theirs to hold, only NUL is refused.
ONLY_NUL = (*(name for name in HOSTILE if name != "NUL"), "trailing newline")

FIELDS: list[Field] = [
    Field(
        "deploy user",
        "prod",
        "host/deploy_user",
        lambda v: {"keel:host": {"deploy_user": v}},
        found("expected a Linux user name such as deploy (a-z, 0-9, _ and -)"),
        "deploy",
    ),
    Field(
        "admin SSH key",
        "prod",
        "host/admin_ssh_keys/0",
        lambda v: {"keel:host": {"admin_ssh_keys": [v]}},
        lambda v: (
            f"found {shown(v[:40])}; expected an OpenSSH public key line such as 'ssh-ed25519 AAAA... you@laptop'"
        ),
        ED25519,
        # In the comment, where printable ASCII is allowed (the line reaches YAML dumped); a newline
        # there would add a second, unchecked key to authorized_keys. A trailing one is stripped.
        wrap=lambda v: f"{ED25519} {v}",
        accepts=(*ALL_QUOTED, "trailing newline"),
    ),
    Field(
        "admin CIDR",
        "prod",
        "host/admin_cidrs/0",
        lambda v: {"keel:host": {"admin_cidrs": [v]}},
        found("expected an IPv4 or IPv6 network such as 203.0.113.7/32"),
        "203.0.113.0/28",
    ),
    Field(
        "local docker host",
        "dev",
        "host/docker_host",
        lambda v: {"keel:host": {"docker_host": v}},
        found("expected unix:///var/run/docker.sock, tcp://host:port or ssh://user@host"),
        "unix:///var/run/docker.sock",
    ),
    Field(
        "local data directory",
        "dev",
        "host/data_dir",
        lambda v: {"keel:host": {"data_dir": v}},
        found("expected an absolute directory such as /srv/keel (letters, digits, . _ @ + -)"),
        "/srv/keel",
        wrap=lambda v: "/srv/" + v,
    ),
    Field("DNS zone", "prod", "dns/zone", lambda v: {"keel:dns": {"zone": v}}, found(HOSTNAME), "example.com"),
    Field(
        "DNS hostname",
        "prod",
        "dns/hostnames/0",
        lambda v: {"keel:dns": {"hostnames": [v]}},
        found(HOSTNAME),
        "www.example.com",
        wrap=lambda v: v + ".example.com" if v.startswith("x") else v,
    ),
    Field("proxy image", "prod", "proxy/image", lambda v: {"keel:proxy": {"image": v}}, found(IMAGE), "nginx:1.28.0"),
    Field(
        "content security policy",
        "dev",
        "proxy/csp",
        lambda v: {"keel:proxy": {"csp": v}},
        lambda v: (
            f"found a policy of {len(v)} characters; expected at most 4096"
            if len(v) > 4096
            else f"found {csp_problem(v)} in the policy; expected a Content-Security-Policy of printable ASCII "
            "without double quotes, backslashes or $ (use single quotes: 'self')"
        ),
        "default-src 'self'",
        wrap=lambda v: "default-src 'self' " + v,
        # Written inside a double-quoted nginx string: ; { } ' and ` are text there.
        accepts=("single quote", "backticks", "semicolon", "brace"),
    ),
    Field(
        "trusted proxy",
        "prod",
        "proxy/trusted_proxies/0",
        lambda v: {"keel:proxy": {"trusted_proxies": [v]}},
        found("expected a network such as 10.0.0.0/8"),
        "10.0.0.0/8",
    ),
    Field(
        "route path",
        "dev",
        "proxy/routes/0/path",
        lambda v: {"keel:proxy": {"routes": [{"path": v, "service": "web"}]}},
        found("expected a URL path prefix such as /api/ (letters, digits, . _ ~ @ : + - and single slashes)"),
        "/shop/",
        wrap=lambda v: "/" + v,
    ),
    Field(
        "route host",
        "prod",
        "proxy/routes/0/host",
        lambda v: {"keel:proxy": {"routes": [{"path": "/", "service": "web", "host": v}]}},
        found(HOSTNAME),
        "www.example.com",
    ),
    Field(
        "route body limit",
        "dev",
        "proxy/routes/0/max_body",
        lambda v: {"keel:proxy": {"routes": [{"path": "/", "service": "web", "max_body": v}]}},
        pattern("^[0-9]{1,6}[kmg]?$"),
        "10m",
    ),
    Field(
        "route service",
        "dev",
        "proxy/routes/0/service",
        lambda v: {"keel:proxy": {"routes": [{"path": "/", "service": v}]}},
        pattern("^[a-z][a-z0-9-]{0,30}$"),
        "web",
    ),
    Field(
        "ACME e-mail",
        "prod",
        "proxy/tls/acme_email",
        lambda v: {"keel:proxy": {"tls": {"mode": "acme", "acme_email": v}}},
        found("expected an e-mail address such as ops@example.com (ASCII letters, digits, . _ % + -)"),
        "ops@example.com",
        wrap=lambda v: v + "@example.com",
    ),
    Field(
        "ACME image",
        "prod",
        "proxy/tls/acme_image",
        lambda v: {"keel:proxy": {"tls": {"acme_image": v}}},
        found(IMAGE),
        "neilpang/acme.sh:3.1.1",
    ),
    Field(
        "service name",
        "dev",
        "services/{value}",
        lambda v: {"keel:services": {v: {"kind": "volume"}}},
        pattern("^[a-z][a-z0-9-]{0,30}$"),
        "files",
        key=True,
    ),
    Field("app image", "prod", "services/api/image", app(image=lambda v: v), found(IMAGE), "ghcr.io/example/api:1.0"),
    Field(
        "env name",
        "prod",
        "services/api/env/{value}",
        app(env=lambda v: {v: "1"}),
        pattern("^[A-Za-z_][A-Za-z0-9_]{0,127}$"),
        "NODE_ENV",
        key=True,
    ),
    Field(
        "env value",
        "prod",
        "services/api/env/GREETING",
        app(env=lambda v: {"GREETING": v}),
        lambda v: f"found {shown(v)}, {NUL_MESSAGE}",
        "hello",
        accepts=ONLY_NUL,
    ),
    Field(
        "secret env name",
        "prod",
        "services/api/secrets/{value}",
        app(secrets=lambda v: {v: "jwt_secret"}),
        pattern("^[A-Za-z_][A-Za-z0-9_]{0,127}$"),
        "JWT_SECRET",
        key=True,
    ),
    Field(
        "secret reference",
        "prod",
        "services/api/secrets/JWT_SECRET",
        app(secrets=lambda v: {"JWT_SECRET": v}),
        found(SECRET_REF),
        "jwt_secret",
    ),
    Field(
        "health path",
        "prod",
        "services/api/health/http_path",
        app(health=lambda v: {"http_path": v}),
        found(
            "expected a URL path such as /health or /health?full=1 "
            "(letters, digits, . _ ~ @ : + - /, and = & % in the query)"
        ),
        "/api/health",
        wrap=lambda v: "/api/" + v,
    ),
    Field(
        "health command",
        "prod",
        "services/api/health/command/1",
        app(health=lambda v: {"http_path": None, "command": ["wget", v]}),
        lambda v: f"found {shown(v)}, {NUL_MESSAGE}",
        "-q",
        accepts=ONLY_NUL,
    ),
    Field(
        "app user",
        "prod",
        "services/api/user",
        app(user=lambda v: v),
        found("expected uid:gid such as 10001:10001, or a user name the image defines"),
        "10001:10001",
    ),
    Field(
        "tmpfs", "prod", "services/api/tmpfs/0", app(tmpfs=lambda v: [v]), found(MOUNT), "/tmp", wrap=lambda v: "/" + v
    ),
    Field(
        "volume mount point",
        "prod",
        "services/api/volumes/{value}",
        app(volumes=lambda v: {v: "uploads"}),
        found(MOUNT),
        "/app/uploads",
        wrap=lambda v: "/" + v,
        key=True,
    ),
    Field(
        "capability",
        "prod",
        "services/api/cap_add/0",
        app(cap_add=lambda v: [v]),
        lambda v: (
            f"found {shown(v)}; expected a Linux capability such as NET_BIND_SERVICE"
            + ("; did you mean NET_BIND_SERVICE?" if v == "NET_BIND_SERVICE\n" else "")
        ),
        "NET_BIND_SERVICE",
    ),
    Field(
        "placement constraint",
        "prod",
        "services/api/constraints/0",
        app(constraints=lambda v: [v]),
        found("expected a placement constraint such as node.role==manager or node.labels.disk==ssd"),
        "node.role==manager",
        wrap=lambda v: "node.role==" + v,
    ),
    Field(
        "stop signal",
        "prod",
        "services/api/stop_signal",
        app(stop_signal=lambda v: v),
        pattern("^SIG[A-Z0-9]+$"),
        "SIGTERM",
        wrap=lambda v: "SIG" + v,
    ),
    Field(
        "metrics path",
        "prod",
        "services/api/metrics_path",
        app(metrics_path=lambda v: v),
        found("expected a path such as /metrics (letters, digits, . _ ~ - and /, no query)"),
        "/metrics",
        wrap=lambda v: "/metrics" + v,
    ),
    Field(
        "migration command",
        "prod",
        "services/api/migration/command/2",
        app(migration=lambda v: {"command": ["npm", "run", v]}),
        lambda v: f"found {shown(v)}, {NUL_MESSAGE}",
        "migrate",
        accepts=ONLY_NUL,
    ),
    Field(
        "registry server",
        "prod",
        "services/api/registry/server",
        app(registry=lambda v: {"server": v, "username": "bot", "password_secret": "ghcr_token"}),
        found("expected a registry host such as ghcr.io or registry.example.com:5000"),
        "ghcr.io",
    ),
    Field(
        "registry user",
        "prod",
        "services/api/registry/username",
        app(registry=lambda v: {"server": "ghcr.io", "username": v, "password_secret": "ghcr_token"}),
        found("expected a registry user name (letters, digits, . _ @ + $ -)"),
        "bot",
        wrap=lambda v: "bot" + v,
    ),
    Field(
        "log size",
        "prod",
        "services/api/logging/max_size",
        app(logging=lambda v: {"max_size": v}),
        pattern("^[0-9]+[kmg]$"),
        "10m",
    ),
    Field(
        "database name",
        "prod",
        "services/db/database",
        lambda v: {"keel:services": {"db": {"database": v}}},
        pattern("^[a-z][a-z0-9_-]{0,62}$"),
        "shop",
    ),
    Field(
        "database user",
        "prod",
        "services/db/user",
        lambda v: {"keel:services": {"db": {"user": v}}},
        pattern("^[a-z][a-z0-9_-]{0,62}$"),
        "shop",
    ),
    Field(
        "database password secret",
        "prod",
        "services/db/password_secret",
        lambda v: {"keel:services": {"db": {"password_secret": v}}},
        pattern(SECRET_NAME),
        "db_password",
    ),
    Field(
        "redis image",
        "prod",
        "services/cache/image",
        lambda v: {"keel:services": {"cache": {"image": v}}},
        found(IMAGE),
        "redis:7.4.1-alpine",
    ),
    Field(
        "SQLite file",
        "prod",
        "services/uploads/sqlite_files/0",
        lambda v: {"keel:services": {"uploads": {"sqlite_files": [v]}}},
        found(
            "expected a path relative to the volume such as db/app.sqlite3 "
            "(letters, digits, . _ -, no leading /, no . or .. segments)"
        ),
        "db/app.sqlite3",
        wrap=lambda v: "db/" + v,
    ),
    Field(
        "Grafana host",
        "prod",
        "observability/grafana_host",
        lambda v: {"keel:observability": {"grafana_host": v}},
        found(HOSTNAME),
        "grafana.example.com",
    ),
    Field(
        "alert recipient",
        "prod",
        "observability/alerts/email_to",
        lambda v: {"keel:observability": {"alerts": {**EMAIL_ALERTS, "email_to": v}}},
        found("expected an e-mail address such as ops@example.com (ASCII letters, digits, . _ % + -)"),
        "ops@example.com",
        wrap=lambda v: "ops" + v + "@example.com",
    ),
    Field(
        "SMTP relay",
        "prod",
        "observability/alerts/smtp_host",
        lambda v: {"keel:observability": {"alerts": {**EMAIL_ALERTS, "smtp_host": v}}},
        found("expected host:port such as smtp.example.com:587"),
        "smtp.example.com:587",
        wrap=lambda v: "smtp.example.com:" + v,
    ),
    Field(
        "SMTP user",
        "prod",
        "observability/alerts/smtp_username",
        lambda v: {"keel:observability": {"alerts": {**EMAIL_ALERTS, "smtp_username": v}}},
        found("expected 1 to 255 printable ASCII characters without spaces"),
        "alerts",
        wrap=lambda v: "alerts" + v,
        accepts=("double quote", "single quote", "backticks", "brace"),
    ),
    Field(
        "Prometheus image",
        "prod",
        "observability/prometheus_image",
        lambda v: {"keel:observability": {"prometheus_image": v}},
        found(IMAGE),
        "prom/prometheus:v3.1.0",
    ),
    Field(
        "backup schedule",
        "prod",
        "backup/schedule",
        lambda v: {"keel:backup": {"schedule": v}},
        cron,
        "0 * * * *",
    ),
    Field(
        "check schedule",
        "prod",
        "backup/check_schedule",
        lambda v: {"keel:backup": {"check_schedule": v}},
        cron,
        "30 4 * * 0",
    ),
    Field(
        "S3 endpoint",
        "prod",
        "backup/repository/endpoint",
        lambda v: {"keel:backup": {"repository": {"endpoint": v}}},
        found(
            "expected an S3 endpoint such as https://fsn1.your-objectstorage.com "
            "(scheme, host and port only: the bucket and path have keys of their own)"
        ),
        "https://fsn1.your-objectstorage.com",
        wrap=lambda v: "https://" + v,
    ),
    Field(
        "S3 bucket",
        "prod",
        "backup/repository/bucket",
        lambda v: {"keel:backup": {"repository": {"bucket": v}}},
        pattern("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"),
        "shop-backups",
    ),
    Field(
        "repository path",
        "prod",
        "backup/repository/path",
        lambda v: {"keel:backup": {"repository": {"path": v}}},
        found(
            "expected a path inside the bucket such as shop/prod "
            "(letters, digits, . _ -, no leading /, no . or .. segments)"
        ),
        "shop/prod",
        wrap=lambda v: "shop/" + v,
    ),
    Field(
        "S3 region",
        "prod",
        "backup/repository/region",
        lambda v: {"keel:backup": {"repository": {"region": v}}},
        found("expected a region name such as us-east-1, eu-central or auto"),
        "eu-central",
    ),
    Field(
        "restic image",
        "prod",
        "backup/image",
        lambda v: {"keel:backup": {"image": v}},
        found(IMAGE),
        "restic/restic:0.17.3",
    ),
    Field(
        "name prefix",
        "prod",
        "name_prefix",
        lambda v: {"keel:name_prefix": v},
        pattern("^[a-z][a-z0-9-]{0,20}$"),
        "shop",
    ),
    Field(
        "topology file",
        "prod",
        "base",
        lambda v: {"keel:base": v},
        found(
            "expected a topology YAML path relative to the project directory, such as topology/webapp.yaml "
            "(no leading /, no . or .. segments)"
        ),
        "topology/webapp.yaml",
    ),
]


def _hostile_cases() -> list[Any]:
    cases = []
    for field in FIELDS:
        values = {name: field.wrap(value) for name, value in HOSTILE.items() if name not in field.accepts}
        if "trailing newline" not in field.accepts:
            values["trailing newline"] = field.valid + "\n"
        for label, value in values.items():
            path = field.path.replace("{value}", shown(value)) if field.key else field.path
            if "\x00" in value and field.name != "topology file":
                # Refused before any model sees it, wherever it is (key or value).
                message = (
                    f"{path}: found the key {shown(value)}, {NUL_MESSAGE}"
                    if field.key
                    else f"{path}: found {shown(value)}, {NUL_MESSAGE}"
                )
            else:
                message = f"{path}: {field.expected(value)}"
            cases.append(pytest.param(field.stack, field.fragment(value), message, id=f"{field.name}: {label}"))
    return cases


HOSTILE_CASES = _hostile_cases()


# Every message starts with a key path whose first segment is one of these.
ROOTS = {*SECTIONS, "base"}


def assert_fails_cleanly(run: mockrun.Run, expected: str) -> None:
    assert isinstance(run.error, ConfigError), f"expected a ConfigError, got {run.error!r}"
    assert str(run.error) == expected
    for problem in run.error.problems:
        assert problem.split(": ", 1)[0].split("/")[0].split(" ")[0] in ROOTS, problem
    assert run.resources == [], f"registered before failing: {[r.urn for r in run.resources]}"


def assert_refused(stack: str, fragment: dict[str, Any], expected: str) -> None:
    assert_fails_cleanly(run_with(stack, fragment), expected)


@pytest.mark.parametrize(("stack", "fragment", "expected"), HOSTILE_CASES)
def test_hostile_value_is_refused_with_its_key_path_before_any_resource(stack, fragment, expected):
    assert_refused(stack, fragment, expected)


def test_every_field_that_reaches_a_rendered_language_meets_every_hostile_value():
    """Each hostile value is refused here or, where the field may hold it, rendered quoted
    (test_rendered_languages.py takes every accepted one through its renderer)."""
    assert len(FIELDS) >= 50
    for field in FIELDS:
        assert "NUL" not in field.accepts, field.name
        assert set(field.accepts) <= {*HOSTILE, "trailing newline"}, field.name
    assert len(HOSTILE_CASES) >= 400


# ----------------------------------------------------------------------------- dangerous but well typed

DANGEROUS: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "SSH networks that together cover the world",
        "prod",
        {"keel:host": {"admin_cidrs": ["0.0.0.0/1", "128.0.0.0/1"]}},
        "host/admin_cidrs: found networks that together cover 0.0.0.0/0, which opens SSH to the whole internet; "
        "expected the networks you administer from",
    ),
    (
        "SSH networks that together cover all of IPv6",
        "prod",
        {"keel:host": {"admin_cidrs": ["203.0.113.0/28", "::/1", "8000::/1"]}},
        "host/admin_cidrs: found networks that together cover ::/0, which opens SSH to the whole internet; "
        "expected the networks you administer from",
    ),
    (
        "trusted proxies covering the world without Cloudflare",
        "dev",
        {"keel:proxy": {"trusted_proxies": ["0.0.0.0/0"]}},
        "proxy/trusted_proxies: found networks that together cover 0.0.0.0/0 while the origin is not behind "
        "Cloudflare's proxy, so any client could set its own address (X-Forwarded-For) and escape rate limits; "
        "expected only the proxies in front of this host",
    ),
    (
        "root as the deploy user",
        "prod",
        {"keel:host": {"deploy_user": "root"}},
        'host/deploy_user: found "root", which is root or a system user of the image; '
        "expected a user of its own such as deploy",
    ),
    (
        "a system user as the deploy user",
        "prod",
        {"keel:host": {"deploy_user": "www-data"}},
        'host/deploy_user: found "www-data", which is root or a system user of the image; '
        "expected a user of its own such as deploy",
    ),
    (
        "the docker group's name as the deploy user",
        "prod",
        {"keel:host": {"deploy_user": "docker"}},
        'host/deploy_user: found "docker", which is root or a system user of the image; '
        "expected a user of its own such as deploy",
    ),
    (
        "proxy on the SSH port",
        "dev",
        {"keel:proxy": {"http_port": 22}},
        "proxy/http_port: found 22, the port sshd listens on; expected another port, such as 80 or 443",
    ),
    (
        "proxy port the Hetzner firewall does not open",
        "prod",
        {"keel:proxy": {"https_port": 8443}},
        "proxy/https_port: found 8443, but the Hetzner firewall keel declares opens only 80 and 443 to the web; "
        "expected 443",
    ),
    (
        "Grafana on the site's own hostname",
        "prod",
        {"keel:observability": {"grafana_host": "example.com"}},
        "observability/grafana_host: \"example.com\" is the site's own address, where the apps' routes would no "
        "longer be served; expected a hostname of its own, such as grafana.example.com",
    ),
    (
        "Grafana on a hostname an app route uses",
        "prod",
        {
            "keel:dns": {"hostnames": ["example.com", "www.example.com", "admin.example.com"]},
            "keel:observability": {"grafana_host": "admin.example.com"},
            "keel:proxy": {
                "routes": [
                    {"path": "/", "service": "web"},
                    {"path": "/", "service": "api", "host": "admin.example.com"},
                ]
            },
        },
        'proxy/routes/1/path: "/" on admin.example.com is where the proxy serves Grafana; expected another path, '
        "or observability/grafana_host set to a hostname of its own",
    ),
    (
        "a route where Grafana is served",
        "prod",
        {"keel:proxy": {"routes": [{"path": "/", "service": "web"}, {"path": "/grafana/", "service": "api"}]}},
        'proxy/routes/1/path: "/grafana/" is where the proxy serves Grafana; expected another path, '
        "or observability/grafana_host set to a hostname of its own",
    ),
    (
        "a routed service with 0 replicas",
        "prod",
        {"keel:services": {"web": {"replicas": 0}}},
        'proxy/routes/0/service: "web" has 0 replicas, so every request to / would fail with 502; '
        "expected services/web/replicas of at least 1, or no route",
    ),
    (
        "CMD-SHELL as the first word of a health command",
        "prod",
        {"keel:services": {"api": {"health": {"http_path": None, "command": ["CMD-SHELL", "curl -f localhost"]}}}},
        'services/api/health/command/0: found "CMD-SHELL", a docker-compose test keyword; keel runs the command '
        "as it is (CMD form), so expected the program itself, e.g. [pg_isready, -q], or "
        "[sh, -c, '<shell command>'] for a shell",
    ),
    (
        "CMD as the first word of a health command",
        "prod",
        {"keel:services": {"api": {"health": {"http_path": None, "command": ["CMD", "true"]}}}},
        'services/api/health/command/0: found "CMD", a docker-compose test keyword; keel runs the command '
        "as it is (CMD form), so expected the program itself, e.g. [pg_isready, -q], or "
        "[sh, -c, '<shell command>'] for a shell",
    ),
    (
        "an empty health command",
        "prod",
        {"keel:services": {"api": {"health": {"http_path": None, "command": []}}}},
        "services/api/health/command: found 0 item(s); expected at least 1",
    ),
    (
        "an SMTP host without a port",
        "prod",
        {"keel:observability": {"alerts": {**EMAIL_ALERTS, "smtp_host": "smtp.example.com"}}},
        'observability/alerts/smtp_host: found "smtp.example.com" without a port; expected host:port such as '
        "smtp.example.com:587 (587 for STARTTLS, 465 for TLS)",
    ),
    (
        "a retention that keeps nothing",
        "prod",
        {"keel:backup": {"retention": {"hourly": 0, "daily": 0, "weekly": 0, "monthly": 0}}},
        "backup/retention: keeps no snapshot (hourly, daily, weekly and monthly are all 0); "
        "expected at least one above 0, such as daily: 7",
    ),
    (
        "a rollback window shorter than two checks",
        "prod",
        {"keel:backup": {"repository": {"keep_deleted_days": 10}}},
        'backup/repository/keep_deleted_days: found 10, shorter than two intervals of check_schedule ("30 4 * * 0"): '
        "an overwritten pack may be found only by the check; expected at least 14",
    ),
    (
        "swap larger than half the disk",
        "staging",
        {"keel:host": {"swap_gib": 21}},
        "host/swap_gib: found 21, more than half of the 40 GiB root disk of cx23; expected at most 20",
    ),
    (
        "a reserved database name",
        "prod",
        {"keel:services": {"db": {"database": "template1"}}},
        'services/db/database: found "template1", a database PostgreSQL creates for itself; '
        "expected the application's own name, such as app",
    ),
    (
        "the postgres database",
        "prod",
        {"keel:services": {"db": {"database": "postgres"}}},
        'services/db/database: found "postgres", a database PostgreSQL creates for itself; '
        "expected the application's own name, such as app",
    ),
    (
        "a reserved role name",
        "prod",
        {"keel:services": {"db": {"user": "pg_monitor"}}},
        'services/db/user: found "pg_monitor"; role names starting with pg_ are reserved by PostgreSQL',
    ),
    (
        "secret env names that differ only by case",
        "prod",
        {"keel:services": {"api": {"secrets": {"Jwt_Secret": "jwt_secret"}}}},
        "services/api/secrets/Jwt_Secret: is mounted as /run/secrets/jwt_secret, like secrets/JWT_SECRET "
        "(file names are lower-cased); expected names that differ by more than case",
    ),
    (
        "an env variable that file_env sets too",
        "prod",
        {"keel:services": {"api": {"env": {"JWT_SECRET_FILE": "/etc/jwt"}}}},
        "services/api/env/JWT_SECRET_FILE: is the variable file_env sets for secrets/JWT_SECRET; "
        "expected another name, or file_env: false",
    ),
    (
        "an env variable also under secrets",
        "prod",
        {"keel:services": {"api": {"env": {"JWT_SECRET": "literal"}}}},
        "services/api/env/JWT_SECRET: is also under secrets; expected each variable once (keep it under secrets only)",
    ),
    (
        "a store named like keel's Prometheus",
        "prod",
        {"keel:services": {"prometheus": {"kind": "volume"}}},
        "services/prometheus: its volume name shop-prometheus-data is also the name of keel's own prometheus "
        "volume; expected another service name",
    ),
    (
        "an app named like keel's proxy",
        "dev",
        {
            "keel:services": {
                "proxy": {"image": "nginx:1.28.0", "health": {"command": ["true"]}, "resources": {"memory_mb": 32}}
            }
        },
        "services/proxy: its service name dev-proxy is also the name of keel's own proxy; "
        "expected another service name",
    ),
    (
        "an app named like a store's exporter",
        "dev",
        {
            "keel:services": {
                "db-exporter": {
                    "image": "nginx:1.28.0",
                    "health": {"command": ["true"]},
                    "resources": {"memory_mb": 32},
                }
            }
        },
        "services/db-exporter: its service name dev-db-exporter is also the name of the exporter of services/db; "
        "expected another service name",
    ),
    (
        "a volume over the default tmpfs",
        "dev",
        {"keel:services": {"api": {"volumes": {"/tmp": "uploads"}}}},
        'services/api/volumes/"/tmp": "/tmp" is also a tmpfs mount (tmpfs is "/tmp"); expected each mount target '
        "once: mount the volume elsewhere or drop the path from tmpfs",
    ),
    (
        "a mount target with ..",
        "dev",
        {"keel:services": {"api": {"volumes": {"/app/../etc": "uploads"}}}},
        'services/api/volumes/"/app/../etc": found "/app/../etc", a path with . or .. segments; '
        "expected a plain absolute path such as /app/data",
    ),
    (
        "a mount over the secrets",
        "dev",
        {"keel:services": {"api": {"tmpfs": ["/tmp", "/run/secrets"]}}},
        'services/api/tmpfs/1: found "/run/secrets", which would hide /run/secrets in the container; '
        "expected another path",
    ),
    (
        "an SSH key whose data is another type",
        "prod",
        {"keel:host": {"admin_ssh_keys": ["ssh-rsa " + ED25519.split()[1]]}},
        'host/admin_ssh_keys/0: found "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGmtrCxH", whose key data is a '
        '"ssh-ed25519" key, not ssh-rsa; '
        "expected an OpenSSH public key line such as 'ssh-ed25519 AAAA... you@laptop'",
    ),
    (
        "an SSH key that is not base64",
        "prod",
        {"keel:host": {"admin_ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmtrCxHTDSu4Fgp8J"]}},
        'host/admin_ssh_keys/0: found "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmt", whose key data is not base64; '
        "expected an OpenSSH public key line such as 'ssh-ed25519 AAAA... you@laptop'",
    ),
    (
        "an SSH key cut short",
        "prod",
        {"keel:host": {"admin_ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmtrCxHTDSu4Fgp8J/v"]}},
        'host/admin_ssh_keys/0: found "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmt", whose key data does not parse '
        "as ssh-ed25519; expected an OpenSSH public key line such as 'ssh-ed25519 AAAA... you@laptop'",
    ),
    (
        "an SSH key of an unknown type",
        "prod",
        {"keel:host": {"admin_ssh_keys": ["ssh-dss AAAAB3NzaC1kc3MAAACBAP1/U4EddRIpUt9KnC7s5Of2EbdSPO9EAMMeP4C2"]}},
        'host/admin_ssh_keys/0: found the key type "ssh-dss"; expected one of ssh-ed25519, ssh-rsa, '
        "ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, sk-ssh-ed25519@openssh.com, "
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ),
    (
        "the same SSH key twice",
        "prod",
        {"keel:host": {"admin_ssh_keys": [ED25519, ED25519.replace("ops@", "me@")]}},
        "host/admin_ssh_keys/1: is the same key as an earlier entry; expected each key once",
    ),
    (
        "a server image the cloud-init is not written for",
        "prod",
        {"keel:host": {"image": "fedora-40"}},
        'host/image: found "fedora-40"; expected one of ubuntu-24.04, ubuntu-22.04, debian-12 '
        "(the cloud-init installs Docker, ufw and unattended-upgrades with apt)",
    ),
    (
        "a misspelt server image",
        "prod",
        {"keel:host": {"image": "ubuntu-24.4"}},
        'host/image: found "ubuntu-24.4"; expected one of ubuntu-24.04, ubuntu-22.04, debian-12 '
        "(the cloud-init installs Docker, ufw and unattended-upgrades with apt); did you mean ubuntu-24.04?",
    ),
    (
        "a location outside the catalogue",
        "prod",
        {"keel:host": {"location": "fsn2"}},
        'host/location: found "fsn2"; expected one of fsn1, nbg1, hel1, ash, hil, sin; did you mean fsn1?',
    ),
    (
        "a backup schedule tighter than a run",
        "prod",
        {"keel:backup": {"schedule": "*/5 * * * *"}},
        'backup/schedule: found "*/5 * * * *", which starts runs 5 minute(s) apart; a run dumps and uploads '
        "every store, so expected at least 15 minutes between runs, such as '0 * * * *'",
    ),
    (
        "a backup schedule tight at midnight only",
        "prod",
        {"keel:backup": {"schedule": "0,5 0 * * *"}},
        'backup/schedule: found "0,5 0 * * *", which starts runs 5 minute(s) apart; a run dumps and uploads '
        "every store, so expected at least 15 minutes between runs, such as '0 * * * *'",
    ),
    (
        "a backup schedule that never fires",
        "prod",
        {"keel:backup": {"schedule": "0 3 30 2 *"}},
        'backup/schedule: found "0 3 30 2 *", which names no day that exists (such as 30 February); it never runs',
    ),
    (
        "a check schedule that never fires",
        "prod",
        {"keel:backup": {"check_schedule": "0 4 31 4,6,9,11 *"}},
        'backup/check_schedule: found "0 4 31 4,6,9,11 *", which names no day that exists (such as 30 February); '
        "it never runs",
    ),
    (
        "day of week 7, which the scheduler refuses",
        "prod",
        {"keel:backup": {"check_schedule": "0 4 * * 7"}},
        'backup/check_schedule: found "0 4 * * 7": the day of week field "7" holds 7; expected values from 0 to 6',
    ),
    (
        "a step the scheduler reads differently",
        "prod",
        {"keel:backup": {"schedule": "5/15 * * * *"}},
        'backup/schedule: found "5/15 * * * *": the minute field "5/15" is not valid; expected *, */step, or a '
        "list of values, ranges a-b and a-b/step",
    ),
    (
        "prod running as root",
        "prod",
        {"keel:services": {"api": {"user": "0:0"}}},
        'services/api/user: found "0:0", which is root; expected a uid:gid such as "10001:10001", or exemptions/root '
        "with the reason (prod)",
    ),
    (
        "prod running the image's own user",
        "prod",
        {"keel:services": {"api": {"user": None}}},
        "services/api/user: is null, which runs the image's own USER, often root; expected a uid:gid such as "
        '"10001:10001", or exemptions/root with the reason (prod)',
    ),
    (
        "prod with every capability",
        "prod",
        {"keel:services": {"api": {"cap_add": ["ALL"]}}},
        "services/api/cap_add: holds ALL, every capability of root; expected the capabilities the service needs, "
        "such as NET_BIND_SERVICE, or exemptions/all_capabilities with the reason (prod)",
    ),
    (
        "prod with a writable root",
        "prod",
        {"keel:services": {"api": {"read_only": False}}},
        "services/api/read_only: is false; expected true with tmpfs or volumes for the paths it writes, "
        "or exemptions/writable_root with the reason (prod)",
    ),
    (
        "an exemption without a reason",
        "prod",
        {"keel:services": {"api": {"read_only": False, "exemptions": {"writable_root": "yes"}}}},
        'services/api/exemptions/writable_root: found "yes"; expected a sentence (10 to 300 printable ASCII '
        "characters) saying why",
    ),
    (
        "an exemption for hardening the service has",
        "prod",
        {"keel:services": {"api": {"exemptions": {"root": "the vendor image needs root to bind port 80"}}}},
        'services/api/exemptions/root: is set but the service runs as "10001:10001", not root; remove the exemption',
    ),
    (
        "a capability that does not exist",
        "prod",
        {"keel:services": {"api": {"cap_add": ["NET_BIND_SERVCE"]}}},
        'services/api/cap_add/0: found "NET_BIND_SERVCE"; expected a Linux capability such as NET_BIND_SERVICE; '
        "did you mean NET_BIND_SERVICE?",
    ),
    (
        "a route path nginx answers itself",
        "dev",
        {"keel:proxy": {"routes": [{"path": "/health", "service": "web"}]}},
        'proxy/routes/0/path: found "/health", which nginx answers itself (the proxy\'s own health check); '
        "expected another path",
    ),
    (
        "a route path under the certificate challenges",
        "dev",
        {"keel:proxy": {"routes": [{"path": "/.well-known/acme-challenge/", "service": "web"}]}},
        'proxy/routes/0/path: found "/.well-known/acme-challenge/", where nginx serves certificate challenges; '
        "expected another path",
    ),
    (
        "a route path to a dotfile",
        "dev",
        {"keel:proxy": {"routes": [{"path": "/.env", "service": "web"}]}},
        'proxy/routes/0/path: found "/.env", a dotfile path that nginx never serves (.git, .env); '
        "expected another path",
    ),
    (
        "a route path with ..",
        "dev",
        {"keel:proxy": {"routes": [{"path": "/a/../b", "service": "web"}]}},
        'proxy/routes/0/path: found "/a/../b", a path with . or .. segments, which nginx resolves away; '
        "expected a URL path prefix such as /api/ (letters, digits, . _ ~ @ : + - and single slashes)",
    ),
    (
        "a SQLite file outside its volume",
        "prod",
        {"keel:services": {"uploads": {"sqlite_files": ["../db/app.sqlite3"]}}},
        'services/uploads/sqlite_files/0: found "../db/app.sqlite3"; expected a path relative to the volume such '
        "as db/app.sqlite3 (letters, digits, . _ -, no leading /, no . or .. segments)",
    ),
    (
        "an absolute SQLite file",
        "prod",
        {"keel:services": {"uploads": {"sqlite_files": ["/etc/shadow"]}}},
        'services/uploads/sqlite_files/0: found "/etc/shadow"; expected a path relative to the volume such as '
        "db/app.sqlite3 (letters, digits, . _ -, no leading /, no . or .. segments)",
    ),
    (
        "an image with a Unicode tag",
        "prod",
        {"keel:services": {"api": {"image": "ghcr.io/example/api:v1\u00e9"}}},
        'services/api/image: found "ghcr.io/example/api:v1\u00e9"; ' + IMAGE,
    ),
    (
        "an image with upper-case letters in its path",
        "prod",
        {"keel:services": {"api": {"image": "ghcr.io/Example/api:1.0"}}},
        'services/api/image: found "ghcr.io/Example/api:1.0"; ' + IMAGE,
    ),
    (
        "an image digest of the wrong length",
        "prod",
        {"keel:services": {"api": {"image": "ghcr.io/example/api@sha256:abc"}}},
        'services/api/image: found "ghcr.io/example/api@sha256:abc"; ' + IMAGE,
    ),
    (
        "a bidirectional override in a hostname",
        "prod",
        {"keel:dns": {"hostnames": ["example.com", "www.\u202eexample.com"]}},
        'dns/hostnames/1: found "www.\\u202eexample.com"; ' + HOSTNAME,
    ),
    (
        "a content security policy with a non-ASCII character",
        "dev",
        {"keel:proxy": {"csp": "default-src 'self' https://caf\u00e9.example"}},
        "proxy/csp: found a non-ASCII character in the policy; expected a Content-Security-Policy of printable "
        "ASCII without double quotes, backslashes or $ (use single quotes: 'self')",
    ),
    (
        "a content security policy with a newline",
        "dev",
        {"keel:proxy": {"csp": "default-src 'self';\nadd_header X-Evil 1"}},
        "proxy/csp: found a control character in the policy; expected a Content-Security-Policy of printable "
        "ASCII without double quotes, backslashes or $ (use single quotes: 'self')",
    ),
    (
        "a content security policy with a backslash",
        "dev",
        {"keel:proxy": {"csp": "default-src 'self' \\"}},
        "proxy/csp: found a backslash in the policy; expected a Content-Security-Policy of printable "
        "ASCII without double quotes, backslashes or $ (use single quotes: 'self')",
    ),
    (
        "a lone surrogate in a value",
        "dev",
        {"keel:services": {"api": {"env": {"NAME": "\ud800"}}}},
        'services/api/env/NAME: found "\\ud800", which is not valid Unicode (a lone surrogate); '
        "expected text without it",
    ),
    (
        "a NUL in a key",
        "dev",
        {"keel:services": {"api": {"env": {"A\x00": "1"}}}},
        'services/api/env/"A\\x00": found the key "A\\x00", which holds a NUL character; expected text without it',
    ),
    (
        "an S3 endpoint with a path",
        "prod",
        {"keel:backup": {"repository": {"endpoint": "https://s3.example.com/bucket"}}},
        'backup/repository/endpoint: found "https://s3.example.com/bucket"; expected an S3 endpoint such as '
        "https://fsn1.your-objectstorage.com (scheme, host and port only: the bucket and path have keys of their own)",
    ),
    (
        "a docker host with a command",
        "dev",
        {"keel:host": {"docker_host": "ssh://deploy@host -oProxyCommand=id"}},
        'host/docker_host: found "ssh://deploy@host -oProxyCommand=id"; expected unix:///var/run/docker.sock, '
        "tcp://host:port or ssh://user@host",
    ),
]


@pytest.mark.parametrize(
    ("stack", "fragment", "expected"),
    [pytest.param(stack, fragment, expected, id=name) for name, stack, fragment, expected in DANGEROUS],
)
def test_dangerous_but_well_typed_config_is_refused_before_any_resource(stack, fragment, expected):
    assert_refused(stack, fragment, expected)


def test_backups_with_nothing_to_back_up_are_refused():
    web = stack_values("dev")["keel:services"]["web"]
    run = mockrun.run(
        "dev",
        overrides={
            "keel:services": {"web": web, "files": {"kind": "volume", "backup": False}},
            "keel:proxy": {"routes": [{"path": "/", "service": "web"}]},
            "keel:backup": BACKUP_ON,
        },
    )
    assert_fails_cleanly(
        run,
        "backup/enabled: is true but the stack has nothing to back up (no postgres, redis, volume or mariadb "
        "store, or volume with backup: true or sqlite_files; external stores are backed up by their provider); "
        "expected enabled: false",
    )


def test_the_grafana_paths_config_reserves_are_the_routes_the_proxy_adds():
    from config import crossref
    from render.observability import GrafanaUpstream, grafana_routes

    for host, prefix in ((None, crossref.GRAFANA_PATH), ("grafana.example.com", "/")):
        upstream = GrafanaUpstream("shop-grafana", 3100, host, prefix if host is None else None, "https://x/")
        routes = grafana_routes(upstream)
        assert [(r.host, r.path) for r in routes] == [(host, prefix + sub) for sub in crossref.GRAFANA_SUBPATHS]
