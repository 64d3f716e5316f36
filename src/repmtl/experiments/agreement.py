"""Rank agreement of our methods with a published table (``repmtl compare --published``).

A published entry that names the configuration it stands for (``ours``, e.g. ``"mgda"`` or
``{ method = "ew", loss_transform = "log" }``) is paired with the one setting of ours whose
configuration has those values (and no regularizer unless ``ours`` names one). Over the pairs
that both have the figure (Δm when the entries publish it, else Δp_task), the methods are ranked
both ways and compared with Spearman's ρ and Kendall's τ-b (``scipy.stats``: ties share their
average rank). Fewer than three pairs give no agreement, with a warning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats

from repmtl.experiments.published import PublishedResult

__all__ = ["OurRow", "RankAgreement", "matches", "rank_agreement"]

#: the smallest number of paired methods whose ranking is compared
MIN_PAIRS = 3


@dataclass(frozen=True)
class OurRow:
    """What the agreement needs of one of our rows: its label, configuration and figures
    (means over seeds; ``None`` where undefined)."""

    label: str
    config: Mapping[str, Any]
    delta_m: float | None
    delta_p_task: float | None


@dataclass(frozen=True)
class RankAgreement:
    """Spearman's ρ and Kendall's τ-b between our ranking and the published one."""

    key: str  # "delta_m" or "delta_p_task"
    pairs: tuple[tuple[str, float, float], ...]  # (our row's label, our mean, published value)
    spearman: float
    kendall: float

    def describe(self) -> str:
        figure = "Δm" if self.key == "delta_m" else "Δp_task"
        methods = ", ".join(label for label, _, _ in self.pairs)
        return (f"Rank agreement with the published {figure} over {len(self.pairs)} methods ({methods}): "
                f"Spearman ρ = {self.spearman:+.2f}, Kendall τ = {self.kendall:+.2f} (1: the same order).")


def matches(config: Mapping[str, Any], ours: Mapping[str, Any]) -> bool:
    """Whether a run configuration is the one a published entry names."""
    if config.get("regularizer") and "regularizer" not in ours:
        return False
    return all(config.get(key) == value for key, value in ours.items())


def rank_agreement(rows: Sequence[OurRow], published: Sequence[PublishedResult],
                   warnings: list[str]) -> RankAgreement | None:
    """The agreement over the published entries that name ``ours`` (module doc); problems go
    to ``warnings``."""
    named = [entry for entry in published if entry.ours]
    if not named:
        return None
    key = "delta_m" if any(entry.delta_m is not None for entry in named) else "delta_p_task"
    pairs = []
    for entry in named:
        value = entry.value(key)
        found = [row for row in rows if matches(row.config, entry.ours)]
        if len(found) > 1:
            warnings.append(f"rank agreement: published {entry.method} matches {len(found)} of our rows "
                            f"({', '.join(row.label for row in found)}); left out")
            continue
        if value is None or not found:
            continue
        ours = found[0].delta_m if key == "delta_m" else found[0].delta_p_task
        if ours is not None:
            pairs.append((found[0].label, ours, value))
    if len(pairs) < MIN_PAIRS:
        if pairs:  # some rows pair: say why no agreement is printed
            warnings.append(f"rank agreement: {len(pairs)} of our rows pair with published ones; "
                            f"at least {MIN_PAIRS} are needed")
        return None
    mine, theirs = [p[1] for p in pairs], [p[2] for p in pairs]
    return RankAgreement(key, tuple(pairs), float(stats.spearmanr(mine, theirs).statistic),
                         float(stats.kendalltau(mine, theirs).statistic))
