"""The house rules as pure checks, and the CrossGuard policies that apply them.

Each ``check_*`` function takes a resource's properties as the engine sees them (camelCase
names, plain dicts and lists) and returns the list of problems it found, one sentence each,
empty when the resource complies. They import nothing from the program, so the pack runs in
its own virtualenv with only pulumi-policy installed, and the tests call them on crafted
dicts. The policy objects at the bottom wrap them; ``evaluate`` runs every policy over a set
of resources the way the analyzer does, for the tests and for a dry run without the CLI.

Where a rule depends on the environment (dev, staging, prod), it is read from the policy's
config (``--policy-pack-config``), else from the stack config ``keel:environment`` (which
the CLI hands to policy packs), else it is taken to be prod: an unknown environment never
loosens a rule.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyResource,
    PolicyResourceOptions,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

SERVICE = "docker:index/service:Service"
NETWORK = "docker:index/network:Network"
SERVER = "hcloud:index/server:Server"
FIREWALL = "hcloud:index/firewall:Firewall"
HCLOUD_NETWORK = "hcloud:index/network:Network"
NODE_ROLE_LABEL = "keel-node-role"
"""On a pool node's server (components/cluster.py): a node with no data, drained before removal."""
NODE_LABEL = "keel.node"
SWARM_PORTS = (("tcp", 2377), ("tcp", 7946), ("udp", 7946), ("udp", 4789))
"""Swarm's cluster management, node gossip and VXLAN data ports: the private network's only."""

ROLE_LABEL = "keel.role"
HEALTH_LABEL = "keel.health"
HEALTH_BY_PROMETHEUS = "prometheus-target"
# The only way a service may go without a probe: an image with no shell, watched by Prometheus'
# TargetDown instead. (Scheduled jobs carry a real probe of their own: render/backup.job_health_command.)
HEALTH_EXEMPTIONS = frozenset({HEALTH_BY_PROMETHEUS})
PROXY_ROLE = "proxy"
STORE_ROLE = "store"
SOCKET_PROXY_ROLE = "socket-proxy"
SERVICE_LABEL = "keel.service"
NETWORK_LABEL = "keel.network"
"""A network's role (components/networks.py): edge, data, monitoring, alerting, ..."""
DOCKER_SOCKET = "/var/run/docker.sock"
SOCKET_ALIASES = ("/var/run/docker.sock", "/run/docker.sock")
"""/var/run is a symlink to /run on every current distribution: both paths name the socket."""
ALERTING_PARTS = frozenset({"prometheus", "alertmanager"})
"""The only services on the alerting network: whoever reaches Alertmanager can silence every alert."""
WORKER_ROLE = "worker"
# Services no exemption applies to: a worker listens on no port (Prometheus cannot watch it), and
# a rollout of it without a health check could not tell a broken release from a good one.
NO_HEALTH_EXEMPTION_ROLES = frozenset({WORKER_ROLE})
ENVIRONMENTS = ("dev", "staging", "prod")
STRICTEST_ENVIRONMENT = "prod"
ENVIRONMENT_SCHEMA = PolicyConfigSchema(
    properties={"environment": {"type": "string", "enum": list(ENVIRONMENTS)}},
)
WORLD_PREFIX_LENGTH = 0
SSH_PORT = 22


# ----------------------------------------------------------------------------- reading props


def _get(props: Mapping[str, Any] | None, *path: str) -> Any:
    """props[path[0]][path[1]]..., or None where any step is missing."""
    value: Any = props
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _label(props: Mapping[str, Any], label: str) -> str | None:
    for item in props.get("labels") or []:
        if isinstance(item, Mapping) and item.get("label") == label:
            value = item.get("value")
            return str(value) if value is not None else None
    return None


def service_role(props: Mapping[str, Any]) -> str | None:
    """The value of the service's ``keel.role`` label, if it has one."""
    return _label(props, ROLE_LABEL)


def image_is_pinned(image: str) -> bool:
    """A digest, or a tag other than ``latest`` (a registry port is not a tag)."""
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and not last.endswith(":latest")


# ----------------------------------------------------------------------------- mandatory checks


def check_memory_limit(props: Mapping[str, Any]) -> list[str]:
    """Every service task has a hard memory limit (an unbounded task can starve the host)."""
    limit = _get(props, "taskSpec", "resources", "limits", "memoryBytes")
    # Numbers cross the engine as protobuf doubles, so 67108864 may arrive as 67108864.0.
    if not isinstance(limit, (int, float)) or isinstance(limit, bool) or limit <= 0:
        return [f"taskSpec.resources.limits.memoryBytes is {limit!r}; expected a positive memory limit in bytes"]
    return []


def check_health_check(props: Mapping[str, Any]) -> list[str]:
    """Every service has a health check, so rolling updates wait for it and roll back on failure."""
    health = _get(props, "taskSpec", "containerSpec", "healthcheck")
    tests = _get(health, "tests")
    if not tests:
        return ["taskSpec.containerSpec.healthcheck is missing; expected a health check (tests: [CMD, ...])"]
    if tests[0] == "NONE":
        role = service_role(props)
        if role in NO_HEALTH_EXEMPTION_ROLES:
            return [
                f"taskSpec.containerSpec.healthcheck disables the image's check (NONE) on a {role}; expected a "
                "command or a heartbeat-file check (a worker has no port for Prometheus to watch instead)"
            ]
        # An image built FROM scratch cannot run any probe. It may go without one only when it
        # says so and Prometheus watches it instead (TargetDown fires when its scrape fails).
        if _label(props, HEALTH_LABEL) in HEALTH_EXEMPTIONS:
            return []
        return [
            "taskSpec.containerSpec.healthcheck disables the image's check (NONE); expected a real health check "
            f"(or, for an image with no shell, the label {HEALTH_LABEL}={HEALTH_BY_PROMETHEUS} and a Prometheus scrape)"
        ]
    return []


def check_log_rotation(props: Mapping[str, Any]) -> list[str]:
    """Every service logs to json-file with size-based rotation (the default driver fills the disk)."""
    driver = _get(props, "taskSpec", "logDriver")
    name = _get(driver, "name")
    options = _get(driver, "options") or {}
    problems = []
    if name != "json-file":
        problems.append(f"taskSpec.logDriver.name is {name!r}; expected 'json-file' with max-size and max-file")
    else:
        for option in ("max-size", "max-file"):
            if not options.get(option):
                problems.append(f"taskSpec.logDriver.options has no {option!r}; expected log rotation")
    return problems


def check_image_pinned(props: Mapping[str, Any], environment: str) -> list[str]:
    """Outside dev, images are pinned: a tag other than latest, or a digest (a moved tag shows no diff)."""
    if environment == "dev":
        return []
    image = _get(props, "taskSpec", "containerSpec", "image")
    if not isinstance(image, str) or not image:
        return ["taskSpec.containerSpec.image is missing; expected a pinned image reference"]
    if not image_is_pinned(image):
        return [f"image {image!r} is not pinned; expected a version tag (not latest) or an @sha256 digest"]
    return []


def check_published_ports(props: Mapping[str, Any]) -> list[str]:
    """Only the proxy publishes ports; everything else is reached through it."""
    ports = _get(props, "endpointSpec", "ports") or []
    role = service_role(props)
    if ports and role != PROXY_ROLE:
        published = ", ".join(str(_get(port, "publishedPort") or _get(port, "targetPort")) for port in ports)
        return [f"publishes port(s) {published} but its {ROLE_LABEL} is {role!r}; only the proxy publishes ports"]
    return []


def _uid_gid(user: Any) -> tuple[str, str | None]:
    uid, _, gid = str(user or "").partition(":")
    return uid, gid or None


def _contains_socket(source: str) -> bool:
    """Whether a bind of ``source`` hands the container the Docker socket (it, or a directory above it)."""
    path = "/" + source.strip("/")
    return any(alias == path or alias.startswith(path.rstrip("/") + "/") for alias in SOCKET_ALIASES)


def check_docker_socket(props: Mapping[str, Any]) -> list[str]:
    """Only the Docker API proxy mounts the Docker socket, which is root on the host.

    A read-only mount restricts nothing (the API is spoken over it). A directory that holds the
    socket (/, /var/run, /run) counts as the socket, unless it is read-only and the task runs as
    a user who can neither be root nor be in the docker group (uid and gid numeric and not 0, no
    extra groups): the socket is root:docker 0660, so connect(2) is refused to such a user.
    """
    role = service_role(props)
    container = _get(props, "taskSpec", "containerSpec") or {}
    uid, gid = _uid_gid(container.get("user"))
    unprivileged = uid.isdigit() and uid != "0" and gid is not None and gid.isdigit() and gid != "0"
    unprivileged = unprivileged and not container.get("groups")
    problems = []
    for index, mount in enumerate(container.get("mounts") or []):
        if not isinstance(mount, Mapping) or mount.get("type") != "bind":
            continue
        source = str(mount.get("source") or "")
        if not _contains_socket(source):
            continue
        if role == SOCKET_PROXY_ROLE and "/" + source.strip("/") in SOCKET_ALIASES:
            continue
        if source.rstrip("/") not in ("/var/run/docker.sock", "/run/docker.sock") and (
            mount.get("readOnly") is True and unprivileged
        ):
            continue
        problems.append(
            f"taskSpec.containerSpec.mounts[{index}] binds {source!r}, which holds the Docker socket (root on the "
            f"host), into a service whose {ROLE_LABEL} is {role!r}; expected only the {SOCKET_PROXY_ROLE} to mount "
            f"{DOCKER_SOCKET}, and its clients to reach the API through it"
        )
    return problems


def check_server_delete_protection(props: Mapping[str, Any], protect: bool, environment: str) -> list[str]:
    """In prod, the server has Hetzner delete protection and Pulumi's protect; a pool node (labelled
    keel-node-role) holds no data and must stay removable by lowering its pool's count, which the
    program drains first."""
    if environment != "prod" or NODE_ROLE_LABEL in (props.get("labels") or {}):
        return []
    problems = []
    if props.get("deleteProtection") is not True:
        problems.append("deleteProtection is not true; expected Hetzner delete protection on a prod server")
    if not protect:
        problems.append("the resource option protect is off; expected protect=True on a prod server")
    return problems


def _covers_ssh(port: Any) -> bool:
    """Whether a Hetzner rule port ("22", "20-30", "any", None) admits port 22."""
    if port is None or str(port).strip().lower() == "any":
        return True
    text = str(port).strip()
    if "-" in text:
        low, _, high = text.partition("-")
        try:
            return int(low) <= SSH_PORT <= int(high)
        except ValueError:
            return True  # an unreadable range is treated as open: fail closed
    try:
        return int(text) == SSH_PORT
    except ValueError:
        return True


def _is_world(cidr: Any) -> bool:
    try:
        return ipaddress.ip_network(str(cidr), strict=False).prefixlen == WORLD_PREFIX_LENGTH
    except ValueError:
        return False


def check_firewall_ssh(props: Mapping[str, Any]) -> list[str]:
    """No inbound rule admits SSH (tcp 22) from the whole internet."""
    problems = []
    for index, rule in enumerate(props.get("rules") or []):
        if not isinstance(rule, Mapping):
            continue
        if str(rule.get("direction", "in")) != "in" or str(rule.get("protocol", "tcp")) != "tcp":
            continue
        if not _covers_ssh(rule.get("port")):
            continue
        world = [cidr for cidr in rule.get("sourceIps") or [] if _is_world(cidr)]
        if world:
            problems.append(
                f"rules[{index}] opens port {rule.get('port')!r} (SSH) to {', '.join(map(str, world))}; "
                "expected the admins' networks only"
            )
    return problems


def check_store_capabilities(props: Mapping[str, Any]) -> list[str]:
    """A store (keel.role=store) drops every capability and adds none: each starts as its image's
    own user, so its entrypoint neither chowns nor steps down (docs/least-privilege.md)."""
    if service_role(props) != STORE_ROLE:
        return []
    container = _get(props, "taskSpec", "containerSpec") or {}
    problems = []
    drops = list(container.get("capDrops") or [])
    if drops != ["ALL"]:
        problems.append(f"taskSpec.containerSpec.capDrops is {drops!r}; expected ['ALL'] for a store")
    adds = list(container.get("capAdds") or [])
    if adds:
        problems.append(f"taskSpec.containerSpec.capAdds is {adds!r}; expected none for a store")
    return problems


def _port_range(port: Any) -> tuple[int, int] | None:
    """A Hetzner rule's port as a range; None for "any" or no port (every port)."""
    if port is None or str(port).strip().lower() == "any":
        return None
    low, _, high = str(port).strip().partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        return None  # unreadable: treated as every port (fail closed)


def check_firewall_swarm_ports(props: Mapping[str, Any]) -> list[str]:
    """No inbound rule of a Hetzner firewall (which filters the public interface) admits swarm's ports
    or ESP: nodes reach each other over the private network only."""
    problems = []
    for index, rule in enumerate(props.get("rules") or []):
        if not isinstance(rule, Mapping) or str(rule.get("direction", "in")) != "in":
            continue
        protocol = str(rule.get("protocol", "tcp"))
        if protocol == "esp":
            problems.append(f"rules[{index}] admits ESP (encrypted overlay traffic); expected the private network only")
            continue
        span = _port_range(rule.get("port"))
        for proto, port in SWARM_PORTS:
            if protocol == proto and (span is None or span[0] <= port <= span[1]):
                problems.append(
                    f"rules[{index}] admits {proto} {port}, a swarm port, from the internet; expected swarm's "
                    "ports on the private network only"
                )
    return problems


def _is_clustered(resources: Sequence[PolicyResource]) -> bool:
    return any(r.resource_type == HCLOUD_NETWORK for r in resources)


def _mounts_volume(props: Mapping[str, Any]) -> bool:
    mounts = ((props.get("taskSpec") or {}).get("containerSpec") or {}).get("mounts") or []
    # A bind mount names a directory of one node's disk too.
    return any(isinstance(m, Mapping) and m.get("type") in ("volume", "bind") for m in mounts)


def _constraints(props: Mapping[str, Any]) -> list[str]:
    placement = (props.get("taskSpec") or {}).get("placement") or {}
    return [str(c).replace(" ", "") for c in placement.get("constraints") or []]


def check_cluster_placement(resources: Sequence[PolicyResource]) -> list[tuple[str, str]]:
    """With several nodes (the stack declares an hcloud private network): every store, and every
    replicated service that mounts a volume, is pinned to a node by its keel.node label (a volume is
    on one node's disk; ``node.role==manager`` no longer names one node with three managers); every
    overlay network is encrypted (traffic between nodes crosses the private network)."""
    if not _is_clustered(resources):
        return []
    problems: list[tuple[str, str]] = []
    pin = f"node.labels.{NODE_LABEL}=="
    for resource in resources:
        try:
            props = resource.props
            if resource.resource_type == SERVICE:
                global_mode = bool((props.get("mode") or {}).get("global"))
                if (service_role(props) == STORE_ROLE or _mounts_volume(props)) and not global_mode:
                    if not any(c.startswith(pin) for c in _constraints(props)):
                        problems.append(
                            (resource.urn, "keeps data in a volume but is not pinned to a node by its keel.node label; "
                             f"expected a constraint {pin}<node>")
                        )  # fmt: skip
            elif resource.resource_type == NETWORK and props.get("driver") == "overlay":
                if "encrypted" not in (props.get("options") or {}):
                    problems.append(
                        (resource.urn, "is an overlay network in clear on a swarm of several nodes; "
                         "expected options.encrypted")
                    )  # fmt: skip
        except UnknownValueError:
            continue
    return problems


# ----------------------------------------------------------------------------- advisory checks


def check_non_root(props: Mapping[str, Any]) -> list[str]:
    """Services run as a non-root user."""
    user = _get(props, "taskSpec", "containerSpec", "user")
    if not user:
        return ["taskSpec.containerSpec.user is unset, so the image's user (often root) runs it; expected uid:gid"]
    name = str(user).split(":", 1)[0]
    if name in ("0", "root"):
        return [f"taskSpec.containerSpec.user is {user!r}; expected a non-root uid:gid"]
    return []


def check_read_only_root(props: Mapping[str, Any]) -> list[str]:
    """Services run with a read-only root filesystem (writes go to volumes and tmpfs)."""
    if _get(props, "taskSpec", "containerSpec", "readOnly") is not True:
        return ["taskSpec.containerSpec.readOnly is not true; expected a read-only root filesystem"]
    return []


# ----------------------------------------------------------------------------- stack check


def _network_refs(props: Mapping[str, Any]) -> list[str | None]:
    """The network each attachment names; None where the value is not known yet (preview)."""
    try:
        attachments = _get(props, "taskSpec", "networksAdvanceds") or []
    except UnknownValueError:
        return [None]
    refs: list[str | None] = []
    for index in range(len(attachments)):
        try:
            attachment = attachments[index]
            # `id` in pulumi-docker 5; the deprecated `name` also held an id (or a name).
            name = (attachment.get("id") or attachment.get("name")) if isinstance(attachment, Mapping) else None
        except (UnknownValueError, KeyError):
            name = None
        refs.append(str(name) if name is not None else None)
    return refs


def _network_keys(network: PolicyResource) -> set[str]:
    """What a service may use to name this network: its id (bridged providers keep it in props) or its name."""
    keys = {network.urn}
    for key in ("id", "name"):
        try:
            value = network.props.get(key)
        except UnknownValueError:
            value = None
        if isinstance(value, str) and value:
            keys.add(value)
    return keys


def _is_internal(network: PolicyResource) -> bool:
    try:
        return network.props.get("internal") is True
    except UnknownValueError:
        return False


WAL_ARCHIVE_LABEL = "keel.wal-archive"
"""On a store whose archive_command ships WAL to S3 (``true``) and on the one network with egress it
may join for that (``egress``): components/pitr.py, components/networks.py."""


def _wal_archive_egress(service: PolicyResource, network: PolicyResource) -> bool:
    try:
        return (
            _label(service.props, WAL_ARCHIVE_LABEL) == "true" and _label(network.props, WAL_ARCHIVE_LABEL) == "egress"
        )
    except UnknownValueError:
        return False


def _network_role(network: PolicyResource) -> str | None:
    try:
        return _label(network.props, NETWORK_LABEL)
    except UnknownValueError:
        return None


def _attachments(
    resources: Sequence[PolicyResource],
) -> Iterable[tuple[PolicyResource, list[PolicyResource], list[str | None]]]:
    """Each service, the networks of the stack it is attached to, and the references that match none.

    An attachment names a network by id (or name). It is matched to a Network resource of the
    stack; where the value is not known (a preview before the network exists) the networks the
    service depends on stand in for it; a reference that matches nothing and has no stand-in is
    returned as foreign.
    """
    by_key: dict[str, PolicyResource] = {}
    for network in (r for r in resources if r.resource_type == NETWORK):
        for key in _network_keys(network):
            by_key[key] = network
    for service in resources:
        if service.resource_type != SERVICE:
            continue
        attached: list[PolicyResource] = []
        foreign: list[str | None] = []
        for ref in _network_refs(service.props):
            if ref is not None and ref in by_key:
                attached.append(by_key[ref])
                continue
            depended = [d for d in service.dependencies if d.resource_type == NETWORK]
            if not depended:
                foreign.append(ref)
            attached.extend(depended)
        yield service, list({n.urn: n for n in attached}.values()), foreign


def check_store_networks(resources: Sequence[PolicyResource]) -> list[tuple[str, str]]:
    """Stores are attached to internal networks only, never the edge (but a store that archives its
    WAL may also join the network labelled for that egress). Returns (urn, problem) pairs.

    An attachment that matches no network of the stack is a violation too: a store must not join
    a network declared elsewhere.
    """
    problems: list[tuple[str, str]] = []
    for service, attached, foreign in _attachments(resources):
        if service_role(service.props) != STORE_ROLE:
            continue
        for ref in foreign:
            problems.append(
                (service.urn, f"is attached to network {ref!r}, which is not a network of this stack; "
                 "expected an internal network declared here")
            )  # fmt: skip
        for network in attached:
            if _network_role(network) == "edge":
                problems.append(
                    (service.urn, f"is a store attached to network {network.name!r}, the edge network the proxy "
                     "shares; expected the data network")
                )  # fmt: skip
            elif not _is_internal(network) and not _wal_archive_egress(service, network):
                problems.append(
                    (service.urn, f"is a store attached to network {network.name!r}, which is not internal; "
                     "expected internal networks only")
                )  # fmt: skip
    return problems


def check_network_topology(resources: Sequence[PolicyResource]) -> list[tuple[str, str]]:
    """The proxy is on no data network; only Prometheus and Alertmanager are on the alerting network."""
    problems: list[tuple[str, str]] = []
    for service, attached, _ in _attachments(resources):
        role = service_role(service.props)
        part = _label(service.props, SERVICE_LABEL)
        for network in attached:
            network_role = _network_role(network)
            if role == PROXY_ROLE and network_role == "data":
                problems.append(
                    (service.urn, f"is the proxy attached to network {network.name!r}, the stores' data network; "
                     "expected the edge network (and the proxy's own monitoring link) only")
                )  # fmt: skip
            if network_role == "alerting" and not (role == "observability" and part in ALERTING_PARTS):
                problems.append(
                    (service.urn, f"is attached to network {network.name!r}, Alertmanager's; expected only "
                     "Prometheus and Alertmanager there (whoever reaches Alertmanager can silence every alert)")
                )  # fmt: skip
    return problems


# ----------------------------------------------------------------------------- environment


def environment_of(policy_config: Mapping[str, Any] | None) -> str:
    """The stack's environment: policy config, else stack config keel:environment, else prod."""
    configured = (policy_config or {}).get("environment")
    if configured in ENVIRONMENTS:
        return str(configured)
    try:
        import pulumi

        from_stack = pulumi.Config("keel").get("environment")
    except Exception:  # noqa: BLE001 (outside an engine run there is no stack config)
        from_stack = None
    return from_stack if from_stack in ENVIRONMENTS else STRICTEST_ENVIRONMENT


# ----------------------------------------------------------------------------- policies


def _report_all(problems: Iterable[str], report_violation: ReportViolation) -> None:
    for problem in problems:
        report_violation(problem, None)


def _on(resource_type: str, check: Callable[[Mapping[str, Any]], list[str]]) -> Callable[..., None]:
    """A resource policy that runs ``check`` on every resource of ``resource_type``."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type == resource_type:
            _report_all(check(args.props), report_violation)

    return validate


def _on_services(check: Callable[[Mapping[str, Any]], list[str]]) -> Callable[..., None]:
    return _on(SERVICE, check)


def _across_stack(check: Callable[[Sequence[PolicyResource]], list[tuple[str, str]]]) -> Callable[..., None]:
    """A stack policy that reports each (urn, problem) ``check`` finds among the stack's resources."""

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for urn, problem in check(args.resources):
            report_violation(problem, urn)

    return validate


def _validate_image_pinned(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type == SERVICE:
        _report_all(check_image_pinned(args.props, environment_of(args.get_config())), report_violation)


def _validate_server_protection(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type == SERVER:
        problems = check_server_delete_protection(args.props, args.opts.protect, environment_of(args.get_config()))
        _report_all(problems, report_violation)


MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY

POLICIES: list[Policy] = [
    ResourceValidationPolicy(
        name="service-memory-limit",
        description="Every docker.Service has a memory limit.",
        validate=_on_services(check_memory_limit),
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="service-health-check",
        description="Every docker.Service has a health check.",
        validate=_on_services(check_health_check),
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="service-log-rotation",
        description="Every docker.Service logs to json-file with max-size and max-file.",
        validate=_on_services(check_log_rotation),
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="image-pinned",
        description="Outside dev, service images carry a version tag (not latest) or a digest.",
        validate=_validate_image_pinned,
        enforcement_level=MANDATORY,
        config_schema=ENVIRONMENT_SCHEMA,
    ),
    ResourceValidationPolicy(
        name="only-proxy-publishes-ports",
        description="Only the service labelled keel.role=proxy publishes ports.",
        validate=_on_services(check_published_ports),
        enforcement_level=MANDATORY,
    ),
    StackValidationPolicy(
        name="stores-on-internal-networks",
        description="Services labelled keel.role=store are attached to internal networks only, never the edge.",
        validate=_across_stack(check_store_networks),
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="swarm-ports-private",
        description="No Hetzner firewall admits swarm's ports (2377, 7946, 4789) or ESP from the internet.",
        validate=_on(FIREWALL, check_firewall_swarm_ports),
        enforcement_level=MANDATORY,
    ),
    StackValidationPolicy(
        name="cluster-placement",
        description="With several nodes: data pinned by the keel.node label, every overlay network encrypted.",
        validate=_across_stack(check_cluster_placement),
        enforcement_level=MANDATORY,
    ),
    StackValidationPolicy(
        name="network-topology",
        description="The proxy is not on the data network; only Prometheus and Alertmanager share the alerting one.",
        validate=_across_stack(check_network_topology),
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="docker-socket-only-in-socket-proxy",
        description="Only the service labelled keel.role=socket-proxy mounts the Docker socket.",
        validate=_on_services(check_docker_socket),
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="stores-drop-all-capabilities",
        description="Services labelled keel.role=store drop every capability and add none.",
        validate=_on_services(check_store_capabilities),
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="prod-server-delete-protection",
        description="In prod, Hetzner servers have delete protection and Pulumi protect.",
        validate=_validate_server_protection,
        enforcement_level=MANDATORY,
        config_schema=ENVIRONMENT_SCHEMA,
    ),
    ResourceValidationPolicy(
        name="no-world-ssh",
        description="No Hetzner firewall rule opens port 22 to 0.0.0.0/0 or ::/0.",
        validate=_on(FIREWALL, check_firewall_ssh),
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="service-non-root",
        description="docker.Service tasks run as a non-root user.",
        validate=_on_services(check_non_root),
        enforcement_level=ADVISORY,
    ),
    ResourceValidationPolicy(
        name="service-read-only-root",
        description="docker.Service tasks run with a read-only root filesystem.",
        validate=_on_services(check_read_only_root),
        enforcement_level=ADVISORY,
    ),
]


# ----------------------------------------------------------------------------- local evaluation


@dataclass(frozen=True)
class Violation:
    """One reported violation: which policy, its level, the resource and the message."""

    policy: str
    level: EnforcementLevel
    urn: str | None
    message: str


def evaluate(
    resources: Sequence[PolicyResource],
    *,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    policies: Sequence[Policy] = POLICIES,
) -> list[Violation]:
    """Run every policy over the resources as the analyzer would; ``config`` is per policy name.

    Resource policies see each resource once (as in ``Analyze``), stack policies see them all
    (as in ``AnalyzeStack``).
    """
    found: list[Violation] = []
    for policy in policies:
        level = policy.enforcement_level or ADVISORY
        policy_config = dict((config or {}).get(policy.name) or {})

        def report(message: str, urn: str | None = None, *, _policy: Policy = policy, _level: Any = level) -> None:
            found.append(Violation(_policy.name, _level, urn, message))

        if isinstance(policy, ResourceValidationPolicy):
            for resource in resources:
                args = ResourceValidationArgs(
                    resource.resource_type, resource.props, resource.urn, resource.name, resource.opts,
                    resource.provider, policy_config,
                )  # fmt: skip

                def report_for(message: str, urn: str | None = None, *, _urn: str = resource.urn) -> None:
                    report(message, _urn)

                policy.validate(args, report_for)
        elif isinstance(policy, StackValidationPolicy):
            policy.validate(StackValidationArgs(list(resources), policy_config), report)
    return found


def policy_resource(
    resource_type: str,
    props: Mapping[str, Any],
    *,
    urn: str | None = None,
    name: str = "resource",
    protect: bool = False,
    dependencies: Sequence[PolicyResource] = (),
) -> PolicyResource:
    """A PolicyResource as the analyzer builds it, from plain values (for tests and dry runs)."""
    opts = PolicyResourceOptions(protect, [], None, [], None, [], None)  # type: ignore[arg-type]
    return PolicyResource(
        resource_type,
        props,
        urn or f"urn:pulumi:test::keel::{resource_type}::{name}",
        name,
        opts,
        None,
        None,
        list(dependencies),
        {},
    )
