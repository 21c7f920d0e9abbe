"""Training recipes: determinism, checkpoint round trip through the runner, recipe details."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from shiftbench.checkpoint import load_checkpoint
from shiftbench.data import open_dataset
from shiftbench.demo import demo_data_dir
from shiftbench.losses import SD_LOSS_CONVENTION
from shiftbench.training import (
    UNIFORM_OPS,
    augment_batch,
    load_training_data,
    train,
    warmup_cosine,
)

# timm's 0.37M-parameter test_resnet keeps these runs to seconds; the demo test trains resnet10t.
SMALL = {
    "arch": "test_resnet",
    "input_size": 32,
    "batch_size": 16,
    "epochs": 1,
    "progress": False,
    "limit": 64,
}


@pytest.fixture(scope="module")
def manifest():
    return demo_data_dir() / "manifest.csv"


@pytest.fixture(scope="module")
def small_data(manifest):
    return load_training_data(manifest, input_size=32, limit=64)


def test_split_column_is_used(small_data, manifest):
    table = pd.read_csv(manifest).iloc[:64]
    assert len(small_data.train_labels) == int((table["split"] == "train").sum())
    assert len(small_data.val_labels) == int((table["split"] == "val").sum())
    assert small_data.split_source == "column"
    assert small_data.train_images.shape[1:] == (3, 32, 32)


def test_short_run_is_deterministic_and_ignores_global_rng(small_data, tmp_path):
    kw = {**SMALL, "augment": "uniform", "drop_rate": 0.2}
    torch.manual_seed(123)
    (a,) = train(None, training_data=small_data, out=tmp_path / "a", method="sd", **kw)
    torch.manual_seed(999)  # a different global RNG state must not matter
    torch.rand(10)
    (b,) = train(None, training_data=small_data, out=tmp_path / "b", method="sd", **kw)
    (c,) = train(None, training_data=small_data, out=tmp_path / "c", method="sd", seeds=[1], **kw)
    sa = load_checkpoint(a.checkpoint).model.state_dict()
    sb = load_checkpoint(b.checkpoint).model.state_dict()
    sc = load_checkpoint(c.checkpoint).model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())


def test_train_checkpoint_load_run_round_trip(tmp_path, manifest):
    from shiftbench.preprocess import Preprocess
    from shiftbench.runner import run

    (res,) = train(manifest, out=tmp_path / "ck", method="sd", sd_lambda=0.05, seeds=[3], **SMALL)
    assert res.checkpoint.name == "sd_seed3.pt"
    ck = load_checkpoint(res.checkpoint)
    assert ck.format == "shiftbench/1" and ck.arch == "test_resnet" and ck.input_size == 32
    assert ck.class_names == ["Normal", "OSCC"]
    meta = ck.meta
    assert meta["method"] == "sd" and meta["seed"] == 3 and meta["sd_lambda"] == 0.05
    assert meta["sd_loss_convention"] == SD_LOSS_CONVENTION
    assert meta["weight_decay"] == 0.0  # SD: no weight decay unless given
    assert meta["data_fingerprint"] == open_dataset(manifest, limit=64).fingerprint()
    with open(res.log, newline="") as f:
        log = list(csv.DictReader(f))
    assert len(log) == 1 and float(log[0]["train_penalty"]) > 0

    test_csv = demo_data_dir() / "test.csv"
    result = run(
        [res.checkpoint],
        test_csv,
        ["sharpen"],
        out=tmp_path / "run",
        magnitudes=[0.0, 1.0],
        limit=12,
        workers=0,
        n_boot=0,
    )
    pred = result.predictions()
    assert set(pred["method"]) == {"sd"} and set(pred["seed"]) == {3}
    # The runner's probabilities at the identity equal a direct forward pass of the saved model.
    clean = pred[pred["magnitude"] == 0.0].sort_values("sample_id")
    ds = open_dataset(test_csv, limit=12)
    x = torch.stack([ds[i][0] for i in range(12)])
    prep = Preprocess(ck.input_size, ck.mean, ck.std)
    with torch.no_grad():
        probs = torch.softmax(ck.model(prep(x)), 1).numpy()
    np.testing.assert_allclose(clean[["prob_Normal", "prob_OSCC"]].to_numpy(), probs, atol=1e-5)


def test_wd_recipe_and_reuse(small_data, tmp_path):
    (r,) = train(None, training_data=small_data, out=tmp_path, method="wd", **SMALL)
    assert r.meta["weight_decay"] == 1e-4 and r.meta["sd_lambda"] is None
    with open(r.log, newline="") as f:
        assert float(next(csv.DictReader(f))["train_penalty"]) == 0.0
    with pytest.raises(ValueError, match="already exists"):
        train(None, training_data=small_data, out=tmp_path, method="wd", **SMALL)
    (again,) = train(
        None, training_data=small_data, out=tmp_path, method="wd", if_exists="skip", **SMALL
    )
    assert again.reused and again.meta == r.meta


def test_lambda_grid_selects_best_validation_score(small_data, tmp_path):
    (r,) = train(
        None,
        training_data=small_data,
        out=tmp_path,
        method="sd",
        sd_lambda_grid=[1.0, 0.001],
        **SMALL,
    )
    grid = json.loads(r.meta["sd_grid"])
    assert [g["sd_lambda"] for g in grid] == [1.0, 0.001]
    best = max(grid, key=lambda g: (g["val_balanced_accuracy"], -g["val_loss"]))
    assert r.meta["sd_lambda"] == best["sd_lambda"]
    assert r.meta["selected_by"] == "val_balanced_accuracy"
    assert (tmp_path / "sd_seed0.grid.csv").is_file()


def test_eq2_recipe_recorded(small_data, tmp_path):
    (r,) = train(
        None,
        training_data=small_data,
        out=tmp_path,
        method="sd",
        sd_lambdas=[0.01, 0.001],
        sd_gammas=[0, 1],
        **SMALL,
    )
    assert r.meta["sd_lambda"] == "0.01,0.001" and r.meta["sd_gamma"] == "0,1"


def test_augmentation_is_seeded_and_uniform_has_sharpening_not_blur():
    x = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    outs = [augment_batch(x, "uniform", torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(augment_batch(x, "uniform", torch.Generator().manual_seed(6)), outs[0])
    basic = augment_batch(x, "basic", torch.Generator().manual_seed(0))
    # basic = a dihedral symmetry per image: the pixel multiset is unchanged
    for i in range(6):
        assert torch.equal(basic[i].flatten().sort().values, x[i].flatten().sort().values)
    names = [op[0] for op in UNIFORM_OPS]
    assert "sharpness" in names and not any("blur" in n for n in names)
    low = dict((op[0], op[1]) for op in UNIFORM_OPS)["sharpness"]
    assert low >= 1.0  # factors < 1 would blur


def test_cli_train_and_user_errors(cli, tmp_path, manifest):
    common = f"--data {manifest} --method wd --out {tmp_path} --epochs 1 --image-size 32"
    common += " --limit 48 --no-progress --arch test_resnet"
    code, out, err = cli("train", *common.split(), "--seeds", "0")
    assert code == 0, err
    meta = load_checkpoint(tmp_path / "wd_seed0.pt").meta
    assert meta["train_input_size"] == 32 and meta["seed"] == 0 and meta["method"] == "wd"
    acc = meta["val_accuracy"]
    log = tmp_path / "wd_seed0.log.csv"
    assert out.strip() == f"wrote {tmp_path / 'wd_seed0.pt'} (val accuracy {acc:.3f}; log {log})"
    code, out, err = cli("train", *common.split())
    assert code == 2 and err.startswith("error:") and "--overwrite" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = cli("train", *common.split(), "--sd-lambda", "0.1")
    assert code == 2 and "--method sd" in err
    code, _, err = cli("train", "--data", manifest, "--method", "xx", "--out", tmp_path)
    assert code == 2 and "sd, wd" in err


def test_per_class_values_must_match_classes(small_data, tmp_path):
    with pytest.raises(ValueError, match="one value per class"):
        train(
            None,
            training_data=small_data,
            out=tmp_path,
            method="sd",
            sd_lambdas=[0.1, 0.1, 0.1],
            **SMALL,
        )


@pytest.mark.parametrize(("total", "warmup"), [(276, 23), (24, 2), (10, 1), (5, 5), (1, 1)])
def test_warmup_cosine_schedule_matches_the_formula(total, warmup):
    """torch's LinearLR → CosineAnnealingLR gives the documented rates (written out here)."""

    def expected(step: int) -> float:
        if step < warmup:
            return 2e-3 * (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return 2e-3 * 0.5 * (1 + math.cos(math.pi * t))

    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=2e-3)
    sched = warmup_cosine(opt, total, warmup)
    assert isinstance(sched, torch.optim.lr_scheduler.SequentialLR)
    for step in range(total):
        assert opt.param_groups[0]["lr"] == pytest.approx(expected(step), rel=1e-12, abs=1e-15)
        opt.step()
        sched.step()
