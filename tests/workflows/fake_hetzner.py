"""A fake of the few Hetzner Cloud API endpoints tools/ssh_window.py uses, on loopback.

Shapes follow hcloud-go v2.47.0 (hcloud/schema/firewall.go, action.go, error.go), the client that
terraform-provider-hcloud v1.68.0 uses: firewalls carry `rules` with both address lists (empty when
unused) and `port`/`description` as null when absent; set_rules answers 201 with its actions,
which run until polled; errors are {"error": {"code", "message", "details"}} with the API's status
codes. Rules are validated the way the API refuses them (invalid_input), so a client that sends
back a rule in the wrong shape fails here as it would there. Firewall names are unique
(uniqueness_error, 409), which is what the client's lock relies on.

Faults can be queued per endpoint, reads can be slowed (to widen races), a hook can rewrite
the rules right after a write (someone editing the firewall behind CI's back), and every rule
write records who held the client's lock at that moment.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STATUS = {
    "invalid_input": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "uniqueness_error": 409,
    "locked": 423,
    "rate_limit_exceeded": 429,
    "bad_gateway": 502,
}


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


class ApiFaultError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    code: str
    times: int


@dataclass
class FakeHetzner:
    token: str = "test-token-3f9c"
    firewalls: dict[int, dict[str, Any]] = field(default_factory=dict)
    actions: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Polls an action answers "running" before "success".
    action_polls: int = 1
    action_error: dict[str, str] | None = None
    read_latency: float = 0.0
    echo: dict[str, str] = field(default_factory=dict)
    after_set_rules: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    refused: int = 0
    # Per rule write: the owner label of `<firewall>-lock` at that moment (None: no lock held),
    # and the owners named in the written rules' descriptions.
    writes: list[tuple[str | None, list[str]]] = field(default_factory=list)
    _next_id: int = 1000
    _lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    # ------------------------------------------------------------------ test helpers

    def add_firewall(self, name: str, labels: dict[str, str], rules: list[dict[str, Any]] | None = None) -> int:
        with self._lock:
            return self._create(name, labels, [self._stored(r) for r in rules or []])

    def rules(self, firewall_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return json.loads(json.dumps(self.firewalls[firewall_id]["rules"]))

    def fail_next(self, method: str, path: str, code: str, times: int = 1) -> None:
        self.faults.append(Fault(method, re.compile(path), code, times))

    def calls(self, method: str, path_regex: str) -> list[Any]:
        return [body for m, p, body in self.requests if m == method and re.fullmatch(path_regex, p)]

    # ------------------------------------------------------------------ model

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _create(self, name: str, labels: dict[str, str], rules: list[dict[str, Any]]) -> int:
        if any(f["name"] == name for f in self.firewalls.values()):
            raise ApiFaultError("uniqueness_error", "name is already used")
        fid = self._id()
        self.firewalls[fid] = {
            "id": fid, "name": name, "labels": dict(labels), "created": now_iso(), "rules": rules,
            "applied_to": [{"type": "server", "server": {"id": 42}}] if labels.get("keel-role") else [],
        }  # fmt: skip
        return fid

    @staticmethod
    def _stored(rule: dict[str, Any]) -> dict[str, Any]:
        """A validated request rule as the API keeps and returns it."""
        FakeHetzner._validate(rule)
        return {
            "direction": rule["direction"],
            "source_ips": [str(ipaddress.ip_network(ip)) for ip in rule.get("source_ips", [])],
            "destination_ips": [str(ipaddress.ip_network(ip)) for ip in rule.get("destination_ips", [])],
            "protocol": rule["protocol"],
            "port": rule.get("port"),
            "description": rule.get("description"),
        }

    @staticmethod
    def _validate(rule: Any) -> None:
        if not isinstance(rule, dict):
            raise ApiFaultError("invalid_input", "rule must be an object")
        allowed = {"direction", "protocol", "port", "source_ips", "destination_ips", "description"}
        if set(rule) - allowed:
            raise ApiFaultError("invalid_input", f"unknown fields {sorted(set(rule) - allowed)}")
        if rule.get("direction") not in ("in", "out"):
            raise ApiFaultError("invalid_input", "direction must be in or out")
        protocol = rule.get("protocol")
        if protocol not in ("tcp", "udp", "icmp", "esp", "gre"):
            raise ApiFaultError("invalid_input", "invalid protocol")
        port = rule.get("port")
        if protocol in ("tcp", "udp"):
            if not isinstance(port, str) or not re.fullmatch(r"(any|\d{1,5}(-\d{1,5})?)", port):
                raise ApiFaultError("invalid_input", "port is required for tcp and udp")
        elif "port" in rule:
            raise ApiFaultError("invalid_input", f"port is not allowed for {protocol}")
        wanted, unwanted = ("source_ips", "destination_ips")
        if rule["direction"] == "out":
            wanted, unwanted = unwanted, wanted
        if not rule.get(wanted):
            raise ApiFaultError("invalid_input", f"{wanted} is required for direction {rule['direction']}")
        if rule.get(unwanted):
            raise ApiFaultError("invalid_input", f"{unwanted} is not allowed for direction {rule['direction']}")
        for ip in rule.get(wanted, []):
            try:
                ipaddress.ip_network(ip, strict=True)
            except ValueError:
                raise ApiFaultError("invalid_input", f"{ip!r} is not a valid network") from None
        description = rule.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 255):
            raise ApiFaultError("invalid_input", "description must be a string of at most 255 characters")

    def _action(self, command: str, resource: dict[str, Any]) -> dict[str, Any]:
        aid = self._id()
        action = {
            "id": aid, "command": command, "status": "running", "progress": 0, "started": now_iso(),
            "finished": None, "resources": [resource], "error": None, "_polls": self.action_polls,
        }  # fmt: skip
        self.actions[aid] = action
        return self._public(action)

    @staticmethod
    def _public(action: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in action.items() if not k.startswith("_")}

    # ------------------------------------------------------------------ endpoints

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        for fault in self.faults:
            if fault.method == method and fault.path.fullmatch(path) and fault.times > 0:
                fault.times -= 1
                raise ApiFaultError(fault.code, f"injected {fault.code}")
        if method == "GET" and path == "/v1/firewalls":
            return 200, {"firewalls": self._list(query), "meta": {"pagination": {"page": 1, "per_page": 25}}}
        if method == "POST" and path == "/v1/firewalls":
            if not isinstance(body, dict) or not isinstance(body.get("name"), str):
                raise ApiFaultError("invalid_input", "name is required")
            rules = [self._stored(r) for r in body.get("rules", [])]
            fid = self._create(body["name"], body.get("labels") or {}, rules)
            return 201, {"firewall": self.firewalls[fid], "actions": []}
        match = re.fullmatch(r"/v1/firewalls/(\d+)", path)
        if match:
            fid = int(match[1])
            if fid not in self.firewalls:
                raise ApiFaultError("not_found", "firewall not found")
            if method == "GET":
                return 200, {"firewall": self.firewalls[fid]}
            if method == "DELETE":
                del self.firewalls[fid]
                return 204, None
        match = re.fullmatch(r"/v1/firewalls/(\d+)/actions/set_rules", path)
        if match and method == "POST":
            fid = int(match[1])
            if fid not in self.firewalls:
                raise ApiFaultError("not_found", "firewall not found")
            if not isinstance(body, dict) or not isinstance(body.get("rules"), list) or len(body["rules"]) > 50:
                raise ApiFaultError("invalid_input", "rules must be a list of at most 50 rules")
            self.firewalls[fid]["rules"] = [self._stored(r) for r in body["rules"]]
            lock = [f for f in self.firewalls.values() if f["name"] == self.firewalls[fid]["name"] + "-lock"]
            described = [r.get("description") or "" for r in body["rules"]]
            named = [m[1] for text in described if (m := re.match(r"keel-ci owner=(\S+) ", text))]
            self.writes.append((lock[0]["labels"].get("owner") if lock else None, named))
            actions = [self._action("set_firewall_rules", {"id": fid, "type": "firewall"})]
            actions += [self._action("apply_firewall", {"id": 42, "type": "server"})]
            for hook in list(self.after_set_rules):
                self.after_set_rules.remove(hook)
                hook(self.firewalls[fid])
            return 201, {"actions": actions}
        match = re.fullmatch(r"/v1/actions/(\d+)", path)
        if match and method == "GET":
            action = self.actions.get(int(match[1]))
            if action is None:
                raise ApiFaultError("not_found", "action not found")
            if action["status"] == "running":
                action["_polls"] -= 1
                if action["_polls"] < 0:
                    error = self.action_error
                    action.update(status="error" if error else "success", progress=100, finished=now_iso(), error=error)
            return 200, {"action": self._public(action)}
        raise ApiFaultError("not_found", f"no route {method} {path}")

    def _list(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        found = list(self.firewalls.values())
        if "name" in query:
            found = [f for f in found if f["name"] == query["name"][0]]
        if "label_selector" in query:
            for term in query["label_selector"][0].split(","):
                key, _, value = term.replace("==", "=").partition("=")
                found = [f for f in found if f["labels"].get(key) == value]
        return found


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHetzner

    def _serve(self, method: str) -> None:
        parts = urllib.parse.urlsplit(self.path)
        if method == "GET" and parts.path.startswith("/ip/"):
            text = self.fake.echo.get(parts.path[4:], "")
            self._send(200 if text else 404, text.encode(), "text/plain")
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.headers.get("Authorization") != f"Bearer {self.fake.token}":
            self.fake.refused += 1
            self._error("unauthorized", "unable to authenticate")
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._error("json_error", "invalid JSON")
            return
        if method == "GET" and self.fake.read_latency:
            time.sleep(self.fake.read_latency)  # a slow network, so that unlocked writers would interleave
        with self.fake._lock:
            self.fake.requests.append((method, parts.path, body))
            try:
                status, payload = self.fake.handle(method, parts.path, urllib.parse.parse_qs(parts.query), body)
            except ApiFaultError as fault:
                self._error(fault.code, fault.message)
                return
        if payload is None:
            self._send(status, b"", None)
        else:
            self._send(status, json.dumps(payload).encode(), "application/json")

    def _error(self, code: str, message: str) -> None:
        body = json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
        self._send(STATUS.get(code, 400), body, "application/json")

    def _send(self, status: int, body: bytes, content_type: str | None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def serve(fake: FakeHetzner) -> Iterator[FakeHetzner]:
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
