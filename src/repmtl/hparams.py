"""Hyper-parameter declarations: one annotated constructor signature per method or regularizer.

A method declares each hyper-parameter once, as a type-annotated keyword of its ``__init__``,
using the constrained types below (or ``Literal[...]``, ``bool``, sequences of them, ``| None``)::

    def __init__(self, normalization: Literal["none", "l2"] = "none", max_iter: PositiveInt = 250,
                 tol: Positive = 1e-10) -> None: ...

That one declaration is read by :func:`validate` (called before every constructor runs, so
``create``, direct construction and the CLI all refuse a bad value the same way), by
:func:`parse_cli_value` (``--method-arg key=value`` strings) and by :func:`describe`
(``repmtl methods NAME``). Validation is done by pydantic; the messages are ours and name the
owner, the argument, what it expects and the value given.
"""

from __future__ import annotations

import functools
import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import Field, TypeAdapter, ValidationError

__all__ = [
    "Decay",
    "Finite",
    "HParam",
    "HyperparameterError",
    "NonNegative",
    "NonNegativeInt",
    "Positive",
    "PositiveInt",
    "Probability",
    "declared",
    "describe",
    "parse_cli_value",
    "validate",
    "validated_init",
]

#: a finite float (NaN and ±inf refused)
Finite = Annotated[float, Field(allow_inf_nan=False)]
#: a finite float > 0
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
#: a finite float ≥ 0
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: a float in [0, 1]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
#: a decay or momentum factor in [0, 1)
Decay = Annotated[float, Field(ge=0, lt=1)]
#: an integer ≥ 1
PositiveInt = Annotated[int, Field(ge=1)]
#: an integer ≥ 0
NonNegativeInt = Annotated[int, Field(ge=0)]


class HyperparameterError(ValueError):
    """A hyper-parameter value that its declaration refuses (a ``ValueError``)."""


@dataclass(frozen=True)
class HParam:
    """One declared hyper-parameter: its name, annotation and default."""

    name: str
    annotation: Any
    default: Any

    @property
    def expects(self) -> str:
        return _expects(self.annotation)


def declared(cls_or_init: type | Callable) -> dict[str, HParam]:
    """The hyper-parameters a class's ``__init__`` (or an ``__init__`` function) declares, in
    order (``self``, ``*args`` and ``**kwargs`` excluded)."""
    init = cls_or_init.__init__ if isinstance(cls_or_init, type) else cls_or_init
    return dict(_declared(inspect.unwrap(init)))


@functools.cache
def _declared(init: Callable) -> tuple[tuple[str, HParam], ...]:
    hints = typing.get_type_hints(init, include_extras=True)
    out = []
    for param in inspect.signature(init).parameters.values():
        if param.name == "self" or param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            continue
        default = None if param.default is inspect.Parameter.empty else param.default
        out.append((param.name, HParam(param.name, hints.get(param.name, Any), default)))
    return tuple(out)


@functools.cache
def _adapter(annotation: Any) -> TypeAdapter:
    return TypeAdapter(annotation)


def validate(owner: str, cls_or_init: type | Callable, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``values`` against the declarations; returns them converted (``3`` becomes ``3.0``
    for a float, a list becomes a tuple, ...). Raises :class:`HyperparameterError` (a
    ``ValueError``) for an unknown name or a refused value, a wrong type included."""
    params = declared(cls_or_init)
    unknown = sorted(set(values) - set(params))
    if unknown:
        accepted = ", ".join(params) or "none"
        raise HyperparameterError(f"{owner} has no hyper-parameter(s) {unknown}; it accepts: {accepted}")
    out = {}
    for name, value in values.items():
        param = params[name]
        if _is_bool_for_number(param.annotation, value):
            raise _refused(owner, param, value, "a boolean is not a number")
        try:
            out[name] = _adapter(param.annotation).validate_python(value)
        except ValidationError as exc:
            raise _refused(owner, param, value, exc.errors()[0]["msg"]) from None
    return out


def validated_init(init: Callable, owner_of: Callable[[type], str]) -> Callable:
    """Wrap ``__init__`` so that its declared keywords are validated before its body runs;
    ``owner_of(cls)`` names the owner in messages (e.g. ``"method 'mgda'"``)."""
    if getattr(init, "__hparams_validated__", False):
        return init
    signature = inspect.signature(init)

    @functools.wraps(init)
    def checked(self, *args: Any, **kwargs: Any) -> None:
        unknown = {k: v for k, v in kwargs.items() if k not in signature.parameters or k == "self"}
        if unknown:
            validate(owner_of(type(self)), init, unknown)  # raises, listing the accepted names
        bound = signature.bind(self, *args, **kwargs)
        given = {k: v for k, v in bound.arguments.items() if k != "self"}
        bound.arguments.update(validate(owner_of(type(self)), init, given))
        init(*bound.args, **bound.kwargs)

    checked.__hparams_validated__ = True  # type: ignore[attr-defined]
    return checked


def parse_cli_value(owner: str, cls: type, name: str, text: str) -> Any:
    """Turn the string of a ``key=value`` command-line assignment into the declared type's
    input: ``none``/``null`` for an optional value, comma-separated or JSON lists for sequences,
    JSON objects for mappings, ``true``/``false`` for booleans. The result still goes through
    :func:`validate` (which gives the message when it does not fit)."""
    params = declared(cls)
    if name not in params:
        accepted = ", ".join(params) or "none"
        raise HyperparameterError(f"{owner} has no hyper-parameter {name!r}; it accepts: {accepted}")
    annotation = params[name].annotation
    text = text.strip()
    if text.lower() in ("none", "null") and _allows_none(annotation):
        return None
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise _refused(owner, params[name], text, f"not valid JSON ({exc.msg})") from None
    if "," in text and _allows_sequence(annotation):
        return [part.strip() for part in text.split(",")]
    if _allows_sequence(annotation) and not _allows_scalar(annotation):
        return [text]
    if _is_type(annotation, bool) and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return _scalar_from_text(annotation, text)


def describe(cls: type) -> list[tuple[str, str, str]]:
    """``(name, expects, default)`` for every declared hyper-parameter (for ``repmtl methods``)."""
    return [(p.name, p.expects, _show(p.default)) for p in declared(cls).values()]


# ---- helpers --------------------------------------------------------------------------------


def _refused(owner: str, param: HParam, value: Any, why: str) -> HyperparameterError:
    return HyperparameterError(
        f"{owner}: {param.name} expects {param.expects}, got {value!r} ({why})"
    )


def _strip(annotation: Any) -> tuple[Any, list[Any]]:
    """The base type and the constraint metadata of an ``Annotated`` type."""
    if get_origin(annotation) is Annotated:
        base, *meta = get_args(annotation)
        flat = []
        for item in meta:
            flat.extend(getattr(item, "metadata", [item]))
        return base, flat
    return annotation, []


def _members(annotation: Any) -> list[Any]:
    """The alternatives of a union (each keeping its own constraints), else the type itself."""
    base, _ = _strip(annotation)
    if get_origin(base) in (Union, types.UnionType):
        return list(get_args(base))
    return [annotation]


def _allows_none(annotation: Any) -> bool:
    return any(m is type(None) for m in _members(annotation))


def _is_sequence_type(t: Any) -> bool:
    return get_origin(_strip(t)[0]) in (list, tuple, Sequence)


def _is_mapping_type(t: Any) -> bool:
    return get_origin(_strip(t)[0]) in (dict, Mapping)


def _allows_sequence(annotation: Any) -> bool:
    return any(_is_sequence_type(m) for m in _members(annotation))


def _allows_scalar(annotation: Any) -> bool:
    return any(
        not (_is_sequence_type(m) or _is_mapping_type(m)) and m is not type(None) for m in _members(annotation)
    )


def _is_type(annotation: Any, kind: type) -> bool:
    return any(_strip(m)[0] is kind for m in _members(annotation))


def _is_bool_for_number(annotation: Any, value: Any) -> bool:
    if not isinstance(value, bool) or _is_type(annotation, bool):
        return False
    return _is_type(annotation, int) or _is_type(annotation, float)


def _scalar_from_text(annotation: Any, text: str) -> Any:
    """A literal choice or number where the declaration admits one and the text spells it, else
    the text itself (which validation then refuses or accepts as a string)."""
    for member in _members(annotation):
        base, _ = _strip(member)
        if get_origin(base) is Literal:
            for choice in get_args(base):
                if str(choice) == text:
                    return choice
    for kind in (int, float):
        if _is_type(annotation, kind):
            for parse in (int, float) if kind is int else (float,):  # "2.5" for an int: say why
                try:
                    return parse(text)
                except ValueError:
                    continue
    return text


def _expects(annotation: Any) -> str:
    members = [m for m in _members(annotation) if m is not type(None)]
    text = " or ".join(_expects_one(m) for m in members) or "any value"
    return text + (" or none" if _allows_none(annotation) else "")


def _expects_one(annotation: Any) -> str:
    base, meta = _strip(annotation)
    origin = get_origin(base)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in get_args(base))
    if base is bool:
        return "true or false"
    if base is int or base is float:
        noun = "an integer" if base is int else ("a finite number" if _finite(meta) else "a number")
        bounds = _bounds(meta)
        return noun + (f" {bounds}" if bounds else "")
    if base is str:
        return "a string"
    if _is_mapping_type(base):
        key, value = get_args(base)
        return f"a mapping {_expects_one(key)} -> {_expects_one(value)}"
    if origin is tuple:
        items = get_args(base)
        if len(items) == 2 and items[1] is Ellipsis:
            return f"a list of {_plural(items[0])}"
        return f"{len(items)} values ({', '.join(_expects_one(i) for i in items)})"
    if _is_sequence_type(base):
        (item,) = get_args(base) or (Any,)
        return f"a list of {_plural(item)} (comma-separated)"
    return getattr(base, "__name__", str(base))


def _plural(annotation: Any) -> str:
    one = _expects_one(annotation)
    for article in ("an ", "a "):
        if one.startswith(article):
            one = one[len(article):]
            break
    for noun in ("number", "integer", "string"):
        if noun in one:
            return one.replace(noun, noun + "s", 1)
    return one


def _finite(meta: list[Any]) -> bool:
    return any(getattr(m, "allow_inf_nan", True) is False for m in meta)


def _bounds(meta: list[Any]) -> str:
    parts = []
    for m in meta:
        if isinstance(m, at.Gt):
            parts.append(f"> {m.gt}")
        elif isinstance(m, at.Ge):
            parts.append(f"≥ {m.ge}")
        elif isinstance(m, at.Lt):
            parts.append(f"< {m.lt}")
        elif isinstance(m, at.Le):
            parts.append(f"≤ {m.le}")
    return " and ".join(parts)


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(_show(v) for v in value)
    return str(value)
