"""A Docker API proxy for one client: the only service that mounts the Docker socket.

See render/docker_api.py for why, and for what each proxy answers. The proxy and its client share
an internal network of their own, so no other service can reach the proxy at all.
"""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components import swarm
from components.host import Host
from components.networks import overlay
from config.capacity import DOCKER_API_PROXY_MB
from config.models import Resources
from render import docker_api

ROLE = "socket-proxy"
"""The ``keel.role`` of a Docker API proxy: the policy pack lets no other role mount the socket."""


class DockerApiProxy:
    """The proxy service and the network its client joins (``network``) to reach it at ``endpoint``."""

    service: docker.Service
    network: docker.Network
    endpoint: str

    def __init__(
        self,
        resource_name: str,
        *,
        service_name: str,
        network_name: str,
        purpose: str,
        rules: tuple[docker_api.Allow, ...],
        image: str,
        host: Host,
        parent: pulumi.Resource,
        node_local: str | None = None,
    ) -> None:
        """``node_local``: a volume name; the proxy then runs on every node (global) and also listens on
        a Unix socket in that volume, which a client on the same node mounts (``socket_mount``): a
        node's client reaches its own node's daemon. Otherwise one proxy, on the host."""
        child = pulumi.ResourceOptions(parent=parent)
        self.network = overlay(
            f"{resource_name}-network",
            name=network_name,
            role="docker-api",
            internal=True,
            encrypted=host.cluster is not None,
            opts=child,
        )
        socket = docker_api.node_socket(service_name) if node_local else None
        template = docker.ServiceConfig(
            f"{resource_name}-haproxy.cfg",
            docker.ServiceConfigArgs(
                data=swarm.b64(docker_api.render_haproxy_template(purpose, rules, unix_socket=socket))
            ),
            opts=child,
        )
        self.endpoint = docker_api.node_endpoint(service_name) if node_local else docker_api.endpoint(service_name)
        self.socket_mount = (
            # Read-only is enough to connect (a socket's connect needs no write on the filesystem).
            swarm.volume_mount(node_local, docker_api.NODE_SOCKET_DIR, read_only=True) if node_local else None
        )
        shared = [swarm.volume_mount(node_local, docker_api.NODE_SOCKET_DIR)] if node_local else []
        self.service = swarm.service(
            resource_name,
            name=service_name,
            role=ROLE,
            part=service_name,
            image=host.image(image),
            env={"DISABLE_IPV6": "1", "LOG_LEVEL": "info"},
            configs=[swarm.file_config(template, docker_api.TEMPLATE_PATH)],
            mounts=[
                # The only mount of the socket in the stack; read-only changes nothing for the API
                # (connect(2) needs no write on the file), the rules above do.
                swarm.bind_mount(docker_api.SOCKET, docker_api.SOCKET, read_only=True),
                # The entrypoint writes the filled-in configuration and HAProxy its pid file here.
                swarm.tmpfs_mount("/tmp", 4),
                *shared,
            ],
            health=swarm.Health(tuple(docker_api.health_command()), interval_s=30, timeout_s=5, start_period_s=10),
            # Root (the socket is root's and the docker group's), without a single capability: the
            # socket's owner needs none to connect.
            hardening=swarm.Hardening(user="0:0"),
            resources=Resources(memory_mb=DOCKER_API_PROXY_MB, memory_reservation_mb=DOCKER_API_PROXY_MB // 2),
            # The swarm API is answered by managers only, and the data volume's node is the manager; a
            # node-local proxy runs beside its client on every node.
            replicas=None if node_local else 1,
            constraints=[] if node_local else [host.pin],
            networks=[swarm.Attachment(self.network.id)],
            rollout=swarm.STOP_FIRST,
            opts=child,
        )
