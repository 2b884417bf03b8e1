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


ENCRYPTED = {"encrypted": ""}
"""The overlay driver option that turns on IPsec (ESP) between nodes for the network's traffic; the
form ``docker network create --opt encrypted`` sends (an option without a value)."""
ENCRYPTED_LABEL = "keel.encrypted"
IGNORED = ["options"]
"""A network's ``options`` are sent on create only. Read stores the daemon's options, which add the
VXLAN id swarm allocates (kreuzwerker v4.5.0 resource_docker_network_funcs.go,
resourceDockerNetworkReadRefreshFunc), and ``options`` is an Optional+Computed+ForceNew map
(resource_docker_network.go): sent as a map, it would differ from the state by that key on every
preview and replace the network. Ignoring it, turning encryption on or off is made a replacement by
the ``keel.encrypted`` label instead (labels are ForceNew too)."""


def overlay_options(encrypted: bool) -> dict[str, str] | None:
    """Driver options of an overlay network: encrypted once the swarm has more than one node (traffic
    between nodes crosses the private network); none on one node, where it never leaves the host."""
    return dict(ENCRYPTED) if encrypted else None


def encryption_labels(encrypted: bool) -> list[docker.NetworkLabelArgs]:
    """The label that records encryption (see IGNORED); none on an unencrypted network."""
    return [docker.NetworkLabelArgs(label=ENCRYPTED_LABEL, value="true")] if encrypted else []


def overlay_opts(opts: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
    """``opts`` with the network's options ignored after create (see IGNORED)."""
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=IGNORED))


def overlay(
    resource_name: str,
    *,
    name: pulumi.Input[str],
    role: str,
    internal: bool,
    encrypted: bool,
    opts: pulumi.ResourceOptions,
) -> docker.Network:
    """One overlay network labelled with its role. Every argument of a network forces its replacement
    (kreuzwerker/terraform-provider-docker v4.5.0, resource_docker_network.go: all ForceNew), so
    turning encryption on replaces it (once, when node pools are first declared)."""
    return docker.Network(
        resource_name,
        docker.NetworkArgs(
            name=name,
            driver="overlay",
            internal=internal,
            attachable=False,
            options=overlay_options(encrypted),
            labels=[
                docker.NetworkLabelArgs(label=MANAGED_LABEL, value="true"),
                docker.NetworkLabelArgs(label=NETWORK_ROLE_LABEL, value=role),
                *encryption_labels(encrypted),
            ],
        ),
        opts=overlay_opts(opts),
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
        encrypted: bool,
        egress: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("keel:index:Networks", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.edge = overlay(
            f"{name}-edge", name=names.network("edge"), role="edge", internal=False, encrypted=encrypted, opts=child
        )
        self.data = overlay(
            f"{name}-data", name=names.network("data"), role="data", internal=True, encrypted=encrypted, opts=child
        )
        self.monitoring = (
            overlay(
                f"{name}-monitoring",
                name=names.network("monitoring"),
                role="monitoring",
                internal=True,
                encrypted=encrypted,
                opts=child,
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
                    options=overlay_options(encrypted),
                    # The only non-internal network a store may join (policy/rules.py, stores-on-internal-networks).
                    labels=[
                        docker.NetworkLabelArgs(label=MANAGED_LABEL, value="true"),
                        docker.NetworkLabelArgs(label=NETWORK_ROLE_LABEL, value="egress"),
                        docker.NetworkLabelArgs(label="keel.wal-archive", value="egress"),
                        *encryption_labels(encrypted),
                    ],
                ),
                opts=overlay_opts(child),
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
