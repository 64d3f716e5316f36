"""repmtl: multi-task learning optimisation for PyTorch.

The core is one function per step, :func:`backward`; methods are found by name in
:mod:`repmtl.methods`; regularizers (Rep-MTL's TSR/CSA) in :mod:`repmtl.regularizers`.

The names below load on first use (PEP 562), so ``import repmtl.cli`` and ``repmtl --help``
do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "BackwardRecord": "repmtl.step",
    "backward": "repmtl.step",
    "ModelOutput": "repmtl.model",
    "MultiTaskModel": "repmtl.model",
    "Task": "repmtl.tasks",
    "methods": "repmtl.methods",
    "regularizers": "repmtl.regularizers",
}

__all__ = ["BackwardRecord", "ModelOutput", "MultiTaskModel", "Task", "backward", "methods", "regularizers"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'repmtl' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if module.__name__ == f"repmtl.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
