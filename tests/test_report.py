"""Leaderboards, plots, ROC and figures from stored predictions (synthetic run directories).

Golden files in tests/golden/ pin the numbers of the leaderboard and of the plotted data of the
fixed synthetic run of tests/_synthetic.py. They were generated once and reviewed against the
generator's analytic values (see test_synthetic_numbers_are_plausible) and against the direct
scikit-learn computations below. To regenerate after an intended change:
``SHIFTBENCH_UPDATE_GOLDEN=1 pytest tests/test_report.py`` — and review the diff.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _synthetic import synthetic_predictions
from _synthetic import write_run as write_run_undeclared
from _synthetic_v2 import declare_shifts, write_run_v2
from scipy.stats import norm
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

import shiftbench.report as report
from shiftbench.errors import UserInputError

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parents[1]
UPDATE = os.environ.get("SHIFTBENCH_UPDATE_GOLDEN") == "1"
PROBS = ["prob_Normal", "prob_OSCC"]


def write_run(run_dir: Path, table: pd.DataFrame, **kwargs) -> Path:
    """A format-1 run directory whose manifest records the shifts (identity = first magnitude)."""
    return declare_shifts(write_run_undeclared(run_dir, table, **kwargs), table)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return synthetic_predictions()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, table) -> Path:
    return write_run(tmp_path_factory.mktemp("runs") / "run", table)


@pytest.fixture(scope="module")
def study(run_dir):
    return report.load_runs(run_dir)


def assert_matches_golden(path: Path, name: str) -> None:
    golden = GOLDEN / name
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        shutil.copyfile(path, golden)
    assert golden.exists(), f"missing golden file {golden}; run with SHIFTBENCH_UPDATE_GOLDEN=1"
    got, want = pd.read_csv(path), pd.read_csv(golden)
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    for col in want.columns:
        if pd.api.types.is_numeric_dtype(want[col]):
            # CSVs hold 6 significant digits: allow one unit in the last digit, no more.
            np.testing.assert_allclose(
                got[col].to_numpy(float),
                want[col].to_numpy(float),
                rtol=2e-5,
                atol=1e-12,
                equal_nan=True,
                err_msg=f"{name}: column {col}",
            )
        else:
            assert got[col].astype(str).tolist() == want[col].astype(str).tolist(), col


def per_checkpoint(table: pd.DataFrame, score) -> pd.DataFrame:
    """Metric per checkpoint × shift × magnitude, straight from the rows with scikit-learn."""
    rows = []
    for (ck, method, shift, mag), g in table.groupby(
        ["checkpoint", "method", "shift", "magnitude"]
    ):
        rows.append(
            {
                "checkpoint": ck,
                "method": method,
                "shift": shift,
                "magnitude": mag,
                "value": score(g),
            }
        )
    return pd.DataFrame(rows)


def bal_acc(g):
    return balanced_accuracy_score(g["label"], g["pred"])


def trapezoid_by_hand(mags, vals):
    order = np.argsort(mags)
    m, v = np.asarray(mags, float)[order], np.asarray(vals, float)[order]
    area = sum((m[i + 1] - m[i]) * (v[i] + v[i + 1]) / 2 for i in range(len(m) - 1))
    return area / (m[-1] - m[0])


# --- golden files ----------------------------------------------------------------------------------
def test_leaderboard_matches_golden(study, tmp_path):
    res = report.leaderboard(study, out=tmp_path, baseline="wd", n_boot=500, seed=0)
    assert_matches_golden(res.paths["csv"], "leaderboard_balanced_accuracy.csv")
    assert_matches_golden(res.paths["differences"], "differences_balanced_accuracy.csv")
    assert res.table["method"].tolist() == ["sd", "wd"]  # sd is more robust by construction


def test_plot_data_matches_golden(study, tmp_path):
    sd = report.plot(study, out=tmp_path / "acc.png", metric="accuracy")
    assert_matches_golden(sd.paths["csv"], "plot_accuracy_sd.csv")
    ci = report.plot(study, out=tmp_path / "auc.png", metric="auroc", band="ci", n_boot=300)
    assert_matches_golden(ci.paths["csv"], "plot_auroc_ci.csv")


def test_synthetic_numbers_are_plausible(study, tmp_path):
    """Golden numbers vs the generator's analytic values (hand reasoning, see _synthetic.py).

    For 2 classes the logit margin is a·(1 − decay·s) + noise with SD σ(s) = √(2·(0.81 + 0.25 +
    0.09 s²)), so each class's recall — and the balanced accuracy — is Φ(a(1 − decay·s)/σ(s)).
    """
    res = report.leaderboard(study, out=tmp_path, baseline="wd", n_boot=0)
    t = res.table.set_index("method")
    sweep = np.linspace(0, 1, 6)
    for method, (signal, decay) in {"wd": (2.0, 0.6), "sd": (1.9, 0.3)}.items():
        curve = norm.cdf(
            signal * (1 - decay * sweep) / np.sqrt(2 * (0.81 + 0.25 + 0.09 * sweep**2))
        )
        assert t.at[method, "clean_mean"] == pytest.approx(curve[0], abs=0.03)
        assert t.at[method, "synth_blur.worst_mean"] == pytest.approx(curve[-1], abs=0.03)
        # synth_blur's magnitudes 1, 3, 7, 11, 15, 19 are not evenly spaced in s
        mags = [1, 3, 7, 11, 15, 19]
        assert t.at[method, "synth_blur.sweep_mean_mean"] == pytest.approx(
            trapezoid_by_hand(mags, curve), abs=0.03
        )
        err = (1 - curve[1:]).sum()
        base = (
            1 - norm.cdf(2.0 * (1 - 0.6 * sweep[1:]) / np.sqrt(2 * (1.06 + 0.09 * sweep[1:] ** 2)))
        ).sum()
        assert t.at[method, "synth_blur.ce_mean"] == pytest.approx(err / base, abs=0.12)


# --- numbers vs direct computation -----------------------------------------------------------------
def test_leaderboard_equals_direct_sklearn_computation(study, table, tmp_path):
    res = report.leaderboard(study, out=tmp_path, baseline="wd", n_boot=0)
    t = res.table.set_index("method")
    pc = per_checkpoint(table, bal_acc)
    clean = pc[(pc["shift"] == "synth_blur") & (pc["magnitude"] == 1.0)]
    for method in ("sd", "wd"):
        vals = clean[clean["method"] == method]["value"]
        assert t.at[method, "clean_mean"] == pytest.approx(vals.mean(), abs=1e-12)
        assert t.at[method, "clean_sd_ddof1"] == pytest.approx(vals.std(ddof=1), abs=1e-12)
        assert t.at[method, "n_seeds"] == 5
    assert t.at["sd", "clean_diff"] == pytest.approx(
        clean[clean.method == "sd"]["value"].mean() - clean[clean.method == "wd"]["value"].mean()
    )
    for shift in ("synth_blur", "synth_stain"):
        p = pc[pc["shift"] == shift]
        curves = {ck: g.sort_values("magnitude") for ck, g in p.groupby("checkpoint")}
        area = {ck: trapezoid_by_hand(g["magnitude"], g["value"]) for ck, g in curves.items()}
        worst = {ck: g["value"].min() for ck, g in curves.items()}
        wd_mean = p[p.method == "wd"].groupby("magnitude")["value"].mean()
        ident = 1.0
        base_err = (1 - wd_mean[wd_mean.index != ident]).sum()
        for method in ("sd", "wd"):
            cks = [ck for ck in curves if ck.startswith(method)]
            a = [area[ck] for ck in cks]
            assert t.at[method, f"{shift}.sweep_mean_mean"] == pytest.approx(np.mean(a), abs=1e-12)
            assert t.at[method, f"{shift}.sweep_mean_sd_ddof1"] == pytest.approx(
                np.std(a, ddof=1), abs=1e-12
            )
            assert t.at[method, f"{shift}.worst_mean"] == pytest.approx(
                np.mean([worst[ck] for ck in cks]), abs=1e-12
            )
            ce = [
                (1 - curves[ck][curves[ck]["magnitude"] != ident]["value"]).sum() / base_err
                for ck in cks
            ]
            assert t.at[method, f"{shift}.ce_mean"] == pytest.approx(np.mean(ce), abs=1e-12)
    assert t.at["wd", "synth_blur.ce_mean"] == pytest.approx(1.0)
    overall = (t["synth_blur.sweep_mean_mean"] + t["synth_stain.sweep_mean_mean"]) / 2
    np.testing.assert_allclose(t["overall_sweep_mean"], overall)


@pytest.mark.slow  # > 20 s on 2 busy cores; CI runs it (plain `pytest`)
def test_leaderboard_interval_equals_materialised_paired_resamples(study, table, tmp_path):
    b = 15
    res = report.leaderboard(study, out=tmp_path, baseline="wd", n_boot=b, seed=7)
    t = res.table.set_index("method")
    ids = np.sort(table["sample_id"].unique())
    draws = np.random.default_rng(7).integers(0, ids.size, size=(b, ids.size))
    sub = table[table["shift"] == "synth_blur"]
    by_cell = {key: g.set_index("sample_id") for key, g in sub.groupby(["checkpoint", "magnitude"])}
    mags = sorted(sub["magnitude"].unique())
    diffs_clean, diffs_sweep = [], []
    for draw in draws:
        chosen = ids[draw]  # the same resampled ids for every method, seed and magnitude
        clean, sweep = {"sd": [], "wd": []}, {"sd": [], "wd": []}
        for ck in sorted(sub["checkpoint"].unique()):
            curve = []
            for m in mags:
                g = by_cell[(ck, m)].loc[chosen]
                curve.append(balanced_accuracy_score(g["label"], g["pred"]))
            method = ck.split("_")[0]
            clean[method].append(curve[0])
            sweep[method].append(trapezoid_by_hand(mags, curve))
        diffs_clean.append(np.mean(clean["sd"]) - np.mean(clean["wd"]))
        diffs_sweep.append(np.mean(sweep["sd"]) - np.mean(sweep["wd"]))
    assert (t.at["sd", "clean_diff_ci_low"], t.at["sd", "clean_diff_ci_high"]) == pytest.approx(
        tuple(np.quantile(diffs_clean, [0.025, 0.975])), abs=1e-12
    )
    assert (
        t.at["sd", "synth_blur.sweep_mean_diff_ci_low"],
        t.at["sd", "synth_blur.sweep_mean_diff_ci_high"],
    ) == pytest.approx(tuple(np.quantile(diffs_sweep, [0.025, 0.975])), abs=1e-12)


def test_plot_data_equals_direct_computation(study, table, tmp_path):
    res = report.plot(study, out=tmp_path / "f.png", metric="accuracy")
    pc = per_checkpoint(table, lambda g: accuracy_score(g["label"], g["pred"]))
    want = pc.groupby(["shift", "method", "magnitude"])["value"].agg(["mean", "std", "count"])
    got = res.data.set_index(["shift", "method", "magnitude"])
    for key, row in want.iterrows():
        assert got.at[key, "accuracy_mean"] == pytest.approx(row["mean"], abs=1e-12)
        assert got.at[key, "accuracy_sd_ddof1"] == pytest.approx(row["std"], abs=1e-12)
        assert got.at[key, "band_low"] == pytest.approx(row["mean"] - row["std"], abs=1e-12)
        assert got.at[key, "n_seeds"] == row["count"]
    assert set(got["units"]) == {"magnitude"}  # synthetic shifts are not registered


def test_units_and_identity_come_from_the_manifest(table, tmp_path, monkeypatch):
    import shiftbench.registry as registry

    class FakeBlur:  # what the registry would say: must not be used when the manifest records it
        units = "kernel size (px)"
        identity = 19

    real = registry.get_shift_class
    monkeypatch.setattr(
        registry, "get_shift_class", lambda name: FakeBlur if name == "synth_blur" else real(name)
    )
    only_blur = table[table["shift"] == "synth_blur"]
    run = write_run(tmp_path / "run", only_blur, metrics=False)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["shifts"][0]["units"] = "sigma (px)"
    (run / "manifest.json").write_text(json.dumps(manifest))
    res = report.plot(run, out=tmp_path / "f.png")
    assert set(res.data["units"]) == {"sigma (px)"}
    lb = report.leaderboard(run, out=tmp_path / "lb")
    assert "recorded in the run manifest" in lb.markdown
    clean = per_checkpoint(only_blur[only_blur["magnitude"] == 1.0], bal_acc)
    assert lb.table.set_index("method").at["sd", "clean_mean"] == pytest.approx(
        clean[clean["method"] == "sd"]["value"].mean(), abs=1e-12
    )
    # a format-1 manifest that does not record the shift: the registered shift's axis
    legacy = write_run_undeclared(tmp_path / "legacy", only_blur, metrics=False)
    lb = report.leaderboard(legacy, out=tmp_path / "lb2")
    assert "declared by the registered shift" in lb.markdown
    assert set(report.plot(legacy, out=tmp_path / "g.png").data["units"]) == {"kernel size (px)"}


def test_unknown_identity_is_said_not_guessed(table, tmp_path):
    run = write_run_undeclared(
        tmp_path / "run", table[table["shift"] == "synth_blur"], metrics=False
    )
    with pytest.warns(report.ReportWarning, match="no shift has a known identity"):
        lb = report.leaderboard(run, out=tmp_path / "lb")
    assert "clean_mean" not in lb.table
    assert "synth_blur.drop_mean" not in lb.table
    assert "synth_blur.sweep_mean_mean" in lb.table


def test_multiclass_auroc_is_one_vs_rest_macro(tmp_path):
    names = ("a", "b", "c")
    t = synthetic_predictions(
        n_samples=60, seeds=(0, 1), class_names=names, shifts={"s1": (0.0, 1.0), "s2": (0.0, 2.0)}
    )
    run = write_run(tmp_path / "run", t, metrics=False)
    res = report.leaderboard(run, out=tmp_path / "lb", metric="auroc")
    clean = t[(t["shift"] == "s1") & (t["magnitude"] == 0.0)]
    want = clean.groupby("checkpoint").apply(
        lambda g: roc_auc_score(
            g["label"],
            g[[f"prob_{n}" for n in names]].to_numpy(),
            multi_class="ovr",
            average="macro",
        ),
        include_groups=False,
    )
    got = res.table.set_index("method")["clean_mean"]
    assert got["sd"] == pytest.approx(want[["sd_seed0", "sd_seed1"]].mean(), abs=1e-6)


# --- several run directories -------------------------------------------------------------------------
def test_runs_are_concatenated(table, study, tmp_path):
    one = report.leaderboard(study, out=tmp_path / "one", baseline="wd", n_boot=100)
    a = write_run(tmp_path / "a", table[table["method"] == "wd"], metrics=False)
    b = write_run(tmp_path / "b", table[table["method"] == "sd"], metrics=False)
    two = report.leaderboard([a, b], out=tmp_path / "two", baseline="wd", n_boot=100)
    pd.testing.assert_frame_equal(one.table, two.table)


def test_clashing_checkpoint_names_get_the_run_name(table, tmp_path):
    t = table[table["checkpoint"].isin(["wd_seed0", "sd_seed0"])].copy()
    a = write_run(tmp_path / "a", t[t["method"] == "wd"].assign(checkpoint="model"), metrics=False)
    b = write_run(tmp_path / "b", t[t["method"] == "sd"].assign(checkpoint="model"), metrics=False)
    s = report.load_runs([a, b])
    assert sorted(s.table["checkpoint"].unique()) == ["a/model", "b/model"]


def test_different_test_sets_are_an_error(table, tmp_path, cli):
    wd = table[table["method"] == "wd"]
    sd = table[table["method"] == "sd"]
    a = write_run(tmp_path / "a", wd, metrics=False)
    other_ids = write_run(tmp_path / "ids", sd.assign(sample_id=sd["sample_id"] + 1), metrics=False)
    code, _, err = cli("leaderboard", a, other_ids, "--out", tmp_path / "lb")
    assert code == 2 and "test sets differ" in err and len(err.strip().splitlines()) == 1
    flipped = sd.copy()
    flipped.loc[flipped["sample_id"] == 1003, "label"] = (
        1 - flipped.loc[flipped["sample_id"] == 1003, "label"]
    )
    other_labels = write_run(tmp_path / "labels", flipped, metrics=False)
    code, _, err = cli("plot", a, other_labels, "--out", tmp_path / "f.png")
    assert code == 2 and "sample 1003 has different labels" in err
    fewer = write_run(tmp_path / "fewer", sd[sd["sample_id"] != 1003], metrics=False)
    code, _, err = cli("leaderboard", a, fewer, "--out", tmp_path / "lb")
    assert code == 2 and "test sets differ" in err and "149" in err


# --- CLI ---------------------------------------------------------------------------------------------
def test_cli_leaderboard_writes_md_csv_html(run_dir, tmp_path, cli):
    code, out, err = cli(
        "leaderboard",
        run_dir,
        "--baseline",
        "wd",
        "--out",
        tmp_path / "lb",
        "--n-boot",
        "200",
        "--metric",
        "accuracy",
    )
    assert code == 0, err
    assert "| 1 | sd | 5 |" in out
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert "## Notes" in md and "B = 200" in md and "n = 150 (Normal: " in md
    assert "seeds 0, 1, 2, 3, 4" not in md and "sd: 5 (0, 1, 2, 3, 4)" in md
    html = (tmp_path / "lb" / "leaderboard.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<td>sd</td>" in html
    csv = pd.read_csv(tmp_path / "lb" / "leaderboard.csv")
    assert csv["metric"].unique().tolist() == ["accuracy"]


def test_cli_single_seed_warns_and_still_reports_the_mean(table, tmp_path, cli):
    one_seed = table[table["seed"] == 0]
    run = write_run(tmp_path / "run", one_seed, metrics=False)
    code, out, err = cli(
        "leaderboard", run, "--out", tmp_path / "lb", "--baseline", "wd", "--n-boot", "50"
    )
    assert code == 0
    assert "warning: method 'sd', 'wd' have a single seed" in err and err.count("warning") == 1
    assert "± n/a" in out
    csv = pd.read_csv(tmp_path / "lb" / "leaderboard.csv")
    assert csv["clean_mean"].notna().all() and csv["clean_sd_ddof1"].isna().all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--baseline", "adam"], "unknown baseline 'adam'"),
        (["--by", "optimizer"], "available columns: checkpoint, shift, magnitude"),
        (["--metric", "f1"], "unknown metric 'f1'"),
        (["--metric", "recall", "--by", "checkpoint", "--shifts", "nope"], "shift(s) nope"),
        (["--ci", "95"], "ci must be in (0, 1)"),
    ],
)
def test_cli_bad_options_are_one_line_exit_2(run_dir, tmp_path, cli, args, message):
    code, _, err = cli("leaderboard", run_dir, "--out", tmp_path / "lb", *args)
    assert code == 2
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_cli_bad_run_directories(table, tmp_path, cli):
    code, _, err = cli("leaderboard", tmp_path / "missing", "--out", tmp_path / "lb")
    assert code == 2 and "does not exist" in err
    (tmp_path / "empty").mkdir()
    code, _, err = cli("plot", tmp_path / "empty", "--out", tmp_path / "f.png")
    assert code == 2 and "predictions.parquet not found" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    table.drop(columns=["pred"]).to_parquet(broken / "predictions.parquet")
    code, _, err = cli("leaderboard", broken, "--out", tmp_path / "lb")
    assert code == 2 and "lacks column(s) pred" in err


def test_cli_plot_writes_png_pdf_csv(run_dir, tmp_path, cli):
    code, _, err = cli(
        "plot",
        run_dir,
        "--out",
        tmp_path / "fig.png",
        "--shifts",
        "synth_stain,synth_blur",
        "--metric",
        "balanced_accuracy",
    )
    assert code == 0, err
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "fig.pdf").read_bytes()[:5] == b"%PDF-"
    assert (tmp_path / "fig.png").stat().st_size > 20_000
    data = pd.read_csv(tmp_path / "fig.csv")
    assert data["shift"].unique().tolist() == ["synth_stain", "synth_blur"]  # panel order
    code, _, err = cli("plot", run_dir, "--out", tmp_path / "fig.svg")
    assert code == 2 and ".png or .pdf" in err
    code, _, err = cli("plot", run_dir, "--out", tmp_path / "fig.png", "--band", "iqr")
    assert code == 2 and "unknown band" in err
    code, _, err = cli("plot", run_dir, "--out", tmp_path / "fig.png", "--hue", "lr")
    assert code == 2 and "--hue column 'lr' is not in the predictions" in err


def test_cli_roc_ensembles_and_delong(run_dir, table, tmp_path, cli):
    code, _, err = cli(
        "roc",
        run_dir,
        "--shift",
        "synth_blur",
        "--magnitude",
        "19",
        "--baseline",
        "wd",
        "--out",
        tmp_path / "roc.png",
        "--n-boot",
        "300",
    )
    assert code == 0, err
    summary = pd.read_csv(tmp_path / "roc_auroc.csv").set_index("method")
    cell = table[(table["shift"] == "synth_blur") & (table["magnitude"] == 19)]
    for method in ("sd", "wd"):
        g = cell[cell["method"] == method].groupby("sample_id")
        mean_p = g["prob_OSCC"].mean()
        labels = g["label"].first()
        assert summary.at[method, "auroc"] == pytest.approx(roc_auc_score(labels, mean_p), abs=1e-5)
        assert summary.at[method, "auroc_ci_low"] < summary.at[method, "auroc"]
    assert np.isnan(summary.at["wd", "delong_p"]) and summary.at["sd", "delong_p"] < 0.05
    _assert_real_file(tmp_path / "roc.pdf")
    assert {"fpr", "tpr"} <= set(pd.read_csv(tmp_path / "roc.csv").columns)
    code, _, err = cli(
        "roc", run_dir, "--shift", "synth_blur", "--magnitude", "18", "--out", tmp_path / "roc.png"
    )
    assert code == 2 and "no magnitude 18; available: [1, 3, 7, 11, 15, 19]" in err


# --- figures -----------------------------------------------------------------------------------------
@pytest.mark.slow  # > 20 s on 2 busy cores; CI runs it (plain `pytest`)
def test_figures_is_deterministic(run_dir, tmp_path, cli):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'title = "test"\nruns = ["{run_dir.as_posix()}"]\nout = "report"\nbaseline = "wd"\n'
        "n_boot = 100\n\n"
        '[[leaderboard]]\nname = "lb"\nmetric = "accuracy"\n\n'
        '[[plot]]\nname = "fig4"\nband = "ci"\n\n'
        '[[roc]]\nname = "fig7"\nshift = "synth_stain"\nmagnitude = "strongest"\n'
    )
    code, _, err = cli("figures", spec)
    assert code == 0, err
    outdir = tmp_path / "report"
    first = {p.name: p.read_bytes() for p in outdir.rglob("*") if p.suffix in (".csv", ".md")}
    assert {"leaderboard.csv", "leaderboard.md", "fig4.csv", "fig7.csv", "index.md"} <= set(first)
    assert (outdir / "fig7_auroc.csv").read_text().count("\n") == 3
    assert pd.read_csv(outdir / "fig7_auroc.csv")["magnitude"].tolist() == [0.0, 0.0]
    code, _, err = cli("figures", spec)
    assert code == 0, err
    second = {p.name: p.read_bytes() for p in outdir.rglob("*") if p.suffix in (".csv", ".md")}
    assert first == second
    for name in ("fig4.png", "fig4.pdf", "fig7.png", "fig7.pdf", "lb/leaderboard.html"):
        _assert_real_file(outdir / name)


def _assert_real_file(path):
    """The file is what its suffix says: a PNG/PDF by its magic bytes, HTML with a table."""
    data = path.read_bytes()
    if path.suffix == ".png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5_000, path
    elif path.suffix == ".pdf":
        assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF"), path
    elif path.suffix == ".html":
        assert b"<table" in data and b"</html>" in data, path
    else:
        raise AssertionError(f"no content check for {path}")


def test_figures_spec_errors(run_dir, tmp_path, cli):
    spec = tmp_path / "bad.toml"
    spec.write_text('runs = ["x"]\nout = "r"\n[[plot]]\nname = "a"\ncolour = "red"\n')
    code, _, err = cli("figures", spec)
    assert code == 2 and "unknown key(s) colour" in err
    spec.write_text(f'runs = ["{run_dir.as_posix()}"]\nout = "r"\n[[roc]]\nname = "a"\n')
    code, _, err = cli("figures", spec)
    assert code == 2 and "needs 'shift' and 'magnitude'" in err
    code, _, err = cli("figures", tmp_path / "missing.toml")
    assert code == 2 and "does not exist" in err
    spec.write_text(
        f'runs = ["{run_dir.as_posix()}"]\nout = "r"\nn_boot = "many"\n[[plot]]\nname = "a"\n'
    )
    code, _, err = cli("figures", spec)
    assert code == 2 and "n_boot = 'many' has the wrong type" in err


@pytest.mark.slow  # > 20 s on 2 busy cores; CI runs it (plain `pytest`)
def test_demo_spec_runs_on_a_demo_shaped_run(tmp_path):
    """benchmarks/demo.toml is valid and complete for a run at shiftbench-demo/run."""
    t = synthetic_predictions(
        n_samples=80,
        seeds=(0, 1, 2),
        shifts={"blur": (1, 5, 9, 13, 17), "haematoxylin": (1.0, 0.75, 0.5, 0.25, 0.0)},
    )
    write_run(tmp_path / "shiftbench-demo" / "run", t)
    res = report.figures(REPO / "benchmarks" / "demo.toml", root=tmp_path)
    assert res.index.exists() and res.index.parent == tmp_path / "shiftbench-demo-report"
    for paths in res.outputs.values():
        for p in paths.values():
            assert p.stat().st_size > 0
    manifest = json.loads((tmp_path / "shiftbench-demo" / "run" / "manifest.json").read_text())
    assert manifest["class_names"] == ["Normal", "OSCC"]


def test_python_api_rejects_a_file_as_leaderboard_folder(study, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserInputError, match="is a file"):
        report.leaderboard(study, out=tmp_path / "file")


# --- format 2: streamed cell by cell from the partitioned files ---------------------------------
@pytest.fixture(scope="module")
def run_v2(tmp_path_factory, table) -> Path:
    return write_run_v2(tmp_path_factory.mktemp("v2") / "run", table)


def test_v2_leaderboard_streamed_equals_in_memory(run_v2, study, tmp_path):
    """Goldens come from 0.1's in-memory report; format 1 is read whole-file, format 2 by cell."""
    v2 = report.leaderboard(run_v2, out=tmp_path / "v2", baseline="wd", n_boot=500, seed=0)
    assert_matches_golden(v2.paths["csv"], "leaderboard_balanced_accuracy.csv")
    assert_matches_golden(v2.paths["differences"], "differences_balanced_accuracy.csv")
    v1 = report.leaderboard(study, out=tmp_path / "v1", baseline="wd", n_boot=500, seed=0)
    pd.testing.assert_frame_equal(v1.table, v2.table)
    pd.testing.assert_frame_equal(v1.differences, v2.differences)


def test_v2_plot_streamed_equals_in_memory(run_v2, study, tmp_path):
    v2 = report.plot(run_v2, out=tmp_path / "v2.png", metric="auroc", band="ci", n_boot=300)
    assert_matches_golden(v2.paths["csv"], "plot_auroc_ci.csv")
    v1 = report.plot(study, out=tmp_path / "v1.png", metric="auroc", band="ci", n_boot=300)
    pd.testing.assert_frame_equal(v1.data, v2.data)


def test_v2_roc_streamed_equals_in_memory(run_v2, study, table, tmp_path):
    kw = {"shift": "synth_blur", "magnitude": 19, "baseline": "wd", "n_boot": 200}
    v2 = report.roc(run_v2, out=tmp_path / "v2.png", **kw)
    v1 = report.roc(study, out=tmp_path / "v1.png", **kw)
    pd.testing.assert_frame_equal(v1.summary, v2.summary)
    pd.testing.assert_frame_equal(v1.curves, v2.curves)
    cell = table[(table["shift"] == "synth_blur") & (table["magnitude"] == 19)]
    sd = cell[cell["method"] == "sd"].groupby("sample_id")
    want = roc_auc_score(sd["label"].first(), sd["prob_OSCC"].mean())
    assert v2.summary.set_index("method").at["sd", "auroc"] == pytest.approx(want, abs=1e-6)


def test_v2_figures_streamed_equals_in_memory(run_v2, run_dir, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'runs = ["run"]\nout = "report"\nbaseline = "wd"\nn_boot = 50\n\n'
        '[[leaderboard]]\nname = "lb"\n\n[[plot]]\nname = "fig4"\nband = "ci"\n\n'
        '[[roc]]\nname = "fig7"\nshift = "synth_stain"\nmagnitude = "strongest"\n'
    )
    outputs = {}
    for name, run in (("v1", run_dir), ("v2", run_v2)):
        root = tmp_path / name
        shutil.copytree(run, root / "run")
        report.figures(spec, root=root)
        outputs[name] = {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in (root / "report").rglob("*")
            if p.suffix in (".csv", ".md")
        }
    assert outputs["v1"] == outputs["v2"] and len(outputs["v2"]) == 7


def test_v2_reads_meta_from_checkpoints_parquet(run_v2):
    s = report.load_runs(run_v2)
    assert set(s.meta_columns) == {"method", "seed"}
    assert len(s.checkpoints) == 10 and s.checkpoints["method"].value_counts().to_dict() == {
        "sd": 5,
        "wd": 5,
    }
    assert len(s.table) == 10 * 12 * 150  # the 0.1 wide view, loaded on demand


def test_stored_format1_fixture_is_reported():
    """The run helper's stored 0.1 run directory (real runner output) reads as format 1."""
    fixture = REPO / "tests" / "fixtures" / "run_v1"
    if not fixture.exists():
        pytest.skip("no stored format-1 fixture")
    s = report.load_runs(fixture)
    wide = pd.read_parquet(fixture / "predictions.parquet")
    by = "checkpoint"
    metrics = report.checkpoint_metrics(s, metric="accuracy", by=by)
    for (ck, shift, mag), g in wide.groupby(["checkpoint", "shift", "magnitude"]):
        got = metrics[
            (metrics["checkpoint"] == ck)
            & (metrics["shift"] == shift)
            & (metrics["magnitude"] == mag)
        ]["accuracy"]
        assert got.item() == pytest.approx(accuracy_score(g["label"], g["pred"]), abs=1e-12)


@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "recall", "auroc"])
@pytest.mark.parametrize("num_classes", [2, 3])
def test_batched_checkpoint_values_equal_per_checkpoint_metric(metric, num_classes):
    from shiftbench.metrics import bootstrap_weights
    from shiftbench.report.replicates import checkpoint_values
    from shiftbench.stats import metric_values

    if metric == "recall" and num_classes != 2:
        pytest.skip("recall is binary only")
    rng = np.random.default_rng(3)
    labels = rng.integers(0, num_classes, 80)
    probs = rng.dirichlet(np.ones(num_classes), size=(4, 80))
    preds = probs.argmax(axis=2)
    w = np.vstack([np.ones((1, 80)), bootstrap_weights(80, 25, 1)]).astype(np.float64)
    got = checkpoint_values(metric, w, labels, preds, probs)
    for k in range(4):
        want = metric_values(metric, w, labels, preds[k], probs[k])
        np.testing.assert_array_equal(got[:, k], want)  # exact: integer sums
    direct = balanced_accuracy_score(labels, preds[2]) if metric == "balanced_accuracy" else None
    if direct is not None:
        assert got[0, 2] == pytest.approx(direct, abs=1e-12)
