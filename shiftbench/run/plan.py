"""What a run covers: the shifts with their magnitudes, and the cells to evaluate.

A *cell* is checkpoint (by SHA-256) × shift × magnitude. The identity magnitude of every shift is
one shared *clean* cell per checkpoint (shift key ``""``, magnitude 0), evaluated once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from shiftbench.errors import UserInputError
from shiftbench.registry import get_shift, list_shifts
from shiftbench.shifts.base import Shift

CLEAN = ""  # shift key of the clean (identity) cell in part files
Cell = tuple[str, str, float]  # (checkpoint sha256, shift key, magnitude); clean: (sha, "", 0.0)


@dataclass
class ShiftPlan:
    """One shift of a run and the magnitudes it is evaluated at (in sweep order)."""

    shift: Shift
    key: str  # name, plus parameters when not the defaults
    magnitudes: list[float]

    @property
    def name(self) -> str:
        return self.shift.name

    @property
    def has_identity(self) -> bool:
        return self.shift.identity in self.magnitudes

    @property
    def non_identity(self) -> list[float]:
        return [m for m in self.magnitudes if m != self.shift.identity]

    def describe(self) -> dict:
        """The manifest entry of this shift (what readers use instead of the registry)."""
        return {
            "name": self.name,
            "params": self.shift.params(),
            "magnitudes": self.magnitudes,
            "identity": self.shift.identity,
            "units": self.shift.units,
            "stochastic": self.shift.stochastic,
        }


def plan_shifts(
    shifts: Sequence[str | Shift] | str, magnitudes: Sequence[float] | None
) -> list[ShiftPlan]:
    """Shift names/instances (``"all"``, comma-separated strings) → one plan per shift."""
    items: list[str | Shift] = []
    for s in [shifts] if isinstance(shifts, str | Shift) else list(shifts):
        if isinstance(s, str):
            items += [p.strip() for p in s.split(",") if p.strip()]
        else:
            items.append(s)
    if not items:
        raise UserInputError(f"no shift given; valid shifts: {', '.join(list_shifts())}, all")
    expanded: list[str | Shift] = []
    for s in items:
        if isinstance(s, str) and s == "all":
            expanded += list_shifts()
        else:
            expanded.append(s)
    plans: list[ShiftPlan] = []
    seen: dict[str, str] = {}
    for s in expanded:
        shift = get_shift(s) if isinstance(s, str) else s
        if not isinstance(shift, Shift):
            raise UserInputError(f"not a shift: {s!r}")
        key = shift_key(shift)
        if shift.name in seen:
            if seen[shift.name] == key:
                continue  # listed twice (e.g. "blur" and "all")
            raise UserInputError(f"shift {shift.name!r} given twice with different parameters")
        seen[shift.name] = key
        if magnitudes is None:
            mags = [float(m) for m in shift.magnitudes]
        else:
            mags = [shift.check_magnitude(m) for m in magnitudes]
        if not mags:
            raise UserInputError("--magnitudes is empty")
        plans.append(ShiftPlan(shift, key, list(dict.fromkeys(mags))))
    return plans


def shift_key(shift: Shift) -> str:
    """The shift's name, plus its parameters as JSON when they are not the defaults."""
    params = shift.params()
    default = type(shift)().params() if _constructible(type(shift)) else None
    if not params or params == default:
        return shift.name
    return f"{shift.name}{json.dumps(params, sort_keys=True, default=str)}"


def _constructible(cls: type) -> bool:
    try:
        cls()
        return True
    except Exception:
        return False


def requested_cells(shas: Sequence[str], plans: list[ShiftPlan]) -> list[Cell]:
    """Every cell of the run: per checkpoint the clean cell (if any shift sweeps its identity),
    then each shift's other magnitudes."""
    cells: list[Cell] = []
    clean = any(p.has_identity for p in plans)
    for sha in shas:
        if clean:
            cells.append((sha, CLEAN, 0.0))
        for p in plans:
            cells += [(sha, p.key, mag) for mag in p.non_identity]
    return cells


def pending(
    grid: list[list[int]], done: dict[int, set[Cell]], cells: list[Cell]
) -> list[tuple[int, set[Cell]]]:
    """(batch, cells still missing) for every batch with something left to compute."""
    todo = []
    for b in range(len(grid)):
        need = {c for c in cells if c not in done.get(b, ())}
        if need:
            todo.append((b, need))
    return todo
