"""The scripts that grow and shrink the swarm: pure renderers the cluster components run over SSH.

Each script is POSIX sh with ``set -eu``: it runs under the deploy user's login shell (bash on the
Hetzner image; busybox ash in the end-to-end job's Docker-in-Docker nodes). Values from the
configuration are checked here again and reach the script only through shlex.quote; values that
arrive at run time (a join token, an address, a node ID) come on stdin, are read into variables and
checked against their own shape before any use. Messages go to stderr: stdout carries only what the
caller keeps (a token, a node ID).

None of them wraps docker in ``sg docker``: components/host.py READINESS_SCRIPT needs that because
its SSH session may begin before cloud-init's ``usermod -aG docker``; these run after readiness,
each over a new SSH connection (pulumi-command v1.2.1 provider/pkg/provider/remote/commandOutputs.go
``run`` dials per command), whose login reads the groups afresh.

Docker behaviours relied on (moby and docker/cli at v28.5.2):
- a join's token never appears in any process's argv: the script writes the Engine API's
  ``POST /swarm/join`` request (api/types/swarm/swarm.go ``JoinRequest``) with the shell's printf
  builtin into ``docker system dial-stdio``, which copies stdin to the daemon's socket and its answer
  to stdout (docker/cli cli/command/system/dial_stdio.go). ``docker swarm join --token`` would put
  the token in argv, readable in /proc/<pid>/cmdline by anything sharing the host's PID view
  (cAdvisor mounts the host's root, /proc included) for as long as the join takes.
- the daemon's join waits 20 s for the node to be ready and otherwise answers 503 and keeps trying
  in the background (daemon/cluster/swarm.go ``Join``, errSwarmJoinTimeoutReached): the script then
  polls ``docker info`` until the state is active, and cancels a join still pending at its deadline
  (``docker swarm leave --force``) so that a rerun starts clean.
- ``docker node update --label-rm`` of a key the node does not carry fails (cli/command/node/update.go),
  so only keys present are removed.
- swarm refuses to demote the last manager and a demotion that would lose raft quorum
  (vendor/github.com/moby/swarmkit/v2/manager/controlapi/node.go ``UpdateNode``; raft.go
  ``CanRemoveMember``: reachable members other than the one removed >= (members - 1) / 2 + 1); the
  removal checks the same before it drains anything, so a refusal changes nothing.
- a down node's tasks keep the state they last reported until swarm orphans them much later
  (swarmkit manager/dispatcher/dispatcher.go ``markNodesUnknown``), while the orchestrator has
  already started them elsewhere (manager/orchestrator/task.go ``InvalidNode``): the removal does
  not wait for them.
- ``docker node rm`` refuses a manager still in the raft member list and a node that is not down
  unless forced (controlapi/node.go ``RemoveNode``): the removal demotes first, waits until the raft
  membership is gone, then forces the removal of a node that is still up (its server is destroyed next).
- ``docker swarm init --force-new-cluster`` on a manager stops its swarm node and restarts it from
  its own raft log with itself as the only member (daemon/cluster/swarm.go ``Init``: the state
  directory is cleared only when ForceNewCluster is false; swarmkit manager/state/raft/storage.go
  ``loadAndStart`` drops the other members and keeps the store): services, secrets, configs and
  networks stay. The restart takes the new advertise and data path addresses, and libnetwork's agent
  is rebuilt with them: noderunner.go ``Stop`` sends EventNodeLeave, on which libnetwork/controller.go
  ``clusterAgentInit`` closes the agent, and agent.go ``agentClose`` clears the cluster provider (the
  fix for docker/for-linux#495, overlays dead after --force-new-cluster), so the restarted node's
  ``DaemonJoinsCluster`` starts a new agent, whose ``agentSetup`` reads GetDataPathAddress. Ports
  published through the ingress network have an open report against force-new-cluster
  (moby/moby#34987); keel's proxy publishes in host mode.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping
from typing import Literal

from render import TEMPLATES

SWARM_PORTS: tuple[tuple[str, int], ...] = (("tcp", 2377), ("tcp", 7946), ("udp", 7946), ("udp", 4789))
"""Cluster management (raft, dispatcher), gossip, and the VXLAN data path (moby docs swarm-tutorial)."""
ESP_PROTOCOL = 50
"""IP protocol number of IPsec ESP: encrypted overlay networks carry their VXLAN traffic in it."""
NODE_LABEL = "keel.node"
"""Node label whose value is the keel node name: stores and pinned services are constrained by
``node.labels.keel.node == <name>``."""
LABELS_LABEL = "keel.labels"
"""Node label listing (comma-separated) the other label keys keel set: the keys it may remove."""
MANAGER_PORT = 2377
API_VERSION = "v1.41"
"""Engine API version of the join request: Docker 20.10 and later answer it (JoinRequest has had
DataPathAddr since 1.31)."""
POLL_S = 2

# Supersets of config/'s grammars (which are stricter): a check here guards the scripts, it does not
# second-guess the configuration. No "=" in a key (`--label-add key=value` splits at the first one),
# no "," (keel.labels lists keys with it), nothing a shell word needs quoting for in names.
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)
_LABEL_KEY = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}", re.ASCII)
_LABEL_VALUE = re.compile(r"[\x21-\x7e]{0,255}", re.ASCII)

_TEMPLATES = TEMPLATES / "cluster"


def _script(template: str, values: Mapping[str, str | int], *, prelude: str = "") -> str:
    """``set -eu``, the values as quoted shell assignments, then the script's body
    (render/templates/cluster/<template>.sh), which reads them as variables."""
    body = (_TEMPLATES / f"{template}.sh").read_text()
    if '"$poll"' in body:
        values = {"poll": POLL_S, **values}
    assignments = "".join(f"{name}={shlex.quote(str(value))}\n" for name, value in values.items())
    return "set -eu\nset -f\nfail() { printf '%s\\n' \"$*\" >&2; exit 1; }\n" + assignments + prelude + body


def _ipv4(value: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{what} {value!r}: expected an IPv4 address (Hetzner private networks are IPv4)") from None


def _timeout(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} {value!r}: expected a positive number of seconds")
    return value


def join_token_script(role: Literal["worker", "manager"]) -> str:
    """Run on the primary manager over SSH; prints only the join token (one line) on stdout.

    The caller keeps its stdout secret and out of the deploy log (pulumi-command logs stdout
    unless ``logging`` says otherwise)."""
    if role not in ("worker", "manager"):
        raise ValueError(f"role {role!r}: expected worker or manager")
    return "set -eu\n" + f"docker swarm join-token --quiet {shlex.quote(role)}\n"


def join_script(*, manager_addr: str, address_timeout_s: int = 300, join_timeout_s: int = 120) -> str:
    """Run on the joining node over SSH (deploy user). stdin: line 1 the join token, line 2 this
    node's private address. Waits until the address is on an interface (Hetzner's private network
    comes up by DHCP), joins ``manager_addr:2377`` advertising that address for control and data,
    and prints the node's swarm ID as the last stdout line. A node already in this swarm: nothing
    but the ID. A node in another swarm: refused. The token never reaches argv (module doc)."""
    manager = _ipv4(manager_addr, "manager address")
    address_timeout = _timeout(address_timeout_s, "address timeout")
    join_timeout = _timeout(join_timeout_s, "join timeout")
    return _script(
        "join",
        {
            "manager": f"{manager}:{MANAGER_PORT}",
            "address_timeout": address_timeout,
            "join_timeout": join_timeout,
            "api": API_VERSION,
        },
    )


def _check_labels(node: str, labels: Mapping[str, str]) -> None:
    if not _NODE_NAME.fullmatch(node):
        raise ValueError(f"node name {node!r}: expected a host name (letters, digits, '.', '_', '-')")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key) or key in (NODE_LABEL, LABELS_LABEL):
            raise ValueError(f"node label {key!r}: expected a key of [a-z0-9._-], not {NODE_LABEL} or {LABELS_LABEL}")
        if not _LABEL_VALUE.fullmatch(value):
            raise ValueError(f"node label {key}={value!r}: expected up to 255 printable ASCII characters, no spaces")


def membership_script(*, node: str, labels: Mapping[str, str], ready_timeout_s: int = 300) -> str:
    """Run on the primary; stdin: the node's swarm ID (join_script's stdout). Waits until the node
    is Ready, sets ``keel.node=<node>`` and ``labels``, removes the keel-set labels no longer listed
    (``keel.labels`` lists them; labels set by hand are left alone), and prints the node ID."""
    _check_labels(node, labels)
    ready_timeout = _timeout(ready_timeout_s, "ready timeout")
    keys = ",".join(sorted(labels))
    adds = [f"{NODE_LABEL}={node}", *(f"{key}={labels[key]}" for key in sorted(labels)), f"{LABELS_LABEL}={keys}"]
    # The --label-add arguments, as the positional parameters the script adds --label-rm ones to.
    prelude = "set --" + "".join(f" --label-add {shlex.quote(item)}" for item in adds) + "\n"
    return _script("membership", {"node": node, "keys": keys, "ready_timeout": ready_timeout}, prelude=prelude)


def removal_script(*, drain_timeout_s: int = 600, demote_timeout_s: int = 120) -> str:
    """The membership command's delete, on the primary. The node ID is ``$PULUMI_COMMAND_STDOUT``
    (membership_script's output) when the SSH server let it through, else stdin's first line:
    pulumi-command v1.2.1 sets the variable with an SSH ``env`` request that sshd refuses unless
    ``AcceptEnv`` names it (Ubuntu accepts LANG LC_* only) and then only warns
    (provider/pkg/provider/remote/commandOutputs.go ``run``), while a delete is run with the
    create's inputs, stdin included (remote/commandController.go ``Delete`` runs ``props.run``
    on the stored CommandOutputs), and the membership command's stdin is that same node ID.

    Refuses, before changing anything, to remove the node it runs on, and a manager whose
    demotion would leave the remaining managers without a reachable majority (swarm's own rule:
    with three managers all reachable, removing one leaves two; with one of three already down,
    only that one may go). Then: drain, wait until no task is running there (naming those still
    there at the deadline), demote a manager and wait until it has left the raft, ``docker node
    rm --force``. A node already gone: success."""
    drain_timeout = _timeout(drain_timeout_s, "drain timeout")
    demote_timeout = _timeout(demote_timeout_s, "demote timeout")
    return _script("removal", {"drain_timeout": drain_timeout, "demote_timeout": demote_timeout})


def advertise_script(*, private_addr_from_stdin: bool = True) -> str:
    """Run on the primary when the stack has more than one node; stdin: the primary's private
    address. cloud-init initialised its swarm advertising the public IPv4; other nodes reach it on
    the private network only. While it is the only manager, ``docker swarm init
    --force-new-cluster`` re-advertises it (control and data path) on the private address, keeping
    the swarm's state (module doc); with other managers it refuses. Already private: nothing."""
    if not private_addr_from_stdin:
        raise ValueError("the primary's private address comes on stdin (private_addr_from_stdin=True)")
    return _script("advertise", {})


def node_readiness_script(*, timeout_s: int = 300) -> str:
    """Readiness of a pool node (no data volume, no swarm yet): cloud-init done (status 2, done with
    recoverable errors, tolerated like components/host.py READINESS_SCRIPT) and Docker answering.
    ``sg docker``: this session may have begun before cloud-init added the deploy user to the
    group."""
    return _script("node-readiness", {"timeout": _timeout(timeout_s, "readiness timeout")})
