"""The one error type for bad configuration, and the translation of pydantic's errors into it.

Every message starts with the key path (``host/server_type``), says what was found and what
is expected. ``ConfigError`` subclasses ``pulumi.RunError`` so the Pulumi language host prints
the message alone, without a Python traceback.
"""

from __future__ import annotations

import re
import unicodedata
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
    """Raised inside a validator for a key below the one being validated.

    ``subpath`` is ``a/b/0``, an index, or a tuple of segments when a segment holds a slash
    itself (a mount point).
    """

    def __init__(self, subpath: str | int | tuple[str, ...], message: str) -> None:
        super().__init__(message)
        if isinstance(subpath, tuple):
            self.segments = tuple(str(part) for part in subpath)
        else:
            self.segments = tuple(part for part in str(subpath).split("/") if part)
        self.subpath = key_path(*self.segments)
        self.message = message


_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9_.:@+-]+", re.ASCII)


def key_path(*parts: object) -> str:
    """Join key path segments; a segment that is not a plain name (a mount point, a misspelt key
    with spaces or control characters in it) is quoted and escaped as ``show`` does."""
    return "/".join(
        str(p) if _PLAIN_SEGMENT.fullmatch(str(p)) and len(str(p)) <= SHOW_MAX else show(str(p)) for p in parts
    )


SHOW_MAX = 80


def show(value: Any) -> str:
    """Render a found value the way the user wrote it in YAML, safe to print.

    Control, format (bidirectional overrides) and separator characters are escaped, so a value
    cannot forge lines or reorder text in the output (the preview workflow posts it on pull
    requests); a long value is cut, with its length.
    """
    if isinstance(value, str):
        text = "".join(_escape(char) for char in value[:SHOW_MAX])
        if len(value) > SHOW_MAX:
            return f'"{text}…" ({len(value)} characters)'
        return f'"{text}"'
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def _escape(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    if char == "\n":
        return "\\n"
    if char == "\t":
        return "\\t"
    if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn"):
        code = ord(char)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return char


def unknown_key(key: object, known: Iterable[str]) -> str:
    """The message for a key no model has, with the closest known key when one is close."""
    import difflib

    names = list(known)
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.75) if isinstance(key, str) else []
    if close:
        return f"is not a known key; did you mean {close[0]}?"
    return f"is not a known key; expected one of {', '.join(names)}"


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
        parts.extend(problem.segments)
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
