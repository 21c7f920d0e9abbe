"""``shiftbench run`` in-process: the happy path and one clear line + exit 2 for each bad input."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch
from _models import (
    CLASS_NAMES,
    TINY_ARCH,
    NaNAfter,
    save_tiny_checkpoint,
    tiny_model,
    write_oral_folder,
)
from conftest import one_error_line

from shiftbench import read_predictions
from shiftbench.registry import list_shifts

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = write_oral_folder(root / "data", n_per_class=4)
    ckpt = save_tiny_checkpoint(root / "a.pt", class_names=CLASS_NAMES)
    return root, data, ckpt


def test_run_all_shifts_and_summary(cli, env, tmp_path):
    _root, data, ckpt = env
    out = tmp_path / "out"
    code, stdout, err = cli(
        "run",
        "--ckpt",
        ckpt,
        "--data",
        data,
        "--shift",
        "all",
        "--magnitudes",
        "1",
        "--out",
        out,
        "--n-boot",
        "10",
        "--workers",
        "0",
        "--seed",
        "5",
    )
    assert code == 0, err
    metrics = pd.read_csv(out / "metrics.csv")
    every = set(list_shifts())  # "all" = every registered shift
    assert {"blur", "cutout", "eosin", "haematoxylin", "sharpen", "lowpass", "ring"} <= every
    assert set(metrics["shift"]) == every
    # The printed table: one row per shift (magnitude 1) with the accuracy from metrics.csv.
    rows = {ln.split("│")[1].strip(): ln for ln in stdout.splitlines() if ln.count("│") == 4}
    for _, m in metrics.iterrows():
        cells = [c.strip() for c in rows[m["shift"]].split("│")[1:4]]
        assert cells == [m["shift"], f"{m['magnitude']:g}", f"{m['accuracy']:.3f}"], rows[
            m["shift"]
        ]
    n_rows = len(every) * 8
    assert stdout.strip().splitlines()[-1] == (
        f"wrote {out / 'predictions'}/ ({n_rows} rows), metrics.csv ({len(every)} rows), manifest.json"
    )
    pred = read_predictions(out)
    assert len(pred) == n_rows
    clean = pred[pred["shift"] == "blur"]["prob_OSCC"].to_numpy()
    cut = pred[pred["shift"] == "cutout"]["prob_OSCC"].to_numpy()
    assert not (clean == cut).all(), "cutout at 1 patch must change some prediction inputs"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"][:2] == ["shiftbench", "run"]
    assert "--seed" in manifest["command"] and manifest["status"] == "complete"
    # same seed, new directory → identical metrics (cutout is random)
    code, _, err = cli(
        "run",
        "--ckpt",
        ckpt,
        "--data",
        data,
        "--shift",
        "all",
        "--magnitudes",
        "1",
        "--out",
        tmp_path / "again",
        "--n-boot",
        "10",
        "--workers",
        "0",
        "--seed",
        "5",
    )
    assert code == 0, err
    assert (tmp_path / "again" / "metrics.csv").read_bytes() == (out / "metrics.csv").read_bytes()


def test_bare_state_dict_with_arch(cli, env, tmp_path):
    _root, data, _ = env
    sd = tmp_path / "weights.pth"
    torch.save(tiny_model(2, 3).state_dict(), sd)
    args = [
        "run",
        "--ckpt",
        sd,
        "--data",
        data,
        "--shift",
        "sharpen",
        "--magnitudes",
        "0,1",
        "--out",
        tmp_path / "o",
        "--n-boot",
        "0",
        "--workers",
        "0",
    ]
    line = one_error_line(*cli(*args)[::2])
    assert "bare state_dict" in line and "--arch" in line
    code, _, err = cli(*args, "--arch", TINY_ARCH)
    assert code == 0, err
    assert "num_classes=2 inferred from fc.weight" in err
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["checkpoints"][0]["defaults_used"] == ["input_size", "mean", "std"]


def test_unknown_shift(cli, env, tmp_path):
    _root, data, ckpt = env
    line = one_error_line(
        *cli("run", "--ckpt", ckpt, "--data", data, "--shift", "blurr", "--out", tmp_path / "o")[
            ::2
        ]
    )
    assert "unknown shift 'blurr'" in line and "blur, cutout, eosin" in line
    assert not (tmp_path / "o").exists()


def test_magnitude_out_of_range(cli, env, tmp_path):
    _root, data, ckpt = env
    line = one_error_line(
        *cli(
            "run",
            "--ckpt",
            ckpt,
            "--data",
            data,
            "--shift",
            "sharpen",
            "--magnitudes",
            "0,1.5",
            "--out",
            tmp_path / "o",
        )[::2]
    )
    assert "sharpen: magnitude 1.5 out of range; valid: numbers in [0, 1]" in line
    line = one_error_line(
        *cli(
            "run",
            "--ckpt",
            ckpt,
            "--data",
            data,
            "--shift",
            "sharpen",
            "--magnitudes",
            "0,x",
            "--out",
            tmp_path / "o",
        )[::2]
    )
    assert "'x'" in line


def test_missing_and_empty_data(cli, env, tmp_path):
    _root, _data, ckpt = env
    line = one_error_line(
        *cli(
            "run",
            "--ckpt",
            ckpt,
            "--data",
            tmp_path / "nope",
            "--shift",
            "blur",
            "--out",
            tmp_path / "o",
        )[::2]
    )
    assert "data not found" in line
    (tmp_path / "empty").mkdir()
    line = one_error_line(
        *cli(
            "run",
            "--ckpt",
            ckpt,
            "--data",
            tmp_path / "empty",
            "--shift",
            "blur",
            "--out",
            tmp_path / "o",
        )[::2]
    )
    assert "no images found" in line


def test_labels_outside_num_classes(cli, env, tmp_path):
    _root, data, ckpt = env
    first = sorted((data / "OSCC").iterdir())[0]
    (tmp_path / "m.csv").write_text(f"path,label\n{first},1\n{first},3\n")
    line = one_error_line(
        *cli(
            "run",
            "--ckpt",
            ckpt,
            "--data",
            tmp_path / "m.csv",
            "--shift",
            "blur",
            "--out",
            tmp_path / "o",
        )[::2]
    )
    assert "label 3" in line and "outside the model's 2 classes" in line


def test_arch_mismatch_names_keys(cli, env, tmp_path):
    _root, data, _ = env
    sd = tmp_path / "weights.pt"
    torch.save(tiny_model(2, 0).state_dict(), sd)
    line = one_error_line(
        *cli(
            "run",
            "--ckpt",
            sd,
            "--arch",
            "test_efficientnet",
            "--num-classes",
            "2",
            "--data",
            data,
            "--shift",
            "blur",
            "--out",
            tmp_path / "o",
        )[::2]
    )
    assert "does not match arch test_efficientnet" in line
    assert "missing keys: conv_stem.weight" in line and "unexpected keys: conv1" in line


def test_untrusted_pickle(cli, env, tmp_path):
    _root, data, _ = env
    torch.save(tiny_model(2, 0), tmp_path / "whole.pt")
    line = one_error_line(
        *cli(
            "run",
            "--ckpt",
            tmp_path / "whole.pt",
            "--data",
            data,
            "--shift",
            "blur",
            "--out",
            tmp_path / "o",
        )[::2]
    )
    assert "--trust-checkpoint" in line and "arbitrary code" in line


def test_nan_logits_fail_loud_and_keep_finished_batches(cli, env, tmp_path):
    _root, data, _ = env
    # forward calls: 1 probe, then 2 per batch (clean + sharpen 1): batch 1 gets NaN
    torch.save(NaNAfter(tiny_model(2, 0), ok_calls=3), tmp_path / "nan.pt")
    out = tmp_path / "o"
    line = one_error_line(
        *cli(
            "run",
            "--ckpt",
            tmp_path / "nan.pt",
            "--trust-checkpoint",
            "--data",
            data,
            "--shift",
            "sharpen",
            "--magnitudes",
            "0,1",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--out",
            out,
        )[::2]
    )
    assert "checkpoint nan produced non-finite logits" in line and "batch 1" in line
    assert len(list((out / "parts").glob("b000000-*.parquet"))) == 1
    assert not (out / "predictions").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "non-finite logits" in manifest["error"]


def test_out_dir_with_another_run(cli, env, tmp_path):
    _root, data, ckpt = env
    out = tmp_path / "o"
    base = [
        "run",
        "--ckpt",
        ckpt,
        "--data",
        data,
        "--shift",
        "sharpen",
        "--magnitudes",
        "0,1",
        "--n-boot",
        "0",
        "--workers",
        "0",
        "--out",
        out,
    ]
    assert cli(*base)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    line = one_error_line(*cli(*base, "--seed", "1")[::2])
    assert "holds a different run (seed: 0 → 1)" in line and "--overwrite" in line
    line = one_error_line(*cli(*base)[::2])
    assert "already holds a run" in line and "--resume" in line
    line = one_error_line(*cli(*base, "--resume", "--overwrite")[::2])
    assert "exclude each other" in line
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before, "a refused run must not touch the directory"
    code, _, err = cli(*base, "--resume")  # nothing left to compute: tables rebuilt identically
    assert code == 0, err
    assert (out / "metrics.csv").read_bytes() == before["metrics.csv"]
    code, _, err = cli(*base, "--seed", "1", "--overwrite")
    assert code == 0, err
    assert json.loads((out / "manifest.json").read_text())["seed"] == 1


def test_strict_fails_on_an_unreadable_file(cli, env, tmp_path):
    _root, data, ckpt = env
    bad = tmp_path / "bad"
    shutil.copytree(data, bad)
    (bad / "Normal" / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    args = [
        "run",
        "--ckpt",
        ckpt,
        "--data",
        bad,
        "--shift",
        "sharpen",
        "--magnitudes",
        "0",
        "--workers",
        "0",
        "--n-boot",
        "0",
    ]
    line = one_error_line(*cli(*args, "--strict", "--out", tmp_path / "s")[::2])
    assert "zz_broken.jpg" in line and "strict" in line
    code, _, err = cli(*args, "--out", tmp_path / "ok")
    assert code == 0 and "skipping unreadable image" in err and "zz_broken.jpg" in err


def test_unavailable_device(cli, env, tmp_path):
    _, data, ckpt = env
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = one_error_line(
        *cli(
            "run",
            "--ckpt",
            ckpt,
            "--data",
            data,
            "--shift",
            "blur",
            "--device",
            "cuda",
            "--out",
            tmp_path / "o",
        )[::2]
    )
    assert "CUDA is not available" in line and "--device cpu" in line
    line = one_error_line(
        *cli(
            "run",
            "--ckpt",
            ckpt,
            "--data",
            data,
            "--shift",
            "blur",
            "--device",
            "tpu9",
            "--out",
            tmp_path / "o",
        )[::2]
    )
    assert "device" in line
