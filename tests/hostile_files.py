"""Stack files of up to 1 MB built to cost a YAML reader time or memory, and a way to measure one.

Shared by tests/test_yaml_bounds.py (memory, and that each is refused or read) and
bench/yaml_bench.py (time, beside PyYAML's libyaml loader and its plain safe_load).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

SIZE = 1_000_000
ROOT = Path(__file__).resolve().parent.parent


def _padded(text: str) -> str:
    """``text`` followed by a comment, to SIZE bytes: the size alone costs nothing."""
    return text + "#" + "x" * max(0, SIZE - len(text) - 2) + "\n"


def _lines_up_to(size: int, line: Callable[[int], str]) -> list[str]:
    """line(0), line(1), ... while they fit in ``size`` bytes (with their newlines)."""
    lines: list[str] = []
    total = 0
    while total + len(line(len(lines))) + 1 < size:
        lines.append(line(len(lines)))
        total += len(lines[-1]) + 1
    return lines


def files() -> dict[str, str]:
    """Name -> text, each at most SIZE bytes."""
    bomb = "config:\n  keel:environment: dev\n  keel:anchors:\n" + "\n".join(
        f"    a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9) if level else ', '.join(['x'] * 9)}]"
        for level in range(10)
    )
    depth_flow = (SIZE - 40) // 2
    block_lines = _lines_up_to(SIZE - 2000, lambda level: "  " * (level + 2) + f"k{level}:")
    many_keys = ["config:", *_lines_up_to(SIZE - 40, lambda index: f"  keel:k{index}: v")]
    service = '{"image": "nginx:1.28.0", "port": 80, "health": {"http_path": "/"}, "resources": {"memory_mb": 32}}'
    many_services = ["config:", "  keel:services:", *_lines_up_to(SIZE - 200, lambda index: f"    s{index}: {service}")]
    # Under the value limit: every service is read and validated (the capacity check refuses them).
    under_limit = ["config:", "  keel:host: {provider: local}", "  keel:services:"]
    under_limit += [f"    s{index}: {service}" for index in range(3000)]
    wide = "config:\n  keel:proxy: {routes: [" + ", ".join(["1"] * ((SIZE - 60) // 3)) + "]}\n"
    return {
        "alias bomb": _padded(bomb + "\n"),
        "deep flow nesting": "config:\n  keel:proxy: " + "[" * depth_flow + "]" * depth_flow + "\n",
        "deep block nesting": "config:\n  keel:proxy:\n" + "\n".join(block_lines) + " v\n",
        "many keys": "\n".join(many_keys) + "\n",
        "many services": "\n".join(many_services) + "\n",
        "3000 services": "\n".join(under_limit) + "\n",
        "one long value": "config:\n  keel:proxy: {csp: '" + "a" * (SIZE - 60) + "'}\n",
        "wide list": wide,
    }


_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from config import ConfigError, parse
from tools import mockrun
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
outcome = "loaded"
try:
    values, _ = mockrun.read_config_file(__import__("pathlib").Path(sys.argv[1]))
    parse({{k.split(":", 1)[1]: v for k, v in values.items() if k.startswith("keel:")}})
except mockrun.StackFileError as error:
    outcome = "refused: " + str(error)
except ConfigError as error:
    outcome = "refused: " + str(error).splitlines()[0]
elapsed = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"outcome": outcome[:160], "seconds": elapsed, "extra_peak_mb": (after - before) / 1024}}))
"""


def measure(path: Path, timeout_s: float = 300) -> dict[str, object]:
    """Read ``path`` as the mock runtime does (file, then the loader) in a fresh interpreter:
    the outcome, the seconds it took and the peak memory it added beyond the interpreter's own."""
    result = subprocess.run(
        [sys.executable, "-c", _CHILD.format(root=str(ROOT)), str(path)],
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        return {
            "outcome": f"crashed: {result.stderr.strip().splitlines()[-1:]}",
            "seconds": None,
            "extra_peak_mb": None,
        }
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))
