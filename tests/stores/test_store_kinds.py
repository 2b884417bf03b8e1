"""The store-kind registry's contract: every kind is one complete record, a kind that lacks a
capability is refused (by Python when it is instantiated, by mypy when it is checked), and the
layers reach a kind only through the registry, so no kind can fall through to another's answer."""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

import pytest
from mypy import api as mypy_api

from config.base import Resources
from config.models import ObservabilityConfig
from stores import registry
from stores.base import Backup, ContainerPlan, Exporter, StoreKind
from stores.mariadb.kind import MariadbKind
from stores.mariadb.model import MariadbSpec

ROOT = Path(__file__).resolve().parent.parent.parent
CAPABILITIES = sorted(StoreKind.__abstractmethods__)
LAYERS = ("__main__.py", "components", "config", "render")
"""Where the program's layers live: none of them may import a kind's own module."""


def test_every_capability_is_abstract() -> None:
    assert CAPABILITIES == [
        "backup", "clients", "container", "credentials", "data_volume", "exporter", "images", "mountable",
        "problems",
    ]  # fmt: skip


@pytest.mark.parametrize("missing", CAPABILITIES)
def test_a_kind_without_a_capability_cannot_be_instantiated(missing: str) -> None:
    body = {name: getattr(MariadbKind, name) for name in CAPABILITIES if name != missing}
    incomplete = type("Incomplete", (StoreKind,), {"name": "x", "spec_type": MariadbSpec, "summary": "x", **body})
    with pytest.raises(TypeError, match=rf"abstract method '?{missing}'?"):
        incomplete()


@pytest.mark.parametrize("attribute", ["name", "spec_type", "summary"])
def test_a_kind_without_its_name_spec_or_summary_is_refused_when_defined(attribute: str) -> None:
    attributes = {"name": "x", "spec_type": MariadbSpec, "summary": "x"}
    del attributes[attribute]
    with pytest.raises(TypeError, match=f"does not set {attribute}"):
        type("Unnamed", (StoreKind,), attributes)


def test_mypy_refuses_a_kind_that_lacks_any_capability(tmp_path: Path) -> None:
    """One class per capability, each with every other one: mypy names exactly the missing one."""
    lines = [
        "from stores.base import StoreKind",
        "from stores.mariadb.kind import MariadbKind",
        "from stores.mariadb.model import MariadbSpec",
        "",
        "MariadbKind()",
    ]
    for missing in CAPABILITIES:
        lines += ["", "", f"class No_{missing}(StoreKind[MariadbSpec]):"]
        lines += ['    name = "x"', "    spec_type = MariadbSpec", '    summary = "x"']
        lines += [f"    {name} = MariadbKind.{name}" for name in CAPABILITIES if name != missing]
        lines += ["", "", f"No_{missing}()"]
    module = tmp_path / "incomplete_kinds.py"
    module.write_text("\n".join(lines) + "\n")
    stdout, stderr, status = mypy_api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(ROOT / ".mypy_cache"), str(module)]
    )
    assert status == 1, stdout + stderr
    refused = re.findall(r'Cannot instantiate abstract class "No_(\w+)" with abstract attribute "(\w+)"', stdout)
    assert sorted(refused) == [(name, name) for name in CAPABILITIES], stdout
    assert f"Found {len(CAPABILITIES)} errors in 1 file" in stdout, stdout


def test_every_kind_package_is_registered_under_its_config_name() -> None:
    packages = sorted(path.parent.name for path in (ROOT / "stores").glob("*/kind.py"))
    assert sorted(registry.KINDS) == packages
    for name, kind in registry.KINDS.items():
        assert kind.name == name
        # The spec's discriminator is the kind's name: the config's `kind:` selects this record.
        assert typing.get_args(kind.spec_type.model_fields["kind"].annotation) == (name,)


def _spec(kind: StoreKind[typing.Any]) -> typing.Any:
    required = {"url_secret": "a_url"} if kind.name == "external" else {}
    return kind.spec_type.model_validate({"kind": kind.name, **required})


@pytest.mark.parametrize("name", list(registry.KINDS))
def test_each_kind_answers_every_capability_with_its_own_record(name: str) -> None:
    kind = registry.kind(name)
    spec = _spec(kind)
    plan = kind.container("store", spec)
    assert plan is None or isinstance(plan, ContainerPlan)
    if plan is not None:
        assert kind.data_volume(spec), "a store with a container keeps its data on a protected volume"
        assert plan.resources == spec.resources
        assert set(kind.images(spec).values()) >= {plan.image}
    exporter = kind.exporter()
    if exporter is not None:
        assert isinstance(exporter, Exporter)
        assert plan is not None, "an exporter watches a container"
        # Its image key is a key of the observability section, defaulting to the kind's image.
        assert ObservabilityConfig.model_fields[exporter.image_key].default == exporter.default_image
        assert exporter.dashboards and exporter.alert_rules
    backup = kind.backup()
    if backup is not None:
        assert isinstance(backup, Backup)
        templates = [backup.functions, backup.calls, backup.drill_functions, backup.drill_calls]
        templates += [f"backup/{script}.j2" for script in backup.restore] + ([backup.common] if backup.common else [])
        for template in templates:
            assert (backup.templates / template).is_file(), f"{name}: no template {template}"


def test_exporters_have_their_own_ports_and_dashboards() -> None:
    """The bug the registry closed: a third kind got Redis' exporter port by an else branch."""
    exporters = {name: e for name, kind in registry.KINDS.items() if (e := kind.exporter()) is not None}
    assert {name: e.port for name, e in exporters.items()} == {"postgres": 9187, "redis": 9121, "mariadb": 9104}
    uids = [board["uid"] for e in exporters.values() for board in e.dashboards]
    assert len(uids) == len(set(uids))
    alerts = [rule.alert for e in exporters.values() for rule in e.alert_rules]
    assert len(alerts) == len(set(alerts))


def _imports(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
    return modules


def test_the_layers_reach_kinds_only_through_the_registry() -> None:
    allowed = {"stores", "stores.base", "stores.registry"}
    offenders = {}
    for layer in LAYERS:
        paths = [ROOT / layer] if layer.endswith(".py") else sorted((ROOT / layer).rglob("*.py"))
        for path in paths:
            named = {m for m in _imports(path) if m.startswith("stores") and m not in allowed}
            if named:
                offenders[str(path.relative_to(ROOT))] = sorted(named)
    assert offenders == {}


def test_a_mariadb_limit_too_small_for_its_connections_is_a_problem_naming_the_least_limit() -> None:
    kind = MariadbKind()
    spec = MariadbSpec(kind="mariadb", resources=Resources(memory_mb=192), max_connections=100)
    [problem] = kind.problems(spec)
    assert problem.key == "resources/memory_mb"
    assert problem.message.startswith("found 192, which leaves MariaDB less than a 32 MiB buffer pool")
    assert problem.message.endswith("expected at least 224 (or fewer max_connections)")
    assert kind.problems(spec.model_copy(update={"resources": Resources(memory_mb=224)})) == []
