"""Smoke check after `pulumi up`: services converged and HTTPS health endpoints healthy.

Reads the stack's outputs (`pulumi stack output --json`) and config (`pulumi config --json`),
then, in bounded rounds until everything passes:
- over SSH, with the host key pinned from the stack output ``known_hosts`` (strict host key
  checking, no other key believed), lists the swarm services and requires every one at its desired
  replica count;
- requests ``https://<hostname>[:port]/health`` for every hostname the stack serves, through
  the proxy, and requires 200 (TLS verified, except for a self-signed stack).
Exits 0 when all passed in one round, 1 otherwise (with what failed), 2 on a usage problem.
"""

from __future__ import annotations

import argparse
import json
import re
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
HEALTH_PATH = "/health"
PROJECT = "keel"


@dataclass(frozen=True)
class Target:
    """One URL to probe and whether its certificate must verify."""

    url: str
    verify_tls: bool


def config_values(config_json: dict[str, Any]) -> dict[str, str]:
    """`pulumi config --json` as the loader's raw values: key without namespace -> string."""
    raw: dict[str, str] = {}
    for key, entry in config_json.items():
        if not key.startswith(f"{PROJECT}:") or not isinstance(entry, dict) or entry.get("secret"):
            continue
        value = entry.get("value")
        if value is None and "objectValue" in entry:
            value = json.dumps(entry["objectValue"])
        if value is not None:
            raw[key.split(":", 1)[1]] = str(value)
    return raw


def health_targets(config_json: dict[str, Any], outputs: dict[str, Any]) -> list[Target]:
    """The health URL of every hostname the stack serves, or of its address when it has no DNS."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import config as keel_config

    cfg = keel_config.parse(config_values(config_json))
    port = cfg.proxy.https_port
    suffix = "" if port == 443 else f":{port}"
    verify = cfg.proxy.tls.mode != "self-signed"
    if cfg.dns is not None:
        hosts = cfg.dns.all_hostnames
    else:
        hosts = [str(outputs.get("ipv4") or "127.0.0.1")]
    return [Target(f"https://{host}{suffix}{HEALTH_PATH}", verify) for host in hosts]


_REPLICAS = re.compile(r"^(\d+)/(\d+)")


def unconverged(service_ls: str) -> list[str]:
    """Services from `docker service ls --format '{{.Name}} {{.Replicas}}'` not at their desired count."""
    lagging = []
    for line in service_ls.splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            continue
        name, replicas = parts
        match = _REPLICAS.match(replicas)
        if match is None:
            lagging.append(f"{name} ({replicas})")
        elif int(match.group(1)) != int(match.group(2)):
            lagging.append(f"{name} ({match.group(1)}/{match.group(2)} running)")
    return lagging


def ssh_destination(ssh_command: str) -> str | None:
    """`ssh deploy@198.51.100.10` -> deploy@198.51.100.10; None for the local engine."""
    parts = ssh_command.split()
    if len(parts) == 2 and parts[0] == "ssh" and "@" in parts[1]:
        return parts[1]
    return None


def ssh_argv(destination: str, known_hosts_file: Path, remote: Sequence[str]) -> list[str]:
    """ssh that believes only the pinned host key."""
    return [
        "ssh",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts_file}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "HostKeyAlgorithms=ssh-ed25519",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=20",
        destination,
        *remote,
    ]  # fmt: skip


def probe(target: Target, timeout_s: float) -> str | None:
    """None when the URL answers 200, else what went wrong."""
    context = ssl.create_default_context()
    if not target.verify_tls:
        # A self-signed stack (dev-like) has nothing to verify against; the check is liveness.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(target.url, headers={"User-Agent": "keel-smoke"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (urllib.error.URLError, OSError) as error:
        return f"{target.url}: {error}"
    return None if status == 200 else f"{target.url}: HTTP {status}"


def services_problems(destination: str, known_hosts_file: Path) -> list[str]:
    remote = ["docker", "service", "ls", "--format", "'{{.Name}} {{.Replicas}}'"]
    result = subprocess.run(
        ssh_argv(destination, known_hosts_file, remote), capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        return [f"ssh {destination}: exit {result.returncode}: {result.stderr.strip()}"]
    return [f"service not converged: {entry}" for entry in unconverged(result.stdout)]


def _pulumi_json(*args: str) -> dict[str, Any]:
    result = subprocess.run(["pulumi", *args, "--json"], capture_output=True, text=True, check=False, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"pulumi {' '.join(args)} failed: {result.stderr.strip()}")
    data = json.loads(result.stdout or "{}")
    return data if isinstance(data, dict) else {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--url", action="append", default=[], help="probe this URL instead of the stack's hostnames")
    parser.add_argument("--insecure", action="store_true", help="do not verify TLS for --url")
    parser.add_argument("--no-ssh", action="store_true", help="skip the swarm convergence check")
    parser.add_argument("--attempts", type=int, default=20)
    parser.add_argument("--interval", type=float, default=6.0)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP request")
    args = parser.parse_args(argv)
    if args.attempts < 1:
        parser.error("--attempts must be at least 1")

    outputs: dict[str, Any] = {}
    if args.url:
        targets = [Target(url, not args.insecure) for url in args.url]
    else:
        outputs = _pulumi_json("stack", "output", "--stack", args.stack)
        targets = health_targets(_pulumi_json("config", "--stack", args.stack), outputs)
    if not args.no_ssh and not outputs:
        outputs = _pulumi_json("stack", "output", "--stack", args.stack)
    destination = None if args.no_ssh else ssh_destination(str(outputs.get("ssh_command", "")))
    known_hosts = str(outputs.get("known_hosts") or "").strip()
    if destination is not None and not known_hosts:
        print(f"the stack output known_hosts is empty; refusing to ssh to {destination} unpinned", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory() as scratch:
        known_hosts_file = Path(scratch) / "known_hosts"
        known_hosts_file.write_text(known_hosts + "\n")
        problems: list[str] = []
        for attempt in range(1, args.attempts + 1):
            problems = services_problems(destination, known_hosts_file) if destination else []
            problems += [p for p in (probe(t, args.timeout) for t in targets) if p is not None]
            if not problems:
                checked = ", ".join(t.url for t in targets)
                print(f"smoke check passed on attempt {attempt}: {checked}")
                return 0
            print(f"attempt {attempt}/{args.attempts}: " + "; ".join(problems), file=sys.stderr)
            if attempt < args.attempts:
                time.sleep(args.interval)
    print("smoke check FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
