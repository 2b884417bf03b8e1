"""The stack's desired state: pydantic models and the one loader of Pulumi config.

``load``, ``parse`` and ``Stack`` are imported on first use: config.models builds its services
union from the store-kind registry, whose kinds' specs import config.base, so importing the loader
here, eagerly, would close that loop whichever side is imported first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from config.errors import ConfigError

if TYPE_CHECKING:
    from config.loader import Stack, load, parse

__all__ = ["ConfigError", "Stack", "load", "parse"]


def __getattr__(name: str) -> Any:
    if name in ("Stack", "load", "parse"):
        from config import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'config' has no attribute {name!r}")
