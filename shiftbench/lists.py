"""The one parser of comma-separated lists (CLI options and string arguments of the API).

``"1,0.5,0"``, ``["1,0.5", "0"]`` (a repeated option) and ``[1, 0.5, 0]`` all mean the same list.
Every option that takes a list (``--magnitudes``, ``--seeds``, ``--sd-lambdas``, ``--shifts``,
...) goes through :func:`split_list` / :func:`parse_numbers`, so they accept the same syntax and
fail with the same kind of one-line message.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from shiftbench.errors import UserInputError

__all__ = ["parse_numbers", "parse_value", "split_list"]


def split_list(values: str | Iterable[Any], *, option: str, example: str = "a,b") -> list[str]:
    """Items of a comma-separated string, or of several such strings, stripped, in order.

    Raises:
        UserInputError: nothing given, or an empty item (``"1,,2"``, a trailing comma).
    """
    chunks = [values] if isinstance(values, str) else list(values)
    items: list[str] = []
    for chunk in chunks:
        text = str(chunk)
        parts = [p.strip() for p in text.split(",")]
        if any(not p for p in parts):
            raise UserInputError(
                f"{option} {text!r} has an empty item; give a comma-separated list, e.g. {example}"
            )
        items += parts
    if not items:
        raise UserInputError(f"{option} is empty; give a comma-separated list, e.g. {example}")
    return items


def parse_numbers(
    values: str | Iterable[Any],
    *,
    option: str,
    integer: bool = False,
    unique: bool = False,
    example: str = "1,0.5,0",
) -> list[Any]:
    """Finite numbers from a comma-separated list (see :func:`split_list`), order kept.

    Args:
        values: ``"1,0.5,0"``, several such strings, or numbers.
        option: the option's name for messages, e.g. ``"--magnitudes"``.
        integer: items must be whole numbers; returns ``int`` (else ``float``).
        unique: a repeated value is an error.
        example: shown in messages.

    Raises:
        UserInputError: an empty list or item, an item that is not a (finite, whole) number, a
            repeated value with ``unique``.
    """
    if isinstance(values, str) or not all(_is_number(v) for v in _as_list(values)):
        items: list[Any] = split_list(values, option=option, example=example)
    else:
        items = _as_list(values)
        if not items:
            raise UserInputError(f"{option} is empty; give a comma-separated list, e.g. {example}")
    out: list[Any] = []
    for item in items:
        out.append(_number(item, option, integer, example))
        if unique and out[-1] in out[:-1]:
            raise UserInputError(f"{option}: {item!r} is given twice; list each value once")
    return out


def _as_list(values: Any) -> list[Any]:
    return [values] if isinstance(values, str) else list(values)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _number(item: Any, option: str, integer: bool, example: str) -> Any:
    kind = "whole numbers" if integer else "numbers"
    try:
        value = float(item)
    except (TypeError, ValueError):
        raise UserInputError(
            f"{option}: {item!r} is not a number; give comma-separated {kind}, e.g. {example}"
        ) from None
    if not math.isfinite(value):
        raise UserInputError(f"{option}: {item!r} is not a finite number")
    if integer:
        if value != int(value):
            raise UserInputError(f"{option}: {item!r} is not a whole number; e.g. {example}")
        return int(value)
    return value


def parse_value(text: str, *, option: str) -> Any:
    """A parameter value typed on the command line (``--param``), converted the one way.

    ``"3"`` → 3, ``"0.5"`` → 0.5, ``"true"``/``"false"`` → bool, ``"none"`` → None,
    ``"0,255,0"`` → ``(0, 255, 0)`` (items converted the same way); anything else stays a string.

    Raises:
        UserInputError: an empty item in a comma list (``"0,,255"``).
    """
    if "," in text:
        return tuple(_scalar(v) for v in split_list(text, option=option, example="255,0,0"))
    return _scalar(text)


def _scalar(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
