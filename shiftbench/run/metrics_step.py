"""metrics.csv from the stored predictions, one cell at a time.

:func:`compute_run_metrics` reads one predictions file (one shift × one checkpoint) at a time,
only the columns the metrics need, and calls :func:`shiftbench.metrics.cell_metrics` on each
magnitude × evaluation set (× group). The key columns ``dataset`` (the set, from
samples.parquet; one set named after the data for older runs) and ``normalize`` (the
checkpoint's stain normalisation, from checkpoints.parquet; ``"none"`` when absent) are always
present. Every cell uses the same bootstrap seed, so cells of equal size share their
resamples (common random numbers), exactly as when the whole table was in memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from shiftbench.errors import UserInputError
from shiftbench.run.rundir import (
    CHECKPOINTS,
    DATASET,
    FORMAT_V1,
    NORMALIZE,
    SAMPLES,
    SampleDatasets,
    checkpoint_file,
    open_predictions,
    prob_column,
    read_manifest,
    read_sample_datasets,
    sample_extra_columns,
)


def compute_run_metrics(
    run_dir: str | os.PathLike[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    group_by: str | None = None,
) -> pd.DataFrame:
    """Metrics of every checkpoint × shift × magnitude (× group) of a finished run directory.

    Args:
        run_dir: a run directory (format 2, or format 1).
        n_boot: bootstrap resamples per cell (0: no confidence intervals).
        seed: bootstrap seed (the run's seed reproduces its metrics.csv).
        group_by: a data column (``samples.parquet``); one row per value, missing values last.

    Returns:
        The metrics.csv table: ``checkpoint, shift, magnitude, dataset, normalize[, group_by],
        n``, each metric with ``_ci_low``/``_ci_high``, then the checkpoints' meta keys; rows in
        run order (checkpoint, shift, magnitude in sweep order), then the sets in the given
        order, then the groups.

    Raises:
        DataError: not a finished run directory. UserInputError: ``group_by`` is not a column.
    """
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    checkpoints = [(c["name"], dict(c.get("meta") or {})) for c in manifest["checkpoints"]]
    groups = _groups(run_dir, manifest, group_by) if group_by else None
    results, order = _evaluate_cells(run_dir, manifest, groups, _SharedWeights(n_boot, seed))
    rows = _rows(
        manifest["shifts"],
        checkpoints,
        _normalize(run_dir, manifest, [name for name, _ in checkpoints]),
        group_by,
        results,
        order,
    )
    return _frame(rows, group_by, _meta_keys(checkpoints))


#: ``(checkpoint index, cell key) -> metrics``; a clean cell's key is shared by all shifts.
_Results = dict[tuple, dict[str, float]]
#: ``(checkpoint index, shift) -> [(magnitude, set, group value, cell key), …]`` in row order.
_Order = dict[tuple[int, str], list[tuple[Any, str, Any, tuple]]]


def _evaluate_cells(
    run_dir: Path, manifest: dict[str, Any], groups: pd.Series | None, shared: _SharedWeights
) -> tuple[_Results, _Order]:
    """The metrics of every cell, one shift's predictions at a time, and the cells' row order.

    A clean (identity-magnitude) cell is evaluated once per checkpoint × set × group and
    shared by every shift.
    """
    class_names = [str(c) for c in manifest["class_names"]]
    columns = ["magnitude", "sample_id", "label", *(prob_column(c) for c in class_names)]
    names = [c["name"] for c in manifest["checkpoints"]]
    read = _reader(run_dir, manifest)
    sets = read_sample_datasets(run_dir)
    results: _Results = {}
    order: _Order = {}
    for shift in manifest["shifts"]:
        frames = [read(ci, name, shift["name"], columns) for ci, name in enumerate(names)]
        for mag in shift["magnitudes"]:
            is_clean = mag == shift["identity"]
            pending: list[tuple[tuple, np.ndarray, np.ndarray]] = []
            for ci, frame in enumerate(frames):
                cells = order.setdefault((ci, shift["name"]), [])
                for dset, value, labels, probs in _cells(
                    frame, mag, sets, groups, len(class_names)
                ):
                    key = ("clean", dset, value) if is_clean else (shift["name"], mag, dset, value)
                    cells.append((mag, dset, value, key))
                    if (ci, key) not in results:
                        results[ci, key] = {}  # claimed; filled below
                        pending.append(((ci, key), labels, probs))
            results.update(shared.evaluate(pending))
        del frames
    return results, order


def _rows(
    shifts: list[dict[str, Any]],
    checkpoints: list[tuple[str, dict[str, Any]]],
    normalize: list[str],
    group_by: str | None,
    results: _Results,
    order: _Order,
) -> list[dict[str, Any]]:
    """The rows of metrics.csv: keys, metrics, meta; checkpoint, shift, then cell order."""
    meta_keys = _meta_keys(checkpoints)
    rows: list[dict[str, Any]] = []
    for ci, (name, meta) in enumerate(checkpoints):
        for shift in shifts:
            for mag, dset, value, key in order.get((ci, shift["name"]), []):
                row: dict[str, Any] = {
                    "checkpoint": name, "shift": shift["name"], "magnitude": mag,
                    DATASET: dset, NORMALIZE: normalize[ci],
                }  # fmt: skip
                if group_by:
                    row[group_by] = value
                row.update(results[ci, key])
                for k in meta_keys:
                    row[k] = meta.get(k)
                rows.append(row)
    return rows


def _meta_keys(checkpoints: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The checkpoints' meta keys, in order of first appearance."""
    return list(dict.fromkeys(k for _, meta in checkpoints for k in meta))


class _SharedWeights:
    """Evaluates cells in batches of equal size against one draw of their resamples.

    ``cell_metrics`` resamples cells of size n with ``ResampleWeights(n, n_boot, seed)``; the
    counts of the last size seen are kept (uint8, ``n_boot · n`` bytes: one size at a time), so
    consecutive cells of the same size (all checkpoints, all magnitudes) never redraw them.
    """

    def __init__(self, n_boot: int, seed: int) -> None:
        self.n_boot, self.seed = n_boot, seed
        self._weights: Any = None

    def evaluate(
        self, cells: list[tuple[tuple, np.ndarray, np.ndarray]]
    ) -> dict[tuple, dict[str, float]]:
        """``{key: cell_metrics(labels, probs)}`` for ``(key, labels, probs)`` cells."""
        from shiftbench.bootstrap import ResampleWeights
        from shiftbench.metrics import same_size_cell_metrics

        by_size: dict[int, list[tuple[tuple, np.ndarray, np.ndarray]]] = {}
        for cell in cells:
            by_size.setdefault(len(cell[1]), []).append(cell)
        out: dict[tuple, dict[str, float]] = {}
        for n, batch in by_size.items():
            if self._weights is None or self._weights.n != n:
                self._weights = None  # free the previous size first: memory stays flat
                self._weights = ResampleWeights(n, self.n_boot, self.seed, cache=n > 0)
            metrics = same_size_cell_metrics(
                [(labels, probs) for _, labels, probs in batch],
                self._weights,
                n_boot=self.n_boot,
                seed=self.seed,
            )
            out.update((key, m) for (key, _, _), m in zip(batch, metrics, strict=True))
        return out


def _cells(
    frame: pd.DataFrame,
    mag: float,
    sets: SampleDatasets,
    groups: pd.Series | None,
    num_classes: int,
) -> list[tuple[str, Any, np.ndarray, np.ndarray]]:
    """``(set, group value, labels, probs)`` of one magnitude of one checkpoint's shift file."""
    sel = np.flatnonzero(frame["magnitude"].to_numpy() == mag)
    ids = frame["sample_id"].to_numpy()[sel]
    labels = frame["label"].to_numpy()[sel].astype(np.int64)
    probs = frame.iloc[sel, 3 : 3 + num_classes].to_numpy(np.float32)
    codes = sets.codes[ids] if len(sets.names) > 1 else np.zeros(len(ids), np.int32)
    out = []
    for k, dset in enumerate(sets.names):
        in_set = np.flatnonzero(codes == k)
        for value, idx in _subsets(groups, ids[in_set]):
            out.append((dset, value, labels[in_set[idx]], probs[in_set[idx]]))
    return out


def _reader(run_dir: Path, manifest: dict[str, Any]) -> Any:
    """``read(checkpoint_index, name, shift, columns) -> DataFrame`` for either format."""
    if manifest["format"] == FORMAT_V1:
        dataset = open_predictions(run_dir)

        def read_v1(ci: int, name: str, shift: str, columns: list[str]) -> pd.DataFrame:
            expr = (pads.field("checkpoint") == name) & (pads.field("shift") == shift)
            return dataset.to_table(columns=columns, filter=expr).to_pandas()

        return read_v1
    index = _checkpoint_index(run_dir)

    def read_v2(ci: int, name: str, shift: str, columns: list[str]) -> pd.DataFrame:
        path = checkpoint_file(run_dir, shift, index.get(name, ci))
        return pq.read_table(path, columns=columns).to_pandas()

    return read_v2


def _checkpoint_index(run_dir: Path) -> dict[str, int]:
    t = pq.read_table(run_dir / CHECKPOINTS, columns=["checkpoint", "checkpoint_index"])
    return dict(zip(t["checkpoint"].to_pylist(), t["checkpoint_index"].to_pylist(), strict=True))


def _normalize(run_dir: Path, manifest: dict[str, Any], names: list[str]) -> list[str]:
    """Per checkpoint, its stain normalisation (checkpoints.parquet; ``"none"`` when absent)."""
    if (
        manifest["format"] == FORMAT_V1
        or NORMALIZE not in pq.read_schema(run_dir / CHECKPOINTS).names
    ):
        return ["none"] * len(names)
    t = pq.read_table(run_dir / CHECKPOINTS, columns=["checkpoint", NORMALIZE]).to_pandas()
    value = dict(zip(t["checkpoint"], t[NORMALIZE].fillna("none").astype(str), strict=True))
    return [value.get(n, "none") for n in names]


def _groups(run_dir: Path, manifest: dict[str, Any], group_by: str) -> pd.Series:
    """The ``group_by`` value of every sample, indexed by sample id."""
    if manifest["format"] == FORMAT_V1:
        from shiftbench.run.rundir import PREDICTIONS_V1

        names = pq.read_schema(run_dir / PREDICTIONS_V1).names
        if group_by not in names:
            raise UserInputError(f"group_by {group_by!r} is not a column of {run_dir}")
        t = pq.read_table(run_dir / PREDICTIONS_V1, columns=["sample_id", group_by]).to_pandas()
        t = t.drop_duplicates("sample_id").set_index("sample_id")[group_by]
        return t.reindex(range(int(t.index.max()) + 1 if len(t) else 0))
    names = sample_extra_columns(pq.read_schema(run_dir / SAMPLES).names)
    if group_by not in names:
        have = ", ".join(names) or "none"
        raise UserInputError(f"group_by {group_by!r} is not a data column; columns: {have}")
    return pq.read_table(run_dir / SAMPLES, columns=[group_by]).to_pandas()[group_by]


def _subsets(groups: pd.Series | None, ids: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    if groups is None:
        return [(None, np.arange(len(ids)))]
    g = pd.Series(groups.to_numpy()[ids])
    return [
        (v, np.flatnonzero(g.isna() if _isna(v) else g.eq(v))) for v in _sorted_values(g.unique())
    ]


def _frame(rows: list[dict[str, Any]], group_by: str | None, meta_keys: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if "n" in frame.columns:
        frame["n"] = frame["n"].astype("int64")
    front = [
        "checkpoint",
        "shift",
        "magnitude",
        DATASET,
        NORMALIZE,
        *([group_by] if group_by else []),
    ]
    metric_cols = [c for c in frame.columns if c not in front and c not in meta_keys]
    return frame[front + metric_cols + meta_keys]


def _isna(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _sorted_values(values: Any) -> list[Any]:
    vals = list(values)
    present = [v for v in vals if not _isna(v)]
    try:
        present = sorted(present)
    except TypeError:
        present = sorted(present, key=str)
    return present + [v for v in vals if _isna(v)][:1]
