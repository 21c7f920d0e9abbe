"""The evaluation sets of a study: which set (``dataset`` key) each sample id belongs to.

A run directory records its sets in ``samples.parquet`` (``run --data NAME=PATH …``; read with
:func:`shiftbench.run.rundir.read_sample_datasets`). Several run directories of one study must
agree on the set of every sample id they share. Runs that do not record sets (format 1, and
format 2 written before the ``dataset`` column existed) hold one set named after their data path;
that name is only a default, so their samples take the set another run of the study records for
the same id. When no run records sets, the study has one set, named by the first run: such
studies behave exactly as before sets existed, whatever their data folders are called. Recorded
names are facts, never merged: runs that put the same sample ids in different recorded sets
(``run A --data internal=X``, ``run B --data external=Y``) are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shiftbench.errors import DataError, UserInputError
from shiftbench.run import rundir


@dataclass
class StudySets:
    """Codes of the evaluation sets of a study's sample ids.

    Attributes:
        names: every set name a run contributes (codes index into it; not the study order).
        lookup: ``int32 [max id + 1]``: code of each sample id recorded by a run, −1 elsewhere.
        default: run → code of its samples that no run records (its own single set).
    """

    names: list[str]
    lookup: np.ndarray
    default: dict[str, int]

    def codes(self, run: str, sample_ids: np.ndarray) -> np.ndarray:
        """``int64 [n]``: the set code of each of ``sample_ids`` (rows of ``run``)."""
        sample_ids = np.asarray(sample_ids, dtype=np.int64)
        out = np.full(sample_ids.shape, self.default[run], dtype=np.int64)
        inside = (sample_ids >= 0) & (sample_ids < self.lookup.size)
        recorded = self.lookup[sample_ids[inside]]
        out[inside] = np.where(recorded >= 0, recorded, out[inside])
        return out

    def order(self, samples: Sequence[pd.DataFrame]) -> list[str]:
        """The sets present in ``samples`` (per run: sample_id, dataset), first-seen order.

        Within a run the sets occupy ascending sample-id ranges in the order given to ``run``.
        """
        names: dict[str, None] = {}
        for frame in samples:
            first = frame.groupby("dataset", sort=False)["sample_id"].min().sort_values()
            names.update(dict.fromkeys(map(str, first.index)))
        return list(names) or self.names[:1]


def study_sets(sources: Sequence[Any]) -> StudySets:
    """The sets of the runs of a study (``sources``: :class:`~shiftbench.report.study.Source`).

    Raises:
        UserInputError: two runs put one sample id in different sets.
    """
    per_run = [(src.run, *_run_sets(src)) for src in sources]
    recorded = [(run, names) for run, names, (ids, _) in per_run if ids.size]
    single = _single_set(per_run[0][1][0], recorded)
    if single is not None:
        return StudySets([single], np.empty(0, np.int32), {r: 0 for r, _, _ in per_run})
    names: list[str] = []
    size = max((int(ids.max()) + 1 for _, _, (ids, _) in per_run if ids.size), default=0)
    lookup = np.full(size, -1, dtype=np.int32)
    owner = np.full(size, -1, dtype=np.int32)  # which run recorded each id (for messages)
    default: dict[str, int] = {}
    for k, (run, run_names, (ids, codes)) in enumerate(per_run):
        local = np.array([_code(names, n) for n in run_names], dtype=np.int32)
        default[run] = int(local[0])
        if not ids.size:
            continue
        new = local[codes]
        seen = lookup[ids]
        clash = np.flatnonzero((seen >= 0) & (seen != new))
        if clash.size:
            i = clash[0]
            other, other_names = per_run[owner[ids[i]]][:2]
            if len(other_names) == 1 and len(run_names) == 1:
                raise UserInputError(
                    f"runs {other} (set {other_names[0]!r}) and {run} (set {run_names[0]!r}) "
                    "cover the same sample ids with different evaluation sets; evaluate them in "
                    f"one run with --data {other_names[0]}=… --data {run_names[0]}=…"
                )
            raise UserInputError(
                f"sample {ids[i]} is in set {names[seen[i]]!r} in {other} but in set "
                f"{names[new[i]]!r} in {run}; combine only runs evaluated on the same sets, "
                "given to `run --data` in the same order"
            )
        lookup[ids] = new
        owner[ids] = np.where(owner[ids] >= 0, owner[ids], k)
    return StudySets(names, lookup, default)


def _single_set(first: str, recorded: list[tuple[str, list[str]]]) -> str | None:
    """The study's one set, if it has one: else None (sets resolved per sample id).

    ``first``: the (default) set name of the first run; ``recorded``: ``(run, set names)`` of
    the runs whose samples.parquet records sets. With no run recording sets the study has one
    set named by the first run (as before sets existed); when every recording run records the
    same single set, that set, which the runs without records adopt. Recorded names are never
    merged: runs recording different sets are resolved (and checked) per sample id.
    """
    if not recorded:
        return first
    names = {tuple(n) for _, n in recorded}
    if len(names) == 1 and len(recorded[0][1]) == 1:
        return recorded[0][1][0]
    return None


def _code(names: list[str], name: str) -> int:
    if name not in names:
        names.append(name)
    return names.index(name)


def _run_sets(source: Any) -> tuple[list[str], tuple[np.ndarray, np.ndarray]]:
    """A run's set names and, if it records sets, ``(sample ids, code of each)``."""
    import pyarrow.parquet as pq

    none = (np.empty(0, np.int64), np.empty(0, np.int64))
    run_dir = Path(source.run_dir)
    try:
        sets = rundir.read_sample_datasets(run_dir)
    except (DataError, OSError, KeyError):  # a bare predictions file, a hand-written manifest
        return ["data"], none
    samples = run_dir / rundir.SAMPLES
    if source.format != rundir.FORMAT_V2 or rundir.DATASET not in pq.read_schema(samples).names:
        return sets.names[:1] or ["data"], none
    ids = pq.read_table(samples, columns=["sample_id"])["sample_id"].to_numpy().astype(np.int64)
    if not ids.size:
        return sets.names[:1] or ["data"], none
    return sets.names, (ids, sets.codes[ids].astype(np.int64))
