"""The error raised when an optional extra (``[plots]``, ``[cluster]``, ``[yaml]``) is missing."""

from __future__ import annotations

__all__ = ["MissingExtraError"]


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""
