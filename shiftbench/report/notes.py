"""Warnings a report's reader must see: raised as :class:`ReportWarning` and kept as footnotes."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any


class ReportWarning(UserWarning):
    """Something the reader of a report must know (e.g. SD undefined for a single seed)."""


def warn(notes: list[str], message: str) -> None:
    """Append ``message`` to the footnotes and raise it as a :class:`ReportWarning`."""
    notes.append(message)
    warnings.warn(message, ReportWarning, stacklevel=3)


@contextlib.contextmanager
def distinct_warnings() -> Iterator[None]:
    """Re-emit each distinct warning of the block once, at its own location, after the block.

    For reports that repeat one computation per evaluation set: a fact true of every set (a
    method with a single seed) is said once. Which warnings are raised at all is still up to the
    caller's filters; only exact repeats (same category and text) are dropped.
    """
    with warnings.catch_warnings(record=True) as caught:
        yield
    seen: set[tuple[type[Warning], str]] = set()
    for w in caught:
        key = (w.category, str(w.message))
        if key not in seen:
            seen.add(key)
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


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
