"""A read-back model of every provider the program uses, from their sources at the pinned versions.

- ``MODELS``: resource type -> ResourceModel (what Read stores, what forces replacement);
- ``CALLS``: invoke token -> what the provider answers;
- ``state_after_up(run)``: the state a real ``pulumi up`` then ``pulumi refresh`` would leave;
- ``plan(state, run)``: the next ``pulumi preview`` of a program run against that state.

The mock runtime (tools/mockrun.py) answers registrations with ``ResourceModel.state`` and
``outputs``, so graph tests see what the providers really return (the IPv6 network address,
the digest-pinned image after create, Go durations) rather than the inputs echoed back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tools.readback import cloudflare, command, docker, hcloud, random_, tls
from tools.readback.model import MISSING, Change, Plan, ResourceModel, Rule, show_path

MODELS: dict[str, ResourceModel] = {
    **docker.MODELS,
    **hcloud.MODELS,
    **cloudflare.MODELS,
    **command.MODELS,
    **tls.MODELS,
    **random_.MODELS,
}
CALLS = {**cloudflare.CALLS, **docker.CALLS}
PROVIDER_TYPES = ("pulumi:providers:",)
COMPONENT = "keel:index:"

__all__ = [
    "MISSING",
    "MODELS",
    "Change",
    "Plan",
    "ResourceModel",
    "Rule",
    "StateEntry",
    "plan",
    "resource_id",
    "show_path",
    "state_after_up",
]


class UnmodelledResourceError(KeyError):
    """The program registered a resource type the read-back model does not know."""


def model(type_: str) -> ResourceModel:
    try:
        return MODELS[type_]
    except KeyError:
        raise UnmodelledResourceError(
            f"{type_}: no read-back model; add one to tools/readback/ from the provider's source"
        ) from None


def is_modelled(type_: str, custom: bool) -> bool:
    """Components and providers have no provider-side state to model."""
    return custom and not type_.startswith(PROVIDER_TYPES)


@dataclass(frozen=True)
class StateEntry:
    """One resource in the state after an ``up``: what was sent, and what the provider stored."""

    urn: str
    type: str
    name: str
    id: str
    inputs: dict[str, Any]
    state: dict[str, Any]
    protect: bool = False
    dependencies: tuple[str, ...] = ()
    """The URNs it depends on (explicit and through its inputs): the engine deletes it before them."""


def state_after_up(resources: Iterable[Any]) -> dict[str, StateEntry]:
    """The state ``pulumi up`` then ``pulumi refresh`` leave for these registrations."""
    out = {}
    context: dict[str, Any] = {"built_images": set()}
    for resource in resources:
        if not is_modelled(resource.type, resource.custom):
            continue
        if resource.type == "docker:index/remoteImage:RemoteImage" and resource.inputs.get("build"):
            context["built_images"].add(resource.inputs.get("name"))
        stored = model(resource.type).state(resource.inputs, resource.name, context)
        out[resource.urn] = StateEntry(
            resource.urn,
            resource.type,
            resource.name,
            resource_id(resource.type, resource.name, resource.inputs),
            dict(resource.inputs),
            stored,
            resource.protect,
            tuple(resource.depends_on),
        )
    return out


def resource_id(type_: str, name: str, inputs: Mapping[str, Any] | None = None) -> str:
    """The id a provider gives a new resource (hcloud's are integers the program converts)."""
    if type_.startswith("hcloud:"):
        return hcloud.resource_id(type_, name, inputs)
    return f"{name}-id"


def plan(state: Mapping[str, StateEntry], resources: Iterable[Any]) -> Plan:
    """The next preview: each registration diffed against the state with its provider's semantics."""
    result = Plan()
    seen = set()
    for resource in resources:
        if not is_modelled(resource.type, resource.custom):
            continue
        seen.add(resource.urn)
        entry = state.get(resource.urn)
        if entry is None:
            result.creates.append(resource.urn)
            continue
        changes = model(resource.type).diff(entry.state, resource.inputs, tuple(resource.ignore_changes))
        if any(change.replaces for change in changes):
            result.replaces[resource.urn] = changes
        elif changes:
            result.updates[resource.urn] = changes
    result.deletes = [urn for urn in state if urn not in seen]
    return result
