"""Warnings and errors a provider reports while it plans or applies one resource.

The read-back model answers "what does the next preview change"; a provider can also print a
warning on every preview (a deprecated or unused attribute) or fail the apply of an input the
schema accepts. Each provider module maps a resource type to a function that names them, from
the provider's source, given the new inputs and the state (None when the resource is new).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Diagnostic:
    severity: Literal["warning", "error"]
    summary: str
    source: str
    when: Literal["preview", "apply"] = "preview"
    """``preview``: printed by every plan that sees these inputs; ``apply``: fails (or warns on) the
    create/update that sends them."""


Check = Callable[[Mapping[str, Any], Mapping[str, Any] | None], list[Diagnostic]]
