"""The two overlay networks every stack has.

public: the proxy and the apps. internal: the apps and the stores, created with
`internal=True`, so nothing on it reaches outside the host and stores have no egress at all.
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

    def __init__(self, name: str, *, names: Names, opts: pulumi.ResourceOptions | None = None) -> None:
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
        self.register_outputs({"public": self.public.id, "internal": self.internal.id})
