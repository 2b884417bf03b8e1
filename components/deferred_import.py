"""Provider SDK packages that load only the modules a stack uses.

A generated Pulumi SDK's ``__init__`` imports every module of the package: for pulumi-cloudflare
6.23.1 that is 780 modules and ~2 s (116 MiB, most of the process's objects, which every later
full garbage collection walks), to use three resources and one invoke. ``defer_init(package)``
puts the package in ``sys.modules`` without running its ``__init__``; reading an attribute
(``cloudflare.DnsRecord``) imports the one module the generator put it in (``dns_record.py``:
the class name in snake case, without ``Args``; ``get_ip_ranges_output`` is in
``get_ip_ranges.py``), and anything not found that way runs the real ``__init__`` once, so every
name still resolves. A stack that never reads an attribute (no DNS) imports nothing of it.

What the deferred ``__init__`` would also have done: register the package's resource types for
rehydrating resource references that come back from the engine (``_utilities.register``); the
program receives none of those from these packages.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import threading
import types
from typing import Any

_CAMEL_HUMP = re.compile(r"(?<!^)(?=[A-Z])")
_lock = threading.RLock()


def defer_init(package: str) -> None:
    """Make ``import package`` cheap until an attribute is read; a no-op once it is imported."""
    if package in sys.modules:
        return
    spec = importlib.util.find_spec(package)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    module = importlib.util.module_from_spec(spec)

    def load_attribute(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        with _lock:
            if name in module.__dict__:
                return module.__dict__[name]
            found = _from_own_module(module, package, name)
            if found is not _MISSING:
                setattr(module, name, found)
                return found
            _run_init(module)
        return getattr(module, name)

    module.__getattr__ = load_attribute  # type: ignore[method-assign]  # PEP 562: missing names only
    sys.modules[package] = module


_MISSING = object()
_NOT_STAR_IMPORTED = frozenset({"outputs", "config"})


def module_candidates(name: str) -> list[str]:
    """The modules a generated Pulumi SDK defines ``name`` in, most likely first."""
    if name.startswith("get_"):
        return [name.removesuffix("_output")]
    if not name[:1].isupper():
        return [name]  # a subpackage or module: config, outputs
    snake = _CAMEL_HUMP.sub("_", name).lower()
    own = snake.removesuffix("_args") if snake.endswith("_args") else snake
    # A resource's nested input types (ServiceTaskSpecArgs) live in the shared `_inputs`, enums
    # in `_enums`: modules every resource module imports anyway.
    return [own, "_inputs", "_enums"]


def _from_own_module(module: types.ModuleType, package: str, name: str) -> Any:
    for candidate in module_candidates(name):
        full = f"{package}.{candidate}"
        if full not in sys.modules and importlib.util.find_spec(full) is None:
            continue
        owner = importlib.import_module(full)
        # What the package's `from .dns_record import *` binds: the module's `__all__`, which for
        # `get_ip_ranges` replaces the submodule the import just bound under the function's name.
        # `outputs` and `config` the package imports as modules only: their names (an output type
        # can share a resource's name, hcloud's ServerNetwork) stay out of the package's.
        star = candidate not in _NOT_STAR_IMPORTED
        exported = {key: getattr(owner, key) for key in getattr(owner, "__all__", ())} if star else {}
        module.__dict__.update(exported)
        found = exported.get(name, getattr(owner, name, owner if candidate == name else _MISSING))
        if found is not _MISSING:
            return found
    return _MISSING


def _run_init(module: types.ModuleType) -> None:
    """The package's own ``__init__``, once: modules already imported are reused."""
    module.__dict__.pop("__getattr__", None)
    spec = module.__spec__
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(module)
