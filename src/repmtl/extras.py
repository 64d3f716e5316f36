"""The error raised when an optional extra (``[qm9]``, ``[plots]``, ``[cluster]``, ``[yaml]``) is missing.

It lives at the lowest layer so that networks and data presets (``nets``, ``data``) can raise it
and the command line can turn it into one line naming the extra to install.
"""

from __future__ import annotations

__all__ = ["MissingExtraError", "missing_extra"]


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def missing_extra(what: str, package: str, extra: str, alternative: str = "") -> MissingExtraError:
    """``what needs package, the [extra] extra: pip install -e ".[extra]" ...`` as an error.

    ``alternative``: another way out, appended to the message (e.g. a command-line option).
    """
    message = (f"{what} needs {package}, the [{extra}] extra: pip install -e \".[{extra}]\" in a checkout "
               f"(or pip install \"repmtl[{extra}]\")")
    return MissingExtraError(f"{message}{'; ' + alternative if alternative else ''}")
