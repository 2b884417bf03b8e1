"""What a change to the config does to a deployed stack: which resources update, which are
replaced, in which order, and which running services restart.

Each change runs the stack twice under the mock runtime, the second time against the state the
first left (tools/readback), the way ``make diff`` and the idempotency test do.

    python -m tools.impact            # the README's change-impact table, as Markdown

The table in README.md is this module's output; tests/test_change_impact.py pins each row.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.loader import merge
from tools import mockrun, readback

SERVICE = "docker:index/service:Service"


@dataclass(frozen=True)
class UserChange:
    """One edit a user makes to a stack's config."""

    title: str
    stack: str
    fragment: Mapping[str, Any] = field(default_factory=dict)
    """Config keys (``keel:services`` ...) deep-merged into the stack file's values."""
    secrets: Mapping[str, str] = field(default_factory=dict)
    """Secret values set (``keel:jwt_secret`` -> value), before and after."""
    new_secrets: Mapping[str, str] = field(default_factory=dict)
    """Secret values after the change."""
    meaning: str = ""
    """What the plan means for the running site (checked against the plan by the tests)."""
    base: Mapping[str, Any] = field(default_factory=dict)
    """Config keys merged into the stack file before and after: the state the change starts from."""


@dataclass(frozen=True)
class Impact:
    """What the next ``pulumi up`` does for one change."""

    change: UserChange
    plan: readback.Plan
    order: tuple[tuple[str, str], ...]
    """(step, resource name) in the order the engine runs them."""
    restarted: tuple[str, ...]
    """Swarm services whose tasks are replaced (their spec changes, or they are recreated)."""

    def names(self, step: str) -> set[str]:
        return {name for kind, name in self.order if kind == step}


SHOP_API = "ghcr.io/example/shop-api:1.4.3"
ALMEYO_BACKEND = "ghcr.io/almeyo/almeyo-backend:1.3.1"


def _logins(*logins: str) -> dict[str, Any]:
    return {"keel:services": {"db": {"logins": list(logins)}}}


CHANGES: tuple[UserChange, ...] = (
    UserChange(
        "an app's image tag",
        "prod",
        {"keel:services": {"api": {"image": SHOP_API}}},
        meaning="the migration runs with the new image, then the app rolls start-first; no request is dropped",
    ),
    UserChange(
        "an app's env value",
        "prod",
        {"keel:services": {"api": {"env": {"NODE_ENV": "staging"}}}},
        meaning="as an image tag: the migration, then a start-first roll",
    ),
    UserChange(
        "an app's secret value",
        "prod",
        secrets={"keel:jwt_secret": "the-old-jwt-secret-0123456789abcdefghij"},
        new_secrets={"keel:jwt_secret": "the-new-jwt-secret-0123456789abcdefghij"},
        meaning="a new swarm secret is created, the app rolls to it, then the old secret is deleted",
    ),
    UserChange(
        "an app's replicas",
        "prod",
        {"keel:services": {"web": {"replicas": 3}}},
        meaning="tasks are added or removed; none restarts",
    ),
    UserChange(
        "a route",
        "prod",
        {"keel:proxy": {"routes": [{"path": "/", "service": "web", "cache": "pages"}]}},
        meaning="nginx tests and reloads the new configuration; nothing restarts",
    ),
    UserChange(
        "an nginx setting",
        "prod",
        {"keel:proxy": {"rate_limits": {"api_rps": 30}}},
        meaning="as a route",
    ),
    UserChange(
        "a store's memory",
        "prod",
        {"keel:services": {"db": {"resources": {"memory_mb": 2304, "memory_reservation_mb": 1152}}}},
        meaning="its tuning is rendered again and the database restarts (stop-first: seconds without it)",
    ),
    UserChange(
        "the server type",
        "prod",
        {"keel:host": {"server_type": "cx43"}},
        meaning=(
            "the provider powers the server off (not a clean shutdown), resizes it and powers it on: "
            "minutes of downtime; shut it down cleanly first (docs/runbooks.md)"
        ),
    ),
    UserChange(
        "a registry token",
        "isntgram",
        secrets={"keel:ghcr_token": "ghp_theOldToken0123456789abcdefghijklmnop"},
        new_secrets={"keel:ghcr_token": "ghp_theNewToken0123456789abcdefghijklmnop"},
        meaning="only the Docker provider's login changes; services pull with it on their next update",
    ),
    UserChange(
        "a new hostname",
        "prod",
        {"keel:dns": {"hostnames": ["example.com", "www.example.com", "shop.example.com"]}},
        meaning=(
            "a DNS record is created and the origin certificate issued again (its hostnames force replacement); "
            "the proxy restarts (stop-first) and so does Prometheus, for its new probe"
        ),
    ),
    UserChange(
        "node pools declared (the first time)",
        "prod",
        {"keel:host": {"pools": {"workers": {"count": 1}}}},
        meaning=(
            "a maintenance-window change, once: the private network and the new node are created; every overlay "
            "network is replaced by an encrypted one, and with it every service that joins one (a service's "
            "network attachment forces its replacement), the stores included (their volumes are kept): minutes "
            "without service. Declare the pools in a quiet hour, even with count 0: after that a node added or "
            "removed touches that node only"
        ),
    ),
    UserChange(
        "a worker node added",
        "spoon-cluster",
        {"keel:host": {"pools": {"workers": {"count": 1}}}},
        meaning=(
            "the new server is created, attached to the private network, joins the swarm and gets its labels; "
            "the replicated app spread over the nodes allows fewer tasks per node (a rolling update); nothing "
            "stateful changes"
        ),
    ),
    UserChange(
        "a worker node removed",
        "spoon-cluster",
        {"keel:host": {"pools": {"workers": {"count": 0}}}},
        base={"keel:host": {"pools": {"workers": {"count": 1}}}},
        meaning=(
            "the node is drained first (its tasks move), removed from the swarm, then its server is destroyed; "
            "the replicated app allows more tasks per node again; nothing stateful changes"
        ),
    ),
    UserChange(
        "a job's schedule",
        "almeyo",
        {"keel:jobs": {"prune-logs": {"schedule": "45 2 * * *"}}},
        meaning=(
            "the deploy pauses the job's schedule and waits for a run in progress to end, then updates the job, "
            "which puts the schedule back; no app restarts"
        ),
    ),
    UserChange(
        "a release of an app, its worker and its job",
        "almeyo",
        {"keel:services": {"backend": {"image": ALMEYO_BACKEND}, "mailer": {"image": ALMEYO_BACKEND}}},
        meaning=(
            "the app and the worker roll start-first (an old mailer has its 60 s grace to finish the message in "
            "hand); then the job waits for a run of it to end and takes the new image. The task its update may "
            "start finds no run ticket and runs nothing: the next run is the scheduler's"
        ),
    ),
    UserChange(
        "a database password's rotation, step 1: logins [a] to [a, b]",
        "spoon",
        _logins("a", "b"),
        base=_logins("a"),
        meaning=(
            "b's password is generated and the roles step lets b log in beside a; the apps, holding a, "
            "are not touched (docs/runbooks.md)"
        ),
    ),
    UserChange(
        "step 2: logins [a, b] to [b, a]",
        "spoon",
        _logins("b", "a"),
        base=_logins("a", "b"),
        meaning=(
            "the apps' URL names b: their secret is replaced and they roll start-first; old tasks still log "
            "in as a. The database and its roles are not touched"
        ),
    ),
    UserChange(
        "step 3: logins [b, a] to [b]",
        "spoon",
        _logins("b"),
        base=_logins("b", "a"),
        meaning=(
            "a's password is deleted from the state and the roles step refuses a (no password, NOLOGIN) and "
            "ends its sessions; nothing restarts"
        ),
    ),
)


def _config_file(change: UserChange) -> Path:
    if change.stack in ("dev", "staging", "prod"):
        return mockrun.stack_file(change.stack)
    return mockrun.ROOT / "examples" / change.stack / f"Pulumi.{change.stack}.yaml"


def _values(change: UserChange, after: bool) -> dict[str, Any]:
    values, _ = mockrun.read_config_file(_config_file(change))
    decoded = {key: json.loads(text) if text[:1] in "{[" else text for key, text in values.items()}
    overrides: dict[str, Any] = {}
    for key, fragment in change.base.items():
        overrides[key] = merge(decoded[key], fragment) if key in decoded else fragment
    if after:
        for key, fragment in change.fragment.items():
            start = overrides.get(key, decoded.get(key))
            overrides[key] = merge(start, fragment) if start is not None else fragment
    overrides.update(change.new_secrets if after else change.secrets)
    return overrides


def _run(change: UserChange, after: bool, prior: Mapping[str, readback.StateEntry] | None) -> mockrun.Run:
    secrets = change.new_secrets if after else change.secrets
    run = mockrun.run(
        change.stack,
        config_file=_config_file(change),
        overrides=_values(change, after),
        secret_keys=list(secrets),
        prior=prior,
    )
    if run.error is not None:
        raise RuntimeError(f"{change.title}: {run.error}")
    return run


def impact(change: UserChange, before: mockrun.Run | None = None) -> Impact:
    """``before``: the stack as deployed before the change, if already run (see ``impacts``)."""
    if before is None:
        before = _run(change, False, None)
    state = readback.state_after_up(before.resources)
    after = _run(change, True, state)
    plan = readback.plan(state, after.resources)
    order = _order(plan, after, state)
    restarted = tuple(
        name
        for kind, name in order
        if kind in ("update", "replace") and _type_of(name, after, state) == SERVICE and _restarts(plan, name, after)
    )
    return Impact(change, plan, tuple(order), restarted)


def impacts(changes: tuple[UserChange, ...] = CHANGES) -> list[Impact]:
    """Each change's impact, in order. Changes that start from the same deployed stack (the same
    stack, config and secrets before the change) share its first run: 9 runs instead of 18 for
    CHANGES."""
    deployed: dict[str, mockrun.Run] = {}
    found = []
    for change in changes:
        key = json.dumps([change.stack, str(_config_file(change)), _values(change, False)], sort_keys=True, default=str)
        if key not in deployed:
            deployed[key] = _run(change, False, None)
        found.append(impact(change, deployed[key]))
    return found


def _type_of(name: str, run: mockrun.Run, state: Mapping[str, readback.StateEntry]) -> str:
    for resource in run.resources:
        if resource.name == name:
            return resource.type
    return next((entry.type for entry in state.values() if entry.name == name), "")


def _restarts(plan: readback.Plan, name: str, run: mockrun.Run) -> bool:
    """A service restarts when its task spec changes (swarm replaces every task) or it is replaced;
    its replicas alone only add or remove tasks."""
    urn = next(r.urn for r in run.resources if r.name == name)
    changes = plan.replaces.get(urn) or plan.updates.get(urn) or []
    return urn in plan.replaces or any(change.path.startswith("taskSpec.") for change in changes)


def _order(plan: readback.Plan, run: mockrun.Run, state: Mapping[str, readback.StateEntry]) -> list[tuple[str, str]]:
    """The engine's order: creations and updates as dependencies allow (a replacement's new object
    is created first, unless its provider deletes first), then the deletions of replaced objects."""
    by_urn = {r.urn: r for r in run.resources}
    kinds = {urn: kind for kind, urn, _ in plan.steps()}
    done: set[str] = set()
    order: list[tuple[str, str]] = []

    def visit(urn: str) -> None:
        if urn in done or urn not in by_urn:
            return
        done.add(urn)
        for dependency in by_urn[urn].depends_on:
            visit(dependency)
        if by_urn[urn].parent:
            visit(by_urn[urn].parent)
        if urn in kinds and kinds[urn] != "delete":
            order.append((kinds[urn], by_urn[urn].name))

    for resource in run.resources:
        visit(resource.urn)
    order += [("delete", state[urn].name) for urn in _deletion_order(plan.deletes, state)]
    order += [("delete replaced", by_urn[urn].name) for urn in plan.replaces]
    return order


def _deletion_order(deletes: list[str], state: Mapping[str, readback.StateEntry]) -> list[str]:
    """Deleted resources in the engine's order: each before the resources it depends on (a node's
    membership, whose delete drains it, before its server)."""
    gone = set(deletes)
    dependents: dict[str, list[str]] = {urn: [] for urn in deletes}
    for urn in deletes:
        for dependency in state[urn].dependencies:
            if dependency in gone:
                dependents[dependency].append(urn)
    order: list[str] = []
    done: set[str] = set()

    def visit(urn: str) -> None:
        if urn in done:
            return
        done.add(urn)
        for dependent in dependents[urn]:
            visit(dependent)
        order.append(urn)

    for urn in deletes:
        visit(urn)
    return order


def markdown(impacts: list[Impact]) -> str:
    lines = [
        "| change | created / deleted | updated in place | replaced (new one first, then the old deleted) "
        "| services restarted | what it means |",
        "|---|---|---|---|---|---|",
    ]
    for item in impacts:
        made = [f"+{name}" for name in sorted(item.names("create"))]
        gone = [f"-{name}" for name in sorted(item.names("delete"))]
        created = ", ".join(made + gone) or "nothing"
        updated = ", ".join(sorted(item.names("update"))) or "nothing"
        replaced = ", ".join(sorted(item.names("replace"))) or "nothing"
        # Sorted like the other columns: independent services register in no fixed order.
        restarted = ", ".join(sorted(item.restarted)) or "none"
        title = f"{item.change.title} ({item.change.stack})"
        lines.append(f"| {title} | {created} | {updated} | {replaced} | {restarted} | {item.change.meaning} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    print(markdown(impacts()))


if __name__ == "__main__":
    main()
