"""The contract of a store kind: everything the layers need to know about one kind of store, and
the plans its capabilities return.

A store kind (stores/<kind>/kind.py) is one record: its spec model (what the config says), its
credentials, the images it pins, its configuration problems, the container it runs (image,
args, env, files, mounts, health, stop), its exporter with the dashboards and alert rules that
read it, and its backup (what the job mounts, the shell it contributes, the restore and drill
scripts, the tools the job image must carry). Every capability is an abstract method: a kind
that lacks one cannot be instantiated (a TypeError when the registry imports it, and a mypy
error), and a kind without, say, an exporter says so by returning None, never by falling
through to another kind's answer. The layers (config, components, renderers) dispatch through
the registry (stores/registry.py) and never name a kind.

Pure data and pure functions only: config.models imports this (through the registry), so
nothing here may import Pulumi, config.models or a renderer that does.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

from config.base import Logging, Resources, StoreSpec

S = TypeVar("S", bound=StoreSpec)

VolumeAccess = Literal["none", "read-only", "read-write"]


# ----------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Password:
    """The store has a password: ``secret`` names a configured one, None means a generated one.
    ``url(host, password)`` is what an app's ``store-url:<name>`` receives (the password
    percent-encoded in it); ``store:<name>`` receives the password itself."""

    secret: str | None
    url: Callable[[str, str], str]
    key: str = "password_secret"
    """The spec's key that names ``secret`` (for error messages)."""
    resource: str = "password"
    """The generated password's resource name after the store's (``<store>-<resource>``)."""
    standby: tuple[Login, ...] = ()
    """Other users that log in for the apps meanwhile (a rotation in progress), whose passwords only
    the setup step reads (by user name, beside the clients')."""
    password_alone: str | None = None
    """Why ``store:<name>`` (the password without its user) cannot log in, or None when it can."""


@dataclass(frozen=True)
class Login:
    """A user the apps may log in as besides the one they receive: ``secret`` names a configured
    password, None a generated one (``<store>-<resource>``, kept in the stack's state while it exists)."""

    user: str
    secret: str | None
    resource: str


@dataclass(frozen=True)
class SecretUrl:
    """The store is reached by a URL held in the configured secret ``secret`` (an external
    database); ``store:<name>`` and ``store-url:<name>`` both receive it."""

    secret: str
    key: str = "url_secret"
    """The spec's key that names ``secret`` (for error messages)."""


Credentials = Password | SecretUrl | None


@dataclass(frozen=True)
class KeyProblem:
    """A configuration problem of one store: ``key`` below ``services/<name>/``, and the message."""

    key: str
    message: str


# ----------------------------------------------------------------------------- the container


@dataclass(frozen=True)
class ConfigFile:
    """A file rendered at deploy time, mounted read-only as a swarm config (autonamed
    ``<store>-<part>``)."""

    part: str
    text: str
    path: str


@dataclass(frozen=True)
class SecretFile:
    """A secret mounted as a file: the store's password itself (``part`` and ``client`` None), a
    client's own password (``client``, one of the kind's ``clients``), or a secret of its own
    (``<store>-<part>``): made by ``derive`` from the password and the clients' passwords (by user
    name), or a password of its own, ``generated`` once (pulumi-random) and kept in the stack's state."""

    path: str
    part: str | None = None
    derive: Callable[[str, dict[str, str]], str] | None = None
    generated: bool = False
    client: str | None = None

    def __post_init__(self) -> None:
        if self.client is not None and (self.part is not None or self.derive is not None or self.generated):
            raise ValueError(f"{self.path}: a client's password is its own secret, neither derived nor generated")
        if (self.part is None) != (self.derive is None and not self.generated):
            raise ValueError(f"{self.path}: a secret of its own (part) is either derived or generated")
        if self.derive is not None and self.generated:
            raise ValueError(f"{self.path}: derived from the password or generated, not both")


@dataclass(frozen=True)
class Tmpfs:
    path: str
    size_mb: int


@dataclass(frozen=True)
class Probe:
    """A swarm health check: ``test`` is ``("CMD", ...)`` or ``("CMD-SHELL", "...")``."""

    test: tuple[str, ...]
    interval_s: int = 10
    timeout_s: int = 5
    start_period_s: int = 30
    retries: int = 5


@dataclass(frozen=True)
class Setup:
    """A step run on the host after the store's task is healthy, on every change of its input:
    ``script(service name)`` is the shell, ``stdin(password, clients' passwords by user name)`` what
    it reads (a secret: it never touches the host's disk; the clients' include the standby logins'
    of ``Password``). E.g. PostgreSQL's per-client roles."""

    part: str
    script: Callable[[str], str]
    stdin: Callable[[str, dict[str, str]], str]


@dataclass(frozen=True)
class ContainerPlan:
    """The store's one task. ``args`` replace the image's CMD, never its ENTRYPOINT: the official
    images' entrypoints initialise the data directory, read the *_FILE secrets and drop root."""

    image: str
    args: tuple[str, ...]
    data_dir: str
    """Where the store's protected data volume is mounted."""
    health: Probe
    resources: Resources
    logging: Logging
    stop_grace_s: int
    user: str
    """The image's own user the server runs as from the start: its entrypoint then neither chowns nor
    switches users, so it needs no capability (the data directory is handed to it when the volume is
    prepared; policy stores-drop-all-capabilities)."""
    stop_signal: str | None = None
    env: Mapping[str, str] | None = None
    config_files: tuple[ConfigFile, ...] = ()
    secret_files: tuple[SecretFile, ...] = ()
    tmpfs: tuple[Tmpfs, ...] = ()
    setup: Setup | None = None


# ----------------------------------------------------------------------------- monitoring


@dataclass(frozen=True)
class ExporterContainer:
    """How the exporter task runs: ``command`` replaces the image's entrypoint (a shell that
    reads the password file), ``env`` configures it."""

    env: Mapping[str, str] | None = None
    command: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AlertRule:
    """One Prometheus alerting rule (rendered into the keel-services group)."""

    alert: str
    expr: str
    summary: str
    """A Prometheus template ({{ $labels.job }})."""
    duration: str = "1m"
    severity: Literal["critical", "warning"] = "critical"
    comment: str | None = None


@dataclass(frozen=True)
class Exporter(Generic[S]):
    """The Prometheus exporter of one store, and what reads its metrics."""

    image_key: str
    """The observability key of its image (``<kind>_exporter_image``)."""
    default_image: str
    image_doc: str
    port: int
    memory_mb: int
    health_path: str
    """Probed with wget inside the exporter's container."""
    container: Callable[[S, str, str | None, str | None], ExporterContainer]
    """(spec, the store's service name, the password file or None, the exporter's own user from
    the kind's ``clients`` or None for the app's) -> how the exporter runs."""
    dashboards: tuple[dict[str, Any], ...]
    """Grafana dashboards (render.dashboards), provisioned when the stack has such a store."""
    alert_rules: tuple[AlertRule, ...]


# ----------------------------------------------------------------------------- backup


@dataclass(frozen=True, kw_only=True)
class BackupTarget(ABC):
    """One store as the backup scripts see it (subclassed by each kind with what its scripts need).

    ``name`` is the store's name in the config; ``host`` the name it is reached at over the
    data network (the scripts let KEEL_HOST_<NAME> and KEEL_PORT_<NAME> override it)."""

    kind: ClassVar[str]
    name: str

    @abstractmethod
    def volume_access(self) -> VolumeAccess:
        """How the backup job mounts the store's data volume (at KEEL_STORES_DIR/<name>)."""


@dataclass(frozen=True)
class JobTools:
    """What the backup job image needs for a kind (render/templates/backup/image/Dockerfile)."""

    build_args: Mapping[str, str] = field(default_factory=dict)
    """Build arguments the Dockerfile declares (the image a kind's tools are copied from)."""
    apk: tuple[str, ...] = ()
    """Packages when the base image is Alpine."""
    apt: tuple[str, ...] = ()
    """Packages when the base image is Debian."""
    checks: tuple[str, ...] = ()
    """Commands run at build time that fail if a tool is missing (``pg_dump --version``)."""


@dataclass(frozen=True)
class Backup(Generic[S]):
    """How a kind is backed up, restored and drilled by the backup job (render.backup).

    Its script parts are Jinja templates in ``templates`` rendered with the values of
    render.backup (``q`` quotes for the shell, ``env`` makes a name an env-var suffix, ...):
    ``functions`` (shell functions of backup.sh), ``calls`` (backup.sh lines for one target
    ``t``), ``drill_functions`` and ``drill_calls`` (the same for drill.sh), ``common`` (helpers
    its backup and restore scripts share, in common.sh; None for none) and ``restore`` (restore
    script names; the template is the name + ``.j2``). Every variable and function the parts
    define starts with ``keel_``, ``backup_<kind>``, ``drill_<kind>`` or ``restore_``.
    """

    target: Callable[[str, S, str], BackupTarget | None]
    """(store name, spec, service name) -> its target, or None when this store is not backed up."""
    templates: Path
    functions: str
    calls: str
    drill_functions: str
    drill_calls: str
    common: str | None
    restore: tuple[str, ...]
    tool_defaults: Mapping[str, str]
    """Environment variables naming the tools its scripts run, with the job image's names."""
    tools: Callable[[list[S]], JobTools]
    """(the stack's specs of this kind, maybe none) -> what the job image must carry."""
    values: Mapping[str, object] = field(default_factory=dict)
    """The kind's own template values (file names its scripts share with its container)."""


# ----------------------------------------------------------------------------- the kind


class StoreKind(ABC, Generic[S]):
    """One kind of store. Subclasses set ``name`` (the config's ``kind``) and ``spec_type`` and
    implement every capability; instances are registered in stores/registry.py."""

    name: ClassVar[str]
    spec_type: ClassVar[type[StoreSpec]]
    summary: ClassVar[str]
    """One line for the README and error messages."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attribute in ("name", "spec_type", "summary"):
            if not hasattr(cls, attribute):
                raise TypeError(f"store kind {cls.__name__} does not set {attribute}")

    # -------------------------------------------------------------- config

    @abstractmethod
    def credentials(self, spec: S) -> Credentials:
        """What an app's ``store:<name>`` / ``store-url:<name>`` secret receives; None: refused."""

    @abstractmethod
    def clients(self, spec: S) -> Mapping[str, str]:
        """The store's clients other than the apps, each with a user and a generated password of its
        own (``exporter``, ``backup``, ...) -> user name; empty: every client uses the app's."""

    @abstractmethod
    def mountable(self) -> bool:
        """Whether apps may mount the store (``services/<app>/volumes``)."""

    @abstractmethod
    def images(self, spec: S) -> Mapping[str, str]:
        """Key below ``services/<name>/`` -> image, each of which must be pinned outside dev."""

    @abstractmethod
    def problems(self, spec: S) -> list[KeyProblem]:
        """What is wrong with a spec that validated on its own (e.g. a server version the rendered
        configuration does not suit)."""

    # -------------------------------------------------------------- on the host

    @abstractmethod
    def data_volume(self, spec: S) -> bool:
        """Whether the store keeps a protected data volume on the data disk."""

    @abstractmethod
    def container(self, name: str, spec: S) -> ContainerPlan | None:
        """The store's service (its memory limit is what the capacity budget counts), or None for
        a store without one."""

    # -------------------------------------------------------------- monitoring and backups

    @abstractmethod
    def exporter(self) -> Exporter[S] | None:
        """The store's exporter (with its dashboards and alert rules), or None for none."""

    @abstractmethod
    def backup(self) -> Backup[S] | None:
        """How the backup job handles the store, or None when it never does (its provider does)."""


def find_running_task(service: str) -> str:
    """Shell lines, for a script run on the store's node, that set ``$service`` and ``$container`` (a
    running task of the store's swarm service, waited for up to two minutes) or exit 1 saying so: what
    a setup step (roles, users) execs its client in."""
    return f"""service={shlex.quote(service)}
container=
for _ in $(seq 1 60); do
  container=$(docker ps -q -f "label=com.docker.swarm.service.name=$service" -f status=running | head -n 1)
  [ -n "$container" ] && break
  sleep 2
done
if [ -z "$container" ]; then
  echo "no running task of $service" >&2
  exit 1
fi
"""
