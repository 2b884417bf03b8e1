"""Shared test helpers: stack configs with one fragment merged in, and mock runs of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from config.loader import merge
from tools import mockrun

ROOT = Path(__file__).resolve().parent.parent


def stack_values(stack: str) -> dict[str, Any]:
    """The `config:` mapping of a stack file, as YAML values."""
    return dict(yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"])


def with_fragment(stack: str, fragment: dict[str, Any]) -> dict[str, Any]:
    """The stack's config keys with `fragment` deep-merged into them (keys are full, e.g. keel:host)."""
    values = stack_values(stack)
    return {key: merge(values[key], value) if key in values else value for key, value in fragment.items()}


def run_with(stack: str, fragment: dict[str, Any] | None = None, **kwargs: Any) -> mockrun.Run:
    return mockrun.run(stack, overrides=with_fragment(stack, fragment or {}), **kwargs)
