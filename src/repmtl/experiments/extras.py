"""The error raised when an optional extra (``[plots]``, ``[cluster]``, ``[yaml]``) is missing."""

from __future__ import annotations

from repmtl.extras import MissingExtraError

__all__ = ["MissingExtraError", "missing_plots"]


def missing_plots(exc: ImportError) -> str | None:
    """Why figures cannot be drawn when importing a plotting module raised ``exc`` (matplotlib,
    the ``[plots]`` extra, is absent), or ``None`` when ``exc`` is another import error."""
    if isinstance(exc, MissingExtraError):
        return str(exc)
    if (exc.name or "").split(".")[0] == "matplotlib":
        return "figures need matplotlib; install the extra: pip install 'repmtl[plots]'"
    return None
