"""shiftbench.stats vs scipy, scikit-learn, pandas and direct formulas written here."""

from __future__ import annotations

import statistics

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

from shiftbench.errors import UserInputError
from shiftbench.metrics import bootstrap_weights
from shiftbench.stats import (
    bootstrap_ci,
    bootstrap_p_value,
    corruption_error,
    delong_auc_ci,
    ensemble_metrics,
    ensemble_probs,
    metric_values,
    normalised_area,
    paired_bootstrap,
    robustness_summary,
    seed_bands,
)


def weighted_mean(w, x):
    return (w @ x) / w.sum(axis=1)


def scipy_balanced_accuracy(y, p, axis=-1):
    """Vectorised balanced accuracy for scipy.stats.bootstrap (mean recall of present classes)."""
    recalls = []
    for c in (0, 1):
        is_c = y == c
        recalls.append(np.sum(is_c & (p == c), axis=axis) / np.sum(is_c, axis=axis))
    return np.nanmean(np.stack(recalls), axis=0)


# --- bootstrap vs scipy.stats.bootstrap ------------------------------------------------------------
@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_bootstrap_ci_of_a_mean_agrees_with_scipy(method):
    x = np.random.default_rng(1).exponential(size=100)  # skewed: BCa ≠ percentile
    ours = bootstrap_ci(weighted_mean, x, n_boot=20_000, method=method, seed=3)
    ref = sps.bootstrap(
        (x,), np.mean, n_resamples=20_000, method="BCa" if method == "bca" else method, rng=4
    )
    se = ref.standard_error
    # Monte-Carlo SD of a 2.5 % quantile with B = 20,000 is ≈ 0.03 SE per implementation;
    # 0.15 SE is ~4 SDs of the difference of two independent runs.
    assert ours.ci_low == pytest.approx(ref.confidence_interval.low, abs=0.15 * se)
    assert ours.ci_high == pytest.approx(ref.confidence_interval.high, abs=0.15 * se)
    assert ours.se == pytest.approx(se, rel=0.03)
    assert ours.estimate == pytest.approx(x.mean())


def test_bca_moves_the_interval_the_way_scipy_does():
    x = np.random.default_rng(1).exponential(size=100)
    pct = bootstrap_ci(weighted_mean, x, n_boot=20_000, method="percentile", seed=3)
    bca = bootstrap_ci(weighted_mean, x, n_boot=20_000, method="bca", seed=3)
    # Same resamples, so the difference is the BCa correction alone: right skew moves it up.
    assert bca.ci_low > pct.ci_low and bca.ci_high > pct.ci_high


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_paired_bootstrap_of_balanced_accuracy_agrees_with_scipy(method):
    rng = np.random.default_rng(2)
    y = (rng.random(160) < 0.3).astype(int)
    p = np.where(rng.random(160) < 0.8, y, 1 - y)
    ours = bootstrap_ci(
        lambda w, yy, pp: metric_values("balanced_accuracy", w, yy, pp, np.eye(2)[pp]),
        y,
        p,
        n_boot=20_000,
        method=method,
        seed=5,
    )
    ref = sps.bootstrap(
        (y, p),
        scipy_balanced_accuracy,
        paired=True,
        n_resamples=20_000,
        method="BCa" if method == "bca" else method,
        rng=6,
    )
    se = ref.standard_error
    assert ours.estimate == pytest.approx(balanced_accuracy_score(y, p))
    assert ours.ci_low == pytest.approx(ref.confidence_interval.low, abs=0.15 * se)
    assert ours.ci_high == pytest.approx(ref.confidence_interval.high, abs=0.15 * se)


def test_bootstrap_ci_is_seeded_and_uses_the_documented_resamples():
    x = np.random.default_rng(0).normal(size=40)
    a = bootstrap_ci(weighted_mean, x, n_boot=300, seed=9)
    b = bootstrap_ci(weighted_mean, x, n_boot=300, seed=9)
    c = bootstrap_ci(weighted_mean, x, n_boot=300, seed=10)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    idx = np.random.default_rng(9).integers(0, 40, size=(300, 40))
    means = x[idx].mean(axis=1)
    np.testing.assert_allclose(a.replicates, means, rtol=1e-12)
    assert (a.ci_low, a.ci_high) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))


def test_bootstrap_ci_rejects_bad_arguments():
    x = np.arange(5.0)
    with pytest.raises(UserInputError, match="ci must be"):
        bootstrap_ci(weighted_mean, x, ci=95)
    with pytest.raises(UserInputError, match="CI method"):
        bootstrap_ci(weighted_mean, x, method="basic")
    with pytest.raises(UserInputError, match="differ in length"):
        bootstrap_ci(lambda w, a, b: w @ a, x, x[:3])


# --- paired comparisons -----------------------------------------------------------------------------
def _two_methods(n=200, seeds=3, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    difficulty = rng.normal(size=n)

    def probs(signal):
        out = []
        for _ in range(seeds):
            logit = signal * (2 * y - 1) + difficulty + 0.7 * rng.normal(size=n)
            p1 = 1 / (1 + np.exp(-logit))
            out.append(np.stack([1 - p1, p1], axis=1))
        return np.stack(out)

    return y, probs(1.6), probs(1.0)


@pytest.mark.slow  # > 20 s on 2 busy cores; CI runs it (plain `pytest`)
@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "auroc"])
def test_paired_bootstrap_equals_a_loop_over_materialised_resamples(metric):
    y, pa, pb = _two_methods(n=80)
    res = paired_bootstrap(y, pa, pb, metric=metric, n_boot=200, seed=4)
    score = {
        "accuracy": lambda yy, pr: accuracy_score(yy, pr.argmax(1)),
        "balanced_accuracy": lambda yy, pr: balanced_accuracy_score(yy, pr.argmax(1)),
        "auroc": lambda yy, pr: roc_auc_score(yy, pr[:, 1]),
    }[metric]
    idx = np.random.default_rng(4).integers(0, 80, size=(200, 80))  # bootstrap_weights' draw
    diffs = [
        np.mean([score(y[i], p[i]) for p in pa]) - np.mean([score(y[i], p[i]) for p in pb])
        for i in idx
    ]
    est_a = np.mean([score(y, p) for p in pa])
    est_b = np.mean([score(y, p) for p in pb])
    assert res.estimate_a == pytest.approx(est_a, abs=1e-12)
    assert res.difference == pytest.approx(est_a - est_b, abs=1e-12)
    assert (res.ci_low, res.ci_high) == pytest.approx(
        tuple(np.quantile(diffs, [0.025, 0.975])), abs=1e-12
    )
    tail = min(np.sum(np.array(diffs) <= 0), np.sum(np.array(diffs) >= 0))
    assert res.p_value == pytest.approx(min(1.0, 2 * (1 + tail) / 201))
    assert (res.n_seeds_a, res.n_seeds_b, res.n_samples) == (3, 3, 80)


def test_paired_accuracy_interval_matches_the_normal_approximation():
    # For an accuracy difference, d_i = correct_a,i − correct_b,i and SE = sd(d)/√n.
    y, pa, pb = _two_methods(n=600, seeds=1, seed=1)
    res = paired_bootstrap(y, pa[0], pb[0], metric="accuracy", n_boot=5000, seed=2)
    d = (pa[0].argmax(1) == y).astype(float) - (pb[0].argmax(1) == y)
    se = d.std(ddof=1) / np.sqrt(len(d))
    z = sps.norm.ppf(0.975)
    assert res.difference == pytest.approx(d.mean())
    assert res.ci_low == pytest.approx(d.mean() - z * se, abs=0.12 * se * z)
    assert res.ci_high == pytest.approx(d.mean() + z * se, abs=0.12 * se * z)
    p_normal = 2 * sps.norm.sf(abs(d.mean()) / se)
    assert res.p_value == pytest.approx(p_normal, abs=0.01)


def test_paired_bootstrap_of_a_method_with_itself_is_zero_with_p_one():
    y, pa, _ = _two_methods(n=60)
    res = paired_bootstrap(y, pa, pa, n_boot=100)
    assert res.difference == 0 and res.ci_low == 0 and res.ci_high == 0 and res.p_value == 1


def test_bootstrap_p_value_definition():
    reps = np.r_[np.full(10, -1.0), np.full(990, 1.0)]
    assert bootstrap_p_value(reps) == pytest.approx(2 * 11 / 1001)
    assert bootstrap_p_value(np.full(999, 2.0)) == pytest.approx(2 / 1000)
    assert np.isnan(bootstrap_p_value(np.array([np.nan])))


def test_paired_bootstrap_rejects_mismatched_samples():
    y, pa, pb = _two_methods(n=50)
    with pytest.raises(UserInputError, match="same"):
        paired_bootstrap(y, pa, pb[:, :40])
    with pytest.raises(UserInputError, match="unknown metric"):
        paired_bootstrap(y, pa, pb, metric="f1")


# --- seeds ------------------------------------------------------------------------------------------
def test_seed_bands_match_the_statistics_module():
    rows = []
    values = {"sd": [0.8, 0.82, 0.85, 0.79], "wd": [0.7, 0.75, 0.71, 0.73]}
    for method, vals in values.items():
        for s, v in enumerate(vals):
            rows.append({"method": method, "seed": s, "shift": "blur", "magnitude": 3.0, "acc": v})
    rows.append({"method": "solo", "seed": 0, "shift": "blur", "magnitude": 3.0, "acc": 0.6})
    out = seed_bands(pd.DataFrame(rows), "acc").set_index("method")
    assert list(out.columns) == [
        "shift",
        "magnitude",
        "acc_mean",
        "acc_sd_ddof1",
        "acc_se",
        "n_seeds",
    ]
    for method, vals in values.items():
        assert out.at[method, "acc_mean"] == pytest.approx(statistics.mean(vals))
        assert out.at[method, "acc_sd_ddof1"] == pytest.approx(statistics.stdev(vals))
        assert out.at[method, "acc_se"] == pytest.approx(statistics.stdev(vals) / 2)
        assert out.at[method, "n_seeds"] == 4
    assert out.at["solo", "acc_mean"] == 0.6 and np.isnan(out.at["solo", "acc_sd_ddof1"])
    assert out.at["solo", "n_seeds"] == 1


def _metrics_csv(group: bool = False) -> pd.DataFrame:
    """A metrics.csv of 2 seeds × 2 sets × 2 normalisations (× 2 groups), one method."""
    rows = []
    for seed in (0, 1):
        for normalize in ("none", "macenko"):
            for dataset in ("internal", "external"):
                for site in ("a", "b") if group else (None,):
                    ece = 0.1 * seed + (dataset == "external") + 10 * (normalize == "macenko")
                    ece += 100 * (site == "b")
                    row = {"checkpoint": f"s{seed}", "shift": "blur", "magnitude": 1.0}
                    row |= {"dataset": dataset, "normalize": normalize}
                    row |= {"site": site} if group else {}
                    rows.append(row | {"n": 10, "ece": ece, "method": "sd", "seed": seed})
    return pd.DataFrame(rows)


def test_seed_bands_keep_the_sets_and_normalisations_of_metrics_csv_apart():
    out = seed_bands(_metrics_csv(), "ece")
    assert list(out.columns[:5]) == ["method", "shift", "magnitude", "dataset", "normalize"]
    assert len(out) == 4 and (out["n_seeds"] == 2).all()
    got = out.set_index(["dataset", "normalize"])["ece_mean"]
    assert got["internal", "none"] == pytest.approx(0.05)
    assert got["external", "macenko"] == pytest.approx(11.05)


def test_seed_bands_keep_the_groups_of_metrics_csv_apart():
    out = seed_bands(_metrics_csv(group=True), "ece")
    assert "site" in out.columns and len(out) == 8 and (out["n_seeds"] == 2).all()


def test_seed_bands_refuse_to_pool_a_cell_column_left_out_of_keys():
    with pytest.raises(UserInputError, match="'dataset' varies") as e:
        seed_bands(_metrics_csv(), "ece", keys=("shift", "magnitude", "normalize"))
    assert "\n" not in str(e.value)
    one = _metrics_csv().query("dataset == 'internal' and normalize == 'none'")
    assert (seed_bands(one, "ece", keys=("shift", "magnitude"))["n_seeds"] == 2).all()


def test_seed_bands_names_missing_columns():
    with pytest.raises(UserInputError, match="available: method"):
        seed_bands(pd.DataFrame({"method": ["a"]}), "acc")


# --- ensembles --------------------------------------------------------------------------------------
def test_ensemble_metrics_use_the_mean_probability_over_seeds():
    y, pa, _ = _two_methods(n=150, seeds=4)
    res = ensemble_metrics(y, pa, n_boot=500, seed=1)
    mean = pa.mean(axis=0)
    np.testing.assert_allclose(ensemble_probs(pa), mean)
    assert res["accuracy"].estimate == pytest.approx(accuracy_score(y, mean.argmax(1)))
    assert res["auroc"].estimate == pytest.approx(roc_auc_score(y, mean[:, 1]))
    assert res["auroc"].ci_low < res["auroc"].estimate < res["auroc"].ci_high
    assert res["auroc_delong"].estimate == pytest.approx(roc_auc_score(y, mean[:, 1]))
    assert (res["auroc_delong"].ci_low, res["auroc_delong"].ci_high) == pytest.approx(
        delong_auc_ci(y, mean[:, 1])[1:]
    )
    # Bootstrap and DeLong intervals of the same AUROC agree roughly (n = 150).
    width_boot = res["auroc"].ci_high - res["auroc"].ci_low
    width_delong = res["auroc_delong"].ci_high - res["auroc_delong"].ci_low
    assert width_boot == pytest.approx(width_delong, rel=0.2)


def test_metric_values_checks_metric_against_classes():
    probs = np.full((4, 3), 1 / 3)
    with pytest.raises(UserInputError, match="binary tasks only"):
        metric_values("recall", np.ones((1, 4)), np.zeros(4, int), np.zeros(4, int), probs)


# --- robustness summaries ---------------------------------------------------------------------------
def test_normalised_area_by_hand():
    # trapezoids: (0→1) ½(1 + .5)·1 = .75, (1→3) ½(.5 + .5)·2 = 1; range 3 → 1.75 / 3.
    assert normalised_area([0, 1, 3], np.array([1.0, 0.5, 0.5])) == pytest.approx(1.75 / 3)
    # order of the magnitudes does not matter; a constant curve has its constant as area
    assert normalised_area([3, 0, 1], np.array([0.5, 1.0, 0.5])) == pytest.approx(1.75 / 3)
    assert normalised_area([1, 5, 9], np.full(3, 0.8)) == pytest.approx(0.8)
    assert normalised_area([2.0], np.array([0.7])) == pytest.approx(0.7)
    vals = np.array([[1.0, 0.5, 0.5], [0.2, 0.2, 0.2]])
    np.testing.assert_allclose(normalised_area([0, 1, 3], vals), [1.75 / 3, 0.2])


def test_robustness_summary_by_hand():
    s = robustness_summary([1.0, 0.5, 0.0], np.array([0.9, 0.7, 0.6]), identity=1.0)
    assert s["clean"] == pytest.approx(0.9)
    assert s["worst"] == pytest.approx(0.6)
    assert s["drop"] == pytest.approx(0.3)
    assert s["sweep_mean"] == pytest.approx(0.5 * (0.6 + 0.7) * 0.5 + 0.5 * (0.7 + 0.9) * 0.5)
    missing = robustness_summary([1, 2], np.array([0.9, 0.8]), identity=None)
    assert np.isnan(missing["clean"]) and np.isnan(missing["drop"])


def test_corruption_error_by_hand():
    # errors at the non-identity magnitudes 3, 5: (0.2 + 0.4) vs baseline (0.3 + 0.5)
    ce = corruption_error([1, 3, 5], np.array([0.9, 0.8, 0.6]), np.array([0.95, 0.7, 0.5]), 1)
    assert ce == pytest.approx(0.6 / 0.8)
    base = np.array([0.95, 0.7, 0.5])
    assert corruption_error([1, 3, 5], base, base, 1) == pytest.approx(1.0)
    assert np.isnan(corruption_error([1, 3], np.array([1.0, 0.9]), np.array([1.0, 1.0]), 1))


def test_summaries_reject_mismatched_shapes():
    with pytest.raises(UserInputError, match="must match"):
        normalised_area([1, 2, 3], np.ones(2))
    with pytest.raises(UserInputError, match="distinct"):
        normalised_area([1, 1], np.ones(2))


def test_bootstrap_weights_are_shared_with_metrics():
    # stats resamples exactly like shiftbench.metrics, so CIs agree with metrics.csv
    w = bootstrap_weights(30, 10, 2)
    res = bootstrap_ci(weighted_mean, np.arange(30.0), n_boot=10, seed=2)
    np.testing.assert_allclose(res.replicates, w @ np.arange(30.0) / 30)
