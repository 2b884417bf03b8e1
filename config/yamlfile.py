"""The one way this program reads a YAML file: bounded, strict, and silent about the file's content.

PyYAML's ``safe_load`` is unsafe for input someone else wrote in three ways, each measured here:

- **Aliases expand.** A 1 KB file of nested anchors and aliases ("billion laughs") loads as a
  shared structure in milliseconds, and then costs seconds and gigabytes in whatever walks it
  (merging, JSON encoding, validation). Topology files may not use anchors or aliases at all;
  a stack file read for the mock runtime may, up to MAX_EXPANDED_NODES values after expansion,
  as Pulumi's own reader (go-yaml v3) bounds alias expansion too.
- **Flow nesting is quadratic in libyaml.** ``[[[[...]]]]`` 20 000 levels deep (40 KB) takes
  8 s to parse; 200 000 levels do not finish in minutes. A linear scan refuses more than
  MAX_DEPTH open brackets before the parser sees the text.
- **Duplicate keys are silently dropped** (the last wins), so a service written twice is half
  deployed. Every mapping key must be a plain scalar, written once.

Explicit tags (``!!python/...``, ``!!binary``) and merge keys (``<<``) are refused too: none is
needed to describe a stack, and each changes what a reader sees from what is written.

Errors never quote the file: ``keel:base`` may name any path, and the preview workflow posts
this program's output on pull requests. They give the line, the column and a fixed description.
The C parser (libyaml) is used where PyYAML has it: it is ten times faster than the pure one.
"""

from __future__ import annotations

import gc
import re
from dataclasses import dataclass
from typing import Any

import yaml

MAX_BYTES = 1_000_000
MAX_DEPTH = 64
MAX_NODES = 50_000
"""Values (scalars and collections) a file may hold; a whole five-service stack holds about 400."""
MAX_EXPANDED_NODES = 100_000
"""Values after alias expansion, where aliases are allowed."""

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class YamlFileError(Exception):
    """Why a file was refused; ``line`` and ``column`` count from 1 (0 when not known)."""

    problem: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"line {self.line}, column {self.column}: {self.problem}"
        return self.problem


def load(text: str | bytes, *, allow_aliases: bool = False) -> Any:
    """The single document in ``text``, or YamlFileError."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise YamlFileError(f"is {len(text)} bytes long; expected at most {MAX_BYTES}")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise YamlFileError(f"is not UTF-8 text (byte {error.start + 1})") from None
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as error:
            # Only text handed over as str can hold one (bytes are decoded strictly above).
            raise YamlFileError(f"is not valid Unicode (a lone surrogate, character {error.start + 1})") from None
        if size > MAX_BYTES:
            raise YamlFileError(f"is longer than {MAX_BYTES} bytes")
    _check_bracket_depth(text)
    _check_events(text, allow_aliases=allow_aliases)
    # Collection passes over many young containers make construction quadratic; the node count
    # is bounded above, so nothing accumulates while the collector is off.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader, C or pure
    except yaml.MarkedYAMLError as error:
        raise _marked(error) from None
    except yaml.YAMLError:
        raise YamlFileError("is not valid YAML") from None
    except (ValueError, OverflowError):
        # int() refuses more than 4300 digits, and a date-shaped value may name no real day.
        raise YamlFileError(
            "holds a value that cannot be read (a number of over 4300 digits or an impossible date)"
        ) from None
    finally:
        if collecting:
            gc.enable()


def _check_bracket_depth(text: str) -> None:
    """Refuse deep flow nesting before libyaml's quadratic scanner sees it.

    Brackets inside quoted text count too (the scan does not parse YAML), so the limit is an
    over-estimate of the real nesting: it refuses only text that no stack needs.
    """
    depth = 0
    # Only the brackets are visited (a character loop over 1 MB costs a third of a second).
    for match in _BRACKETS.finditer(text):
        if match.group() in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                offset = match.start()
                line_start = text.rfind("\n", 0, offset) + 1
                raise YamlFileError(
                    f"opens more than {MAX_DEPTH} nested [ or {{",
                    text.count("\n", 0, offset) + 1,
                    offset - line_start + 1,
                )
        else:
            depth = max(0, depth - 1)


_BRACKETS = re.compile(r"[\[\]{}]")


@dataclass
class _Frame:
    mapping: bool
    anchor: str | None
    size: int = 1
    items: int = 0
    keys: set[str] | None = None


def _check_events(text: str, *, allow_aliases: bool) -> None:
    frames: list[_Frame] = []
    anchors: dict[str, int] = {}
    nodes = 0
    expanded = 0
    documents = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            mark = event.start_mark
            where = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise YamlFileError("holds more than one YAML document; expected one", *where)
                continue
            if not isinstance(event, (yaml.NodeEvent, yaml.CollectionEndEvent)):
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                done = frames.pop()
                if done.anchor is not None:
                    anchors[done.anchor] = done.size
                if frames:
                    frames[-1].size += done.size
                continue
            size = 1
            if isinstance(event, yaml.AliasEvent):
                if not allow_aliases:
                    raise YamlFileError("uses an alias (*name); anchors and aliases are not supported here", *where)
                size = anchors.get(str(event.anchor), 1)
            else:
                if event.anchor is not None and not allow_aliases:
                    raise YamlFileError("defines an anchor (&name); anchors and aliases are not supported here", *where)
                tag = getattr(event, "tag", None)
                if tag is not None and tag != "!":
                    raise YamlFileError("uses an explicit tag (!...); plain values only", *where)
                nodes += 1
                if nodes > MAX_NODES:
                    raise YamlFileError(f"holds more than {MAX_NODES} values", *where)
            expanded += size
            if expanded > MAX_EXPANDED_NODES:
                raise YamlFileError(f"expands to more than {MAX_EXPANDED_NODES} values through its aliases", *where)
            if frames:
                _check_key(frames[-1], event, where)
            if isinstance(event, yaml.CollectionStartEvent):
                if len(frames) >= MAX_DEPTH:
                    raise YamlFileError(f"nests more than {MAX_DEPTH} levels deep", *where)
                is_mapping = isinstance(event, yaml.MappingStartEvent)
                frames.append(_Frame(is_mapping, event.anchor, keys=set() if is_mapping else None))
            else:
                if isinstance(event, yaml.ScalarEvent) and event.anchor is not None:
                    anchors[event.anchor] = 1
                if frames:
                    frames[-1].size += size
    except yaml.MarkedYAMLError as error:
        raise _marked(error) from None
    except yaml.reader.ReaderError as error:
        code = error.character if isinstance(error.character, int) else ord(str(error.character)[:1] or "?")
        raise YamlFileError(
            f"holds a control character YAML does not allow (U+{code:04X}, character {error.position + 1})"
        ) from None
    except yaml.YAMLError:
        raise YamlFileError("is not valid YAML") from None


def _check_key(frame: _Frame, event: yaml.Event, where: tuple[int, int]) -> None:
    """In a mapping, every other node is a key: a scalar, written once, and never ``<<``."""
    frame.items += 1
    if not frame.mapping or frame.items % 2 == 0:
        return
    if not isinstance(event, yaml.ScalarEvent):
        raise YamlFileError("uses a list, a mapping or an alias as a key; expected a name", *where)
    plain = not event.style and bool(event.implicit[0])
    if plain and event.value == "<<":
        raise YamlFileError("uses a merge key (<<); write the keys out", *where)
    assert frame.keys is not None
    if event.value in frame.keys:
        raise YamlFileError(
            f"defines the key {_short(event.value)} twice in one mapping; expected each key once", *where
        )
    frame.keys.add(event.value)


def _short(key: str) -> str:
    """A key for a message: keys are names the reader wrote; the length and characters are bounded."""
    printable = "".join(c if c.isprintable() else "?" for c in key[:60])
    return f'"{printable}"' + ("…" if len(key) > 60 else "")


def _marked(error: yaml.MarkedYAMLError) -> YamlFileError:
    """libyaml's problem text is fixed (it never quotes the input); the snippet PyYAML adds is dropped."""
    mark = error.problem_mark or error.context_mark
    problem = (error.problem or error.context or "is not valid YAML").strip()
    problem = "".join(c if c.isprintable() else "?" for c in problem)[:120]
    if mark is None:
        return YamlFileError(problem)
    return YamlFileError(problem, mark.line + 1, mark.column + 1)
