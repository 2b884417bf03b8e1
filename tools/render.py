"""Offline rendering: what a stack declares, written to build/<stack>/ without any credentials.

    python -m tools.render prod
    python -m tools.render almeyo --config-file examples/almeyo/Pulumi.almeyo.yaml

Runs the real program under the mock runtime (tools/mockrun.py) with placeholder values for
secrets, then writes:
  resources.yaml  every resource: type, name, parent, options and inputs (secrets redacted)
  outputs.json    the stack outputs
  files/          every rendered file the stack ships: cloud-init, nginx.conf, configs, scripts
A configuration error prints its message and exits 2, as `pulumi preview` would.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from tools import mockrun

REDACTED = "[secret]"


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(mockrun.SECRET_SIG) == mockrun.SECRET_VALUE:
            return REDACTED
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def rendered_files(run: mockrun.Run) -> dict[str, str]:
    """File name -> text, for every file the stack ships to the host."""
    files: dict[str, str] = {}
    for resource in run.resources:
        if resource.type == "hcloud:index/server:Server" and resource.inputs.get("userData"):
            files[f"{resource.name}.cloud-init.yaml"] = resource.inputs["userData"]
        elif resource.type == "docker:index/serviceConfig:ServiceConfig":
            try:
                files[resource.name] = base64.b64decode(resource.inputs["data"]).decode()
            except (binascii.Error, UnicodeDecodeError):
                files[resource.name] = resource.inputs["data"]
        elif resource.type.startswith("command:") and resource.inputs.get("stdin"):
            files[resource.name] = resource.inputs["stdin"]
    return files


def describe(run: mockrun.Run) -> list[dict[str, Any]]:
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
            entry["inputs"] = redact(resource.raw_inputs)
        out.append(entry)
    return out


def render(stack: str, config_file: Path | None, out_dir: Path) -> int:
    run = mockrun.run(stack, config_file=config_file)
    if run.error is not None:
        print(f"error: {run.error}", file=sys.stderr)
        return 2
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "files").mkdir(parents=True)
    (out_dir / "resources.yaml").write_text(yaml.safe_dump(describe(run), sort_keys=False, width=120))
    (out_dir / "outputs.json").write_text(json.dumps(run.outputs, indent=2, default=str) + "\n")
    files = rendered_files(run)
    for name, text in files.items():
        (out_dir / "files" / name).write_text(text)
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
