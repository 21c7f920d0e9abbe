"""Calibration errors (ECE, Brier, NLL) as report metrics: values and lower-is-better ranking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _synthetic import synthetic_predictions
from _synthetic_v2 import write_run_v2
from sklearn.metrics import brier_score_loss, log_loss

import shiftbench.report as report

PROBS = ["prob_Normal", "prob_OSCC"]


def ece_by_hand(labels: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE, slow loop over the bins ((k−1)/K, k/K], 0 in the first bin."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    total = 0.0
    for k in range(n_bins):
        lo, hi = k / n_bins, (k + 1) / n_bins
        in_bin = (conf > lo) & (conf <= hi) if k else (conf <= hi)
        if in_bin.any():
            total += abs(correct[in_bin].sum() - conf[in_bin].sum())
    return total / labels.size


SCORES = {
    "ece": lambda y, p: ece_by_hand(y, p),
    "brier": lambda y, p: 2 * brier_score_loss(y, p[:, 1]),  # multi-class form = 2× binary
    "nll": lambda y, p: log_loss(y, p, labels=[0, 1]),
}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """The synthetic run with every ``wd`` checkpoint confidently wrong (ECE 1, the worst)."""
    t = synthetic_predictions().copy()
    wd = t["method"] == "wd"
    wrong = 1 - t.loc[wd, "label"].to_numpy()
    t.loc[wd, "pred"] = wrong
    t.loc[wd, "prob_OSCC"] = wrong.astype(float)
    t.loc[wd, "prob_Normal"] = 1.0 - wrong
    return t


@pytest.fixture(scope="module")
def run_v2(tmp_path_factory, table):
    return write_run_v2(tmp_path_factory.mktemp("calib") / "run", table)


# The stored probabilities are float32: they sum to 1 within ~1e-7, tighter than sklearn's check.
@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")
@pytest.mark.parametrize("metric", ["ece", "brier", "nll"])
def test_cell_values_equal_direct_formula(run_v2, table, metric):
    got = report.checkpoint_metrics(run_v2, metric=metric)
    for _, r in got.sample(12, random_state=0).iterrows():
        g = table[
            (table.checkpoint == r.checkpoint)
            & (table["shift"] == r["shift"])
            & (table.magnitude == r.magnitude)
        ]
        p = g[PROBS].to_numpy(np.float32).astype(np.float64)  # as stored in format 2
        # float32 rows sum to 1 only to ~1e-7, so the binary and two-column forms agree to 1e-6
        assert r[metric] == pytest.approx(SCORES[metric](g["label"].to_numpy(), p), abs=1e-6)


@pytest.mark.parametrize("metric", ["ece", "nll"])
def test_leaderboard_ranks_lower_error_first(run_v2, tmp_path, metric):
    res = report.leaderboard(run_v2, out=tmp_path, metric=metric, baseline="wd", n_boot=100)
    t = res.table.set_index("method")
    assert res.table["method"].tolist() == ["sd", "wd"]  # sd is better calibrated
    assert t.at["sd", "clean_mean"] < t.at["wd", "clean_mean"]
    assert t.at["sd", "clean_diff"] < 0  # Δ = method − baseline: negative = better here
    assert t.at["sd", "clean_diff_ci_high"] < 0
    assert t.at["sd", "synth_blur.ce_mean"] < 1 and t.at["wd", "synth_blur.ce_mean"] == 1
    assert t.at["sd", "synth_blur.drop_mean"] >= 0
    if metric == "ece":
        assert t.at["wd", "clean_mean"] == pytest.approx(1.0)
    assert "lower is better" in res.markdown


def test_cli_metric_ece_and_unknown_metric(run_v2, tmp_path, cli):
    code, _, err = cli("leaderboard", run_v2, "--metric", "ece", "--out", tmp_path / "lb")
    assert code == 0, err
    lb = pd.read_csv(tmp_path / "lb" / "leaderboard.csv")
    assert lb["method"].iloc[0] == "sd"
    code, _, err = cli("plot", run_v2, "--metric", "brier", "--out", tmp_path / "p.png")
    assert code == 0, err
    code, _, err = cli("leaderboard", run_v2, "--metric", "f1", "--out", tmp_path / "x")
    assert code == 2 and "unknown metric 'f1'" in err and "ece, brier, nll" in err


def test_figures_spec_with_calibration_metrics(run_v2, tmp_path, cli):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'runs = ["{run_v2.as_posix()}"]\nout = "report"\nbaseline = "wd"\nn_boot = 50\n\n'
        '[[leaderboard]]\nname = "lb"\nmetric = "brier"\n\n'
        '[[plot]]\nname = "fig4"\nmetric = "ece"\n'
    )
    code, _, err = cli("figures", spec)
    assert code == 0, err
    lb = pd.read_csv(next((tmp_path / "report").rglob("leaderboard.csv")))
    assert lb["method"].tolist() == ["sd", "wd"] and (lb["metric"] == "brier").all()
    assert (tmp_path / "report" / "fig4.csv").stat().st_size > 0
