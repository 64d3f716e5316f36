"""A training process for the crash tests: ``python -m tests.robustness._killable OUT [KILL_AT]``
trains (or resumes) the tiny run in OUT; with KILL_AT = n it SIGKILLs itself in the middle of
its n-th checkpoint write (half the bytes of the temporary file written); with ``slow`` instead
each sample takes 20 ms to load (the trajectory is unchanged), so an epoch lasts about a second
on any machine and a kill at a random moment lands inside training, not in start-up. It prints
``ready`` once the interpreter has started and training is about to begin."""

from __future__ import annotations

import io
import os
import signal
import sys
import time

import torch

from repmtl.train import checkpoint as ckpt
from repmtl.train.config import TrainConfig
from repmtl.train.trainer import train
from tests import _tiny

CONFIG = {"benchmark": "tiny", "method": "famo", "epochs": 4, "log_every": 1, "progress": False, "name": "run"}


def _dying_save(kill_at: int):
    real, calls = torch.save, [0]

    def save(obj, handle, *args, **kwargs):
        calls[0] += 1
        if calls[0] < kill_at:
            return real(obj, handle, *args, **kwargs)
        buffer = io.BytesIO()
        real(obj, buffer)
        handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    return save


def _slow_loading() -> None:
    load = _tiny._Pairs.__getitem__

    def slow(self, i: int):
        time.sleep(0.02)
        return load(self, i)

    _tiny._Pairs.__getitem__ = slow


if __name__ == "__main__":
    out = sys.argv[1]
    if len(sys.argv) > 2 and sys.argv[2] == "slow":
        _slow_loading()
    elif len(sys.argv) > 2:
        ckpt.torch.save = _dying_save(int(sys.argv[2]))
    print("ready", flush=True)
    train(TrainConfig(**CONFIG, out=out), resume=True)
