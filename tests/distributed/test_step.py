"""The distributed step (gloo, 2 CPU processes) equals one process on the same global batch.

After a few SGD steps every rank holds bit-identical parameters and method state, and they
match the single-process run within ``TOL`` (float32 reductions in another order), for every
kind of method and level: loss weightings, Gramian weightings, aggregators at parameter and
representation level, random and stateful methods, multi-input data, uneven shards and Rep-MTL
(whose penalties are computed per rank: the reference computes them per shard).
"""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

from tests.distributed._workers import Case, train, worker

TOL = {"rtol": 1e-5, "atol": 1e-6}

CASES = {
    "ew": Case("ew"),
    "famo": Case("famo"),  # stateful loss weighting
    "rlw": Case("rlw"),  # random weights: the same draw on every rank
    "uw-log": Case("uw", loss_transform="log"),  # learnable method parameters, log terms
    "mgda": Case("mgda"),
    "upgrad": Case("upgrad", tasks=3),
    "pcgrad": Case("pcgrad", tasks=3),  # random projection order
    "nashmtl": Case("nashmtl"),  # stateful Gramian weighting
    "mgda-last": Case("mgda", level="last_layer"),
    "gradvac": Case("gradvac"),  # aggregator with state (EMA of cosines)
    "mgda-rep": Case("mgda", level="representation"),  # T×T Gramian all-reduce
    "gradvac-rep": Case("gradvac", level="representation"),  # gathered Jacobian
    "graddrop-rep": Case("graddrop"),  # gathered Jacobian and Z, random
    "upgrad-uneven": Case("upgrad", batch=15),  # shards of 8 and 7 samples
    "graddrop-uneven": Case("graddrop", batch=15),
    "ew-multi": Case("ew", multi_input=True),
    "mgda-multi": Case("mgda", multi_input=True),
    "repmtl": Case("ew", regularizer="repmtl", loss_transform="log"),
}


#: the default suite's share (one of each kind); ``-m slow`` runs every case
FAST = ["ew", "rlw", "upgrad", "gradvac", "mgda-rep", "graddrop-uneven", "repmtl"]
PARAMS = [name if name in FAST else pytest.param(name, marks=pytest.mark.slow) for name in CASES]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory, request):
    folder = tmp_path_factory.mktemp("dist")
    selected = {item.callspec.params["name"] for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec")}
    cases = {n: c for n, c in CASES.items() if n in selected}  # spawn only what this session tests
    mp.spawn(worker, args=(2, str(folder / "init"), cases, str(folder)), nprocs=2, join=True)
    return [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(2)]


def _leaves(value):
    """Every tensor and number in a (nested) method state, in a fixed order; the state proper
    sits in ``_extra_state``, a dict of its own (regression: only top-level tensors were compared)."""
    if isinstance(value, dict):
        return [leaf for key in sorted(value, key=str) for leaf in _leaves(value[key])]
    if isinstance(value, list | tuple):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value] if isinstance(value, torch.Tensor | int | float) else []


def _tensors(result):
    return result["params"], _leaves(result["method"])


def _same(a, b) -> bool:
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


@pytest.mark.parametrize("name", PARAMS)
def test_ranks_agree_bit_for_bit(ranks, name):
    (p0, s0), (p1, s1) = _tensors(ranks[0][name]), _tensors(ranks[1][name])
    assert all(torch.equal(a, b) for a, b in zip(p0, p1, strict=True))
    assert len(s0) == len(s1) and all(_same(a, b) for a, b in zip(s0, s1, strict=True))


@pytest.mark.parametrize("name", PARAMS)
def test_matches_one_process_on_the_global_batch(ranks, name):
    case = CASES[name]
    reference = train(case, reference_shards=2 if case.regularizer else 1)
    got = ranks[0][name]
    for a, b in zip(reference["params"], got["params"], strict=True):
        torch.testing.assert_close(b, a, **TOL)
    for a, b in zip(reference["records"], got["records"], strict=True):
        torch.testing.assert_close(b["losses"], a["losses"], **TOL)
        if a["weights"] is not None:
            torch.testing.assert_close(b["weights"], a["weights"], **TOL)
    moved = max((a - b).abs().max().item() for a, b in zip(reference["params"], model_start(case), strict=True))
    assert moved > 1e-4  # the steps changed the weights: the comparison is not vacuous


def model_start(case):
    from tests.distributed._workers import model

    return [p.detach() for p in model(case.tasks).parameters()]
