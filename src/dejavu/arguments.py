"""Arguments checked against their type hints at the door, so a value of the wrong type (a learning
rate given as the string ``"0.01"``, ``max_depth: far``) is named where it is given, not met as a
library's ``TypeError`` steps later."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Union

__all__ = ["ArgumentTypeError", "check_types", "matches"]


class ArgumentTypeError(TypeError):
    """An argument of the wrong type, named: a user's mistake (the command line prints it short)."""


def matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the type hint ``hint`` (``int | None``, ``list[str]``, ``Literal["a"]``...).
    An int fits ``float``; a bool fits neither ``int`` nor ``float``; what cannot be checked fits.

    Example:
        >>> matches(0.5, float | None), matches("0.5", float), matches(True, int), matches([1, 2], list[int])
        (True, False, False, True)
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or isinstance(hint, (str, typing.TypeVar)):
        return True
    if hint is None or hint is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if origin is Literal:
        return value in args
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple, Sequence) or hint in (list, tuple, Sequence):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args, strict=True))
        return not args or all(matches(v, args[0]) for v in value)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return isinstance(value, Mapping)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def check_types(owner: str, fn: Callable[..., Any], values: Mapping[str, Any]) -> None:
    """Raise an :class:`ArgumentTypeError` naming ``owner.argument`` for the first of ``values`` that does not fit
    ``fn``'s type hint for it (arguments without a hint, or unknown to ``fn``, pass).

    Example:
        >>> def step(lr: float, name: str | None = None): ...
        >>> check_types("model", step, {"lr": "0.01"})
        Traceback (most recent call last):
        ...
        dejavu.arguments.ArgumentTypeError: model.lr must be float, got str '0.01'
    """
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError):  # a hint that names what this module cannot see: nothing to check
        return
    parameters = inspect.signature(fn).parameters
    for name, value in values.items():
        hint = hints.get(name)
        if name in parameters and hint is not None and not matches(value, hint):
            raise ArgumentTypeError(f"{owner}.{name} must be {_spelled(hint)}, got {type(value).__name__} {value!r}")


def _spelled(hint: Any) -> str:
    return getattr(hint, "__name__", None) if isinstance(hint, type) else str(hint).replace("NoneType", "None")
