"""Host: the machine the stack runs on, and the Docker provider that reaches it.

hcloud: SSH keys, firewall, primary IPs kept across server replacement, the server with
cloud-init, a data Volume, a readiness step that waits for cloud-init, Docker and the swarm,
and a docker.Provider over SSH whose host is derived from that step, with the host key pinned.

local: no VM; the local engine, put in swarm mode if it is not yet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command
import pulumi_docker as docker
import pulumi_hcloud as hcloud
import pulumi_tls as tls

from components import swarm
from components.access import WORLD, ping_rule, pinned_connection, ssh_rule
from components.cluster import Cluster
from config import catalogue
from config.models import HcloudHostSpec, LocalHostSpec
from render.cloud_init import DATA_DIR, CloudInitSpec, render_cloud_init, volume_device
from render.cluster import NODE_LABEL
from render.data_volume import prepare_script

# The label tools/ssh_window.py finds the CI firewall by (with `stack`).
CI_FIREWALL_LABEL = "keel-role"
CI_FIREWALL_ROLE = "ci-ssh"

READINESS_SCRIPT = """set -u
rc=0
cloud-init status --wait >/dev/null 2>&1 || rc=$?
# 2 means done with recoverable errors: the host is usable.
if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then
  echo "cloud-init failed with status $rc" >&2
  cloud-init status --long >&2 || true
  exit 1
fi
state=""
for _ in $(seq 1 60); do
  state=$(sg docker -c "docker info --format '{{.Swarm.LocalNodeState}}'" 2>/dev/null || true)
  [ "$state" = "active" ] && break
  sleep 5
done
if [ "$state" != "active" ]; then
  echo "docker swarm is not active (state: ${state:-no answer})" >&2
  exit 1
fi
if ! mountpoint -q DATA_DIR; then
  echo "the data volume is not mounted at DATA_DIR" >&2
  exit 1
fi
echo ready
""".replace("DATA_DIR", DATA_DIR)

LOCAL_SWARM_SCRIPT = (
    'state=$(docker info --format "{{.Swarm.LocalNodeState}}") && '
    '{ [ "$state" = active ] || docker swarm init --advertise-addr 127.0.0.1 >/dev/null; } && echo ready'
)


def ssh_options(ipv4: str, host_public_key: str) -> list[str]:
    """ssh flags for the docker provider: pinned host key, multiplexed connections."""
    key = " ".join(host_public_key.split()[:2])
    return [
        "-o", "StrictHostKeyChecking=yes",
        # The pinned key is the only one believed; stale entries in ~/.ssh/known_hosts are ignored.
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", f"KnownHostsCommand=/bin/echo {ipv4} {key}",
        "-o", "HostKeyAlgorithms=ssh-ed25519",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=20",
        "-o", "ServerAliveInterval=15",
        # Every Docker API call opens an SSH session; share one connection between them.
        "-o", "ControlMaster=auto",
        # /tmp exists everywhere (~/.ssh may not on a fresh runner); %C is a hash, so the path is short.
        "-o", "ControlPath=/tmp/keel-ssh-%C",
        "-o", "ControlPersist=120s",
    ]  # fmt: skip


class Host(pulumi.ComponentResource):
    """The machine and its Docker provider.

    Outputs: ``ipv4``, ``ipv6``, ``ssh_command``, ``docker_host``, ``known_hosts`` (the pinned
    line), ``data_dir`` (where stateful volumes live) and ``provider`` (a docker.Provider).
    """

    provider: docker.Provider
    ipv4: pulumi.Output[str]
    ipv6: pulumi.Output[str]
    ssh_command: pulumi.Output[str]
    docker_host: pulumi.Output[str]
    known_hosts: pulumi.Output[str]
    data_dir: str | None
    server: hcloud.Server | None
    firewall: hcloud.Firewall | None
    ci_firewall: hcloud.Firewall | None
    _connection: command.remote.ConnectionArgs | None
    _local_env: dict[str, str] | None
    pin: str
    """The placement constraint of every service that must run on this machine (the stores and
    everything else whose volume is on its data disk, the proxy on its public IPs, the jobs whose
    image is built here): the manager role on one node; the ``keel.node`` label the program sets
    once there are node pools (with three managers, the role no longer names one node)."""
    ssh_keys: list[hcloud.SshKey]
    labels: dict[str, str]
    node_count: int
    volume_constraints: list[str]
    """The constraints of a service that mounts a volume of the host's data disk: none on one node
    (where else would it run), the host's label once there are others."""
    """How many nodes run tasks (the host and its pools' nodes)."""
    cluster: Cluster | None
    """The other nodes and the private network, when the stack declares node pools."""

    def __init__(
        self,
        name: str,
        *,
        spec: HcloudHostSpec | LocalHostSpec,
        server_name: str,
        web_sources: pulumi.Input[Sequence[str]] = WORLD,
        registries: Sequence[RegistryLogin] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``web_sources``: CIDRs admitted to 80/443 (the world, or Cloudflare's ranges when proxied);
        ``registries``: private registries the Docker provider logs in to (service creates and
        updates use them: a credential on the provider is rotated without touching any service)."""
        super().__init__("keel:index:Host", name, {}, opts)
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)
        self.server = None
        self.firewall = None
        self.ci_firewall = None
        self._connection = None
        self._local_env = None
        self.cluster = None
        self.ssh_keys = []
        self.labels = {"managed-by": "pulumi", "stack": pulumi.get_stack()}
        self.server_name = server_name
        self.pin = pin_to(server_name) if spec.clustered else swarm.ON_MANAGER
        self.volume_constraints = [self.pin] if spec.clustered else []
        self.node_count = len(spec.nodes(server_name)) if isinstance(spec, HcloudHostSpec) else 1
        registry_auth = [
            docker.ProviderRegistryAuthArgs(address=login.server, username=login.username, password=login.password)
            for login in registries
        ]
        self._images: dict[str, pulumi.Output[str]] = {}
        # Looks images up in their registries: no daemon, so no host to wait for (the provider
        # connects to a daemon only when a resource needs one: internal/provider/config.go).
        self._registry = docker.Provider(
            f"{name}-registry", docker.ProviderArgs(registry_auth=registry_auth or None), opts=self._child
        )
        if isinstance(spec, HcloudHostSpec):
            self._hcloud(spec, server_name, web_sources, registry_auth)
        else:
            self._local(spec, registry_auth)
        self.register_outputs(
            {
                "ipv4": self.ipv4,
                "ipv6": self.ipv6,
                "ssh_command": self.ssh_command,
                "docker_host": self.docker_host,
                "known_hosts": self.known_hosts,
            }
        )

    # ------------------------------------------------------------------ hcloud

    def _hcloud(
        self,
        spec: HcloudHostSpec,
        server_name: str,
        web_sources: pulumi.Input[Sequence[str]],
        registry_auth: list[docker.ProviderRegistryAuthArgs],
    ) -> None:
        labels = self.labels
        ssh_keys = [
            hcloud.SshKey(
                f"{self._name}-admin-{index}",
                hcloud.SshKeyArgs(name=f"{server_name}-admin-{index}", public_key=key, labels=labels),
                # A new key replaces the old one (public_key forces it), and a Plugin Framework
                # resource is created before the old one is deleted, which Hetzner refuses for the
                # same name (uniqueness_error). Deleting first is safe: the server reads its keys
                # only when it is created (its ssh_keys are ignored), and cloud-init installed them.
                opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
            )
            for index, key in enumerate(spec.admin_ssh_keys)
        ]
        self.ssh_keys = ssh_keys
        self.firewall = self._firewall(spec, server_name, web_sources, labels)
        # CI's way in: no declared rules; a deploy job adds its runner's /32 on port 22 through the
        # Hetzner API for the job's duration (tools/ssh_window.py). The provider reads rules back on
        # refresh (terraform-provider-hcloud internal/firewall/resource.go, getFirewallAttributes), so
        # ignoring them keeps those short-lived rules from ever being drift.
        self.ci_firewall = hcloud.Firewall(
            f"{self._name}-ci-ssh",
            hcloud.FirewallArgs(name=f"{server_name}-ci-ssh", labels={**labels, CI_FIREWALL_LABEL: CI_FIREWALL_ROLE}),
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["rules"]),
        )
        ipv4, ipv6 = (self._primary_ip(spec, server_name, family, labels) for family in ("ipv4", "ipv6"))
        volume = self._data_volume(spec, server_name, labels)
        host_key = tls.PrivateKey(f"{self._name}-host-key", tls.PrivateKeyArgs(algorithm="ED25519"), opts=self._child)
        self.server = self._server(spec, server_name, labels, ssh_keys, ipv4, ipv6, volume, host_key)
        attachment = hcloud.VolumeAttachment(
            f"{self._name}-data-attachment",
            hcloud.VolumeAttachmentArgs(
                volume_id=volume.id.apply(int), server_id=self.server.id.apply(int), automount=False
            ),
            opts=self._child,
        )

        public_key = host_key.public_key_openssh.apply(lambda k: " ".join(k.split()[:2]))
        self.ipv4 = ipv4.ip_address
        self.ipv6 = ipv6.ip_address.apply(server_ipv6)
        self.known_hosts = pulumi.Output.concat(self.ipv4, " ", public_key)
        self.data_dir = DATA_DIR
        self.ssh_command = pulumi.Output.concat("ssh ", spec.deploy_user, "@", self.ipv4)
        self._connection = pinned_connection(self.ipv4, spec.deploy_user, public_key)
        ready = command.remote.Command(
            f"{self._name}-ready",
            command.remote.CommandArgs(
                connection=self._connection,
                create=READINESS_SCRIPT,
                # A new server (or a re-attached volume) must be waited for again.
                triggers=[self.server.id, attachment.id],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment]),
        )
        self._ready: pulumi.Resource = ready
        waited: list[pulumi.Output[str]] = [ready.stdout]
        self.cluster = None
        if spec.clustered:
            self.cluster = Cluster("cluster", spec=spec, host=self, nodes=spec.nodes(server_name), opts=self._child)
            # Services pinned to the primary's label wait until it carries it.
            waited.append(self.cluster.primary_membership.stdout)
        # Deriving the host from the readiness output keeps every Docker call waiting until the
        # host is ready; while the IP is unknown (first preview) the engine skips the provider.
        self.docker_host = pulumi.Output.all(self.ipv4, *waited).apply(
            lambda values: f"ssh://{spec.deploy_user}@{values[0]}"
        )
        self.provider = docker.Provider(
            f"{self._name}-docker",
            docker.ProviderArgs(
                host=self.docker_host,
                ssh_opts=pulumi.Output.all(self.ipv4, public_key).apply(lambda v: ssh_options(v[0], v[1])),
                registry_auth=registry_auth or None,
            ),
            opts=self._child,
        )

    def _firewall(
        self, spec: HcloudHostSpec, server_name: str, web_sources: pulumi.Input[Sequence[str]], labels: dict[str, str]
    ) -> hcloud.Firewall:
        return hcloud.Firewall(
            f"{self._name}-firewall",
            hcloud.FirewallArgs(
                name=f"{server_name}-firewall",
                labels=labels,
                rules=[
                    ssh_rule(spec),
                    hcloud.FirewallRuleArgs(
                        direction="in", protocol="tcp", port="80", source_ips=web_sources, description="http"
                    ),
                    hcloud.FirewallRuleArgs(
                        direction="in", protocol="tcp", port="443", source_ips=web_sources, description="https"
                    ),
                    ping_rule(),
                ],
            ),
            opts=self._child,
        )

    def _primary_ip(
        self, spec: HcloudHostSpec, server_name: str, family: str, labels: dict[str, str]
    ) -> hcloud.PrimaryIp:
        """A primary IP that outlives the server (auto_delete off): a replaced server keeps its
        address and DNS does not move. No ``assignee_type``: without ``assignee_id`` the provider
        warns "Unused Attribute" on every run (internal/primaryip/resource.go, ValidateConfig); the
        server's public_net assigns it."""
        return hcloud.PrimaryIp(
            f"{self._name}-{family}",
            hcloud.PrimaryIpArgs(
                # The location in the name: moving to another location creates the new IP (under its
                # own name) before the old one is deleted, which the same name would not allow.
                name=f"{server_name}-{family}-{spec.location}",
                type=family,
                location=spec.location,
                auto_delete=False,
                delete_protection=spec.delete_protection,
                labels=labels,
            ),
            opts=pulumi.ResourceOptions(
                parent=self, protect=spec.delete_protection, retain_on_delete=spec.delete_protection
            ),
        )

    def _data_volume(self, spec: HcloudHostSpec, server_name: str, labels: dict[str, str]) -> hcloud.Volume:
        return hcloud.Volume(
            f"{self._name}-data",
            hcloud.VolumeArgs(
                name=f"{server_name}-data",
                size=spec.data_volume_gib,
                location=spec.location,
                format="ext4",
                automount=False,
                delete_protection=spec.delete_protection,
                labels=labels,
            ),
            # The data volume is protected whatever the stack says: it holds the databases.
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
        )

    def _server(
        self,
        spec: HcloudHostSpec,
        server_name: str,
        labels: dict[str, str],
        ssh_keys: list[hcloud.SshKey],
        ipv4: hcloud.PrimaryIp,
        ipv6: hcloud.PrimaryIp,
        volume: hcloud.Volume,
        host_key: tls.PrivateKey,
    ) -> hcloud.Server:
        assert self.firewall is not None and self.ci_firewall is not None
        # The user data carries the host's private key: keep it secret whatever the inputs say.
        rendered: pulumi.Output[str] = pulumi.Output.all(
            host_key.private_key_openssh, host_key.public_key_openssh, ipv4.ip_address, volume.id
        ).apply(
            lambda values: render_cloud_init(
                CloudInitSpec(
                    deploy_user=spec.deploy_user,
                    admin_ssh_keys=tuple(spec.admin_ssh_keys),
                    host_private_key=values[0],
                    host_public_key=values[1],
                    advertise_addr=values[2],
                    data_device=volume_device(values[3]),
                    swap_gib=spec.swap_gib,
                    # Applied when the server is created: user_data changes are ignored after that.
                    automatic_reboot=spec.reboot_window is not None,
                    reboot_time=spec.reboot_window or "04:00",
                    # With pools, a host created now admits the swarm's ports from the private network.
                    private_cidr=spec.private_network if spec.clustered else None,
                )
            )
        )
        user_data = swarm.as_secret(rendered)
        return hcloud.Server(
            f"{self._name}-server",
            hcloud.ServerArgs(
                name=server_name,
                server_type=spec.server_type,
                location=spec.location,
                image=spec.image,
                ssh_keys=[key.id for key in ssh_keys],
                firewall_ids=[self.firewall.id.apply(int), self.ci_firewall.id.apply(int)],
                public_nets=[
                    hcloud.ServerPublicNetArgs(
                        ipv4_enabled=True, ipv4=ipv4.id.apply(int), ipv6_enabled=True, ipv6=ipv6.id.apply(int)
                    )
                ],
                user_data=user_data,
                backups=spec.backups,
                delete_protection=spec.delete_protection,
                rebuild_protection=spec.delete_protection,
                shutdown_before_deletion=True,
                labels=labels,
            ),
            # cloud-init shapes the first boot only; a change to it must not rebuild a server.
            opts=pulumi.ResourceOptions(
                parent=self, protect=spec.delete_protection, ignore_changes=["user_data", "ssh_keys", "image"]
            ),
        )

    # ------------------------------------------------------------------ local

    def _local(self, spec: LocalHostSpec, registry_auth: list[docker.ProviderRegistryAuthArgs]) -> None:
        env = {"DOCKER_HOST": spec.docker_host} if spec.docker_host else None
        swarm = command.local.Command(
            f"{self._name}-swarm",
            command.local.CommandArgs(create=LOCAL_SWARM_SCRIPT, environment=env),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._ready = swarm
        self._local_env = env
        self.data_dir = spec.data_dir
        self.ipv4 = pulumi.Output.from_input("127.0.0.1")
        self.ipv6 = pulumi.Output.from_input("::1")
        self.ssh_command = pulumi.Output.from_input("(local engine: no ssh)")
        self.known_hosts = pulumi.Output.from_input("")
        default = spec.docker_host or "unix:///var/run/docker.sock"
        self.docker_host = swarm.stdout.apply(lambda _: default)
        self.provider = docker.Provider(
            f"{self._name}-docker",
            docker.ProviderArgs(host=self.docker_host, registry_auth=registry_auth or None),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[swarm]),
        )

    def image(self, reference: str) -> pulumi.Output[str]:
        """``reference`` pinned to the digest its tag names in the registry now (``name:tag@sha256:…``).

        What a service is sent must be what the provider reads back: Create resolves a tag to
        ``tag@digest`` itself (QueryRegistry, resource_docker_service_funcs.go; moby's client
        resolveContainerSpecImage) and Update never does, so a tag sent as it is would show as a
        change on the next preview and restart the service when applied. The lookup also makes a
        tag that moved in its registry visible as a change before it is deployed. A reference that
        already carries a digest is used as it is.
        """
        if "@sha256:" in reference:
            return pulumi.Output.from_input(reference)
        if reference not in self._images:
            found = docker.get_registry_image_output(
                name=reference, opts=pulumi.InvokeOutputOptions(provider=self._registry)
            )
            self._images[reference] = found.sha256_digest.apply(lambda digest: f"{reference}@{digest}")
        return self._images[reference]

    def data_volume(
        self,
        resource_name: str,
        *,
        volume_name: str,
        labels: Mapping[str, str],
        parent: pulumi.Resource,
        owner: str | None = None,
        image: str | None = None,
        protect: bool = True,
    ) -> docker.Volume:
        """A protected volume that is kept when removed from the program; on a host with a data
        directory (the Hetzner Volume), bind-backed there so it outlives the server.

        ``owner``/``image``: a bind-backed directory gets no copy of the image's directory (and so
        not its owner), unlike a volume in Docker's own storage: a throw-away container of ``image``
        hands it to ``owner`` (numeric uid:gid, or a user name of ``image``), the user the service
        runs as. Without them the directory stays the deploy user's.
        ``protect`` False: still kept when removed from the program, but removable from it (a store's
        previous or next volume generation, docs/restore.md); Pulumi refuses to drop a protected one.
        """
        protected = pulumi.ResourceOptions(parent=parent, protect=protect, retain_on_delete=True)
        volume_labels = [docker.VolumeLabelArgs(label=key, value=value) for key, value in labels.items()]
        if self.data_dir is None:
            return docker.Volume(
                resource_name, docker.VolumeArgs(name=volume_name, labels=volume_labels), opts=protected
            )
        # Docker needs the directory to exist before it can bind it.
        directory = f"{self.data_dir}/volumes/{volume_name}"
        prepared = self.run(
            f"{resource_name}-dir",
            create=prepare_script(directory=directory, owner=owner, image=image),
            opts=pulumi.ResourceOptions(parent=parent),
        )
        return docker.Volume(
            resource_name,
            docker.VolumeArgs(
                name=volume_name,
                driver="local",
                driver_opts={"type": "none", "o": "bind", "device": directory},
                labels=volume_labels,
            ),
            opts=pulumi.ResourceOptions.merge(protected, pulumi.ResourceOptions(depends_on=[prepared])),
        )

    def run(
        self,
        name: str,
        *,
        create: pulumi.Input[str],
        stdin: pulumi.Input[str] | None = None,
        delete: str | None = None,
        triggers: Sequence[pulumi.Input[str]] | None = None,
        secret_stdout: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> command.remote.Command | command.local.Command:
        """A shell script run on the host with the Docker CLI at hand: over the pinned SSH
        connection on hcloud, locally (against the local engine) on dev.

        It runs on create and again whenever `create` or `stdin` change, after the host is ready
        (a changed ``triggers`` element replaces it: the new one's create, then the old one's
        ``delete``). A non-zero exit fails the deployment. ``secret_stdout``: what it prints is a
        credential: kept a secret in the state and never logged (pulumi-command v1.2.1
        provider/pkg/provider/remote/command.go: logging "none", with additionalSecretOutputs).
        """
        options = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(depends_on=[self._ready]), opts)
        if secret_stdout:
            options = pulumi.ResourceOptions.merge(
                options, pulumi.ResourceOptions(additional_secret_outputs=["stdout"])
            )
        if self._connection is not None:
            return command.remote.Command(
                name,
                command.remote.CommandArgs(
                    connection=self._connection,
                    create=create,
                    stdin=stdin,
                    delete=delete,
                    triggers=list(triggers) if triggers is not None else None,
                    logging=command.remote.Logging.NONE if secret_stdout else None,
                ),
                opts=options,
            )
        return command.local.Command(
            name,
            command.local.CommandArgs(
                create=create, stdin=stdin, environment=self._local_env, interpreter=["/bin/sh", "-c"]
            ),
            opts=options,
        )


def pin_to(node: str) -> str:
    """The constraint that places a task on the node named ``node`` (its ``keel.node`` label)."""
    return f"node.labels.{NODE_LABEL}=={node}"


def server_ipv6(address: str) -> str:
    """The server's IPv6 address in its primary IP's /64: the network address plus one.

    The hcloud provider reads a primary IPv6's ``ip_address`` as the network address without a
    prefix (``2a01:4f8:c0c:1234::``; internal/primaryip/model.go, FromAPI: ``hc.IP.String()``), and
    Hetzner gives the server ``::1`` of that network. A prefix, if some version adds one, is dropped.
    """
    network = ipaddress.IPv6Network(address if "/" in address else f"{address}/64", strict=False)
    return str(network.network_address + 1)


@dataclass(frozen=True)
class RegistryLogin:
    """A private registry the Docker provider logs in to; ``password`` is a Pulumi secret."""

    server: str
    username: str
    password: pulumi.Input[str]


def monthly_cost(spec: HcloudHostSpec | LocalHostSpec) -> float:
    """The host (server, IPv4, data volume, backups) and every pool node (server, IPv4)."""
    if isinstance(spec, LocalHostSpec):
        return 0.0
    nodes = sum(catalogue.node_monthly_cost_eur(pool.server_type) * pool.count for pool in spec.pools.values())
    return round(catalogue.monthly_cost_eur(spec.server_type, spec.data_volume_gib, spec.backups) + nodes, 2)
