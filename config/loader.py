"""`load()`: the one reader of Pulumi config. It returns a validated, frozen stack description.

Order: refuse keys in an unknown namespace (``keell:observability``) and keys that are no
section (``servics``), each named before anything else; read the raw keys of the project
namespace, merge them over the shared topology named by `base`, refuse text no consumer can
carry (NUL, broken Unicode, absurd nesting), validate each section, run the cross-reference
pass, then check that every secret the config names is set, and set as a secret. Any problem
raises ConfigError before a single resource is registered; warnings are logged once, after.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config
from pydantic import ValidationError

from config import crossref, grammar, yamlfile
from config.errors import ConfigError, from_validation_error, key_path, show
from config.models import SECTIONS, SERVICE_KINDS, LocalHostSpec, SecretRule, StackConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCALAR_SECTIONS = ("environment", "name_prefix", "base")
RESERVED = frozenset(SECTIONS) | {"base"}
# Namespaces a stack's keys may have besides the project's: the providers this program uses
# (their own keys, such as hcloud:token) and Pulumi's (pulumi:tags, pulumi:disable-default-providers).
PROVIDER_NAMESPACES = ("cloudflare", "command", "docker", "hcloud", "pulumi", "random", "tls")
MAX_DEPTH = 32
"""Nesting of config values; the deepest a stack needs is 5 (services/api/health/command/0)."""


@dataclass(frozen=True)
class Stack:
    """What the program deploys: the validated config and the secret values it names."""

    project: str
    name: str
    config: StackConfig
    secrets: dict[str, pulumi.Output[str]]


def load() -> Stack:
    project = pulumi.get_project()
    everything = _all_config()
    problems = namespace_problems(project, everything)
    if problems:
        raise ConfigError(problems)
    raw = _project_config(project)
    secret_keys = {key for key in raw if _is_secret(f"{project}:{key}")}
    cfg = parse(raw, base_dir=PROJECT_ROOT, secret_keys=secret_keys)
    secrets = _secrets(project, cfg, raw)
    _provider_credentials(cfg)
    # Once per run, after every check passed and before anything is registered.
    for warning in crossref.plaintext_credentials(cfg):
        pulumi.log.warn(warning)
    return Stack(project=project, name=pulumi.get_stack(), config=cfg, secrets=secrets)


def parse(raw: dict[str, str], base_dir: Path = PROJECT_ROOT, *, secret_keys: Collection[str] = ()) -> StackConfig:
    """Validate raw config values (key without namespace -> the string Pulumi hands over).

    ``secret_keys``: keys set with --secret (never taken for a misspelt section).
    """
    problems = unknown_sections(raw, secret_keys)
    if problems:
        raise ConfigError(problems)
    values: dict[str, Any] = {}
    for key, text in raw.items():
        if key in SCALAR_SECTIONS:
            values[key] = text
        elif key in SECTIONS:
            values[key] = _decode(key, text)
    base = values.pop("base", None)
    if base is not None:
        values = merge(_read_topology(base, base_dir), values)
    problems = unreadable_values(values)
    if problems:
        raise ConfigError(problems)
    _check_service_kinds(values.get("services"))
    try:
        cfg = StackConfig.model_validate(values)
    except ValidationError as error:
        raise from_validation_error("", error, tags=SERVICE_KINDS | {"hcloud", "local"}) from None
    crossref.check(cfg)
    return cfg


def namespace_problems(project: str, keys: Iterable[str]) -> list[str]:
    """Keys outside the project's and the providers' namespaces (``keell:observability``): Pulumi
    hands them over like any other and nothing would read them."""
    known = (project, *PROVIDER_NAMESPACES)
    problems = []
    for key in sorted(keys):
        namespace, colon, rest = key.partition(":")
        if not colon:
            problems.append(f"{key_path(key)}: is not a namespaced key; expected {project}:<section>")
        elif namespace not in known:
            close = difflib.get_close_matches(namespace, known, n=1, cutoff=0.75)
            providers = ", ".join(f"{name}:" for name in PROVIDER_NAMESPACES)
            hint = (
                f"; did you mean {close[0]}:{rest}?"
                if close
                else f"; expected {project}:<section> or a provider's key ({providers})"
            )
            problems.append(f"{key_path(key)}: {show(namespace)} is not a namespace this program reads{hint}")
    return problems


def unknown_sections(raw: dict[str, str], secret_keys: Collection[str] = ()) -> list[str]:
    """Project keys that are no section, named before any validation: a misspelt ``servics``
    would otherwise surface only as a follow-on error (no services, a route to nothing).

    A key that is close to a section's name, or whose value is a mapping or a list, is a
    misspelt section. Any other unknown key may be a secret the config names; `_secrets`
    decides, once the config is known.
    """
    problems = []
    for key in sorted(set(raw) - RESERVED - set(secret_keys)):
        close = grammar.did_you_mean(key, sorted(RESERVED))
        if close:
            problems.append(f"{key_path(key)}: is not a config section{close}")
            continue
        try:
            structured = isinstance(json.loads(raw[key]), (dict, list))
        except (ValueError, TypeError, RecursionError):
            structured = False
        if structured:
            problems.append(f"{key_path(key)}: is not a config section; expected one of {', '.join(SECTIONS)}, base")
    return problems


def unreadable_values(values: Any) -> list[str]:
    """Text no consumer of the config can carry, wherever it is: a NUL (execve, environment
    variables and C strings end there), text that is not Unicode (a lone surrogate from a
    \\ud800 escape cannot be encoded for the engine), and nesting no stack needs."""
    problems: list[str] = []
    stack: list[tuple[tuple[str, ...], Any]] = [((), values)]
    while stack and len(problems) < 10:
        path, value = stack.pop()
        if len(path) > MAX_DEPTH:
            problems.append(
                f"{key_path(*path[:MAX_DEPTH])}: nests more than {MAX_DEPTH} levels deep; expected a stack config"
            )
            continue
        items: Iterable[tuple[Any, Any]] = ()
        if isinstance(value, dict):
            items = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        elif isinstance(value, str) and (problem := _unreadable_text(value)) is not None:
            problems.append(f"{key_path(*path)}: found {show(value)}, {problem}")
        for key, item in items:
            if isinstance(key, str) and (problem := _unreadable_text(key)) is not None:
                problems.append(f"{key_path(*path, key)}: found the key {show(key)}, {problem}")
                continue
            stack.append(((*path, str(key)), item))
    return sorted(problems)


def _unreadable_text(text: str) -> str | None:
    if "\x00" in text:
        return "which holds a NUL character; expected text without it"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "which is not valid Unicode (a lone surrogate); expected text without it"
    return None


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
    except RecursionError:
        raise ConfigError.at(key, f"nests more than {MAX_DEPTH} levels deep; expected a stack config") from None
    except (json.JSONDecodeError, TypeError):
        raise ConfigError.at(key, f"found {show(text)}; expected a mapping of keys to values") from None
    except ValueError:
        # int() refuses more than 4300 digits; nothing in a stack is that large.
        raise ConfigError.at(key, "holds a number of over 4300 digits; expected a stack config") from None


def _check_service_kinds(services: Any) -> None:
    # A discriminated union reports a bad `kind` tersely; say which kinds exist.
    if not isinstance(services, dict):
        return
    for name, body in services.items():
        # A list or a mapping is no kind either (and cannot be looked up in a set).
        if (
            isinstance(body, dict)
            and "kind" in body
            and not (isinstance(body["kind"], str) and body["kind"] in SERVICE_KINDS)
        ):
            kinds = ", ".join(sorted(SERVICE_KINDS))
            raise ConfigError.at(f"services/{name}/kind", f"found {show(body['kind'])}; expected one of {kinds}")


def _read_topology(base: str, base_dir: Path) -> dict[str, Any]:
    """The topology file `base` names: a YAML file inside the project directory.

    Only inside: the preview workflow posts this program's output on pull requests, and an error
    about a file elsewhere (a path with .., an absolute path, a symbolic link out) would show
    what that file holds. No message here quotes the file's content.
    """
    expected = "expected a topology YAML path relative to the project directory, such as topology/webapp.yaml"
    if (
        len(base) > grammar.PATH_MAX
        or not grammar.matches(grammar.RELATIVE_PATH, base)
        or any(part in (".", "..") for part in base.split("/"))
    ):
        raise ConfigError.at("base", f"found {show(base)}; {expected} (no leading /, no . or .. segments)")
    if not base.endswith((".yaml", ".yml")):
        raise ConfigError.at("base", f"found {show(base)}, which is not a .yaml or .yml file; {expected}")
    root = base_dir.resolve()
    path = (root / base).resolve()
    if not path.is_relative_to(root):
        raise ConfigError.at(
            "base", f"found {show(base)}, which leads out of the project directory (a symbolic link); {expected}"
        )
    if not path.is_file():
        raise ConfigError.at("base", f"found {show(base)}, which is not a file; {expected}")
    where = f"base ({base})"
    try:
        with path.open("rb") as handle:
            text = handle.read(yamlfile.MAX_BYTES + 1)
        data = yamlfile.load(text)
    except yamlfile.YamlFileError as error:
        raise ConfigError.at(where, str(error)) from None
    except OSError as error:
        raise ConfigError.at(where, f"cannot be read ({error.strerror})") from None
    if not isinstance(data, dict):
        raise ConfigError.at(where, f"holds {_kind(data)}; expected a mapping of config sections")
    for key in data:
        if key not in SECTIONS:
            close = grammar.did_you_mean(key, SECTIONS) or f"; expected one of {', '.join(SECTIONS)}"
            raise ConfigError.at(f"{where}/{key_path(str(key))}", f"is not a config section{close}")
    return data


def _kind(value: Any) -> str:
    """What a value is, without showing it (a file's content is not echoed)."""
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "a list"
    return "a single value"


def _all_config() -> dict[str, Any]:
    values = dict(runtime_config.get_config_env())
    values.update(runtime_config.CONFIG.get())
    return values


def _project_config(project: str) -> dict[str, str]:
    prefix = f"{project}:"
    return {key[len(prefix) :]: value for key, value in _all_config().items() if key.startswith(prefix)}


def _is_secret(full_key: str) -> bool:
    return runtime_config.is_config_secret(full_key) or _secret_in_env(full_key)


def _secrets(project: str, cfg: StackConfig, raw: dict[str, str]) -> dict[str, pulumi.Output[str]]:
    refs = crossref.referenced_secrets(cfg)
    problems = []
    for key in sorted(set(raw) - RESERVED - set(refs)):
        close = grammar.did_you_mean(key, refs)
        problems.append(
            f"{key_path(key)}: is not a known key{close}"
            if close
            else f"{key_path(key)}: is not a known key; expected one of {', '.join(SECTIONS)}, base, "
            "or a secret that the config names"
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
        elif not _is_secret(full):
            problems.append(
                f"{name}: is stored in plaintext but {where} needs a secret; "
                f"run: pulumi config set --secret {name} <value>"
            )
        elif not str(raw[name]):
            # An empty password would be a Redis ACL without a password, a database no one can log in to.
            problems.append(
                f"{name}: is empty but {where} needs a value; run: pulumi config set --secret {name} <value>"
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
