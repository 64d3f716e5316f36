"""Multi-task architectures beyond hard parameter sharing, built from a benchmark's network.

``build_architecture(name, model, reinit=..., **args)`` turns a hard-sharing
:class:`~repmtl.model.MultiTaskModel` into the named architecture (``docs/architectures.md``):

=================  ============================================================  ==============
name               paper                                                         needs
=================  ============================================================  ==============
``hps``            Caruana 1997 (the model as it is)                             any encoder
``mtan``           Liu et al., CVPR 2019                                         stages
``cross-stitch``   Misra et al., CVPR 2016                                       stages
``mmoe``           Ma et al., KDD 2018                                           image input
``cgc``            Tang et al., RecSys 2020 (§4.2)                               image input
``ple``            Tang et al., RecSys 2020 (§4.3)                               stages
``dselect-k``      Hazimeh et al., NeurIPS 2021                                  image input
``ltb``            Guo et al., ICML 2020                                         stages
=================  ============================================================  ==============

"stages": a dilated ResNet or a sequential CNN (the small CPU encoders); "image input": any
encoder reading ``B×C×H×W`` images (the gates pool the input).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

from torch import nn

from repmtl.model import MultiTaskModel
from repmtl.nets.architectures.base import MultiTaskArchitecture, encoder_stages
from repmtl.nets.architectures.cgc import CGC, build_cgc
from repmtl.nets.architectures.cross_stitch import CrossStitch, build_cross_stitch
from repmtl.nets.architectures.dselect_k import DSelectK, build_dselect_k
from repmtl.nets.architectures.hps import build_hps
from repmtl.nets.architectures.ltb import LTB, build_ltb
from repmtl.nets.architectures.mmoe import MMoE, build_mmoe
from repmtl.nets.architectures.mtan import MTAN, build_mtan
from repmtl.nets.architectures.ple import PLE, build_ple

__all__ = [
    "ARCHITECTURES",
    "CGC",
    "LTB",
    "MTAN",
    "PLE",
    "CrossStitch",
    "DSelectK",
    "MMoE",
    "MultiTaskArchitecture",
    "architecture_args",
    "build_architecture",
    "check_architecture",
    "encoder_stages",
]

#: ``--architecture`` name -> builder ``(model, [reinit], **args) -> nn.Module``
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "hps": build_hps,
    "mtan": build_mtan,
    "cross-stitch": build_cross_stitch,
    "mmoe": build_mmoe,
    "cgc": build_cgc,
    "ple": build_ple,
    "dselect-k": build_dselect_k,
    "ltb": build_ltb,
}


def architecture_args(name: str) -> dict[str, object]:
    """The architecture's hyper-parameters and their defaults (``--architecture-arg KEY=VALUE``)."""
    builder = _builder(name)
    return {
        k: p.default for k, p in inspect.signature(builder).parameters.items()
        if k not in ("model", "reinit") and p.default is not inspect.Parameter.empty
    }


def check_architecture(name: str, args: Mapping[str, object]) -> dict[str, object]:
    """``args`` checked against the architecture's hyper-parameters (name and type); returns
    them with the defaults filled in."""
    defaults = architecture_args(name)
    unknown = sorted(set(args) - set(defaults))
    if unknown:
        accepted = ", ".join(defaults) or "none"
        raise ValueError(f"architecture {name!r} has no argument(s) {unknown}; it accepts: {accepted}")
    out = dict(defaults)
    for key, value in args.items():
        kind = type(defaults[key])
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not kind:
            raise ValueError(f"architecture {name!r} argument {key} expects a {kind.__name__}, got {value!r}")
        out[key] = value
    return out


def build_architecture(name: str, model: MultiTaskModel, *, reinit: bool = True, **args: object) -> nn.Module:
    """The benchmark's network ``model`` as architecture ``name``.

    ``reinit``: re-initialise the copies (experts, columns, branches) so that they do not start
    identical; pass ``False`` when the encoder holds pretrained weights (every copy then starts
    from them). Raises ``ValueError`` (naming the architecture) where the encoder does not fit.
    """
    builder = _builder(name)
    values = check_architecture(name, args)
    if not isinstance(model, MultiTaskModel):
        raise TypeError(f"architecture {name!r} is built from a MultiTaskModel (encoder + heads), got {type(model).__name__}")
    if "reinit" in inspect.signature(builder).parameters:
        values["reinit"] = reinit
    try:
        return builder(model, **values)
    except ValueError as exc:
        raise ValueError(f"architecture {name!r}: {exc}") from exc


def _builder(name: str) -> Callable[..., nn.Module]:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]
