"""The run-log key schema: the name of every value in a run's ``steps.jsonl`` and ``epochs.jsonl``.

The trainer (:mod:`repmtl.train.trainer`), its logger (:mod:`repmtl.train.runlog`) and the live
diagnostics (:mod:`repmtl.diagnostics.live`) build the keys they write here, and ``repmtl report``
(:mod:`repmtl.experiments.report`) finds and parses them here, so writers and readers share one
definition.

A key is a :class:`KeyFamily` pattern filled in: fixed ``/``-separated words, then its fields
(``loss/{task}`` -> ``loss/depth``). Every field but the last is one word; the last one may hold
``/`` itself (layer names, method info names, and the ``/<i>`` that
:func:`repmtl.train.runlog.to_floats` appends to a vector value). :data:`FAMILIES` lists every
family with the log it goes to; :func:`parse` tells which family a key belongs to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ALPHA_ENCODER",
    "ALPHA_ENCODER_MEAN",
    "ALPHA_HEAD",
    "ALPHA_HEAD_MEAN",
    "DIAG_COND",
    "DIAG_COS",
    "DIAG_FD",
    "DIAG_FD_ATTENTION",
    "DIAG_GDS",
    "DIAG_GMS",
    "DIAG_LEVEL",
    "DIAG_NORM",
    "EPOCH",
    "EPOCH_TIME",
    "FAMILIES",
    "INFO",
    "LOSS",
    "LR",
    "PENALTY",
    "PENALTY_SCALE",
    "SELECTION_SCORE",
    "SKIPPED",
    "SKIPPED_STEPS",
    "STEP",
    "TRAIN_LOSS",
    "TRAIN_PENALTY",
    "VAL_METRIC",
    "WEIGHT",
    "KeyFamily",
    "Log",
    "ParsedKey",
    "parse",
    "val_metrics",
]

#: which file a key is written to: ``steps.jsonl`` or ``epochs.jsonl`` (and ``epochs.csv``)
Log = Literal["steps", "epochs"]


@dataclass(frozen=True)
class KeyFamily:
    """Keys of one kind, e.g. ``loss/{task}``: fixed words, then named fields (each in braces).

    ``logs``: the files such keys are written to; ``description``: what the value is.
    """

    pattern: str
    logs: tuple[Log, ...]
    description: str
    words: tuple[str, ...] = field(init=False, repr=False)
    fields: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        parts = self.pattern.split("/")
        named = [p.startswith("{") and p.endswith("}") for p in parts]
        n_words = named.index(True) if any(named) else len(parts)
        if not all(named[n_words:]) or not n_words:
            raise ValueError(f"key pattern {self.pattern!r}: fixed words first, then {{fields}}")
        object.__setattr__(self, "words", tuple(parts[:n_words]))
        object.__setattr__(self, "fields", tuple(p[1:-1] for p in parts[n_words:]))

    @property
    def prefix(self) -> str:
        """The fixed start of every key of the family (the whole key when it has no fields)."""
        return "/".join(self.words) + ("/" if self.fields else "")

    def key(self, *values: str) -> str:
        """The key for ``values``, one per field (``LOSS.key("depth") == "loss/depth"``)."""
        if len(values) != len(self.fields):
            raise ValueError(f"key {self.pattern!r} takes {len(self.fields)} value(s), got {values!r}")
        for name, value in zip(self.fields[:-1], values):
            if not value or "/" in value:
                raise ValueError(f"key {self.pattern!r}: {name} must be a non-empty name without '/', got {value!r}")
        if values and not values[-1]:
            raise ValueError(f"key {self.pattern!r}: {self.fields[-1]} must not be empty")
        return self.prefix + "/".join(values)

    def match(self, key: str) -> dict[str, str] | None:
        """The fields of ``key`` by name when it belongs to this family, else ``None``."""
        if not self.fields:
            return {} if key == self.pattern else None
        if not key.startswith(self.prefix):
            return None
        values = key[len(self.prefix):].split("/", len(self.fields) - 1)
        if len(values) != len(self.fields) or not all(values):
            return None
        return dict(zip(self.fields, values))


# ---- both logs -----------------------------------------------------------------------------
STEP = KeyFamily("step", ("steps", "epochs"), "optimizer steps taken (in epochs.jsonl: at the end of the epoch)")
EPOCH = KeyFamily("epoch", ("steps", "epochs"), "the epoch, counted from 1")
LR = KeyFamily("lr", ("steps", "epochs"), "learning rate of the model's optimizer")

# ---- steps.jsonl: every log_every steps and every diagnostics step ---------------------------
LOSS = KeyFamily("loss/{task}", ("steps",), "the task's raw loss (before any transform or weighting)")
WEIGHT = KeyFamily("weight/{task}", ("steps",), "the weight α_t the method gave the task's loss")
PENALTY = KeyFamily("penalty/{name}", ("steps",), "a regularizer's penalty, before its λ")
PENALTY_SCALE = KeyFamily("penalty_scale/{name}/{where}", ("steps",),
                          "norm of the gradient a penalty applied (after its λ) over the task gradient's, "
                          "at the encoder (measured at Z) or at the heads")
INFO = KeyFamily("info/{name}", ("steps",), "a number the method reported (BackwardRecord.info); "
                 "per-task vectors end in /<task>, other vectors in /<i>")
DIAG_LEVEL = KeyFamily("diag/level", ("steps",), "level of the diagnostics' Gramian: 'parameters' or 'representation'")
DIAG_GDS = KeyFamily("diag/gds", ("steps",), "gradient direction similarity (Mao et al., 2024, Eq. 5)")
DIAG_GMS = KeyFamily("diag/gms", ("steps",), "gradient magnitude similarity (Mao et al., 2024, Eq. 6)")
DIAG_COND = KeyFamily("diag/cond", ("steps",), "condition number κ(J) of the Gramian (inf when singular)")
DIAG_FD = KeyFamily("diag/fd", ("steps",), "feature disentanglement of the saliencies")
DIAG_FD_ATTENTION = KeyFamily("diag/fd_attention", ("steps",), "feature disentanglement of the attention maps A_t(Z) "
                              "(top-down; models with attention-augmented heads only)")
DIAG_NORM = KeyFamily("diag/norm/{task}", ("steps",), "norm ‖g_t‖ of the task's gradient")
DIAG_COS = KeyFamily("diag/cos/{task}", ("steps",), "cosine of the task's gradient to the applied update")
SKIPPED = KeyFamily("skipped/{cause}", ("steps",), "1 on a step skipped for a non-finite value (always logged): "
                    "cause is a task whose loss was not finite, or 'gradient'")

# ---- epochs.jsonl: once per epoch ------------------------------------------------------------
TRAIN_LOSS = KeyFamily("train/loss/{task}", ("epochs",), "mean training loss of the task over the epoch")
TRAIN_PENALTY = KeyFamily("train/penalty/{name}", ("epochs",), "mean penalty of a regularizer over the epoch")
VAL_METRIC = KeyFamily("val/{task}/{metric}", ("epochs",), "a validation metric of the task")
SELECTION_SCORE = KeyFamily("selection_score", ("epochs",), "the score best.pt is selected by (larger is better)")
EPOCH_TIME = KeyFamily("time/epoch_s", ("epochs",), "wall-clock seconds of the epoch's training steps")
SKIPPED_STEPS = KeyFamily("skipped_steps", ("epochs",), "steps of the epoch skipped for a non-finite loss or gradient")
ALPHA_ENCODER = KeyFamily("alpha/encoder/{layer}", ("epochs",), "power-law α of an encoder layer")
ALPHA_HEAD = KeyFamily("alpha/head/{task}/{layer}", ("epochs",), "power-law α of a layer of the task's head")
ALPHA_ENCODER_MEAN = KeyFamily("alpha/encoder_mean", ("epochs",), "mean α over the fitted encoder layers")
ALPHA_HEAD_MEAN = KeyFamily("alpha/head_mean/{task}", ("epochs",), "mean α over the fitted layers of the task's head")

#: every family; a key belongs to at most one of them (tests/test_logkeys.py checks it)
FAMILIES: tuple[KeyFamily, ...] = (
    STEP, EPOCH, LR,
    LOSS, WEIGHT, PENALTY, PENALTY_SCALE, INFO,
    DIAG_LEVEL, DIAG_GDS, DIAG_GMS, DIAG_COND, DIAG_FD, DIAG_FD_ATTENTION, DIAG_NORM, DIAG_COS, SKIPPED,
    TRAIN_LOSS, TRAIN_PENALTY, VAL_METRIC, SELECTION_SCORE, EPOCH_TIME, SKIPPED_STEPS,
    ALPHA_ENCODER, ALPHA_HEAD, ALPHA_ENCODER_MEAN, ALPHA_HEAD_MEAN,
)


@dataclass(frozen=True)
class ParsedKey:
    """A key's family and its fields by name (``parse("loss/depth").fields == {"task": "depth"}``)."""

    family: KeyFamily
    fields: Mapping[str, str]


def parse(key: str) -> ParsedKey | None:
    """The family and fields of a logged key; ``None`` for a key outside the schema."""
    for family in FAMILIES:
        found = family.match(key)
        if found is not None:
            return ParsedKey(family, found)
    return None


def val_metrics(scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``{task: {metric: value}}`` as :data:`VAL_METRIC` entries (``val/<task>/<metric>``)."""
    return {VAL_METRIC.key(task, metric): value for task, metrics in scores.items() for metric, value in metrics.items()}
