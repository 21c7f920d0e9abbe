"""`shiftbench roc` for C > 2 classes: one-vs-rest curves per class + macro, seed ensembles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _synthetic import synthetic_predictions
from _synthetic_v2 import write_run_v2
from sklearn.metrics import roc_auc_score

import shiftbench.report as report

NAMES = ("a", "b", "c")
PROBS = [f"prob_{n}" for n in NAMES]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return synthetic_predictions(
        n_samples=90, seeds=(0, 1), class_names=NAMES, shifts={"s1": (0.0, 1.0)}
    )


@pytest.fixture(scope="module")
def run_v2(tmp_path_factory, table):
    return write_run_v2(tmp_path_factory.mktemp("mc") / "run", table)


def test_multiclass_roc_matches_sklearn_ovr_macro(run_v2, table, tmp_path):
    res = report.roc(run_v2, shift="s1", magnitude=1.0, out=tmp_path / "roc.png", n_boot=50)
    cell = table[(table["shift"] == "s1") & (table["magnitude"] == 1.0)]
    s = res.summary.set_index(["method", "curve"])
    for method in ("sd", "wd"):
        g = cell[cell["method"] == method]
        ens = g.groupby("sample_id")[PROBS].mean()  # seed ensemble: mean class probabilities
        y = g.groupby("sample_id")["label"].first().loc[ens.index].to_numpy()
        p = ens.to_numpy(np.float32).astype(np.float64)
        want = roc_auc_score(y, p, multi_class="ovr", average="macro")
        assert s.at[(method, "macro"), "auroc"] == pytest.approx(want, abs=1e-6)
        for c, name in enumerate(NAMES):
            want_c = roc_auc_score(y == c, p[:, c])
            assert s.at[(method, name), "auroc"] == pytest.approx(want_c, abs=1e-6)
        lo, hi = s.at[(method, "macro"), "auroc_ci_low"], s.at[(method, "macro"), "auroc_ci_high"]
        assert lo <= s.at[(method, "macro"), "auroc"] <= hi
    assert set(res.curves["curve"]) == {*NAMES, "macro"}
    assert any("DeLong" in n for n in res.notes)
    for key in ("png", "pdf", "csv", "summary"):
        assert res.paths[key].stat().st_size > 0


def test_cli_roc_three_classes(run_v2, tmp_path, cli):
    code, _, err = cli(
        "roc",
        run_v2,
        "--shift",
        "s1",
        "--magnitude",
        "1",
        "--out",
        tmp_path / "r.png",
        "--n-boot",
        "20",
    )
    assert code == 0, err
    auroc = pd.read_csv(tmp_path / "r_auroc.csv")
    assert set(auroc["curve"]) == {*NAMES, "macro"} and len(auroc) == 8
