"""Datasets and the benchmark presets built on them, found by name.

Importing this package imports every preset module in it (each calls
:func:`repmtl.benchmarks.register_benchmark`), so the registry is complete once
``repmtl.data`` is imported; :func:`get_benchmark` and :func:`available_benchmarks` read it.
"""

from __future__ import annotations

import importlib
import pkgutil

from repmtl.benchmarks import Benchmark, registered

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")


def available_benchmarks() -> dict[str, Benchmark]:
    """Every registered benchmark by name (the presets here and any registered by the user)."""
    return registered()


def get_benchmark(name: str) -> Benchmark:
    benchmarks = registered()
    if name not in benchmarks:
        raise KeyError(f"unknown benchmark {name!r}; available: {', '.join(benchmarks)}")
    return benchmarks[name]


__all__ = ["available_benchmarks", "get_benchmark"]
