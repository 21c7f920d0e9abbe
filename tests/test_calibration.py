"""Calibration metrics: direct formulas written here, scikit-learn, and the weighted convention."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss

from shiftbench.calibration import (
    CALIBRATION_METRICS,
    DIRECTION,
    brier,
    ece,
    nll,
    weighted_brier,
    weighted_ece,
    weighted_nll,
)
from shiftbench.metrics import bootstrap_weights


def _probs(n: int, c: int, seed: int, sharp: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), labels] += 1.5  # better than chance, not perfectly calibrated
    p = np.exp(logits / sharp)
    return labels, p / p.sum(axis=1, keepdims=True)


def ece_direct(labels, probs, n_bins=15):
    """Guo et al.'s definition, one sample and one bin at a time."""
    n = len(labels)
    total = 0.0
    for k in range(n_bins):
        lo, hi = k / n_bins, (k + 1) / n_bins
        members = []
        for i in range(n):
            conf = max(probs[i])
            if (lo < conf <= hi) or (k == 0 and conf == 0):
                members.append(i)
        if not members:
            continue
        acc = sum(int(np.argmax(probs[i]) == labels[i]) for i in members) / len(members)
        conf_k = sum(max(probs[i]) for i in members) / len(members)
        total += len(members) / n * abs(acc - conf_k)
    return total


@pytest.mark.parametrize("c", [2, 3, 7])
def test_ece_matches_the_direct_formula(c):
    labels, probs = _probs(300, c, seed=c)
    assert ece(labels, probs) == pytest.approx(ece_direct(labels, probs), abs=1e-12)
    assert ece(labels, probs, n_bins=5) == pytest.approx(ece_direct(labels, probs, 5), abs=1e-12)


def test_ece_of_known_cases():
    # always right with confidence 1: perfectly calibrated
    assert ece([0, 1, 1], np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])) == 0.0
    # confidence 0.9 on every sample, right on half: |0.5 − 0.9| = 0.4
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]])
    assert ece([0, 1, 1, 0], p) == pytest.approx(0.4)


@pytest.mark.parametrize("c", [2, 4])
def test_brier_matches_direct_formula_and_sklearn(c):
    labels, probs = _probs(200, c, seed=10 + c)
    direct = np.mean(
        [sum((probs[i, k] - (labels[i] == k)) ** 2 for k in range(c)) for i in range(200)]
    )
    assert brier(labels, probs) == pytest.approx(direct, rel=1e-12)
    ref = brier_score_loss(labels, probs, labels=list(range(c)), scale_by_half=False)
    assert brier(labels, probs) == pytest.approx(ref, rel=1e-12)
    if c == 2:  # twice the usual binary Brier score
        assert brier(labels, probs) == pytest.approx(
            2 * brier_score_loss(labels, probs[:, 1]), rel=1e-12
        )


@pytest.mark.parametrize("c", [2, 5])
def test_nll_matches_direct_formula_and_sklearn(c):
    labels, probs = _probs(200, c, seed=20 + c)
    direct = -np.mean([math.log(probs[i, labels[i]]) for i in range(200)])
    assert nll(labels, probs) == pytest.approx(direct, rel=1e-12)
    assert nll(labels, probs) == pytest.approx(
        log_loss(labels, probs, labels=list(range(c))), rel=1e-12
    )


def test_nll_of_a_confident_mistake_is_finite_like_sklearn():
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert nll([1, 0], probs) == pytest.approx(log_loss([1, 0], probs), rel=1e-12)
    assert math.isfinite(nll([1, 0], probs))


@pytest.mark.parametrize("name", ["ece", "brier", "nll"])
def test_weighted_versions_equal_the_metric_of_the_resampled_data(name):
    labels, probs = _probs(60, 3, seed=5)
    point, weighted = CALIBRATION_METRICS[name]
    w = bootstrap_weights(60, 7, seed=3)
    got = weighted(w, labels, probs)
    assert got.shape == (7,)
    for b in range(7):
        idx = np.repeat(np.arange(60), w[b])  # materialise resample b
        assert got[b] == pytest.approx(point(labels[idx], probs[idx]), rel=1e-12, abs=1e-15)


def test_weighted_versions_match_sklearn_sample_weight():
    labels, probs = _probs(80, 3, seed=8)
    w = np.random.default_rng(1).uniform(0, 2, size=(3, 80))
    for b in range(3):
        assert weighted_brier(w, labels, probs)[b] == pytest.approx(
            brier_score_loss(labels, probs, sample_weight=w[b], labels=[0, 1, 2]), rel=1e-12
        )
        assert weighted_nll(w, labels, probs)[b] == pytest.approx(
            log_loss(labels, probs, sample_weight=w[b], labels=[0, 1, 2]), rel=1e-12
        )


def test_all_zero_weights_give_nan_and_directions_are_lower():
    labels, probs = _probs(10, 2, seed=0)
    zero = np.zeros((1, 10))
    for fn in (weighted_ece, weighted_brier, weighted_nll):
        assert np.isnan(fn(zero, labels, probs)[0])
    assert DIRECTION == {"ece": "lower", "brier": "lower", "nll": "lower"}


def test_bad_shapes_and_labels_are_value_errors():
    with pytest.raises(ValueError, match="probs must be"):
        brier([0, 1], np.ones((3, 2)) / 2)
    with pytest.raises(ValueError, match="class indices"):
        nll([0, 2], np.ones((2, 2)) / 2)
    with pytest.raises(ValueError, match="n_bins"):
        ece([0, 1], np.ones((2, 2)) / 2, n_bins=0)


def test_calibration_metrics_cis_are_percentiles_of_materialised_resamples():
    from shiftbench.calibration import calibration_metrics

    labels, probs = _probs(50, 3, seed=9)
    out = calibration_metrics(labels, probs, n_boot=40, seed=2, ci=0.9)
    rng = np.random.default_rng(2)  # bootstrap_weights' documented draw
    idx = rng.integers(0, 50, size=(40, 50))
    for name, fn in (("ece", ece), ("brier", brier), ("nll", nll)):
        values = [fn(labels[i], probs[i]) for i in idx]
        lo, hi = np.quantile(values, [0.05, 0.95])
        assert out[name] == pytest.approx(fn(labels, probs))
        assert out[f"{name}_ci_low"] == pytest.approx(lo, rel=1e-12)
        assert out[f"{name}_ci_high"] == pytest.approx(hi, rel=1e-12)
    empty = calibration_metrics(labels, probs, n_boot=0)
    assert np.isnan(empty["ece_ci_low"]) and not np.isnan(empty["ece"])


def test_one_weighted_dispatch_shared_by_stats_and_report():
    # One table of the weighted calibration errors: the bootstrap (stats) and the report
    # dispatch on the same object, so a new error cannot be added to one and not the other.
    import shiftbench.calibration as calibration
    import shiftbench.report.replicates as replicates
    import shiftbench.stats as stats

    assert calibration.WEIGHTED == {
        "ece": weighted_ece,
        "brier": weighted_brier,
        "nll": weighted_nll,
    }
    assert stats.WEIGHTED is calibration.WEIGHTED
    assert replicates.WEIGHTED is calibration.WEIGHTED
    assert not hasattr(stats, "_CALIBRATION") and not hasattr(replicates, "_CALIBRATION")
