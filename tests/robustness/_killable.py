"""A training process for the crash tests: ``python -m tests.robustness._killable OUT [KILL_AT]``
trains (or resumes) the tiny run in OUT; with KILL_AT = n it SIGKILLs itself in the middle of
its n-th checkpoint write (half the bytes of the temporary file written)."""

from __future__ import annotations

import io
import os
import signal
import sys

import torch

from repmtl.train import checkpoint as ckpt
from repmtl.train.config import TrainConfig
from repmtl.train.trainer import train
from tests import _tiny  # noqa: F401

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


if __name__ == "__main__":
    out = sys.argv[1]
    if len(sys.argv) > 2:
        ckpt.torch.save = _dying_save(int(sys.argv[2]))
    train(TrainConfig(**CONFIG, out=out), resume=True)
