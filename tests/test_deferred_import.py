"""A provider SDK whose package initialisation is deferred (components/deferred_import.py).

A fake generated SDK stands in for pulumi-cloudflare's layout (one module per resource, the
`Args` class beside it, `get_x`/`get_x_output` in `get_x.py`, an `__init__` importing them all);
the program's own stacks are run in a fresh interpreter to see which modules they import.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.deferred_import import defer_init, module_candidates
from tools.mockrun import ROOT

PACKAGE = "fake_generated_sdk"
INIT = """
import builtins
builtins.fake_sdk_inits = getattr(builtins, "fake_sdk_inits", 0) + 1
from .dns_record import *
from .get_ip_ranges import *
from ._inputs import *
from . import outputs
ONLY_IN_INIT = "from __init__"
"""
DNS_RECORD = """
from . import outputs
__all__ = ["DnsRecordArgs", "DnsRecord"]
class DnsRecordArgs: ...
class DnsRecord: ...
"""
OUTPUTS = """
__all__ = ["DnsRecord"]
class DnsRecord(dict): ...  # an output type named like a resource, as hcloud's ServerNetwork
"""
INPUTS = """
__all__ = ["DnsRecordDataArgs"]
class DnsRecordDataArgs: ...
"""
GET_IP_RANGES = """
from . import outputs
__all__ = ["get_ip_ranges", "get_ip_ranges_output"]
def get_ip_ranges(): return "ranges"
def get_ip_ranges_output(): return "ranges output"
"""


@pytest.fixture
def sdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    root = tmp_path / PACKAGE
    root.mkdir()
    files = {
        "__init__": INIT,
        "dns_record": DNS_RECORD,
        "get_ip_ranges": GET_IP_RANGES,
        "_inputs": INPUTS,
        "outputs": OUTPUTS,
    }
    for name, text in files.items():
        (root / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("builtins.fake_sdk_inits", 0, raising=False)
    yield PACKAGE
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


def test_a_resource_and_an_invoke_load_their_own_modules_without_the_package_init(sdk: str) -> None:
    import builtins

    defer_init(sdk)
    package = __import__(sdk)
    assert package.DnsRecord.__module__ == f"{sdk}.dns_record"
    assert package.DnsRecordArgs.__module__ == f"{sdk}.dns_record"
    assert package.get_ip_ranges_output() == "ranges output"
    assert package.get_ip_ranges() == "ranges"
    assert package.DnsRecordDataArgs.__module__ == f"{sdk}._inputs"  # a nested input type
    assert builtins.fake_sdk_inits == 0  # type: ignore[attr-defined]


def test_an_output_type_named_like_a_resource_never_hides_it(sdk: str) -> None:
    defer_init(sdk)
    package = __import__(sdk)
    package.get_ip_ranges_output()  # its module imports `outputs` first, as hcloud's server.py does
    assert package.DnsRecord.__module__ == f"{sdk}.dns_record"
    assert package.outputs.DnsRecord.__module__ == f"{sdk}.outputs"


def test_a_name_no_module_holds_runs_the_package_init_once(sdk: str) -> None:
    import builtins

    defer_init(sdk)
    package = __import__(sdk)
    record = package.DnsRecord
    assert package.ONLY_IN_INIT == "from __init__"
    assert package.DnsRecord is record  # the init reuses the module already imported
    with pytest.raises(AttributeError):
        package.NotInTheSdk  # noqa: B018
    assert builtins.fake_sdk_inits == 1  # type: ignore[attr-defined]


def test_an_imported_package_is_left_as_it_is(sdk: str) -> None:
    import builtins

    package = __import__(sdk)
    defer_init(sdk)
    assert sys.modules[sdk] is package
    assert builtins.fake_sdk_inits == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "modules"),
    [
        ("DnsRecord", ["dns_record", "_inputs", "_enums"]),
        ("DnsRecordArgs", ["dns_record", "_inputs", "_enums"]),
        ("OriginCaCertificate", ["origin_ca_certificate", "_inputs", "_enums"]),
        ("ServiceTaskSpecArgs", ["service_task_spec", "_inputs", "_enums"]),
        ("get_ip_ranges_output", ["get_ip_ranges"]),
        ("config", ["config"]),
    ],
)
def test_names_map_to_the_modules_the_sdk_generator_writes(name: str, modules: list[str]) -> None:
    assert module_candidates(name) == modules


PROBE = """
import json, sys
import components  # first, as __main__.py's imports do: the harness's own imports would load the SDKs whole
from tools import mockrun
found = {}
for stack in ("dev", "prod"):  # dev first: prod's run imports what it needs
    run = mockrun.run(stack)
    assert run.error is None, run.error
    for sdk in ("cloudflare", "docker", "hcloud"):
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == f"pulumi_{sdk}")
        types = sorted({r.type for r in run.resources if r.type.startswith(f"{sdk}:")})
        found[f"{stack} {sdk}"] = {"loaded": loaded, "types": types}
print(json.dumps(found))
"""


Imported = dict[str, dict[str, list[str]]]


@pytest.fixture(scope="module")
def imported_by_stack() -> Imported:
    """The provider SDKs' modules loaded after running dev, then prod, in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True, timeout=300
    )
    result: Imported = json.loads(done.stdout.splitlines()[-1])
    return result


def test_a_stack_without_dns_imports_nothing_of_the_cloudflare_sdk(imported_by_stack: Imported) -> None:
    assert imported_by_stack["dev cloudflare"] == {"loaded": ["pulumi_cloudflare"], "types": []}


def test_a_stack_with_dns_imports_the_cloudflare_modules_it_uses_only(imported_by_stack: Imported) -> None:
    found = imported_by_stack["prod cloudflare"]
    assert "cloudflare:index/dnsRecord:DnsRecord" in found["types"]
    # The package itself (uninitialised), the four modules the proxy tier reads, and what those
    # import (_inputs, outputs, _utilities); not the other ~770.
    assert {"pulumi_cloudflare.dns_record", "pulumi_cloudflare.get_ip_ranges"} <= set(found["loaded"])
    assert len(found["loaded"]) < 15, found["loaded"]


@pytest.mark.parametrize(("sdk", "unused"), [("docker", "container"), ("hcloud", "load_balancer")])
def test_the_docker_and_hetzner_sdks_load_the_modules_of_the_resources_declared(
    imported_by_stack: Imported, sdk: str, unused: str
) -> None:
    found = imported_by_stack[f"prod {sdk}"]
    loaded = {name.removeprefix(f"pulumi_{sdk}.") for name in found["loaded"]}
    declared = {t.split(":")[1].split("/")[1] for t in found["types"] if not t.startswith("pulumi:")}
    # Each declared type's module (camelCase token, snake_case module), the shared ones, no more.
    assert {_snake(name) for name in declared} <= loaded
    assert unused not in loaded
    assert len(loaded - {_snake(name) for name in declared}) <= 8, sorted(loaded)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
