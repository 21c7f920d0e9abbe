"""Option types and parsers shared by CLI commands (``--magnitudes``, ``--plugin``)."""

from __future__ import annotations

import math
from typing import Annotated

import typer

from shiftbench.errors import UserInputError

__all__ = ["MagnitudesOption", "PluginOption", "parse_magnitudes"]

PluginOption = Annotated[
    list[str] | None,
    typer.Option(
        "--plugin",
        metavar="MODULE",
        help="Import MODULE first so the shifts it defines register (repeatable).",
    ),
]

MagnitudesOption = Annotated[
    str | None,
    typer.Option(
        "--magnitudes",
        metavar="LIST",
        help="Comma-separated magnitudes, e.g. 1,0.5,0 (default: the shift's default sweep).",
    ),
]


def parse_magnitudes(text: str) -> list[float]:
    """Parse ``"1,0.5,0"`` into ``[1.0, 0.5, 0.0]`` (order kept).

    Whether each value is valid for a given shift is checked by the shift itself
    (:meth:`shiftbench.shifts.base.Shift.check_magnitude`).

    Raises:
        UserInputError: empty list or item, a value that is not a finite number, or a repeated
            value.
    """
    items = [s.strip() for s in str(text).split(",")]
    if not text or not text.strip() or any(not s for s in items):
        raise UserInputError(
            f"--magnitudes {text!r} has an empty item; give comma-separated numbers, e.g. 1,0.5,0"
        )
    values: list[float] = []
    for s in items:
        try:
            v = float(s)
        except ValueError:
            raise UserInputError(
                f"--magnitudes: {s!r} is not a number; give comma-separated numbers, e.g. 1,0.5,0"
            ) from None
        if not math.isfinite(v):
            raise UserInputError(f"--magnitudes: {s!r} is not a finite number")
        if v in values:
            raise UserInputError(f"--magnitudes: {s!r} is given twice; list each magnitude once")
        values.append(v)
    return values
