"""`load()`: the one reader of Pulumi config. It returns a validated, frozen stack description.

Order: read the raw keys of the project namespace, merge them over the shared topology named
by `base`, validate each section, run the cross-reference pass, then check that every secret
the config names is set, and set as a secret. Any problem raises ConfigError before a single
resource is registered.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import config as runtime_config
from pydantic import ValidationError

from config import crossref
from config.errors import ConfigError, from_validation_error, show
from config.models import SECTIONS, SERVICE_KINDS, LocalHostSpec, SecretRule, StackConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCALAR_SECTIONS = ("environment", "name_prefix", "base")
RESERVED = frozenset(SECTIONS) | {"base"}


@dataclass(frozen=True)
class Stack:
    """What the program deploys: the validated config and the secret values it names."""

    project: str
    name: str
    config: StackConfig
    secrets: dict[str, pulumi.Output[str]]


def load() -> Stack:
    project = pulumi.get_project()
    raw = _project_config(project)
    cfg = parse(raw, base_dir=PROJECT_ROOT)
    secrets = _secrets(project, cfg, raw)
    _provider_credentials(cfg)
    return Stack(project=project, name=pulumi.get_stack(), config=cfg, secrets=secrets)


def parse(raw: dict[str, str], base_dir: Path = PROJECT_ROOT) -> StackConfig:
    """Validate raw config values (key without namespace -> the string Pulumi hands over)."""
    values: dict[str, Any] = {}
    for key, text in raw.items():
        if key in SCALAR_SECTIONS:
            values[key] = text
        elif key in SECTIONS:
            values[key] = _decode(key, text)
    base = values.pop("base", None)
    if base is not None:
        values = merge(_read_topology(base, base_dir), values)
    _check_service_kinds(values.get("services"))
    try:
        cfg = StackConfig.model_validate(values)
    except ValidationError as error:
        raise from_validation_error("", error, tags=SERVICE_KINDS | {"hcloud", "local"}) from None
    crossref.check(cfg)
    return cfg


def merge(base: Any, override: Any) -> Any:
    """Deep-merge mappings; any other value in `override` replaces the one in `base`."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    return override


def _decode(key: str, text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        raise ConfigError.at(key, f"found {show(text)}; expected a mapping of keys to values") from None


def _check_service_kinds(services: Any) -> None:
    # A discriminated union reports a bad `kind` tersely; say which kinds exist.
    if not isinstance(services, dict):
        return
    for name, body in services.items():
        if isinstance(body, dict) and "kind" in body and body["kind"] not in SERVICE_KINDS:
            kinds = ", ".join(sorted(SERVICE_KINDS))
            raise ConfigError.at(f"services/{name}/kind", f"found {show(body['kind'])}; expected one of {kinds}")


class _UniqueKeyLoader(yaml.CSafeLoader):
    """YAML loader that refuses a key written twice in one mapping (PyYAML keeps the last); libyaml's
    parser, which PyYAML's wheels bundle, is several times faster than the pure-Python one."""

    name: str  # the file, for messages (the C parser keeps none)


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError.at(
                f"base ({Path(loader.name).name}, line {key_node.start_mark.line + 1})",
                f"{show(key)} is defined twice in one mapping; expected each name once",
            )
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_topology(base: str, base_dir: Path) -> dict[str, Any]:
    path = (base_dir / base).resolve()
    if not path.is_file():
        raise ConfigError.at(
            "base",
            f"found {show(base)}, which is not a file; expected a topology YAML path relative to the project directory",
        )
    with path.open() as handle:
        loader = _UniqueKeyLoader(handle)
        loader.name = str(path)
        try:
            data = loader.get_single_data()
        except yaml.YAMLError as error:
            raise ConfigError.at("base", f"{path.name} is not valid YAML: {error}") from None
        finally:
            loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError.at("base", f"{path.name} holds {show(data)}; expected a mapping of config sections")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError.at(
            f"base ({path.name})/{unknown[0]}", f"is not a config section; expected one of {', '.join(SECTIONS)}"
        )
    return data


def _all_config() -> dict[str, Any]:
    values = dict(runtime_config.get_config_env())
    values.update(runtime_config.CONFIG.get())
    return values


def _project_config(project: str) -> dict[str, str]:
    prefix = f"{project}:"
    return {key[len(prefix) :]: value for key, value in _all_config().items() if key.startswith(prefix)}


def _secrets(project: str, cfg: StackConfig, raw: dict[str, str]) -> dict[str, pulumi.Output[str]]:
    refs = crossref.referenced_secrets(cfg)
    problems = []
    for key in sorted(set(raw) - RESERVED - set(refs)):
        problems.append(
            f"{key}: is not a known key; expected one of {', '.join(SECTIONS)}, base, or a secret that the config names"
        )
    for name, where in sorted(refs.items()):
        full = f"{project}:{name}"
        if name in RESERVED:
            problems.append(f"{where}: the secret name {show(name)} is a config section name; choose another name")
        elif name not in raw:
            problems.append(
                f"{where}: names the secret {show(name)}, which is not set; "
                f"run: pulumi config set --secret {name} <value>"
            )
        elif not runtime_config.is_config_secret(full) and not _secret_in_env(full):
            problems.append(
                f"{name}: is stored in plaintext but {where} needs a secret; "
                f"run: pulumi config set --secret {name} <value>"
            )
    for name, rule in sorted(cfg.secret_rules.items()):
        if name not in refs:
            problems.append(
                f"secret_rules/{name}: {show(name)} is not a secret the config names; "
                f"expected one of {', '.join(sorted(refs)) or 'none'}"
            )
        elif name in raw:
            problems += _rule_problems(name, rule, str(raw[name]), refs[name])
    if problems:
        raise ConfigError(problems)
    config = pulumi.Config(project)
    return {name: config.require_secret(name) for name in sorted(refs)}


def _rule_problems(name: str, rule: SecretRule, value: str, where: str) -> list[str]:
    """Check a secret's value against its rule; messages describe the value, never show it."""
    problems = []
    if len(value) < rule.min_length:
        problems.append(
            f"secret_rules/{name}: the value of {show(name)} (used by {where}) is {len(value)} characters long; "
            f"expected at least {rule.min_length} (generate one with: openssl rand -base64 {rule.min_length})"
        )
    if rule.pattern is not None and not re.fullmatch(rule.pattern, value):
        problems.append(
            f"secret_rules/{name}: the value of {show(name)} (used by {where}) does not match {rule.pattern}"
        )
    return problems


def _secret_in_env(full_key: str) -> bool:
    return full_key in runtime_config.get_config_secret_keys_env()


def _provider_credentials(cfg: StackConfig) -> None:
    needed = []
    if not isinstance(cfg.host, LocalHostSpec):
        needed.append(("hcloud:token", "HCLOUD_TOKEN"))
    if cfg.dns is not None:
        needed.append(("cloudflare:apiToken", "CLOUDFLARE_API_TOKEN"))
    problems = []
    values = _all_config()
    for key, env in needed:
        if key in values:
            if not runtime_config.is_config_secret(key) and not _secret_in_env(key):
                problems.append(f"{key}: is stored in plaintext; run: pulumi config set --secret {key} <token>")
        elif not os.environ.get(env):
            problems.append(
                f"{key}: is required but missing; run: pulumi config set --secret {key} <token> (or export {env})"
            )
    if problems:
        raise ConfigError(problems)
