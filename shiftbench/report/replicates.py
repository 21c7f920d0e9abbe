"""Metric per checkpoint × cell, with bootstrap replicates shared by every cell (paired, CRN).

One set of resample weights over the aligned universe of sample ids
(:class:`shiftbench.bootstrap.ResampleWeights`, drawn once and kept compactly) serves every
cell, checkpoint and method, so sample ids are resampled jointly across all of them. Cells are
read and reduced one at a time: what stays in memory is ``[1 + n_boot, checkpoints]`` numbers
per cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from shiftbench.bootstrap import ResampleWeights, percentile_interval, replicates
from shiftbench.calibration import DIRECTION, WEIGHTED
from shiftbench.errors import UserInputError
from shiftbench.metrics import weighted_auroc
from shiftbench.report.align import Aligned, align
from shiftbench.report.cells import Cell, iter_cells
from shiftbench.report.study import Study, load_runs
from shiftbench.stats import METRICS, bootstrap_p_value, check_metric

#: Every metric the report commands accept: the classification metrics (higher is better)
#: then the calibration errors of :mod:`shiftbench.calibration` (lower is better), i.e.
#: :data:`shiftbench.metrics.METRICS`, the metric columns of metrics.csv.
REPORT_METRICS = METRICS


def higher_is_better(metric: str) -> bool:
    """False for the calibration errors (:data:`shiftbench.calibration.DIRECTION`), else True."""
    return DIRECTION.get(metric, "higher") == "higher"


def check_report_metric(metric: str, num_classes: int) -> None:
    """Raise :class:`UserInputError` unless the report can compute ``metric``."""
    if metric in WEIGHTED:
        return
    if metric not in METRICS:
        raise UserInputError(
            f"unknown metric {metric!r}; valid metrics: {', '.join(REPORT_METRICS)}"
        )
    check_metric(metric, num_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def checkpoint_values(
    metric: str, w: np.ndarray, labels: np.ndarray, preds: np.ndarray, probs: np.ndarray
) -> np.ndarray:
    """``metric`` of every checkpoint under each row of weights: ``[m, n] -> [m, K]``.

    The batched form of :func:`shiftbench.stats.metric_values` (``preds [K, n]``, ``probs
    [K, n, C]``): the counting metrics are one matrix product for all checkpoints. Weights and
    indicators are integers, so every sum is exact and the values equal the per-checkpoint ones.
    """
    num_classes = probs.shape[2]
    if metric in WEIGHTED:
        return np.stack([WEIGHTED[metric](w, labels, p) for p in probs], axis=1)
    if metric == "auroc":
        return np.stack([weighted_auroc(w, labels, p) for p in probs], axis=1)
    if metric == "accuracy":
        correct = (preds == labels).T.astype(np.float64)  # [n, K]
        return _ratio(w @ correct, w.sum(axis=1, dtype=np.float64)[:, None])
    classes = [1] if metric == "recall" else list(range(num_classes))
    is_pos = np.stack([labels == c for c in classes], axis=1).astype(np.float64)  # [n, C']
    hits = np.stack([(labels == c) & (preds == c) for c in classes], axis=2)  # [K, n, C']
    hits = hits.transpose(1, 0, 2).reshape(labels.size, -1).astype(np.float64)  # [n, K·C']
    recalls = _ratio(
        (w @ hits).reshape(w.shape[0], preds.shape[0], len(classes)), (w @ is_pos)[:, None, :]
    )  # [m, K, C'], NaN where a class has no sample in the resample
    if metric == "recall":
        return recalls[:, :, 0]
    with np.errstate(invalid="ignore"):
        present = np.isfinite(recalls)
        return _ratio(np.where(present, recalls, 0.0).sum(axis=2), present.sum(axis=2))


def cell_replicates(cell: Cell, weights: ResampleWeights, metric: str) -> np.ndarray:
    """``[rows, K]``: the metric of each checkpoint under every row of ``weights``."""
    return replicates(
        lambda w: checkpoint_values(metric, w, cell.labels, cell.preds, cell.probs),
        weights,
        cell.columns,
    )


def study_replicates(
    study: Study, aligned: Aligned, metric: str, n_boot: int, seed: int
) -> dict[tuple[str, float], np.ndarray]:
    """``{cell: [1 + n_boot, K]}``: row 0 the metric on the test set, then one row per resample.

    Cells are streamed (one in memory at a time); the resample weights are shared.
    """
    check_report_metric(metric, study.num_classes)
    weights = ResampleWeights(
        aligned.universe.size, n_boot, seed, with_point=True, cache=n_boot > 0
    )
    return {
        (cell.shift, cell.magnitude): cell_replicates(cell, weights, metric)
        for cell in iter_cells(study, aligned)
    }


def checkpoint_metrics(
    runs: str | Path | Sequence[str | Path] | Study,
    *,
    metric: str = "accuracy",
    by: str = "method",
    shifts: Sequence[str] | None = None,
    dataset: str | None = None,
) -> pd.DataFrame:
    """One row per checkpoint × shift × magnitude: ``by``, checkpoint, shift, magnitude, n, metric.

    The metric is computed from the stored predictions (``pred`` column; AUROC from the
    probabilities), so it equals the point estimate in ``metrics.csv``. ``dataset``: the
    evaluation set, required when the runs hold several.
    """
    study = runs if isinstance(runs, Study) else load_runs(runs)
    study = study.select(dataset, option="dataset=")
    aligned = align(study, by, shifts)
    reps = study_replicates(study, aligned, metric, 0, 0)
    rows = []
    for (shift, mag), values in reps.items():
        n = aligned.cells[(shift, mag)].n
        for k, ck in enumerate(aligned.checkpoints):
            rows.append(
                {
                    by: aligned.groups[k],
                    "checkpoint": ck,
                    "shift": shift,
                    "magnitude": mag,
                    "n": n,
                    metric: values[0, k],
                }
            )
    df = pd.DataFrame(rows)
    return df.sort_values([by, "checkpoint", "shift", "magnitude"], ignore_index=True)


def group_mean(values: np.ndarray, aligned: Aligned) -> np.ndarray:
    """``[..., K] -> [..., G]``: mean over the checkpoints (seeds) of each group."""
    return np.stack(
        [values[..., aligned.members(g)].mean(axis=-1) for g in aligned.group_names], -1
    )


def group_sd(values: np.ndarray, aligned: Aligned) -> np.ndarray:
    """``[K] -> [G]``: SD (ddof = 1) over seeds; NaN for a single seed."""
    out = []
    for g in aligned.group_names:
        v = values[aligned.members(g)]
        out.append(float(np.std(v, ddof=1)) if v.size > 1 else math.nan)
    return np.array(out)


def interval(reps: np.ndarray, ci: float) -> tuple[float, float, float]:
    """Percentile interval and bootstrap p-value of replicate rows ``reps [B]``."""
    lo, hi = percentile_interval(reps, ci)
    if not math.isfinite(lo):
        return math.nan, math.nan, math.nan
    return lo, hi, bootstrap_p_value(reps[np.isfinite(reps)])


def check_common(metric: str, n_boot: int, ci: float, num_classes: int) -> None:
    """Raise :class:`UserInputError` on a bad metric, ``n_boot`` or ``ci``."""
    check_report_metric(metric, num_classes)
    if n_boot < 0:
        raise UserInputError(f"n_boot must be ≥ 0; got {n_boot}")
    if not 0.0 < ci < 1.0:
        raise UserInputError(f"ci must be in (0, 1), e.g. 0.95; got {ci}")


def check_baseline(aligned: Aligned, baseline: str | None) -> None:
    """Raise unless ``baseline`` is None or a group of the aligned study."""
    if baseline is not None and baseline not in aligned.group_names:
        raise UserInputError(
            f"unknown baseline {baseline!r}: not a value of column {aligned.by!r}; "
            f"values: {', '.join(aligned.group_names)}"
        )
