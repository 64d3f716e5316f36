"""Sweep files: a grid of training runs described in one TOML or YAML file.

The grid is benchmarks × option overrides × methods (each with its own argument grid) ×
regularizers × seeds. Example (TOML; YAML has the same structure)::

    name = "multidigits-smoke"        # optional, for display
    out = "sweeps/smoke"              # optional; `repmtl sweep --out` wins
    benchmarks = ["multidigits"]      # names, or tables: {name = "nyuv2", data_root = "...", options = {...}}
    seeds = [0, 1]
    regularizers = ["none"]           # optional axis; "none" = no regularizer
    overrides = [{}, {lr = 3e-4}]     # optional axis: TrainConfig fields per variant

    [train]                           # TrainConfig fields shared by every run
    epochs = 2
    max_steps = 4
    diagnostics_every = 2

    [[methods]]
    name = "ew"

    [[methods]]
    name = "fixed"
    grid = { weights = [[1.0, 2.0], [2.0, 1.0]] }   # one run per value (product over keys)

    [[methods]]
    name = "mgda"
    args = { normalization = "l2" }                  # fixed method arguments

    [[methods]]
    name = "repmtl"                   # a preset (EW + TSR + CSA on log losses)

A method entry may also set TrainConfig fields such as ``level`` or ``loss_transform``, and
``benchmarks = [...]`` to run only on some of the sweep's benchmarks (e.g. ``fixed`` weights,
whose length is the task count); an
entry that fixes its own ``regularizer`` (or a preset that does, like ``repmtl``) is not
crossed with the ``regularizers`` axis. Regularizer entries take ``name``, ``args`` and
``grid`` like methods. Later layers win when two set the same field: ``train`` < benchmark
entry < method entry < regularizer entry < override (benchmark ``options`` tables are merged).
``baselines = false`` skips the single-task baselines (and so Δp); ``[cluster]`` holds submitit
parameters for ``repmtl sweep --cluster`` (e.g. ``timeout_min``, ``slurm_partition``).

Each grid point becomes a :class:`~repmtl.train.config.TrainConfig` whose run folder is
``<out>/<benchmark>/<name>``, the name built from what distinguishes the run (method, its
arguments, regularizer, override fields, seed, and the fields of its benchmark entry when
several entries name the same benchmark, e.g. one per data condition).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from repmtl.train.config import TrainConfig
from repmtl.train.presets import PRESETS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["SweepError", "SweepSpec", "load_sweep", "read_toml"]

_TOP_KEYS = {"name", "out", "benchmarks", "seeds", "methods", "regularizers", "overrides", "train", "baselines",
             "cluster"}
#: fields the grid's axes set; a layer may not set them directly
_AXIS_FIELDS = {"benchmark", "method", "method_args", "seed", "single_task", "name", "out"}
_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
_MAX_NAME = 96


class SweepError(ValueError):
    """A sweep file that cannot be run as written (names the file and the offending entry)."""


@dataclass(frozen=True)
class Choice:
    """One value of an axis: a name (method, regularizer, benchmark; ``None`` for "none"),
    arguments, and TrainConfig fields it sets."""

    name: str | None
    args: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    #: the benchmarks a method entry is restricted to (``None``: all of the sweep's)
    only: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file; :meth:`configs` expands it."""

    path: Path
    name: str
    out: str | None
    benchmarks: list[Choice]
    seeds: list[int]
    methods: list[Choice]
    regularizers: list[Choice]
    overrides: list[dict[str, Any]]
    train: dict[str, Any]
    baselines: bool = True
    cluster: dict[str, Any] = field(default_factory=dict)

    def configs(self, out: str | Path) -> list[TrainConfig]:
        """Every run of the grid, with its folder under ``out``, in grid order. Raises
        :class:`SweepError` if two different runs would share a folder."""
        runs: list[TrainConfig] = []
        shared = {name: sum(b.name == name for b in self.benchmarks) for name in {b.name for b in self.benchmarks}}
        for bench, override, method, seed in itertools.product(self.benchmarks, self.overrides, self.methods,
                                                               self.seeds):
            if method.only is not None and bench.name not in method.only:
                continue
            own_regularizer = "regularizer" in method.fields or _preset_sets_regularizer(method.name)
            for reg in [Choice(None)] if own_regularizer else self.regularizers:
                fields = _merge(self.train, bench.fields, method.fields, reg.fields, override)
                if reg.name is not None:
                    fields["regularizer"] = reg.name
                    fields["regularizer_args"] = {**fields.get("regularizer_args", {}), **reg.args}
                config = TrainConfig(**fields, benchmark=bench.name, method=method.name, method_args=dict(method.args),
                                     seed=seed, out=str(out))
                variant = bench.fields if shared[bench.name] > 1 else {}
                runs.append(replace(config, name=_run_name(method, reg, {**variant, **override}, seed)))
        _check_distinct(runs, self.path)
        return runs


def _preset_sets_regularizer(method: str | None) -> bool:
    return method in PRESETS and "regularizer" in PRESETS[method][1]


def _merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key == "options" and isinstance(value, Mapping):
                out["options"] = {**out.get("options", {}), **value}
            else:
                out[key] = value
    return out


# ---- names -----------------------------------------------------------------------------------


def _slug_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(_slug_value(v) for v in value)
    if isinstance(value, Mapping):
        return ",".join(f"{k}:{_slug_value(v)}" for k, v in value.items())
    return str(value)


def _pairs(values: Mapping[str, Any]) -> list[str]:
    return [f"{k}={_slug_value(v)}" for k, v in values.items()]


def _run_name(method: Choice, reg: Choice, override: Mapping[str, Any], seed: int) -> str:
    head = str(method.name) + (f"+{reg.name}" if reg.name else "")
    parts = [head, *_pairs(method.args), *_pairs(method.fields), *_pairs(reg.args), *_pairs(reg.fields),
             *_pairs(override), f"seed{seed}"]
    name = re.sub(r"[^A-Za-z0-9._,=+:-]", "_", "-".join(parts))
    if len(name) > _MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[:_MAX_NAME - 9 - len(f'-seed{seed}')]}-{digest}-seed{seed}"
    return name


def _check_distinct(runs: Sequence[TrainConfig], path: Path) -> None:
    by_dir: dict[Path, TrainConfig] = {}
    for config in runs:
        other = by_dir.setdefault(config.run_dir(), config)
        if other is not config:
            if other == config:
                raise SweepError(f"{path}: the grid holds the same run twice ({config.run_dir()}); "
                                 "remove the duplicate entry")
            raise SweepError(f"{path}: two different runs would share the folder {config.run_dir()}; "
                             "make their method/regularizer arguments or overrides differ visibly")


# ---- parsing ---------------------------------------------------------------------------------


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with Path(path).open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{path} is not valid TOML: {exc}") from exc


def _read_yaml(path: Path) -> Any:
    try:
        import yaml
    except ImportError as exc:
        raise SweepError(f"{path}: YAML sweep files need PyYAML; install the extra: pip install 'repmtl[yaml]' "
                         "(or write the sweep in TOML)") from exc
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SweepError(f"{path} is not valid YAML: {exc}") from exc


def _fields(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SweepError(f"{where} must be a table of TrainConfig fields, got {value!r}")
    unknown = sorted(set(value) - _FIELDS)
    if unknown:
        raise SweepError(f"{where}: unknown field(s) {unknown}; TrainConfig fields are {sorted(_FIELDS)}")
    axis = sorted(set(value) & _AXIS_FIELDS)
    if axis:
        raise SweepError(f"{where}: {axis} are set by the sweep's axes (benchmarks, methods, seeds), not here")
    return dict(value)


def _grid(entry: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    grid = entry.get("grid", {})
    if not isinstance(grid, Mapping):
        raise SweepError(f"{where}: `grid` must map argument -> list of values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"{where}: grid `{key}` must be a non-empty list of values, got {values!r}")
    args = entry.get("args", {})
    if not isinstance(args, Mapping):
        raise SweepError(f"{where}: `args` must be a table of argument = value")
    clash = sorted(set(args) & set(grid))
    if clash:
        raise SweepError(f"{where}: {clash} appear in both `args` and `grid`")
    keys = list(grid)
    return [{**args, **dict(zip(keys, combo))} for combo in itertools.product(*(grid[k] for k in keys))]


def _choices(value: Any, where: str, *, none_ok: bool, extra_fields: bool) -> list[Choice]:
    if not isinstance(value, list) or not value:
        raise SweepError(f"{where} must be a non-empty list")
    out: list[Choice] = []
    for i, entry in enumerate(value, 1):
        here = f"{where} #{i}"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise SweepError(f"{here}: expected a name or a table with `name`, got {entry!r}")
        name = None if none_ok and entry["name"].lower() == "none" else entry["name"]
        only = entry.get("benchmarks") if extra_fields else None
        if only is not None and (not isinstance(only, list) or not only or not all(isinstance(b, str) for b in only)):
            raise SweepError(f"{here}: `benchmarks` must be a non-empty list of benchmark names, got {only!r}")
        rest = {k: v for k, v in entry.items() if k not in ("name", "args", "grid", "benchmarks")}
        if not extra_fields and rest:
            raise SweepError(f"{here}: unknown key(s) {sorted(rest)}; use name, args, grid")
        fields = _fields(rest, here) if rest else {}
        if name is None and (entry.get("args") or entry.get("grid")):
            raise SweepError(f"{here}: `none` takes no args or grid")
        out += [Choice(name, args, fields, tuple(only) if only else None) for args in _grid(entry, here)]
    return out


def _benchmarks(value: Any, where: str) -> list[Choice]:
    if not isinstance(value, list) or not value:
        raise SweepError(f"{where} must be a non-empty list of benchmark names or tables")
    out = []
    for i, entry in enumerate(value, 1):
        if isinstance(entry, str):
            out.append(Choice(entry))
        elif isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            out.append(Choice(entry["name"], {}, _fields({k: v for k, v in entry.items() if k != "name"},
                                                         f"{where} #{i}")))
        else:
            raise SweepError(f"{where} #{i}: expected a benchmark name or a table with `name`, got {entry!r}")
    return out


def parse_sweep(data: Any, path: Path) -> SweepSpec:
    """A :class:`SweepSpec` from the parsed contents of ``path`` (format in the module doc)."""
    if not isinstance(data, Mapping):
        raise SweepError(f"{path}: the file must hold a table (mapping) at the top level")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise SweepError(f"{path}: unknown key(s) {unknown}; a sweep file has {sorted(_TOP_KEYS)}")
    for key in ("benchmarks", "methods"):
        if key not in data:
            raise SweepError(f"{path}: `{key}` is required")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in seeds):
        raise SweepError(f"{path}: `seeds` must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"{path}: `seeds` repeats a seed: {seeds}")
    overrides = data.get("overrides", [{}])
    if not isinstance(overrides, list) or not overrides:
        raise SweepError(f"{path}: `overrides` must be a non-empty list of tables (use {{}} for no change)")
    baselines = data.get("baselines", True)
    if not isinstance(baselines, bool):
        raise SweepError(f"{path}: `baselines` must be true or false")
    cluster = data.get("cluster", {})
    if not isinstance(cluster, Mapping):
        raise SweepError(f"{path}: `cluster` must be a table of submitit parameters")
    out = data.get("out")
    if out is not None and not isinstance(out, str):
        raise SweepError(f"{path}: `out` must be a folder path (string)")
    benchmarks = _benchmarks(data["benchmarks"], f"{path}: benchmarks")
    methods = _choices(data["methods"], f"{path}: methods", none_ok=False, extra_fields=True)
    names = {b.name for b in benchmarks}
    for i, method in enumerate(methods, 1):
        unknown = sorted(set(method.only or ()) - names)
        if unknown:
            raise SweepError(f"{path}: methods entry {method.name!r} names benchmarks {unknown} that the sweep's "
                             f"`benchmarks` ({sorted(names)}) do not list")
    return SweepSpec(
        path=path,
        name=str(data.get("name", path.stem)),
        out=out,
        benchmarks=benchmarks,
        seeds=list(seeds),
        methods=methods,
        regularizers=_choices(data.get("regularizers", ["none"]), f"{path}: regularizers", none_ok=True,
                              extra_fields=False),
        overrides=[_fields(o, f"{path}: overrides #{i}") for i, o in enumerate(overrides, 1)],
        train=_fields(data.get("train", {}), f"{path}: [train]"),
        baselines=baselines,
        cluster=dict(cluster),
    )


def load_sweep(path: str | Path) -> SweepSpec:
    """Parse a ``.toml``, ``.yaml`` or ``.yml`` sweep file."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        data = read_toml(path)
    elif suffix in (".yaml", ".yml"):
        data = _read_yaml(path)
    else:
        raise SweepError(f"{path}: a sweep file ends in .toml, .yaml or .yml")
    return parse_sweep(data, path)
