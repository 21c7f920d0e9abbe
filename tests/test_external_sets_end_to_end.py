"""Issue 10 end to end, through the CLI: several evaluation sets, Macenko, calibration, ladder.

Two sets of real oral tiles (``internal``, ``external``), two methods × two seeds of tiny
checkpoints, one plain run and one ``--normalize macenko`` run, then one leaderboard (a section
per set, groups ``sd``, ``sd+macenko``, ``wd``, ``wd+macenko``) and the ladder of sets with a
calibration metric. The independent reference for the ladder is the runner's own metrics.csv
(computed by the metrics step, not by the report code): the ladder's mean and SD per set and
group must equal numpy's mean and SD (ddof 1) over the seeds' clean-cell values there. Both
paths call the same ECE function (tested against direct loops in tests/test_calibration.py);
what this checks is which rows each set, condition and group gets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _models import CLASS_NAMES, _small_rgb, _write_image, oral_rows, save_tiny_checkpoint
from conftest import HE_IMAGES

TARGET = HE_IMAGES / "histoqc_template1.png"
SETS = ("internal", "external")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The two runs (plain, macenko) of four checkpoints on two sets, through the CLI."""
    from shiftbench.cli import main

    if not TARGET.exists():
        pytest.skip(f"shared data not found at {TARGET}")
    root = tmp_path_factory.mktemp("study")
    rows = oral_rows(6)
    for name, part in zip(SETS, (rows[0::2], rows[1::2]), strict=True):
        for r in part:
            _write_image(
                root / name / r["class_name"] / Path(r["path"]).name, _small_rgb(r["path"], 48)
            )
    ckpts = [
        save_tiny_checkpoint(root / f"{m}{s}.pt", seed=10 * i + s, class_names=CLASS_NAMES,
                             meta={"method": m, "seed": s})
        for i, m in enumerate(("sd", "wd")) for s in range(2)
    ]  # fmt: skip
    common = [a for c in ckpts for a in ("--ckpt", c)]
    common += ["--data", f"internal={root / 'internal'}", "--data", f"external={root / 'external'}"]
    common += ["--shift", "blur", "--magnitudes", "1,5", "--n-boot", "20", "--workers", "0"]
    plain, macenko = root / "plain", root / "macenko"
    assert main(["run", *common, "--out", str(plain)]) == 0
    normalise = ["--normalize", "macenko", "--normalize-target", str(TARGET)]
    assert main(["run", *common, *normalise, "--out", str(macenko)]) == 0
    return root, plain, macenko


def test_metrics_csv_has_one_row_per_set_and_the_condition(study):
    _root, plain, macenko = study
    for run_dir, condition in ((plain, "none"), (macenko, "macenko")):
        metrics = pd.read_csv(run_dir / "metrics.csv")
        assert list(metrics.columns[:5]) == ["checkpoint", "shift", "magnitude", "dataset",
                                             "normalize"]  # fmt: skip
        assert set(metrics["normalize"]) == {condition}
        assert list(pd.unique(metrics["dataset"])) == list(SETS)
        assert len(metrics) == 4 * 2 * 2  # checkpoints × magnitudes × sets
        assert {"ece", "brier", "nll", "ece_ci_low", "nll_ci_high"} <= set(metrics.columns)


def test_one_leaderboard_has_a_section_per_set_and_the_macenko_groups(cli, study):
    root, plain, macenko = study
    code, _, err = cli("leaderboard", plain, macenko, "--out", root / "lb", "--by", "method",
                       "--n-boot", "20")  # fmt: skip
    assert code == 0, err
    text = (root / "lb" / "leaderboard.md").read_text()
    assert text.index("Data set: internal") < text.index("Data set: external")
    table = pd.read_csv(root / "lb" / "leaderboard.csv")
    assert list(pd.unique(table["dataset"])) == list(SETS)
    for name in SETS:
        groups = set(table.loc[table["dataset"] == name, "method"])
        assert groups == {"sd", "sd+macenko", "wd", "wd+macenko"}


def test_ladder_equals_the_runners_clean_metrics(cli, study):
    root, plain, macenko = study
    out = root / "ladder.png"
    code, _, err = cli("plot", plain, macenko, "--x", "dataset", "--metric", "ece", "--out", out)
    assert code == 0, err
    assert out.stat().st_size > 0 and out.with_suffix(".pdf").stat().st_size > 0
    ladder = pd.read_csv(out.with_suffix(".csv"))
    assert list(pd.unique(ladder["dataset"])) == list(SETS)

    clean = pd.concat(pd.read_csv(d / "metrics.csv") for d in (plain, macenko))
    clean = clean[clean["magnitude"] == 1.0]  # blur's identity: the unshifted images
    for (name, condition, method), rows in clean.groupby(["dataset", "normalize", "method"]):
        group = method if condition == "none" else f"{method}+{condition}"
        got = ladder[(ladder["dataset"] == name) & (ladder["method"] == group)]
        assert len(got) == 1 and int(got["n_seeds"].iloc[0]) == 2
        # the report's CSVs hold 6 decimals
        assert got["ece_mean"].iloc[0] == pytest.approx(np.mean(rows["ece"]), abs=5e-7)
        assert got["ece_sd_ddof1"].iloc[0] == pytest.approx(np.std(rows["ece"], ddof=1), abs=5e-7)


def test_a_per_cell_report_asks_which_set(cli, study):
    root, plain, _macenko = study
    code, _, err = cli("plot", plain, "--out", root / "curves.png")
    assert code != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--dataset" in lines[0] and "internal, external" in lines[0]
    assert not (root / "curves.png").exists()
