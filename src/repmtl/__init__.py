"""repmtl: multi-task learning optimisation for PyTorch.

The core is one function per step, :func:`backward`; methods are found by name in
:mod:`repmtl.methods`; regularizers (Rep-MTL's TSR/CSA) in :mod:`repmtl.regularizers`.
"""

from repmtl import methods, regularizers
from repmtl.backward import BackwardRecord, backward
from repmtl.model import ModelOutput, MultiTaskModel
from repmtl.tasks import Task

__version__ = "0.1.0"

__all__ = ["BackwardRecord", "ModelOutput", "MultiTaskModel", "Task", "backward", "methods", "regularizers"]
