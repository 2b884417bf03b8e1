"""The cyclic garbage collector, kept out of a program run.

Measured on the prod stack (`python -m bench eval`, a fresh interpreter per run): with the
collector on, a run triggers about 590 young and 4 full collections, 0.6-0.9 s of its 3.5-4.3 s,
most of it full passes over objects that live until the process exits (the provider SDKs'
classes and type tables, the Cloudflare SDK's ~200,000 objects among them). With it off, the
process's peak memory grows by the few reference cycles a run leaves (figures in README,
"Performance"): reference counting still frees everything else at once. A `pulumi preview` or
`up` runs the program once and exits, so the collector stays off for the rest of the process;
a harness that runs the program many times in one process (tools/mockrun.py, the benchmarks)
turns it back on after each run (`restored`).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_frozen = False  # gc.get_freeze_count() walks the frozen objects to count them


def pause() -> None:
    """Turn the collector off for this run.

    What exists now is also frozen, once per process (``gc.freeze``): a harness that turns the
    collector back on then never walks the imports again."""
    global _frozen
    if not _frozen:
        gc.freeze()
        _frozen = True
    gc.disable()


@contextmanager
def restored() -> Iterator[None]:
    """Around a run in a process that goes on (a test, a benchmark): the collector as it was before."""
    collecting = gc.isenabled()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
