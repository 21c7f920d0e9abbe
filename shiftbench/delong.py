"""DeLong's test for two correlated AUROCs (fast algorithm of Sun & Xu 2014).

Two classifiers scored on the *same* samples have correlated AUROCs. DeLong, DeLong &
Clarke-Pearson (1988) estimate the covariance of the AUROCs from *structural components*: for
``m`` positives ``X_i`` and ``n`` negatives ``Y_j`` of one classifier with kernel
``ψ(x, y) = 1 if x > y, ½ if x = y, 0 otherwise``,

* ``V10(X_i) = (1/n) Σ_j ψ(X_i, Y_j)`` (one per positive),
* ``V01(Y_j) = (1/m) Σ_i ψ(X_i, Y_j)`` (one per negative),
* ``AUC = mean(V10) = mean(V01)``,
* ``S = S10 / m + S01 / n`` with ``S10``, ``S01`` the sample covariance matrices (ddof = 1)
  of the components over positives and negatives across classifiers.

Sun & Xu (2014, IEEE Signal Processing Letters 21:1389) compute the components from midranks in
``O((m + n) log(m + n))`` instead of the ``O(m·n)`` double sum:
``V10(X_i) = (T_Z(X_i) − T_X(X_i)) / n`` and ``V01(Y_j) = 1 − (T_Z(Y_j) − T_Y(Y_j)) / m``,
where ``T_X``, ``T_Y``, ``T_Z`` are midranks among the positives, the negatives, and all samples.

For two classifiers ``z = (AUC_a − AUC_b) / sqrt(S_aa + S_bb − 2 S_ab)``, compared with the
standard normal. This is what R's ``pROC::roc.test(method = "delong")`` reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata

from shiftbench.errors import UserInputError

__all__ = [
    "ALTERNATIVES",
    "DeLongResult",
    "delong_auc_ci",
    "delong_components",
    "delong_covariance",
    "delong_test",
]

#: ``two-sided``: AUC_a ≠ AUC_b; ``greater``: AUC_a > AUC_b; ``less``: AUC_a < AUC_b.
ALTERNATIVES = ("two-sided", "greater", "less")


def _split(labels: np.ndarray, scores: np.ndarray, positive: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if labels.ndim != 1 or scores.shape[1] != labels.shape[0]:
        raise UserInputError(
            f"scores must be [n] or [k, n] matching labels [n]; got labels {labels.shape}, "
            f"scores {scores.shape}"
        )
    if not np.isfinite(scores).all():
        raise UserInputError("scores contain NaN or infinite values")
    is_pos = labels == positive
    m, n = int(is_pos.sum()), int((~is_pos).sum())
    if m < 2 or n < 2:
        raise UserInputError(
            f"DeLong needs at least 2 positive and 2 negative samples; got {m} and {n}"
        )
    return scores[:, is_pos], scores[:, ~is_pos]


def delong_components(
    labels: np.ndarray, scores: np.ndarray, *, positive: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUROCs and structural components by the midrank algorithm of Sun & Xu (2014).

    Args:
        labels: class index per sample, shape ``[N]``; ``positive`` marks the cases.
        scores: higher = more likely positive; ``[N]`` or ``[k, N]`` for k classifiers.
        positive: label value of the positive class.

    Returns:
        ``(auc [k], v10 [k, m], v01 [k, n])`` for the m positives and n negatives.
    """
    pos, neg = _split(labels, scores, positive)
    m, n = pos.shape[1], neg.shape[1]
    t_x = rankdata(pos, method="average", axis=1)
    t_y = rankdata(neg, method="average", axis=1)
    t_z = rankdata(np.concatenate([pos, neg], axis=1), method="average", axis=1)
    v10 = (t_z[:, :m] - t_x) / n
    v01 = 1.0 - (t_z[:, m:] - t_y) / m
    auc = v10.mean(axis=1)
    return auc, v10, v01


def delong_covariance(
    labels: np.ndarray, scores: np.ndarray, *, positive: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs ``[k]`` and their DeLong covariance matrix ``[k, k]`` (``S10/m + S01/n``)."""
    auc, v10, v01 = delong_components(labels, scores, positive=positive)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10, ddof=1))
    s01 = np.atleast_2d(np.cov(v01, ddof=1))
    return auc, s10 / m + s01 / n


@dataclass(frozen=True)
class DeLongResult:
    """DeLong's test of ``AUC_a − AUC_b`` on the same samples.

    Attributes:
        auc_a, auc_b: the two AUROCs.
        difference: ``auc_a − auc_b``.
        se: standard error of the difference, ``sqrt(S_aa + S_bb − 2 S_ab)``.
        z: ``difference / se``.
        p_value: from the standard normal for ``alternative``.
        ci_low, ci_high: two-sided ``ci`` interval ``difference ± z_{(1+ci)/2} · se`` (reported
            two-sided whatever the alternative).
        alternative: ``two-sided``, ``greater`` (a > b) or ``less`` (a < b).
        ci: coverage of the interval.
        n_positive, n_negative: sample counts.
    """

    auc_a: float
    auc_b: float
    difference: float
    se: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    alternative: str
    ci: float
    n_positive: int
    n_negative: int


def delong_test(
    labels: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    *,
    alternative: str = "two-sided",
    ci: float = 0.95,
    positive: int = 1,
) -> DeLongResult:
    """DeLong's test for two correlated AUROCs measured on the same samples.

    Args:
        labels: class index per sample ``[N]``.
        scores_a, scores_b: scores of the two classifiers ``[N]`` (higher = more positive).
        alternative: ``two-sided`` (default), ``greater`` (AUC_a > AUC_b) or ``less``.
        ci: coverage of the (two-sided) interval of the difference.
        positive: label value of the positive class.

    Returns:
        :class:`DeLongResult`. When both classifiers rank every pair identically the variance of
        the difference is 0: then ``z = 0`` and ``p = 1`` (no evidence of a difference).

    Raises:
        UserInputError: bad shapes, non-finite scores, fewer than 2 samples of a class, or an
            unknown ``alternative``.
    """
    if alternative not in ALTERNATIVES:
        raise UserInputError(
            f"unknown alternative {alternative!r}; valid: {', '.join(ALTERNATIVES)}"
        )
    if not 0.0 < ci < 1.0:
        raise UserInputError(f"ci must be in (0, 1); got {ci}")
    scores = np.stack([np.asarray(scores_a, float), np.asarray(scores_b, float)])
    auc, cov = delong_covariance(labels, scores, positive=positive)
    diff = float(auc[0] - auc[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    if se > 0.0:
        z = diff / se
    else:
        z = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    if alternative == "two-sided":
        p = float(2.0 * norm.sf(abs(z)))
    elif alternative == "greater":
        p = float(norm.sf(z))
    else:
        p = float(norm.cdf(z))
    half = float(norm.ppf(0.5 + ci / 2.0)) * se
    n_pos = int((np.asarray(labels) == positive).sum())
    return DeLongResult(
        auc_a=float(auc[0]),
        auc_b=float(auc[1]),
        difference=diff,
        se=se,
        z=float(z),
        p_value=min(1.0, p),
        ci_low=diff - half,
        ci_high=diff + half,
        alternative=alternative,
        ci=ci,
        n_positive=n_pos,
        n_negative=int(len(labels) - n_pos),
    )


def delong_auc_ci(
    labels: np.ndarray, scores: np.ndarray, *, ci: float = 0.95, positive: int = 1
) -> tuple[float, float, float]:
    """AUROC with DeLong's asymptotic interval ``auc ± z·sqrt(S)``, clipped to [0, 1].

    Returns:
        ``(auc, ci_low, ci_high)``.
    """
    auc, cov = delong_covariance(labels, np.asarray(scores, float), positive=positive)
    half = float(norm.ppf(0.5 + ci / 2.0)) * math.sqrt(max(float(cov[0, 0]), 0.0))
    a = float(auc[0])
    return a, max(0.0, a - half), min(1.0, a + half)
