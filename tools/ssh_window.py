"""Open SSH (tcp/22) to a stack's host for this CI runner's address, for one job, then close it.

    python3 tools/ssh_window.py open  --stack prod --ttl-minutes 50
    python3 tools/ssh_window.py close --stack prod          # in an `if: always()` step
    python3 tools/ssh_window.py audit --stack prod          # drift: nothing but CI's own rules

The host's Hetzner firewalls admit SSH from `admin_cidrs` only. Each server also carries a CI
firewall that Pulumi declares with no rules and whose rules it ignores (components/host.py), so
rules added here are never drift. `open` adds one rule, tcp/22 from this runner's address as a
/32 (or /128), whose description names its owner (run, attempt, job, stack) and its expiry;
`close` removes it. Both also remove any CI rule past its expiry (a job whose runner died before
its `if: always()` step), and neither touches a rule it did not write.

Concurrency: the API can only replace a firewall's whole rule list (POST .../actions/set_rules)
and has no conditional update, so two jobs editing at once could lose each other's rule. Every
read-modify-write therefore holds a mutex made of the one atomic thing the API offers, unique
names: an empty firewall named `<ci firewall>-lock`, created to take the lock (409
uniqueness_error while someone else holds it), deleted to release it, and deleted by anyone once
its own `expires` label has passed. After each write the rules are read back to check it landed.

Environment: HCLOUD_TOKEN (a read-write token of the stack's Hetzner project), HCLOUD_ENDPOINT
(default https://api.hetzner.cloud/v1, as for hcloud-go), and GitHub's GITHUB_RUN_ID,
GITHUB_RUN_ATTEMPT and GITHUB_JOB for the owner. Only the standard library: the closing step
must work even where the job's setup failed. Exit status: 0 done, 1 failed, 2 bad usage, 3 the
audit found rules that CI did not write (or CI rules that are not a single address on 22/tcp).

Request and response shapes follow hcloud-go v2.47.0 (hcloud/schema/firewall.go, action.go,
error.go; the client terraform-provider-hcloud v1.68.0 builds on), and so does which errors are
worth retrying (hcloud/client_handler_retry.go), plus `locked` (another action is running).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

DEFAULT_ENDPOINT = "https://api.hetzner.cloud/v1"
# components/host.py labels the CI firewall with these (and `stack`); a test keeps them equal.
ROLE_LABEL = "keel-role"
ROLE = "ci-ssh"
LOCK_LABEL = "keel-ci-lock"
TAG = "keel-ci"
DESCRIPTION = re.compile(r"^keel-ci owner=(?P<owner>[A-Za-z0-9._-]{1,63}) expires=(?P<expires>[0-9]{1,12})$")
# Three independent echo services; two must agree before a rule names the address.
IP_SOURCES = ("https://api.ipify.org", "https://ipv4.icanhazip.com", "https://checkip.amazonaws.com")
RETRYABLE = frozenset({"conflict", "locked", "rate_limit_exceeded", "bad_gateway", "timeout", "service_error"})
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
LOCK_TTL_SECONDS = 120
EXIT_FAILED, EXIT_USAGE, EXIT_AUDIT = 1, 2, 3


class WindowError(Exception):
    """The window could not be opened or closed; the message says why (never the token)."""


class UsageError(Exception):
    pass


class ApiError(WindowError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"Hetzner API: HTTP {status} {code}: {message}")
        self.status = status
        self.code = code


def _check_url(url: str, what: str) -> None:
    """Plain http only on loopback (the tests); anywhere else a token or an address could be
    read or rewritten on the way."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return
    raise UsageError(f"{what} must be an https:// URL (http only on loopback); found {url!r}")


class Pacing:
    """One deadline for a whole command, shared by every retry loop in it, and the pauses between
    tries (doubling up to a cap)."""

    def __init__(self, deadline_seconds: float = 180.0, first_pause: float = 1.0, max_pause: float = 5.0) -> None:
        self.deadline = time.monotonic() + deadline_seconds
        self.first_pause = first_pause
        self.max_pause = max(first_pause, max_pause)

    def attempts(self) -> Iterator[int]:
        """Attempt numbers, with a pause between them, until the next pause would end past the
        deadline. The first attempt is always made."""
        pause = self.first_pause
        attempt = 0
        while True:
            yield attempt
            attempt += 1
            if time.monotonic() + pause > self.deadline:
                return
            time.sleep(pause)
            pause = min(pause * 2, self.max_pause)


class Api:
    def __init__(self, endpoint: str, token: str, pacing: Pacing, timeout: float = 20.0) -> None:
        _check_url(endpoint, "HCLOUD_ENDPOINT")
        self.endpoint = endpoint.rstrip("/")
        self.token = token
        self.pacing = pacing
        self.timeout = timeout

    def _once(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.endpoint + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                detail = json.loads(raw)["error"]
                code, message = str(detail.get("code")), str(detail.get("message"))
            except (ValueError, KeyError, TypeError):
                code, message = "unknown_error", raw[:200].decode(errors="replace")
            raise ApiError(error.code, code, message) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            raise ApiError(0, "unreachable", str(getattr(error, "reason", error))) from None

    def call(self, method: str, path: str, body: Any = None, *, retry: bool = True) -> Any:
        last: ApiError | None = None
        for _ in self.pacing.attempts():
            try:
                return self._once(method, path, body)[1]
            except ApiError as error:
                last = error
                transient = error.code in RETRYABLE or error.status in RETRYABLE_STATUS or error.status == 0
                if not (retry and transient):
                    raise
        assert last is not None
        raise last

    def wait_for(self, actions: Sequence[dict[str, Any]]) -> None:
        """Until every action has finished; an action that ends in error is a failure."""
        for action in actions:
            current = action
            for _ in self.pacing.attempts():
                if current.get("status") != "running":
                    break
                current = self.call("GET", f"/actions/{int(current['id'])}")["action"]
            what = f"action {current.get('command')} ({current.get('id')})"
            if current.get("status") == "error":
                error = current.get("error") or {}
                raise WindowError(f"{what} failed: {error.get('code')}: {error.get('message')}")
            if current.get("status") != "success":
                raise WindowError(f"{what} was still running at the deadline")


# ----------------------------------------------------------------------------- rules


def description(owner: str, expires: int) -> str:
    return f"{TAG} owner={owner} expires={expires}"


def ci_rule(cidr: str, owner: str, expires: int) -> dict[str, Any]:
    return {
        "direction": "in",
        "protocol": "tcp",
        "port": "22",
        "source_ips": [cidr],
        "description": description(owner, expires),
    }


def as_request(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule as the API returns it, in the shape set_rules takes back (FirewallRuleRequest:
    absent port/description and empty address lists are left out)."""
    out: dict[str, Any] = {"direction": rule["direction"], "protocol": rule["protocol"]}
    for key in ("port", "description"):
        if rule.get(key) is not None:
            out[key] = rule[key]
    for key in ("source_ips", "destination_ips"):
        if rule.get(key):
            out[key] = list(rule[key])
    return out


def tag_of(rule: dict[str, Any]) -> tuple[str, int] | None:
    """(owner, expires) of a rule CI wrote, or None for anyone else's."""
    match = DESCRIPTION.match(rule.get("description") or "")
    return (match["owner"], int(match["expires"])) if match else None


def is_clean_ci_rule(rule: dict[str, Any]) -> bool:
    """Exactly what `open` writes: inbound tcp/22 from one address."""
    sources = rule.get("source_ips") or []
    if rule.get("direction") != "in" or rule.get("protocol") != "tcp" or rule.get("port") != "22":
        return False
    if len(sources) != 1 or rule.get("destination_ips"):
        return False
    try:
        network = ipaddress.ip_network(sources[0], strict=True)
    except ValueError:
        return False
    return network.prefixlen == network.max_prefixlen


def keep(rules: Sequence[dict[str, Any]], owner: str, now: float) -> list[dict[str, Any]]:
    """The rules to write back: all but `owner`'s and CI rules past their expiry (in request
    shape). A rule CI did not write always stays."""
    kept = []
    for rule in rules:
        tag = tag_of(rule)
        if tag is None or (tag[0] != owner and tag[1] >= now):
            kept.append(as_request(rule))
    return kept


# ----------------------------------------------------------------------------- the firewall


@dataclass
class Window:
    api: Api
    stack: str
    clock: Callable[[], float] = field(default=time.time)

    def firewall(self) -> dict[str, Any]:
        selector = f"{ROLE_LABEL}={ROLE},stack={self.stack}"
        found = self.api.call("GET", "/firewalls?" + urllib.parse.urlencode({"label_selector": selector}))
        firewalls = found.get("firewalls", [])
        if len(firewalls) != 1:
            names = [f.get("name") for f in firewalls]
            raise WindowError(
                f"expected one firewall labelled {selector}, found {len(firewalls)} {names}; "
                "a stack gets its CI firewall from its first `pulumi up`, run from an address in admin_cidrs "
                "(README, Creating staging or prod)"
            )
        firewall: dict[str, Any] = firewalls[0]
        return firewall

    def rules(self, firewall_id: int) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = self.api.call("GET", f"/firewalls/{firewall_id}")["firewall"]["rules"]
        return rules

    @contextmanager
    def locked(self, firewall: dict[str, Any], owner: str) -> Iterator[None]:
        """Holds `<ci firewall>-lock` for one read-modify-write of the rules."""
        name = f"{firewall['name']}-lock"
        lock_id = None
        for _ in self.api.pacing.attempts():
            expires = str(int(self.clock()) + LOCK_TTL_SECONDS)
            body = {"name": name, "labels": {LOCK_LABEL: "true", "owner": owner, "expires": expires}}
            try:
                lock_id = int(self.api.call("POST", "/firewalls", body, retry=False)["firewall"]["id"])
                break
            except ApiError as error:
                busy = error.code == "uniqueness_error"
                if not (busy or error.code in RETRYABLE or error.status in RETRYABLE_STATUS or error.status == 0):
                    raise
                if busy:
                    self._break_stale_lock(name)
        if lock_id is None:
            raise WindowError(f"could not take the lock {name} before the deadline (another job holds it)")
        try:
            yield
        finally:
            try:
                self.api.call("DELETE", f"/firewalls/{lock_id}")
            except ApiError as error:
                # Not worth hiding the error that got us here: the lock expires by itself.
                if error.status != 404:
                    print(f"ssh-window: could not release {name} ({error}); it expires on its own", file=sys.stderr)

    def _break_stale_lock(self, name: str) -> None:
        holders = self.api.call("GET", "/firewalls?" + urllib.parse.urlencode({"name": name})).get("firewalls", [])
        for holder in holders:
            expires = (holder.get("labels") or {}).get("expires", "0")
            if not expires.isdigit() or int(expires) < self.clock():
                # By id: if another job broke it first and took a new lock, that one has another id.
                try:
                    self.api.call("DELETE", f"/firewalls/{int(holder['id'])}")
                except ApiError as error:
                    if error.status != 404:
                        raise
                print(f"ssh-window: removed the stale lock of {holder.get('labels', {}).get('owner')}", file=sys.stderr)

    def _apply(self, firewall_id: int, current: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> bool:
        """Write `wanted` unless it is already there; True when something was written."""
        if [as_request(r) for r in current] == wanted:
            return False
        response = self.api.call("POST", f"/firewalls/{firewall_id}/actions/set_rules", {"rules": wanted})
        self.api.wait_for(response.get("actions", []))
        return True

    def open(self, owner: str, address: str, ttl_seconds: int) -> str:
        firewall = self.firewall()
        network = ipaddress.ip_network(address)
        cidr = str(network)
        for _ in self.api.pacing.attempts():
            now = self.clock()
            with self.locked(firewall, owner):
                current = self.rules(int(firewall["id"]))
                wanted = keep(current, owner, now)
                wanted.append(ci_rule(cidr, owner, int(now) + ttl_seconds))
                self._apply(int(firewall["id"]), current, wanted)
                landed = self.rules(int(firewall["id"]))
            warn_foreign(firewall["name"], landed)
            if any(tag_of(r) == (owner, int(now) + ttl_seconds) and r.get("source_ips") == [cidr] for r in landed):
                return f"ssh-window: opened 22/tcp for {cidr} on {firewall['name']} until {int(now) + ttl_seconds}"
        raise WindowError(f"the rule for {cidr} did not stay on {firewall['name']} (rewritten by someone else?)")

    def close(self, owner: str) -> str:
        firewall = self.firewall()
        for _ in self.api.pacing.attempts():
            now = self.clock()
            with self.locked(firewall, owner):
                current = self.rules(int(firewall["id"]))
                wanted = keep(current, owner, now)
                wrote = self._apply(int(firewall["id"]), current, wanted)
                landed = self.rules(int(firewall["id"]))
            warn_foreign(firewall["name"], landed)
            left = [t for t in map(tag_of, landed) if t is not None and (t[0] == owner or t[1] < now)]
            if not left:
                removed = len(current) - len(wanted)
                what = f"removed {removed} rule(s)" if wrote else "nothing to remove"
                return f"ssh-window: {what} on {firewall['name']}"
        raise WindowError(f"rules of {owner} are still on {firewall['name']} at the deadline")

    def audit(self) -> list[str]:
        firewall = self.firewall()
        problems = []
        for rule in self.rules(int(firewall["id"])):
            tag = tag_of(rule)
            shown = json.dumps(as_request(rule), sort_keys=True)
            if tag is None:
                problems.append(f"{firewall['name']}: a rule CI did not write: {shown}")
            elif not is_clean_ci_rule(rule):
                problems.append(f"{firewall['name']}: a CI-tagged rule wider than one address on 22/tcp: {shown}")
        return problems


def warn_foreign(name: str, rules: Sequence[dict[str, Any]]) -> None:
    """A rule CI did not write on the CI firewall is invisible to Pulumi (it ignores these rules):
    say so loudly; `audit` (run by drift) fails on it. It is left alone: a person put it there."""
    for rule in rules:
        if tag_of(rule) is None:
            prefix = "::warning::" if os.environ.get("GITHUB_ACTIONS") == "true" else ""
            print(f"{prefix}ssh-window: {name} holds a rule CI did not write: {json.dumps(as_request(rule))}")


# ----------------------------------------------------------------------------- the runner's address


def public_address(sources: Sequence[str], agree: int, timeout: float = 10.0) -> str:
    """This machine's public address as seen by `agree` of the echo services (in order)."""
    seen: dict[str, int] = {}
    answers = []
    for source in sources:
        _check_url(source, "an address source")
        try:
            with urllib.request.urlopen(source, timeout=timeout) as response:
                text = response.read(100).decode(errors="replace").strip()
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            answers.append(f"{source}: {error}")
            continue
        try:
            address = str(validated_address(text))
        except UsageError as error:
            answers.append(f"{source}: {error}")
            continue
        answers.append(f"{source}: {address}")
        seen[address] = seen.get(address, 0) + 1
        if seen[address] >= agree:
            return address
    raise WindowError(f"no {agree} address sources agree on this runner's address: " + "; ".join(answers))


def validated_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise UsageError(f"not an IP address: {text[:60]!r}") from None
    if not address.is_global or address.is_multicast:
        raise UsageError(f"{address} is not a public unicast address")
    return address


def owner_from_env(stack: str) -> str:
    parts = [os.environ.get(k, "") for k in ("GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT", "GITHUB_JOB")]
    if not all(parts):
        raise UsageError("no --owner, and GITHUB_RUN_ID/GITHUB_RUN_ATTEMPT/GITHUB_JOB are not all set")
    return checked_owner("-".join([*parts, stack]))


def checked_owner(owner: str) -> str:
    # A Hetzner label value: 1-63 characters, alphanumeric at both ends, `-_.` inside.
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?", owner):
        raise UsageError(f"owner {owner!r} must be 1-63 of A-Z a-z 0-9 . _ - (alphanumeric at both ends)")
    return owner


# ----------------------------------------------------------------------------- command line


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ssh_window.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["open", "close", "audit"])
    parser.add_argument("--stack", required=True, help="the stack whose CI firewall to use")
    parser.add_argument("--owner", help="who the rule belongs to (default: run-attempt-job-stack from GitHub)")
    parser.add_argument("--ttl-minutes", type=int, default=60, help="open: the rule's expiry (longer than the job)")
    parser.add_argument("--ip", help="open: this address instead of asking the echo services")
    parser.add_argument("--ip-source", action="append", help="open: an address echo service (repeatable)")
    parser.add_argument("--agree", type=int, default=2, help="open: how many echo services must agree")
    parser.add_argument("--deadline-seconds", type=float, default=180.0)
    parser.add_argument("--pause-seconds", type=float, default=1.0, help="first pause between retries")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,63}", args.stack):
        parser.error(f"--stack {args.stack!r} is not a stack name")
    if not 1 <= args.ttl_minutes <= 24 * 60:
        parser.error("--ttl-minutes must be between 1 and 1440")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        token = os.environ.get("HCLOUD_TOKEN", "")
        if not token:
            raise UsageError("HCLOUD_TOKEN is not set (the read-write token of the stack's Hetzner project)")
        pacing = Pacing(args.deadline_seconds, args.pause_seconds, max(args.pause_seconds, 5.0))
        window = Window(Api(os.environ.get("HCLOUD_ENDPOINT") or DEFAULT_ENDPOINT, token, pacing), args.stack)
        if args.command == "audit":
            problems = window.audit()
            for problem in problems:
                print(f"ssh-window: {problem}", file=sys.stderr)
            if problems:
                return EXIT_AUDIT
            print(f"ssh-window: the CI firewall of {args.stack} holds only CI's own rules")
            return 0
        owner = checked_owner(args.owner) if args.owner else owner_from_env(args.stack)
        if args.command == "open":
            if args.ip:
                address = str(validated_address(args.ip))
            else:
                address = public_address(args.ip_source or IP_SOURCES, args.agree)
            print(window.open(owner, address, args.ttl_minutes * 60))
        else:
            print(window.close(owner))
        return 0
    except UsageError as error:
        print(f"ssh-window: {error}", file=sys.stderr)
        return EXIT_USAGE
    except WindowError as error:
        print(f"ssh-window: {args.command} failed: {error}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
