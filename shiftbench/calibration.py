"""Calibration metrics of predicted class probabilities: ECE, Brier score, negative log-likelihood.

All three are *lower is better* (:data:`DIRECTION`). Each has a point version ``f(labels,
probs)`` and a weighted version ``weighted_f(w, labels, probs)`` with the calling convention of
:mod:`shiftbench.metrics`: ``w`` is an ``[m, n]`` matrix of non-negative sample weights (e.g. the
bootstrap resample counts of :func:`shiftbench.metrics.bootstrap_weight_blocks`) and the result
is one value per row ``[m]``, equal to the metric of the data set in which sample ``i`` occurs
``w_bi`` times. With ``w`` a single row of ones the weighted version is the point version.

Definitions (``n`` samples, ``C`` classes, ``p_ic`` the probability of class ``c`` for sample
``i``, ``y_i`` its true class):

* **ECE** (expected calibration error, top-label, Guo et al. 2017): confidence
  ``conf_i = max_c p_ic``, prediction ``ŷ_i = argmax_c p_ic``; ``K`` (default 15) equal-width bins
  ``((k−1)/K, k/K]`` on the confidence (the first bin also holds 0);
  ``ECE = Σ_k |Σ_{i∈k} ([ŷ_i = y_i] − conf_i)| / n``, i.e. ``Σ_k (n_k / n)·|acc_k − conf_k|``.
* **Brier score** (Brier 1950, multi-class form): ``(1/n) Σ_i Σ_c (p_ic − [y_i = c])²``, in
  ``[0, 2]``. For two classes this is twice the usual binary Brier score ``(1/n) Σ_i (p_i1 −
  y_i)²`` (scikit-learn's ``brier_score_loss`` with ``scale_by_half=False`` gives this form).
* **NLL** (log loss): ``−(1/n) Σ_i ln p_{i,y_i}``, probabilities clipped to ``[ε, 1]`` with ``ε``
  the float64 machine epsilon (as scikit-learn's ``log_loss``) so a confident mistake costs
  ``−ln ε ≈ 36`` instead of infinity.

Probabilities are used as given (rows are expected to sum to 1, e.g. a softmax).

References:
    C. Guo et al., "On calibration of modern neural networks", ICML 2017.
    G. W. Brier, "Verification of forecasts expressed in terms of probability", Monthly
    Weather Review 78 (1950) 1–3.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

__all__ = [
    "CALIBRATION_METRICS",
    "DIRECTION",
    "N_BINS",
    "WEIGHTED",
    "CalibrationTerms",
    "brier",
    "calibration_metrics",
    "calibration_terms",
    "ece",
    "nll",
    "weighted_brier",
    "weighted_calibration",
    "weighted_ece",
    "weighted_nll",
]

#: Number of equal-width confidence bins of :func:`ece`.
N_BINS = 15

#: Direction of every metric: all calibration errors are better when lower.
DIRECTION = {"ece": "lower", "brier": "lower", "nll": "lower"}

_EPS = float(np.finfo(np.float64).eps)


def _check(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"probs must be [n, C>=2] matching labels [n]; got {probs.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels must be class indices in 0..{probs.shape[1] - 1}")
    return labels, probs


def _weighted_mean(w: np.ndarray, per_sample: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w @ per_sample) / np.where(total > 0, total, 1.0), np.nan)


class CalibrationTerms(NamedTuple):
    """Per-sample terms of the three calibration errors (each ``[n]``), computed once per cell.

    Attributes:
        bins: confidence bin of each sample (0-based; bin ``k`` holds ``conf`` in
            ``(k/K, (k+1)/K]``, conf = 0 goes to bin 0).
        gap: ``[ŷ_i = y_i] − conf_i``.
        brier: ``Σ_c (p_ic − [y_i = c])²``.
        nll: ``−ln clip(p_{i,y_i}, ε, 1)``.
        n_bins: ``K``.
    """

    bins: np.ndarray
    gap: np.ndarray
    brier: np.ndarray
    nll: np.ndarray
    n_bins: int


def calibration_terms(
    labels: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS
) -> CalibrationTerms:
    """The per-sample terms of ECE, Brier and NLL (see the module docstring for the formulas)."""
    labels, probs = _check(labels, probs)
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a whole number >= 1; got {n_bins}")
    n_bins = int(n_bins)
    rows = np.arange(labels.size)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    # a NaN confidence (broken model output) gets bin 0 and a NaN gap: the ECE is NaN
    bins = np.clip(np.ceil(np.nan_to_num(conf) * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    p_true = probs[rows, labels]
    residual = probs.copy()  # p_ic − [y_i = c]
    residual[rows, labels] -= 1.0
    brier_i = (residual**2).sum(axis=1)
    nll_i = -np.log(np.clip(p_true, _EPS, 1.0))
    return CalibrationTerms(bins, correct - conf, brier_i, nll_i, n_bins)


def weighted_calibration(w: np.ndarray, terms: CalibrationTerms) -> np.ndarray:
    """ECE, Brier and NLL under each row of sample weights ``w [m, n]`` → ``[m, 3]``.

    One matrix product ``w @ [1, brier_i, nll_i, gap_i·[i ∈ bin k] for k < K]`` gives every
    weighted sum at once (one pass over ``w``; the ECE's per-bin sums are its last ``K``
    columns): ``ECE_b = Σ_k |S_bk| / Σ_i w_bi``, ``Brier_b = Σ_i w_bi·brier_i / Σ_i w_bi``,
    ``NLL_b`` likewise. NaN where ``Σ_i w_bi = 0``.
    """
    n = terms.gap.size
    columns = np.zeros((n, 3 + terms.n_bins))
    columns[:, 0] = 1.0
    columns[:, 1] = terms.brier
    columns[:, 2] = terms.nll
    columns[np.arange(n), 3 + terms.bins] = terms.gap
    sums = np.asarray(w, dtype=np.float64) @ columns  # [m, 3 + K]
    total = sums[:, :1]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.concatenate(
            [np.abs(sums[:, 3:]).sum(axis=1, keepdims=True), sums[:, 1:3]], axis=1
        ) / np.where(total > 0, total, 1.0)
    return np.where(total > 0, means, np.nan)


def weighted_ece(
    w: np.ndarray, labels: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS
) -> np.ndarray:
    """Top-label ECE under each row of sample weights ``w [m, n]`` → ``[m]`` (NaN if Σw = 0).

    ``ECE_b = Σ_k |Σ_i w_bi·[i ∈ k]·([ŷ_i = y_i] − conf_i)| / Σ_i w_bi``.
    """
    terms = calibration_terms(labels, probs, n_bins)
    n = terms.gap.size
    gaps = np.zeros((n, terms.n_bins))  # [n, K]: sample i's gap in the column of its bin
    gaps[np.arange(n), terms.bins] = terms.gap
    w = np.asarray(w, dtype=np.float64)
    per_bin = w @ gaps  # [m, K]
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            total > 0, np.abs(per_bin).sum(axis=1) / np.where(total > 0, total, 1.0), np.nan
        )


def weighted_brier(w: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Multi-class Brier score ``Σ_i w_bi Σ_c (p_ic − [y_i = c])² / Σ_i w_bi`` → ``[m]``."""
    return _weighted_mean(w, calibration_terms(labels, probs).brier)


def weighted_nll(w: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Negative log-likelihood ``−Σ_i w_bi ln clip(p_{i,y_i}, ε, 1) / Σ_i w_bi`` → ``[m]``."""
    return _weighted_mean(w, calibration_terms(labels, probs).nll)


def _point(weighted: Callable[..., np.ndarray]) -> Callable[..., float]:
    def point(labels: np.ndarray, probs: np.ndarray, **kwargs: int) -> float:
        n = np.asarray(labels).shape[0]
        return float(weighted(np.ones((1, n)), labels, probs, **kwargs)[0])

    return point


def ece(labels: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS) -> float:
    """Top-label expected calibration error with ``n_bins`` equal-width bins (NaN if n = 0)."""
    return _point(weighted_ece)(labels, probs, n_bins=n_bins)


def brier(labels: np.ndarray, probs: np.ndarray) -> float:
    """Multi-class Brier score ``(1/n) Σ_i Σ_c (p_ic − [y_i = c])²`` (NaN if n = 0)."""
    return _point(weighted_brier)(labels, probs)


def nll(labels: np.ndarray, probs: np.ndarray) -> float:
    """Negative log-likelihood ``−(1/n) Σ_i ln clip(p_{i,y_i}, ε, 1)`` (NaN if n = 0)."""
    return _point(weighted_nll)(labels, probs)


#: ``name -> (point, weighted)``, ready to plug into :func:`shiftbench.metrics.cell_metrics`.
CALIBRATION_METRICS: dict[str, tuple[Callable[..., float], Callable[..., np.ndarray]]] = {
    "ece": (ece, weighted_ece),
    "brier": (brier, weighted_brier),
    "nll": (nll, weighted_nll),
}

#: ``name -> weighted``: each calibration error under resample weights ``w [m, n]`` → ``[m]``
#: (the bootstrap and report dispatch on it).
WEIGHTED: dict[str, Callable[..., np.ndarray]] = {
    name: weighted for name, (_, weighted) in CALIBRATION_METRICS.items()
}


def calibration_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, float]:
    """ECE, Brier and NLL of one cell with percentile bootstrap CIs.

    The calibration columns of :func:`shiftbench.metrics.cell_metrics` (one implementation: the
    same resamples for the same ``seed`` and the same one matrix product per block):
    ``{m, m_ci_low, m_ci_high}`` for ``m`` in ``ece, brier, nll`` (CIs NaN if ``n_boot = 0``).
    """
    from shiftbench.metrics import cell_metrics  # shiftbench.metrics imports this module

    out = cell_metrics(labels, probs, n_boot=n_boot, seed=seed, ci=ci)
    return {k + s: out[k + s] for k in CALIBRATION_METRICS for s in ("", "_ci_low", "_ci_high")}
