"""TorchJD and LibMTL as optional contenders on the same problems (their code is imported, never
copied). A missing peer, or a method of a peer that cannot be built here (a missing optional
dependency), is skipped with a note.

* TorchJD (``pip install torchjd``): ``torchjd.autojac.mtl_backward(losses, features=Z)`` (the
  heads get their task gradients, the shared parameters their Jacobian) then
  ``jac_to_grad(shared, aggregator)``; named ``torchjd:<method>``. Each aggregator at its
  library's default hyper-parameters.
* LibMTL (a source folder, ``--libmtl PATH``, e.g. a clone of median-research-group/LibMTL):
  its weighting class mixed into an adapter exposing our encoder as ``encoder``, at parameter
  level (``rep_grad=False``, its ``backward`` mode) and at representation level
  (``rep_grad=True``: the heads run on per-task detached copies of ``Z``); named
  ``libmtl:<method>@param|repr``, with the defaults of LibMTL's ``config.py``. Only the
  ``LibMTL.weighting`` modules needed are imported: the package's ``__init__`` (which imports
  every optional dependency of every method) is bypassed with placeholder package entries.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from repmtl.bench.contenders import Contender, Step
from repmtl.bench.workloads import Problem

#: repmtl name -> TorchJD aggregator factory (given T)
TORCHJD_AGGREGATORS: dict[str, Callable[[object, int], object]] = {
    "ew": lambda A, T: A.Mean(),
    "upgrad": lambda A, T: A.UPGrad(),
    "mgda": lambda A, T: A.MGDA(),
    "pcgrad": lambda A, T: A.PCGrad(),
    "imtl-g": lambda A, T: A.IMTLG(),
    "cagrad": lambda A, T: A.CAGrad(c=0.5),
    "nashmtl": lambda A, T: A.NashMTL(n_tasks=T),
    "alignedmtl": lambda A, T: A.AlignedMTL(),
    "fairgrad": lambda A, T: A.FairGrad(alpha=1.0),
    "gradvac": lambda A, T: A.GradVac(),
    "graddrop": lambda A, T: A.GradDrop(),
}

#: repmtl name -> (LibMTL weighting module and class, keyword arguments of its backward)
LIBMTL_WEIGHTINGS: dict[str, tuple[str, dict[str, object]]] = {
    "ew": ("EW", {}),
    "mgda": ("MGDA", {"mgda_gn": "none"}),
    "upgrad": ("UPGrad", {"UPGrad_norm_eps": 1e-4, "UPGrad_reg_eps": 1e-4}),
    "pcgrad": ("PCGrad", {}),
    "cagrad": ("CAGrad", {"calpha": 0.5, "rescale": 1}),
    "nashmtl": ("Nash_MTL", {"update_weights_every": 1, "optim_niter": 20, "max_norm": 1.0}),
    "imtl": ("IMTL", {}),
    "alignedmtl": ("Aligned_MTL", {}),
    "gradvac": ("GradVac", {"GradVac_beta": 0.5, "GradVac_group_type": 0}),
    "db-mtl": ("DB_MTL", {"DB_beta": 0.9, "DB_beta_sigma": 0}),
    "fairgrad": ("FairGrad", {"FairGrad_alpha": 1.0}),
    "graddrop": ("GradDrop", {"leak": 0.0}),
}


def _sgd(params: Sequence[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(list(params), lr=lr)


def torchjd_contenders(methods: Sequence[str], num_tasks: int) -> tuple[list[Contender], list[str]]:
    """TorchJD contenders for the ``methods`` it has, and notes on what was skipped."""
    if importlib.util.find_spec("torchjd") is None:
        return [], ["TorchJD not installed (pip install torchjd): its columns are skipped"]
    aggregation = importlib.import_module("torchjd.aggregation")
    autojac = importlib.import_module("torchjd.autojac")
    out, notes = [], []
    for name in methods:
        if name not in TORCHJD_AGGREGATORS:
            continue
        try:
            TORCHJD_AGGREGATORS[name](aggregation, num_tasks)
        except ImportError as exc:
            notes.append(f"torchjd:{name} skipped: {exc}")
            continue
        out.append(Contender(f"torchjd:{name}", "torchjd", name, "parameters", _torchjd_make(name, aggregation, autojac)))
    return out, notes


def _torchjd_make(name: str, aggregation, autojac) -> Callable[[Problem, float], Step]:
    def make(problem: Problem, lr: float) -> Step:
        aggregator = TORCHJD_AGGREGATORS[name](aggregation, len(problem.task_names))
        shared = list(problem.model.shared_parameters())
        optimizer = _sgd(problem.model.parameters(), lr)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            z, losses = problem.forward()
            autojac.mtl_backward(list(losses.values()), features=z)
            autojac.jac_to_grad(shared, aggregator)
            optimizer.step()

        return step

    return make


def _libmtl_weighting_module(source: Path) -> Callable[[str], type]:
    """A loader of ``LibMTL.weighting.<name>`` classes from the source folder (module doc)."""
    source = source.expanduser().resolve()
    package = source / "LibMTL" if (source / "LibMTL").is_dir() else source
    if not (package / "weighting" / "abstract_weighting.py").is_file():
        raise FileNotFoundError(
            f"{source} holds no LibMTL sources (expected LibMTL/weighting/abstract_weighting.py): "
            "point --libmtl at a clone of https://github.com/median-research-group/LibMTL"
        )
    existing = sys.modules.get("LibMTL")
    if existing is not None and Path(getattr(existing, "__path__", [""])[0]).resolve() != package:
        raise RuntimeError(f"another LibMTL ({existing.__path__}) is already imported in this process")
    for name, folder in (("LibMTL", package), ("LibMTL.weighting", package / "weighting")):
        if name not in sys.modules:
            placeholder = types.ModuleType(name)
            placeholder.__path__ = [str(folder)]
            sys.modules[name] = placeholder

    def load(class_name: str) -> type:
        module = importlib.import_module(f"LibMTL.weighting.{class_name}")
        return getattr(module, class_name)

    return load


def libmtl_contenders(source: Path | None, methods: Sequence[str], levels: Sequence[str]) -> tuple[list[Contender], list[str]]:
    """LibMTL contenders for the ``methods`` it has, at the requested levels, and notes."""
    if source is None:
        return [], ["LibMTL not given (--libmtl PATH to its source folder): its columns are skipped"]
    load = _libmtl_weighting_module(source)
    out, notes = [], []
    for name in methods:
        if name not in LIBMTL_WEIGHTINGS:
            continue
        class_name, kwargs = LIBMTL_WEIGHTINGS[name]
        try:
            cls = load(class_name)
        except ImportError as exc:
            notes.append(f"libmtl:{name} skipped: {exc}")
            continue
        for level in levels:
            if level == "representation" and name == "ew":
                continue  # LibMTL's EW backward stops at the detached per-task copies of Z: no encoder update
            tag = "param" if level == "parameters" else "repr"
            out.append(
                Contender(f"libmtl:{name}@{tag}", "libmtl", name, level, _libmtl_make(cls, kwargs, level == "representation"))
            )
    return out, notes


def _libmtl_make(cls: type, kwargs: dict[str, object], rep_grad: bool) -> Callable[[Problem, float], Step]:
    def make(problem: Problem, lr: float) -> Step:
        model = problem.model
        tasks = list(problem.task_names)
        weighting = _libmtl_adapter(cls, model.encoder, tasks, problem.inputs.device, rep_grad)
        own = [p for n, p in weighting.named_parameters() if not n.startswith("encoder.")]
        optimizer = _sgd([*model.parameters(), *own], lr)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            z = model.encoder(problem.inputs)
            weighting.rep = z
            if rep_grad:
                weighting.rep_tasks = {t: z.detach().clone().requires_grad_(True) for t in tasks}
                features = weighting.rep_tasks
            else:
                features = {t: z for t in tasks}
            # as LibMTL's trainer does: the task losses written into one (T,) tensor
            losses = torch.zeros(len(tasks), device=problem.inputs.device)
            for i, t in enumerate(tasks):
                losses[i] = problem.loss_fns[t](model.heads[t](features[t]), problem.targets[t])
            weighting.backward(losses, **kwargs)
            optimizer.step()

        return step

    return make


def _libmtl_adapter(cls: type, encoder: torch.nn.Module, tasks: list[str], device: torch.device, rep_grad: bool):
    """An instance of LibMTL weighting ``cls`` with the attributes its architecture would give."""

    class Adapter(cls):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.task_name, self.task_num, self.device = tasks, len(tasks), device
            self.rep_grad, self.multi_input, self.epoch = rep_grad, False, 0
            self.encoder = encoder
            self.init_param()

        def get_share_params(self):
            return self.encoder.parameters()

        def zero_grad_share_params(self) -> None:
            self.encoder.zero_grad(set_to_none=False)

    return Adapter().to(device)
