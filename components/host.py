"""Host: the machine the stack runs on, and the Docker provider that reaches it.

hcloud: SSH keys, firewall, primary IPs kept across server replacement, the server with
cloud-init, a data Volume, a readiness step that waits for cloud-init, Docker and the swarm,
and a docker.Provider over SSH whose host is derived from that step, with the host key pinned.

local: no VM; the local engine, put in swarm mode if it is not yet.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_command as command
import pulumi_docker as docker
import pulumi_hcloud as hcloud
import pulumi_tls as tls

from config import catalogue
from config.models import HcloudHost, LocalHost
from render.cloud_init import DATA_DIR, CloudInitSpec, render_cloud_init, volume_device

WORLD = ("0.0.0.0/0", "::/0")
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
    _connection: command.remote.ConnectionArgs | None
    _local_env: dict[str, str] | None

    def __init__(
        self,
        name: str,
        *,
        spec: HcloudHost | LocalHost,
        server_name: str,
        web_sources: pulumi.Input[Sequence[str]] = WORLD,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``web_sources``: CIDRs admitted to 80/443 (the world, or Cloudflare's ranges when proxied)."""
        super().__init__("keel:index:Host", name, {}, opts)
        self.server = None
        self.firewall = None
        self._connection = None
        self._local_env = None
        if isinstance(spec, HcloudHost):
            self._hcloud(name, spec, server_name, web_sources)
        else:
            self._local(name, spec)
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

    def _hcloud(self, name: str, spec: HcloudHost, server_name: str, web_sources: pulumi.Input[Sequence[str]]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        keep = pulumi.ResourceOptions(
            parent=self, protect=spec.delete_protection, retain_on_delete=spec.delete_protection
        )
        labels = {"managed-by": "pulumi", "stack": pulumi.get_stack()}

        ssh_keys = [
            hcloud.SshKey(
                f"{name}-admin-{index}",
                hcloud.SshKeyArgs(name=f"{server_name}-admin-{index}", public_key=key, labels=labels),
                opts=child,
            )
            for index, key in enumerate(spec.admin_ssh_keys)
        ]

        self.firewall = hcloud.Firewall(
            f"{name}-firewall",
            hcloud.FirewallArgs(
                name=f"{server_name}-firewall",
                labels=labels,
                rules=[
                    hcloud.FirewallRuleArgs(
                        direction="in",
                        protocol="tcp",
                        port="22",
                        source_ips=list(spec.admin_cidrs),
                        description="ssh from admins",
                    ),
                    hcloud.FirewallRuleArgs(
                        direction="in", protocol="tcp", port="80", source_ips=web_sources, description="http"
                    ),
                    hcloud.FirewallRuleArgs(
                        direction="in", protocol="tcp", port="443", source_ips=web_sources, description="https"
                    ),
                    hcloud.FirewallRuleArgs(
                        direction="in", protocol="icmp", source_ips=list(WORLD), description="ping"
                    ),
                ],
            ),
            opts=child,
        )

        # CI's way in: no declared rules; a deploy job adds its runner's /32 on port 22 through the
        # Hetzner API for the job's duration (tools/ssh_window.py). The provider reads rules back on
        # refresh (terraform-provider-hcloud internal/firewall/resource.go, getFirewallAttributes), so
        # ignoring them keeps those short-lived rules from ever being drift.
        ci_firewall = hcloud.Firewall(
            f"{name}-ci-ssh",
            hcloud.FirewallArgs(name=f"{server_name}-ci-ssh", labels={**labels, CI_FIREWALL_LABEL: CI_FIREWALL_ROLE}),
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["rules"]),
        )

        # Primary IPs outlive the server (auto_delete off), so a replaced server keeps its address
        # and DNS does not move.
        ipv4 = hcloud.PrimaryIp(
            f"{name}-ipv4",
            hcloud.PrimaryIpArgs(
                name=f"{server_name}-ipv4", type="ipv4", location=spec.location, assignee_type="server",
                auto_delete=False, delete_protection=spec.delete_protection, labels=labels,
            ),
            opts=keep,
        )  # fmt: skip
        ipv6 = hcloud.PrimaryIp(
            f"{name}-ipv6",
            hcloud.PrimaryIpArgs(
                name=f"{server_name}-ipv6", type="ipv6", location=spec.location, assignee_type="server",
                auto_delete=False, delete_protection=spec.delete_protection, labels=labels,
            ),
            opts=keep,
        )  # fmt: skip

        volume = hcloud.Volume(
            f"{name}-data",
            hcloud.VolumeArgs(
                name=f"{server_name}-data", size=spec.data_volume_gib, location=spec.location, format="ext4",
                automount=False, delete_protection=spec.delete_protection, labels=labels,
            ),
            # The data volume is protected whatever the stack says: it holds the databases.
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
        )  # fmt: skip

        host_key = tls.PrivateKey(f"{name}-host-key", tls.PrivateKeyArgs(algorithm="ED25519"), opts=child)

        # The user data carries the host's private key: keep it secret whatever the inputs say.
        user_data = pulumi.Output.all(
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
                )
            )
        )
        user_data = pulumi.Output.secret(user_data)

        self.server = hcloud.Server(
            f"{name}-server",
            hcloud.ServerArgs(
                name=server_name,
                server_type=spec.server_type,
                location=spec.location,
                image=spec.image,
                ssh_keys=[key.id for key in ssh_keys],
                firewall_ids=[self.firewall.id.apply(int), ci_firewall.id.apply(int)],
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

        attachment = hcloud.VolumeAttachment(
            f"{name}-data-attachment",
            hcloud.VolumeAttachmentArgs(
                volume_id=volume.id.apply(int), server_id=self.server.id.apply(int), automount=False
            ),
            opts=child,
        )

        public_key = host_key.public_key_openssh.apply(lambda k: " ".join(k.split()[:2]))
        self.ipv4 = ipv4.ip_address
        self.ipv6 = ipv6.ip_address.apply(lambda net: net.split("/")[0] + "1" if net.endswith("::/64") else net)
        self.known_hosts = pulumi.Output.concat(self.ipv4, " ", public_key)

        self._connection = command.remote.ConnectionArgs(
            host=self.ipv4,
            user=spec.deploy_user,
            host_key=public_key,
            dial_error_limit=40,
            per_dial_timeout=20,
        )
        ready = command.remote.Command(
            f"{name}-ready",
            command.remote.CommandArgs(
                connection=self._connection,
                create=READINESS_SCRIPT,
                # A new server (or a re-attached volume) must be waited for again.
                triggers=[self.server.id, attachment.id],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment]),
        )

        self._ready: pulumi.Resource = ready
        self.data_dir = DATA_DIR
        self.ssh_command = pulumi.Output.concat("ssh ", spec.deploy_user, "@", self.ipv4)
        # Deriving the host from the readiness output keeps every Docker call waiting until the
        # host is ready; while the IP is unknown (first preview) the engine skips the provider.
        self.docker_host = pulumi.Output.all(ready.stdout, self.ipv4).apply(
            lambda values: f"ssh://{spec.deploy_user}@{values[1]}"
        )
        self.provider = docker.Provider(
            f"{name}-docker",
            docker.ProviderArgs(
                host=self.docker_host,
                ssh_opts=pulumi.Output.all(self.ipv4, public_key).apply(lambda v: ssh_options(v[0], v[1])),
            ),
            opts=child,
        )

    # ------------------------------------------------------------------ local

    def _local(self, name: str, spec: LocalHost) -> None:
        env = {"DOCKER_HOST": spec.docker_host} if spec.docker_host else None
        swarm = command.local.Command(
            f"{name}-swarm",
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
            f"{name}-docker",
            docker.ProviderArgs(host=self.docker_host),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[swarm]),
        )

    def run(
        self,
        name: str,
        *,
        create: pulumi.Input[str],
        stdin: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> command.remote.Command | command.local.Command:
        """A shell script run on the host with the Docker CLI at hand: over the pinned SSH
        connection on hcloud, locally (against the local engine) on dev.

        It runs on create and again whenever `create` or `stdin` change, after the host is ready.
        A non-zero exit fails the deployment.
        """
        options = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(depends_on=[self._ready]), opts)
        if self._connection is not None:
            return command.remote.Command(
                name, command.remote.CommandArgs(connection=self._connection, create=create, stdin=stdin), opts=options
            )
        return command.local.Command(
            name,
            command.local.CommandArgs(
                create=create, stdin=stdin, environment=self._local_env, interpreter=["/bin/sh", "-c"]
            ),
            opts=options,
        )


def monthly_cost(spec: HcloudHost | LocalHost) -> float:
    if isinstance(spec, LocalHost):
        return 0.0
    return catalogue.monthly_cost_eur(spec.server_type, spec.data_volume_gib, spec.backups)
