"""Regularizers of the multi-task objective (Rep-MTL's TSR/CSA, CosReg)."""

from repmtl.regularizers.base import Penalty, Regularizer

__all__ = ["Penalty", "Regularizer"]
