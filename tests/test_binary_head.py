"""``--head binary-logit`` (one logit, BCE, SD γ on it) and ``--save-every`` (per-epoch
checkpoints): training, saving, loading as two-class probabilities, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _models import TINY_ARCH, tiny_model

from shiftbench.checkpoint import BinaryLogitHead, load_checkpoint, save_checkpoint
from shiftbench.demo import demo_data_dir
from shiftbench.errors import CheckpointError
from shiftbench.losses import BINARY_SD_LOSS_CONVENTION
from shiftbench.training import load_training_data, train

SMALL = {
    "arch": "test_resnet",
    "input_size": 32,
    "batch_size": 16,
    "epochs": 2,
    "progress": False,
}


@pytest.fixture(scope="module")
def small_data():
    return load_training_data(demo_data_dir() / "manifest.csv", input_size=32, limit=64)


def test_saved_binary_checkpoint_gives_sigmoid_probabilities(tmp_path):
    one = tiny_model(num_classes=1, seed=2)
    path = save_checkpoint(
        tmp_path / "b.pt", BinaryLogitHead(one), arch=TINY_ARCH, num_classes=2, input_size=32,
        mean=(0.5,) * 3, std=(0.25,) * 3, meta={"method": "x"}, class_names=["Normal", "OSCC"],
        head="binary-logit",
    )  # fmt: skip
    ck = load_checkpoint(path)
    assert ck.num_classes == 2 and ck.meta["head"] == "binary-logit"
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = one(x)[:, 0]
        probs = torch.softmax(ck.model(x), 1)
    torch.testing.assert_close(probs[:, 1], torch.sigmoid(z), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(probs[:, 0], 1 - torch.sigmoid(z), rtol=1e-6, atol=1e-7)


def test_binary_head_needs_two_classes_and_a_one_output_model(tmp_path):
    kw = {"arch": TINY_ARCH, "input_size": 32, "mean": (0.5,) * 3, "std": (0.25,) * 3}
    with pytest.raises(CheckpointError, match="2 classes"):
        save_checkpoint(tmp_path / "a.pt", tiny_model(1), num_classes=3, head="binary-logit", **kw)
    with pytest.raises(CheckpointError, match="do not fit"):
        save_checkpoint(tmp_path / "a.pt", tiny_model(2), num_classes=2, head="binary-logit", **kw)
    with pytest.raises(CheckpointError, match="head must be one of"):
        save_checkpoint(tmp_path / "a.pt", tiny_model(2), num_classes=2, head="sigmoid", **kw)


def test_train_binary_head_round_trip_through_the_runner(small_data, tmp_path):
    from shiftbench.runner import run

    (res,) = train(
        None, training_data=small_data, out=tmp_path / "ck", method="sd",
        sd_lambdas=[0.01, 0.001], sd_gammas=[0, 1], head="binary-logit", seeds=[1], **SMALL,
    )  # fmt: skip
    ck = load_checkpoint(res.checkpoint)
    assert isinstance(ck.model, BinaryLogitHead)
    assert ck.meta["head"] == "binary-logit"
    assert ck.meta["sd_loss_convention"] == BINARY_SD_LOSS_CONVENTION
    state = torch.load(res.checkpoint, weights_only=True)["state_dict"]
    assert state["fc.weight"].shape[0] == 1  # one logit
    result = run(
        [res.checkpoint], demo_data_dir() / "test.csv", ["sharpen"], out=tmp_path / "run",
        magnitudes=[0.0], limit=10, workers=0, n_boot=0,
    )  # fmt: skip
    pred = result.predictions().sort_values("sample_id")
    from shiftbench.data import open_dataset

    ds = open_dataset(demo_data_dir() / "test.csv", limit=10)
    x = ck.preprocess()(torch.stack([ds[i][0] for i in range(10)]))
    with torch.no_grad():
        z = ck.model.model(x)[:, 0]
    np.testing.assert_allclose(pred["prob_OSCC"], torch.sigmoid(z).numpy(), atol=1e-5)
    np.testing.assert_allclose(pred["prob_Normal"] + pred["prob_OSCC"], 1.0, atol=1e-6)


def test_binary_head_training_is_deterministic(small_data, tmp_path):
    kw = {"training_data": small_data, "method": "wd", "seeds": [0], **SMALL}
    (a,) = train(None, out=tmp_path / "a", head="binary-logit", **kw)
    (b,) = train(None, out=tmp_path / "b", head="binary-logit", **kw)
    sa = torch.load(a.checkpoint, weights_only=True)["state_dict"]
    sb = torch.load(b.checkpoint, weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_every_keeps_epoch_checkpoints(small_data, tmp_path):
    (res,) = train(
        None, training_data=small_data, out=tmp_path, method="wd", seeds=[0],
        save_every=1, **SMALL,
    )  # fmt: skip
    e1 = load_checkpoint(tmp_path / "wd_seed0_epoch1.pt")
    e2 = load_checkpoint(tmp_path / "wd_seed0_epoch2.pt")
    assert (e1.meta["epoch"], e2.meta["epoch"]) == (1, 2)
    assert e1.meta["method"] == "wd" and e1.meta["seed"] == 0
    # the last epoch's checkpoint holds the final weights
    final = torch.load(res.checkpoint, weights_only=True)["state_dict"]
    last = torch.load(tmp_path / "wd_seed0_epoch2.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(final[k], last[k]) for k in final)
    first = torch.load(tmp_path / "wd_seed0_epoch1.pt", weights_only=True)["state_dict"]
    assert any(not torch.equal(final[k], first[k]) for k in final if final[k].is_floating_point())


def test_cli_head_and_save_every(cli, tmp_path):
    manifest = demo_data_dir() / "manifest.csv"
    common = f"--data {manifest} --method wd --out {tmp_path} --epochs 2 --image-size 32"
    common += " --limit 48 --no-progress --arch test_resnet"
    code, _, err = cli("train", *common.split(), "--head", "binary-logit", "--save-every", "2")
    assert code == 0, err
    assert load_checkpoint(tmp_path / "wd_seed0_epoch2.pt").meta["head"] == "binary-logit"
    assert not (tmp_path / "wd_seed0_epoch1.pt").exists()
    for extra, needle in (
        (["--head", "sigmoid"], "--head must be one of"),
        (["--save-every", "0"], "--save-every must be a positive integer"),
    ):
        code, _, err = cli("train", *common.split(), "--overwrite", *extra)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
