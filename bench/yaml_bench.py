"""How long a hostile 1 MB stack file costs, through keel's reader and through PyYAML's safe_load.

For every file of tests/hostile_files.py: keel (config/yamlfile.py, then the loader, as the mock
runtime reads a stack file; the target is under 2 s and 200 MB) beside the reader it replaced,
``yaml.safe_load`` followed by ``json.dumps`` of each config value (what the mock runtime did with
it before handing it to the program), stopped after BASELINE_TIMEOUT_S. Each runs in a fresh
interpreter; the two sides alternate file by file so shared load affects both alike.
Run: ``python -m bench yaml``.
"""

from __future__ import annotations

import json
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
    data = yaml.safe_load(open(sys.argv[1]).read()) or {}
    for value in (data.get("config") or {}).values():
        json.dumps(value)
except Exception as error:
    outcome = "refused: " + type(error).__name__
elapsed = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "seconds": elapsed, "extra_peak_mb": (after - before) / 1024}))
"""


def baseline(path: Path) -> dict[str, object]:
    try:
        result = subprocess.run(
            [sys.executable, "-c", _BASELINE, str(path)],
            capture_output=True, text=True, timeout=BASELINE_TIMEOUT_S, check=False, cwd=ROOT,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"outcome": f"stopped after {BASELINE_TIMEOUT_S}s", "seconds": None, "extra_peak_mb": None}
    if result.returncode != 0:
        return {"outcome": "crashed", "seconds": None, "extra_peak_mb": None}
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _figure(result: dict[str, object]) -> str:
    seconds, memory = result["seconds"], result["extra_peak_mb"]
    if seconds is None:
        return str(result["outcome"])[:40]
    return f"{float(str(seconds)):7.3f} s {float(str(memory)):8.1f} MB"


def main() -> None:
    print(f"{'file (1 MB at most)':24} {'keel':>22} {'safe_load + json':>24}   keel's outcome")
    with tempfile.TemporaryDirectory() as directory:
        for index, (name, text) in enumerate(files().items()):
            path = Path(directory) / f"Pulumi.{index}.yaml"
            path.write_text(text)
            # Alternate which side goes first.
            if index % 2:
                theirs, ours = baseline(path), measure(path)
            else:
                ours, theirs = measure(path), baseline(path)
            print(f"{name:24} {_figure(ours):>22} {_figure(theirs):>24}   {str(ours['outcome'])[:70]}", flush=True)
