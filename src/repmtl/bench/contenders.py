"""The bench's contenders: one training step each (zero grads, forward, backward, SGD step),
all on the same :class:`~repmtl.bench.workloads.Problem` (shared model and batch).

* ``ew``: equal weighting, the reference every ratio is taken to;
* ``<method>`` (loss-only methods) and ``<method>@param`` / ``<method>@repr`` (gradient
  methods at each level they define), through :func:`repmtl.backward`;
* ``repmtl``: the Rep-MTL preset (EW + TSR + CSA on log losses);
* ``floor``: the forward and ``T`` task backwards through head and encoder, accumulated into
  ``.grad`` — what an exact parameter-level method does when it forms every row of ``J``;
* ``<method>@param:fullJ`` (``--full-jacobian``): a Gramian method (or a segment-Gramian
  aggregator: GradVac, MetaBalance) with ``factor_linear=False``,
  the path that forms every row of ``J`` even for linear layers (``repmtl.linear_gram``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

import repmtl
from repmtl import methods as M
from repmtl.bench.workloads import Problem
from repmtl.regularizers import RepMTL

Step = Callable[[], None]
LEVEL_TAGS = {"parameters": "param", "last_layer": "last", "representation": "repr"}

#: hyper-parameters a method cannot do without (everything else: its defaults)
REQUIRED_HPARAMS: dict[str, Callable[[int], dict[str, object]]] = {"fixed": lambda num_tasks: {"weights": [1.0] * num_tasks}}


@dataclass(frozen=True)
class Contender:
    """A named step factory. ``family``: repmtl | floor | torchjd | libmtl;
    ``method``: the repmtl method it corresponds to ("" for the floor); ``level``:
    parameters | representation | losses | ""."""

    name: str
    family: str
    method: str
    level: str
    make: Callable[[Problem, float], Step]


def _optimizer(problem: Problem, extra: Sequence[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD([*problem.model.parameters(), *extra], lr=lr)


def _create(name: str, problem: Problem) -> M.Method:
    hparams = REQUIRED_HPARAMS.get(name, lambda n: {})(len(problem.task_names))
    return M.create(name, tasks=list(problem.task_names), **hparams).to(problem.inputs.device)


#: the family and label suffix of a Gramian method run with ``factor_linear=False``
FULL_JACOBIAN = "fullJ"


def ours(name: str, level: str, *, preset: bool = False, factor_linear: bool = True) -> Contender:
    """A registered method at ``level`` through :func:`repmtl.backward` (``preset``: Rep-MTL;
    ``factor_linear=False``: every row of ``J`` formed, labelled ``<method>@param:fullJ``)."""

    def make(problem: Problem, lr: float) -> Step:
        method = _create(name, problem)
        regularizers = [RepMTL().to(problem.inputs.device)] if preset else []
        transform = "log" if preset else None
        optimizer = _optimizer(problem, list(method.parameters()), lr)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            z, losses = problem.forward()
            repmtl.backward(
                losses, representation=z, method=method, level=level, regularizers=regularizers,
                loss_transform=transform, factor_linear=factor_linear,
            )
            optimizer.step()

        return step

    if preset:
        return Contender("repmtl", "repmtl", "repmtl", "representation", make)
    is_loss_method = M.lookup(name).consumes == "losses"
    label = name if is_loss_method else f"{name}@{LEVEL_TAGS[level]}"
    if not factor_linear:
        return Contender(f"{label}:{FULL_JACOBIAN}", FULL_JACOBIAN, name, level, make)
    return Contender(label, "repmtl", name, "losses" if is_loss_method else level, make)


def floor() -> Contender:
    def make(problem: Problem, lr: float) -> Step:
        optimizer = _optimizer(problem, [], lr)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            _, losses = problem.forward()
            terms = list(losses.values())
            for t, term in enumerate(terms):
                term.backward(retain_graph=t < len(terms) - 1)
            optimizer.step()

        return step

    return Contender("floor", "floor", "", "", make)


def repmtl_contenders(methods: Sequence[str], levels: Sequence[str], *, full_jacobian: bool = False) -> list[Contender]:
    """EW, the floor, every method at each requested level it defines, and Rep-MTL; with
    ``full_jacobian``, each parameter-level Gramian method also without the linear identity."""
    out = [ours("ew", "parameters"), floor()]
    for name in methods:
        if name == "ew":
            continue
        cls = M.lookup(name)
        if cls.consumes == "losses":
            out.append(ours(name, "parameters"))
            continue
        out += [ours(name, level) for level in levels if level in cls.levels]
        gramians_only = cls.consumes == "gramian" or issubclass(cls, M.SegmentGramianAggregator)
        if full_jacobian and gramians_only and "parameters" in levels and "parameters" in cls.levels:
            out.append(ours(name, "parameters", factor_linear=False))
    out.append(ours("ew", "representation", preset=True))
    return out
