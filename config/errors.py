"""The one error type for bad configuration, and the translation of pydantic's errors into it.

Every message starts with the key path (``host/server_type``), says what was found and what
is expected. ``ConfigError`` subclasses ``pulumi.RunError`` so the Pulumi language host prints
the message alone, without a Python traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pulumi
from pydantic import ValidationError


class ConfigError(pulumi.RunError):
    """Bad stack configuration. ``problems`` holds one ``path: message`` line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            text = self.problems[0]
        else:
            text = f"{len(self.problems)} configuration problems:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text)

    @classmethod
    def at(cls, path: str, message: str) -> ConfigError:
        return cls([f"{path}: {message}"])


class KeyPathError(ValueError):
    """Raised inside a validator for a key below the one being validated (``subpath``)."""

    def __init__(self, subpath: str | int, message: str) -> None:
        super().__init__(message)
        self.subpath = str(subpath)
        self.message = message


def key_path(*parts: object) -> str:
    """Join key path segments; a segment that is itself a path (a mount point) is quoted."""
    return "/".join(f'"{p}"' if "/" in str(p) else str(p) for p in parts)


def show(value: Any) -> str:
    """Render a found value the way the user wrote it in YAML."""
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


# Segments pydantic adds to a location that are not keys the user wrote: the tag of a
# discriminated union ("app", "postgres") and function-validator names.
def _path(section: str, loc: Iterable[Any], tags: frozenset[str], err: Any) -> str:
    parts = [section] if section else []
    for item in loc:
        text = str(item)
        if text in tags or text.startswith("function-") or "[" in text:
            continue
        parts.append(text)
    problem = (err.get("ctx") or {}).get("error")
    if isinstance(problem, KeyPathError):
        parts.extend(p for p in problem.subpath.split("/") if p)
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        parts.append(str((err.get("ctx") or {}).get("discriminator", "")).strip("'") or "kind")
    return key_path(*parts)


def _message(err: Any) -> str:
    kind = err["type"]
    found = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return "is required but missing"
    if kind == "extra_forbidden":
        return "is not a known key; check its spelling against the config reference in README.md"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"found {show(found)}; expected a whole number"
    if kind in ("float_type", "float_parsing"):
        return f"found {show(found)}; expected a number"
    if kind in ("bool_type", "bool_parsing"):
        return f"found {show(found)}; expected true or false"
    if kind in ("string_type",):
        return f"found {show(found)}; expected a string"
    if kind in ("list_type",):
        return f"found {show(found)}; expected a list"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"found {show(found)}; expected a mapping of keys to values"
    if kind == "literal_error":
        return f"found {show(found)}; expected one of {ctx.get('expected', '')}"
    if kind == "union_tag_invalid":
        if ctx.get("tag") in (None, "None"):
            return f"is required but missing; expected one of {ctx.get('expected_tags', '')}"
        return f"found {show(ctx.get('tag'))}; expected one of {ctx.get('expected_tags', '')}"
    if kind == "union_tag_not_found":
        return "is required but missing"
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        word = "at least" if kind == "greater_than_equal" else "more than"
        return f"found {show(found)}; expected {word} {bound}"
    if kind in ("less_than_equal", "less_than"):
        bound = ctx.get("le", ctx.get("lt"))
        word = "at most" if kind == "less_than_equal" else "less than"
        return f"found {show(found)}; expected {word} {bound}"
    if kind == "too_short":
        return f"found {ctx.get('actual_length', 0)} item(s); expected at least {ctx.get('min_length')}"
    if kind == "too_long":
        return f"found {ctx.get('actual_length')} item(s); expected at most {ctx.get('max_length')}"
    if kind == "string_pattern_mismatch":
        return f"found {show(found)}; expected text matching {ctx.get('pattern')}"
    if kind in ("value_error", "assertion_error"):
        problem = ctx.get("error")
        if isinstance(problem, KeyPathError):
            return problem.message
        return str(problem if problem is not None else err.get("msg", ""))
    return f"found {show(found)}; {err.get('msg', 'is not valid')}"


def from_validation_error(section: str, error: ValidationError, tags: frozenset[str] = frozenset()) -> ConfigError:
    problems = []
    for err in error.errors(include_url=False):
        path = _path(section, err["loc"], tags, err)
        problems.append(f"{path}: {_message(err)}")
    return ConfigError(problems)
