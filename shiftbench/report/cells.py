"""Reading one cell (shift × magnitude) of a study: the only place that reads prediction rows.

A cell is read with a projection (checkpoint, sample_id, label, pred, prob_*) and a filter on
shift and magnitude, so a format-2 run directory reads one shift's files and, in them, the row
group of that magnitude only. Memory is that of one cell: checkpoints × samples.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
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
    tables = _read_tables(study, aligned, shift, magnitude)
    k = np.concatenate([t[0] for t in tables])
    keep = k >= 0
    ids_all = np.concatenate([_column(t, "sample_id", np.int64) for _, t in tables])[keep]
    order = np.lexsort((ids_all, k[keep]))  # by checkpoint, then sample id
    k_count = len(aligned.checkpoints)
    n = aligned.cells[(shift, magnitude)].n
    if order.size != k_count * n:
        raise DataError(
            f"{shift} {magnitude:g}: expected {k_count} × {n} rows, read {order.size}; "
            "was a run directory modified while reporting?"
        )

    def gathered(name: str, dtype: type) -> np.ndarray:
        return np.concatenate([_column(t, name, dtype) for _, t in tables])[keep][order]

    ids = ids_all[order].reshape(k_count, n)
    _check_ids(ids, aligned, shift, magnitude)
    probs = np.stack([gathered(c, np.float64) for c in study.prob_columns], axis=-1)
    probs = probs.reshape(k_count, n, -1)
    if not np.isfinite(probs).all():
        raise DataError(
            f"predictions at {shift} {magnitude:g} contain NaN or infinite probabilities"
        )
    return Cell(
        shift=shift,
        magnitude=magnitude,
        ids=ids[0],
        columns=np.searchsorted(aligned.universe, ids[0]),
        labels=gathered("label", np.int64)[:n],
        preds=gathered("pred", np.int64).reshape(k_count, n),
        probs=probs,
    )


def _read_tables(
    study: Study, aligned: Aligned, shift: str, magnitude: float
) -> list[tuple[np.ndarray, pa.Table]]:
    """Per run: the cell's rows and each row's checkpoint position in ``aligned`` (−1: none).

    Raises:
        DataError: unreadable file.
    """
    columns = ["checkpoint", "sample_id", "label", "pred", *study.prob_columns]
    where = (pads.field("shift") == shift) & (pads.field("magnitude") == magnitude)
    if study.sample_ids is not None:  # one evaluation set of several
        where = where & sample_filter(study.sample_ids)
    ck_index = {ck: i for i, ck in enumerate(aligned.checkpoints)}
    tables = []
    for source in study.sources:
        try:
            table = source.dataset.to_table(columns=columns, filter=where)
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"cannot read the predictions of {source.run}: {e}") from e
        k = _checkpoint_positions(table["checkpoint"], source.rename, ck_index)
        tables.append((k, table))
    return tables


def sample_filter(ids: np.ndarray) -> pads.Expression:
    """Rows whose ``sample_id`` is in ``ids`` (sorted): a range test when they are contiguous.

    The sets of a run occupy contiguous sample-id ranges, so a set is usually a range (which
    parquet statistics can prune); otherwise a membership test.
    """
    sid = pads.field("sample_id")
    if ids.size and int(ids[-1]) - int(ids[0]) + 1 == ids.size:
        return (sid >= int(ids[0])) & (sid <= int(ids[-1]))
    return sid.cast(pa.int64()).isin(pa.array(ids, pa.int64()))


def _column(table: pa.Table, name: str, dtype: type) -> np.ndarray:
    return table[name].to_numpy().astype(dtype, copy=False)


def _checkpoint_positions(
    column: pa.ChunkedArray, rename: dict[str, str], ck_index: dict[str, int]
) -> np.ndarray:
    """Row → position of its checkpoint in the aligned order (−1: not aligned)."""
    parts = [np.empty(0, dtype=np.int64)]
    for chunk in column.chunks:
        if not pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_encode()
        names = chunk.dictionary.to_pylist()
        lookup = np.array([ck_index.get(rename.get(str(c), str(c)), -1) for c in names] + [-1])
        codes = chunk.indices.fill_null(len(names)).to_numpy(zero_copy_only=False)
        parts.append(lookup[codes.astype(np.int64)])
    return np.concatenate(parts)


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
