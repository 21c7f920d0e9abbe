"""One-vs-rest ROC curves of a C-class classifier, plus the macro-average curve (compute only).

Per class ``c``: the binary ROC curve of "class ``c``" vs "any other class" with score
``p_c`` (scikit-learn's ``roc_curve(labels == c, probs[:, c])``, all thresholds kept) and its
AUROC.

Macro-average curve, as in scikit-learn's user guide ("macro-average ROC"): the mean over classes
of each class's TPR, linearly interpolated on a common FPR grid. With the default grid — the union
of every class's FPR values — the interpolation is exact (each class curve is piecewise linear
between its own FPR values) and each grid value appears twice, once with the classes' lower TPRs
and once with their upper TPRs where a curve has a vertical step. The area under the macro curve
is then exactly the mean of the per-class AUROCs, i.e. ``roc_auc_score(labels, probs,
multi_class="ovr", average="macro")``. A user grid (e.g. ``np.linspace(0, 1, 1000)`` as in the
scikit-learn example) gives ``mean_c np.interp(grid, fpr_c, tpr_c)`` instead, whose area is
close to but not exactly the macro AUROC.

Optional percentile bootstrap CIs of each AUROC reuse :mod:`shiftbench.metrics`' resample weights
(same ``seed`` → same resamples as ``metrics.csv``). DeLong's test stays binary.

Classes with no sample, or that are every sample, have no ROC curve; they are left out of the
curves and of the macro average and listed in :attr:`MulticlassRoc.undefined`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve
from threadpoolctl import threadpool_limits

from shiftbench.metrics import bootstrap_weight_blocks, weighted_binary_auroc

__all__ = ["MACRO", "MulticlassRoc", "macro_average_curve", "multiclass_roc"]

#: Name of the macro-average curve in :attr:`MulticlassRoc.curves`.
MACRO = "macro"


@dataclass
class MulticlassRoc:
    """One-vs-rest ROC of every class and the macro-average curve.

    Attributes:
        curves: long table ``curve, fpr, tpr, threshold``: one block per class (``curve`` = class
            name; ``threshold`` = score ``≥`` which a sample is called that class) and one block
            ``curve = "macro"`` (threshold NaN).
        auroc: one row per curve: ``curve, n_positive, n_negative, auroc`` (and ``auroc_ci_low``,
            ``auroc_ci_high`` when bootstrapped). The macro row's AUROC is the mean of the class
            AUROCs (= area under the macro curve on the default grid).
        undefined: classes left out (no positive or no negative sample).
    """

    curves: pd.DataFrame
    auroc: pd.DataFrame
    undefined: list[str] = field(default_factory=list)


def macro_average_curve(
    curves: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean TPR of several ROC curves on a common FPR grid.

    Args:
        curves: ``(fpr, tpr)`` per class, each non-decreasing and from ``roc_curve``.
        grid: FPR values in ``[0, 1]``; default: the union of every curve's FPR (exact, with
            vertical steps kept, see the module docstring).

    Returns:
        ``(fpr, mean_tpr)``.
    """
    if not curves:
        return np.array([]), np.array([])
    if grid is not None:
        grid = np.asarray(grid, dtype=np.float64)
        return grid, np.mean([np.interp(grid, f, t) for f, t in curves], axis=0)
    knots = np.unique(np.concatenate([f for f, _ in curves]))
    lower = np.zeros_like(knots)
    upper = np.zeros_like(knots)
    for f, t in curves:
        low, up = _limits(f, t, knots)
        lower += low
        upper += up
    fpr = np.repeat(knots, 2)
    tpr = np.stack([lower, upper], axis=1).ravel() / len(curves)
    return fpr, tpr


def _limits(f: np.ndarray, t: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TPR of the polyline ``(f, t)`` arriving at and leaving each ``x`` (``f`` sorted, x in range).

    At an FPR value of the curve the two differ when the curve steps vertically there (first and
    last point with that FPR); between FPR values both are the linear interpolation on the
    segment from the last point of the lower value to the first point of the higher one.
    """
    first = np.searchsorted(f, x, side="left")
    last = np.searchsorted(f, x, side="right") - 1
    on_knot = first <= last
    a = np.clip(last, 0, f.size - 1)  # between knots: last point before x ...
    b = np.clip(first, 0, f.size - 1)  # ... and first point after x
    span = f[b] - f[a]
    frac = np.divide(x - f[a], span, out=np.zeros_like(x), where=span > 0)
    between = t[a] + (t[b] - t[a]) * frac
    return np.where(on_knot, t[b], between), np.where(on_knot, t[a], between)


def multiclass_roc(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    class_names: list[str] | None = None,
    grid: np.ndarray | None = None,
    n_boot: int = 0,
    seed: int = 0,
    ci: float = 0.95,
) -> MulticlassRoc:
    """One-vs-rest ROC per class and the macro-average curve of ``probs [n, C]``.

    Args:
        labels: true class indices ``[n]``.
        probs: class scores ``[n, C]`` (C ≥ 2; e.g. softmax probabilities, or a seed
            ensemble's mean).
        class_names: ``C`` names (default ``"0"``, ``"1"``, …).
        grid: FPR grid of the macro curve (default: exact union grid).
        n_boot: bootstrap resamples for the AUROC CIs (0: no CI columns).
        seed: resampling seed (:func:`shiftbench.metrics.bootstrap_weight_blocks`).
        ci: coverage of the two-sided percentile interval.

    Returns:
        :class:`MulticlassRoc`.
    """
    labels = np.asarray(labels).astype(np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"probs must be [n, C>=2] matching labels [n]; got {probs.shape}")
    n_classes = probs.shape[1]
    names = [str(c) for c in range(n_classes)] if class_names is None else list(class_names)
    if len(names) != n_classes:
        raise ValueError(f"got {len(names)} class names for {n_classes} classes")
    defined = [c for c in range(n_classes) if 0 < (labels == c).sum() < labels.size]
    blocks, rows, xy = [], [], []
    for c in defined:
        fpr, tpr, thr = roc_curve(labels == c, probs[:, c], drop_intermediate=False)
        xy.append((fpr, tpr))
        blocks.append(pd.DataFrame({"curve": names[c], "fpr": fpr, "tpr": tpr, "threshold": thr}))
        rows.append(
            {
                "curve": names[c],
                "n_positive": int((labels == c).sum()),
                "n_negative": int((labels != c).sum()),
                "auroc": float(roc_auc_score(labels == c, probs[:, c])),
            }
        )
    fpr, tpr = macro_average_curve(xy, grid)
    blocks.append(pd.DataFrame({"curve": MACRO, "fpr": fpr, "tpr": tpr, "threshold": np.nan}))
    macro = float(np.mean([r["auroc"] for r in rows])) if rows else float("nan")
    rows.append({"curve": MACRO, "n_positive": np.nan, "n_negative": np.nan, "auroc": macro})
    auroc = pd.DataFrame(rows)
    if n_boot > 0 and defined:
        lo, hi = _bootstrap_cis(labels, probs, defined, n_boot, seed, ci)
        auroc["auroc_ci_low"], auroc["auroc_ci_high"] = lo, hi
    undefined = [names[c] for c in range(n_classes) if c not in defined]
    return MulticlassRoc(pd.concat(blocks, ignore_index=True), auroc, undefined)


def _bootstrap_cis(
    labels: np.ndarray, probs: np.ndarray, classes: list[int], n_boot: int, seed: int, ci: float
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile CIs ``[len(classes) + 1]`` (classes, then macro) of the AUROCs."""
    n = labels.size
    values = []
    with threadpool_limits(1, user_api="blas"):
        for w in bootstrap_weight_blocks(n, n_boot, seed, block=max(1, 4_000_000 // n)):
            per_class = np.stack(
                [weighted_binary_auroc(w, labels == c, probs[:, c]) for c in classes], axis=1
            )
            values.append(np.column_stack([per_class, per_class.mean(axis=1)]))
    stacked = np.concatenate(values)  # [n_boot, K + 1]; NaN where a class is absent
    alpha = (1.0 - ci) / 2.0
    lo = np.array([np.nanquantile(col, alpha) for col in stacked.T])
    hi = np.array([np.nanquantile(col, 1.0 - alpha) for col in stacked.T])
    return lo, hi
