"""kreuzwerker/terraform-provider-docker v4.5.0, as bundled by pulumi-docker 5.2.0.

pulumi-docker 5.2.0 builds its provider from the ``upstream`` submodule at v4.5.0 (commit 5074970c),
with pulumi-terraform-bridge v3.137.0 and github.com/docker/docker v28.5.2 (provider/go.mod). Its two
patches (patches/0001 shim, 0002 registry TLS client) change no Read, Create or schema.

Every resource here is a Terraform plugin SDK v2 resource: an unset primitive equals its zero value,
a TypeSet is unordered (``unordered=True``), an Optional+Computed attribute keeps the state when the
program leaves it unset (``computed=True``), and ForceNew on a block applies to its count only (a
nested attribute forces replacement only when it is ForceNew itself; in a TypeSet any changed
element is removed and added again, so an element with a ForceNew attribute replaces on any change).

Sources (internal/provider/ at v4.5.0): resource_docker_service.go (schema),
resource_docker_service_funcs.go (Create/Read/Update), resource_docker_service_structures.go
(create*: what is sent; flatten*: what Read stores), resource_docker_secret.go,
resource_docker_config.go, resource_docker_volume.go, resource_docker_network.go,
resource_docker_network_funcs.go, resource_docker_network_structures.go, resource_docker_image.go,
resource_docker_image_funcs.go, data_source_docker_registry_image.go, helpers.go, validators.go.
The Docker side: moby/moby v28.5.2 client/service_create.go and client/service_update.go (the
provider's client), daemon/cluster/convert/service.go and the vendored swarmkit port allocator.
The Pulumi side: pulumi-docker provider/resources.go (``SetAutonaming(255, "-")``: every ``name``
but the image's is autonamed) and pulumi-terraform-bridge pkg/tfbridge/schema.go
(``nameRequiresDeleteBeforeReplace``: an explicitly named resource is deleted before it is replaced).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tools.readback.model import ResourceModel, Rule

V = "kreuzwerker/terraform-provider-docker v4.5.0"
P = f"{V} internal/provider"
SERVICE_SCHEMA = f"{P}/resource_docker_service.go"
SERVICE_FUNCS = f"{P}/resource_docker_service_funcs.go"
STRUCTURES = f"{P}/resource_docker_service_structures.go"
VALIDATORS = f"{P}/validators.go"
HELPERS = f"{P}/helpers.go"
SECRET_SRC = f"{P}/resource_docker_secret.go"
CONFIG_SRC = f"{P}/resource_docker_config.go"
VOLUME_SRC = f"{P}/resource_docker_volume.go"
NETWORK_SCHEMA = f"{P}/resource_docker_network.go"
NETWORK_FUNCS = f"{P}/resource_docker_network_funcs.go"
IMAGE_SCHEMA = f"{P}/resource_docker_image.go"
IMAGE_FUNCS = f"{P}/resource_docker_image_funcs.go"
REGISTRY_IMAGE_SRC = f"{P}/data_source_docker_registry_image.go"
MOBY = "moby/moby v28.5.2"
MOBY_CLIENT = f"{MOBY} client/service_create.go"
MOBY_CONVERT = f"{MOBY} daemon/cluster/convert/service.go"
SWARMKIT_PORTS = f"{MOBY} vendor/github.com/moby/swarmkit/v2/manager/allocator/portallocator.go"
BRIDGE_DBR = "pulumi-terraform-bridge v3.136.0 pkg/tfbridge/schema.go nameRequiresDeleteBeforeReplace"

SERVICE_TYPE = "docker:index/service:Service"
SECRET_TYPE = "docker:index/secret:Secret"
CONFIG_TYPE = "docker:index/serviceConfig:ServiceConfig"
VOLUME_TYPE = "docker:index/volume:Volume"
NETWORK_TYPE = "docker:index/network:Network"
REMOTE_IMAGE_TYPE = "docker:index/remoteImage:RemoteImage"

# ----------------------------------------------------------------------------- Go value forms

_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)")


def go_duration_ns(text: str) -> int:
    """Go's ``time.ParseDuration`` (what the provider's create* functions call), in nanoseconds."""
    rest, sign = text, 1
    if rest[:1] in ("-", "+"):
        sign, rest = (-1 if rest[0] == "-" else 1), rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f"not a Go duration: {text!r}")
    total, pos = 0, 0
    while pos < len(rest):
        found = _DURATION_PART.match(rest, pos)
        if found is None or not (found.group(1) or found.group(2)):
            raise ValueError(f"not a Go duration: {text!r}")
        whole, frac, unit = found.group(1), found.group(2) or "", _NS[found.group(3)]
        total += int(whole or 0) * unit + (int(frac) * unit // 10 ** len(frac) if frac else 0)
        pos = found.end()
    return sign * total


def _fraction(value: int, precision: int) -> str:
    digits = f"{value:0{precision}d}".rstrip("0")
    return f".{digits}" if digits else ""


def go_duration_string(ns: int) -> str:
    """Go's ``time.Duration.String``: ``1h2m3s``, ``1m0s``, ``1.5s``, ``500ms``, ``0s``."""
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)
    if u < 10**9:
        for unit, scale in (("ns", 1), ("µs", 10**3), ("ms", 10**6)):
            if u < scale * 1000:
                return f"{sign}{u // scale}{_fraction(u % scale, len(str(scale)) - 1)}{unit}"
    seconds, frac = divmod(u, 10**9)
    out = f"{seconds % 60}{_fraction(frac, 9)}s"
    minutes = seconds // 60
    if minutes:
        out = f"{minutes % 60}m{out}"
        if minutes // 60:
            out = f"{minutes // 60}h{out}"
    return sign + out


def short_dur(text: str) -> str:
    """``shortDur`` (resource_docker_service_structures.go): ``Duration.String()``, then a trailing
    ``m0s`` and then ``h0m`` trimmed: ``60s`` -> ``1m``, ``3600s`` -> ``1h``, ``3605s`` -> ``1h0m5s``.
    Read stores every service duration this way; no duration has a DiffSuppressFunc."""
    out = go_duration_string(go_duration_ns(text))
    if out.endswith("m0s"):
        out = out[:-2]
    if out.endswith("h0m"):
        out = out[:-2]
    return out


def one_decimal(value: Any) -> str:
    """flattenServiceUpdateOrRollbackConfig: ``strconv.FormatFloat(float64(MaxFailureRatio), 'f', 1, 64)``
    of the float32 that createUpdateOrRollbackConfig parsed (``float32(strconv.ParseFloat(v, 64))``)."""
    as_float32 = struct.unpack("f", struct.pack("f", float(value)))[0]
    return f"{as_float32:.1f}"


def equivalent_float_ratio(old: Any, new: Any) -> bool:
    """validators.go ``suppressEquivalentFloatRatio``: both parse as floats and are equal."""
    try:
        return float(old) == float(new)
    except (TypeError, ValueError):
        return False


def canonical_base64(value: str) -> str:
    """resourceDockerConfigRead: ``base64.StdEncoding.EncodeToString(config.Spec.Data)`` of the bytes
    Create decoded with ``base64.StdEncoding.DecodeString``."""
    return base64.b64encode(base64.b64decode(value, validate=True)).decode()


# ----------------------------------------------------------------------------- image references


def _split_reference(image: str) -> tuple[str, str, str]:
    name, _, digest = image.partition("@")
    slash, colon = name.rfind("/"), name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest


def _familiar_name(name: str) -> str | None:
    """distribution/reference ParseNormalizedNamed then FamiliarName; None where parsing fails."""
    first, slash, rest = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        domain, remainder = "docker.io", name
    else:
        domain, remainder = first, rest
    if domain == "index.docker.io":
        domain = "docker.io"
    if remainder != remainder.lower() or not remainder:
        return None  # "repository name must be lowercase"
    if domain == "docker.io":
        if "/" not in remainder:
            return remainder
        if remainder.startswith("library/") and remainder.count("/") == 1:
            return remainder[len("library/") :]
        return remainder
    return f"{domain}/{remainder}"


def familiar_tagged(image: str) -> str:
    """What the provider's Docker client sends for a service image, on Create and on Update:
    ``imageWithTagString`` (moby client/service_create.go, service_update.go) is
    ``FamiliarString(TagNameOnly(ParseNormalizedNamed(image)))``: ``docker.io/library/nginx:1`` is
    stored as ``nginx:1`` and ``nginx`` as ``nginx:latest``; a reference that does not parse is kept."""
    name, tag, digest = _split_reference(image)
    familiar = _familiar_name(name)
    if familiar is None:
        return image
    if not tag and not digest:
        tag = "latest"
    return familiar + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def mock_digest(image: str) -> str:
    return "sha256:" + hashlib.sha256(image.encode()).hexdigest()


def pinned(image: str) -> str:
    """``imageWithDigestString`` (moby client/service_create.go): a reference that already carries a
    digest is kept as it is; any other gets the registry's digest appended, its tag kept."""
    tagged = familiar_tagged(image)
    return tagged if "@" in tagged else f"{tagged}@{mock_digest(tagged)}"


# What a registry answers for the (multi-arch) images in the mock: the manifest list's platforms.
MANIFEST_PLATFORMS = ({"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"})


# ----------------------------------------------------------------------------- sets


def _plain(value: Any) -> Any:
    """A value as SDKv2 compares it: zero values dropped, whole floats as ints."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = _plain(item)
            if item not in (None, "", 0, False, [], {}):
                out[key] = item
        return out
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _sdk_value(value: Any) -> Any:
    """SDKv2: an unset primitive and its zero value are the same."""
    plain = _plain(value)
    return None if plain in ("", 0, False, [], {}) else plain


def _with_defaults(value: Any, defaults: Mapping[str, Any], inner_sets: tuple[str, ...]) -> Any:
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for key, default in defaults.items():
        if isinstance(default, Mapping):
            if isinstance(out.get(key), dict):
                out[key] = _with_defaults(out[key], default, ())
        elif out.get(key) is None:
            out[key] = default
    for key in inner_sets:
        if isinstance(out.get(key), list):
            out[key] = sorted({json.dumps(_plain(item), sort_keys=True) for item in out[key]})
    return out


def same_set(defaults: Mapping[str, Any] | None = None, inner_sets: tuple[str, ...] = ()) -> Callable[[Any, Any], bool]:
    """A TypeSet compared as SDKv2 hashes it: element by element, each with the schema defaults the
    config reader fills in (schema.ConfigFieldReader.readPrimitive), duplicates collapsed."""

    def key(item: Any) -> str:
        return json.dumps(_plain(_with_defaults(item, defaults or {}, inner_sets)), sort_keys=True)

    def same(old: Any, new: Any) -> bool:
        if not isinstance(old, list) or not isinstance(new, list):
            return False
        return {key(item) for item in old} == {key(item) for item in new}

    return same


def _labels(labels: Any) -> list[dict[str, Any]]:
    """labelSetToMap then mapToLabelSet (helpers.go): a map by label name, so a repeated label keeps
    its last value."""
    mapped: dict[str, Any] = {}
    for item in labels or []:
        mapped[item.get("label")] = item.get("value")
    return [{"label": label, "value": value} for label, value in mapped.items()]


def _unique(items: Any) -> list[Any]:
    out: list[Any] = []
    for item in items or []:
        if item not in out:
            out.append(item)
    return out


# ----------------------------------------------------------------------------- service

_SECRET_FILE_DEFAULTS = {"fileUid": "0", "fileGid": "0", "fileMode": 0o444}
_NETWORK_INNER_SETS = ("aliases", "driverOpts")


def _container_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """createContainerSpec, the daemon's round trip, then flattenContainerSpec (which stores a
    string, list or map only when it is not empty, and ``read_only`` only when true)."""
    out: dict[str, Any] = {}
    for key in (
        "image",
        "labels",
        "commands",
        "args",
        "hostname",
        "env",
        "user",
        "dir",
        "groups",
        "stopSignal",
        "sysctl",
        "capAdds",
        "capDrops",
    ):
        if spec.get(key):
            out[key] = _labels(spec[key]) if key == "labels" else spec[key]
    privileges = spec.get("privileges")
    if privileges:
        out["privileges"] = _privileges(privileges)
    if spec.get("readOnly"):
        out["readOnly"] = True
    if spec.get("mounts"):
        out["mounts"] = [_mount(mount) for mount in spec["mounts"]]
    # createContainerSpec always sends StopGracePeriod (ParseDuration of "" is 0 when unset).
    out["stopGracePeriod"] = spec.get("stopGracePeriod") or "0s"
    # ...and always a HealthConfig, read back with every duration and the retries.
    health = spec.get("healthcheck") or {}
    out["healthcheck"] = {
        **({"tests": health["tests"]} if health.get("tests") else {}),
        "interval": health.get("interval") or "0s",
        "timeout": health.get("timeout") or "0s",
        "startPeriod": health.get("startPeriod") or "0s",
        "retries": health.get("retries") or 0,
    }
    if spec.get("hosts"):
        out["hosts"] = _unique(spec["hosts"])
    # ...and always a DNSConfig (flattenServiceDNSConfig keeps only non-empty lists).
    dns = spec.get("dnsConfig") or {}
    out["dnsConfig"] = {key: dns[key] for key in ("nameservers", "searches", "options") if dns.get(key)}
    for kind in ("secrets", "configs"):
        if spec.get(kind):
            out[kind] = [_file_reference(item, kind) for item in spec[kind]]
    # Isolation has the schema default "default", sent and read back as such.
    out["isolation"] = spec.get("isolation") or "default"
    # Init is sent as a *bool (false when unset) and read back when the client speaks API >= 1.37
    # (supportsServiceContainerInit: the negotiated or default version, 1.51 for docker v28.5.2).
    out["init"] = bool(spec.get("init"))
    return out


def _privileges(spec: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    credential = spec.get("credentialSpec")
    if credential is not None:
        # createContainerSpec writes ``registry`` into CredentialSpec.File (after ``file``): Read
        # stores the registry value as ``file`` and an empty ``registry``.
        out["credentialSpec"] = {"file": credential.get("registry") or "", "registry": ""}
    selinux = spec.get("seLinuxContext")
    if selinux is not None:
        out["seLinuxContext"] = {
            key: selinux.get(key) or ("" if key != "disable" else False)
            for key in ("disable", "user", "role", "type", "level")
        }
    return out


def _mount(spec: Mapping[str, Any]) -> dict[str, Any]:
    """flattenServiceMounts: target, source, type and read_only always; an options block when sent."""
    out: dict[str, Any] = {
        "target": spec.get("target"),
        "source": spec.get("source") or "",
        "type": spec.get("type"),
        "readOnly": bool(spec.get("readOnly")),
    }
    bind = spec.get("bindOptions")
    if bind is not None:
        out["bindOptions"] = {"propagation": bind.get("propagation") or "rprivate"}
    volume = spec.get("volumeOptions")
    if volume is not None:
        # The "driver_name" key is always in the block's map, so DriverConfig is always created and
        # driver_options always read back (maybe empty).
        out["volumeOptions"] = {
            "noCopy": bool(volume.get("noCopy")),
            "labels": _labels(volume.get("labels")),
            **({"driverName": volume["driverName"]} if volume.get("driverName") else {}),
            "driverOptions": dict(volume.get("driverOptions") or {}),
        }
    tmpfs = spec.get("tmpfsOptions")
    if tmpfs is not None:
        out["tmpfsOptions"] = {
            "sizeBytes": int(tmpfs.get("sizeBytes") or 0),
            "mode": int(tmpfs.get("mode") or 0) & 0o777,  # os.FileMode.Perm()
        }
    return out


def _file_reference(spec: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """flattenServiceSecrets / flattenServiceConfigs; createContainerSpec sends the schema defaults
    for the uid, gid ("0") and mode (0o444)."""
    id_key, name_key = ("secretId", "secretName") if kind == "secrets" else ("configId", "configName")
    out = {id_key: spec.get(id_key), "fileName": spec.get("fileName")}
    if spec.get(name_key):
        out[name_key] = spec[name_key]
    out["fileUid"] = spec.get("fileUid") or "0"
    out["fileGid"] = spec.get("fileGid") or "0"
    out["fileMode"] = int(spec["fileMode"]) if spec.get("fileMode") is not None else 0o444
    return out


def _task_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """createServiceTaskSpec (every block key is in the map d.Get returns, so resources, restart
    policy and placement are always sent), the daemon's round trip, then flattenTaskSpec."""
    out: dict[str, Any] = {"containerSpec": _container_spec(spec.get("containerSpec") or {})}
    resources = spec.get("resources") or {}
    out["resources"] = {}
    if resources.get("limits") is not None:
        limits = resources["limits"]
        out["resources"]["limits"] = {
            "nanoCpus": int(limits.get("nanoCpus") or 0),
            "memoryBytes": int(limits.get("memoryBytes") or 0),
        }
    if resources.get("reservation") is not None:
        reservation = resources["reservation"]
        out["resources"]["reservation"] = {
            "nanoCpus": int(reservation.get("nanoCpus") or 0),
            "memoryBytes": int(reservation.get("memoryBytes") or 0),
            **({"genericResources": reservation["genericResources"]} if reservation.get("genericResources") else {}),
        }
    out["restartPolicy"] = _restart_policy(spec.get("restartPolicy"))
    placement = spec.get("placement") or {}
    out["placement"] = {
        **{key: _unique(placement[key]) for key in ("constraints", "prefs", "platforms") if placement.get(key)},
        "maxReplicas": int(placement.get("maxReplicas") or 0),
    }
    out["forceUpdate"] = int(spec.get("forceUpdate") or 0)
    # ServiceFromGRPC sets Runtime "container" for every container task.
    out["runtime"] = spec.get("runtime") or "container"
    if spec.get("networksAdvanceds"):
        out["networksAdvanceds"] = [_network_attachment(item) for item in spec["networksAdvanceds"]]
    if spec.get("logDriver") is not None:
        driver = spec["logDriver"]
        out["logDriver"] = {"name": driver.get("name")}
        if driver.get("options"):
            out["logDriver"]["options"] = driver["options"]
    return out


def _restart_policy(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """createRestartPolicy sends Delay, MaxAttempts and Window whenever the block is set (zero when a
    field is unset); the daemon's restartPolicyToGRPC turns an empty condition into ``any``."""
    if spec is None:
        return {"condition": "any", "maxAttempts": 0}
    return {
        "condition": spec.get("condition") or "any",
        "delay": spec.get("delay") or "0s",
        "maxAttempts": int(spec.get("maxAttempts") or 0),
        "window": spec.get("window") or "0s",
    }


def _network_attachment(spec: Mapping[str, Any]) -> dict[str, Any]:
    """flattenTaskNetworksAdvanced: ``id`` is the attachment's Target, which the daemon's
    populateNetworkID resolves to the network's id; the deprecated ``name`` is never read back."""
    out: dict[str, Any] = {"id": spec.get("id") or f"id-of-{spec.get('name')}"}
    if spec.get("aliases"):
        out["aliases"] = _unique(spec["aliases"])
    out["driverOpts"] = _unique(spec.get("driverOpts"))
    return out


def _mode(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """createServiceMode then flattenServiceMode; with no mode the daemon (ServiceSpecToGRPC) runs one
    replica."""
    if spec and spec.get("global"):
        return {"global": True}
    replicated = (spec or {}).get("replicated")
    replicas = 1
    if replicated is not None and replicated.get("replicas") is not None:
        replicas = int(replicated["replicas"])
    return {"replicated": {"replicas": replicas}, "global": False}


_UPDATE_DEFAULTS = {
    "parallelism": 1,
    "delay": "0s",
    "failureAction": "pause",
    "monitor": "5s",
    "maxFailureRatio": "0.0",
    "order": "stop-first",
}


def _update_config(spec: Mapping[str, Any]) -> dict[str, Any]:
    """createUpdateOrRollbackConfig sends every field with its schema default; flattenServiceUpdateOrRollbackConfig."""
    return {key: spec[key] if spec.get(key) is not None else default for key, default in _UPDATE_DEFAULTS.items()}


def _endpoint(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """createServiceEndpointSpec always sends an EndpointSpec; the daemon resolves an empty mode to
    ``vip`` (ServiceSpecToGRPC); Read takes ``service.Endpoint`` (flattenServiceEndpoint): the ports
    as the swarm allocator holds them, in the spec's order on first allocation, an ingress port
    without a published port given one from 30000 up (portallocator.go serviceAllocatePorts)."""
    spec = spec or {}
    ports = []
    dynamic = 30000
    for port in spec.get("ports") or []:
        mode = port.get("publishMode") or "ingress"
        published = int(port.get("publishedPort") or 0)
        if not published and mode == "ingress":
            published, dynamic = dynamic, dynamic + 1
        ports.append(
            {
                "name": port.get("name") or "",
                "protocol": port.get("protocol") or "tcp",
                "targetPort": int(port.get("targetPort") or 0),
                "publishedPort": published,
                "publishMode": mode,
            }
        )
    return {"mode": spec.get("mode") or "vip", "ports": ports}


def _service_read(state: dict[str, Any]) -> dict[str, Any]:
    """resourceDockerServiceReadRefreshFunc: name, labels, task_spec, mode, update_config,
    rollback_config and endpoint_spec from the service; ``auth`` and ``converge_config`` are never
    read, so the state keeps what was planned (with the schema defaults)."""
    out = dict(state)
    out["labels"] = _labels(state.get("labels"))
    out["taskSpec"] = _task_spec(state.get("taskSpec") or {})
    out["mode"] = _mode(state.get("mode"))
    for key in ("updateConfig", "rollbackConfig"):
        if state.get(key) is not None:
            out[key] = _update_config(state[key])
        else:
            out.pop(key, None)
    out["endpointSpec"] = _endpoint(state.get("endpointSpec"))
    converge = state.get("convergeConfig")
    if converge is not None:
        out["convergeConfig"] = {"delay": converge.get("delay") or "7s", "timeout": converge.get("timeout") or "3m"}
    return out


def _service_on_create(state: dict[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """resourceDockerServiceCreate sets ``QueryRegistry = true``: the provider's Docker client
    (resolveContainerSpecImage in moby client/service_create.go) asks the registry for the image and,
    when it answers, pins the image to its digest (a reference already carrying one is kept) and,
    when the manifest names platforms, REPLACES ``placement.platforms`` with them (platforms the
    service sets are overwritten, not kept). resourceDockerServiceUpdate never sets QueryRegistry.
    An image built on the host is in no registry: the lookup fails (a warning) and nothing changes."""
    task = state.get("taskSpec") or {}
    container = task.get("containerSpec") or {}
    image = container.get("image")
    if image and image not in context.get("built_images", ()):
        container["image"] = pinned(image)
        placement = task.get("placement") or {}
        placement["platforms"] = [dict(platform) for platform in MANIFEST_PLATFORMS]
        task["placement"] = placement
    return state


def _explicit_name(inputs: Mapping[str, Any]) -> bool:
    """An autonamed ``name`` (provider/resources.go SetAutonaming) set by the program: the bridge
    replaces delete-first (pkg/tfbridge/schema.go nameRequiresDeleteBeforeReplace)."""
    return bool(inputs.get("name"))


_DURATION = f"{STRUCTURES} shortDur"
_UPDATE_FLATTEN = f"{STRUCTURES} flattenServiceUpdateOrRollbackConfig"


def _update_rules(block: str) -> tuple[Rule, ...]:
    return (
        Rule(f"{block}.parallelism", f"{SERVICE_SCHEMA} {block} (Default 1)", default=1),
        Rule(f"{block}.delay", f"{_DURATION}; {SERVICE_SCHEMA} (Default 0s)", read=short_dur, default="0s"),
        Rule(f"{block}.failureAction", f"{SERVICE_SCHEMA} (Default pause)", default="pause"),
        Rule(f"{block}.monitor", f"{_DURATION}; {SERVICE_SCHEMA} (Default 5s)", read=short_dur, default="5s"),
        Rule(
            f"{block}.maxFailureRatio",
            f"{_UPDATE_FLATTEN} FormatFloat(..., 'f', 1); {VALIDATORS} suppressEquivalentFloatRatio",
            read=one_decimal,
            default="0.0",
            suppress=equivalent_float_ratio,
        ),
        Rule(f"{block}.order", f"{SERVICE_SCHEMA} (Default stop-first)", default="stop-first"),
    )


CS = "taskSpec.containerSpec"

SERVICE = ResourceModel(
    type=SERVICE_TYPE,
    source=SERVICE_SCHEMA,
    rules=(
        Rule("name", f"{SERVICE_SCHEMA} name (Required, ForceNew)", force_new=True),
        Rule("auth", f"{SERVICE_SCHEMA} auth (ForceNew, every field ForceNew; never read back)", force_new=True),
        Rule(
            "labels",
            f"{SERVICE_SCHEMA} labels (TypeSet, Optional+Computed, labelSchemaUpdatable)",
            computed=True,
            unordered=True,
            suppress=same_set(),
        ),
        Rule(
            f"{CS}.image",
            f"{MOBY_CLIENT} imageWithTagString (ServiceCreate and ServiceUpdate); {SERVICE_SCHEMA} image (no suppress)",
            read=familiar_tagged,
        ),
        Rule(
            f"{CS}.labels",
            f"{SERVICE_SCHEMA} container_spec.labels (TypeSet of labelSchema: label, value ForceNew)",
            unordered=True,
            force_new=True,
            suppress=same_set(),
        ),
        Rule(
            f"{CS}.mounts",
            f"{SERVICE_SCHEMA} mounts (TypeSet); {STRUCTURES} flattenServiceMounts",
            unordered=True,
            suppress=same_set({"bindOptions": {"propagation": "rprivate"}}),
        ),
        Rule(
            f"{CS}.stopGracePeriod",
            f"{_DURATION}; {SERVICE_SCHEMA} stop_grace_period (Optional+Computed)",
            read=short_dur,
            computed=True,
        ),
        Rule(f"{CS}.healthcheck", f"{SERVICE_SCHEMA} healthcheck (Optional+Computed)", computed=True),
        *(
            Rule(f"{CS}.healthcheck.{key}", f"{_DURATION}; {SERVICE_SCHEMA} (Default 0s)", read=short_dur, default="0s")
            for key in ("interval", "timeout", "startPeriod")
        ),
        Rule(f"{CS}.healthcheck.retries", f"{SERVICE_SCHEMA} healthcheck.retries (Default 0)", default=0),
        Rule(
            f"{CS}.hosts",
            f"{SERVICE_SCHEMA} hosts (TypeSet, ForceNew)",
            unordered=True,
            force_new=True,
            suppress=same_set(),
        ),
        Rule(f"{CS}.dnsConfig", f"{SERVICE_SCHEMA} dns_config (Optional+Computed)", computed=True),
        Rule(
            f"{CS}.secrets",
            f"{SERVICE_SCHEMA} secrets (TypeSet; file_uid, file_gid Default 0, file_mode Default 0o444)",
            unordered=True,
            suppress=same_set(_SECRET_FILE_DEFAULTS),
        ),
        Rule(
            f"{CS}.configs",
            f"{SERVICE_SCHEMA} configs (TypeSet; file_uid, file_gid Default 0, file_mode Default 0o444)",
            unordered=True,
            suppress=same_set(_SECRET_FILE_DEFAULTS),
        ),
        Rule(f"{CS}.isolation", f"{SERVICE_SCHEMA} isolation (Default default)", default="default"),
        Rule(f"{CS}.sysctl", f"{SERVICE_SCHEMA} sysctl (ForceNew)", force_new=True),
        Rule(f"{CS}.init", f"{SERVICE_SCHEMA} init (Optional+Computed)", computed=True),
        Rule("taskSpec.resources", f"{SERVICE_SCHEMA} resources (Optional+Computed)", computed=True),
        Rule("taskSpec.restartPolicy", f"{SERVICE_SCHEMA} restart_policy (Optional+Computed)", computed=True),
        Rule("taskSpec.restartPolicy.delay", f"{_DURATION}; {STRUCTURES} createRestartPolicy", read=short_dur),
        Rule("taskSpec.restartPolicy.window", f"{_DURATION}; {STRUCTURES} createRestartPolicy", read=short_dur),
        Rule("taskSpec.placement", f"{SERVICE_SCHEMA} placement (Optional+Computed)", computed=True),
        Rule("taskSpec.placement.constraints", f"{SERVICE_SCHEMA} constraints (TypeSet)", unordered=True),
        Rule("taskSpec.placement.prefs", f"{SERVICE_SCHEMA} prefs (TypeSet)", unordered=True),
        Rule(
            "taskSpec.placement.platforms",
            f"{SERVICE_SCHEMA} platforms (TypeSet, Optional, not Computed)",
            unordered=True,
            suppress=same_set(),
        ),
        Rule("taskSpec.forceUpdate", f"{SERVICE_SCHEMA} force_update (Optional+Computed)", computed=True),
        Rule("taskSpec.runtime", f"{SERVICE_SCHEMA} runtime (Optional+Computed); {MOBY_CONVERT}", computed=True),
        Rule(
            "taskSpec.networksAdvanceds",
            f"{SERVICE_SCHEMA} networks_advanced (TypeSet; id, aliases, driver_opts ForceNew); "
            f"{STRUCTURES} flattenTaskNetworksAdvanced",
            unordered=True,
            force_new=True,
            suppress=same_set(inner_sets=_NETWORK_INNER_SETS),
        ),
        Rule(
            "mode",
            f"{SERVICE_SCHEMA} mode (Optional+Computed; its ForceNew counts the block, which Read always sets)",
            computed=True,
        ),
        Rule("mode.replicated", f"{SERVICE_SCHEMA} mode.replicated (Optional+Computed)", computed=True),
        Rule("mode.replicated.replicas", f"{SERVICE_SCHEMA} replicas (Default 1)", default=1),
        Rule("mode.global", f"{SERVICE_SCHEMA} global (Default false)", default=False),
        *_update_rules("updateConfig"),
        *_update_rules("rollbackConfig"),
        Rule("endpointSpec", f"{SERVICE_SCHEMA} endpoint_spec (Optional+Computed)", computed=True),
        Rule("endpointSpec.mode", f"{SERVICE_SCHEMA} endpoint_spec.mode (Optional+Computed)", computed=True),
        Rule("endpointSpec.ports.*.protocol", f"{SERVICE_SCHEMA} ports.protocol (Default tcp)", default="tcp"),
        Rule(
            "endpointSpec.ports.*.publishMode",
            f"{SERVICE_SCHEMA} ports.publish_mode (Default ingress)",
            default="ingress",
        ),
        Rule(
            "endpointSpec.ports.*.publishedPort",
            f"{SERVICE_SCHEMA} ports.published_port (Optional+Computed); {SWARMKIT_PORTS}",
            computed=True,
        ),
        Rule("convergeConfig.delay", f"{SERVICE_SCHEMA} converge_config.delay (Default 7s; not read)", default="7s"),
        Rule("convergeConfig.timeout", f"{SERVICE_SCHEMA} converge_config.timeout (Default 3m)", default="3m"),
    ),
    read_back=_service_read,
    on_create=_service_on_create,
    delete_before_replace=_explicit_name,
    autonamed=("name",),
)

# ----------------------------------------------------------------------------- secret, config


SECRET = ResourceModel(
    type=SECRET_TYPE,
    source=f"{SECRET_SRC} (name, data, labels all ForceNew; no Update; Read sets only name)",
    rules=(Rule("labels", f"{SECRET_SRC} labels (TypeSet of labelSchema)", unordered=True, suppress=same_set()),),
    replace_on_change=True,
    autonamed=("name",),
    delete_before_replace=_explicit_name,
)


def _config_read(state: dict[str, Any]) -> dict[str, Any]:
    """resourceDockerConfigRead: name, labels, and ``data`` re-encoded (or ``data_raw`` when set)."""
    out = dict(state)
    out["labels"] = _labels(state.get("labels"))
    return out


CONFIG = ResourceModel(
    type=CONFIG_TYPE,
    source=f"{CONFIG_SRC} (name, data, data_raw, labels all ForceNew; no Update)",
    rules=(
        Rule("data", f"{CONFIG_SRC} resourceDockerConfigRead (StdEncoding of the decoded data)", read=canonical_base64),
        Rule("labels", f"{CONFIG_SRC} labels (TypeSet of labelSchema)", unordered=True, suppress=same_set()),
    ),
    read_back=_config_read,
    replace_on_change=True,
    autonamed=("name",),
    delete_before_replace=_explicit_name,
)

# ----------------------------------------------------------------------------- volume


def _volume_read(state: dict[str, Any]) -> dict[str, Any]:
    """resourceDockerVolumeRead: name, labels, driver (``local`` when none was asked for), driver
    options as the daemon keeps them, mountpoint."""
    out = dict(state)
    out["labels"] = _labels(state.get("labels"))
    out["driver"] = state.get("driver") or "local"
    out["driverOpts"] = dict(state.get("driverOpts") or {})
    return out


def _volume_outputs(state: dict[str, Any], name: str) -> dict[str, Any]:
    return {"mountpoint": f"/var/lib/docker/volumes/{state.get('name')}/_data"}


VOLUME = ResourceModel(
    type=VOLUME_TYPE,
    source=VOLUME_SRC,
    rules=(
        Rule("name", f"{VOLUME_SRC} name (Optional+Computed, ForceNew)", computed=True, force_new=True),
        Rule(
            "labels",
            f"{VOLUME_SRC} labels (TypeSet of labelSchema, ForceNew)",
            force_new=True,
            unordered=True,
            suppress=same_set(),
        ),
        Rule("driver", f"{VOLUME_SRC} driver (Optional+Computed, ForceNew)", computed=True, force_new=True),
        Rule("driverOpts", f"{VOLUME_SRC} driver_opts (ForceNew)", force_new=True),
        *(
            Rule(f"cluster.{key}", f"{VOLUME_SRC} cluster.{key} (ForceNew)", force_new=True)
            for key in (
                "scope",
                "sharing",
                "type",
                "group",
                "topologyPreferred",
                "topologyRequired",
                "requiredBytes",
                "limitBytes",
            )
        ),
        Rule("cluster.id", f"{VOLUME_SRC} cluster.id (Computed)", computed=True),
    ),
    read_back=_volume_read,
    outputs=_volume_outputs,
    output_names=("mountpoint",),
    autonamed=("name",),
    delete_before_replace=_explicit_name,
)

# ----------------------------------------------------------------------------- network

OVERLAY_VXLAN_OPTION = "com.docker.network.driver.overlay.vxlanid_list"


def _network_read(state: dict[str, Any]) -> dict[str, Any]:
    """resourceDockerNetworkReadRefreshFunc sets every attribute from the inspect: the daemon's own
    options (an overlay network gets its VXLAN id) and IPAM config (an allocated subnet), the
    driver, the flags; ``scope`` is ``swarm`` for an overlay network (never ``overlay``, so the
    "options not exposed yet" wait never triggers)."""
    out = dict(state)
    out["labels"] = _labels(state.get("labels"))
    driver = state.get("driver") or "bridge"
    out["driver"] = driver
    options = dict(state.get("options") or {})
    if driver == "overlay":
        options.setdefault(OVERLAY_VXLAN_OPTION, "4097")
    out["options"] = options
    out["internal"] = bool(state.get("internal"))
    out["attachable"] = bool(state.get("attachable"))
    out["ingress"] = bool(state.get("ingress"))
    out["ipv6"] = bool(state.get("ipv6"))
    out["ipamDriver"] = state.get("ipamDriver") or "default"
    out["ipamOptions"] = dict(state.get("ipamOptions") or {})
    out["ipamConfigs"] = state.get("ipamConfigs") or [{"subnet": "10.0.1.0/24", "gateway": "10.0.1.1"}]
    return out


def _network_outputs(state: dict[str, Any], name: str) -> dict[str, Any]:
    return {"scope": "swarm" if state.get("driver") == "overlay" else "local"}


NETWORK = ResourceModel(
    type=NETWORK_TYPE,
    source=f"{NETWORK_SCHEMA} (every argument ForceNew; no Update)",
    rules=(
        Rule("labels", f"{NETWORK_SCHEMA} labels (TypeSet of labelSchema)", unordered=True, suppress=same_set()),
        Rule("driver", f"{NETWORK_SCHEMA} driver (Optional+Computed)", computed=True),
        Rule("options", f"{NETWORK_SCHEMA} options (Optional+Computed)", computed=True),
        Rule("internal", f"{NETWORK_SCHEMA} internal (Optional+Computed)", computed=True),
        Rule("ipamDriver", f"{NETWORK_SCHEMA} ipam_driver (Default default)", default="default"),
        Rule(
            "ipamConfigs",
            f"{NETWORK_SCHEMA} ipam_config (TypeSet, Optional+Computed); {P}/resource_docker_network_structures.go",
            computed=True,
            unordered=True,
            suppress=same_set(),
        ),
    ),
    read_back=_network_read,
    outputs=_network_outputs,
    output_names=("scope",),
    replace_on_change=True,
    autonamed=("name",),
    delete_before_replace=_explicit_name,
)

# ----------------------------------------------------------------------------- remote image

_BUILD_DEFAULTS = {"dockerfile": "Dockerfile", "remove": True, "useLegacyBuilder": False}


def _image_read(state: dict[str, Any]) -> dict[str, Any]:
    """resourceDockerImageRead sets only the id, image_id and repo_digest: every argument keeps its
    planned value, the build block with its schema defaults."""
    out = dict(state)
    if state.get("build") is not None:
        out["build"] = {**_BUILD_DEFAULTS, **{k: v for k, v in state["build"].items() if v is not None}}
    return out


def _image_outputs(state: dict[str, Any], name: str) -> dict[str, Any]:
    """determineRepoDigest (data_source_docker_image.go): the image's RepoDigests entry; an image built
    on the host and never pushed has none (``""``)."""
    image = str(state.get("name"))
    repository = _split_reference(image)[0]
    return {
        "imageId": mock_digest(f"image-id:{image}"),
        "repoDigest": "" if state.get("build") else f"{repository}@{mock_digest(image)}",
    }


REMOTE_IMAGE = ResourceModel(
    type=REMOTE_IMAGE_TYPE,
    source=IMAGE_SCHEMA,
    rules=(
        Rule("name", f"{IMAGE_SCHEMA} name (Required, ForceNew; not autonamed: Fields[name] set)", force_new=True),
        Rule(
            "build",
            f"{IMAGE_SCHEMA} build (TypeSet MaxItems 1 holding ForceNew context: any change replaces); "
            f"{IMAGE_FUNCS} (no hash of the context's files: only the arguments trigger a rebuild)",
            force_new=True,
        ),
        Rule("build.dockerfile", f"{IMAGE_SCHEMA} build.dockerfile (Default Dockerfile)", default="Dockerfile"),
        Rule("build.remove", f"{IMAGE_SCHEMA} build.remove (Default true)", default=True),
        Rule("pullTriggers", f"{IMAGE_SCHEMA} pull_triggers (TypeSet, ForceNew)", force_new=True, unordered=True),
        Rule("triggers", f"{IMAGE_SCHEMA} triggers (ForceNew)", force_new=True),
        Rule("platform", f'{IMAGE_SCHEMA} platform (Default "", ForceNew)', force_new=True),
    ),
    read_back=_image_read,
    outputs=_image_outputs,
    output_names=("imageId", "repoDigest"),
)

MODELS = {m.type: m for m in (SERVICE, SECRET, CONFIG, VOLUME, NETWORK, REMOTE_IMAGE)}


def _registry_image(args: dict[str, Any]) -> dict[str, Any]:
    """dataSourceDockerRegistryImageRead: the digest of the manifest the tag names (HEAD, then GET);
    the id is that digest too. Outputs: name, sha256Digest, insecureSkipVerify (Default false), id."""
    name = args["name"]
    digest = mock_digest(familiar_tagged(name))
    return {
        "name": name,
        "sha256Digest": digest,
        "insecureSkipVerify": bool(args.get("insecureSkipVerify", False)),
        "id": digest,
    }


CALLS = {"docker:index/getRegistryImage:getRegistryImage": _registry_image}


# ----------------------------------------------------------------------------- coverage

AS_SENT = "stored as sent"
REFORMATTED = "stored in another form"
IN_A_SET = "compared as a set"
NOT_READ = "not read back"
CREATE_ONLY = "sent on create only"
"""Read stores it in another form the program cannot send (the daemon adds to it), so the program
registers it with ``ignore_changes``: the coverage check requires that option."""

_READ = f"{SERVICE_FUNCS} resourceDockerServiceReadRefreshFunc"
_CONTAINER = f"{STRUCTURES} flattenContainerSpec"
_SERVICE_PATHS: dict[str, tuple[str, str]] = {
    "name": (AS_SENT, _READ),
    "labels.*.label": (IN_A_SET, f"{HELPERS} mapToLabelSet"),
    "labels.*.value": (IN_A_SET, f"{HELPERS} mapToLabelSet"),
    "mode.global": (AS_SENT, f"{STRUCTURES} flattenServiceMode"),
    "mode.replicated.replicas": (AS_SENT, f"{STRUCTURES} flattenReplicated"),
    "convergeConfig.delay": (NOT_READ, _READ),
    "convergeConfig.timeout": (NOT_READ, _READ),
    "endpointSpec.mode": (AS_SENT, f"{STRUCTURES} flattenServiceEndpoint"),
    **{
        f"endpointSpec.ports.*.{key}": (AS_SENT, f"{STRUCTURES} flattenServicePorts (spec order: {SWARMKIT_PORTS})")
        for key in ("name", "protocol", "publishMode", "publishedPort", "targetPort")
    },
    **{
        f"{block}.{key}": (REFORMATTED if key in ("delay", "monitor", "maxFailureRatio") else AS_SENT, _UPDATE_FLATTEN)
        for block in ("updateConfig", "rollbackConfig")
        for key in ("delay", "failureAction", "maxFailureRatio", "monitor", "order", "parallelism")
    },
    f"{CS}.image": (REFORMATTED, f"{MOBY_CLIENT} imageWithTagString; pinned by Create (resolveContainerSpecImage)"),
    **{
        f"{CS}.{key}": (AS_SENT, _CONTAINER)
        for key in (
            "args.*",
            "commands.*",
            "capAdds.*",
            "capDrops.*",
            "env",
            "user",
            "stopSignal",
            "readOnly",
            "init",
            "hostname",
        )
    },
    f"{CS}.stopGracePeriod": (REFORMATTED, f"{_CONTAINER} shortDur"),
    f"{CS}.healthcheck.tests.*": (AS_SENT, f"{STRUCTURES} flattenServiceHealthcheck"),
    f"{CS}.healthcheck.retries": (AS_SENT, f"{STRUCTURES} flattenServiceHealthcheck"),
    **{
        f"{CS}.healthcheck.{key}": (REFORMATTED, f"{STRUCTURES} flattenServiceHealthcheck shortDur")
        for key in ("interval", "timeout", "startPeriod")
    },
    **{
        f"{CS}.mounts.*.{key}": (IN_A_SET, f"{STRUCTURES} flattenServiceMounts")
        for key in ("target", "source", "type", "readOnly", "bindOptions.propagation", "tmpfsOptions.sizeBytes")
    },
    **{
        f"{CS}.{kind}.*.{key}": (IN_A_SET, f"{STRUCTURES} flattenService{kind.capitalize()}")
        for kind, keys in (
            ("secrets", ("secretId", "secretName", "fileName", "fileMode")),
            ("configs", ("configId", "configName", "fileName", "fileMode")),
        )
        for key in keys
    },
    **{
        f"taskSpec.resources.{block}.{key}": (AS_SENT, f"{STRUCTURES} flattenTaskResources")
        for block in ("limits", "reservation")
        for key in ("memoryBytes", "nanoCpus")
    },
    "taskSpec.restartPolicy.condition": (AS_SENT, f"{STRUCTURES} flattenTaskRestartPolicy"),
    "taskSpec.restartPolicy.maxAttempts": (AS_SENT, f"{STRUCTURES} flattenTaskRestartPolicy"),
    "taskSpec.restartPolicy.delay": (REFORMATTED, f"{STRUCTURES} flattenTaskRestartPolicy shortDur"),
    "taskSpec.restartPolicy.window": (REFORMATTED, f"{STRUCTURES} flattenTaskRestartPolicy shortDur"),
    "taskSpec.placement.constraints.*": (IN_A_SET, f"{STRUCTURES} flattenTaskPlacement"),
    "taskSpec.placement.prefs.*": (IN_A_SET, f"{STRUCTURES} flattenTaskPlacement, flattenPlacementPrefs"),
    "taskSpec.placement.maxReplicas": (AS_SENT, f"{STRUCTURES} flattenTaskPlacement (MaxReplicas)"),
    "taskSpec.networksAdvanceds.*.id": (IN_A_SET, f"{STRUCTURES} flattenTaskNetworksAdvanced"),
    "taskSpec.networksAdvanceds.*.aliases.*": (IN_A_SET, f"{STRUCTURES} flattenTaskNetworksAdvanced"),
    "taskSpec.logDriver.name": (AS_SENT, f"{STRUCTURES} flattenTaskLogDriver"),
    "taskSpec.logDriver.options": (AS_SENT, f"{STRUCTURES} flattenTaskLogDriver"),
}

SENT_PATHS: dict[str, dict[str, tuple[str, str]]] = {
    SERVICE_TYPE: _SERVICE_PATHS,
    SECRET_TYPE: {
        "data": (NOT_READ, f"{SECRET_SRC} resourceDockerSecretRead (the API never returns secret data)"),
        "labels.*.label": (NOT_READ, f"{SECRET_SRC} resourceDockerSecretRead"),
        "labels.*.value": (NOT_READ, f"{SECRET_SRC} resourceDockerSecretRead"),
    },
    CONFIG_TYPE: {
        "data": (REFORMATTED, f"{CONFIG_SRC} resourceDockerConfigRead"),
        "labels.*.label": (IN_A_SET, f"{CONFIG_SRC} resourceDockerConfigRead"),
        "labels.*.value": (IN_A_SET, f"{CONFIG_SRC} resourceDockerConfigRead"),
    },
    VOLUME_TYPE: {
        "name": (AS_SENT, f"{VOLUME_SRC} resourceDockerVolumeRead"),
        "driver": (AS_SENT, f"{VOLUME_SRC} resourceDockerVolumeRead"),
        "driverOpts": (AS_SENT, f"{VOLUME_SRC} resourceDockerVolumeRead (volume.Options)"),
        "labels.*.label": (IN_A_SET, f"{VOLUME_SRC} resourceDockerVolumeRead"),
        "labels.*.value": (IN_A_SET, f"{VOLUME_SRC} resourceDockerVolumeRead"),
    },
    NETWORK_TYPE: {
        **{
            key: (AS_SENT, f"{NETWORK_FUNCS} resourceDockerNetworkReadRefreshFunc")
            for key in ("name", "driver", "internal", "attachable")
        },
        "labels.*.label": (IN_A_SET, f"{NETWORK_FUNCS} resourceDockerNetworkReadRefreshFunc"),
        "labels.*.value": (IN_A_SET, f"{NETWORK_FUNCS} resourceDockerNetworkReadRefreshFunc"),
        # Read stores the daemon's options: the sent ones beside the VXLAN id swarm adds (the program
        # ignores later changes: components/networks.py IGNORED).
        "options": (
            CREATE_ONLY,
            f"{NETWORK_FUNCS} resourceDockerNetworkReadRefreshFunc (retNetwork.Options, with the VXLAN id added)",
        ),
    },
    REMOTE_IMAGE_TYPE: {
        key: (NOT_READ, f"{IMAGE_FUNCS} resourceDockerImageRead (sets only image_id, repo_digest)")
        for key in (
            "name",
            "keepLocally",
            "build.context",
            "build.dockerfile",
            "build.buildArgs",
            "build.useLegacyBuilder",
        )
    },
}
"""Every property path the program sends to a docker resource (``*``: any list item), classified
from the provider's Read: stored as sent, stored in another form (the model has a ``read`` for it),
compared as a set (the model's rule is unordered), or never read back (the state keeps the plan)."""

MAP_PATHS: dict[str, tuple[str, ...]] = {
    SERVICE_TYPE: (
        f"{CS}.env",
        f"{CS}.sysctl",
        f"{CS}.mounts.*.volumeOptions.driverOptions",
        "taskSpec.logDriver.options",
    ),
    VOLUME_TYPE: ("driverOpts",),
    NETWORK_TYPE: ("options", "ipamOptions", "ipamConfigs.*.auxAddress"),
    REMOTE_IMAGE_TYPE: ("build.buildArgs", "build.labels", "build.label", "triggers"),
}
"""Terraform maps: their keys are data, not properties."""


def _walk(
    value: Any, path: tuple[str | int, ...], maps: tuple[str, ...]
) -> Iterator[tuple[str, tuple[str | int, ...], Any]]:
    pattern = ".".join("*" if isinstance(part, int) else part for part in path)
    if isinstance(value, dict) and value and pattern not in maps:
        for key, item in value.items():
            yield from _walk(item, (*path, key), maps)
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from _walk(item, (*path, index), maps)
    elif value is not None and path:
        yield pattern, path, value


def sent_values(type_: str, inputs: Mapping[str, Any]) -> list[tuple[str, tuple[str | int, ...], Any]]:
    """Every leaf the program sends: (pattern, concrete path, value); a map counts as one leaf."""
    return list(_walk(dict(inputs), (), MAP_PATHS.get(type_, ())))


def _at(value: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        if isinstance(part, int):
            value = value[part] if isinstance(value, list) and part < len(value) else None
        else:
            value = value.get(part) if isinstance(value, dict) else None
    return value


def coverage_problems(resources: Any) -> list[str]:
    """What the model does not account for in these registrations (tools/mockrun.Registered):
    a sent path missing from SENT_PATHS, a path read back in another form without a ``read`` rule or
    sent in a form Read would change, a set without an unordered rule, or a path the table calls
    stored-as-sent that the model's state does not keep."""
    problems = []
    for resource in resources:
        table = SENT_PATHS.get(resource.type)
        if table is None:
            continue
        model = MODELS[resource.type]
        stored = model.state(resource.inputs, resource.name)
        for pattern, path, value in sent_values(resource.type, resource.inputs):
            where = f"{resource.type} {resource.name}: {pattern}"
            if pattern not in table:
                problems.append(f"{where}: not classified in tools/readback/docker.py SENT_PATHS")
                continue
            how = table[pattern][0]
            parts = tuple(pattern.split("."))
            if how == REFORMATTED:
                rule = model.rule_for(parts)
                if rule is None or rule.read is None:
                    problems.append(f"{where}: read back in another form but the model has no read rule")
                elif _sdk_value(rule.read(value)) != _sdk_value(value):
                    problems.append(f"{where}: sent as {value!r}, read back as {rule.read(value)!r}: a perpetual diff")
            elif how == CREATE_ONLY:
                if pattern.split(".")[0] not in getattr(resource, "ignore_changes", []):
                    problems.append(f"{where}: {how}, but registered without ignore_changes on it: a perpetual diff")
            elif how == IN_A_SET:
                prefixes = [parts[:cut] for cut in range(len(parts), 0, -1)]
                if not any((rule := model.rule_for(prefix)) is not None and rule.unordered for prefix in prefixes):
                    problems.append(f"{where}: inside a Terraform set but the model has no unordered rule")
            elif _sdk_value(_at(stored, path)) != _sdk_value(value):
                problems.append(f"{where}: {how}, yet the model stores {_at(stored, path)!r} for {value!r}")
    return problems
