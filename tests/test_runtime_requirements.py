"""What the program imports at run time is pinned in requirements.txt, the file a `pulumi up`
installs (Pulumi.yaml's virtualenv), not only in requirements-dev.txt where the tests' own
dependencies would hide its absence (cryptography was: the SSH key check needs it)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

from tools.mockrun import ROOT

PROGRAM = [
    ROOT / "__main__.py",
    *(p for d in ("config", "components", "render", "stores") for p in (ROOT / d).rglob("*.py")),
]
OWN = {"config", "components", "render", "stores", "topology"}


def _imported_top_level(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _pinned(requirements: Path) -> set[str]:
    names = set()
    for line in requirements.read_text().splitlines():
        found = re.match(r"([A-Za-z0-9_.-]+)(\[[^]]*\])?==", line.strip())
        if found:
            names.add(found.group(1).lower().replace("_", "-"))
    return names


def test_every_distribution_the_program_imports_is_pinned_for_run_time() -> None:
    modules = set().union(*(_imported_top_level(path) for path in PROGRAM)) - OWN - set(sys.stdlib_module_names)
    distributions = importlib.metadata.packages_distributions()
    needed = {module: {d.lower().replace("_", "-") for d in distributions.get(module, [])} for module in modules}
    assert all(needed.values()), (
        f"imported, but from no installed distribution: {[m for m, d in needed.items() if not d]}"
    )
    pinned = _pinned(ROOT / "requirements.txt")
    missing = {module: sorted(found) for module, found in needed.items() if not found & pinned}
    assert not missing, f"imported by the program but not pinned in requirements.txt: {missing}"
