"""``shiftbench demo --scenario frequency --quick``: the frequency-shortcut path end to end
(spurious set → train → I.I.D./O.O.D. runs → spectra → figures), in-process."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from shiftbench.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    from shiftbench.cli import main

    out = tmp_path_factory.mktemp("freq") / "out"
    threads = torch.get_num_threads()
    code = main(["demo", "--scenario", "frequency", "--quick", "--out", str(out), "--threads", "1"])
    assert torch.get_num_threads() == threads
    return code, out


def test_quick_frequency_demo_writes_every_artefact(quick):
    code, out = quick
    assert code == 0
    state = json.loads((out / "demo.json").read_text())
    assert state["status"] == "complete" and state["config"]["scenario"] == "frequency"
    levels = state["config"]["degradation"]
    assert len(levels) >= 3

    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 2 * len(levels)
    for col in ("iid_auroc_mean", "ood_auroc_mean"):
        assert summary[col].between(0, 1).all()
    # every final checkpoint records its degradation; seed 0 at the top level has epoch files
    ck = load_checkpoint(out / "checkpoints" / "sd_d1_seed0.pt")
    assert ck.meta["train_degradation"] == 1.0 and ck.meta["method"] == "sd"
    epochs = sorted((out / "checkpoints").glob("wd_d1_seed0_epoch*.pt"))
    assert [load_checkpoint(p).meta["epoch"] for p in epochs] == [1, 2]

    # the O.O.D. test set really reverses the correlation: ring on every non-target image only
    ood = pd.read_csv(out / "spurious_set" / "ood_test_d1.csv")
    assert (ood["has_artifact"] == (ood["class_name"] != "Normal")).all()

    spec = pd.read_csv(out / "spectra" / "spectrum.csv")
    assert {"train_degradation", "artifact_power", "priority"} <= set(spec.columns)
    assert spec["priority"].between(0, 1).all()
    # the ring's own spectrum peaks at its frequency (0.25 cycles/px ± one ring at 32 px)
    art = spec.groupby("frequency")["artifact_power"].mean()
    assert abs(art.idxmax() - 0.25) <= 1 / 32 + 1e-9
    heat = pd.read_csv(out / "spectra_epochs" / "heatmap_epoch.csv")
    assert sorted(heat["epoch"].unique()) == [1, 2]
    fig2 = pd.read_csv(out / "auroc_vs_degradation.csv")
    assert set(fig2["test"]) == {"iid", "ood"} and np.isin(fig2["degradation"], levels).all()
    for name in ("auroc_vs_degradation", "priority_by_degradation"):
        for ext in ("png", "pdf"):
            assert (out / f"{name}.{ext}").stat().st_size > 1000


def test_frequency_demo_bad_head_is_one_line(cli, tmp_path):
    code, _, err = cli("demo", "--scenario", "frequency", "--head", "x", "--out", tmp_path / "o")
    assert code == 2 and "--head must be one of" in err and "Traceback" not in err
