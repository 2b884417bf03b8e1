"""Run the benchmarks: `python -m bench [name ...]` (default: every bench/<name>_bench.py)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

SUFFIX = "_bench"


def available() -> list[str]:
    """Names of the bench modules in this package, without the suffix."""
    return sorted(p.stem.removesuffix(SUFFIX) for p in Path(__file__).parent.glob(f"*{SUFFIX}.py"))


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; expected one of {', '.join(available())}", file=sys.stderr)
        return 2
    for name in names:
        print(f"== bench {name}", flush=True)
        importlib.import_module(f"bench.{name}{SUFFIX}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
