"""The two overlay networks every stack has.

public: the proxy and the apps. internal: the apps and the stores, created with
`internal=True`, so nothing on it reaches outside the host and stores have no egress at all,
except those whose WAL is archived to S3, which also join ``egress`` (only made for them).
Both are attachable so one-off tasks (migrations, a restore drill, an admin's `docker run`)
can join them.
"""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from config.names import Names


class Networks(pulumi.ComponentResource):
    """Outputs: ``public`` and ``internal`` (docker.Network; reference them by ``id``)."""

    public: docker.Network
    internal: docker.Network
    egress: docker.Network | None

    def __init__(
        self, name: str, *, names: Names, egress: bool = False, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("keel:index:Networks", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = [docker.NetworkLabelArgs(label="keel.managed", value="true")]
        self.public = docker.Network(
            f"{name}-public",
            docker.NetworkArgs(name=names.network("public"), driver="overlay", attachable=True, labels=labels),
            opts=child,
        )
        self.internal = docker.Network(
            f"{name}-internal",
            docker.NetworkArgs(
                name=names.network("internal"), driver="overlay", attachable=True, internal=True, labels=labels
            ),
            opts=child,
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
                    labels=[*labels, docker.NetworkLabelArgs(label="keel.wal-archive", value="egress")],
                ),
                opts=child,
            )
        self.register_outputs({"public": self.public.id, "internal": self.internal.id})
