"""Offline rendering: what a stack declares, written to build/<stack>/ without any credentials.

    python -m tools.render prod
    python -m tools.render almeyo --config-file examples/almeyo/Pulumi.almeyo.yaml

Runs the real program under the mock runtime (tools/mockrun.py) with placeholder values for
secrets, then writes:
  resources.yaml  every resource: type, name, parent, options and inputs (secrets redacted); a
                  file the stack ships is referred to as {file: files/...} instead of its base64
  outputs.json    the stack outputs
  files/          every file the stack ships, as text, where it lands:
                    files/<swarm service>/<path in its container>  configs, and what a command
                                                                   writes into a service's volume
                    files/host/cloud-init.yaml                     the server's user data
                    files/nodes/<server>/cloud-init.yaml           a pool node's user data
                  Docker secrets are never written; any secret value inside a file is redacted.
The paths come from the resources themselves (a config's mount in the services that use it, the
volume a command writes into), so a new component's files appear without changes here.
A configuration error prints its message and exits 2, as `pulumi preview` would.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import posixpath
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from render import proxy_runtime
from tools import mockrun

REDACTED = "[secret]"
SERVICE = "docker:index/service:Service"
SERVICE_CONFIG = "docker:index/serviceConfig:ServiceConfig"
SERVER = "hcloud:index/server:Server"
HOST_SERVER = "host-server"
"""The resource name of the host's own server (components/host.py)."""
HOST_DIR = "host"


def _is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(mockrun.SECRET_SIG) == mockrun.SECRET_VALUE


def redact(value: Any) -> Any:
    if _is_secret(value):
        return REDACTED
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


@dataclass
class Shipped:
    """The files a stack ships (path under files/ -> text), and what replaces them in resources.yaml."""

    files: dict[str, str] = field(default_factory=dict)
    references: dict[tuple[str, str], Any] = field(default_factory=dict)
    """(resource URN, input name) -> what resources.yaml shows instead of the input's value."""

    def add(self, path: str, text: str) -> str:
        path = posixpath.normpath(path)
        if path.startswith(("/", "..")) or (path in self.files and self.files[path] != text):
            raise ValueError(f"two different files, or one outside files/, at {path!r}")
        self.files[path] = text
        return f"files/{path}"


def _mounts(run: mockrun.Run) -> Iterator[tuple[str, dict[str, Any]]]:
    """(swarm service name, container spec) of every service, shortest name first (`shop-backup`
    before `shop-backup-check`): a file several services mount is written once, under the first,
    whatever order the program registered them in."""
    services = sorted(run.of_type(SERVICE), key=lambda service: (len(service.inputs["name"]), service.inputs["name"]))
    for service in services:
        yield service.inputs["name"], service.inputs.get("taskSpec", {}).get("containerSpec", {})


def _in_container(service: str, path: str) -> str:
    return f"{service}/{path.lstrip('/')}"


def _config_paths(run: mockrun.Run) -> dict[str, str]:
    """ServiceConfig id -> where its file lands: in the first service that mounts it, at its file name."""
    paths: dict[str, str] = {}
    for service, spec in _mounts(run):
        for mounted in spec.get("configs") or []:
            paths.setdefault(mounted["configId"], _in_container(service, mounted["fileName"]))
    return paths


def _volume_targets(run: mockrun.Run) -> dict[str, str]:
    """Docker volume name -> where it is mounted: in the first service that mounts it, at its target."""
    targets: dict[str, str] = {}
    for service, spec in _mounts(run):
        for mount in spec.get("mounts") or []:
            if mount.get("type") == "volume" and mount.get("source"):
                targets.setdefault(mount["source"], _in_container(service, mount["target"]))
    return targets


def _decoded(data: str) -> str | None:
    try:
        return base64.b64decode(data, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def shipped_files(run: mockrun.Run) -> Shipped:
    """Every file the stack ships, as text, at a path that mirrors where it lands."""
    shipped = Shipped()
    config_paths = _config_paths(run)
    volume_targets = _volume_targets(run)
    servers = run.of_type(SERVER)
    for resource in run.resources:
        raw = resource.raw_inputs
        if resource.type == SERVICE_CONFIG and not _is_secret(raw.get("data")):
            text = _decoded(resource.inputs["data"])
            if text is not None:
                where = config_paths.get(resource.id, f"unmounted-configs/{resource.inputs.get('name', resource.name)}")
                shipped.references[resource.urn, "data"] = {"file": shipped.add(where, text)}
        elif resource.type == SERVER and resource.inputs.get("userData"):
            # The host's server, and each pool node's (components/cluster.py) under its server name.
            is_host = len(servers) == 1 or resource.name == HOST_SERVER
            where = f"{HOST_DIR}/cloud-init.yaml" if is_host else f"nodes/{resource.inputs['name']}/cloud-init.yaml"
            written = shipped.add(where, resource.inputs["userData"])
            shipped.references[resource.urn, "userData"] = {"file": written, "secrets": "redacted"}
        elif resource.type.startswith("command:") and resource.inputs.get("stdin") and not _is_secret(raw.get("stdin")):
            _command_files(shipped, resource, volume_targets)
    shipped.files = {path: _redacted(text, run.secret_values) for path, text in shipped.files.items()}
    return shipped


def _command_files(shipped: Shipped, command: mockrun.Registered, volume_targets: dict[str, str]) -> None:
    """A command that ships files through its stdin. The proxy's configuration writer stages a set
    in the proxy's volume and points `staged` at it: its files land under `staged/` where that
    volume is mounted (a path that stays put from one render to the next, unlike the set's
    digest, which resources.yaml records)."""
    stdin = command.inputs["stdin"]
    staged = proxy_runtime.read_writer(command.inputs.get("create", ""), stdin)
    if staged is None:
        shipped.references[command.urn, "stdin"] = {"file": shipped.add(f"commands/{command.name}.stdin", stdin)}
        return
    base = f"{volume_targets.get(staged.volume, f'volumes/{staged.volume}')}/{proxy_runtime.STAGED_LINK}"
    shipped.references[command.urn, "stdin"] = {
        "files": [shipped.add(f"{base}/{path}", text) for path, text in sorted(staged.files.items())],
        "set": f"{proxy_runtime.SETS_DIR}/{staged.digest}",
    }


def _redacted(text: str, secrets: list[str]) -> str:
    """``text`` with every secret value, or every line of a multi-line one (a key embedded in
    YAML is indented), replaced by REDACTED."""
    for secret in sorted(secrets, key=len, reverse=True):
        if "\n" not in secret.strip():
            text = text.replace(secret, REDACTED) if secret else text
            continue
        for line in secret.strip().splitlines():
            if line.strip() and not line.startswith("-----"):  # PEM armour lines are no secret
                text = text.replace(line.strip(), REDACTED)
    return text


def describe(run: mockrun.Run, shipped: Shipped | None = None) -> list[dict[str, Any]]:
    references = (shipped or shipped_files(run)).references
    out = []
    for resource in run.resources:
        entry: dict[str, Any] = {"type": resource.type, "name": resource.name, "urn": resource.urn}
        options = {
            key: value
            for key, value in (
                ("protect", resource.protect),
                ("retain_on_delete", resource.retain_on_delete),
                ("ignore_changes", resource.ignore_changes),
            )
            if value
        }
        if options:
            entry["options"] = options
        if resource.custom:
            inputs = redact(resource.raw_inputs)
            for key in inputs:
                if (resource.urn, key) in references:
                    inputs[key] = references[resource.urn, key]
            entry["inputs"] = inputs
        out.append(entry)
    return out


class _ReadableDumper(yaml.SafeDumper):
    """Multi-line strings (the commands' scripts) as YAML literal blocks, readable as written."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_ReadableDumper.add_representer(str, _str)


def write(run: mockrun.Run, out_dir: Path) -> Shipped:
    """Write the run's resources.yaml, outputs.json and files/ into ``out_dir`` (replacing it)."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "files").mkdir(parents=True)
    shipped = shipped_files(run)
    resources = yaml.dump(describe(run, shipped), Dumper=_ReadableDumper, sort_keys=False, width=120)
    (out_dir / "resources.yaml").write_text(resources)
    (out_dir / "outputs.json").write_text(json.dumps(run.outputs, indent=2, default=str) + "\n")
    for name, text in shipped.files.items():
        path = out_dir / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return shipped


def render(stack: str, config_file: Path | None, out_dir: Path) -> int:
    run = mockrun.run(stack, config_file=config_file)
    if run.error is not None:
        print(f"error: {run.error}", file=sys.stderr)
        return 2
    files = write(run, out_dir).files
    print(f"{stack}: {len(run.resources)} resources, {len(files)} files -> {out_dir}")
    for name in sorted(files):
        print(f"  files/{name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.render", description=__doc__.splitlines()[0])
    parser.add_argument("stack", help="stack name (dev, staging, prod, or an example's name)")
    parser.add_argument("--config-file", type=Path, help="a self-contained stack config file")
    parser.add_argument("--out", type=Path, help="output directory (default build/<stack>)")
    args = parser.parse_args(argv)
    config_file = args.config_file
    if config_file is None and not mockrun.stack_file(args.stack).is_file():
        print(f"error: no Pulumi.{args.stack}.yaml; pass --config-file", file=sys.stderr)
        return 2
    if config_file is not None and not config_file.is_file():
        print(f"error: --config-file {config_file}: no such file", file=sys.stderr)
        return 2
    try:
        mockrun.read_config_file(config_file or mockrun.stack_file(args.stack))
    except yaml.YAMLError as error:
        print(f"error: {config_file or mockrun.stack_file(args.stack)} is not valid YAML: {error}", file=sys.stderr)
        return 2
    return render(args.stack, config_file, args.out or mockrun.ROOT / "build" / args.stack)


if __name__ == "__main__":
    sys.exit(main())
