"""tools/ssh_window.py, run as the workflows run it (a subprocess with the job's environment),
against a fake Hetzner API on loopback (tests/workflows/fake_hetzner.py): the rule it opens, what
it leaves alone, what it sweeps, its retries and failures, its lock under concurrent jobs, and the
audit the drift job runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.workflows.fake_hetzner import FakeHetzner, serve
from tools import ssh_window

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "ssh_window.py"
CI_LABELS = {"managed-by": "pulumi", "stack": "prod", "keel-role": "ci-ssh"}
RUNNER = "20.1.2.3"
ADMIN_RULE = {"direction": "in", "protocol": "tcp", "port": "22", "source_ips": ["203.0.113.0/28"]}
PING_RULE = {"direction": "in", "protocol": "icmp", "source_ips": ["0.0.0.0/0", "::/0"], "description": "ping"}


@pytest.fixture
def api() -> Iterator[FakeHetzner]:
    with serve(FakeHetzner()) as fake:
        yield fake


def ci_firewall(fake: FakeHetzner, rules: list[dict[str, Any]] | None = None, stack: str = "prod") -> int:
    return fake.add_firewall(f"keel-{stack}-ci-ssh", {**CI_LABELS, "stack": stack}, rules)


def tagged(owner: str, expires: float, source: str = "20.9.9.9/32") -> dict[str, Any]:
    return {
        "direction": "in",
        "protocol": "tcp",
        "port": "22",
        "source_ips": [source],
        "description": f"keel-ci owner={owner} expires={int(expires)}",
    }


def window(
    fake: FakeHetzner, command: str, *args: str, job: str = "deploy", token: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {
        "PATH": os.environ.get("PATH", ""),
        "HCLOUD_TOKEN": fake.token if token is None else token,
        "HCLOUD_ENDPOINT": f"{fake.url}/v1",
        "GITHUB_RUN_ID": "9001",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_JOB": job,
        **env,
    }
    argv = [sys.executable, str(SCRIPT), command, "--stack", "prod", "--pause-seconds", "0.01"]
    if command == "open" and "--ip" not in args and "--ip-source" not in args:
        argv += ["--ip", RUNNER]
    return subprocess.run(
        [*argv, "--deadline-seconds", "20", *args], capture_output=True, text=True, timeout=60, env=environ, check=False
    )


def ours(rules: list[dict[str, Any]], owner: str = "9001-1-deploy-prod") -> list[dict[str, Any]]:
    return [r for r in rules if (r.get("description") or "").startswith(f"keel-ci owner={owner} ")]


# ----------------------------------------------------------------------------- open and close


def test_open_adds_one_tcp22_rule_for_the_runner_with_its_owner_and_expiry(api: FakeHetzner) -> None:
    fid = ci_firewall(api)
    before = time.time()
    result = window(api, "open", "--ttl-minutes", "50")
    assert result.returncode == 0, result.stderr
    (rule,) = api.rules(fid)
    assert {k: rule[k] for k in ("direction", "protocol", "port", "source_ips", "destination_ips")} == {
        "direction": "in", "protocol": "tcp", "port": "22", "source_ips": [f"{RUNNER}/32"], "destination_ips": [],
    }  # fmt: skip
    owner, expires = ssh_window.tag_of(rule) or ("", 0)
    assert owner == "9001-1-deploy-prod"
    assert before + 50 * 60 - 1 <= expires <= time.time() + 50 * 60
    assert f"opened 22/tcp for {RUNNER}/32 on keel-prod-ci-ssh" in result.stdout
    # It waited for both actions of the write (set_firewall_rules, apply_firewall) to finish.
    assert all(action["status"] == "success" for action in api.actions.values())
    # The lock was taken and given back.
    assert [f["name"] for f in api.firewalls.values()] == ["keel-prod-ci-ssh"]
    assert len(api.calls("POST", r"/v1/firewalls")) == 1


def test_open_again_in_the_same_job_still_leaves_exactly_one_rule(api: FakeHetzner) -> None:
    fid = ci_firewall(api)
    assert window(api, "open").returncode == 0
    assert window(api, "open").returncode == 0
    assert len(ours(api.rules(fid))) == 1


def test_close_removes_only_its_own_rule_and_rules_past_their_expiry(api: FakeHetzner) -> None:
    now = time.time()
    live_other_job = tagged("9002-1-drift-prod", now + 600)
    crashed_job = tagged("8000-1-deploy-prod", now - 60, "20.7.7.7/32")
    fid = ci_firewall(api, [ADMIN_RULE, PING_RULE, live_other_job, crashed_job])
    assert window(api, "open").returncode == 0
    after_open = api.rules(fid)
    assert len(ours(after_open)) == 1
    assert not ours(after_open, "8000-1-deploy-prod"), "open sweeps a crashed job's rule"

    result = window(api, "close")
    assert result.returncode == 0, result.stderr
    left = api.rules(fid)
    assert not ours(left)
    # What CI did not write, and another job's live rule, went back exactly as they were.
    assert [ssh_window.as_request(r) for r in left] == [ADMIN_RULE, PING_RULE, live_other_job]
    assert "holds a rule CI did not write" in result.stdout


def test_close_with_nothing_to_do_writes_nothing(api: FakeHetzner) -> None:
    fid = ci_firewall(api, [tagged("9002-1-drift-prod", time.time() + 600)])
    result = window(api, "close")
    assert result.returncode == 0, result.stderr
    assert "nothing to remove" in result.stdout
    assert api.calls("POST", rf"/v1/firewalls/{fid}/actions/set_rules") == []


def test_close_alone_sweeps_the_rule_of_a_job_whose_runner_died(api: FakeHetzner) -> None:
    fid = ci_firewall(api, [tagged("8000-1-deploy-prod", time.time() - 1)])
    result = window(api, "close", job="drift")
    assert result.returncode == 0, result.stderr
    assert api.rules(fid) == []
    assert "removed 1 rule(s)" in result.stdout


def test_each_stack_has_its_own_firewall(api: FakeHetzner) -> None:
    staging = ci_firewall(api, stack="staging")
    prod = ci_firewall(api)
    assert window(api, "open").returncode == 0
    assert api.rules(staging) == [] and len(api.rules(prod)) == 1


# ----------------------------------------------------------------------------- retries and failures


def test_transient_api_errors_are_retried(api: FakeHetzner) -> None:
    fid = ci_firewall(api)
    api.fail_next("GET", r"/v1/firewalls", "rate_limit_exceeded")
    api.fail_next("POST", r"/v1/firewalls", "locked")
    api.fail_next("POST", rf"/v1/firewalls/{fid}/actions/set_rules", "conflict", times=2)
    api.fail_next("GET", r"/v1/actions/\d+", "bad_gateway")
    api.action_polls = 3
    result = window(api, "open")
    assert result.returncode == 0, result.stderr
    assert len(ours(api.rules(fid))) == 1
    assert len(api.calls("POST", rf"/v1/firewalls/{fid}/actions/set_rules")) == 3


def test_a_refused_token_fails_at_once_and_is_never_printed(api: FakeHetzner) -> None:
    ci_firewall(api)
    result = window(api, "open", token="wrong-token-77e1")
    assert result.returncode == 1
    assert "HTTP 401 unauthorized" in result.stderr
    assert api.refused == 1 and api.requests == []  # not retried
    assert "wrong-token-77e1" not in result.stdout + result.stderr


def test_an_action_that_fails_fails_the_step(api: FakeHetzner) -> None:
    ci_firewall(api)
    api.action_error = {"code": "firewall_managed_by_label_selector", "message": "nope"}
    result = window(api, "open")
    assert result.returncode == 1
    assert "set_firewall_rules" in result.stderr and "firewall_managed_by_label_selector: nope" in result.stderr
    # The lock was released on the way out.
    assert [f["name"] for f in api.firewalls.values()] == ["keel-prod-ci-ssh"]


def test_a_stack_without_its_ci_firewall_says_how_to_get_one(api: FakeHetzner) -> None:
    api.add_firewall("keel-prod-firewall", {"managed-by": "pulumi", "stack": "prod"})
    result = window(api, "open")
    assert result.returncode == 1
    assert "expected one firewall labelled keel-role=ci-ssh,stack=prod, found 0" in result.stderr
    assert "admin_cidrs" in result.stderr


def test_the_token_never_travels_in_clear_text(api: FakeHetzner) -> None:
    result = window(api, "open", HCLOUD_ENDPOINT="http://api.example.com/v1")
    assert result.returncode == 2
    assert "HCLOUD_ENDPOINT must be an https:// URL" in result.stderr
    assert api.requests == []


def test_a_missing_token_or_owner_is_a_usage_error(api: FakeHetzner) -> None:
    assert window(api, "open", token="").returncode == 2
    result = window(api, "close", GITHUB_RUN_ID="")
    assert result.returncode == 2 and "GITHUB_RUN_ID" in result.stderr


def test_a_rule_removed_behind_its_back_is_written_again(api: FakeHetzner) -> None:
    """Someone outside the lock (the console, another tool) rewrites the rules right after CI's
    write: the read-back notices and CI writes again."""
    fid = ci_firewall(api)
    api.after_set_rules.append(lambda firewall: firewall.update(rules=[]))
    result = window(api, "open")
    assert result.returncode == 0, result.stderr
    assert len(ours(api.rules(fid))) == 1
    assert len(api.calls("POST", rf"/v1/firewalls/{fid}/actions/set_rules")) == 2


# ----------------------------------------------------------------------------- the lock


def test_a_held_lock_is_waited_for_and_a_live_one_is_respected(api: FakeHetzner) -> None:
    fid = ci_firewall(api)
    api.add_firewall("keel-prod-ci-ssh-lock", {"keel-ci-lock": "true", "owner": "other", "expires": "9999999999"})
    result = window(api, "open", "--deadline-seconds", "1")
    assert result.returncode == 1
    assert "could not take the lock keel-prod-ci-ssh-lock" in result.stderr
    assert api.rules(fid) == []


def test_a_lock_left_by_a_dead_job_is_broken_after_its_expiry(api: FakeHetzner) -> None:
    fid = ci_firewall(api)
    stale = str(int(time.time()) - 5)
    api.add_firewall("keel-prod-ci-ssh-lock", {"keel-ci-lock": "true", "owner": "dead", "expires": stale})
    result = window(api, "open")
    assert result.returncode == 0, result.stderr
    assert "removed the stale lock of dead" in result.stderr
    assert len(ours(api.rules(fid))) == 1
    assert [f["name"] for f in api.firewalls.values()] == ["keel-prod-ci-ssh"]


def test_concurrent_jobs_write_only_under_the_lock_and_lose_no_rule(api: FakeHetzner) -> None:
    """set_rules replaces the whole list: two jobs that each read the list and write it back with
    their own change could drop each other's rule. Every write happens while the writer holds
    the lock (the rules it writes name the lock's owner, or for a close, no longer do), and in
    the end every job's rule is there, then none is."""
    fid = ci_firewall(api)
    api.read_latency = 0.02
    jobs = [f"job{n}" for n in range(4)]

    def start(command: str, job: str) -> subprocess.Popen[str]:
        env = {
            "PATH": os.environ.get("PATH", ""), "HCLOUD_TOKEN": api.token, "HCLOUD_ENDPOINT": f"{api.url}/v1",
            "GITHUB_RUN_ID": "9001", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_JOB": job,
        }  # fmt: skip
        argv = [sys.executable, str(SCRIPT), command, "--stack", "prod", "--pause-seconds", "0.01"]
        argv += ["--deadline-seconds", "40"] + (["--ip", RUNNER] if command == "open" else [])
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    for command in ("open", "close"):
        processes = [start(command, job) for job in jobs]
        for process in processes:
            _, err = process.communicate(timeout=90)
            assert process.returncode == 0, err
        owners = sorted(owner for owner, _ in filter(None, map(ssh_window.tag_of, api.rules(fid))))
        assert owners == (sorted(f"9001-1-{job}-prod" for job in jobs) if command == "open" else [])
        writes, api.writes = api.writes, []
        assert len(writes) >= len(jobs)
        for holder, named in writes:
            assert holder is not None, "a rule write without the lock"
            assert (holder in named) == (command == "open"), (holder, named)
    assert [f["name"] for f in api.firewalls.values()] == ["keel-prod-ci-ssh"]


# ----------------------------------------------------------------------------- the runner's address


def test_the_address_is_the_one_two_echo_services_agree_on(api: FakeHetzner) -> None:
    fid = ci_firewall(api)
    api.echo.update(a="20.1.2.3\n", b="20.6.6.6\n", c=" 20.1.2.3 ")
    sources = [arg for name in "abc" for arg in ("--ip-source", f"{api.url}/ip/{name}")]
    result = window(api, "open", *sources)
    assert result.returncode == 0, result.stderr
    assert ours(api.rules(fid))[0]["source_ips"] == ["20.1.2.3/32"]


def test_disagreeing_or_private_answers_open_nothing(api: FakeHetzner) -> None:
    fid = ci_firewall(api)
    api.echo.update(a="20.1.2.3", b="10.1.2.3", c="<html>rate limited</html>")
    sources = [arg for name in "abcd" for arg in ("--ip-source", f"{api.url}/ip/{name}")]
    result = window(api, "open", *sources)
    assert result.returncode == 1
    assert "10.1.2.3 is not a public unicast address" in result.stderr
    assert "not an IP address" in result.stderr and "HTTP Error 404" in result.stderr
    assert api.rules(fid) == []


def test_an_ipv6_runner_gets_a_128(api: FakeHetzner) -> None:
    fid = ci_firewall(api)
    assert window(api, "open", "--ip", "2a01:4f8:1:2::5").returncode == 0
    assert ours(api.rules(fid))[0]["source_ips"] == ["2a01:4f8:1:2::5/128"]


# ----------------------------------------------------------------------------- audit


def test_audit_passes_on_ci_rules_only(api: FakeHetzner) -> None:
    ci_firewall(api, [tagged("9002-1-drift-prod", time.time() + 600)])
    result = window(api, "audit")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "rule",
    [
        ADMIN_RULE,
        {**tagged("9002-1-drift-prod", time.time() + 600), "source_ips": ["20.0.0.0/8"]},
        {**tagged("9002-1-drift-prod", time.time() + 600), "port": "1-65535"},
    ],
    ids=["untagged", "tagged-but-a-network", "tagged-but-every-port"],
)
def test_audit_fails_on_anything_ci_would_not_have_written(api: FakeHetzner, rule: dict[str, Any]) -> None:
    ci_firewall(api, [rule])
    result = window(api, "audit")
    assert result.returncode == 3
    assert json.dumps(ssh_window.as_request(FakeHetzner._stored(rule)), sort_keys=True) in result.stderr
