"""The plan between two revisions of the program, without credentials, a cloud or a host.

    make diff BASE=<git revision> [STACK=prod] [CONFIG_FILE=path/to/Pulumi.x.yaml]
    python -m tools.diff --base origin/main prod

The stack is rendered at BASE (its program, topology and stack file, run by this checkout's
mock runtime) and taken as the deployed state, through the providers' read-back model
(tools/readback: what `pulumi up` then `pulumi refresh` leave); the working tree's program then
runs against that state and the resource-level plan is printed: create, update, replace and
delete, with each changed field and the provider rule behind it. Secret values are never shown.
This is the preview pull requests get (the preview workflow posts it) and the one reviewers
without credentials can read. Exit 0 whether or not anything changes; 2 when the working
tree's configuration is refused (its message is printed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from tools import mockrun, readback

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Registration:
    """What the state needs of one registered resource (a mockrun.Registered, serialised)."""

    urn: str
    type: str
    name: str
    custom: bool
    inputs: dict[str, Any]
    protect: bool
    secret_paths: tuple[str, ...]
    depends_on: tuple[str, ...] = ()
    """What it depends on: the order the engine deletes in (tools/impact.py)."""


def dump(stack: str, config_file: Path | None) -> dict[str, Any]:
    """Run the program in this directory and describe its registrations (or its error)."""
    run = mockrun.run(stack, config_file=config_file)
    if run.error is not None:
        return {"error": str(run.error)}
    return {
        "resources": [
            {
                "urn": r.urn,
                "type": r.type,
                "name": r.name,
                "custom": r.custom,
                "inputs": r.inputs,
                "protect": r.protect,
                "secret_paths": sorted(r.secret_paths()),
                "depends_on": list(r.depends_on),
            }
            for r in run.resources
        ]
    }


def base_registrations(base: str, stack: str, config_file: str | None) -> tuple[list[Registration], str | None]:
    """The registrations of the program at ``base``; an error message instead when it has none."""
    with tempfile.TemporaryDirectory(prefix="keel-diff-") as scratch:
        tree = Path(scratch) / "base"
        tree.mkdir()
        archive = subprocess.run(["git", "archive", "--format=tar", base], cwd=ROOT, capture_output=True, check=False)
        if archive.returncode != 0:
            raise SystemExit(f"diff: cannot read revision {base!r}: {archive.stderr.decode().strip()}")
        with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
            tar.extractall(tree, filter="data")
        # The harness is this checkout's (the read-back model, the mock runtime); the program,
        # its topology and its stack files are the revision's.
        shutil.rmtree(tree / "tools", ignore_errors=True)
        shutil.copytree(ROOT / "tools", tree / "tools", ignore=shutil.ignore_patterns("__pycache__"))
        if config_file is not None and not (tree / config_file).is_file():
            return [], f"{config_file} does not exist at {base}: every resource is new"
        if config_file is None and not (tree / f"Pulumi.{stack}.yaml").is_file():
            return [], f"Pulumi.{stack}.yaml does not exist at {base}: every resource is new"
        command = [sys.executable, "-m", "tools.diff", "--dump", stack]
        if config_file is not None:
            command += ["--config-file", config_file]
        result = subprocess.run(command, cwd=tree, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(f"diff: rendering {stack} at {base} failed:\n{result.stderr}")
    described = json.loads(result.stdout)
    if "error" in described:
        return [], f"the configuration at {base} was refused ({described['error']}): every resource is new"
    resources = [
        Registration(
            **{
                **item,
                "secret_paths": tuple(item["secret_paths"]),
                "depends_on": tuple(item.get("depends_on", ())),
            }
        )
        for item in described["resources"]
    ]
    return resources, None


def plan_text(base: str, stack: str, plan: readback.Plan, secrets: Mapping[str, set[str]], note: str | None) -> str:
    counts = {kind: 0 for kind in ("create", "update", "replace", "delete")}
    for kind, _, _ in plan.steps():
        counts[kind] += 1
    lines = [f"Plan of stack {stack}: {base} -> working tree"]
    if note:
        lines.append(f"({note})")
    lines += ["", plan.describe(lambda urn: secrets.get(urn, set())), ""]
    lines.append(
        f"{counts['create']} to create, {counts['update']} to update, {counts['replace']} to replace, "
        f"{counts['delete']} to delete."
    )
    return "\n".join(lines)


def _secret_paths(items: Iterable[Registration], run: mockrun.Run) -> dict[str, set[str]]:
    paths: dict[str, set[str]] = {}
    for item in items:
        paths.setdefault(item.urn, set()).update(item.secret_paths)
    for resource in run.resources:
        paths.setdefault(resource.urn, set()).update(resource.secret_paths())
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stack")
    parser.add_argument("--base", help="git revision the stack is deployed at (its state)")
    parser.add_argument("--config-file", help="a stack file outside the project root (examples/...)")
    parser.add_argument("--dump", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    config_file = Path(args.config_file) if args.config_file else None
    if args.dump:
        print(json.dumps(dump(args.stack, config_file)))
        return 0
    if not args.base:
        parser.error("--base is required (make diff BASE=<git revision>)")
    before, note = base_registrations(args.base, args.stack, args.config_file)
    state = readback.state_after_up(before)
    after = mockrun.run(args.stack, config_file=config_file, prior=state)
    if after.error is not None:
        print(f"error: {after.error}")
        return 2
    plan = readback.plan(state, after.resources)
    print(plan_text(args.base, args.stack, plan, _secret_paths(before, after), note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
