"""Options shared by the CLI commands: one spelling, one metavar style, one list parser.

Conventions (every command follows them):

* names: ``--image-size`` (never ``--input-size``), ``--progress/--no-progress``, ``--plugin``;
* metavars in capitals: ``FILE`` (a file), ``DIR`` (a folder), ``PATH`` (either), ``N`` (a count),
  ``NAME``, ``LIST`` (comma-separated), ``SPEC`` (``name=value`` forms);
* lists are comma-separated or repeated (``--seeds 0,1,2`` = ``--seeds 0,1 --seeds 2``), parsed
  by :mod:`shiftbench.lists`;
* per-shift settings: ``--magnitudes blur=1,5,9 --magnitudes eosin=1,0.5,0`` (a bare list applies
  to every shift without its own list) and ``--param sharpen.mode=kernel``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from shiftbench.errors import UserInputError
from shiftbench.lists import parse_numbers, parse_value, split_list

__all__ = [
    "DeviceOption",
    "MagnitudeSpec",
    "MagnitudesOption",
    "NormalizeOption",
    "NormalizeTargetOption",
    "ParamOption",
    "PluginOption",
    "ProgressOption",
    "configured_shifts",
    "parse_magnitude_options",
    "parse_magnitudes",
    "parse_param_options",
    "shift_names",
]

PluginOption = Annotated[
    list[str] | None,
    typer.Option(
        "--plugin",
        metavar="MODULE",
        help="Import MODULE first so the shifts it defines register (repeatable).",
    ),
]

MagnitudesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--magnitudes",
        metavar="[SHIFT=]LIST",
        help="Magnitudes, e.g. 1,0.5,0 for every shift, or blur=1,5,9 for one shift "
        "(repeatable; default: each shift's own sweep).",
    ),
]

ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        metavar="SHIFT.KEY=VALUE",
        help="A shift parameter, e.g. sharpen.mode=kernel or cutout.fill=255,0,0 (repeatable).",
    ),
]

ProgressOption = Annotated[
    bool, typer.Option("--progress/--no-progress", help="Show progress bars on stderr.")
]

NormalizeOption = Annotated[
    str,
    typer.Option(
        "--normalize",
        metavar="METHOD",
        help="Stain normalisation of every image after the shift, before the model: none or "
        "macenko (needs --normalize-target).",
    ),
]

NormalizeTargetOption = Annotated[
    Path | None,
    typer.Option(
        "--normalize-target",
        metavar="FILE",
        help="H&E image whose stains --normalize maps every image to.",
    ),
]

DeviceOption = Annotated[
    str, typer.Option("--device", metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps.")
]


def parse_magnitudes(text: str | Sequence[str]) -> list[float]:
    """``"1,0.5,0"`` → ``[1.0, 0.5, 0.0]`` (order kept; each value once).

    Whether a value is valid for a given shift is checked by the shift itself
    (:meth:`shiftbench.shifts.base.Shift.check_magnitude`).
    """
    return parse_numbers(text, option="--magnitudes", unique=True)


@dataclass
class MagnitudeSpec:
    """Parsed ``--magnitudes`` options: a list for every shift and/or lists for single shifts."""

    common: list[float] | None = None
    per_shift: dict[str, list[float]] = field(default_factory=dict)

    def for_shift(self, name: str) -> list[float] | None:
        """The magnitudes for shift ``name`` (``None``: its default sweep)."""
        return self.per_shift.get(name, self.common)


def parse_magnitude_options(values: Sequence[str] | None) -> MagnitudeSpec:
    """``["blur=1,5,9", "eosin=1,0.5,0"]``, ``["1,2"]`` or a mix → :class:`MagnitudeSpec`.

    Raises:
        UserInputError: two bare lists, a shift given twice, a bad list.
    """
    spec = MagnitudeSpec()
    for value in values or []:
        name, sep, rest = str(value).partition("=")
        if not sep:
            if spec.common is not None:
                raise UserInputError(
                    f"--magnitudes {value!r}: a list for every shift is already given "
                    f"({','.join(format(m, 'g') for m in spec.common)}); name the shift, e.g. "
                    "--magnitudes blur=1,5,9"
                )
            spec.common = parse_magnitudes(value)
            continue
        name = name.strip()
        if not name:
            raise UserInputError(
                f"--magnitudes {value!r}: name the shift before '=', e.g. blur=1,5"
            )
        if name in spec.per_shift:
            raise UserInputError(f"--magnitudes: shift {name!r} is given twice; give it once")
        spec.per_shift[name] = parse_magnitudes(rest)
    return spec


def parse_param_options(values: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``["sharpen.mode=kernel", "cutout.fill=255,0,0"]`` → ``{shift: {key: value}}``.

    Values: ``true``/``false``, ``none``, integers, numbers, comma-separated lists of these, and
    otherwise text.

    Raises:
        UserInputError: an item not of the form ``SHIFT.KEY=VALUE``, or a key given twice.
    """
    out: dict[str, dict[str, Any]] = {}
    for value in values or []:
        target, sep, raw = str(value).partition("=")
        shift, dot, key = target.strip().partition(".")
        if not sep or not dot or not shift or not key.strip():
            raise UserInputError(
                f"--param {value!r} must look like SHIFT.KEY=VALUE, e.g. sharpen.mode=kernel"
            )
        key = key.strip()
        params = out.setdefault(shift, {})
        if key in params:
            raise UserInputError(f"--param {shift}.{key} is given twice; give it once")
        params[key] = parse_value(raw.strip(), option="--param")
    return out


def shift_names(values: Sequence[str]) -> list[str]:
    """``--shift`` values (repeated and/or comma-separated; ``all``) → registered names, in order."""
    from shiftbench.registry import list_shifts

    names: list[str] = []
    for item in split_list(values, option="--shift", example="blur,eosin or all"):
        for name in list_shifts() if item == "all" else [item]:
            if name not in names:
                names.append(name)
    return names


def configured_shifts(
    names: Sequence[str], magnitudes: MagnitudeSpec, params: dict[str, dict[str, Any]]
) -> list[Any]:
    """Shift instances with their ``--param`` parameters and per-shift ``--magnitudes``.

    A shift's own magnitudes are set on the instance (``shift.magnitudes``), which is the sweep
    :func:`shiftbench.run` and :func:`shiftbench.preview.preview` use when given no magnitudes.

    Raises:
        UserInputError: unknown shift, a setting for a shift that is not selected, a bad
            parameter or magnitude.
    """
    from shiftbench.registry import get_shift

    for option, named in (("--magnitudes", magnitudes.per_shift), ("--param", params)):
        stray = [n for n in named if n not in names]
        if stray:
            raise UserInputError(
                f"{option} names {stray[0]!r}, which is not among the shifts ({', '.join(names)})"
            )
    shifts = []
    for name in names:
        shift = get_shift(name, **params.get(name, {}))
        mags = magnitudes.for_shift(name)
        if mags is not None:
            # A per-instance sweep (the class keeps its default).
            shift.magnitudes = tuple(shift.check_magnitude(m) for m in mags)  # type: ignore[misc]
        shifts.append(shift)
    return shifts
