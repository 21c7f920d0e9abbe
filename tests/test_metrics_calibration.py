"""ece, brier, nll in metrics.csv: against direct formulas written here and scikit-learn, with
CIs against a slow bootstrap that materialises the same resamples (issue 10 item 4)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from _synthetic import synthetic_predictions
from _synthetic_v2 import write_run_v2
from sklearn.metrics import brier_score_loss, log_loss

from shiftbench.errors import UserInputError
from shiftbench.metrics import METRICS, cell_metrics
from shiftbench.run import rundir
from shiftbench.run.metrics_step import compute_run_metrics
from shiftbench.stats import check_metric, metric_values

SHIFTS = {"blur": (0.0, 2.0), "noise": (0.0, 0.5)}
N_BOOT, SEED, N = 40, 5, 36
CALIBRATION = ("ece", "brier", "nll")


def ece_loop(labels: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """Guo et al.'s top-label ECE, one sample at a time: bins (k/K, (k+1)/K], 0 in the first."""
    members: dict[int, list[int]] = {}
    for i in range(len(labels)):
        conf = float(max(probs[i]))
        k = next(k for k in range(n_bins) if conf <= (k + 1) / n_bins or k == n_bins - 1)
        members.setdefault(k, []).append(i)
    total = 0.0
    for idx in members.values():
        acc = sum(int(np.argmax(probs[i]) == labels[i]) for i in idx) / len(idx)
        conf = sum(float(max(probs[i])) for i in idx) / len(idx)
        total += len(idx) / len(labels) * abs(acc - conf)
    return total


def brier_loop(labels: np.ndarray, probs: np.ndarray) -> float:
    c = probs.shape[1]
    return sum(
        sum((probs[i, k] - (labels[i] == k)) ** 2 for k in range(c)) for i in range(len(labels))
    ) / len(labels)


def nll_loop(labels: np.ndarray, probs: np.ndarray) -> float:
    eps = np.finfo(np.float64).eps
    return -sum(math.log(min(max(probs[i, labels[i]], eps), 1.0)) for i in range(len(labels))) / (
        len(labels)
    )


DIRECT = {"ece": ece_loop, "brier": brier_loop, "nll": nll_loop}


def _run(tmp_path, class_names):
    """A small format-2 run directory, its predictions table and probability columns."""
    table = synthetic_predictions(
        n_samples=N, seeds=(0, 1), shifts=SHIFTS, class_names=class_names, sample_id_offset=0
    )
    run_dir = write_run_v2(tmp_path / "run", table)
    manifest = json.loads((run_dir / rundir.MANIFEST).read_text())
    manifest["checkpoints"] = [
        {"name": r.checkpoint, "meta": {"method": r.method, "seed": int(r.seed)}}
        for r in table.drop_duplicates("checkpoint").itertuples()
    ]
    (run_dir / rundir.MANIFEST).write_text(json.dumps(manifest))
    return run_dir, table, [c for c in table.columns if c.startswith("prob_")]


@pytest.mark.parametrize("class_names", [("Normal", "OSCC"), ("A", "B", "C")])
def test_metrics_csv_calibration_equals_direct_formulas_sklearn_and_a_slow_bootstrap(
    tmp_path, class_names
):
    run_dir, table, prob_cols = _run(tmp_path, class_names)
    got = compute_run_metrics(run_dir, n_boot=N_BOOT, seed=SEED)
    # column order of the contract: ... recall(+ci) (binary only), ece, brier, nll (+ci), meta
    columns = list(got.columns)
    names = [m for m in METRICS if m != "recall" or len(class_names) == 2]
    assert columns[columns.index("n") + 1 : columns.index("method")] == [
        m + s for m in names for s in ("", "_ci_low", "_ci_high")
    ]
    idx = np.random.default_rng(SEED).integers(0, N, size=(N_BOOT, N))  # the documented draw
    for row in got.to_dict("records"):
        src = table[(table["checkpoint"] == row["checkpoint"]) & (table["shift"] == row["shift"])]
        cell = src[src["magnitude"] == row["magnitude"]].sort_values("sample_id")
        labels = cell["label"].to_numpy()
        probs = cell[prob_cols].to_numpy(np.float64)  # the stored float32, widened
        assert row["n"] == N
        for name, direct in DIRECT.items():
            assert row[name] == pytest.approx(direct(labels, probs), rel=1e-12, abs=1e-15)
            boots = [direct(labels[i], probs[i]) for i in idx]
            lo, hi = np.quantile(boots, [0.025, 0.975])
            assert row[f"{name}_ci_low"] == pytest.approx(lo, rel=1e-9)
            assert row[f"{name}_ci_high"] == pytest.approx(hi, rel=1e-9)
        # scikit-learn (which wants rows summing to 1 in float64; stored float32 sums are off by
        # ~1e-7): the multi-class Brier score (unscaled), the binary one (× 2), the log loss
        c = len(class_names)
        p = probs / probs.sum(axis=1, keepdims=True)
        ref = brier_score_loss(labels, p, labels=list(range(c)), scale_by_half=False)
        assert row["brier"] == pytest.approx(ref, rel=1e-6)
        if c == 2:
            assert row["brier"] == pytest.approx(2 * brier_score_loss(labels, p[:, 1]), rel=1e-6)
        assert row["nll"] == pytest.approx(log_loss(labels, p, labels=list(range(c))), rel=1e-6)


def test_accuracy_to_recall_are_unchanged_by_the_calibration_columns():
    """Same cell, same seed: the classification metrics equal their own slow bootstrap, so the
    new columns did not change the resamples (their order or count)."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 30)
    p1 = np.clip(0.5 + 0.3 * (2 * labels - 1) + 0.3 * rng.normal(size=30), 0.01, 0.99)
    probs = np.stack([1 - p1, p1], axis=1)
    out = cell_metrics(labels, probs, n_boot=N_BOOT, seed=SEED)
    idx = np.random.default_rng(SEED).integers(0, 30, size=(N_BOOT, 30))
    acc = [np.mean(probs[i].argmax(1) == labels[i]) for i in idx]
    assert (out["accuracy_ci_low"], out["accuracy_ci_high"]) == pytest.approx(
        tuple(np.quantile(acc, [0.025, 0.975])), rel=1e-12
    )
    assert list(out)[1:] == [m + s for m in METRICS for s in ("", "_ci_low", "_ci_high")]


def test_probability_zero_on_the_true_class_is_clipped_like_sklearn():
    labels = np.array([1, 0, 1, 0])
    probs = np.array([[1.0, 0.0], [0.3, 0.7], [0.2, 0.8], [0.6, 0.4]])  # a certain mistake
    out = cell_metrics(labels, probs, n_boot=20, seed=0)
    assert out["nll"] == pytest.approx(log_loss(labels, probs), rel=1e-12)
    assert out["nll"] == pytest.approx(nll_loop(labels, probs), rel=1e-12)
    assert math.isfinite(out["nll_ci_high"]) and out["nll_ci_high"] <= -math.log(2**-52)
    assert out["brier"] == pytest.approx(brier_loop(labels, probs), rel=1e-12)


def test_degenerate_cells():
    # one class only: AUROC undefined, the calibration errors defined (with CIs)
    labels = np.zeros(6, dtype=int)
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.95, 0.05], [0.5, 0.5], [0.7, 0.3]])
    out = cell_metrics(labels, probs, n_boot=30, seed=1)
    assert math.isnan(out["auroc"])
    for name, direct in DIRECT.items():
        assert out[name] == pytest.approx(direct(labels, probs), rel=1e-12)
        assert out[f"{name}_ci_low"] <= out[name] <= out[f"{name}_ci_high"]
    # no resamples: point estimates, NaN intervals; no samples: only n
    out = cell_metrics(labels, probs, n_boot=0)
    assert math.isfinite(out["ece"]) and math.isnan(out["ece_ci_low"])
    assert cell_metrics(np.zeros(0, int), np.zeros((0, 2))) == {"n": 0.0}
    # a NaN probability (a broken model) gives NaN, not a number
    bad = probs.copy()
    bad[0] = np.nan
    out = cell_metrics(labels, bad, n_boot=10)
    assert math.isnan(out["brier"]) and math.isnan(out["brier_ci_low"])


def test_stats_accept_the_calibration_names_and_refuse_unknown_ones():
    labels = np.array([0, 1, 1, 0, 1])
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.5, 0.5], [0.1, 0.9]])
    w = np.array([[1, 2, 0, 1, 1], [1, 1, 1, 1, 1]], dtype=float)
    for name, direct in DIRECT.items():
        check_metric(name, 3)
        got = metric_values(name, w, labels, probs.argmax(1), probs)
        rows = np.repeat(np.arange(5), w[0].astype(int))
        assert got[0] == pytest.approx(direct(labels[rows], probs[rows]), rel=1e-12)
        assert got[1] == pytest.approx(direct(labels, probs), rel=1e-12)
    with pytest.raises(UserInputError, match=r"unknown metric 'ecee'; valid metrics: .*nll$"):
        check_metric("ecee", 2)
    assert set(rundir.METRIC_NAMES) <= rundir.RESERVED
    assert {"ece_ci_low", "brier_ci_high", "nll"} <= rundir.RESERVED


def test_metrics_step_with_group_by_keeps_calibration_per_group(tmp_path):
    run_dir, table, prob_cols = _run(tmp_path, ("Normal", "OSCC"))
    samples = pd.read_parquet(run_dir / rundir.SAMPLES)
    samples["site"] = np.where(samples["sample_id"] % 3 == 0, "a", "b")
    samples.to_parquet(run_dir / rundir.SAMPLES, index=False)
    got = compute_run_metrics(run_dir, n_boot=10, seed=SEED, group_by="site")
    row = got[(got["site"] == "a")].iloc[0]
    cell = table[(table["checkpoint"] == row["checkpoint"]) & (table["shift"] == row["shift"])]
    cell = cell[(cell["magnitude"] == row["magnitude"]) & (cell["sample_id"] % 3 == 0)]
    cell = cell.sort_values("sample_id")
    labels, probs = cell["label"].to_numpy(), cell[prob_cols].to_numpy(np.float64)
    assert row["n"] == len(cell) == 12
    assert row["ece"] == pytest.approx(ece_loop(labels, probs), rel=1e-12, abs=1e-15)
