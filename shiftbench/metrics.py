"""Per-cell classification metrics with seeded, vectorised bootstrap confidence intervals.

A *cell* is one checkpoint × shift × magnitude (× group). Point estimates come from
scikit-learn. Confidence intervals come from a nonparametric bootstrap over samples, computed in
one pass for all resamples: each resample is a row of multinomial counts ``w`` (how often every
sample was drawn), and every metric is written as a weighted statistic of those counts, e.g.
``accuracy_b = Σ_i w_bi·[pred_i = y_i] / Σ_i w_bi``. That is exactly the metric of the resampled
data set (a sample drawn twice counts twice), without materialising the resampled arrays.

The same ``seed`` gives the same resamples for every cell of the same samples (common random
numbers), so CIs are reproducible and comparable across magnitudes and checkpoints.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score, roc_auc_score

from shiftbench.bootstrap import (
    ResampleWeights,
    _single_threaded_blas,
    bootstrap_weight_blocks,
    bootstrap_weights,
    percentile_interval,
)
from shiftbench.calibration import (
    CALIBRATION_METRICS,
    CalibrationTerms,
    brier,
    calibration_terms,
    ece,
    nll,
    weighted_calibration,
)

__all__ = [
    "CLASSIFICATION_METRICS",
    "METRICS",
    "bootstrap_weight_blocks",
    "bootstrap_weights",
    "cell_metrics",
    "same_size_cell_metrics",
    "weighted_accuracy",
    "weighted_auroc",
    "weighted_balanced_accuracy",
    "weighted_binary_auroc",
    "weighted_recall",
]

#: Classification metrics (higher is better), in ``metrics.csv`` order (recall: binary only).
CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "auroc", "recall")
#: Metric names in the order they appear in ``metrics.csv``: the classification metrics, then
#: the calibration errors of :mod:`shiftbench.calibration` (lower is better, any C).
METRICS = (*CLASSIFICATION_METRICS, *CALIBRATION_METRICS)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def weighted_accuracy(w: np.ndarray, labels: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """Accuracy under each row of sample weights ``w`` [m, n] → [m]."""
    correct = (labels == preds).astype(np.float64)
    return _ratio(w @ correct, w.sum(axis=1, dtype=np.float64))


def weighted_recall(
    w: np.ndarray, labels: np.ndarray, preds: np.ndarray, positive: int = 1
) -> np.ndarray:
    """Recall (sensitivity) of class ``positive`` under each row of weights → [m] (NaN if absent)."""
    is_pos = (labels == positive).astype(np.float64)
    hit = ((labels == positive) & (preds == positive)).astype(np.float64)
    return _ratio(w @ hit, w @ is_pos)


def weighted_balanced_accuracy(
    w: np.ndarray, labels: np.ndarray, preds: np.ndarray, num_classes: int
) -> np.ndarray:
    """Mean recall over the classes present in each resample (scikit-learn's definition) → [m]."""
    recalls = np.stack(
        [weighted_recall(w, labels, preds, c) for c in range(num_classes)], axis=1
    )  # [m, C], NaN where class c has no sample in the resample
    with np.errstate(invalid="ignore"):
        present = np.isfinite(recalls)
        return _ratio(np.where(present, recalls, 0.0).sum(axis=1), present.sum(axis=1))


def weighted_binary_auroc(w: np.ndarray, is_positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC = P(score_pos > score_neg) + ½·P(tie), under each row of weights → [m].

    Sorting once and summing weights per group of tied scores (differences of running sums at the
    groups' ends) makes it O(m·n). Integer counts throughout: exact, so the result does not depend
    on the weights' dtype (integer-valued floats are truncated to integers).
    NaN where a resample has no positive or no negative sample.
    """
    m = w.shape[0]
    if len(scores) == 0:
        return np.full(m, np.nan)
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    ends = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # last index of each tie group
    w_sorted = w[:, order].astype(np.int64)
    w_pos = w_sorted * is_positive[order].astype(np.int64)
    pos_upto = np.cumsum(w_pos, axis=1)[:, ends]  # [m, G]: positives up to the group's end
    neg_upto = np.cumsum(w_sorted - w_pos, axis=1)[:, ends]
    pos_in_group = np.diff(pos_upto, axis=1, prepend=0)
    neg_below = np.concatenate([np.zeros((m, 1), np.int64), neg_upto[:, :-1]], axis=1)
    # a positive beats the negatives below its group and ties (½) with those in it:
    # 2·wins = pos·(2·neg_below + neg_in_group) = pos·(neg_below + neg_upto)
    twice_wins = (pos_in_group * (neg_below + neg_upto)).sum(axis=1)
    pairs = pos_upto[:, -1] * neg_upto[:, -1]
    return _ratio(twice_wins / 2.0, pairs.astype(np.float64))


def weighted_auroc(w: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Binary AUROC of ``probs[:, 1]``, or one-vs-rest macro AUROC for > 2 classes → [m].

    For > 2 classes a resample in which some class is absent (or is everything) gets NaN, like
    scikit-learn, which refuses to compute OvR AUROC then.
    """
    num_classes = probs.shape[1]
    if num_classes == 2:
        return weighted_binary_auroc(w, labels == 1, probs[:, 1])
    per_class = np.stack(
        [weighted_binary_auroc(w, labels == c, probs[:, c]) for c in range(num_classes)], axis=1
    )
    return per_class.mean(axis=1)  # NaN if any class is undefined in that resample


def _point_estimates(labels: np.ndarray, probs: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    num_classes = probs.shape[1]
    with warnings.catch_warnings():
        # single-class cells (e.g. a --group-by subgroup) are legitimate; sklearn warns on them
        warnings.simplefilter("ignore", UserWarning)
        out = {
            "accuracy": float(accuracy_score(labels, preds)),
            "balanced_accuracy": float(balanced_accuracy_score(labels, preds)),
        }
    present = np.unique(labels)
    if num_classes == 2:
        out["auroc"] = (
            float(roc_auc_score(labels, probs[:, 1])) if len(present) == 2 else float("nan")
        )
        out["recall"] = (
            float(recall_score(labels, preds, pos_label=1, zero_division=np.nan))
            if (labels == 1).any()
            else float("nan")
        )
    elif len(present) == num_classes:
        p = probs / probs.sum(axis=1, keepdims=True)  # sklearn requires rows summing to 1
        out["auroc"] = float(
            roc_auc_score(labels, p, multi_class="ovr", average="macro", labels=range(num_classes))
        )
    else:
        out["auroc"] = float("nan")
    # the calibration errors are defined for any non-empty cell (a single class included)
    out.update(ece=ece(labels, probs), brier=brier(labels, probs), nll=nll(labels, probs))
    return out


def cell_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, float]:
    """Metrics of one cell with percentile bootstrap CIs.

    Args:
        labels: true class indices, shape ``[n]``.
        probs: class probabilities, shape ``[n, C]`` (C ≥ 2); ``pred = argmax(probs)``.
        n_boot: bootstrap resamples (0 → CIs are NaN).
        seed: resampling seed; the same seed gives the same resamples for any cell of size n.
        ci: coverage of the two-sided percentile interval.

    Returns:
        ``n``, then for each metric ``m`` in accuracy, balanced_accuracy, auroc (binary, or
        one-vs-rest macro for C > 2), recall (binary only; positive class = index 1), ece,
        brier and nll (:mod:`shiftbench.calibration`): ``m``, ``m_ci_low``, ``m_ci_high``. A
        metric that is undefined on the cell (e.g. AUROC with one class) is NaN.
    """
    return same_size_cell_metrics([(labels, probs)], n_boot=n_boot, seed=seed, ci=ci)[0]


def same_size_cell_metrics(
    cells: list[tuple[np.ndarray, np.ndarray]],
    weights: ResampleWeights | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> list[dict[str, float]]:
    """:func:`cell_metrics` of several cells of the same size ``n``, one draw of the resamples.

    ``cell_metrics(labels, probs, n_boot=n_boot, seed=seed)`` resamples by position with
    ``ResampleWeights(n, n_boot, seed)``, so cells of equal size (e.g. every checkpoint of one
    shift × magnitude) share their resamples; here each block of counts is drawn (or read from
    ``weights``, e.g. a cached :class:`ResampleWeights` reused across calls) once and every cell
    is evaluated against it. :func:`cell_metrics` is this function with one cell, and a cell's
    numbers do not depend on the other cells of the batch (each block is evaluated per cell).

    Args:
        cells: ``(labels [n], probs [n, C])`` per cell, all of the same ``n``.
        weights: the resamples to use (must be ``(n, n_boot, seed)`` without the point row);
            None draws them.
        n_boot: bootstrap resamples (0 → CIs are NaN).
        seed: resampling seed.
        ci: coverage of the two-sided percentile interval.

    Returns:
        One :func:`cell_metrics` dict per cell, in order.
    """
    prepared = [_prepare(labels, probs) for labels, probs in cells]
    sizes = {len(cell.labels) for cell in prepared}
    if len(sizes) > 1:
        raise ValueError(f"cells must all have the same number of samples; got {sorted(sizes)}")
    n = sizes.pop() if sizes else 0
    if n == 0:
        return [{"n": 0.0} for _ in prepared]
    if weights is None:
        weights = ResampleWeights(n, n_boot, seed)
    if (weights.n, weights.n_boot, weights.seed, weights.with_point) != (n, n_boot, seed, False):
        raise ValueError("weights must be ResampleWeights(n, n_boot, seed) of these cells")
    names = [_names(cell.probs.shape[1]) for cell in prepared]
    boots = [np.empty((n_boot, len(k))) for k in names]
    with _single_threaded_blas():
        for rows, counts in weights.count_blocks() if n_boot > 0 else ():
            w = counts.astype(np.float64)
            for cell, k, out in zip(prepared, names, boots, strict=True):
                out[rows] = _replicate_block(w, counts, cell, k)
    return [
        _finish(n, cell.point, k, b, ci) for cell, k, b in zip(prepared, names, boots, strict=True)
    ]


class _Cell(NamedTuple):
    """One cell's inputs, validated, with what every resample reuses (computed once)."""

    labels: np.ndarray  # [n] int64
    probs: np.ndarray  # [n, C] float64
    preds: np.ndarray  # [n] argmax
    terms: CalibrationTerms  # per-sample terms of ECE, Brier, NLL
    point: dict[str, float]  # the metrics on the cell itself


def _prepare(labels: np.ndarray, probs: np.ndarray) -> _Cell:
    labels = np.asarray(labels).astype(np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0] or probs.shape[1] < 2:
        raise ValueError(f"probs must be [n, C>=2] matching labels [n]; got {probs.shape}")
    preds = probs.argmax(axis=1)
    point = _point_estimates(labels, probs, preds) if len(labels) else {}
    return _Cell(labels, probs, preds, calibration_terms(labels, probs), point)


def _names(num_classes: int) -> list[str]:
    binary = ["recall"] if num_classes == 2 else []
    return ["accuracy", "balanced_accuracy", "auroc", *binary, *CALIBRATION_METRICS]


def _replicate_block(
    w: np.ndarray, counts: np.ndarray, cell: _Cell, names: list[str]
) -> np.ndarray:
    """The metrics ``names`` of ``cell`` under float weights ``w`` (== integer ``counts``).

    Returns ``[m, len(names)]``. The three calibration errors come from one matrix product
    (:func:`shiftbench.calibration.weighted_calibration`, columns ece, brier, nll).
    """
    labels, probs, preds = cell.labels, cell.probs, cell.preds
    num_classes = probs.shape[1]
    columns = {
        "accuracy": lambda: weighted_accuracy(w, labels, preds),
        "balanced_accuracy": lambda: weighted_balanced_accuracy(w, labels, preds, num_classes),
        # integer counts: exact sums either way, 1 byte per weight to gather instead of 8
        "auroc": lambda: weighted_auroc(counts, labels, probs),
        "recall": lambda: weighted_recall(w, labels, preds, 1),
    }
    classification = [k for k in names if k not in CALIBRATION_METRICS]
    parts = [np.stack([columns[k]() for k in classification], axis=1)]
    if len(classification) < len(names):
        calibration = weighted_calibration(w, cell.terms)  # [m, 3]: ece, brier, nll
        order = [list(CALIBRATION_METRICS).index(k) for k in names if k in CALIBRATION_METRICS]
        parts.append(calibration[:, order])
    return np.concatenate(parts, axis=1)


def _finish(
    n: int, point: dict[str, float], names: list[str], boots: np.ndarray, ci: float
) -> dict[str, float]:
    out: dict[str, float] = {"n": float(n)}
    for j, k in enumerate(names):
        out[k] = point[k]
        if boots.shape[0] and np.isfinite(point[k]):
            out[f"{k}_ci_low"], out[f"{k}_ci_high"] = percentile_interval(boots[:, j], ci)
        else:
            out[f"{k}_ci_low"] = out[f"{k}_ci_high"] = float("nan")
    return out
