"""What a method remembers between steps, in one serialised place (like ``torch.optim``'s state).

A :class:`MethodState` is a dict of names to tensors, python numbers, strings, ``None``,
lists/tuples/dicts of those, or a module that serialises itself (``state_dict`` /
``load_state_dict``, e.g. IGBv2's SAC agent with its optimizers). It travels in the method's ``state_dict()`` (as extra state), loads with
``torch.load(weights_only=True)``, and follows the method across ``.to(device)``. An entry whose
shape only the first step knows (a running average of the Jacobian) starts as ``None`` and is
created by :meth:`MethodState.zeros_like`. Entries read and write as attributes as well
(``state.logits`` is ``state["logits"]``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping

import torch
from torch import nn

_PLAIN = (bool, int, float, str, type(None))


def _check_value(name: str, value: object) -> None:
    if isinstance(value, (torch.Tensor, nn.Module, *_PLAIN)):
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_value(name, item)
        return
    if isinstance(value, dict) and all(isinstance(k, str | int) for k in value):
        for item in value.values():
            _check_value(name, item)
        return
    raise TypeError(
        f"method state {name!r} holds a {type(value).__name__}; keep tensors, numbers, strings, None, "
        "lists or dicts of them, or a module (a checkpoint must load without pickle)"
    )


def _map_tensors(value: object, fn: Callable[[torch.Tensor], torch.Tensor]) -> object:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, list | tuple):
        return type(value)(_map_tensors(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    return value


class MethodState(MutableMapping[str, object]):
    """A method's step-to-step memory; see the module docstring."""

    def __init__(self) -> None:
        object.__setattr__(self, "_values", {})

    def __getattr__(self, name: str) -> object:
        if name.startswith("_"):  # copy/pickle protocols probe dunders before _values exists
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"method state has no entry {name!r}") from None

    def __setattr__(self, name: str, value: object) -> None:
        self[name] = value

    def __getitem__(self, name: str) -> object:
        return self._values[name]

    def __setitem__(self, name: str, value: object) -> None:
        _check_value(name, value)
        self._values[name] = value

    def __delitem__(self, name: str) -> None:
        del self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"MethodState({sorted(self._values)})"

    def zeros_like(self, name: str, like: torch.Tensor, owner: str = "method") -> torch.Tensor:
        """The tensor ``name``, created as zeros shaped like ``like`` on first use; a later step
        of another shape is refused (the shared parameters or the level changed)."""
        current = self._values.get(name)
        if current is None:
            current = torch.zeros_like(like)
            self._values[name] = current
        elif not isinstance(current, torch.Tensor) or current.shape != like.shape:
            shape = tuple(current.shape) if isinstance(current, torch.Tensor) else type(current).__name__
            raise ValueError(
                f"{owner} keeps {name} of shape {shape}, this step gives {tuple(like.shape)}; "
                "the shared parameters (or the level) changed since the first step"
            )
        return current

    def to_dict(self) -> dict[str, object]:
        """A snapshot for ``state_dict()``: tensors detached and cloned, containers copied, a
        module replaced by its own ``state_dict()``."""
        return {
            name: _map_tensors(value.state_dict() if isinstance(value, nn.Module) else value, _copy)
            for name, value in self._values.items()
        }

    def load_dict(self, values: dict[str, object]) -> None:
        """Replace every entry by ``values`` (a :meth:`to_dict` result), tensors cloned; a
        module entry (created by ``setup``) loads its part with ``load_state_dict``."""
        loaded: dict[str, object] = {}
        for name, value in values.items():
            current = self._values.get(name)
            if isinstance(current, nn.Module):
                if not isinstance(value, dict):
                    raise TypeError(f"method state {name!r}: expected the state_dict of a module")
                current.load_state_dict(value)
                loaded[name] = current
                continue
            _check_value(name, value)
            loaded[name] = _map_tensors(value, _copy)
        object.__setattr__(self, "_values", loaded)

    def apply(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Apply a module conversion (``.to``, ``.double`` ...) to every tensor held."""
        for value in self._values.values():
            if isinstance(value, nn.Module):
                value._apply(fn)
        values = {k: v if isinstance(v, nn.Module) else _map_tensors(v, fn) for k, v in self._values.items()}
        object.__setattr__(self, "_values", values)


def _copy(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().clone()
