"""config/reference.yaml is the documentation of every key: it must stay a valid, complete config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from config import parse
from config.models import StackConfig

REFERENCE = Path(__file__).resolve().parent.parent / "config" / "reference.yaml"


def test_reference_is_a_valid_stack_config():
    data = yaml.safe_load(REFERENCE.read_text())
    raw = {key: value if isinstance(value, str) else json.dumps(value) for key, value in data.items()}
    cfg = parse(raw)
    assert cfg.environment == "prod" and cfg.host.provider == "hcloud"
    assert set(cfg.services) == {"web", "api", "mailer", "db", "cache", "uploads", "orders"}
    assert set(cfg.jobs) == {"nightly-report", "prune-uploads"}


def _field_names(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[str]:
    names: set[str] = set()
    if model in seen:
        return names
    seen.add(model)
    for name, field in model.model_fields.items():
        names.add(name)
        for inner in _models(field.annotation):
            names |= _field_names(inner, seen)
    return names


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models(arg)]


def test_reference_mentions_every_key_of_the_models():
    text = REFERENCE.read_text()
    missing = sorted(name for name in _field_names(StackConfig, set()) if f"{name}:" not in text)
    assert missing == [], f"config/reference.yaml does not document: {missing}"
