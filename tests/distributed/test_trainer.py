"""``repmtl train`` under ``torchrun`` (2 gloo ranks, spawned with torchrun's environment):
the same final weights on both ranks, the weights and test metrics of one process on the same
global batches, and one writer for the run folder."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp

from repmtl.train.config import TrainConfig
from repmtl.train.trainer import Trainer
from tests import _tiny  # noqa: F401
from tests.distributed._workers import trainer_worker

pytestmark = pytest.mark.slow  # two spawned trainers, five runs: about 30 s

METHODS = ["ew", "upgrad", "rlw", "graddrop", "repmtl"]


def _config(out, method, name):
    return {"benchmark": "tiny", "method": method, "out": str(out), "name": name, "epochs": 2, "log_every": 1,
            "progress": False}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("torchrun")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    configs = {m: _config(folder / "dist", m, m) for m in METHODS}
    mp.spawn(trainer_worker, args=(2, port, configs, str(folder)), nprocs=2, join=True)
    ranks = [torch.load(folder / f"trainer-rank{r}.pt", weights_only=True) for r in range(2)]
    return folder, ranks


@pytest.mark.parametrize("method", METHODS)
def test_torchrun_equals_one_process(runs, method):
    folder, ranks = runs
    for key, value in ranks[0][method]["model"].items():
        assert torch.equal(value, ranks[1][method]["model"][key]), key
    if method == "repmtl":
        # CSA's negatives are the other samples of each rank's half-batch: another objective than
        # one process's (docs/distributed.md); tests/distributed/test_step.py checks it equals the
        # per-shard penalty exactly
        return
    single = Trainer(TrainConfig(**_config(folder / "one", method, method)))
    result = single.fit()
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(ranks[0][method]["model"][key], value, rtol=1e-5, atol=1e-6)
    assert ranks[0][method]["test"] == result.test


def test_one_writer(runs):
    folder, _ = runs
    run = folder / "dist" / "tiny" / "ew"
    steps = (run / "steps.jsonl").read_text().splitlines()
    assert len(steps) == 6  # 2 epochs × 3 global batches of 16, each logged once (not once per rank)
    assert (run / "checkpoints" / "last.pt").exists() and (run / "results.json").exists()
