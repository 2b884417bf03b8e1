"""The read-back models against what the program really registers, for every stack and example.

- Every property the program sends to an hcloud, Cloudflare, command, tls or random resource is
  classified by a rule of its model (a rule on the property or on an enclosing one), so nothing the
  program sends is diffed by a default nobody checked against the provider's source.
- The providers' own warnings and errors (tools/readback/*.py DIAGNOSTICS, from their sources):
  the first preview of a new stack shows only the zone settings' "cannot be destroyed" warning
  (cloudflare zone_setting/resource.go ModifyPlan), the next preview none.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import stack_run
from tools import mockrun, readback
from tools.readback import cloudflare, command, hcloud, random_, tls

ROOT = Path(__file__).resolve().parents[2]
MODELLED_HERE = {**hcloud.MODELS, **cloudflare.MODELS, **command.MODELS, **tls.MODELS, **random_.MODELS}
DIAGNOSTICS = {**hcloud.DIAGNOSTICS, **cloudflare.DIAGNOSTICS}
CONFIGS = ["dev", "staging", "prod", *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("examples/*/Pulumi.*.yaml"))]


def run(config: str) -> mockrun.Run:
    if config.endswith(".yaml"):
        stack = Path(config).name.split(".")[1]
        result = stack_run(stack, ROOT / config)
    else:
        result = stack_run(config)
    assert result.error is None, result.error
    return result


def leaves(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    else:
        yield path


def unclassified(model: readback.ResourceModel, inputs: dict[str, Any]) -> set[str]:
    missing = set()
    for path in leaves(inputs):
        if not any(model.rule_for(path[:cut]) for cut in range(1, len(path) + 1)):
            missing.add(readback.show_path(path))
    return missing


@pytest.mark.parametrize("config", CONFIGS)
def test_what_the_program_sends_is_classified_and_draws_no_warning_after_the_first_up(config: str):
    """One program run per config (the slow part) serves both checks."""
    registered = [r for r in run(config).resources if r.type in MODELLED_HERE]
    assert registered, f"{config} registers none of the types modelled here"
    gaps = {f"{r.type} {r.name}: {path}" for r in registered for path in unclassified(MODELLED_HERE[r.type], r.inputs)}
    assert not gaps, "properties no rule classifies:\n" + "\n".join(sorted(gaps))

    checked = [r for r in registered if r.type in DIAGNOSTICS]
    state = readback.state_after_up(checked)
    first = {(r.type, d.summary) for r in checked for d in DIAGNOSTICS[r.type](r.inputs, None)}
    assert all(t == cloudflare.ZONE_SETTING.type for t, _ in first), first
    again = [(r.name, d) for r in checked for d in DIAGNOSTICS[r.type](r.inputs, state[r.urn].state)]
    assert again == []


def test_the_classification_check_finds_an_unmodelled_property():
    """The check above can fail: a property no rule names is reported."""
    assert unclassified(hcloud.PRIMARY_IP, {"name": "x", "somethingNew": {"a": 1}}) == {"somethingNew.a"}
    assert unclassified(hcloud.FIREWALL, {"rules": [{"sourceIps": ["1.2.3.4"]}], "labels": {}}) == set()
