"""Reading one cell (shift × magnitude) of a study: the only place that reads prediction rows.

A cell is read with a projection (checkpoint, sample_id, label, pred, prob_*) and a filter on
shift and magnitude, so a format-2 run directory reads one shift's files and, in them, the row
group of that magnitude only. Memory is that of one cell: checkpoints × samples.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from shiftbench.errors import DataError, UserInputError
from shiftbench.report.align import Aligned
from shiftbench.report.study import Study


@dataclass
class Cell:
    """The predictions of every checkpoint of an aligned study on one shift × magnitude."""

    shift: str
    magnitude: float
    ids: np.ndarray  # [n] sorted sample ids
    columns: np.ndarray  # [n] positions of ids in the aligned universe of ids
    labels: np.ndarray  # [n] int64
    preds: np.ndarray  # [K, n] int64
    probs: np.ndarray  # [K, n, C] float64


def read_cell(study: Study, aligned: Aligned, shift: str, magnitude: float) -> Cell:
    """The cell's rows of every run, checked: same sample ids for every checkpoint, no duplicate.

    Raises:
        UserInputError: checkpoints with different sample ids, or a sample twice.
        DataError: unreadable file, NaN or infinite probabilities.
    """
    columns = ["checkpoint", "sample_id", "label", "pred", *study.prob_columns]
    where = (pads.field("shift") == shift) & (pads.field("magnitude") == magnitude)
    frames = []
    for source in study.sources:
        try:
            table = source.dataset.to_table(columns=columns, filter=where)
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"cannot read the predictions of {source.run}: {e}") from e
        df = table.to_pandas()
        df["checkpoint"] = df["checkpoint"].astype(str).map(source.rename)
        frames.append(df)
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    ck_index = {ck: i for i, ck in enumerate(aligned.checkpoints)}
    df["_k"] = df["checkpoint"].map(ck_index)
    df = df[df["_k"].notna()].sort_values(["_k", "sample_id"], kind="stable")
    k_count = len(aligned.checkpoints)
    n = aligned.cells[(shift, magnitude)].n
    if len(df) != k_count * n:
        raise DataError(
            f"{shift} {magnitude:g}: expected {k_count} × {n} rows, read {len(df)}; "
            "was a run directory modified while reporting?"
        )
    ids = df["sample_id"].to_numpy(np.int64).reshape(k_count, n)
    _check_ids(ids, aligned, shift, magnitude)
    probs = df[study.prob_columns].to_numpy(dtype=np.float64).reshape(k_count, n, -1)
    if not np.isfinite(probs).all():
        raise DataError(
            f"predictions at {shift} {magnitude:g} contain NaN or infinite probabilities"
        )
    return Cell(
        shift=shift,
        magnitude=magnitude,
        ids=ids[0],
        columns=np.searchsorted(aligned.universe, ids[0]),
        labels=df["label"].to_numpy(np.int64)[:n],
        preds=df["pred"].to_numpy(np.int64).reshape(k_count, n),
        probs=probs,
    )


def _check_ids(ids: np.ndarray, aligned: Aligned, shift: str, magnitude: float) -> None:
    cks, runs_of = aligned.checkpoints, aligned.runs_of
    dup = np.flatnonzero((ids[:, 1:] == ids[:, :-1]).any(axis=1))
    if dup.size:
        k = int(dup[0])
        sid = ids[k][1:][ids[k][1:] == ids[k][:-1]][0]
        raise UserInputError(
            f"sample {sid} appears twice for checkpoint {cks[k]!r} at {shift} {magnitude:g}; "
            "two runs with the same directory name? rename one run directory"
        )
    bad = np.flatnonzero((ids != ids[0]).any(axis=1))
    if bad.size:
        k = int(bad[0])
        raise UserInputError(
            f"test sets differ at {shift} {magnitude:g}: checkpoint {cks[k]!r} "
            f"({runs_of[cks[k]]}) has other sample ids than {cks[0]!r} "
            f"({runs_of[cks[0]]}); combine only runs evaluated on the same data set"
        )


def iter_cells(study: Study, aligned: Aligned) -> Iterator[Cell]:
    """Every cell of the aligned study, one at a time, in (shift, magnitude) order."""
    for shift, magnitude in aligned.cells:
        if shift in aligned.shifts:
            yield read_cell(study, aligned, shift, magnitude)
