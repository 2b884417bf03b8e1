"""How long a hostile 1 MB stack file costs, through keel's reader and through PyYAML's two safe loaders.

For every file of tests/hostile_files.py: keel (config/yamlfile.py, then the loader, as the mock
runtime reads a stack file; the target is under 2 s and 200 MB) beside two raw readers, each
followed by ``json.dumps`` of each config value (what the mock runtime did with it before handing
it to the program) and stopped after BASELINE_TIMEOUT_S: PyYAML's safe loader on libyaml
(``CSafeLoader``, the parser keel itself uses: the ratio keel/libyaml is the price of keel's
checks and config validation) and plain ``yaml.safe_load`` (the pure-Python reader keel
replaced). Each runs in a fresh interpreter; the three sides rotate file by file so shared load
affects them alike. Each side's outcome is printed after the times: a time is no read when the
reader failed (a RecursionError, or libyaml's process killed by a signal, on deep nesting).
Run: ``python -m bench yaml``.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.hostile_files import ROOT, files, measure

BASELINE_TIMEOUT_S = 60

_BASELINE = """
import json, resource, sys, time, yaml
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
outcome = "loaded"
try:
    data = yaml.load(open(sys.argv[1]).read(), Loader=getattr(yaml, sys.argv[2])) or {}
    for value in (data.get("config") or {}).values():
        json.dumps(value)
except Exception as error:
    outcome = "refused: " + type(error).__name__
elapsed = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "seconds": elapsed, "extra_peak_mb": (after - before) / 1024}))
"""


def baseline(path: Path, loader: str) -> dict[str, object]:
    """``path`` through PyYAML's ``loader`` (a SafeLoader class name) and json.dumps."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", _BASELINE, str(path), loader],
            capture_output=True, text=True, timeout=BASELINE_TIMEOUT_S, check=False, cwd=ROOT,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"outcome": f"stopped after {BASELINE_TIMEOUT_S}s", "seconds": None, "extra_peak_mb": None}
    if result.returncode != 0:
        died = f" (signal {-result.returncode})" if result.returncode < 0 else ""
        return {"outcome": f"crashed{died}", "seconds": None, "extra_peak_mb": None}
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _figure(result: dict[str, object]) -> str:
    seconds, memory = result["seconds"], result["extra_peak_mb"]
    if seconds is None:
        return str(result["outcome"])[:40]
    return f"{float(str(seconds)):7.3f} s {float(str(memory)):8.1f} MB"


def _outcome(result: dict[str, object]) -> str:
    """The outcome without the temporary file's name, short enough to read on one line."""
    return re.sub(r"Pulumi\.\d+\.yaml: ", "", str(result["outcome"]))[:60]


def main() -> None:
    sides = {
        "keel": measure,
        "libyaml": lambda path: baseline(path, "CSafeLoader"),
        "safe_load": lambda path: baseline(path, "SafeLoader"),
    }
    print(
        f"{'file (1 MB at most)':20} {'keel':>19} {'libyaml + json':>19} {'keel/libyaml':>12} {'safe_load + json':>19}"
    )
    outcomes: list[str] = []
    ratios: list[float] = []
    with tempfile.TemporaryDirectory() as directory:
        for index, (name, text) in enumerate(files().items()):
            path = Path(directory) / f"Pulumi.{index}.yaml"
            path.write_text(text)
            # Rotate which side goes first.
            order = list(sides)[index % 3 :] + list(sides)[: index % 3]
            results = {side: sides[side](path) for side in order}
            ours, theirs = results["keel"], results["libyaml"]
            ratio = "-"
            if ours["seconds"] is not None and theirs["seconds"] is not None:
                ratios.append(float(str(ours["seconds"])) / max(float(str(theirs["seconds"])), 1e-6))
                ratio = f"{ratios[-1]:.2f}x"
            print(
                f"{name:20} {_figure(ours):>19} {_figure(theirs):>19} {ratio:>12} {_figure(results['safe_load']):>19}",
                flush=True,
            )
            outcomes.append(f"{name:20} " + " | ".join(f"{side}: {_outcome(results[side])}" for side in sides))
    print("outcomes:")
    for line in outcomes:
        print(f"  {line}")
    if ratios:
        print(f"keel / libyaml + json: median {statistics.median(ratios):.2f}x over {len(ratios)} files both finished")
