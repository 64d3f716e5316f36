"""The bench's report: per-group tables and the closing note, as Markdown text, from the
dictionary :func:`repmtl.bench.runner.run_bench` returns (or its JSON file)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from repmtl import methods as M
from repmtl.bench.contenders import FULL_JACOBIAN

Group = Mapping[str, object]


def relative(group: Group, name: str, other: str) -> dict[str, float] | None:
    """Median and range over rounds of ``time(name) / time(other)``, both timed in each round."""
    contenders = group["contenders"]
    if name not in contenders or other not in contenders:
        return None
    ratios = sorted(a / b for a, b in zip(contenders[name]["seconds"], contenders[other]["seconds"], strict=True))
    return {"ratio": statistics.median(ratios), "min": ratios[0], "max": ratios[-1]}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _rel(group: Group, name: str, other: str) -> str:
    r = relative(group, name, other)
    return "—" if r is None else f"{r['ratio']:.2f}"


def _mib(value: int | None) -> str:
    return "—" if value is None else f"{value / 2**20:.1f}"


def _memory_over_ew(group: Group, name: str) -> float | None:
    """(peak step memory − EW's) / size of J."""
    contenders = group["contenders"]
    mine, ew = contenders[name].get("memory_bytes"), contenders["ew"].get("memory_bytes")
    if mine is None or ew is None:
        return None
    return (mine - ew) / group["jacobian_bytes"]


def group_table(group: Group) -> list[str]:
    ew = group["contenders"]["ew"]
    lines = [
        f"### {group['workload']}, T = {group['tasks']}",
        "",
        (
            f"{group['description']}; d = {group['shared_parameters']:,} shared parameters, "
            f"size(J) = {group['jacobian_bytes'] / 2**20:.1f} MiB; EW step {ew['ms']:.1f} ms (median)."
        ),
        "",
        "| contender | × EW | IQR | min–max | × floor | ms | peak MiB | (peak − EW) / size(J) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = sorted(group["contenders"].items(), key=lambda kv: (kv[1]["family"] != "repmtl", kv[1]["family"], kv[0]))
    for name, c in rows:
        lines.append(
            f"| {name} | {c['ratio']:.2f} | {c['q1']:.2f}–{c['q3']:.2f} | {c['min']:.2f}–{c['max']:.2f} | "
            f"{_rel(group, name, 'floor')} | {c['ms']:.1f} | {_mib(c.get('memory_bytes'))} | "
            f"{_fmt(_memory_over_ew(group, name))} |"
        )
    for name in group["failures"]:
        lines.append(f"| {name} | err | | | | | | |")
    if group["failures"]:
        lines += ["", "Errors:", ""] + [f"- {n}: `{m}`" for n, m in group["failures"].items()]
    return [*lines, ""]


def gramian_methods(group: Group) -> list[str]:
    """Whole-encoder Gramian methods measured at parameter level in ``group``."""
    return sorted({
        c["method"] for c in group["contenders"].values()
        if c["family"] == "repmtl" and c["level"] == "parameters" and c["method"] in M.available()
        and M.lookup(c["method"]).consumes == "gramian"
    })


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``y`` over ``x``."""
    if len(points) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return None if sxx == 0 else sum((x - mx) * (y - my) for x, y in points) / sxx


def closing_note(groups: Sequence[Group]) -> list[str]:
    lines = [
        "## Parameter-level Gramian methods",
        "",
        (
            "Ratios are medians over rounds of per-round ratios; “floor” is the forward plus T task "
            "backwards; “TorchJD” is the same method in TorchJD on the same problem; “full J” the "
            "same method forming every row of J (`--full-jacobian`). Memory: (peak step memory − "
            "EW's) / size(J)."
        ),
        "",
        "| net | T | method | × EW | × floor | × TorchJD | × full J | memory |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        for m in gramian_methods(g):
            now, peer, full = f"{m}@param", f"torchjd:{m}", f"{m}@param:{FULL_JACOBIAN}"
            lines.append(
                f"| {g['workload']} | {g['tasks']} | {m} | {_rel(g, now, 'ew')} | {_rel(g, now, 'floor')} | "
                f"{_rel(g, now, peer)} | {_rel(g, now, full)} | {_fmt(_memory_over_ew(g, now))} |"
            )
    lines.append("")
    by_workload: dict[str, list[Group]] = {}
    for g in groups:
        by_workload.setdefault(g["workload"], []).append(g)
    slope_lines = []
    for workload, gs in by_workload.items():
        if len(gs) < 2:
            continue
        methods = sorted({m for g in gs for m in gramian_methods(g)})
        for name in ["floor", *(f"{m}@param" for m in methods)]:
            points = [(g["tasks"], g["contenders"][name]["ratio"]) for g in gs if name in g["contenders"]]
            s = slope(points)
            if s is not None:
                span = ", ".join(str(x) for x, _ in points)
                slope_lines.append(f"- {workload}, {name}: {s:.2f} EW-steps per task over T = {span}")
    if slope_lines:
        lines += ["Growth slopes (least squares of × EW over T):", "", *slope_lines, ""]
    repr_ratios = [
        (g["workload"], g["tasks"], name, c["ratio"]) for g in groups for name, c in g["contenders"].items()
        if c["family"] == "repmtl" and c["level"] == "representation" and g["tasks"] <= 8
    ]
    if repr_ratios:
        worst = max(repr_ratios, key=lambda r: r[3])
        lines += [f"Representation level, T ≤ 8: the slowest is {worst[2]} on {worst[0]} T = {worst[1]} at {worst[3]:.2f}× EW.", ""]
    return lines


def render(results: Mapping[str, object]) -> str:
    env, config = results["environment"], results["config"]
    lines = [
        "# repmtl bench",
        "",
        f"- machine: {env['platform']}, {env['cpu_count']} CPU cores, torch {env['torch']}, device {env['device']}"
        + (f" ({env['gpu']})" if "gpu" in env else ""),
        f"- threads: {env['intra_op_threads']} intra-op, {env['interop_threads']} inter-op; clock: {env['clock']}",
        (
            f"- {config['rounds']} interleaved rounds (random order) × {config['steps']} step(s) per contender after "
            f"{config['warmup']} warm-up step(s); statistic: median of per-round ratios to EW, IQR and min–max"
        ),
        (
            "- a step: zero grads, forward, backward (the contender's), SGD step; peak memory from the allocator "
            "(profiler replay on CPU, max_memory_allocated on CUDA), above the step's start"
        ),
        (
            f"- load average at start {env.get('load_average_start')}, at end {env.get('load_average_end')}; "
            f"run took {env.get('seconds')} s"
        ),
        "",
    ]
    lines += [f"- note: {n}" for n in results["notes"]]
    lines.append("")
    for g in results["groups"]:
        lines += group_table(g)
    lines += closing_note(results["groups"])
    return "\n".join(lines)
