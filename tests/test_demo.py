"""`shiftbench demo --quick`: the one real end-to-end path (train → run → report), in-process."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from shiftbench.checkpoint import load_checkpoint
from shiftbench.demo import QUICK_MAGNITUDES, SHIFTS, demo_data_dir


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """Run the quick demo once through the CLI; later tests inspect and rerun it."""
    from shiftbench.cli import main

    out = tmp_path_factory.mktemp("demo") / "out"
    code = main(["demo", "--quick", "--out", str(out)])
    return code, out


def test_quick_demo_writes_every_artefact(quick_demo):
    code, out = quick_demo
    assert code == 0
    state = json.loads((out / "demo.json").read_text())
    assert state["status"] == "complete" and state["config"]["quick"] is True

    ckpts = sorted((out / "checkpoints").glob("*.pt"))
    assert [p.name for p in ckpts] == ["sd_seed0.pt", "sd_seed1.pt", "wd_seed0.pt", "wd_seed1.pt"]
    meta = load_checkpoint(out / "checkpoints" / "sd_seed1.pt").meta
    assert meta["method"] == "sd" and meta["seed"] == 1 and meta["weight_decay"] == 0.0
    assert load_checkpoint(out / "checkpoints" / "wd_seed0.pt").meta["weight_decay"] > 0

    metrics = pd.read_csv(out / "run" / "metrics.csv")
    assert set(metrics["shift"]) == set(SHIFTS)
    for shift, mags in QUICK_MAGNITUDES.items():
        got = sorted(metrics.loc[metrics["shift"] == shift, "magnitude"].unique())
        assert got == sorted(mags)
    assert set(metrics["method"]) == {"sd", "wd"}
    test_rows = pd.read_csv(demo_data_dir() / "test.csv")
    assert set(metrics["n"]) == {min(48, len(test_rows))}

    # Leaderboard: one row per method in every format, the baseline named.
    board = pd.read_csv(out / "leaderboard" / "leaderboard.csv")
    assert sorted(board["method"]) == ["sd", "wd"]
    for name in ("leaderboard.md", "leaderboard.html"):
        text = (out / "leaderboard" / name).read_text()
        assert "| sd |" in text or "<td>sd</td>" in text, name
        assert "wd" in text and "balanced_accuracy" in text.replace(" ", "_").lower(), name
    # Figure: a real PNG and PDF, and its data table covers every shift and magnitude.
    from PIL import Image

    with Image.open(out / "accuracy_vs_magnitude.png") as im:
        assert im.format == "PNG" and min(im.size) > 200
    assert (out / "accuracy_vs_magnitude.pdf").read_bytes().startswith(b"%PDF-")
    curve = pd.read_csv(out / "accuracy_vs_magnitude.csv")
    for shift, mags in QUICK_MAGNITUDES.items():
        got = sorted(curve.loc[curve["shift"] == shift, "magnitude"].unique())
        assert got == sorted(mags), shift

    # `shiftbench run --ckpt sd_seed0.pt` finds the test split the demo trained beside.
    from shiftbench.defaults import EvalData, recorded_eval_data

    assert recorded_eval_data(meta) == EvalData(demo_data_dir() / "manifest.csv", "test")

    # The summary equals a recomputation from metrics.csv (clean accuracy, mean over seeds).
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    clean = metrics[(metrics["shift"] == "blur") & (metrics["magnitude"] == 1.0)]
    for method, g in clean.groupby("method"):
        assert summary.at[method, "n_seeds"] == 2
        assert summary.at[method, "clean_accuracy_mean"] == pytest.approx(g["accuracy"].mean())


def test_rerun_resumes_and_refuses_to_clobber(quick_demo, cli, tmp_path):
    code, out = quick_demo
    assert code == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").glob("*.pt")}
    code, stdout, err = cli("demo", "--quick", "--out", out)
    assert code == 0, err
    assert "resuming" in stdout and "4 checkpoints reused" in stdout
    assert {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").glob("*.pt")} == stamps

    code, _, err = cli("demo", "--quick", "--seeds", "1", "--out", out)
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    code, _, err = cli("demo", "--quick", "--out", foreign)
    assert code == 2 and "notes.txt" in err
    code, _, err = cli("demo", "--quick", "--out", foreign, "--overwrite")
    assert code == 2 and (foreign / "notes.txt").read_text() == "keep me"

    code, _, err = cli("demo", "--scenario", "nope", "--out", tmp_path / "x")
    assert code == 2 and "cutout" in err


def test_full_config_keeps_the_study_and_spans_every_sweep():
    """Full demo: 3 seeds × (sd, wd), all four shifts, each sweep from identity to strongest."""
    from shiftbench.demo import demo_config
    from shiftbench.registry import get_shift_class

    cfg = demo_config("shifts")
    assert cfg.seeds == (0, 1, 2) and not cfg.quick and cfg.train_limit is cfg.test_limit is None
    assert set(cfg.magnitudes) == set(SHIFTS)
    for name, mags in cfg.magnitudes.items():
        cls = get_shift_class(name)
        assert mags[0] == cls.identity and mags[-1] == cls.magnitudes[-1], name
        assert set(mags) <= set(cls.magnitudes), f"{name}: magnitudes off the default grid"
    cutout = demo_config("cutout")
    assert (cutout.input_size, cutout.epochs, cutout.magnitudes) == (64, 12, None)
