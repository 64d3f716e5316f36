"""Method presets: names that stand for a method plus regularizers and a loss transform."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from repmtl.train.config import TrainConfig

#: preset name -> (description, config fields it sets)
PRESETS: dict[str, tuple[str, dict[str, object]]] = {
    "repmtl": (
        ("Rep-MTL (ICCV 2025): EW + TSR + CSA on log task losses; τ = 2, penalties reach the encoder "
        "only (chosen on validation; at CPU budgets below EW on multidigits and below EW+log on synthscenes: "
        "docs/rep-mtl.md)"),
        {"method": "ew", "regularizer": "repmtl", "loss_transform": "log"},
    ),
}


def resolve_presets(config: TrainConfig) -> TrainConfig:
    """Expand a preset method name; a Rep-MTL regularizer turns the log loss transform on
    unless the user chose a transform (``docs/formulas.md#rep-mtl-objective``)."""
    if config.method in PRESETS:
        _, fields = PRESETS[config.method]
        updates = dict(fields)
        if config.loss_transform is not None:
            updates.pop("loss_transform")
        if config.regularizer not in (None, fields["regularizer"]):
            raise ValueError(f"preset {config.method!r} sets --regularizer {fields['regularizer']}; got {config.regularizer!r}")
        config = replace(config, **updates)
    if config.regularizer == "repmtl" and config.loss_transform is None:
        config = replace(config, loss_transform="log")
    return config
