"""Per-cell metrics vs scikit-learn on explicitly materialised bootstrap resamples."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score, roc_auc_score

from shiftbench.metrics import (
    bootstrap_weights,
    cell_metrics,
    weighted_accuracy,
    weighted_auroc,
    weighted_balanced_accuracy,
    weighted_recall,
)


def _binary(n=120, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = np.clip(0.35 * y + rng.normal(0.4, 0.25, n), 0, 1)
    if ties:
        score = np.round(score, 1)  # many tied scores: the hard case for AUROC
    return y, np.stack([1 - score, score], axis=1)


def _multiclass(n=150, c=4, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y]
    p = np.exp(logits)
    return y, p / p.sum(1, keepdims=True)


def test_bootstrap_weights_are_counts_of_the_documented_draw():
    w = bootstrap_weights(37, 50, seed=3)
    idx = np.random.default_rng(3).integers(0, 37, size=(50, 37))
    for b in range(50):
        assert np.array_equal(w[b], np.bincount(idx[b], minlength=37))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_metrics_equal_sklearn_on_resampled_data(seed):
    y, probs = _binary(seed=seed)
    preds = probs.argmax(1)
    w = bootstrap_weights(len(y), 25, seed=seed)
    idx = np.random.default_rng(seed).integers(0, len(y), size=(25, len(y)))
    acc = weighted_accuracy(w, y, preds)
    bal = weighted_balanced_accuracy(w, y, preds, 2)
    rec = weighted_recall(w, y, preds, 1)
    auc = weighted_auroc(w, y, probs)
    for b in range(25):
        yi, pi, si = y[idx[b]], preds[idx[b]], probs[idx[b], 1]
        assert acc[b] == pytest.approx(accuracy_score(yi, pi), abs=1e-12)
        assert bal[b] == pytest.approx(balanced_accuracy_score(yi, pi), abs=1e-12)
        assert rec[b] == pytest.approx(recall_score(yi, pi), abs=1e-12)
        assert auc[b] == pytest.approx(roc_auc_score(yi, si), abs=1e-12)


def test_weighted_multiclass_auroc_equals_sklearn_ovr_macro():
    y, probs = _multiclass()
    w = bootstrap_weights(len(y), 10, seed=5)
    idx = np.random.default_rng(5).integers(0, len(y), size=(10, len(y)))
    auc = weighted_auroc(w, y, probs)
    bal = weighted_balanced_accuracy(w, y, probs.argmax(1), 4)
    for b in range(10):
        yi, pi = y[idx[b]], probs[idx[b]]
        ref = roc_auc_score(yi, pi, multi_class="ovr", average="macro")
        assert auc[b] == pytest.approx(ref, abs=1e-12)
        assert bal[b] == pytest.approx(balanced_accuracy_score(yi, pi.argmax(1)), abs=1e-12)


def test_cell_metrics_point_estimates_and_percentile_ci_match_a_direct_loop():
    y, probs = _binary(n=90, seed=4)
    m = cell_metrics(y, probs, n_boot=200, seed=11)
    preds = probs.argmax(1)
    assert m["n"] == 90
    assert m["accuracy"] == accuracy_score(y, preds)
    assert m["auroc"] == roc_auc_score(y, probs[:, 1])
    idx = np.random.default_rng(11).integers(0, 90, size=(200, 90))
    accs = [accuracy_score(y[i], preds[i]) for i in idx]
    aucs = [roc_auc_score(y[i], probs[i, 1]) for i in idx]
    lo, hi = np.quantile(accs, [0.025, 0.975])
    assert (m["accuracy_ci_low"], m["accuracy_ci_high"]) == pytest.approx((lo, hi), abs=1e-12)
    lo, hi = np.quantile(aucs, [0.025, 0.975])
    assert (m["auroc_ci_low"], m["auroc_ci_high"]) == pytest.approx((lo, hi), abs=1e-12)
    assert m["accuracy_ci_low"] <= m["accuracy"] <= m["accuracy_ci_high"]


def test_cell_metrics_is_deterministic_and_seed_dependent():
    y, probs = _binary(seed=6)
    assert cell_metrics(y, probs, seed=1) == cell_metrics(y, probs, seed=1)
    assert cell_metrics(y, probs, seed=1) != cell_metrics(y, probs, seed=2)


def test_single_class_cell_has_nan_auroc_not_a_crash():
    y = np.ones(20, dtype=int)
    probs = np.tile([0.3, 0.7], (20, 1))
    m = cell_metrics(y, probs, n_boot=50)
    assert m["accuracy"] == 1.0
    assert np.isnan(m["auroc"]) and np.isnan(m["auroc_ci_low"])
    assert m["recall"] == 1.0


def test_multiclass_has_no_recall_column():
    y, probs = _multiclass(n=60)
    m = cell_metrics(y, probs, n_boot=20)
    assert "recall" not in m and np.isfinite(m["auroc"])


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="probs must be"):
        cell_metrics(np.zeros(3), np.zeros((4, 2)))


def test_blocked_resamples_equal_the_single_draw():
    from shiftbench.metrics import bootstrap_weight_blocks

    whole = bootstrap_weights(41, 300, seed=9)
    blocks = np.concatenate(list(bootstrap_weight_blocks(41, 300, seed=9, block=7)))
    assert np.array_equal(whole, blocks)


def test_resample_weights_are_the_numpy_draws_counted():
    """The one bootstrap core: row b = bincount of default_rng(seed).integers(0, n, (B, n))[b]."""
    from shiftbench.bootstrap import ResampleWeights

    n, b, seed = 37, 90, 4
    draws = np.random.default_rng(seed).integers(0, n, size=(b, n))
    want = np.stack([np.bincount(row, minlength=n) for row in draws])
    assert np.array_equal(bootstrap_weights(n, b, seed), want)
    columns = np.array([3, 0, 36, 5])
    for cache in (False, True):
        weights = ResampleWeights(n, b, seed, with_point=True, cache=cache)
        got = np.concatenate([w for _, w in weights.blocks(columns)])
        assert got.dtype == np.float64 and got.shape == (b + 1, columns.size)
        assert np.array_equal(got[0], np.ones(columns.size))
        assert np.array_equal(got[1:], want[:, columns])


def test_replicates_apply_the_statistic_to_every_row(monkeypatch):
    import shiftbench.bootstrap as core

    monkeypatch.setattr(core, "MAX_BLOCK_ELEMENTS", 50)  # many small blocks
    y, probs = _binary(n=40)
    preds = probs.argmax(axis=1)
    reps = core.replicates(
        lambda w: weighted_accuracy(w, y, preds), core.ResampleWeights(40, 30, 2, with_point=True)
    )
    rows = np.vstack([np.ones((1, 40)), bootstrap_weights(40, 30, 2)])
    want = [
        accuracy_score(np.repeat(y, r.astype(int)), np.repeat(preds, r.astype(int))) for r in rows
    ]
    np.testing.assert_allclose(reps, want, rtol=0, atol=1e-12)
