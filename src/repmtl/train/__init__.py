"""Training: configuration, the trainer loop, checkpoints, logs and single-task baselines."""

from repmtl.train.config import TrainConfig
from repmtl.train.persistence import RunResult
from repmtl.train.trainer import Trainer, train

__all__ = ["RunResult", "TrainConfig", "Trainer", "train"]
