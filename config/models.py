"""The whole desired state of a stack, as pydantic models.

Every model forbids unknown keys and is frozen. Each section validates itself; rules that
span sections run once in ``config.crossref``. Units are in the field names (``_mb``, ``_s``,
``_gib``, ``_days``). ``config/reference.yaml`` is the annotated example of every key.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    create_model,
    field_validator,
    model_validator,
)

from config import catalogue, grammar
from config.base import (
    NAME_PATTERN,
    SECRET_NAME_PATTERN,
    Image,
    Logging,
    Model,
    Name,
    Resources,
    SecretName,
    StoreSpec,
    checked,
    image_is_pinned,
)
from config.cron import longest_gap_seconds
from config.errors import KeyPathError, show
from config.names import Names
from stores import registry

__all__ = ["NAME_PATTERN", "SECRET_NAME_PATTERN", "Logging", "Resources", "StoreSpec", "image_is_pinned"]

EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
STORE_REF = "store:"
STORE_URL_REF = "store-url:"
_SECRET_REF = re.compile(r"(?:(store|store-url):([a-z][a-z0-9-]{0,30})|([a-z][a-z0-9_-]{0,62}))")


@dataclass(frozen=True)
class SecretRef:
    """What an app's secret names, parsed once at load.

    ``secret``: a config secret of that name; ``store``: the password of a postgres/redis store
    (generated or configured) or the URL of an external one (written ``store:<name>``);
    ``store-url``: a store's whole connection URL with the password in it, for DATABASE_URL
    (written ``store-url:<name>``).
    """

    source: Literal["secret", "store", "store-url"]
    name: str

    def __str__(self) -> str:
        return self.name if self.source == "secret" else f"{self.source}:{self.name}"

    @property
    def store(self) -> str | None:
        """The store it names, if any."""
        return None if self.source == "secret" else self.name


def _parse_secret_ref(value: object) -> object:
    if not isinstance(value, str):
        return value
    match = _SECRET_REF.fullmatch(value)
    if match is None:
        raise ValueError(
            f"found {show(value)}; expected a secret name (lower-case letters, digits, _ and -), "
            "store:<store name> or store-url:<store name>"
        )
    prefix, store, secret = match.groups()
    if prefix == "store-url":
        return SecretRef(source="store-url", name=store)
    if prefix == "store":
        return SecretRef(source="store", name=store)
    return SecretRef(source="secret", name=secret)


SecretRefField = Annotated[SecretRef, BeforeValidator(_parse_secret_ref), PlainSerializer(str)]
Port = Annotated[int, Field(ge=1, le=65535)]
RENAMED_NETWORKS = {"public": "edge", "internal": "data"}
"""Network names before networks were split by role, and what replaced them."""


def _network_name(value: object) -> object:
    if isinstance(value, str) and value in RENAMED_NETWORKS:
        raise ValueError(
            f"found {show(value)}, a network name that is no longer used; expected {RENAMED_NETWORKS[value]} "
            "(networks are now split by role: edge joins the proxy and the apps, data joins the apps and the "
            "stores; Prometheus reaches an app with a metrics_path on the monitoring network by itself)"
        )
    return value


NetworkRole = Literal["edge", "data"]
NetworkName = Annotated[NetworkRole, BeforeValidator(_network_name)]
NETWORKS: tuple[NetworkRole, ...] = ("edge", "data")

SSH_PORT = 22
_CLOCK_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
MIN_RSA_BITS = 3072
"""NIST SP 800-57 part 1 rev. 5: RSA below 3072 bits gives less than 128 bits of security."""


def rsa_key_bits(key: str) -> int | None:
    """The modulus size of an ``ssh-rsa`` public key line; None for other key types or a malformed blob.

    The blob is RFC 4253 section 6.6: string "ssh-rsa", mpint e, mpint n, each a 4-byte length then
    the bytes.
    """
    parts = key.split()
    if len(parts) < 2 or parts[0] != "ssh-rsa":
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        return None
    fields = []
    offset = 0
    for _ in range(3):
        if offset + 4 > len(blob):
            return None
        length = int.from_bytes(blob[offset : offset + 4], "big")
        fields.append(blob[offset + 4 : offset + 4 + length])
        offset += 4 + length
    if fields[0] != b"ssh-rsa" or offset > len(blob):
        return None
    return int.from_bytes(fields[2], "big").bit_length()


def check_cidr(value: str) -> str:
    """An IPv4 or IPv6 network, normalised (203.0.113.7 -> 203.0.113.7/32)."""
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError(f"found {show(value)}; expected a network such as 203.0.113.0/24") from None


Hostname = Annotated[str, checked(grammar.hostname_problem)]
Email = Annotated[str, checked(grammar.email_problem)]
MountTarget = Annotated[str, checked(grammar.mount_target_problem)]
HostDirectory = Annotated[str, checked(grammar.host_directory_problem)]
ContainerUser = Annotated[str, checked(grammar.container_user_problem)]
Capability = Annotated[str, checked(grammar.capability_problem)]
Constraint = Annotated[str, checked(grammar.constraint_problem)]
MetricsPath = Annotated[str, checked(grammar.metrics_path_problem)]
Size = Annotated[str, Field(pattern=r"^[0-9]{1,6}[kmg]?$")]
"""An nginx size (client_max_body_size): a number and k, m or g."""


def check_hostname(value: str) -> str:
    problem = grammar.hostname_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


# ----------------------------------------------------------------------------- host


def known_server_type(value: str) -> str:
    if value in catalogue.SERVER_TYPES:
        return value
    offered = ", ".join(catalogue.SERVER_TYPES)
    if value in catalogue.DEPRECATED_TYPES:
        raise ValueError(f"{show(value)} is deprecated and no longer sold by Hetzner; use one of {offered}")
    raise ValueError(f"{show(value)} is not offered by Hetzner; use one of {offered}")


def known_location(value: str) -> str:
    if value not in catalogue.ALL_LOCATIONS:
        raise ValueError(
            f"found {show(value)}; expected one of {', '.join(catalogue.ALL_LOCATIONS)}"
            + grammar.did_you_mean(value, catalogue.ALL_LOCATIONS)
        )
    return value


ServerType = Annotated[str, AfterValidator(known_server_type)]
Location = Annotated[str, AfterValidator(known_location)]

NETWORK_ZONES = {
    "fsn1": "eu-central",
    "nbg1": "eu-central",
    "hel1": "eu-central",
    "ash": "us-east",
    "hil": "us-west",
    "sin": "ap-southeast",
}
"""Hetzner's network zones: a private network spans one zone, so every node of a stack is in the host's."""
MANAGER_COUNTS = (1, 3)
"""Raft needs a majority of managers: one (no tolerance) or three (one may fail). Two tolerate no
failure and halve availability (either one down stops the swarm), five is more than a small team's
swarm needs."""
NodeLabelKey = Annotated[str, checked(grammar.node_label_key_problem)]
NodeLabelValue = Annotated[str, checked(grammar.node_label_value_problem)]
PRIVATE_NETWORK_DEFAULT = "10.44.0.0/16"


class NodePoolSpec(Model):
    """Nodes beside the primary (the host above, which keeps the public IPs, the proxy and the
    stores' data volume): identical Hetzner servers that join its swarm over the private network.

    Node ``n`` (1..count) of pool ``p`` is the server ``<name_prefix>-<stack>-<p>-<n>``; lowering
    ``count`` drains and removes the highest-numbered nodes first.
    """

    role: Literal["manager", "worker"] = "worker"
    """Managers keep the swarm's state (raft); with three in all, one may fail. Workers run tasks only."""
    count: int = Field(ge=0, le=20)
    server_type: ServerType = "cx23"
    location: Location | None = None
    """Unset: the host's location. Must be in the host's network zone (a private network spans one)."""
    labels: dict[NodeLabelKey, NodeLabelValue] = Field(default_factory=dict, max_length=20)
    """Node labels an app's constraints may name (node.labels.<key>==<value>); keel.* is keel's own."""


class HcloudHostSpec(Model):
    """A Hetzner Cloud VM running Docker in swarm mode."""

    provider: Literal["hcloud"]
    server_type: ServerType = "cx23"
    location: Location = "fsn1"
    image: str = "ubuntu-24.04"
    """A Hetzner system image the cloud-init is written for (catalogue.IMAGES)."""
    admin_ssh_keys: list[str] = Field(min_length=1, max_length=100)
    """OpenSSH public keys allowed to log in as the deploy user."""
    admin_cidrs: list[str] = Field(min_length=1, max_length=100)
    """Source networks allowed to reach SSH (22). Networks that together cover the world are refused."""
    data_volume_gib: int = Field(default=10, ge=10, le=10240)
    """Size of the Hetzner Volume that holds every stateful Docker volume."""
    backups: bool = False
    """Hetzner's own daily server backups (+20% of the server price)."""
    delete_protection: bool = True
    """Hetzner delete and rebuild protection on the server, IP and volume, and Pulumi protect."""
    swap_gib: int = Field(default=2, ge=0, le=64)
    """A swap file on the root disk; at most half of it (catalogue.SERVER_TYPES disk_gib)."""
    deploy_user: str = "deploy"
    """The user Pulumi and the admins log in as (in the docker group); never root or a system user."""
    reboot_window: str | None = None
    """HH:MM (UTC): when an installed update needs a reboot (a new kernel, libc), unattended-upgrades
    reboots the host at this time. Off by default: RebootRequired tells you, and you reboot in a quiet
    hour. A reboot is a few minutes without service (README, "What happens on a reboot")."""
    pools: dict[Name, NodePoolSpec] = Field(default_factory=dict, max_length=10)
    """More nodes for the swarm (README, "Scaling out"). None: one node, as before."""
    private_network: str = PRIVATE_NETWORK_DEFAULT
    """The hcloud Network the nodes talk over when there are pools (swarm's ports are admitted from it
    only); a private IPv4 range of /16 to /23 (the nodes use its first /24)."""
    host_tools_image: Image = "debian:12.12-slim"
    """With pools: the image whose nsenter (util-linux) runs the host's ufw when the swarm's ports are
    opened to the private network on a host created before its pools (the deploy user reaches root
    only through Docker; new servers get the rules from cloud-init)."""

    @field_validator("reboot_window")
    @classmethod
    def _clock_time(cls, value: str | None) -> str | None:
        if value is not None and not _CLOCK_TIME.match(value):
            raise ValueError(f"found {show(value)}; expected a time of day HH:MM in UTC, such as 04:00")
        return value

    @field_validator("image")
    @classmethod
    def _known_image(cls, value: str) -> str:
        if value not in catalogue.IMAGES:
            raise ValueError(
                f"found {show(value)}; expected one of {', '.join(catalogue.IMAGES)} "
                "(the cloud-init installs Docker, ufw and unattended-upgrades with apt)"
                + grammar.did_you_mean(value, catalogue.IMAGES)
            )
        return value

    @field_validator("admin_ssh_keys")
    @classmethod
    def _ssh_keys(cls, keys: list[str]) -> list[str]:
        out: list[str] = []
        for index, key in enumerate(keys):
            line = key.strip()
            problem = grammar.ssh_key_problem(line)
            if problem is not None:
                raise KeyPathError(index, problem)
            if line.split(" ")[0] == "ssh-rsa":
                bits = rsa_key_bits(line)
                if bits is None:
                    raise KeyPathError(index, f"found {show(line[:40])}, an ssh-rsa line whose key cannot be read")
                if bits < MIN_RSA_BITS:
                    raise KeyPathError(
                        index,
                        f"found an ssh-rsa key of {bits} bits; expected at least {MIN_RSA_BITS} bits, "
                        "or an ed25519 key (ssh-keygen -t ed25519)",
                    )
            material = " ".join(line.split(" ")[:2])
            if any(" ".join(seen.split(" ")[:2]) == material for seen in out):
                raise KeyPathError(index, "is the same key as an earlier entry; expected each key once")
            out.append(line)
        return out

    @field_validator("admin_cidrs")
    @classmethod
    def _cidrs(cls, cidrs: list[str]) -> list[str]:
        out = []
        for index, text in enumerate(cidrs):
            try:
                net = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise KeyPathError(
                    index, f"found {show(text)}; expected an IPv4 or IPv6 network such as 203.0.113.7/32"
                ) from None
            if net.prefixlen == 0:
                raise KeyPathError(
                    index,
                    f"found {show(text)}, which opens SSH to the whole internet; "
                    "expected the networks you administer from",
                )
            out.append(str(net))
        world = grammar.covers_everything(out)
        if world is not None:
            raise ValueError(
                f"found networks that together cover {world}, which opens SSH to the whole internet; "
                "expected the networks you administer from"
            )
        return out

    @field_validator("deploy_user")
    @classmethod
    def _deploy_user(cls, value: str) -> str:
        if not grammar.matches(grammar.LINUX_USER, value):
            raise ValueError(f"found {show(value)}; expected a Linux user name such as deploy (a-z, 0-9, _ and -)")
        if value in catalogue.SYSTEM_USERS or value.startswith(("systemd-", "_")):
            raise ValueError(
                f"found {show(value)}, which is root or a system user of the image; "
                "expected a user of its own such as deploy"
            )
        return value

    @model_validator(mode="after")
    def _type_sold_here(self) -> HcloudHostSpec:
        server = catalogue.SERVER_TYPES[self.server_type]
        if self.location not in server.locations:
            raise KeyPathError(
                "location",
                f"{show(self.location)} does not sell server_type {show(self.server_type)}; "
                f"expected one of {', '.join(server.locations)}",
            )
        if self.swap_gib * 2 > server.disk_gib:
            raise KeyPathError(
                "swap_gib",
                f"found {self.swap_gib}, more than half of the {server.disk_gib} GiB root disk of "
                f"{self.server_type}; expected at most {server.disk_gib // 2}",
            )
        return self

    @field_validator("private_network")
    @classmethod
    def _private_network(cls, value: str) -> str:
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError:
            network = None
        if (
            not isinstance(network, ipaddress.IPv4Network)
            or not network.is_private
            or not 16 <= network.prefixlen <= 23
        ):
            raise ValueError(
                f"found {show(value)}; expected a private IPv4 network of /16 to /23 such as {PRIVATE_NETWORK_DEFAULT}"
            )
        return str(network)

    @model_validator(mode="after")
    def _pools(self) -> HcloudHostSpec:
        managers = 1 + sum(pool.count for pool in self.pools.values() if pool.role == "manager")
        if managers not in MANAGER_COUNTS:
            raise KeyPathError(
                "pools",
                f"found {managers} managers (the host and {managers - 1} in manager pools); expected 1 or 3: "
                "raft keeps the swarm writable only while a majority of managers is up, so 2 tolerate no failure "
                "and stop the swarm when either one fails",
            )
        zone = NETWORK_ZONES[self.location]
        arch = catalogue.SERVER_TYPES[self.server_type].arch
        for name, pool in self.pools.items():
            location = pool.location or self.location
            if NETWORK_ZONES[location] != zone:
                raise KeyPathError(
                    ("pools", name, "location"),
                    f"found {show(location)} in network zone {NETWORK_ZONES[location]}; expected a location in "
                    f"{zone} like the host's {self.location} (a private network spans one zone)",
                )
            server = catalogue.SERVER_TYPES[pool.server_type]
            if location not in server.locations:
                raise KeyPathError(
                    ("pools", name, "server_type"),
                    f"{show(pool.server_type)} is not sold in {location}; expected one sold there, such as "
                    + ", ".join(t.name for t in catalogue.SERVER_TYPES.values() if location in t.locations)[:120],
                )
            if server.arch != arch:
                raise KeyPathError(
                    ("pools", name, "server_type"),
                    f"found {show(pool.server_type)}, an {server.arch} type; expected an {arch} type like the "
                    f"host's {self.server_type} (images built on the host and pinned to their digest run on "
                    "every node, so every node has one architecture)",
                )
        return self

    @property
    def memory_mib(self) -> int:
        return catalogue.SERVER_TYPES[self.server_type].memory_mib

    @property
    def clustered(self) -> bool:
        """Pools are declared (even with count 0): the private network exists with the host on it,
        overlays are encrypted and pinned services are placed by node label. Going from no pools to
        pools is the one change that touches every service (README, "Scaling out"); after that,
        adding or removing a node adds or removes that node only."""
        return bool(self.pools)

    def nodes(self, server_name: str) -> list[NodeSpec]:
        """Every node, the primary (the host itself) first; ``server_name`` is the host's."""
        out = [
            NodeSpec(
                name=server_name,
                pool=None,
                index=0,
                role="manager",
                server_type=self.server_type,
                location=self.location,
                labels={},
            )
        ]
        for pool_name, pool in self.pools.items():
            for index in range(1, pool.count + 1):
                out.append(
                    NodeSpec(
                        name=f"{server_name}-{pool_name}-{index}",
                        pool=pool_name,
                        index=index,
                        role=pool.role,
                        server_type=pool.server_type,
                        location=pool.location or self.location,
                        labels=dict(pool.labels),
                    )
                )
        return out


@dataclass(frozen=True)
class NodeSpec:
    """One server of the swarm. ``name`` is the Hetzner server's name, its hostname, and the value of
    its ``keel.node`` label (what pinned services' constraints name)."""

    name: str
    pool: str | None
    """None: the primary, the host itself."""
    index: int
    role: Literal["manager", "worker"]
    server_type: str
    location: str
    labels: dict[str, str]

    @property
    def memory_mib(self) -> int:
        return catalogue.SERVER_TYPES[self.server_type].memory_mib


class LocalHostSpec(Model):
    """The local Docker engine (dev): no VM, no cloud account."""

    provider: Literal["local"]
    docker_host: str | None = None
    """Docker endpoint (unix://, tcp://host:port or ssh://user@host); unset means DOCKER_HOST or the default socket."""
    memory_mib: int = Field(default=8192, ge=512, le=4_194_304)
    """Memory the capacity check budgets against on this machine."""
    clustered: ClassVar[bool] = False
    """The local engine is one node (node pools are a Hetzner feature)."""
    data_dir: HostDirectory | None = None
    """Host directory for stateful volumes; unset means Docker's own volume storage."""

    @field_validator("docker_host")
    @classmethod
    def _docker_host(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 200 or not grammar.matches(grammar.DOCKER_HOST, value)):
            raise ValueError(
                f"found {show(value)}; expected unix:///var/run/docker.sock, tcp://host:port or ssh://user@host"
            )
        return value


HostSpec = Annotated[HcloudHostSpec | LocalHostSpec, Field(discriminator="provider")]

# ----------------------------------------------------------------------------- dns


class DnsConfig(Model):
    """Cloudflare DNS for the stack's hostnames."""

    zone: Hostname
    """The Cloudflare zone (apex domain), e.g. example.com."""
    zone_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    hostnames: list[Hostname] = Field(default_factory=list, max_length=50)
    """Names that point at the host. Empty means just the zone apex."""
    proxied: bool = True
    """Traffic through Cloudflare's proxy (orange cloud); the origin then admits only Cloudflare."""
    ipv6: bool = False
    """Also publish AAAA records. Off by default: the proxy listens on IPv4, and Cloudflare reaches
    a proxied origin over its A record anyway (visitors still get IPv6 from Cloudflare)."""

    @model_validator(mode="after")
    def _inside_zone(self) -> DnsConfig:
        for index, name in enumerate(self.hostnames):
            if name != self.zone and not name.endswith("." + self.zone):
                raise KeyPathError(
                    f"hostnames/{index}",
                    f"{show(name)} is not inside the zone {show(self.zone)}; "
                    f"expected {self.zone} or a name ending in .{self.zone}",
                )
        if len(set(self.hostnames)) != len(self.hostnames):
            dupes = sorted({h for h in self.hostnames if self.hostnames.count(h) > 1})
            raise KeyPathError("hostnames", f"{show(dupes[0])} is listed twice; expected each hostname once")
        return self

    @property
    def all_hostnames(self) -> list[str]:
        return self.hostnames or [self.zone]


# ----------------------------------------------------------------------------- shared service parts


class HealthCheck(Model):
    """How swarm decides a task is healthy: an HTTP path on the service's port, or a command."""

    http_path: str | None = None
    """Path (and query) requested on the service's port from inside the container."""
    command: list[str] | None = Field(default=None, min_length=1)
    """A program and its arguments, run without a shell (swarm's CMD form): [pg_isready, -q]."""
    interval_s: int = Field(default=30, ge=1, le=3600)
    timeout_s: int = Field(default=10, ge=1, le=3600)
    start_period_s: int = Field(default=30, ge=0, le=3600)
    retries: int = Field(default=3, ge=1, le=100)

    @model_validator(mode="after")
    def _one_probe(self) -> HealthCheck:
        if (self.http_path is None) == (self.command is None):
            raise ValueError("set exactly one of http_path or command")
        if self.http_path is not None:
            problem = grammar.http_path_problem(self.http_path)
            if problem is not None:
                raise KeyPathError("http_path", problem)
        if self.command is not None and self.command[0].upper() in ("CMD", "CMD-SHELL", "NONE"):
            raise KeyPathError(
                "command/0",
                f"found {show(self.command[0])}, a docker-compose test keyword; keel runs the command as it is "
                "(CMD form), so expected the program itself, e.g. [pg_isready, -q], or "
                "[sh, -c, '<shell command>'] for a shell",
            )
        return self


HEARTBEAT_FILE_PATTERN = r"^/[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$"


class WorkerHealthCheck(HealthCheck):
    """How swarm decides a worker (no port) is healthy: a command, or a heartbeat file the worker
    touches while it works, healthy while it is younger than ``heartbeat_max_age_s``."""

    heartbeat_file: str | None = None
    """Absolute path inside the container (on a writable mount such as the /tmp tmpfs)."""
    heartbeat_max_age_s: int = Field(default=60, ge=1, le=86400)
    """Older than this, the worker is unhealthy and swarm replaces it. Touch the file from a thread
    of its own (or between jobs, if no job lasts longer than this): a job that outlives it is
    killed with its task."""

    @model_validator(mode="after")
    def _one_probe(self) -> WorkerHealthCheck:
        if self.http_path is not None:
            raise KeyPathError("http_path", "a worker has no port to probe; expected command or heartbeat_file instead")
        if (self.command is None) == (self.heartbeat_file is None):
            raise ValueError("set exactly one of command or heartbeat_file")
        if self.heartbeat_file is not None and not re.match(HEARTBEAT_FILE_PATTERN, self.heartbeat_file):
            raise KeyPathError(
                "heartbeat_file",
                f"found {show(self.heartbeat_file)}; expected an absolute path such as /tmp/heartbeat "
                "(letters, digits, ., _, - and /)",
            )
        return self


class RolloutConfig(Model):
    """Swarm rolling update: start the new task first, roll back on failure."""

    parallelism: int = Field(default=1, ge=1)
    delay_s: int = Field(default=5, ge=0)
    monitor_s: int | None = Field(default=None, ge=1)
    """How long a new task must stay healthy; default health start period + 2 intervals."""
    max_failure_ratio: float = Field(default=0.0, ge=0, le=1)


class RegistryAuth(Model):
    """Credentials for a private registry (e.g. ghcr.io)."""

    server: str
    """The registry's host[:port], as in the image reference (ghcr.io, registry.example.com:5000)."""
    username: str
    password_secret: SecretName

    @field_validator("server")
    @classmethod
    def _server(cls, value: str) -> str:
        if len(value) > 255 or not grammar.matches(grammar.REGISTRY_SERVER, value):
            raise ValueError(
                f"found {show(value)}; expected a registry host such as ghcr.io or registry.example.com:5000"
            )
        return value

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not grammar.matches(grammar.REGISTRY_USERNAME, value):
            raise ValueError(f"found {show(value)}; expected a registry user name (letters, digits, . _ @ + $ -)")
        return value


class Migration(Model):
    """A one-off task that runs with the new image before the rollout and must succeed."""

    command: list[str] = Field(min_length=1)
    timeout_s: int = Field(default=600, ge=10, le=7200)


# ----------------------------------------------------------------------------- services

Reason = Annotated[
    str,
    checked(
        lambda v: (
            None
            if grammar.matches(grammar.REASON, v)
            else (f"found {show(v)}; expected a sentence (10 to 300 printable ASCII characters) saying why")
        )
    ),
]


class Exemptions(Model):
    """Hardening a prod service may go without, each with the reason (reviewed like code)."""

    root: Reason | None = None
    """Run as root (uid 0), or as the image's own USER (user: null), which may be root."""
    all_capabilities: Reason | None = None
    """cap_add: [ALL]."""
    writable_root: Reason | None = None
    """read_only: false."""


class AppSpec(Model):
    """A stateless application service: one swarm service with N replicas."""

    kind: Literal["app"] = "app"
    image: Image
    replicas: int = Field(default=1, ge=0, le=100)
    port: Port | None = None
    """The port the app listens on inside the overlay network (proxied routes use it)."""
    command: list[str] | None = None
    args: list[str] | None = None
    env: dict[EnvName, str] = Field(default_factory=dict)
    secrets: dict[EnvName, SecretRefField] = Field(default_factory=dict)
    """Env name -> secret name, store:<name> for a store's password (URL for external stores), or
    store-url:<name> for its connection URL (postgresql://user:password@db:5432/database,
    redis://:password@cache:6379/0). Mounted at /run/secrets/<env name lower-cased>; see file_env."""
    file_env: bool = True
    """Set <NAME>_FILE=/run/secrets/... for each secret (the *_FILE convention)."""
    health: HealthCheck
    """Required: start-first rollouts and automatic rollback depend on it."""
    resources: Resources
    user: ContainerUser | None = "10001:10001"
    """uid:gid to run as; non-root by default. Set null to keep the image's own USER. In prod, root
    (or null) needs exemptions/root."""
    read_only: bool = True
    """A read-only root filesystem; in prod, false needs exemptions/writable_root."""
    tmpfs: list[MountTarget] = Field(default_factory=lambda: ["/tmp"], max_length=20)
    cap_add: list[Capability] = Field(default_factory=list, max_length=41)
    """Capabilities added back (all are dropped); in prod, ALL needs exemptions/all_capabilities."""
    init: bool = True
    stop_grace_period_s: int = Field(default=30, ge=0, le=3600)
    stop_signal: Annotated[str, Field(pattern=r"^SIG[A-Z0-9]+$")] = "SIGTERM"
    volumes: dict[MountTarget, Name] = Field(default_factory=dict, max_length=20)
    """Mount path -> name of a `volume` store."""
    networks: list[NetworkName] = Field(default_factory=lambda: list(NETWORKS))
    """Overlay networks by role: edge (the proxy and the apps; the way out to the internet) and data
    (the apps and the stores). An app with a metrics_path also joins monitoring, where Prometheus
    scrapes it."""
    constraints: list[Constraint] = Field(default_factory=list, max_length=20)
    """Swarm placement constraints, such as node.labels.disk==ssd."""
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    migration: Migration | None = None
    metrics_path: MetricsPath | None = None
    """Path of the app's Prometheus metrics on its port, scraped when observability is on."""
    registry: RegistryAuth | None = None
    logging: Logging = Field(default_factory=Logging)
    exemptions: Exemptions = Field(default_factory=Exemptions)
    """Reasons a prod service runs as root, with cap_add ALL or a writable root (refused otherwise)."""

    @model_validator(mode="after")
    def _http_health_needs_port(self) -> AppSpec:
        if self.health.http_path and self.port is None:
            raise KeyPathError("port", "is required when health/http_path is set (the probe calls that port)")
        return self

    @model_validator(mode="after")
    def _mounts_once(self) -> AppSpec:
        """Docker refuses two mounts on one target: a volume over a tmpfs (/tmp by default) fails the task."""
        seen: set[str] = set()
        for index, target in enumerate(self.tmpfs):
            if target in seen:
                raise KeyPathError(f"tmpfs/{index}", f"{show(target)} is listed twice; expected each path once")
            seen.add(target)
        for target in self.volumes:
            if target in seen:
                raise KeyPathError(
                    ("volumes", target),
                    f"{show(target)} is also a tmpfs mount (tmpfs is {show(', '.join(self.tmpfs))}); "
                    "expected each mount target once: mount the volume elsewhere or drop the path from tmpfs",
                )
        return self

    @model_validator(mode="after")
    def _env_names_once(self) -> AppSpec:
        """Secret files are named after their env name lower-cased, and *_FILE names are derived:
        two names that meet after that would overwrite one another."""
        files: dict[str, str] = {}
        for env in self.secrets:
            other = files.setdefault(env.lower(), env)
            if other != env:
                raise KeyPathError(
                    f"secrets/{env}",
                    f"is mounted as /run/secrets/{env.lower()}, like secrets/{other} (file names are lower-cased); "
                    "expected names that differ by more than case",
                )
        derived = {f"{env}_FILE": env for env in self.secrets} if self.file_env else {}
        for env in self.env:
            if env in self.secrets:
                raise KeyPathError(
                    f"env/{env}",
                    "is also under secrets; expected each variable once (keep it under secrets only)",
                )
            if env in derived:
                raise KeyPathError(
                    f"env/{env}",
                    f"is the variable file_env sets for secrets/{derived[env]}; "
                    "expected another name, or file_env: false",
                )
        return self

    @model_validator(mode="after")
    def _exemptions_in_use(self) -> AppSpec:
        """An exemption for hardening the service has anyway is stale, and would hide a later change."""
        exempt = self.exemptions
        if exempt.root is not None and self.user is not None and not grammar.runs_as_root(self.user):
            raise KeyPathError(
                "exemptions/root", f"is set but the service runs as {show(self.user)}, not root; remove the exemption"
            )
        if exempt.all_capabilities is not None and "ALL" not in self.cap_add:
            raise KeyPathError(
                "exemptions/all_capabilities", "is set but cap_add does not hold ALL; remove the exemption"
            )
        if exempt.writable_root is not None and self.read_only:
            raise KeyPathError("exemptions/writable_root", "is set but read_only is true; remove the exemption")
        return self


SWARM_STOP_DELAY_S = 2
"""Swarm takes a stopping task out of its service's DNS and waits this long before it sends the stop
signal (moby docker-v29.7.2 daemon/cluster/executor/container/controller.go, Shutdown:
defaultGossipConvergeDelay)."""


class WorkerSpec(AppSpec):
    """A background worker (queue consumer, mailer): an app with no port and no route.

    It shares everything else with an app (image pinning, secrets, resources, hardening, networks,
    volumes, the start-first rollout with rollback); its health is a command or a heartbeat file,
    and its stop grace period is how long it may take to finish the job in hand after the stop
    signal. Swarm sends SIGKILL only once that has passed (moby daemon/stop.go, containerStop).
    """

    kind: Literal["worker"]  # type: ignore[assignment]
    health: WorkerHealthCheck
    """Required: the rollout waits for it and a stuck worker is replaced."""
    stop_grace_period_s: int = Field(default=60, ge=0, le=3600)
    """How long the worker may take to finish its current job after the stop signal; set it to
    your longest job. The rollout's monitor window is at least this long (see rollout/monitor_s)."""

    @model_validator(mode="after")
    def _worker_has_no_port(self) -> WorkerSpec:
        for key in ("port", "metrics_path"):
            if getattr(self, key) is not None:
                raise KeyPathError(
                    key,
                    f"found {show(getattr(self, key))}, but a worker listens on no port; "
                    "remove it, or use kind app for a service that serves requests",
                )
        return self

    @model_validator(mode="after")
    def _monitor_covers_the_grace_period(self) -> WorkerSpec:
        # The old task drains in the background while swarm watches its replacement; swarm calls
        # the rollout complete once the monitor window after the last batch has passed (moby/swarmkit
        # v2.1.2 manager/orchestrator/update/updater.go, Run). With the window at least the grace
        # period, a rollout reported complete has no old-release worker still in a job, and the next
        # deploy's migration never changes the schema under one.
        needed = self.stop_grace_period_s + SWARM_STOP_DELAY_S
        if self.rollout.monitor_s is not None and self.rollout.monitor_s < needed:
            raise KeyPathError(
                "rollout/monitor_s",
                f"found {self.rollout.monitor_s}, shorter than stop_grace_period_s ({self.stop_grace_period_s}) "
                f"plus swarm's {SWARM_STOP_DELAY_S}s stop delay; expected at least {needed}, or leave it unset",
            )
        return self


def _service_kind(value: object) -> str:
    if isinstance(value, dict):
        return str(value.get("kind", "app"))
    return str(getattr(value, "kind", "app"))


def _service_union() -> Any:
    """App services and every store kind of the registry, told apart by ``kind``."""
    members = [Annotated[AppSpec, Tag("app")], Annotated[WorkerSpec, Tag("worker")]]
    members += [Annotated[kind.spec_type, Tag(kind.name)] for kind in registry.KINDS.values()]
    return Annotated[Union[tuple(members)], Discriminator(_service_kind)]  # noqa: UP007


if TYPE_CHECKING:
    ServiceSpec = AppSpec | StoreSpec
else:
    ServiceSpec = _service_union()
SERVICE_KINDS = frozenset({"app", "worker", *registry.KINDS})

# ----------------------------------------------------------------------------- scheduled jobs


def cron_that_fires(value: str) -> str:
    """A cron schedule swarm-cronjob and croniter read alike (config/grammar.py), that runs at all:
    the backups' schedules and the jobs'."""
    cron = grammar.parse_cron(value)
    if isinstance(cron, str):
        raise ValueError(cron)
    if not cron.run_days():
        raise ValueError(f"found {show(value)}, which names no day that exists (such as 30 February); it never runs")
    return value


class JobSpec(Model):
    """A command run on a cron schedule (reports, cleanups, syncs), by the scheduler the backups use.

    Runs never overlap (a run still going when the next is due makes the scheduler skip that one,
    and the skip is counted), a run that outlives ``timeout_s`` is stopped and reported as failed,
    and a deploy never runs a job twice: it waits for a run in progress to finish before changing
    the job, and a start the scheduler did not ask for runs nothing (components/scheduled_job.py).
    """

    app: Name | None = None
    """Run with this app's (or worker's) image and container settings: its env, secrets, user,
    hardening, volumes and networks, so the job always runs the app's release. `env` and `secrets`
    below are added to the app's."""
    image: Image | None = None
    """Or an image of its own (pinned outside dev), run with the app defaults below."""
    command: list[str] = Field(min_length=1)
    """The whole command line (the image's ENTRYPOINT is not applied). The image needs a POSIX sh,
    date, sleep and mv: a wrapper runs the command and reports its outcome."""
    schedule: str
    """Cron expression, five fields, UTC."""
    timeout_s: int = Field(default=3600, ge=10, le=86400)
    """A run still going after this long gets SIGTERM, then SIGKILL after stop_grace_period_s, and
    is reported failed (reason timeout)."""
    stop_grace_period_s: int = Field(default=30, ge=0, le=3600)
    resources: Resources
    env: dict[EnvName, str] = Field(default_factory=dict)
    secrets: dict[EnvName, SecretRefField] = Field(default_factory=dict)
    """As an app's secrets: files under /run/secrets, with <NAME>_FILE set."""
    networks: list[NetworkName] | None = None
    """Default: the app's networks (with app), else edge and data."""
    user: ContainerUser | None = "10001:10001"
    """Only without app (an app's jobs run as the app does)."""
    volumes: dict[MountTarget, Name] = Field(default_factory=dict, max_length=20)
    """Mount path -> a volume store; only without app (an app's jobs mount the app's volumes)."""
    registry: RegistryAuth | None = None
    """Only without app (an app's jobs pull with the app's login)."""
    logging: Logging = Field(default_factory=Logging)

    _schedule = field_validator("schedule")(classmethod(lambda cls, v: cron_that_fires(v)))

    @model_validator(mode="after")
    def _one_image(self) -> JobSpec:
        if (self.app is None) == (self.image is None):
            raise ValueError("set exactly one of app (run with that app's image) or image")
        if self.app is not None:
            for key, default in (("user", "10001:10001"), ("volumes", {}), ("registry", None)):
                if getattr(self, key) != default:
                    raise KeyPathError(
                        key, f"comes from services/{self.app} when app is set; remove it here or set it on the app"
                    )
        return self


# ----------------------------------------------------------------------------- proxy


class Route(Model):
    """One path prefix (optionally on one host): proxied to an app service, or denied."""

    path: str = "/"
    service: Name | None = None
    """The app that serves the prefix; unset only for a deny route."""
    deny: bool = False
    """Answer 404 for the prefix (and for the app server's spellings of it: any case, ";params")
    instead of serving it: paths that must never be public, such as Spring's /actuator/."""
    allow_from: list[str] = Field(default_factory=list, max_length=50)
    """Serve the prefix only to these client networks (CIDRs, the real client address behind
    Cloudflare); everyone else gets 404, as if it did not exist. Empty: everyone."""
    host: Hostname | None = None
    cache: Literal["pages", "site", "static", "images", "api", "none"] = "none"
    """pages: HTML 1h and fingerprinted assets 30d; site: HTML 1h and every static file (css, js,
    images, fonts, by extension) 30d, for hand-written sites whose file names carry no hash;
    static: 30d; images: 7d; api: no-store."""
    proxy_cache: bool = False
    """Cache upstream responses in nginx (for cacheable routes)."""
    rate_limit: Literal["none", "general", "api", "login"] = "none"
    websocket: bool = False
    max_body: Size = "1m"
    strip_prefix: bool = False

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        problem = grammar.route_path_problem(value)
        if problem is not None:
            raise ValueError(problem)
        if value == "/health":
            raise ValueError(
                'found "/health", which nginx answers itself (the proxy\'s own health check); expected another path'
            )
        if value.startswith("/.well-known/acme-challenge"):
            raise ValueError(f"found {show(value)}, where nginx serves certificate challenges; expected another path")
        if any(part.startswith(".") and part != ".well-known" for part in value.split("/")):
            raise ValueError(
                f"found {show(value)}, a dotfile path that nginx never serves (.git, .env); expected another path"
            )
        return value

    @field_validator("allow_from")
    @classmethod
    def _networks(cls, cidrs: list[str]) -> list[str]:
        out = []
        for index, text in enumerate(cidrs):
            try:
                out.append(check_cidr(text))
            except ValueError as error:
                raise KeyPathError(index, str(error)) from None
        return out

    @model_validator(mode="after")
    def _service_or_deny(self) -> Route:
        if self.deny and self.service is not None:
            raise KeyPathError(
                "deny", f"is true but the route also names service {show(self.service)}; expected one of the two"
            )
        if not self.deny and self.service is None:
            raise KeyPathError("service", "is required (or deny: true, to answer 404 for the prefix)")
        if self.deny and self.allow_from:
            raise KeyPathError(
                "allow_from", "is set on a deny route; expected a service to serve those networks, or no allow_from"
            )
        return self

    @model_validator(mode="after")
    def _proxy_cache_needs_cacheable_route(self) -> Route:
        # An api route answers no-store, so nginx would store responses it may never serve.
        if self.proxy_cache and self.cache == "api":
            raise KeyPathError(
                "proxy_cache",
                "an api route is sent as no-store and is never cached; "
                "expected cache pages, static, images or none, or proxy_cache false",
            )
        return self


class RateLimits(Model):
    """nginx limit_req zones; rates are per client IP."""

    general_rps: int = Field(default=100, ge=1)
    general_burst: int = Field(default=200, ge=0)
    api_rps: int = Field(default=20, ge=1)
    api_burst: int = Field(default=40, ge=0)
    login_rpm: int = Field(default=5, ge=1)
    login_burst: int = Field(default=3, ge=0)
    connections_per_ip: int = Field(default=50, ge=1)
    status: int = Field(default=429, ge=400, le=599)


class TlsConfig(Model):
    mode: Literal["self-signed", "cloudflare-origin", "acme"] = "self-signed"
    acme_email: str | None = None
    acme_staging: bool = False
    """Use Let's Encrypt's staging CA (for trying acme without hitting rate limits)."""
    acme_dns_token_secret: SecretName = "acme_cloudflare_token"
    """Secret holding a Cloudflare API token allowed to edit DNS in the zone (for DNS-01)."""
    acme_image: Image = "neilpang/acme.sh:3.1.1"
    acme_resources: Resources = Field(default_factory=lambda: Resources(memory_mb=64, memory_reservation_mb=32))

    @model_validator(mode="after")
    def _email(self) -> TlsConfig:
        if self.mode == "acme" and not self.acme_email:
            raise KeyPathError("acme_email", "is required when mode is acme (Let's Encrypt sends expiry notices there)")
        problem = None if self.acme_email is None else grammar.email_problem(self.acme_email)
        if problem is not None:
            raise KeyPathError("acme_email", problem)
        return self


class ProxyConfig(Model):
    """The nginx reverse proxy: the only service that publishes ports."""

    image: Image = "nginx:1.28.0-alpine"
    tls: TlsConfig = Field(default_factory=TlsConfig)
    routes: list[Route] = Field(default_factory=list, max_length=200)
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    csp: str = (
        "default-src 'self'; img-src 'self' data: https:; style-src 'self' 'unsafe-inline'; frame-ancestors 'self'"
    )
    trusted_proxies: list[str] = Field(default_factory=list, max_length=100)
    """Extra CIDRs (besides Cloudflare's when proxied) whose X-Forwarded-For/CF-Connecting-IP is believed.
    Networks that cover the world are refused unless Cloudflare's proxy fronts every record."""
    hsts_max_age_s: int = Field(default=63072000, ge=0)
    """Strict-Transport-Security max-age: two years, as Mozilla's guidelines recommend."""
    resources: Resources = Field(default_factory=lambda: Resources(memory_mb=256, memory_reservation_mb=128))
    http_port: Port = 80
    https_port: Port = 443
    """Published on the host. On hcloud only 80 and 443 (the Hetzner firewall carries those two);
    never 22 (sshd)."""
    logging: Logging = Field(default_factory=Logging)

    @field_validator("csp")
    @classmethod
    def _csp(cls, value: str) -> str:
        # The policy is written inside a double-quoted nginx string, where $ starts a variable, and
        # sent as an HTTP header, which is ASCII.
        names = {'"': "a double quote", "\\": "a backslash", "$": "a $"}
        bad = [
            names.get(c, "a control character" if c.isascii() else "a non-ASCII character")
            for c in value
            if c in names or not " " <= c <= "~"
        ]
        if bad:
            raise ValueError(
                f"found {bad[0]} in the policy; expected a Content-Security-Policy of printable ASCII without "
                "double quotes, backslashes or $ (use single quotes: 'self')"
            )
        if len(value) > 4096:
            raise ValueError(f"found a policy of {len(value)} characters; expected at most 4096")
        return value

    @field_validator("http_port", "https_port")
    @classmethod
    def _not_ssh(cls, value: int) -> int:
        if value == SSH_PORT:
            raise ValueError("found 22, the port sshd listens on; expected another port, such as 80 or 443")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, cidrs: list[str]) -> list[str]:
        out = []
        for index, text in enumerate(cidrs):
            try:
                out.append(str(ipaddress.ip_network(text, strict=False)))
            except ValueError:
                raise KeyPathError(index, f"found {show(text)}; expected a network such as 10.0.0.0/8") from None
        return out

    @model_validator(mode="after")
    def _unique_routes(self) -> ProxyConfig:
        seen: set[tuple[str | None, str]] = set()
        for index, route in enumerate(self.routes):
            key = (route.host, route.path)
            if key in seen:
                where = f" on {route.host}" if route.host else ""
                raise KeyPathError(
                    f"routes/{index}/path", f"{show(route.path)}{where} is routed twice; expected each path once"
                )
            seen.add(key)
        if self.http_port == self.https_port:
            raise KeyPathError(
                "https_port", f"found {self.https_port}, the same as http_port; expected two different ports"
            )
        return self


# ----------------------------------------------------------------------------- observability & backup


DOCKER_API_PROXY_IMAGE = "tecnativa/docker-socket-proxy:v0.4.1"
"""HAProxy in front of the Docker socket, run with keel's own rules (render/docker_api.py)."""


class AlertReceiver(Model):
    kind: Literal["none", "email", "webhook"] = "none"
    email_to: Email | None = None
    email_from: Email | None = None
    smtp_host: str | None = None
    """host:port of the SMTP relay (Alertmanager's smarthost has no default port)."""
    smtp_username: str | None = None
    smtp_password_secret: SecretName | None = None
    webhook_url_secret: SecretName | None = None
    heartbeat_url_secret: SecretName | None = None
    """A dead-man's switch URL (healthchecks.io style), pinged about once a minute by the always-firing
    Watchdog alert, whatever `kind` is: when the pings stop, the switch tells you monitoring is down."""

    @model_validator(mode="after")
    def _complete(self) -> AlertReceiver:
        if self.kind == "email":
            for key in ("email_to", "email_from", "smtp_host"):
                if not getattr(self, key):
                    raise KeyPathError(key, "is required when kind is email")
        if self.kind == "webhook" and not self.webhook_url_secret:
            raise KeyPathError("webhook_url_secret", "is required when kind is webhook")
        return self

    @field_validator("smtp_host")
    @classmethod
    def _smtp_host(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if len(value) <= 260 and grammar.matches(grammar.SMTP_HOST, value):
            if grammar.port_in_range(value.rsplit(":", 1)[1]):
                return value
        if len(value) <= 253 and grammar.matches(grammar.HOSTNAME, value):
            raise ValueError(
                f"found {show(value)} without a port; expected host:port such as {value}:587 "
                "(587 for STARTTLS, 465 for TLS)"
            )
        raise ValueError(f"found {show(value)}; expected host:port such as smtp.example.com:587")

    @field_validator("smtp_username")
    @classmethod
    def _smtp_username(cls, value: str | None) -> str | None:
        if value is not None and not grammar.matches(grammar.PRINTABLE, value):
            raise ValueError(f"found {show(value)}; expected 1 to 255 printable ASCII characters without spaces")
        return value


class ObservabilityConfig(Model):
    """Monitoring. Besides these keys, each store kind with an exporter adds its image key
    (``<kind>_exporter_image``, see ``_with_store_exporter_images``)."""

    enabled: bool = False
    retention_days: int = Field(default=30, ge=1, le=3650)
    grafana_host: Hostname | None = None
    """Serve Grafana on this hostname through the proxy (one of dns/hostnames that no app route uses);
    unset means the path /grafana/."""
    grafana_admin_password_secret: SecretName | None = None
    """Unset means a generated password (exported as a secret output)."""
    alerts: AlertReceiver = Field(default_factory=AlertReceiver)
    prometheus_image: Image = "prom/prometheus:v3.1.0"
    grafana_image: Image = "grafana/grafana:11.4.0"
    alertmanager_image: Image = "prom/alertmanager:v0.28.0"
    node_exporter_image: Image = "prom/node-exporter:v1.8.2"
    cadvisor_image: Image = "gcr.io/cadvisor/cadvisor:v0.49.2"
    nginx_exporter_image: Image = "nginx/nginx-prometheus-exporter:1.4.0"
    blackbox_exporter_image: Image = "prom/blackbox-exporter:v0.25.0"
    """Probes the proxy's TLS listener: the certificate-expiry alert reads probe_ssl_earliest_cert_expiry."""
    nginxlog_exporter_image: Image = "quay.io/martinhelmich/prometheus-nginxlog-exporter:v1.11.0"
    """Counts the proxy's responses by status from its access log (syslog over UDP): the 5xx-ratio alert."""
    docker_api_proxy_image: Image = DOCKER_API_PROXY_IMAGE
    """cAdvisor's read-only Docker API proxy: the only service that mounts the Docker socket."""


def _with_store_exporter_images(base: type[ObservabilityConfig]) -> type[ObservabilityConfig]:
    """ObservabilityConfig with one image key per store kind that has an exporter, its default
    and documentation coming from the kind (stores/<kind>/kind.py)."""
    fields: dict[str, Any] = {}
    for kind in registry.KINDS.values():
        exporter = kind.exporter()
        if exporter is not None:
            fields[exporter.image_key] = (Image, Field(default=exporter.default_image, description=exporter.image_doc))
    model = create_model(base.__name__, __base__=base, __module__=__name__, **fields)
    model.__doc__ = base.__doc__
    return model


if not TYPE_CHECKING:
    ObservabilityConfig = _with_store_exporter_images(ObservabilityConfig)


class BackupRepository(Model):
    """A restic repository on S3-compatible storage."""

    endpoint: str = "https://fsn1.your-objectstorage.com"
    """S3 endpoint: Hetzner Object Storage, AWS S3, Cloudflare R2 or any compatible one."""
    bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    path: str = ""
    """Prefix inside the bucket; default the project and stack name."""
    access_key_secret: SecretName = "backup_access_key"
    secret_key_secret: SecretName = "backup_secret_key"
    password_secret: SecretName = "backup_password"
    region: str = "us-east-1"
    initialise: bool = False
    """Let a backup run create the repository (and its bucket, if the key may) when it finds none:
    on for the first deploy. Off, a missing repository fails the run (reason repository_missing),
    so a misspelt bucket or path is reported instead of starting a new, empty repository."""
    keep_deleted_days: int = Field(default=30, ge=1, le=3650)
    """The bucket is versioned (docs/restore.md, "A bucket the host cannot erase"): a version that was
    overwritten or deleted stays this many days (the lifecycle rule `python -m tools.backup_maintenance
    bucket-setup` renders), the time to notice an attack from the host and roll it back."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if len(value) > 260 or not grammar.matches(grammar.S3_ENDPOINT, value):
            raise ValueError(
                f"found {show(value)}; expected an S3 endpoint such as https://fsn1.your-objectstorage.com "
                "(scheme, host and port only: the bucket and path have keys of their own)"
            )
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        stripped = value.strip("/")
        if stripped:
            problem = grammar.relative_file_problem(stripped)
            if problem is not None:
                raise ValueError(
                    problem.replace(
                        "relative to the volume such as db/app.sqlite3", "inside the bucket such as shop/prod"
                    )
                )
        elif value not in ("", "/"):
            raise ValueError(f"found {show(value)}; expected a path inside the bucket such as shop/prod")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not grammar.matches(grammar.S3_REGION, value):
            raise ValueError(f"found {show(value)}; expected a region name such as us-east-1, eu-central or auto")
        return value


class Retention(Model):
    """Snapshots restic keeps per store (restic forget --keep-*); at least one must be above 0."""

    hourly: int = Field(default=24, ge=0, le=100_000)
    daily: int = Field(default=7, ge=0, le=100_000)
    weekly: int = Field(default=4, ge=0, le=100_000)
    monthly: int = Field(default=6, ge=0, le=100_000)

    @model_validator(mode="after")
    def _keeps_something(self) -> Retention:
        if not (self.hourly or self.daily or self.weekly or self.monthly):
            raise ValueError(
                "keeps no snapshot (hourly, daily, weekly and monthly are all 0); "
                "expected at least one above 0, such as daily: 7"
            )
        return self


# A run dumps every store and uploads the new data (retention runs elsewhere: render/backup_bucket.py);
# a later run starting while one still runs is skipped (swarm.cronjob.skip-running), so a
# schedule tighter than this only looks more frequent than it is.
MIN_BACKUP_INTERVAL_S = 15 * 60


class PitrTargets(Model):
    """What each point-in-time drill must achieve; an alert fires when a drill does worse."""

    rpo_s: int = Field(default=60, ge=1, le=86400)
    """Recovery point objective: seconds of writes a restore may lose."""
    rto_s: int = Field(default=900, ge=1, le=86400)
    """Recovery time objective: seconds from the start of a restore to a queryable database."""


class PitrConfig(Model):
    """Point-in-time recovery of PostgreSQL stores with pgBackRest: WAL archiving and base backups."""

    enabled: bool | None = None
    """Unset means on in prod (when backups are enabled) and off elsewhere."""
    archive_timeout_s: int = Field(default=60, ge=10, le=3600)
    """PostgreSQL's archive_timeout: a WAL segment is archived at least this often, which bounds
    the writes an archive can miss when the server dies."""
    recovery_window_days: int = Field(default=14, ge=1, le=3650)
    """How far back a restore can go: expiry keeps every backup and WAL segment that window needs."""
    full_schedule: str = "0 2 * * 0"
    """Full base backups (cron, UTC). Weekly suits stores up to tens of GiB; take them monthly
    beyond that and lean on the differentials."""
    diff_schedule: str = "0 2 * * 1-6"
    """Differential base backups (changes since the last full), which shorten the WAL a restore replays."""
    drill_schedule: str = "30 5 * * *"
    """When the point-in-time restore drill runs (cron, UTC)."""
    path: str = ""
    """Prefix in the backup bucket; default <name_prefix>/<stack>/pitr."""
    access_key_secret: SecretName = "pitr_access_key"
    """S3 key of the host: may read and write the archive, never delete (expiry runs elsewhere)."""
    secret_key_secret: SecretName = "pitr_secret_key"
    cipher_secret: SecretName = "pitr_cipher_password"
    """Passphrase of the archive's AES-256 encryption."""
    targets: PitrTargets = Field(default_factory=PitrTargets)

    @field_validator("full_schedule", "diff_schedule", "drill_schedule")
    @classmethod
    def _fires(cls, value: str) -> str:
        return cron_that_fires(value)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if value and not re.match(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", value.strip("/")):
            raise ValueError(f"found {show(value)}; expected a path of letters, digits, dots, dashes and underscores")
        return value.strip("/")

    @model_validator(mode="after")
    def _rpo_reachable(self) -> PitrConfig:
        if self.targets.rpo_s < self.archive_timeout_s:
            raise KeyPathError(
                "targets/rpo_s",
                f"found {self.targets.rpo_s}, below archive_timeout_s ({self.archive_timeout_s}), which bounds the "
                "recovery point; expected at least archive_timeout_s",
            )
        return self


class BackupConfig(Model):
    enabled: bool = False
    schedule: str = "0 * * * *"
    """Cron expression (UTC)."""
    check_schedule: str = "30 4 * * 0"
    """When `restic check` runs (weekly by default)."""
    retention: Retention = Field(default_factory=Retention)
    """Applied by the maintenance workflow with its own key (tools/backup_maintenance.py retention),
    never by the host, whose key cannot delete."""
    repository: BackupRepository | None = None
    image: Image = "restic/restic:0.18.0"
    scheduler_image: Image = "crazymax/swarm-cronjob:1.14.0"
    """The swarm-native scheduler that starts the backup and check jobs on their cron schedules."""
    docker_api_proxy_image: Image = DOCKER_API_PROXY_IMAGE
    """The scheduler's Docker API proxy (services and tasks only): it never mounts the Docker socket itself."""
    pitr: PitrConfig = Field(default_factory=PitrConfig)

    _fires = field_validator("schedule", "check_schedule")(classmethod(lambda cls, v: cron_that_fires(v)))

    @field_validator("schedule")
    @classmethod
    def _not_too_often(cls, value: str) -> str:
        cron = grammar.parse_cron(value)
        gap = None if isinstance(cron, str) else cron.shortest_gap_s()
        if gap is not None and gap < MIN_BACKUP_INTERVAL_S:
            raise ValueError(
                f"found {show(value)}, which starts runs {gap // 60 or gap} "
                f"{'minute(s)' if gap >= 60 else 'second(s)'} apart; a run dumps and uploads every store, so "
                f"expected at least {MIN_BACKUP_INTERVAL_S // 60} minutes between runs, such as '0 * * * *'"
            )
        return value

    @model_validator(mode="after")
    def _repository(self) -> BackupConfig:
        if self.enabled and self.repository is None:
            raise KeyPathError("repository", "is required when backups are enabled")
        return self

    @model_validator(mode="after")
    def _rollback_window(self) -> BackupConfig:
        # Damaged packs are found by the weekly check (or the drill): a version must outlive two checks.
        if self.repository is None:
            return self
        needed = -(-2 * longest_gap_seconds(self.check_schedule) // 86400)
        if self.repository.keep_deleted_days < needed:
            raise KeyPathError(
                "repository/keep_deleted_days",
                f"found {self.repository.keep_deleted_days}, shorter than two intervals of check_schedule "
                f"({show(self.check_schedule)}): an overwritten pack may be found only by the check; expected at "
                f"least {needed}",
            )
        return self


# ----------------------------------------------------------------------------- secret rules


class SecretRule(Model):
    """What a secret's value must look like, checked when the stack loads (the value is never shown)."""

    min_length: int = Field(default=0, ge=0, le=4096)
    pattern: Annotated[str, Field(max_length=200)] | None = None
    """A regular expression the whole value must match, e.g. ^[A-Za-z0-9+/=]+$."""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"found {show(value)}, which is not a regular expression ({error})") from None
        return value


# ----------------------------------------------------------------------------- the stack


class StackConfig(Model):
    """Everything one stack deploys."""

    environment: Literal["dev", "staging", "prod"] = "prod"
    name_prefix: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,20}$")] = "app"
    """Prefix of every Docker object name (services, networks, volumes)."""
    host: HostSpec
    dns: DnsConfig | None = None
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    services: dict[Name, ServiceSpec] = Field(default_factory=dict)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)
    backup: BackupConfig = Field(default_factory=BackupConfig)
    jobs: dict[Name, JobSpec] = Field(default_factory=dict)
    """Scheduled jobs: name -> job (service <name_prefix>-job-<name>)."""
    secret_rules: dict[SecretName, SecretRule] = Field(default_factory=dict)
    """Secret name -> rule its value must meet (e.g. JWT secrets of at least 32 characters)."""

    @property
    def names(self) -> Names:
        """Every Docker object name this stack derives from name_prefix."""
        return Names(self.name_prefix)

    def apps(self) -> dict[str, AppSpec]:
        """Apps and workers (a worker is an app without a port)."""
        return {n: s for n, s in self.services.items() if isinstance(s, AppSpec)}

    def workers(self) -> dict[str, WorkerSpec]:
        return {n: s for n, s in self.services.items() if isinstance(s, WorkerSpec)}

    def registries(self) -> list[RegistryAuth]:
        """The private registries the apps pull from, each once (crossref refuses two credentials
        for one server)."""
        found: dict[str, RegistryAuth] = {}
        pulling: list[AppSpec | JobSpec] = [*self.apps().values(), *self.jobs.values()]
        for spec in pulling:
            if spec.registry is not None:
                found.setdefault(spec.registry.server, spec.registry)
        return [found[server] for server in sorted(found)]

    def stores(self) -> dict[str, StoreSpec]:
        return {n: s for n, s in self.services.items() if not isinstance(s, AppSpec)}

    @property
    def pitr_on(self) -> bool:
        """Whether backup/pitr is on: as configured, else on in prod when backups are enabled."""
        enabled = self.backup.pitr.enabled
        return (self.environment == "prod" and self.backup.enabled) if enabled is None else enabled

    def pitr_stores(self) -> dict[str, Any]:
        """The PostgreSQL stores whose WAL is archived."""
        if not self.pitr_on:
            return {}
        # PostgreSQL stores (stores/postgres/model.py: pitr, volume_generation, restore_to); the layers
        # reach kinds through the registry only, so by kind name and attribute.
        return {n: s for n, s in self.services.items() if s.kind == "postgres" and getattr(s, "pitr", False)}


SECTIONS = (
    "environment", "name_prefix", "host", "dns", "proxy", "services", "observability", "backup", "jobs",
    "secret_rules",
)  # fmt: skip
