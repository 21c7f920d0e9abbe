"""The sweep end to end on a tiny timm model and real oral tiles (64 px).

References are independent of the runner: images decoded with cv2, normalised with the formula
written here, the model rebuilt from its seed, shifts called directly; metrics recomputed with
scikit-learn / ``cell_metrics`` on the stored predictions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from _models import CLASS_NAMES, save_tiny_checkpoint, tiny_model, write_oral_csv, write_oral_folder
from conftest import read_rgb
from sklearn.metrics import accuracy_score

import shiftbench
from shiftbench import open_dataset, read_predictions
from shiftbench.errors import DataError, RunError
from shiftbench.metrics import cell_metrics
from shiftbench.run.rundir import open_predictions
from shiftbench.runner import run

TESTS = Path(__file__).resolve().parent
MAGS = [1.0, 0.5, 0.0]  # valid for eosin (identity 1) and sharpen (identity 0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("runner")
    data = write_oral_folder(root / "data", n_per_class=6)
    a = save_tiny_checkpoint(root / "ckpts" / "a.pt", seed=0, class_names=CLASS_NAMES)
    b = save_tiny_checkpoint(root / "ckpts" / "b.pt", seed=1, meta={"method": "wd", "seed": 1})
    return root, data, a, b


@pytest.fixture(scope="module")
def full_run(setup):
    root, data, a, b = setup
    return run(
        [a, b],
        data,
        ["eosin", "sharpen"],
        magnitudes=MAGS,
        out=root / "full",
        batch_size=5,
        workers=0,
        n_boot=50,
        seed=7,
    )


def _reference_probs(data: Path, paths: list[str], seed: int, images=None) -> np.ndarray:
    """softmax(model((x/255 − 0.5)/0.25)) with the model rebuilt from its seed."""
    if images is None:
        images = torch.from_numpy(np.stack([read_rgb(data / p) for p in paths])).permute(0, 3, 1, 2)
    x = (images.float() / 255.0 - 0.5) / 0.25
    with torch.inference_mode():
        return torch.softmax(tiny_model(2, seed)(x), dim=1).numpy()


def test_predictions_table_matches_an_independent_evaluation(setup, full_run):
    _root, data, _a, _b = setup
    pred = full_run.predictions()
    assert list(pred.columns) == [
        "checkpoint",
        "shift",
        "magnitude",
        "sample_id",
        "dataset",  # the evaluation set (one here, named after its folder)
        "path",
        "label",
        "pred",
        "prob_Normal",
        "prob_OSCC",
        "method",
        "seed",
    ]
    assert set(pred["dataset"]) == {data.name}
    assert len(pred) == 2 * 2 * 3 * 12
    assert pred.groupby(["checkpoint", "shift", "magnitude"]).size().eq(12).all()
    ds = open_dataset(data)
    assert (
        list(pred["path"].iloc[:12]) == ds.paths
        and list(pred["label"].iloc[:12]) == ds.labels.tolist()
    )
    probs = pred[["prob_Normal", "prob_OSCC"]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert (pred["pred"] == probs.argmax(axis=1)).all()
    assert pred.loc[pred.checkpoint == "b", "method"].eq("wd").all()

    for name, seed in (("a", 0), ("b", 1)):
        rows = pred[pred.checkpoint == name]
        clean_e = rows[(rows["shift"] == "eosin") & (rows.magnitude == 1.0)]
        clean_s = rows[(rows["shift"] == "sharpen") & (rows.magnitude == 0.0)]
        # the identity is evaluated once and repeated under every shift
        np.testing.assert_array_equal(
            clean_e[["prob_Normal", "prob_OSCC"]].to_numpy(),
            clean_s[["prob_Normal", "prob_OSCC"]].to_numpy(),
        )
        ref = _reference_probs(data, ds.paths, seed)
        np.testing.assert_allclose(clean_e[["prob_Normal", "prob_OSCC"]].to_numpy(), ref, atol=1e-5)
        images = torch.from_numpy(np.stack([read_rgb(data / p) for p in ds.paths])).permute(
            0, 3, 1, 2
        )
        for shift_name, mag in (("eosin", 0.5), ("sharpen", 1.0)):
            shifted = shiftbench.get_shift(shift_name)(images, mag, seed=7, sample_ids=range(12))
            got = rows[(rows["shift"] == shift_name) & (rows.magnitude == mag)]
            np.testing.assert_allclose(
                got[["prob_Normal", "prob_OSCC"]].to_numpy(),
                _reference_probs(data, ds.paths, seed, shifted),
                atol=1e-5,
            )
    assert not np.allclose(  # the shift reached the model
        pred[(pred["shift"] == "eosin") & (pred.magnitude == 0.0)]["prob_OSCC"],
        pred[(pred["shift"] == "eosin") & (pred.magnitude == 1.0)]["prob_OSCC"],
    )


def test_metrics_recomputed_from_predictions(full_run):
    pred = full_run.predictions()
    metrics = pd.read_csv(full_run.metrics_path)
    assert len(metrics) == 2 * 2 * 3
    assert list(metrics.columns[:6]) == [
        "checkpoint", "shift", "magnitude", "dataset", "normalize", "n"
    ]  # fmt: skip
    assert (metrics["normalize"] == "none").all()
    assert list(metrics.columns[-2:]) == ["method", "seed"]
    for row in metrics.itertuples():
        cell = pred[
            (pred.checkpoint == row.checkpoint)
            & (pred["shift"] == row.shift)
            & (pred.magnitude == row.magnitude)
        ]
        assert row.n == len(cell) == 12
        assert row.accuracy == pytest.approx(accuracy_score(cell.label, cell.pred))
        ref = cell_metrics(
            cell.label.to_numpy(), cell[["prob_Normal", "prob_OSCC"]].to_numpy(), n_boot=50, seed=7
        )
        assert row.accuracy_ci_low == pytest.approx(ref["accuracy_ci_low"])
        assert row.auroc_ci_high == pytest.approx(ref["auroc_ci_high"])


def test_manifest(setup, full_run):
    root, data, a, b = setup
    m = json.loads(full_run.manifest_path.read_text())
    assert m["status"] == "complete" and m["seed"] == 7 and m["n_boot"] == 50
    import hashlib

    assert [c["sha256"] for c in m["checkpoints"]] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b)
    ]
    assert m["data"]["fingerprint"] == open_dataset(data).fingerprint()
    assert m["class_names"] == CLASS_NAMES
    assert set(m["versions"]) >= {"python", "torch", "timm", "shiftbench"}
    assert m["device"]["type"] == "cpu"
    assert isinstance(m["unchanged"]["eosin"]["count"], int)
    assert "sharpen" not in m["unchanged"]
    assert len(m["done_cells"]) == 12 and m["n_skipped"] == 0
    assert m["invocations"][-1]["timings_s"]["total"] > 0
    assert (root / "full" / "parts").is_dir()


def test_resume_adds_a_checkpoint_and_matches_a_fresh_run(setup, full_run):
    root, data, a, b = setup
    out = root / "grow"
    first = run(
        [a],
        data,
        ["eosin", "sharpen"],
        magnitudes=MAGS,
        out=out,
        batch_size=5,
        workers=0,
        n_boot=50,
        seed=7,
    )
    assert first.predictions()["checkpoint"].unique().tolist() == ["a"]
    with pytest.raises(RunError, match=r"already holds a run .* --resume"):
        run(
            [a, b],
            data,
            ["eosin", "sharpen"],
            magnitudes=MAGS,
            out=out,
            batch_size=5,
            workers=0,
            n_boot=50,
            seed=7,
        )
    second = run(
        [a, b],
        data,
        ["eosin", "sharpen"],
        magnitudes=MAGS,
        out=out,
        workers=0,
        n_boot=50,
        seed=7,
        resume=True,
    )  # batch size taken from the run
    # only b's cells were computed the second time
    new_parts = [
        p
        for p in (out / "parts").iterdir()
        if json.loads(pq.read_schema(p).metadata[b"shiftbench"])["cells"][0][0]
        == second.manifest["checkpoints"][1]["sha256"]
    ]
    assert len(new_parts) == 3
    for p in new_parts:
        cells = json.loads(pq.read_schema(p).metadata[b"shiftbench"])["cells"]
        assert {c[0] for c in cells} == {second.manifest["checkpoints"][1]["sha256"]}
    pd.testing.assert_frame_equal(second.predictions(), full_run.predictions())
    assert second.metrics_path.read_bytes() == full_run.metrics_path.read_bytes()
    assert len(second.manifest["invocations"]) == 2


def test_different_run_in_out_dir_is_refused(setup, full_run):
    root, data, a, b = setup
    with pytest.raises(RunError, match=r"holds a different run \(seed: 7 → 8\)"):
        run(
            [a, b],
            data,
            ["eosin", "sharpen"],
            magnitudes=MAGS,
            out=root / "full",
            batch_size=5,
            workers=0,
            n_boot=50,
            seed=8,
            resume=True,
        )
    assert open_predictions(full_run.out_dir).count_rows() == 144


@pytest.fixture
def slow_plugin():
    """The slow test shift registered for this test only."""
    from shiftbench.registry import _unregister

    yield "_slow_shift"
    _unregister("slowtest")
    sys.modules.pop("_slow_shift", None)


@pytest.mark.slow  # > 20 s on 2 busy cores; CI runs it (plain `pytest`)
def test_kill_9_then_resume_gives_identical_tables(setup, slow_plugin, tmp_path):
    _root, data, a, b = setup
    args = [
        "run",
        "--ckpt",
        str(a),
        "--ckpt",
        str(b),
        "--data",
        str(data),
        "--shift",
        "slowtest",
        "--shift",
        "sharpen",
        "--magnitudes",
        "0,1",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--n-boot",
        "30",
        "--seed",
        "3",
        "--plugin",
        slow_plugin,
        "--no-progress",
    ]
    killed = tmp_path / "killed"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from shiftbench.cli import main; sys.exit(main(sys.argv[1:]))",
            *args,
            "--out",
            str(killed),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (killed / "parts").exists() and any((killed / "parts").glob("b*.parquet")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"run ended before the kill: {proc.stderr.read().decode()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    n_parts = len(list((killed / "parts").glob("b*.parquet")))
    assert 1 <= n_parts < 6, "the kill must land mid-run"
    assert not (killed / "predictions").exists()

    from shiftbench.cli import main

    assert main([*args, "--out", str(killed)]) == 2  # refuses without --resume
    assert main([*args, "--out", str(killed), "--resume"]) == 0
    assert main([*args, "--out", str(tmp_path / "clean")]) == 0
    got = read_predictions(killed)
    ref = read_predictions(tmp_path / "clean")
    pd.testing.assert_frame_equal(got, ref)
    assert not got.duplicated(["checkpoint", "shift", "magnitude", "sample_id"]).any()
    assert len(got) == 2 * 2 * 2 * 12
    assert (killed / "metrics.csv").read_bytes() == (
        tmp_path / "clean" / "metrics.csv"
    ).read_bytes()
    assert not list(killed.rglob("*.tmp"))


def test_group_by_csv_column(setup, tmp_path):
    _root, _data, a, _b = setup
    csv_path = write_oral_csv(tmp_path / "csv", n_per_class=6)
    res = run(
        [a],
        csv_path,
        ["blur"],
        magnitudes=[1, 3],
        out=tmp_path / "out",
        workers=0,
        n_boot=20,
        group_by="magnification",
    )
    pred = res.predictions()
    assert "magnification" in pred.columns
    m = res.metrics
    assert list(m.columns[:7]) == [
        "checkpoint", "shift", "magnitude", "dataset", "normalize", "magnification", "n"
    ]  # fmt: skip
    for row in m.itertuples():
        cell = pred[(pred.magnitude == row.magnitude) & (pred.magnification == row.magnification)]
        assert row.n == len(cell)
        assert row.accuracy == pytest.approx(accuracy_score(cell.label, cell.pred))
    assert m.groupby("magnitude")["n"].sum().eq(12).all()
    with pytest.raises(
        ValueError, match=r"--group-by .stain. is not a column of the data; columns: magnification"
    ):
        run([a], csv_path, ["blur"], out=tmp_path / "o2", group_by="stain")


def test_npz_data_and_torchscript_checkpoint(setup, tmp_path):
    import warnings

    from _models import write_oral_npz

    _root, _data, _a, _b = setup
    npz = write_oral_npz(tmp_path / "d.npz", n_per_class=3)
    model = tiny_model(2, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(model, torch.zeros(1, 3, 64, 64)), str(tmp_path / "ts.pt"))
    res = run(
        [tmp_path / "ts.pt"],
        npz,
        ["sharpen"],
        magnitudes=[0, 1],
        out=tmp_path / "o",
        workers=0,
        n_boot=0,
    )
    pred = res.predictions()
    assert pred["path"].iloc[0] == "npz:0" and len(pred) == 12
    ck = res.manifest["checkpoints"][0]
    assert ck["format"] == "torchscript" and ck["num_classes"] == 2
    assert sorted(ck["defaults_used"]) == ["input_size", "mean", "std"]
    images = torch.from_numpy(np.load(npz)["images"]).permute(0, 3, 1, 2)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)  # documented defaults
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        ref = torch.softmax(model((images.float() / 255 - mean) / std), 1).numpy()
    np.testing.assert_allclose(
        pred[pred.magnitude == 0][["prob_Normal", "prob_OSCC"]], ref, atol=1e-5
    )
    assert res.metrics["auroc_ci_low"].isna().all()  # n_boot=0 → no CIs


def test_skipped_files_are_counted_and_class_names_matched(setup, tmp_path):
    import shutil

    _root, data, _a, _b = setup
    bad = tmp_path / "bad"
    shutil.copytree(data, bad)
    (bad / "OSCC" / "0_broken.png").write_text("not a png")
    c = save_tiny_checkpoint(tmp_path / "c.pt", class_names=["OSCC", "Normal"])  # other order
    res = run([c], bad, ["sharpen"], magnitudes=[0], out=tmp_path / "o", workers=1, n_boot=0)
    m = res.manifest
    assert m["n_skipped"] == 1 and m["skipped_files"][0]["path"] == "OSCC/0_broken.png"
    pred = res.predictions()
    assert len(pred) == 12 and "OSCC/0_broken.png" not in set(pred.path)
    assert list(pred.columns[8:10]) == ["prob_OSCC", "prob_Normal"]  # after dataset, pred
    # labels follow the checkpoint's class order: OSCC = 0
    assert (pred.label == pred.path.str.startswith("Normal/").astype(int)).all()
    with pytest.raises(DataError, match="strict mode"):
        run([c], bad, ["sharpen"], magnitudes=[0], out=tmp_path / "o2", workers=0, strict=True)
    wrong = save_tiny_checkpoint(tmp_path / "w.pt", class_names=["normal", "tumour"])
    with pytest.raises(DataError, match="Normal, OSCC are not among the checkpoint's classes"):
        run([wrong], data, ["sharpen"], out=tmp_path / "o3", workers=0)


def test_preprocess_matches_pil_antialiased_bilinear():
    from PIL import Image

    from shiftbench.preprocess import Preprocess

    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (2, 3, 50, 50), dtype=np.uint8)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    ref = np.empty((2, 3, 32, 32), np.float32)
    for b in range(2):
        for c in range(3):
            plane = Image.fromarray(u8[b, c].astype(np.float32), mode="F")
            resized = np.asarray(plane.resize((32, 32), Image.BILINEAR))
            ref[b, c] = (resized / 255.0 - mean[c]) / std[c]
    for channels_last in (False, True):
        got = Preprocess(32, mean, std, channels_last)(torch.from_numpy(u8))
        assert got.dtype == torch.float32 and got.shape == (2, 3, 32, 32)
        np.testing.assert_allclose(got.numpy(), ref, atol=2e-4)
    same = Preprocess(None, mean, std)(torch.from_numpy(u8))  # no input_size: no resize
    expect = (u8 / 255.0 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(same.numpy(), expect, atol=1e-5)
