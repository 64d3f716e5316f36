"""One multi-task step's gradients: :func:`backward` (``repmtl.backward``) and its record.

``phases.py`` holds the step, one function per phase; ``inputs.py`` what is checked before any
gradient is taken; ``record.py`` the :class:`BackwardRecord`.
"""

from repmtl.step.phases import backward
from repmtl.step.record import BackwardRecord

__all__ = ["BackwardRecord", "backward"]
