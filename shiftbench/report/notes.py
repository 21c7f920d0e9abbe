"""Warnings a report's reader must see: raised as :class:`ReportWarning` and kept as footnotes."""

from __future__ import annotations

import warnings
from typing import Any


class ReportWarning(UserWarning):
    """Something the reader of a report must know (e.g. SD undefined for a single seed)."""


def warn(notes: list[str], message: str) -> None:
    """Append ``message`` to the footnotes and raise it as a :class:`ReportWarning`."""
    notes.append(message)
    warnings.warn(message, ReportWarning, stacklevel=3)


def single_seed_notes(aligned: Any, notes: list[str]) -> None:
    """Warn about groups with one checkpoint (their SD over seeds is undefined)."""
    single = [g for g in aligned.group_names if aligned.n_seeds(g) == 1]
    if single:
        names = ", ".join(repr(g) for g in single)
        warn(
            notes,
            f"{aligned.by} {names} {'has' if len(single) == 1 else 'have'} a single seed "
            "(checkpoint): SD over seeds is undefined (shown as n/a); the mean is still reported",
        )
