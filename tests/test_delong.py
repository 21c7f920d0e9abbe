"""DeLong's test vs pROC's published numbers, a slow O(n²) implementation and scikit-learn."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from shiftbench.delong import delong_auc_ci, delong_components, delong_covariance, delong_test
from shiftbench.errors import UserInputError


def slow_delong(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) straight from the definition: O(m·n) kernel, structural components.

    ψ(x, y) = 1 if x > y, ½ if x = y, 0 otherwise; V10_i = mean_j ψ(X_i, Y_j),
    V01_j = mean_i ψ(X_i, Y_j); S = cov(V10)/m + cov(V01)/n.
    """
    scores = np.atleast_2d(scores)
    pos, neg = scores[:, labels == 1], scores[:, labels == 0]
    m, n = pos.shape[1], neg.shape[1]
    k = scores.shape[0]
    v10 = np.zeros((k, m))
    v01 = np.zeros((k, n))
    for r in range(k):
        psi = np.zeros((m, n))
        for i in range(m):
            for j in range(n):
                x, y = pos[r, i], neg[r, j]
                psi[i, j] = 1.0 if x > y else (0.5 if x == y else 0.0)
        v10[r] = psi.mean(axis=1)
        v01[r] = psi.mean(axis=0)
    auc = v10.mean(axis=1)
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return auc, s10 / m + s01 / n


@pytest.fixture(scope="module")
def asah(shared_dir):
    path = shared_dir / "reference" / "aSAH.csv"
    if not path.exists():
        pytest.skip(f"{path} not found")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    y = np.array([1 if r["outcome"] == "Poor" else 0 for r in rows])
    wfns = np.array([float(r["wfns"]) for r in rows])
    s100b = np.array([float(r["s100b"]) for r in rows])
    return y, wfns, s100b


def test_matches_pROC_published_example(asah):
    # shared/reference/README.md: pROC roc.test(roc(outcome, wfns), roc(outcome, s100b)).
    y, wfns, s100b = asah
    r = delong_test(y, wfns, s100b)
    assert r.auc_a == pytest.approx(0.8236789, abs=5e-8)
    assert r.auc_b == pytest.approx(0.7313686, abs=5e-8)
    assert r.z == pytest.approx(2.20898359144091, rel=1e-10)
    assert r.p_value == pytest.approx(0.0271757822291882, rel=1e-10)
    assert r.ci_low == pytest.approx(0.0104061769564846, rel=1e-9)
    assert r.ci_high == pytest.approx(0.174214419249478, rel=1e-9)
    assert (r.n_positive, r.n_negative) == (41, 72)


def test_pROC_example_also_matches_the_slow_definition(asah):
    y, wfns, s100b = asah
    auc, cov = slow_delong(y, np.stack([wfns, s100b]))
    fast_auc, fast_cov = delong_covariance(y, np.stack([wfns, s100b]))
    np.testing.assert_allclose(fast_auc, auc, rtol=0, atol=1e-14)
    np.testing.assert_allclose(fast_cov, cov, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_equals_slow_on_random_scores_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 90
    y = (rng.random(n) < 0.4).astype(int)
    base = rng.normal(size=n) + 0.8 * y
    scores = np.stack(
        [
            np.round(base + 0.5 * rng.normal(size=n), 1),  # many ties
            np.round(base + 0.9 * rng.normal(size=n), 1),
            rng.integers(0, 4, n).astype(float),  # heavily tied ordinal score
        ]
    )
    auc, cov = slow_delong(y, scores)
    fast_auc, fast_cov = delong_covariance(y, scores)
    np.testing.assert_allclose(fast_auc, auc, atol=1e-14)
    np.testing.assert_allclose(fast_cov, cov, rtol=1e-11, atol=1e-16)
    for r in range(3):
        assert fast_auc[r] == pytest.approx(roc_auc_score(y, scores[r]), abs=1e-14)

    # z and the one-/two-sided p-values from the slow covariance and scipy's normal.
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = (auc[0] - auc[1]) / np.sqrt(var)
    two = delong_test(y, scores[0], scores[1])
    greater = delong_test(y, scores[0], scores[1], alternative="greater")
    less = delong_test(y, scores[0], scores[1], alternative="less")
    assert two.z == pytest.approx(z, rel=1e-10)
    assert two.p_value == pytest.approx(2 * norm.sf(abs(z)), rel=1e-9)
    assert greater.p_value == pytest.approx(norm.sf(z), rel=1e-9)
    assert less.p_value == pytest.approx(norm.cdf(z), rel=1e-9)
    half = norm.ppf(0.975) * np.sqrt(var)
    assert (two.ci_low, two.ci_high) == pytest.approx(
        (z * np.sqrt(var) - half, z * np.sqrt(var) + half)
    )


def test_components_are_the_structural_components():
    rng = np.random.default_rng(7)
    y = np.r_[np.ones(6, int), np.zeros(5, int)]
    s = rng.integers(0, 5, 11).astype(float)
    auc, v10, v01 = delong_components(y, s)
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    np.testing.assert_allclose(v10[0], psi.mean(axis=1), atol=1e-15)
    np.testing.assert_allclose(v01[0], psi.mean(axis=0), atol=1e-15)
    assert auc[0] == pytest.approx(psi.mean(), abs=1e-15)


def test_swapping_classifiers_flips_the_sign_and_keeps_p():
    rng = np.random.default_rng(3)
    y = (rng.random(80) < 0.5).astype(int)
    a, b = rng.normal(size=80) + y, rng.normal(size=80) + 0.3 * y
    ab, ba = delong_test(y, a, b), delong_test(y, b, a)
    assert ab.z == pytest.approx(-ba.z)
    assert ab.p_value == pytest.approx(ba.p_value)
    assert ab.difference > 0 and ab.p_value < 0.05


def test_identical_classifiers_give_no_evidence():
    rng = np.random.default_rng(4)
    y = (rng.random(50) < 0.5).astype(int)
    s = rng.normal(size=50)
    r = delong_test(y, s, s)
    assert r.difference == 0 and r.z == 0 and r.p_value == 1


def test_auc_ci_uses_the_slow_variance():
    rng = np.random.default_rng(5)
    y = (rng.random(70) < 0.4).astype(int)
    s = np.round(rng.normal(size=70) + y, 1)
    auc, cov = slow_delong(y, s)
    est, lo, hi = delong_auc_ci(y, s, ci=0.9)
    half = norm.ppf(0.95) * np.sqrt(cov[0, 0])
    assert est == pytest.approx(auc[0])
    assert (lo, hi) == pytest.approx((auc[0] - half, auc[0] + half))


def test_bad_input_is_a_user_error():
    y = np.array([1, 0, 1, 0, 1])
    with pytest.raises(UserInputError, match="at least 2 positive and 2 negative"):
        delong_test(np.array([1, 1, 1, 0]), np.arange(4.0), np.arange(4.0))
    with pytest.raises(UserInputError, match="alternative"):
        delong_test(y, np.arange(5.0), np.arange(5.0), alternative="bigger")
    with pytest.raises(UserInputError, match="matching labels"):
        delong_test(y, np.arange(4.0), np.arange(4.0))
    with pytest.raises(UserInputError, match="NaN"):
        delong_test(y, np.array([0, 1, np.nan, 2, 3.0]), np.arange(5.0))
