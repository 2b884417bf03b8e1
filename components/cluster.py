"""Cluster: the nodes of the swarm beside the host, when the stack declares node pools.

- an hcloud Network and its cloud subnet in the host's network zone; the host (the primary:
  public IPs, proxy, data volume) joins it at a fixed address, the first after Hetzner's
  gateway, and swarm is made to advertise that address (other nodes reach the primary over the
  private network only: no public firewall rule opens a swarm port);
- per node: an SSH host key (pinned like the host's), the server with a join-mode cloud-init
  (no data volume, swarm ports admitted from the private network only, by ufw), its attachment
  to the subnet, a readiness step, the join (the token read on the primary with logging off and
  kept secret, handed over on stdin), and its membership, a command on the primary that labels
  the node ``keel.node=<name>`` plus its pool's labels, and whose delete drains the node, waits
  for its tasks to move, and removes it from the swarm before its server is destroyed;
- one firewall for the pool nodes: SSH from the admins, ping; nothing else reaches them from the
  internet (the proxy runs on the primary, where the public IPs and DNS point).

Pool nodes are cattle: no delete protection, no Hetzner Volume; a node replaced or removed is
drained first.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import pulumi
import pulumi_command as command
import pulumi_hcloud as hcloud
import pulumi_tls as tls

from components import swarm
from components.access import ping_rule, pinned_connection, ssh_rule
from config.models import NETWORK_ZONES, HcloudHostSpec, NodeSpec
from render import cluster
from render.cloud_init import CloudInitSpec, render_cloud_init, swarm_firewall_script

if TYPE_CHECKING:
    from components.host import Host

NODE_ROLE_LABEL = "keel-node-role"


def subnet_of(private_network: str) -> ipaddress.IPv4Network:
    """The nodes' subnet: the first /24 of the private network (config refuses one smaller than /23)."""
    network = ipaddress.IPv4Network(private_network)
    return next(network.subnets(new_prefix=24))


def primary_address(private_network: str) -> str:
    """The primary's address on the private network: Hetzner gives a subnet's first address to its
    gateway, so the second."""
    return str(subnet_of(private_network).network_address + 2)


class Cluster(pulumi.ComponentResource):
    """Outputs: ``network`` (hcloud.Network), ``servers`` by node name, ``memberships`` by node name
    (the commands that label each node; anything that must run after a node is in the swarm depends on
    them), and ``private_addresses`` by node name."""

    def __init__(
        self,
        name: str,
        *,
        spec: HcloudHostSpec,
        host: Host,
        nodes: list[NodeSpec],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("keel:index:Cluster", name, {}, opts)
        assert host.server is not None and host.ci_firewall is not None, "a cluster needs the hcloud host"
        self._name = name
        self._spec = spec
        self._host = host
        child = pulumi.ResourceOptions(parent=self)
        primary = nodes[0]
        subnet_range = subnet_of(spec.private_network)
        self.manager_address = primary_address(spec.private_network)
        self.network = hcloud.Network(
            f"{name}-network",
            hcloud.NetworkArgs(name=f"{primary.name}-private", ip_range=spec.private_network, labels=host.labels),
            opts=child,
        )
        self.subnet = hcloud.NetworkSubnet(
            f"{name}-subnet",
            hcloud.NetworkSubnetArgs(
                network_id=self.network.id.apply(int),
                type="cloud",
                network_zone=NETWORK_ZONES[spec.location],
                ip_range=str(subnet_range),
            ),
            opts=child,
        )
        primary_attachment = hcloud.ServerNetwork(
            f"{name}-primary-network",
            hcloud.ServerNetworkInitArgs(
                server_id=host.server.id.apply(int), subnet_id=self.subnet.id, ip=self.manager_address
            ),
            opts=child,
        )
        # A host created before its pools booted without the swarm's ports open to the private
        # network (its cloud-init is not run again): open them now, as cloud-init does for new servers.
        ports = host.run(
            f"{name}-swarm-ports",
            create=host.image(spec.host_tools_image).apply(
                lambda image: swarm_firewall_script(image, spec.private_network)
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        # The swarm was initialised advertising the public address (cloud-init); other nodes must
        # reach the primary on the private one.
        advertise = host.run(
            f"{name}-advertise",
            create=cluster.advertise_script(),
            stdin=primary_attachment.ip.apply(lambda ip: f"{ip}\n"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[primary_attachment, ports]),
        )
        primary_id = host.run(
            f"{name}-primary-id",
            create=NODE_ID_SCRIPT,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[advertise]),
        )
        self.primary_membership = host.run(
            f"{name}-primary-membership",
            create=cluster.membership_script(node=primary.name, labels=primary.labels),
            stdin=primary_id.stdout,
            # No delete: the primary is never drained by the program (it holds the stores).
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.memberships: dict[str, pulumi.Resource] = {primary.name: self.primary_membership}
        self.private_addresses: dict[str, pulumi.Output[str]] = {primary.name: primary_attachment.ip}
        self.servers: dict[str, hcloud.Server] = {}
        self.ssh_commands: dict[str, pulumi.Output[str]] = {}
        pools = nodes[1:]
        # Both tokens whatever the pools hold now: adding the first node of a role adds that node only.
        tokens = {
            role: host.run(
                f"{name}-{role}-token",
                create=cluster.join_token_script(role),
                secret_stdout=True,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[advertise]),
            )
            for role in ("manager", "worker")
        }
        self.firewall = hcloud.Firewall(
            f"{name}-nodes-firewall",
            hcloud.FirewallArgs(
                name=f"{primary.name}-nodes-firewall",
                labels=host.labels,
                # SSH and ping as on the host; no web port (the proxy runs on the host).
                rules=[ssh_rule(spec), ping_rule()],
            ),
            opts=child,
        )
        for node in pools:
            self._node(node, tokens[node.role].stdout, self.primary_membership)
        self.register_outputs({"network": self.network.id})

    def _node(self, node: NodeSpec, token: pulumi.Output[str], primary_membership: pulumi.Resource) -> None:
        spec, host = self._spec, self._host
        assert host.ci_firewall is not None
        child = pulumi.ResourceOptions(parent=self)
        # Short resource names (the server's own name is the long one): node-<pool>-<n>-...
        prefix = f"node-{node.pool}-{node.index}"
        host_key = tls.PrivateKey(f"{prefix}-host-key", tls.PrivateKeyArgs(algorithm="ED25519"), opts=child)
        rendered = pulumi.Output.all(host_key.private_key_openssh, host_key.public_key_openssh).apply(
            lambda keys: render_cloud_init(
                CloudInitSpec(
                    deploy_user=spec.deploy_user,
                    admin_ssh_keys=tuple(spec.admin_ssh_keys),
                    host_private_key=keys[0],
                    host_public_key=keys[1],
                    advertise_addr=self.manager_address,
                    data_device=None,
                    swap_gib=spec.swap_gib,
                    automatic_reboot=spec.reboot_window is not None,
                    reboot_time=spec.reboot_window or "04:00",
                    swarm="join",
                    private_cidr=spec.private_network,
                )
            )
        )
        server = hcloud.Server(
            f"{prefix}-server",
            hcloud.ServerArgs(
                name=node.name,
                server_type=node.server_type,
                location=node.location,
                image=spec.image,
                ssh_keys=[key.id for key in host.ssh_keys],
                firewall_ids=[self.firewall.id.apply(int), host.ci_firewall.id.apply(int)],
                public_nets=[hcloud.ServerPublicNetArgs(ipv4_enabled=True, ipv6_enabled=True)],
                user_data=swarm.as_secret(rendered),
                labels={**host.labels, NODE_ROLE_LABEL: node.role},
                shutdown_before_deletion=True,
            ),
            # Like the host's: cloud-init shapes the first boot only.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["user_data", "ssh_keys", "image"]),
        )
        self.servers[node.name] = server
        attachment = hcloud.ServerNetwork(
            f"{prefix}-network",
            hcloud.ServerNetworkInitArgs(server_id=server.id.apply(int), subnet_id=self.subnet.id),
            opts=child,
        )
        self.private_addresses[node.name] = attachment.ip
        public_key = host_key.public_key_openssh.apply(lambda k: " ".join(k.split()[:2]))
        connection = pinned_connection(server.ipv4_address, spec.deploy_user, public_key)
        ready = command.remote.Command(
            f"{prefix}-ready",
            command.remote.CommandArgs(
                connection=connection, create=cluster.node_readiness_script(), triggers=[server.id]
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment]),
        )
        join = command.remote.Command(
            f"{prefix}-join",
            command.remote.CommandArgs(
                connection=connection,
                create=cluster.join_script(manager_addr=self.manager_address),
                stdin=swarm.as_secret(pulumi.Output.concat(token, "\n", attachment.ip, "\n")),
                triggers=[server.id],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ready, primary_membership]),
        )
        self.memberships[node.name] = host.run(
            f"{prefix}-membership",
            create=cluster.membership_script(node=node.name, labels=node.labels),
            delete=cluster.removal_script(),
            stdin=join.stdout,
            triggers=[server.id],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[join]),
        )
        self.ssh_commands[node.name] = pulumi.Output.concat("ssh ", spec.deploy_user, "@", server.ipv4_address)


NODE_ID_SCRIPT = "docker info --format '{{.Swarm.NodeID}}'\n"
"""Prints this node's swarm ID (the primary's, for its membership)."""
