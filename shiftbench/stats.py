"""Statistics behind robustness claims: seed bands, bootstrap CIs, paired tests, ensembles.

Three sources of uncertainty are kept apart, because they answer different questions:

* **Across seeds** (:func:`seed_bands`): how much does the result depend on the training seed?
  Mean, SD (ddof = 1), SE = SD/√k and k = number of seeds per method × shift × magnitude.
* **Over test samples** (:func:`bootstrap_ci`, :func:`paired_bootstrap`): how much would the
  number move on another test set of the same size? Nonparametric bootstrap over samples,
  percentile or BCa, seeded and vectorised: a resample is a row of multinomial counts
  (:func:`shiftbench.metrics.bootstrap_weights`) and every metric is a weighted statistic of
  those counts (``shiftbench.metrics.weighted_*``).
* **Two methods on the same samples**: paired bootstrap of the metric difference (sample ids
  resampled jointly for both methods, all their seeds and all magnitudes), and DeLong's test for
  two correlated AUROCs (:mod:`shiftbench.delong`).

Robustness summaries (:func:`robustness_summary`) reduce one curve *metric(magnitude)* to a few
numbers; the classification metrics are "higher is better" and lie in [0, 1] (for the
calibration errors of :mod:`shiftbench.calibration`, lower is better: pass
``higher_is_better=False`` and worst / drop / CE flip as documented in the functions):

* ``sweep_mean`` — normalised area under the curve over the magnitude axis:
  ``(1 / (m_max − m_min)) · ∫ metric dm`` by the trapezoid rule over the sorted magnitudes
  (the mean height of the piecewise-linear curve; equals the plain mean for evenly spaced
  magnitudes only up to the half-weight of the two end points). One magnitude → that value.
* ``worst`` — the minimum over all magnitudes of the sweep (identity included).
* ``clean`` — the metric at the identity magnitude.
* ``drop`` — ``clean − worst`` (≥ 0).
* ``ce`` — corruption error relative to a baseline (Hendrycks & Dietterich 2019 style):
  ``Σ_{m ≠ identity} (1 − metric_m) / Σ_{m ≠ identity} (1 − baseline_m)``; < 1 is better than
  the baseline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from shiftbench.bootstrap import ResampleWeights, block_rows, replicates
from shiftbench.calibration import WEIGHTED
from shiftbench.delong import DeLongResult, delong_auc_ci, delong_covariance, delong_test
from shiftbench.errors import UserInputError
from shiftbench.metrics import (
    METRICS,
    bootstrap_weights,
    weighted_accuracy,
    weighted_auroc,
    weighted_balanced_accuracy,
    weighted_recall,
)

__all__ = [
    "CI_METHODS",
    "METRICS",
    "SUMMARIES",
    "BootstrapResult",
    "DeLongResult",
    "PairedDifference",
    "bootstrap_ci",
    "bootstrap_p_value",
    "bootstrap_weights",
    "check_metric",
    "corruption_error",
    "delong_auc_ci",
    "delong_covariance",
    "delong_test",
    "ensemble_metrics",
    "ensemble_probs",
    "metric_values",
    "normalised_area",
    "paired_bootstrap",
    "robustness_summary",
    "seed_bands",
]

#: Bootstrap interval methods of :func:`bootstrap_ci`.
CI_METHODS = ("percentile", "bca")

#: Robustness summaries of one curve (see the module docstring).
SUMMARIES = ("sweep_mean", "worst", "clean", "drop")


# --- metrics under resample weights -------------------------------------------------------------
def check_metric(metric: str, num_classes: int) -> None:
    """Raise :class:`UserInputError` unless ``metric`` can be computed for ``num_classes``."""
    if metric not in METRICS:
        raise UserInputError(f"unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")
    if metric == "recall" and num_classes != 2:
        raise UserInputError(
            f"recall is defined for binary tasks only (this task has {num_classes} classes); "
            "use balanced_accuracy"
        )


def metric_values(
    metric: str,
    weights: np.ndarray,
    labels: np.ndarray,
    preds: np.ndarray,
    probs: np.ndarray,
) -> np.ndarray:
    """One metric of one classifier under each row of sample weights.

    Args:
        metric: one of :data:`METRICS` (recall: positive class = index 1, binary only; auroc:
            ``probs[:, 1]`` for binary, one-vs-rest macro AUROC otherwise; ece, brier, nll:
            :mod:`shiftbench.calibration`, lower is better).
        weights: ``[m, n]`` resample counts (a row of ones is the plain metric).
        labels: true class per sample ``[n]``.
        preds: predicted class per sample ``[n]``.
        probs: class probabilities ``[n, C]``.

    Returns:
        ``[m]`` metric values (NaN where undefined, e.g. AUROC of a resample with one class).
    """
    num_classes = probs.shape[1]
    check_metric(metric, num_classes)
    if metric in WEIGHTED:
        return WEIGHTED[metric](weights, labels, probs)
    if metric == "accuracy":
        return weighted_accuracy(weights, labels, preds)
    if metric == "balanced_accuracy":
        return weighted_balanced_accuracy(weights, labels, preds, num_classes)
    if metric == "recall":
        return weighted_recall(weights, labels, preds, 1)
    return weighted_auroc(weights, labels, probs)


# --- generic bootstrap --------------------------------------------------------------------------
@dataclass(frozen=True)
class BootstrapResult:
    """A bootstrap confidence interval.

    Attributes:
        estimate: the statistic on the original data.
        ci_low, ci_high: interval end points.
        se: SD (ddof = 1) of the finite bootstrap replicates.
        method: ``percentile`` or ``bca``.
        ci: coverage.
        n_boot: number of resamples drawn; ``n_valid`` of them gave a finite statistic.
        replicates: the bootstrap distribution ``[n_boot]``.
    """

    estimate: float
    ci_low: float
    ci_high: float
    se: float
    method: str
    ci: float
    n_boot: int
    n_valid: int
    replicates: np.ndarray = field(repr=False, compare=False)


def _check_boot_args(n_boot: int, ci: float, method: str = "percentile") -> None:
    if n_boot < 1:
        raise UserInputError(f"n_boot must be at least 1; got {n_boot}")
    if not 0.0 < ci < 1.0:
        raise UserInputError(f"ci must be in (0, 1), e.g. 0.95; got {ci}")
    if method not in CI_METHODS:
        raise UserInputError(f"unknown CI method {method!r}; valid: {', '.join(CI_METHODS)}")


def bootstrap_ci(
    statistic: Callable[..., np.ndarray],
    *data: np.ndarray,
    n_boot: int = 2000,
    ci: float = 0.95,
    method: str = "percentile",
    seed: int = 0,
) -> BootstrapResult:
    """Bootstrap CI of a weighted statistic, resampling the rows of ``data`` jointly (paired).

    The statistic is written for sample weights, so every resample is one row of a matrix and the
    whole bootstrap is a few array operations: ``statistic(weights [m, n], *data) -> [m]``. A
    row of ones is the statistic of the data itself, a row of multinomial counts a resample, and
    a row of ones with one zero a jackknife (leave-one-out) sample.

    Percentile: the ``(1 − ci)/2`` and ``(1 + ci)/2`` quantiles (linear interpolation) of the
    replicates. BCa (Efron & Tibshirani 1993, §14.3): the quantiles at
    ``Φ(z0 + (z0 + z_α) / (1 − a (z0 + z_α)))`` with bias correction
    ``z0 = Φ⁻¹((#{θ* < θ̂} + #{θ* ≤ θ̂}) / 2B)`` and acceleration
    ``a = Σ (θ̄₍.₎ − θ₍ᵢ₎)³ / (6 (Σ (θ̄₍.₎ − θ₍ᵢ₎)²)^{3/2})`` from the jackknife, as in
    ``scipy.stats.bootstrap(..., paired=True, method="BCa")``.

    Args:
        statistic: weighted statistic, see above.
        *data: arrays sharing their first axis (the samples).
        n_boot: number of resamples.
        ci: coverage of the two-sided interval.
        method: ``percentile`` or ``bca``.
        seed: resampling seed (:func:`shiftbench.metrics.bootstrap_weights`).

    Returns:
        :class:`BootstrapResult`; non-finite replicates are left out of the interval.

    Raises:
        UserInputError: bad arguments or data of different lengths.
    """
    _check_boot_args(n_boot, ci, method)
    if not data:
        raise UserInputError("bootstrap_ci needs at least one data array")
    n = len(data[0])
    if any(len(d) != n for d in data):
        raise UserInputError(f"data arrays differ in length: {[len(d) for d in data]}")
    if n < 2:
        raise UserInputError(f"bootstrap needs at least 2 samples; got {n}")
    estimate = float(np.asarray(statistic(np.ones((1, n)), *data))[0])
    reps = replicates(lambda w: statistic(w, *data), ResampleWeights(n, n_boot, seed))
    finite = reps[np.isfinite(reps)]
    alpha = (1.0 - ci) / 2.0
    nan = float("nan")
    if finite.size == 0 or not math.isfinite(estimate):
        return BootstrapResult(estimate, nan, nan, nan, method, ci, n_boot, 0, reps)
    if method == "percentile":
        levels = np.array([alpha, 1.0 - alpha])
    else:
        below = (np.count_nonzero(finite < estimate) + np.count_nonzero(finite <= estimate)) / (
            2.0 * finite.size
        )
        z0 = float(ndtri(below))
        jack = _jackknife(statistic, data, n)
        d = jack.mean() - jack
        den = 6.0 * float(np.sum(d**2)) ** 1.5
        a = float(np.sum(d**3)) / den if den > 0 else 0.0
        z = ndtri(np.array([alpha, 1.0 - alpha]))
        levels = ndtr(z0 + (z0 + z) / (1.0 - a * (z0 + z)))
        if not np.isfinite(levels).all():
            return BootstrapResult(estimate, nan, nan, nan, method, ci, n_boot, 0, reps)
    lo, hi = np.quantile(finite, levels)
    se = float(finite.std(ddof=1)) if finite.size > 1 else nan
    return BootstrapResult(
        estimate, float(lo), float(hi), se, method, ci, n_boot, finite.size, reps
    )


def _jackknife(
    statistic: Callable[..., np.ndarray], data: Sequence[np.ndarray], n: int
) -> np.ndarray:
    out = []
    step = block_rows(n)
    for start in range(0, n, step):
        stop = min(start + step, n)
        w = np.ones((stop - start, n))
        w[np.arange(w.shape[0]), np.arange(start, stop)] = 0.0
        out.append(np.asarray(statistic(w, *data)))
    return np.concatenate(out)


def bootstrap_p_value(replicates: np.ndarray, null: float = 0.0) -> float:
    """Two-sided bootstrap p-value of ``H0: θ = null`` from the replicates of ``θ``.

    ``p = min(1, 2 · min((1 + #{θ* ≤ null}) / (B + 1), (1 + #{θ* ≥ null}) / (B + 1)))``: twice
    the smaller tail of the bootstrap distribution beyond the null value, with the usual +1 so
    that p > 0. It agrees with the percentile interval: p < 1 − ci roughly when the interval
    excludes ``null``. Smallest attainable p is ``2 / (B + 1)``.
    """
    reps = np.asarray(replicates, float)
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return float("nan")
    b = reps.size
    low = (1 + np.count_nonzero(reps <= null)) / (b + 1)
    high = (1 + np.count_nonzero(reps >= null)) / (b + 1)
    return float(min(1.0, 2.0 * min(low, high)))


# --- paired comparison ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PairedDifference:
    """Paired bootstrap of ``metric(a) − metric(b)`` on the same test samples.

    Attributes:
        metric: metric name.
        estimate_a, estimate_b: seed-averaged metric of each method on the test set.
        difference: ``estimate_a − estimate_b``.
        ci_low, ci_high: percentile interval of the difference.
        p_value: :func:`bootstrap_p_value` of the difference (H0: no difference).
        ci: coverage; n_boot: resamples; n_samples: test samples.
        n_seeds_a, n_seeds_b: checkpoints (seeds) averaged per method.
    """

    metric: str
    estimate_a: float
    estimate_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    ci: float
    n_boot: int
    n_samples: int
    n_seeds_a: int
    n_seeds_b: int


def _as_seeds(
    probs: np.ndarray, preds: np.ndarray | None, name: str
) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 2:
        probs = probs[None]
    if probs.ndim != 3:
        raise UserInputError(f"{name} must be [n, C] or [seeds, n, C]; got shape {probs.shape}")
    if preds is None:
        preds = probs.argmax(axis=2)
    preds = np.asarray(preds)
    if preds.ndim == 1:
        preds = preds[None]
    if preds.shape != probs.shape[:2]:
        raise UserInputError(f"preds of {name} must be [seeds, n] = {probs.shape[:2]}")
    return probs, preds


def paired_bootstrap(
    labels: np.ndarray,
    probs_a: np.ndarray,
    probs_b: np.ndarray,
    *,
    metric: str = "accuracy",
    preds_a: np.ndarray | None = None,
    preds_b: np.ndarray | None = None,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Paired bootstrap of the difference of a seed-averaged metric between two methods.

    Each method may have several seeds (checkpoints). The estimate of a method is the mean over
    its seeds of the metric on the test set; the difference ``a − b`` is resampled by drawing
    test sample ids with replacement *once per resample for both methods and all their seeds*,
    so sample difficulty cancels out of the difference.

    Args:
        labels: true class per sample ``[n]``.
        probs_a, probs_b: probabilities ``[n, C]`` or ``[seeds, n, C]`` on the same samples in
            the same order.
        metric: one of :data:`METRICS`.
        preds_a, preds_b: predicted classes ``[n]`` / ``[seeds, n]`` (default: argmax of probs).
        n_boot: resamples; ci: interval coverage; seed: resampling seed.

    Returns:
        :class:`PairedDifference` with a percentile interval and a two-sided p-value.
    """
    _check_boot_args(n_boot, ci)
    labels = np.asarray(labels)
    probs_a, preds_a = _as_seeds(probs_a, preds_a, "probs_a")
    probs_b, preds_b = _as_seeds(probs_b, preds_b, "probs_b")
    n = labels.shape[0]
    if probs_a.shape[1:] != (n, probs_a.shape[2]) or probs_b.shape[1:] != probs_a.shape[1:]:
        raise UserInputError(
            f"probs_a {probs_a.shape} and probs_b {probs_b.shape} must cover the same {n} samples"
        )
    check_metric(metric, probs_a.shape[2])

    def seed_mean(w: np.ndarray, probs: np.ndarray, preds: np.ndarray) -> np.ndarray:
        vals = [metric_values(metric, w, labels, preds[k], probs[k]) for k in range(len(probs))]
        return np.mean(vals, axis=0)

    ones = np.ones((1, n))
    est_a = float(seed_mean(ones, probs_a, preds_a)[0])
    est_b = float(seed_mean(ones, probs_b, preds_b)[0])
    diffs = replicates(
        lambda w: seed_mean(w, probs_a, preds_a) - seed_mean(w, probs_b, preds_b),
        ResampleWeights(n, n_boot, seed),
    )
    finite = diffs[np.isfinite(diffs)]
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1 - alpha]) if finite.size else (np.nan, np.nan)
    return PairedDifference(
        metric=metric,
        estimate_a=est_a,
        estimate_b=est_b,
        difference=est_a - est_b,
        ci_low=float(lo),
        ci_high=float(hi),
        p_value=bootstrap_p_value(finite),
        ci=ci,
        n_boot=n_boot,
        n_samples=n,
        n_seeds_a=len(probs_a),
        n_seeds_b=len(probs_b),
    )


# --- across seeds -------------------------------------------------------------------------------
def seed_bands(
    table: pd.DataFrame,
    metric: str,
    *,
    by: str = "method",
    keys: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Mean, SD (ddof = 1), SE and number of seeds of a per-checkpoint metric.

    Args:
        table: one row per checkpoint × cell, e.g. ``metrics.csv``; must hold ``by``, ``keys``
            and ``metric``.
        metric: the column to summarise.
        by: the column naming the method (one group per value).
        keys: the columns of a cell. Default: the cell columns the table has
            (``shift``, ``magnitude``, and ``dataset``, ``normalize`` and
            the group-by column of a ``metrics.csv``), so evaluation sets, normalisations and
            groups are never pooled.

    Returns:
        One row per ``by`` × keys with ``<metric>_mean``, ``<metric>_sd_ddof1`` (NaN for one
        seed), ``<metric>_se`` (= SD/√n_seeds) and ``n_seeds`` (non-missing values), sorted by
        ``by`` then keys.

    Raises:
        UserInputError: a column is missing, or a cell column left out of ``keys`` varies
            within a band (its values would be pooled as if they were seeds).
    """
    keys = list(_cell_columns(table) if keys is None else keys)
    cols = [by, *keys, metric]
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise UserInputError(
            f"column(s) {', '.join(missing)} not in the table; available: "
            f"{', '.join(map(str, table.columns))}"
        )
    _check_not_pooled(table, [by, *keys])
    g = table.groupby([by, *keys], sort=True, dropna=False)[metric]
    out = g.agg(
        **{
            f"{metric}_mean": "mean",
            f"{metric}_sd_ddof1": lambda s: s.std(ddof=1),
            "n_seeds": "count",
        }
    ).reset_index()
    out[f"{metric}_se"] = out[f"{metric}_sd_ddof1"] / np.sqrt(out["n_seeds"])
    return out[[by, *keys, f"{metric}_mean", f"{metric}_sd_ddof1", f"{metric}_se", "n_seeds"]]


def _cell_columns(table: pd.DataFrame) -> list[str]:
    """The columns of ``table`` that tell its cells apart (besides the checkpoint).

    ``shift``, ``magnitude``, ``dataset`` and ``normalize`` when present, and in a
    ``metrics.csv`` (``normalize`` … ``n``) the group-by column between ``normalize`` and ``n``.
    """
    names = list(map(str, table.columns))
    found = [c for c in ("shift", "magnitude", "dataset", "normalize") if c in names]
    if "normalize" in names and "n" in names:
        found += names[names.index("normalize") + 1 : names.index("n")]
    return found


def _check_not_pooled(table: pd.DataFrame, band: list[str]) -> None:
    """Every cell column outside ``band`` must be constant within each band."""
    for column in _cell_columns(table):
        if column in band:
            continue
        values = table.groupby(band, sort=False, dropna=False)[column].nunique(dropna=False)
        if len(values) and values.max() > 1:
            raise UserInputError(
                f"column {column!r} varies within a band of {' × '.join(band)}; add it to keys "
                f"or keep one {column} (e.g. table[table[{column!r}] == …])"
            )


# --- seed ensembles ------------------------------------------------------------------------------
def ensemble_probs(probs: np.ndarray) -> np.ndarray:
    """Seed ensemble: mean class probability over seeds, ``[seeds, n, C] -> [n, C]``."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 3:
        raise UserInputError(f"probs must be [seeds, n, C]; got shape {probs.shape}")
    return probs.mean(axis=0)


def ensemble_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    metrics: Sequence[str] | None = None,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, BootstrapResult]:
    """Metrics of the seed ensemble (mean probability over seeds; pred = argmax) with CIs.

    Args:
        labels: true class per sample ``[n]``.
        probs: ``[seeds, n, C]`` probabilities of the seeds of one method.
        metrics: metrics to compute (default: all defined for the number of classes).
        n_boot, ci, seed: percentile bootstrap over samples.

    Returns:
        ``{metric: BootstrapResult}``; for binary tasks also ``auroc_delong``, the AUROC with
        DeLong's asymptotic interval (``replicates`` empty, ``method = "delong"``).
    """
    labels = np.asarray(labels)
    mean_probs = ensemble_probs(probs)
    preds = mean_probs.argmax(axis=1)
    num_classes = mean_probs.shape[1]
    if metrics is None:
        metrics = [m for m in METRICS if m != "recall" or num_classes == 2]
    out: dict[str, BootstrapResult] = {}
    for metric in metrics:
        check_metric(metric, num_classes)
        out[metric] = bootstrap_ci(
            lambda w, y, p, pr, metric=metric: metric_values(metric, w, y, p, pr),
            labels,
            preds,
            mean_probs,
            n_boot=n_boot,
            ci=ci,
            seed=seed,
        )
    if num_classes == 2 and len(np.unique(labels)) == 2:
        auc, lo, hi = delong_auc_ci(labels, mean_probs[:, 1], ci=ci)
        out["auroc_delong"] = BootstrapResult(
            auc, lo, hi, float("nan"), "delong", ci, 0, 0, np.array([])
        )
    return out


# --- robustness summaries ------------------------------------------------------------------------
def _sorted_curve(magnitudes: Sequence[float], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mags = np.asarray(magnitudes, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if mags.ndim != 1 or values.shape[-1] != mags.size or mags.size == 0:
        raise UserInputError(
            f"values [..., M] must match magnitudes [M]; got {values.shape} and {mags.shape}"
        )
    if np.unique(mags).size != mags.size:
        raise UserInputError(f"magnitudes must be distinct; got {mags.tolist()}")
    order = np.argsort(mags)
    return mags[order], values[..., order]


def normalised_area(magnitudes: Sequence[float], values: np.ndarray) -> np.ndarray:
    """Trapezoid area under ``values(magnitude)`` divided by the magnitude range.

    ``(1 / (m_max − m_min)) · Σ_i (m_{i+1} − m_i) (v_i + v_{i+1}) / 2`` over sorted magnitudes;
    with a single magnitude, that value. ``values`` is ``[..., M]``; returns ``[...]``.
    """
    mags, vals = _sorted_curve(magnitudes, values)
    if mags.size == 1:
        return vals[..., 0]
    return np.trapezoid(vals, mags, axis=-1) / (mags[-1] - mags[0])


def robustness_summary(
    magnitudes: Sequence[float],
    values: np.ndarray,
    identity: float | None,
    higher_is_better: bool = True,
) -> dict[str, np.ndarray]:
    """``sweep_mean``, ``worst``, ``clean`` and ``drop`` of curves ``values [..., M]``.

    ``clean`` and ``drop`` are NaN when ``identity`` is None or not among the magnitudes.
    Definitions: see the module docstring. With ``higher_is_better=False`` (an error such as
    ECE) ``worst`` is the maximum and ``drop = worst − clean``, so drop ≥ 0 is a degradation in
    both directions.
    """
    mags, vals = _sorted_curve(magnitudes, values)
    worst = vals.min(axis=-1) if higher_is_better else vals.max(axis=-1)
    if identity is not None and np.any(mags == identity):
        clean = vals[..., int(np.flatnonzero(mags == identity)[0])]
    else:
        clean = np.full(worst.shape, np.nan)
    return {
        "sweep_mean": normalised_area(mags, vals),
        "worst": worst,
        "clean": clean,
        "drop": clean - worst if higher_is_better else worst - clean,
    }


def corruption_error(
    magnitudes: Sequence[float],
    values: np.ndarray,
    baseline_values: np.ndarray,
    identity: float | None,
    higher_is_better: bool = True,
) -> np.ndarray:
    """Corruption error relative to a baseline curve.

    ``CE = Σ_{m ≠ identity} (1 − values_m) / Σ_{m ≠ identity} (1 − baseline_m)`` — errors summed
    over the shifted magnitudes (the identity is left out, as clean error is not a corruption
    error) and divided by the baseline's. ``values`` is ``[..., M]``, ``baseline_values`` ``[M]``
    (or broadcastable); returns ``[...]``; NaN if the baseline makes no error. With
    ``higher_is_better=False`` the metric is itself an error (e.g. ECE) and is summed as is:
    ``CE = Σ values_m / Σ baseline_m``; < 1 is better than the baseline either way.
    """
    mags, vals = _sorted_curve(magnitudes, values)
    _, base = _sorted_curve(magnitudes, baseline_values)
    keep = mags != identity if identity is not None else np.ones(mags.size, bool)
    if not keep.any():
        keep = np.ones(mags.size, bool)
    if higher_is_better:
        vals, base = 1.0 - vals, 1.0 - base
    err = vals[..., keep].sum(axis=-1)
    base_err = base[..., keep].sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(base_err > 0, err / np.where(base_err > 0, base_err, 1.0), np.nan)
