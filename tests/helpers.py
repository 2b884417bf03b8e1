"""Shared test helpers: stack configs with one fragment merged in, and mock runs of them."""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pulumi
import pulumi_docker as docker
import yaml

from components.host import Host
from components.networks import Networks
from config import parse
from config.loader import Stack, merge
from config.models import LocalHostSpec, StackConfig, StoreSpec
from tools import mockrun

ROOT = Path(__file__).resolve().parent.parent

# Alert delivery by e-mail and a backup repository, as test fragments of the config.
EMAIL_ALERTS = {
    "kind": "email",
    "email_to": "ops@example.com",
    "email_from": "alerts@example.com",
    "smtp_host": "smtp.example.com:587",
    "smtp_username": "alerts",
    "smtp_password_secret": "smtp_password",
}
BACKUP_ON = {"enabled": True, "repository": {"bucket": "shop-backups"}}


def seconds(go_duration: str) -> int:
    """A duration as the docker provider stores it ("2m15s", "1h", "1h0m5s") in seconds."""
    found = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", go_duration)
    assert found and go_duration, f"not a Go duration: {go_duration!r}"
    hours, minutes, secs = (int(part or 0) for part in found.groups())
    return hours * 3600 + minutes * 60 + secs


def tag_of(image: str) -> str:
    """The tag a service's image names, without the digest the Host pinned it to (Host.image)."""
    name, _, digest = image.partition("@")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"{image} is not pinned to a digest"
    return name


def stack_values(stack: str) -> dict[str, Any]:
    """The `config:` mapping of a stack file, as YAML values."""
    return dict(yaml.load((ROOT / f"Pulumi.{stack}.yaml").read_text(), Loader=yaml.CSafeLoader)["config"])


def with_fragment(stack: str, fragment: dict[str, Any]) -> dict[str, Any]:
    """The stack's config keys with `fragment` deep-merged into them (keys are full, e.g. keel:host)."""
    values = stack_values(stack)
    return {key: merge(values[key], value) if key in values else value for key, value in fragment.items()}


@cache
def _stack_as_written(stack: str, config_file: Path | None) -> mockrun.Run:
    return mockrun.run(stack, config_file=config_file)


def stack_run(stack: str, config_file: Path | None = None) -> mockrun.Run:
    """``mockrun.run(stack, config_file=...)``: the stack as written, nothing overridden. Run once per
    test process (about 1-4 s each, and a dozen test files run the same stacks); each call returns a
    copy of its own, so a test that changes what it got (reorders the resources...) changes no
    other test's run. Not for a test that patches the program first: it would get the unpatched run."""
    key = None if config_file is None else Path(config_file).resolve()
    return copy.deepcopy(_stack_as_written(stack, key))


def run_with(stack: str, fragment: dict[str, Any] | None = None, **kwargs: Any) -> mockrun.Run:
    return mockrun.run(stack, overrides=with_fragment(stack, fragment or {}), **kwargs)


def parsed(stack: str, fragment: dict[str, Any] | None = None) -> StackConfig:
    """The stack's validated config with `fragment` deep-merged in (without running the program)."""
    values = stack_values(stack)
    values.update(with_fragment(stack, fragment or {}))
    return parse(
        {key.split(":", 1)[1]: mockrun.encode_value(v) for key, v in values.items() if key.startswith("keel:")}
    )


def observability_config(stack: str, extra: dict[str, Any] | None = None, **observability: Any) -> StackConfig:
    """A stack with observability on; no alert receiver unless a test names one."""
    section = {"enabled": True, "alerts": {"kind": "none"}, **observability}
    return parsed(stack, {"keel:observability": section, **(extra or {})})


def observability_spec(cfg: StackConfig) -> Any:
    """The ObservabilitySpec the component builds, with the service names the components choose."""
    from render import observability as obs

    return obs.observability_spec(cfg)


@dataclass
class HostScaffold:
    """What a component needs around it in a test: a (local) Host and its docker provider, the
    stack's networks (``network`` is the data network), a Stack."""

    host: Host
    on_host: pulumi.ResourceOptions
    network: docker.Network
    stack: Stack
    networks: Networks


def host_scaffold(cfg: StackConfig, *, stack_name: str, secrets: dict[str, str]) -> HostScaffold:
    """Declare the scaffold; call it inside a program run by `mockrun.declare`."""
    host = Host("host", spec=LocalHostSpec(provider="local"), server_name="test")
    on_host = pulumi.ResourceOptions(provider=host.provider)
    networks = Networks("networks", names=cfg.names, monitoring=True, encrypted=False, opts=on_host)
    stack = Stack(
        project="keel",
        name=stack_name,
        config=cfg,
        secrets={key: pulumi.Output.secret(value) for key, value in secrets.items()},
    )
    return HostScaffold(host, on_host, networks.data, stack, networks)


def store_clients(
    key: str, store: object, on_host: pulumi.ResourceOptions
) -> tuple[dict[str, str], dict[str, docker.Secret]]:
    """A store's client users and their password secrets (exporter, backup...), as StatefulStore
    exposes them (the kind's ``clients``); none for volumes."""
    from components import swarm
    from stores import registry

    users = dict(registry.kind_of(store).clients(store))  # type: ignore[arg-type]
    secrets = {
        client: docker.Secret(
            f"{key}-{client}-password",
            docker.SecretArgs(data=swarm.secret_data(pulumi.Output.secret(f"{client}-password-{key}"))),
            opts=on_host,
        )
        for client in users
    }
    return users, secrets


def store_password(
    key: str, store: StoreSpec, on_host: pulumi.ResourceOptions
) -> tuple[pulumi.Output[str], docker.Secret] | tuple[None, None]:
    """A store's password and its swarm secret, as StatefulStore exposes them (none for volumes)."""
    from components import swarm
    from stores import registry
    from stores.base import Password

    if not isinstance(registry.kind_of(store).credentials(store), Password):
        return None, None
    password = pulumi.Output.secret(f"store-password-{key}")
    secret = docker.Secret(f"{key}-password", docker.SecretArgs(data=swarm.secret_data(password)), opts=on_host)
    return password, secret


# ----------------------------------------------------------------------------- offline render

_BASE64 = re.compile(r"^[A-Za-z0-9+/]{16,}={0,2}$")


def _strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")
    elif isinstance(value, str):
        yield path, value


def _base64_text(value: str) -> bool:
    if not _BASE64.match(value):
        return False
    try:
        base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    return True


def check_render_is_readable(run: mockrun.Run, out: Path) -> None:
    """What `tools.render.write(run, out)` wrote is for reading: every ServiceConfig is a text file
    under files/ that resources.yaml refers to, no base64 text is left in resources.yaml, and no
    secret value of the run appears in any written file."""
    text = (out / "resources.yaml").read_text()
    described = {r["urn"]: r for r in yaml.load(text, Loader=yaml.CSafeLoader)}
    configs = run.of_type("docker:index/serviceConfig:ServiceConfig")
    assert configs
    for config in configs:
        reference = described[config.urn]["inputs"]["data"]
        assert isinstance(reference, dict), f"{config.urn}: data is not a file reference: {reference!r}"
        written = (out / reference["file"]).read_text()
        assert written == base64.b64decode(config.inputs["data"]).decode(), config.urn
    blobs = [(urn, path) for urn, r in described.items() for path, value in _strings(r) if _base64_text(value)]
    assert blobs == []
    files = {str(path): path.read_text() for path in (out / "files").rglob("*") if path.is_file()}
    files[str(out / "resources.yaml")] = text
    lines = {line.strip() for value in run.secret_values for line in value.splitlines()}
    secrets = [line for line in lines if len(line) > 8 and not line.startswith("-----")]
    assert secrets
    assert [(path, secret) for path, body in files.items() for secret in secrets if secret in body] == []


def base_image(run: mockrun.Run, image: str) -> str:
    """A service's image, or for one built on the host (a PostgreSQL store with point-in-time
    recovery runs its official image plus pgBackRest) the pinned image it is built from."""
    for built in run.of_type("docker:index/remoteImage:RemoteImage"):
        if built.inputs["name"] == image:
            return str(built.inputs["build"]["buildArgs"]["POSTGRES_IMAGE"])
    return image


@dataclass
class FakeStore:
    """What BackupJob and ObservabilityStack read of a StatefulStore, for component tests of them alone."""

    spec: StoreSpec
    service_name: str
    volume: docker.Volume | None
    password: pulumi.Output[str] | None
    password_secret: docker.Secret | None
    client_users: dict[str, str] = field(default_factory=dict)
    client_secrets: dict[str, docker.Secret] = field(default_factory=dict)
    ready: list[pulumi.Resource] = field(default_factory=list)
