"""``attention-<benchmark>``: a single-input benchmark whose heads are attention-augmented,
``H_t(A_t(Z) ⊙ Z)`` (Mao et al., "Rethinking Resource Competition in Multi-Task Learning",
IEEE Access 2024, Eq. 8; :mod:`repmtl.nets.attention`), for the top-down ranking study
(Mao et al. Table 7).

Everything else is the base benchmark's: tasks, data, options, training defaults, encoder. The
network is the base network built first (so at a given seed its encoder and heads start from
the same weights as the base benchmark's), then every head wrapped in an attention module
created after it. The trainer logs the top-down Feature Disentanglement of the maps
``A_t(Z)`` (``diag/fd_attention``) on every diagnostics step of such a model.

``C`` (the channels of ``Z``) is read from one validation sample passed through the base
encoder (eval mode, no gradient), so no preset needs to declare it. Multi-input benchmarks
(Office) get no variant: each task has its own ``Z_t``, so the maps of different tasks cover
different images and FD over positions is undefined.
"""

from __future__ import annotations

import torch

from repmtl.benchmarks import Benchmark, BuildOptions, register_benchmark, registered
from repmtl.data import cityscapes, multidigits, nyuv2, synthscenes  # noqa: F401  (registers the bases)
from repmtl.model import MultiTaskModel
from repmtl.nets.attention import with_attention
from repmtl.tasks import Task

__all__ = ["BASES", "PREFIX", "attention_variant", "representation_channels"]

#: benchmarks that get an ``attention-`` variant (the single-input ones)
BASES = ("multidigits", "synthscenes", "nyuv2", "cityscapes")
PREFIX = "attention-"


def representation_channels(base: Benchmark, options: BuildOptions, model: MultiTaskModel) -> int:
    """``C`` of ``Z = E(x)`` for one validation sample of ``base`` (module doc)."""
    sample = base.splits(options).val[0][0]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        z = model.encoder(sample[None].to(next(model.parameters()).device))
    model.train(was_training)
    if z.dim() not in (2, 4):
        raise ValueError(f"{base.name}: attention heads need a B×C or B×C×H×W representation, got {tuple(z.shape)}")
    return int(z.shape[1])


def attention_variant(base: Benchmark) -> Benchmark:
    """The ``attention-`` variant of a single-input ``base`` (module doc)."""
    if base.multi_input:
        raise ValueError(f"{base.name} is multi-input: attention maps of different inputs have no common positions")

    def model(options: BuildOptions, tasks: list[Task]) -> MultiTaskModel:
        inner = base.model(options, tasks)
        return with_attention(inner, representation_channels(base, options, inner))

    return Benchmark(
        name=f"{PREFIX}{base.name}",
        description=f"{base.name} with attention-augmented heads H(A(Z) ⊙ Z) (top-down diagnostics)",
        tasks=base.tasks,
        splits=base.splits,
        model=model,
        defaults=base.defaults,
        multi_input=False,
        needs_data_root=base.needs_data_root,
        encoders=base.encoders,
        external_encoders=base.external_encoders,
        expects_pretrained=base.expects_pretrained,
        options=base.options,
    )


for _name in BASES:  # the bases are modules this one imports, so they are registered by now
    register_benchmark(attention_variant(registered()[_name]))
