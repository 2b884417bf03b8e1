"""How a provider stores what it is sent, and how it diffs the next program run against that.

A ``ResourceModel`` per resource type says, property by property (``Rule``), what the real
provider does: the canonical form its Read stores (``read``), whether a value it fills in by
itself is kept when the program leaves the property unset (``computed``, a Terraform
Optional+Computed attribute, or a ``default``), whether a change forces replacement
(``force_new``), and whether its DiffSuppressFunc hides a difference (``suppress``). Values
that Create adds and Update never does (a service's image pinned to a digest) come from
``on_create``. Every rule names the provider source it mirrors (``source``), at the version
the pinned SDK bundles.

Property paths are Pulumi's (camelCase), dot-separated; ``*`` stands for any item of a list.
Values are the plain inputs the program registers (tools/mockrun.Registered.inputs).

``state()`` is what ``pulumi up`` then ``pulumi refresh`` leave in the state for a resource;
``diff()`` is what the next ``pulumi preview`` shows for it: the bridged providers compare the
program's new inputs with that state (pulumi-terraform-bridge pkg/tfbridge/provider.go, Diff:
the Terraform plan of the new config against the prior state).
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Path = tuple[str | int, ...]
MISSING: Any = object()


def show_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _matches(pattern: tuple[str, ...], path: Path) -> bool:
    if len(pattern) != len(path):
        return False
    return all((p == "*" and isinstance(q, int)) or p == q for p, q in zip(pattern, path, strict=True))


@dataclass(frozen=True)
class Rule:
    """What the provider does with one property."""

    path: str
    source: str
    """Provider source file (and function) this rule mirrors, at the pinned version."""
    read: Callable[[Any], Any] | None = None
    """The form the provider's Read stores for a value it was sent."""
    computed: bool = False
    """Optional+Computed: left unset by the program, the state's value stands (no diff)."""
    default: Any = MISSING
    """The value the provider stores when the program leaves the property unset."""
    force_new: bool = False
    suppress: Callable[[Any, Any], bool] | None = None
    """DiffSuppressFunc: (state value, new value) -> no diff."""
    unordered: bool = False
    """A Terraform set (or a list the provider sorts): order is not a difference."""

    @property
    def pattern(self) -> tuple[str, ...]:
        return tuple(self.path.split("."))


@dataclass(frozen=True)
class Change:
    """One property the next preview would show as changed."""

    path: str
    old: Any
    new: Any
    replaces: bool
    source: str = ""


@dataclass(frozen=True)
class ResourceModel:
    """What one provider resource type stores and diffs."""

    type: str
    rules: tuple[Rule, ...] = ()
    source: str = ""
    """The provider source the model as a whole mirrors (schema file)."""
    zero_is_unset: bool = True
    """Terraform plugin SDK v2 resources: an unset primitive and its zero value ("", 0, false)
    are the same in state and plan. Plugin Framework resources keep null and zero apart."""
    replace_on_change: bool = False
    """Every input change replaces the resource (immutable objects such as swarm secrets)."""
    delete_before_replace: Callable[[Mapping[str, Any]], bool] | None = None
    """Whether a replacement deletes the old resource first, given the new inputs."""
    on_create: Callable[[dict[str, Any], Mapping[str, Any]], dict[str, Any]] | None = None
    """Values Create stores that Update never writes (applied to the state of a new resource)."""
    read_back: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    """What Read stores for the whole resource beyond the per-property forms: the values the provider
    or the API behind it fills in that the program never sends (defaults, normalised blocks).
    Applied after Create and after Update, before the per-property ``read`` forms."""
    outputs: Callable[[dict[str, Any], str], dict[str, Any]] | None = None
    """Computed outputs the provider returns (addresses, ids), given the inputs and the resource name."""
    autonamed: tuple[str, ...] = ()
    """Properties Pulumi fills with a generated name when unset (kept from the state afterwards)."""
    output_names: tuple[str, ...] = ()
    """Output-only properties (``outputs`` returns these): never in the inputs, never a difference."""

    # ------------------------------------------------------------------ state

    def rule_for(self, path: Path) -> Rule | None:
        for rule in self.rules:
            if _matches(rule.pattern, path):
                return rule
        return None

    def state(
        self, inputs: Mapping[str, Any], name: str = "", context: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """What ``pulumi up`` (Create) then ``pulumi refresh`` (Read) leave in the state.

        ``context``: what the provider would find around it (``built_images``: images built on the host).
        """
        stored = json.loads(json.dumps(inputs))
        for key in self.autonamed:
            if stored.get(key) in (None, ""):
                stored[key] = f"{name}-{'0' * 7}"
        if self.on_create is not None:
            stored = self.on_create(stored, context or {})
        if self.read_back is not None:
            stored = self.read_back(stored)
        stored = self._read(stored, ())
        return self._with_outputs(stored, name)

    def _with_outputs(self, stored: dict[str, Any], name: str) -> dict[str, Any]:
        if self.outputs is not None:
            outputs = self.outputs(stored, name)
            unexpected = set(outputs) - set(self.output_names)
            if unexpected:
                raise ValueError(f"{self.type}: outputs {sorted(unexpected)} are not declared in output_names")
            stored.update(outputs)
        return stored

    def updated_state(self, prior: Mapping[str, Any], inputs: Mapping[str, Any], name: str = "") -> dict[str, Any]:
        """The state after an Update: what Read stores for the new inputs (Update adds nothing of
        its own), with the generated names and the outputs the resource already had."""
        stored = json.loads(json.dumps(inputs))
        for key in self.autonamed:
            if stored.get(key) in (None, ""):
                stored[key] = prior.get(key)
        if self.read_back is not None:
            stored = self.read_back(stored)
        stored = self._read(stored, ())
        return self._with_outputs(stored, name)

    def _read(self, value: Any, path: Path) -> Any:
        rule = self.rule_for(path) if path else None
        if isinstance(value, dict):
            value = {key: self._read(item, (*path, key)) for key, item in value.items()}
        elif isinstance(value, list):
            value = [self._read(item, (*path, index)) for index, item in enumerate(value)]
        if rule is not None and rule.read is not None and value is not None:
            value = rule.read(value)
        return value

    # ------------------------------------------------------------------ diff

    def diff(
        self, state: Mapping[str, Any], inputs: Mapping[str, Any], ignore_changes: tuple[str, ...] = ()
    ) -> list[Change]:
        """What the next preview shows: the new inputs against the state."""
        changes = list(self._diff(state, inputs, (), ignore_changes))
        if self.replace_on_change:
            changes = [Change(c.path, c.old, c.new, True, c.source or self.source) for c in changes]
        return changes

    def _diff(self, old: Any, new: Any, path: Path, ignore: tuple[str, ...]) -> Iterator[Change]:
        shown = show_path(path)
        if path and any(
            shown == item or shown.startswith(item + ".") or shown.startswith(item + "[") for item in ignore
        ):
            return
        rule = self.rule_for(path) if path else None
        if path and new is MISSING:
            if old is MISSING or old is None:
                return
            if self._unset_keeps_state(path, rule, old):
                return
            yield self._change(path, old, None, rule)
            return
        if isinstance(new, dict) and isinstance(old, dict) and (rule is None or not rule.unordered):
            for key in sorted(set(old) | set(new)):
                if not path and (key in self.output_names or (key in self.autonamed and key not in new)):
                    continue
                yield from self._diff(old.get(key, MISSING), new.get(key, MISSING), (*path, key), ignore)
            return
        if isinstance(new, list) and isinstance(old, list) and (rule is None or not rule.unordered):
            if len(new) == len(old):
                for index, (before, after) in enumerate(zip(old, new, strict=True)):
                    yield from self._diff(before, after, (*path, index), ignore)
                return
        if self._same(path, rule, old, new):
            return
        yield self._change(path, None if old is MISSING else old, new, rule)

    def _unset_keeps_state(self, path: Path, rule: Rule | None, old: Any) -> bool:
        if rule is not None and (rule.computed or (rule.default is not MISSING and old == rule.default)):
            return True
        return self.zero_is_unset and old in ("", 0, False, [], {})

    def _same(self, path: Path, rule: Rule | None, old: Any, new: Any) -> bool:
        if old is MISSING:
            old = None
        if rule is not None and rule.read is not None and new is not None:
            # A value the provider would store in another form still differs from the state:
            # the plan compares the new config as written with what Read stored.
            pass
        if _canonical(old, rule, self.zero_is_unset) == _canonical(new, rule, self.zero_is_unset):
            return True
        return bool(rule is not None and rule.suppress is not None and old is not None and rule.suppress(old, new))

    def _change(self, path: Path, old: Any, new: Any, rule: Rule | None) -> Change:
        replaces = bool(rule is not None and rule.force_new) or self._parent_forces_new(path)
        return Change(show_path(path), old, new, replaces, rule.source if rule else self.source)

    def _parent_forces_new(self, path: Path) -> bool:
        for cut in range(len(path) - 1, 0, -1):
            rule = self.rule_for(path[:cut])
            if rule is not None and rule.force_new:
                return True
        return False


def _canonical(value: Any, rule: Rule | None, zero_is_unset: bool) -> Any:
    if zero_is_unset and value in ("", 0, False, [], {}):
        value = None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if rule is not None and rule.unordered and isinstance(value, list):
        return sorted(json.dumps(_strip_zero(item, zero_is_unset), sort_keys=True) for item in value)
    return json.dumps(_strip_zero(value, zero_is_unset), sort_keys=True)


def _strip_zero(value: Any, zero_is_unset: bool) -> Any:
    """Numbers as the engine carries them (doubles), and SDKv2's unset-equals-zero inside blocks."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = _strip_zero(item, zero_is_unset)
            if zero_is_unset and item in (None, "", 0, False, [], {}):
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        return [_strip_zero(item, zero_is_unset) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass
class Plan:
    """What the next preview shows for a whole stack."""

    creates: list[str] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    updates: dict[str, list[Change]] = field(default_factory=dict)
    replaces: dict[str, list[Change]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.creates or self.deletes or self.updates or self.replaces)

    def describe(self, secret_paths: Callable[[str], set[str]] | None = None) -> str:
        """The plan as a preview prints it: one line per resource, then its changed fields with the
        provider source behind each. ``secret_paths(urn)``: fields whose values are secret (never
        shown). Sets show the items that come and go; texts (a config file, a script) a line diff."""
        lines = []
        for kind, urn, changes in self.steps():
            lines.append(f"{SYMBOLS[kind]} {kind:<7} {urn_name(urn)}")
            hidden = secret_paths(urn) if secret_paths is not None else set()
            for change in changes:
                tail = "  (forces replacement)" if change.replaces else ""
                secret = any(change.path == p or change.path.startswith((p + ".", p + "[")) for p in hidden)
                if secret:
                    lines.append(f"      {change.path}: [secret] => [secret]{tail}")
                else:
                    lines += _describe_change(change, tail)
                if change.source:
                    lines.append(f"          per {change.source}")
        return "\n".join(lines) if lines else "no changes"

    def steps(self) -> Iterator[tuple[Literal["create", "update", "replace", "delete"], str, list[Change]]]:
        for urn in self.creates:
            yield "create", urn, []
        for urn, changes in self.updates.items():
            yield "update", urn, changes
        for urn, changes in self.replaces.items():
            yield "replace", urn, changes
        for urn in self.deletes:
            yield "delete", urn, []


SYMBOLS = {"create": "+", "update": "~", "replace": "+-", "delete": "-"}


def urn_name(urn: str) -> str:
    """``type::name`` of a URN, the way a preview names a resource."""
    parts = urn.split("::")
    return f"{parts[-2].rsplit('$', 1)[-1]}::{parts[-1]}" if len(parts) >= 2 else urn


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe_change(change: Change, tail: str) -> list[str]:
    old, new = change.old, change.new
    if isinstance(old, list) and isinstance(new, list):
        # Compared (and shown) without the zero values Read fills in, as the provider compares them.
        before = [json.dumps(_strip_zero(item, True), sort_keys=True) for item in old]
        after = [json.dumps(_strip_zero(item, True), sort_keys=True) for item in new]
        lines = [f"      {change.path}:{tail}"]
        lines += [f"        - {_short(json.loads(item), 110)}" for item in before if item not in after]
        lines += [f"        + {_short(json.loads(item), 110)}" for item in after if item not in before]
        return lines
    old_text, new_text = _as_text(old), _as_text(new)
    if old_text is not None and new_text is not None and ("\n" in old_text or "\n" in new_text):
        diff = list(difflib.unified_diff(old_text.splitlines(), new_text.splitlines(), lineterm="", n=1))[2:]
        shown = diff[:MAX_TEXT_DIFF_LINES]
        lines = [f"      {change.path}: (text){tail}", *(f"        {line}" for line in shown)]
        if len(diff) > len(shown):
            lines.append(f"        ... {len(diff) - len(shown)} more diff lines")
        return lines
    return [f"      {change.path}: {_short(_plain(old))} => {_short(_plain(new))}{tail}"]


MAX_TEXT_DIFF_LINES = 40


def _plain(value: Any) -> Any:
    """Numbers as they were written (the engine carries them as doubles)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _as_text(value: Any) -> str | None:
    """A string as text: base64 of UTF-8 text (a swarm config's data) is decoded."""
    if not isinstance(value, str):
        return None
    if "\n" not in value and len(value) >= 16 and len(value) % 4 == 0:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return value
        return decoded if decoded.isprintable() or "\n" in decoded else value
    return value
