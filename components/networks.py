"""The overlay networks of a stack, one per role, so each service reaches only what its role needs.

- edge: the proxy and the apps it routes to. Not internal: the proxy's host-mode ports are
  published through the container's gateway endpoint (docker_gwbridge), which Docker gives a
  container only when one of its networks is not internal (moby libnetwork, sandbox
  ``needDefaultGW``), and apps reach the internet through it (payment APIs, e-mail, an external
  database). The proxy is on no other network of the apps or the stores.
- data: the apps, the stores, the stores' exporters and the backup jobs. Internal: nothing on it
  has a way out, and the proxy is not on it.
- monitoring (with observability): Prometheus, Grafana, the exporters, and every app with a
  metrics_path, which Prometheus scrapes there. Internal.
- egress (only with point-in-time recovery): the PostgreSQL stores whose WAL is archived to S3
  (archive_command runs in the store), and nothing else.

Narrower networks belong to the components that own them: Alertmanager's (with Prometheus only),
the proxy's link to its own exporters and Grafana, the Docker API proxies', and the egress
networks of backups, alert delivery and certificate renewal. None is attachable: every task
that joins one is a swarm service (migrations included), so no `docker run` can.
"""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from config.names import Names

MANAGED_LABEL = "keel.managed"
NETWORK_ROLE_LABEL = "keel.network"
"""The role of a network (edge, data, monitoring, ...): what the policy pack reads to keep stores off the edge."""


def overlay(
    resource_name: str, *, name: pulumi.Input[str], role: str, internal: bool, opts: pulumi.ResourceOptions
) -> docker.Network:
    """One overlay network labelled with its role. Every argument of a network forces its replacement
    (kreuzwerker/terraform-provider-docker v4.5.0, resource_docker_network.go: all ForceNew)."""
    return docker.Network(
        resource_name,
        docker.NetworkArgs(
            name=name,
            driver="overlay",
            internal=internal,
            attachable=False,
            labels=[
                docker.NetworkLabelArgs(label=MANAGED_LABEL, value="true"),
                docker.NetworkLabelArgs(label=NETWORK_ROLE_LABEL, value=role),
            ],
        ),
        opts=opts,
    )


class Networks(pulumi.ComponentResource):
    """Outputs: ``edge``, ``data`` and ``monitoring`` (None without observability); docker.Network,
    referenced by ``id``."""

    edge: docker.Network
    data: docker.Network
    monitoring: docker.Network | None
    egress: docker.Network | None

    def __init__(
        self,
        name: str,
        *,
        names: Names,
        monitoring: bool,
        egress: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("keel:index:Networks", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.edge = overlay(f"{name}-edge", name=names.network("edge"), role="edge", internal=False, opts=child)
        self.data = overlay(f"{name}-data", name=names.network("data"), role="data", internal=True, opts=child)
        self.monitoring = (
            overlay(
                f"{name}-monitoring", name=names.network("monitoring"), role="monitoring", internal=True, opts=child
            )
            if monitoring
            else None
        )
        # PostgreSQL stores whose WAL is archived must reach S3 (archive_command runs in the store).
        self.egress = None
        if egress:
            self.egress = docker.Network(
                f"{name}-pitr-egress",
                docker.NetworkArgs(
                    name=names.pitr_egress_network,
                    driver="overlay",
                    attachable=False,
                    # The only non-internal network a store may join (policy/rules.py, stores-on-internal-networks).
                    labels=[
                        docker.NetworkLabelArgs(label=MANAGED_LABEL, value="true"),
                        docker.NetworkLabelArgs(label=NETWORK_ROLE_LABEL, value="egress"),
                        docker.NetworkLabelArgs(label="keel.wal-archive", value="egress"),
                    ],
                ),
                opts=child,
            )
        self.register_outputs(
            {
                "edge": self.edge.id,
                "data": self.data.id,
                "monitoring": self.monitoring.id if self.monitoring is not None else None,
                "egress": self.egress.id if self.egress is not None else None,
            }
        )

    def by_role(self, role: str) -> docker.Network:
        """The network an app's config names (edge or data)."""
        return {"edge": self.edge, "data": self.data}[role]
