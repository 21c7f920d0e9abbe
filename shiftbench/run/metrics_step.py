"""metrics.csv from the stored predictions, one cell at a time.

:func:`compute_run_metrics` reads one predictions file (one shift × one checkpoint) at a time,
only the columns the metrics need, and calls :func:`shiftbench.metrics.cell_metrics` on each
magnitude (× group). Every cell uses the same bootstrap seed, so cells of equal size share their
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
    FORMAT_V1,
    SAMPLES,
    checkpoint_file,
    open_predictions,
    prob_column,
    read_manifest,
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
        The metrics.csv table: ``checkpoint, shift, magnitude[, group_by], n``, each metric with
        ``_ci_low``/``_ci_high``, then the checkpoints' meta keys.

    Raises:
        DataError: not a finished run directory. UserInputError: ``group_by`` is not a column.
    """
    from shiftbench.metrics import cell_metrics

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    class_names = [str(c) for c in manifest["class_names"]]
    probs_cols = [prob_column(c) for c in class_names]
    checkpoints = [(c["name"], dict(c.get("meta") or {})) for c in manifest["checkpoints"]]
    meta_keys = list(dict.fromkeys(k for _, meta in checkpoints for k in meta))
    read = _reader(run_dir, manifest)
    groups = _groups(run_dir, manifest, group_by) if group_by else None
    rows: list[dict[str, Any]] = []
    for ci, (name, meta) in enumerate(checkpoints):
        cache: dict[tuple, dict[str, float]] = {}  # the clean cell is shared by the shifts
        for shift in manifest["shifts"]:
            df = read(ci, name, shift["name"], ["magnitude", "sample_id", "label", *probs_cols])
            mag_col = df["magnitude"].to_numpy()
            id_col = df["sample_id"].to_numpy()
            label_col = df["label"].to_numpy().astype(np.int64)
            prob_all = df[probs_cols].to_numpy(np.float32)
            for mag in shift["magnitudes"]:
                sel = np.flatnonzero(mag_col == mag)
                ids, labels, probs = id_col[sel], label_col[sel], prob_all[sel]
                is_clean = mag == shift["identity"]
                for value, idx in _subsets(groups, ids):
                    key = ("clean", value) if is_clean else (shift["name"], mag, value)
                    result = cache.get(key)
                    if result is None:
                        result = cell_metrics(labels[idx], probs[idx], n_boot=n_boot, seed=seed)
                        cache[key] = result
                    row: dict[str, Any] = {
                        "checkpoint": name,
                        "shift": shift["name"],
                        "magnitude": mag,
                    }
                    if group_by:
                        row[group_by] = value
                    row.update(result)
                    for k in meta_keys:
                        row[k] = meta.get(k)
                    rows.append(row)
    return _frame(rows, group_by, meta_keys)


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
    names = pq.read_schema(run_dir / SAMPLES).names
    if group_by not in names[3:]:
        have = ", ".join(names[3:]) or "none"
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
    front = ["checkpoint", "shift", "magnitude", *([group_by] if group_by else [])]
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
