"""Reports over runs with several evaluation sets (``dataset`` key of samples.parquet).

Independent references: the leaderboard of each set written as its own single-set run
directory; the ladder against scikit-learn metrics on the clean rows of each set and numpy
mean / SD over seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pytest
from _synthetic import synthetic_predictions
from _synthetic_v2 import write_run_v2
from sklearn.metrics import accuracy_score, brier_score_loss, roc_auc_score

import shiftbench.report as report
from shiftbench.errors import UserInputError
from shiftbench.report.cells import sample_filter
from shiftbench.report.study import load_runs

SEEDS = (0, 1, 2)
# Clean rows: the identity magnitude of a shift (the first of its sweep in _synthetic).
CLEAN = ("synth_blur", 1.0)


@pytest.fixture(scope="module")
def sets() -> dict[str, pd.DataFrame]:
    """Two sets in the given order: internal (ids 0..59), then external (ids 60..109), harder."""
    internal = synthetic_predictions(n_samples=60, seeds=SEEDS, sample_id_offset=0, seed=1)
    external = synthetic_predictions(
        n_samples=50,
        seeds=SEEDS,
        sample_id_offset=60,
        seed=2,
        methods={"wd": (1.1, 0.6), "sd": (1.4, 0.3)},
    )
    return {"internal": internal, "external": external}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sets) -> dict[str, object]:
    """The two-set run directory and each set as its own (single-set) run directory."""
    root = tmp_path_factory.mktemp("sets")
    both = pd.concat([t.assign(dataset=name) for name, t in sets.items()], ignore_index=True)
    out = {"two": write_run_v2(root / "two", both)}
    for name, t in sets.items():
        out[name] = write_run_v2(root / name, t)
    return out


def test_study_knows_its_sets_in_given_order(runs, sets):
    study = load_runs(runs["two"])
    assert study.datasets == ["internal", "external"]  # given order, not sorted
    for name, t in sets.items():
        sub = study.for_dataset(name)
        assert sub.datasets == [name]
        np.testing.assert_array_equal(sub.sample_ids, np.unique(t["sample_id"]))
        assert int(sub.grid["n"].sum()) == len(t)
    single = load_runs(runs["internal"])
    assert single.datasets == ["data"]  # no data path in the synthetic manifest
    assert single.for_dataset("data") is single
    with pytest.raises(UserInputError, match="sets: internal, external"):
        study.for_dataset("nope")


def _drop_dataset(df: pd.DataFrame, name: str) -> pd.DataFrame:
    part = df[df["dataset"] == name].drop(columns="dataset")
    return part.reset_index(drop=True)


def test_leaderboard_sections_equal_single_set_runs(runs, tmp_path):
    kw = {"baseline": "wd", "n_boot": 100, "seed": 3}
    got = report.leaderboard(runs["two"], out=tmp_path / "two", **kw)
    assert list(got.table.columns[:2]) == ["dataset", "rank"]
    assert list(pd.unique(got.table["dataset"])) == ["internal", "external"]
    md = got.markdown
    assert md.index("## Data set: internal") < md.index("## Data set: external")
    assert md.index("## Data set: external") < md.index("## Notes")
    page = got.paths["html"].read_text()
    assert "<h2>Data set: internal</h2>" in page and "<h2>Data set: external</h2>" in page
    csv = pd.read_csv(got.paths["csv"])
    assert csv.columns[0] == "dataset"
    for name in ("internal", "external"):
        ref = report.leaderboard(runs[name], out=tmp_path / name, **kw)
        pd.testing.assert_frame_equal(_drop_dataset(got.table, name), ref.table)
        pd.testing.assert_frame_equal(_drop_dataset(got.differences, name), ref.differences)
        section = md.split(f"## Data set: {name}\n\n")[1].split("\n\n")[0]
        ref_table = ref.markdown.split("\n\n")[1]  # after the title: the one table
        assert section == ref_table
        assert "Data set" not in ref.markdown and "dataset" not in ref.table.columns


def test_leaderboard_one_set_by_option(runs, tmp_path):
    got = report.leaderboard(runs["two"], out=tmp_path / "ext", dataset="external", n_boot=0)
    ref = report.leaderboard(runs["external"], out=tmp_path / "ref", n_boot=0)
    assert set(got.table["dataset"]) == {"external"}
    pd.testing.assert_frame_equal(_drop_dataset(got.table, "external"), ref.table)
    assert "## Data set: internal" not in got.markdown


def _direct_ladder(t: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Clean metric per checkpoint by scikit-learn, then numpy mean / SD over seeds."""
    clean = t[(t["shift"] == CLEAN[0]) & (t["magnitude"] == CLEAN[1])]
    rows = []
    for (method, _ck), g in clean.groupby(["method", "checkpoint"]):
        y, p1 = g["label"].to_numpy(), g["prob_OSCC"].to_numpy(np.float64)
        if metric == "accuracy":
            value = accuracy_score(y, g["pred"])
        elif metric == "auroc":
            value = roc_auc_score(y, p1)
        else:  # brier: Σ over classes of (p_c − y_c)², from both stored columns (float32)
            p = g[["prob_Normal", "prob_OSCC"]].to_numpy(np.float64)
            value = float(np.mean(((p - np.eye(2)[y]) ** 2).sum(axis=1)))
            # scikit-learn's binary score agrees to float32 rounding (p_Normal ≈ 1 − p_OSCC)
            assert abs(value - 2 * brier_score_loss(y, p1)) < 1e-6
        rows.append((method, value))
    per_ck = pd.DataFrame(rows, columns=["method", "v"])
    out = per_ck.groupby("method")["v"].agg(
        mean="mean", sd=lambda v: np.std(v.to_numpy(), ddof=1), n="size"
    )
    return out.sort_index()


@pytest.mark.parametrize("metric", ["accuracy", "auroc", "brier"])
def test_ladder_equals_direct_computation(runs, sets, tmp_path, metric):
    res = report.plot(runs["two"], out=tmp_path / "ladder.png", x="dataset", metric=metric)
    data = res.data
    assert list(pd.unique(data["dataset"])) == ["internal", "external"]
    for name, t in sets.items():
        want = _direct_ladder(t, metric)
        got = data[data["dataset"] == name].set_index("method").sort_index()
        assert list(got.index) == list(want.index) == ["sd", "wd"]
        np.testing.assert_allclose(got[f"{metric}_mean"], want["mean"], rtol=1e-9)
        np.testing.assert_allclose(got[f"{metric}_sd_ddof1"], want["sd"], rtol=1e-9)
        np.testing.assert_allclose(got["band_low"], want["mean"] - want["sd"], rtol=1e-9)
        np.testing.assert_allclose(got["band_high"], want["mean"] + want["sd"], rtol=1e-9)
        assert (got["n_seeds"] == len(SEEDS)).all()
        assert (got["n_samples"] == t["sample_id"].nunique()).all()
    for kind in ("png", "pdf", "csv"):
        assert res.paths[kind].is_file()
    written = pd.read_csv(res.paths["csv"])
    np.testing.assert_allclose(written[f"{metric}_mean"], data[f"{metric}_mean"], rtol=1e-5)


def test_ladder_ci_band_is_the_curves_band_at_the_clean_magnitude(runs, tmp_path):
    kw = {"band": "ci", "n_boot": 200, "seed": 5, "metric": "ece"}
    data = report.plot(runs["two"], out=tmp_path / "l.png", x="dataset", **kw).data
    assert (data["band"] == "ci95_bootstrap_samples").all()
    assert (data["band_low"] < data["band_high"]).all()
    for name in ("internal", "external"):
        # Same convention as the magnitude plot: the seed-mean's percentile interval over
        # resamples of the set's test samples (same ids, same seed → same resamples).
        curves = report.plot(runs[name], out=tmp_path / f"{name}.png", shifts=[CLEAN[0]], **kw)
        at_clean = curves.data[curves.data["magnitude"] == CLEAN[1]].set_index("method")
        got = data[data["dataset"] == name].set_index("method")
        for column in ("ece_mean", "band_low", "band_high"):
            np.testing.assert_allclose(got[column], at_clean[column], rtol=1e-12)


def test_ladder_with_one_set(runs, sets, tmp_path):
    data = report.plot(runs["internal"], out=tmp_path / "one.png", x="dataset").data
    assert list(data["dataset"]) == ["data", "data"]
    want = _direct_ladder(sets["internal"], "accuracy")
    np.testing.assert_allclose(data.set_index("method")["accuracy_mean"], want["mean"])


def test_per_set_plot_and_roc_equal_single_set_runs(runs, tmp_path):
    got = report.plot(runs["two"], out=tmp_path / "p.png", dataset="external").data
    ref = report.plot(runs["external"], out=tmp_path / "r.png").data
    pd.testing.assert_frame_equal(got, ref)
    kw = {"shift": "synth_stain", "magnitude": "strongest", "n_boot": 50}
    got = report.roc(runs["two"], out=tmp_path / "roc.png", dataset="internal", **kw)
    ref = report.roc(runs["internal"], out=tmp_path / "roc_ref.png", **kw)
    pd.testing.assert_frame_equal(got.summary, ref.summary)
    metrics = report.checkpoint_metrics(runs["two"], dataset="internal")
    pd.testing.assert_frame_equal(metrics, report.checkpoint_metrics(runs["internal"]))


def test_sets_union_over_runs_and_conflicts(runs, sets, tmp_path):
    # A run without a dataset column on the internal ids takes the set the other run records.
    study = load_runs([runs["two"], runs["internal"]])
    assert study.datasets == ["internal", "external"]
    assert study.for_dataset("internal").checkpoints.shape[0] == 12
    assert study.for_dataset("external").checkpoints.shape[0] == 6
    # Two runs that put the same ids in different sets are refused.
    swapped = pd.concat(
        [sets["internal"].assign(dataset="external"), sets["external"].assign(dataset="internal")]
    )
    other = write_run_v2(tmp_path / "swapped", swapped)
    with pytest.raises(UserInputError, match=r"sample 0 is in set 'internal'.*'external'"):
        load_runs([runs["two"], other])


def test_runs_recording_different_single_sets_are_refused(sets, tmp_path, cli):
    # Run A: --data internal=X, run B: --data external=Y; both number their samples 0..n-1.
    a = sets["internal"][sets["internal"]["seed"] == 0].assign(dataset="internal")
    b = sets["internal"][sets["internal"]["seed"] == 1].assign(dataset="external")
    run_a, run_b = write_run_v2(tmp_path / "A", a), write_run_v2(tmp_path / "B", b)
    match = r"runs .*A \(set 'internal'\) and .*B \(set 'external'\) cover the same sample ids"
    with pytest.raises(UserInputError, match=match):
        load_runs([run_a, run_b])
    with pytest.raises(UserInputError, match="--data internal=… --data external=…"):
        report.leaderboard([run_a, run_b], out=tmp_path / "lb", n_boot=0)
    line = _one_line_error(*cli("leaderboard", run_a, run_b, "--out", tmp_path / "lb")[::2])
    assert "different evaluation sets" in line
    assert not (tmp_path / "lb").exists()
    # Runs recording the same set(s) combine: one set, every checkpoint.
    c = sets["internal"][sets["internal"]["seed"] == 1].assign(dataset="internal")
    study = load_runs([run_a, write_run_v2(tmp_path / "C", c)])
    assert study.datasets == ["internal"]
    assert study.checkpoints.shape[0] == 4
    both = pd.concat([t.assign(dataset=name) for name, t in sets.items()], ignore_index=True)
    seed0, rest = both[both["seed"] == 0], both[both["seed"] != 0]
    study = load_runs([write_run_v2(tmp_path / "s0", seed0), write_run_v2(tmp_path / "s12", rest)])
    assert study.datasets == ["internal", "external"]
    assert study.for_dataset("external").checkpoints.shape[0] == 6
    # A run without the column adopts the one set recorded by the other run, whatever its order.
    old = write_run_v2(tmp_path / "old", sets["internal"][sets["internal"]["seed"] == 2])
    for order in ([old, run_a], [run_a, old]):
        assert load_runs(order).datasets == ["internal"]


def test_leaderboard_warns_once_for_every_set(sets, tmp_path, cli):
    # Single-seed methods in both sets: one fact, one warning (not one per set).
    both = pd.concat([t.assign(dataset=name) for name, t in sets.items()], ignore_index=True)
    run = write_run_v2(tmp_path / "one_seed", both[both["seed"] == 0])
    with pytest.warns(report.ReportWarning) as caught:
        got = report.leaderboard(run, out=tmp_path / "lb", n_boot=0)
    single = [w for w in caught if "single seed" in str(w.message)]
    assert len(single) == 1, [str(w.message) for w in caught]
    assert "single seed" in got.markdown  # the footnote stays
    code, _, err = cli("leaderboard", run, "--out", tmp_path / "lb_cli", "--n-boot", "0")
    assert code == 0, err
    assert err.count("single seed") == 1, err


def _one_line_error(code: int, err: str) -> str:
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_cli_errors_are_one_line(cli, runs, tmp_path):
    two = runs["two"]
    line = _one_line_error(*cli("plot", two, "--out", tmp_path / "p.png")[::2])
    assert "internal, external" in line and "--dataset" in line and "--x dataset" in line
    args = ("--shift", "synth_blur", "--magnitude", "3", "--out", tmp_path / "r.png")
    line = _one_line_error(*cli("roc", two, *args)[::2])
    assert "internal, external" in line and "--dataset" in line
    line = _one_line_error(*cli("plot", two, "--out", tmp_path / "p.png", "--dataset", "nope")[::2])
    assert "'nope'" in line and "internal, external" in line
    line = _one_line_error(
        *cli("leaderboard", two, "--out", tmp_path / "lb", "--dataset", "nope")[::2]
    )
    assert "internal, external" in line
    line = _one_line_error(*cli("plot", two, "--out", tmp_path / "p.png", "--x", "shift")[::2])
    assert "magnitude, dataset" in line
    code, _, err = cli("plot", two, "--out", tmp_path / "l.png", "--x", "dataset")
    assert code == 0, err
    assert (tmp_path / "l.csv").is_file()
    assert not (tmp_path / "p.png").exists()  # nothing written by the refused commands


def test_cli_leaderboard_prints_sections(cli, runs, tmp_path):
    code, out, err = cli("leaderboard", runs["two"], "--out", tmp_path / "lb", "--n-boot", "0")
    assert code == 0, err
    assert "## Data set: internal" in out and "## Data set: external" in out


def test_figures_spec_accepts_dataset_and_x(cli, runs, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f"""
out = "figs"
runs = ["{runs["two"]}"]
n_boot = 20
dataset = "external"

[[leaderboard]]
name = "lb_external"

[[plot]]
name = "ladder"
x = "dataset"
metric = "auroc"

[[plot]]
name = "curves_internal"
dataset = "internal"

[[roc]]
name = "roc_external"
shift = "synth_blur"
magnitude = 19
"""
    )
    code, _, err = cli("figures", spec)
    assert code == 0, err
    figs = tmp_path / "figs"
    assert set(pd.read_csv(figs / "lb_external" / "leaderboard.csv")["dataset"]) == {"external"}
    ladder = pd.read_csv(figs / "ladder.csv")
    assert list(pd.unique(ladder["dataset"])) == ["internal", "external"]
    ref = report.plot(runs["internal"], out=tmp_path / "ref.png").data
    got = pd.read_csv(figs / "curves_internal.csv")
    np.testing.assert_allclose(got["accuracy_mean"], ref["accuracy_mean"], rtol=1e-5)
    assert (figs / "roc_external.png").is_file()
    # An entry can still fail on its own set choice: one line naming the entry.
    bad = tmp_path / "bad.toml"
    bad.write_text(f'out = "x"\nruns = ["{runs["two"]}"]\n\n[[plot]]\nname = "p"\n')
    line = _one_line_error(*cli("figures", bad)[::2])
    assert "'p'" in line and "choose one with dataset = NAME" in line
    assert 'x = "dataset"' in line and "--dataset" not in line and "--x" not in line
    # A bad set name is reported as the spec spells it (the key), not as the CLI option.
    head = f'out = "x"\nruns = ["{runs["two"]}"]\n'
    roc = '[[roc]]\nname = "r"\nshift = "synth_blur"\nmagnitude = 19\n'
    for body, entry in (
        ('dataset = "nope"\n[[plot]]\nname = "p"\n', "[[plot]] 'p'"),
        ('[[plot]]\nname = "p"\ndataset = "nope"\n', "[[plot]] 'p'"),
        (roc + 'dataset = "nope"\n', "[[roc]] 'r'"),
        ('dataset = "nope"\n[[leaderboard]]\nname = "lb"\n', "[[leaderboard]] 'lb'"),
    ):
        bad.write_text(head + body)
        line = _one_line_error(*cli("figures", bad)[::2])
        assert f"{entry}: dataset = 'nope' is not an evaluation set" in line, line
        assert "sets: internal, external" in line and "--dataset" not in line
    bad.write_text(head + '[[plot]]\nname = "l"\nx = "dataset"\ndataset = "internal"\n')
    line = _one_line_error(*cli("figures", bad)[::2])
    assert 'dataset and x = "dataset" exclude each other' in line, line
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("dtype", [pa.int32(), pa.int64()])  # format 2 / format 1 ids
def test_sample_filter_range_and_membership(dtype):
    table = pa.table({"sample_id": pa.array(np.arange(20), dtype)})
    for ids in (np.arange(5, 12), np.array([0, 3, 4, 19])):
        got = pads.dataset(table).to_table(filter=sample_filter(ids))["sample_id"]
        np.testing.assert_array_equal(got.to_numpy(), ids)
