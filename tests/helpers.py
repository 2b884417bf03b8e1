"""Shared test helpers: stack configs with one fragment merged in, and mock runs of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from config import parse
from config.loader import merge
from config.models import StackConfig
from tools import mockrun

ROOT = Path(__file__).resolve().parent.parent

# Alert delivery by e-mail and a backup repository, as test fragments of the config.
EMAIL_ALERTS = {
    "kind": "email",
    "email_to": "ops@example.com",
    "email_from": "alerts@example.com",
    "smtp_host": "smtp.example.com:587",
    "smtp_username": "alerts",
    "smtp_password_secret": "smtp_password",
}
BACKUP_ON = {"enabled": True, "repository": {"bucket": "shop-backups"}}


def stack_values(stack: str) -> dict[str, Any]:
    """The `config:` mapping of a stack file, as YAML values."""
    return dict(yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"])


def with_fragment(stack: str, fragment: dict[str, Any]) -> dict[str, Any]:
    """The stack's config keys with `fragment` deep-merged into them (keys are full, e.g. keel:host)."""
    values = stack_values(stack)
    return {key: merge(values[key], value) if key in values else value for key, value in fragment.items()}


def run_with(stack: str, fragment: dict[str, Any] | None = None, **kwargs: Any) -> mockrun.Run:
    return mockrun.run(stack, overrides=with_fragment(stack, fragment or {}), **kwargs)


def parsed(stack: str, fragment: dict[str, Any] | None = None) -> StackConfig:
    """The stack's validated config with `fragment` deep-merged in (without running the program)."""
    values = stack_values(stack)
    values.update(with_fragment(stack, fragment or {}))
    return parse(
        {key.split(":", 1)[1]: mockrun.encode_value(v) for key, v in values.items() if key.startswith("keel:")}
    )


def observability_config(stack: str, extra: dict[str, Any] | None = None, **observability: Any) -> StackConfig:
    """A stack with observability on; no alert receiver unless a test names one."""
    section = {"enabled": True, "alerts": {"kind": "none"}, **observability}
    return parsed(stack, {"keel:observability": section, **(extra or {})})


def observability_spec(cfg: StackConfig) -> Any:
    """The ObservabilitySpec the component builds, with the service names the components choose."""
    from render import observability as obs

    prefix = cfg.name_prefix
    return obs.observability_spec(
        cfg,
        name_prefix=prefix,
        proxy_service_name=f"{prefix}-proxy",
        app_service_names={name: f"{prefix}-{name}" for name in cfg.apps()},
        store_service_names={name: f"{prefix}-{name}" for name in cfg.stores()},
    )
