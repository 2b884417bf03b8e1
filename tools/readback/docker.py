"""kreuzwerker/terraform-provider-docker v4.5.0, as bundled by pulumi-docker 5.2.0.

Sources (internal/provider/): resource_docker_service.go (schema), resource_docker_service_funcs.go
(Create/Read/Update), resource_docker_service_structures.go (flatten*: what Read stores),
resource_docker_secret.go, resource_docker_config.go, resource_docker_volume.go,
resource_docker_network.go, resource_docker_registry_image.go / resource_docker_remote_image.go,
data_source_docker_registry_image.go.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from tools.readback.model import ResourceModel, Rule

V = "kreuzwerker/terraform-provider-docker v4.5.0"
STRUCTURES = f"{V} internal/provider/resource_docker_service_structures.go"
SERVICE_SCHEMA = f"{V} internal/provider/resource_docker_service.go"
SERVICE_FUNCS = f"{V} internal/provider/resource_docker_service_funcs.go"

_GO_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def go_seconds(text: str) -> int:
    found = _GO_DURATION.fullmatch(text)
    if not found or not text:
        raise ValueError(f"not a duration the provider parses: {text!r}")
    hours, minutes, seconds = (int(part or 0) for part in found.groups())
    return hours * 3600 + minutes * 60 + seconds


def short_dur(text: str) -> str:
    """``shortDur`` (resource_docker_service_structures.go): Go's Duration.String, then ``m0s`` and
    ``h0m`` trimmed. Read stores every service duration this way."""
    total = go_seconds(text)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        out = f"{hours}h{minutes}m{seconds}s"
    elif minutes:
        out = f"{minutes}m{seconds}s"
    else:
        out = f"{seconds}s"
    if out.endswith("m0s"):
        out = out[:-2]
    if out.endswith("h0m"):
        out = out[:-2]
    return out


def one_decimal(value: Any) -> str:
    """flattenServiceUpdateOrRollbackConfig: ``strconv.FormatFloat(v, 'f', 1, 64)``."""
    return f"{float(value):.1f}"


def mock_digest(image: str) -> str:
    return "sha256:" + hashlib.sha256(image.encode()).hexdigest()


def pinned(image: str) -> str:
    """What a registry resolves a tag to (client ServiceCreate with QueryRegistry: imageWithDigestString)."""
    return image if "@sha256:" in image else f"{image}@{mock_digest(image)}"


def _service_on_create(state: dict[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """Create passes QueryRegistry=true (resource_docker_service_funcs.go, resourceDockerServiceCreate):
    the daemon's client resolves the image to tag@digest and, when the service names no platforms,
    fills placement.platforms from the manifest list. Update never does either."""
    container = state.get("taskSpec", {}).get("containerSpec", {})
    image = container.get("image")
    # An image built on the host is in no registry: the lookup fails and the image stays as sent.
    if image and image not in context.get("built_images", ()):
        container["image"] = pinned(image)
        placement = state["taskSpec"].setdefault("placement", {}) or {}
        if not placement.get("platforms"):
            placement["platforms"] = [
                {"architecture": "amd64", "os": "linux"},
                {"architecture": "arm64", "os": "linux"},
            ]
        state["taskSpec"]["placement"] = placement
    return state


DURATION_PATHS = (
    "taskSpec.containerSpec.healthcheck.interval",
    "taskSpec.containerSpec.healthcheck.timeout",
    "taskSpec.containerSpec.healthcheck.startPeriod",
    "taskSpec.containerSpec.stopGracePeriod",
    "taskSpec.restartPolicy.delay",
    "taskSpec.restartPolicy.window",
    "updateConfig.delay",
    "updateConfig.monitor",
    "rollbackConfig.delay",
    "rollbackConfig.monitor",
)

SERVICE = ResourceModel(
    type="docker:index/service:Service",
    source=SERVICE_SCHEMA,
    rules=(
        *(Rule(path, f"{STRUCTURES} shortDur", read=short_dur) for path in DURATION_PATHS),
        Rule("updateConfig.maxFailureRatio", f"{STRUCTURES} flattenServiceUpdateOrRollbackConfig", read=one_decimal),
        Rule("rollbackConfig.maxFailureRatio", f"{STRUCTURES} flattenServiceUpdateOrRollbackConfig", read=one_decimal),
        Rule("name", SERVICE_SCHEMA, force_new=True),
        Rule("auth", SERVICE_SCHEMA, force_new=True),
    ),
    on_create=_service_on_create,
    delete_before_replace=lambda inputs: bool(inputs.get("name")),
)

SECRET = ResourceModel(
    type="docker:index/secret:Secret",
    source=f"{V} internal/provider/resource_docker_secret.go",
    replace_on_change=True,
    autonamed=("name",),
)
CONFIG = ResourceModel(
    type="docker:index/serviceConfig:ServiceConfig",
    source=f"{V} internal/provider/resource_docker_config.go",
    replace_on_change=True,
    autonamed=("name",),
)
VOLUME = ResourceModel(
    type="docker:index/volume:Volume",
    source=f"{V} internal/provider/resource_docker_volume.go",
    replace_on_change=True,
    autonamed=("name",),
)
NETWORK = ResourceModel(
    type="docker:index/network:Network",
    source=f"{V} internal/provider/resource_docker_network.go",
    replace_on_change=True,
    autonamed=("name",),
)
REMOTE_IMAGE = ResourceModel(
    type="docker:index/remoteImage:RemoteImage",
    source=f"{V} internal/provider/resource_docker_image.go",
    rules=(Rule("build.context", f"{V} internal/provider/resource_docker_image.go", force_new=True),),
)

MODELS = {m.type: m for m in (SERVICE, SECRET, CONFIG, VOLUME, NETWORK, REMOTE_IMAGE)}


def _registry_image(args: dict[str, Any]) -> dict[str, Any]:
    """data_source_docker_registry_image.go: the digest of the manifest the tag names (HEAD first)."""
    name = args["name"]
    return {"name": name, "sha256Digest": mock_digest(name), "id": mock_digest(name)}


CALLS = {"docker:index/getRegistryImage:getRegistryImage": _registry_image}
