"""The configuration of a Docker API proxy: the only way any service reaches the Docker socket.

A read-only mount of /var/run/docker.sock restricts nothing (the API is spoken over it, POST
included), and the Docker API is root on the host. So nothing mounts the socket but a proxy
(tecnativa/docker-socket-proxy: HAProxy in front of the socket), and each client talks to a proxy
of its own that answers only the requests that client makes, on a network the two share alone:

- cAdvisor: its docker factory asks for the daemon's info and version and inspects each container
  (google/cadvisor v0.49.2, container/docker/docker.go and handler.go: ``client.Info``,
  ``ServerVersion``, ``ContainerInspect``). Read-only; no container list, no logs, no archive or
  export (which would hand over a container's files), no exec.
- swarm-cronjob: lists services, tasks and nodes, inspects a service, follows events and scales a
  job by updating its service (crazy-max/swarm-cronjob v1.14.0, internal/docker: ``ServiceList``,
  ``NodeList``, ``TaskList``, ``ServiceInspectWithRaw``, ``Events``, ``ServiceUpdate``).

The image's own template opens whole sections (``CONTAINERS=1`` admits ``/containers/{id}/archive``
and ``/containers/{id}/export``), so the proxy runs with this file instead, mounted over the
image's template; the image's entrypoint still fills in the listen address (``${BIND_CONFIG}``) and
writes the result to /tmp (Tecnativa/docker-socket-proxy v0.4.1, docker-entrypoint.sh).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PORT = 2375
SOCKET = "/var/run/docker.sock"
TEMPLATE_PATH = "/usr/local/etc/haproxy/haproxy.cfg.template"
"""Where the image's entrypoint reads the template it turns into /tmp/haproxy.cfg."""
VERSION_PREFIX = r"^(/v[0-9]+\.[0-9]+)?"
"""API paths may carry a version (/v1.47/info) or not (/info)."""
OBJECT_ID = r"[a-zA-Z0-9_-][a-zA-Z0-9_.-]*"
"""A container or service id or name; never "." or "..", never a "/"."""


@dataclass(frozen=True)
class Allow:
    """Requests the proxy lets through: these methods, on paths (after the version) matching ``path``."""

    methods: tuple[str, ...]
    path: str

    def __post_init__(self) -> None:
        for method in self.methods:
            if method not in ("GET", "HEAD", "POST"):
                raise ValueError(f"method {method!r}: expected GET, HEAD or POST")
        re.compile(self.path)
        if not self.path.startswith("/") or " " in self.path:
            raise ValueError(f"path pattern {self.path!r}: expected a pattern of an API path, without spaces")

    @property
    def regex(self) -> str:
        return f"{VERSION_PREFIX}{self.path}$"


PING = Allow(("GET", "HEAD"), "/(_ping|version)")
CADVISOR = (
    PING,
    Allow(("GET",), "/info"),
    Allow(("GET",), f"/containers/{OBJECT_ID}/json"),
)
SCHEDULER = (
    PING,
    Allow(("GET",), "/(services|tasks|nodes|events)"),
    Allow(("GET",), f"/services/{OBJECT_ID}"),
    Allow(("POST",), f"/services/{OBJECT_ID}/update"),
)


NODE_SOCKET_DIR = "/run/keel-docker-api"
"""Where a node-local proxy listens on a Unix socket, in a volume it shares with its client on the
same node (a local volume exists per node: the client reaches its own node's proxy, never another's)."""
_SOCKET_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def node_socket(name: str) -> str:
    """The Unix socket of node-local proxy ``name`` inside NODE_SOCKET_DIR."""
    if not _SOCKET_NAME.fullmatch(name):
        raise ValueError(f"socket name {name!r}: expected lower-case letters, digits and -")
    return f"{NODE_SOCKET_DIR}/{name}.sock"


def render_haproxy_template(
    purpose: str, rules: tuple[Allow, ...], *, unix_socket: str | None = None, docker_socket: str = SOCKET
) -> str:
    """The proxy's HAProxy configuration: the allowed requests, every other one refused with 403.

    ``unix_socket``: also listen there (mode 666: the client runs as another user), for a client on
    the same node; ``docker_socket``: the daemon's socket (the tests point it at a stand-in)."""
    if not re.fullmatch(r"[A-Za-z0-9 ,.'()-]+", purpose):
        raise ValueError(f"purpose {purpose!r}: expected plain words")
    for path in (unix_socket, docker_socket):
        if path is not None and not re.fullmatch(r"/[A-Za-z0-9._/-]+", path):
            raise ValueError(f"socket path {path!r}: expected an absolute path of plain characters")
    also = f"\n    bind unix@{unix_socket} mode 666" if unix_socket else ""
    allows = "\n".join(
        f"    http-request allow if {{ method {' '.join(rule.methods)} }} {{ path,url_dec -m reg {rule.regex} }}"
        for rule in rules
    )
    return f"""# Rendered by keel (render/docker_api.py): the Docker API proxy for {purpose}.
# Only the requests below reach the socket; anything else is refused with 403.
global
    log stdout format raw daemon info
    pidfile /tmp/haproxy.pid
    maxconn 64

defaults
    mode http
    log global
    option httplog
    option dontlognull
    option http-server-close
    timeout http-request 10s
    timeout queue 1m
    timeout connect 10s
    timeout client 10m
    timeout server 10m
    timeout http-keep-alive 10s

backend docker
    server docker {docker_socket}

backend docker-events
    server docker {docker_socket}
    timeout server 0

frontend docker-api
    bind ${{BIND_CONFIG}}{also}
{allows}
    http-request deny
    use_backend docker-events if {{ path,url_dec -m reg {VERSION_PREFIX}/events$ }}
    default_backend docker
"""


def health_command() -> list[str]:
    """Healthy when the proxy answers and the daemon behind it does (GET /_ping through the rules)."""
    return ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{PORT}/_ping"]


def endpoint(service: str) -> str:
    """The address a client gives its Docker client (DOCKER_HOST, cAdvisor's --docker)."""
    return f"tcp://{service}:{PORT}"


def node_endpoint(name: str) -> str:
    """The address of a node-local proxy, for a client on the same node."""
    return f"unix://{node_socket(name)}"
