"""Checkpoint formats: canonical round trip, explicit detection of every other format, errors."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from _models import TINY_ARCH, save_tiny_checkpoint, tiny_model

from shiftbench import load_checkpoint, save_checkpoint
from shiftbench.checkpoint import detect_format
from shiftbench.errors import CheckpointError


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_model(num_classes=3, seed=5)


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(2, 3, 64, 64)


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_canonical_round_trip(tmp_path, model, x):
    path = save_checkpoint(
        tmp_path / "sub" / "m.pt",
        model,
        arch=TINY_ARCH,
        num_classes=3,
        input_size=48,
        mean=[0.1, 0.2, 0.3],
        std=[0.4, 0.5, 0.6],
        meta={"method": "sd", "seed": 0, "sd_lambda": 0.01},
        class_names=["a", "b", "c"],
    )
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"], "temp file left behind"
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "shiftbench/1" and raw["arch"] == TINY_ARCH
    ck = load_checkpoint(path)
    assert ck.format == "shiftbench/1"
    assert (ck.arch, ck.num_classes, ck.input_size) == (TINY_ARCH, 3, 48)
    assert ck.mean == (0.1, 0.2, 0.3) and ck.std == (0.4, 0.5, 0.6)
    assert ck.meta == {"method": "sd", "seed": 0, "sd_lambda": 0.01}
    assert ck.class_names == ["a", "b", "c"]
    assert ck.defaults_used == []
    assert ck.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ck.name == "m" and not ck.model.training
    _same_outputs(ck.model, model, x)


def test_canonical_without_preprocessing_fields_uses_defaults(tmp_path, model):
    path = tmp_path / "m.pt"
    torch.save(
        {
            "format": "shiftbench/1",
            "arch": TINY_ARCH,
            "num_classes": 3,
            "state_dict": model.state_dict(),
        },
        path,
    )
    ck = load_checkpoint(path)
    assert sorted(ck.defaults_used) == ["input_size", "mean", "std"]
    assert ck.input_size is None and ck.mean == (0.485, 0.456, 0.406)


def test_save_rejects_weights_that_do_not_fit(tmp_path, model):
    with pytest.raises(CheckpointError, match=r"fc\.weight \[3, .*\] vs model \[2, "):
        save_checkpoint(
            tmp_path / "m.pt",
            model,
            arch=TINY_ARCH,
            num_classes=2,
            input_size=64,
            mean=[0.5] * 3,
            std=[0.5] * 3,
        )
    with pytest.raises(CheckpointError, match="reserved name"):
        save_checkpoint(
            tmp_path / "m.pt",
            model,
            arch=TINY_ARCH,
            num_classes=3,
            input_size=64,
            mean=[0.5] * 3,
            std=[0.5] * 3,
            meta={"label": 1},
        )
    with pytest.raises(CheckpointError, match="must be a str, int, float, bool or None"):
        save_checkpoint(
            tmp_path / "m.pt",
            model,
            arch=TINY_ARCH,
            num_classes=3,
            input_size=64,
            mean=[0.5] * 3,
            std=[0.5] * 3,
            meta={"x": [1, 2]},
        )
    with pytest.raises(CheckpointError, match="class_names has 2 entries"):
        save_checkpoint(
            tmp_path / "m.pt",
            model,
            arch=TINY_ARCH,
            num_classes=3,
            input_size=64,
            mean=[0.5] * 3,
            std=[0.5] * 3,
            class_names=["a", "b"],
        )
    assert not (tmp_path / "m.pt").exists()


def test_bare_state_dict_needs_arch_and_infers_classes(tmp_path, model, x):
    path = tmp_path / "weights.pth"
    torch.save(model.state_dict(), path)
    assert detect_format(path) == "torch-zip"
    with pytest.raises(CheckpointError, match=r"bare state_dict .* pass --arch"):
        load_checkpoint(path)
    ck = load_checkpoint(path, arch=TINY_ARCH)
    assert ck.format == "state_dict" and ck.num_classes == 3
    assert any("inferred from fc.weight" in n for n in ck.notes)
    assert sorted(ck.defaults_used) == ["input_size", "mean", "std"]
    _same_outputs(ck.model, model, x)
    with pytest.raises(CheckpointError, match=r"shape mismatch: fc\.weight"):
        load_checkpoint(path, arch=TINY_ARCH, num_classes=5)


def test_data_parallel_prefix_is_stripped_and_noted(tmp_path, model, x):
    path = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    ck = load_checkpoint(path, arch=TINY_ARCH)
    assert any("module." in n for n in ck.notes)
    _same_outputs(ck.model, model, x)


def test_wrong_arch_names_missing_and_unexpected_keys(tmp_path, model):
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, arch="test_efficientnet", num_classes=3)
    msg = str(info.value)
    assert "does not match arch test_efficientnet" in msg
    assert "missing keys: conv_stem.weight" in msg and "unexpected keys: conv1" in msg


def test_unknown_arch(tmp_path, model):
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match="unknown timm architecture 'no_such_net'"):
        load_checkpoint(path, arch="no_such_net", num_classes=3)


def test_safetensors(tmp_path, model, x):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    assert detect_format(path) == "safetensors"
    with pytest.raises(CheckpointError, match="--arch"):
        load_checkpoint(path)
    ck = load_checkpoint(path, arch=TINY_ARCH)
    assert ck.format == "safetensors" and ck.num_classes == 3
    _same_outputs(ck.model, model, x)


def test_torchscript_with_and_without_extra_file(tmp_path, model, x):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.trace(model, x)
        torch.jit.save(scripted, str(tmp_path / "plain.pt"))
        info = {
            "input_size": 32,
            "mean": [0.5, 0.5, 0.5],
            "std": [0.2, 0.2, 0.2],
            "meta": {"method": "wd"},
            "class_names": ["a", "b", "c"],
            "num_classes": 3,
        }
        torch.jit.save(
            scripted, str(tmp_path / "extra.pt"), _extra_files={"shiftbench.json": json.dumps(info)}
        )
    assert detect_format(tmp_path / "plain.pt") == "torchscript"
    plain = load_checkpoint(tmp_path / "plain.pt")
    assert plain.format == "torchscript" and plain.num_classes is None
    assert sorted(plain.defaults_used) == ["input_size", "mean", "std"]
    _same_outputs(plain.model, model, x)
    extra = load_checkpoint(tmp_path / "extra.pt")
    assert extra.input_size == 32 and extra.std == (0.2, 0.2, 0.2)
    assert extra.meta == {"method": "wd"} and extra.class_names == ["a", "b", "c"]
    assert extra.defaults_used == []


def test_pickled_module_needs_trust(tmp_path, model, x):
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "--trust-checkpoint" in msg and "arbitrary code" in msg
    assert "timm.models.resnet.ResNet" in msg
    ck = load_checkpoint(path, trust_checkpoint=True)
    assert ck.format == "pickled-module"
    _same_outputs(ck.model, model, x)


def test_arch_or_classes_disagreeing_with_canonical(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="is a test_resnet, but --arch resnet18"):
        load_checkpoint(path, arch="resnet18")
    with pytest.raises(CheckpointError, match="has 2 classes, but --num-classes 4"):
        load_checkpoint(path, num_classes=4)


def test_unsupported_files(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot tell the format"):
        load_checkpoint(junk)
    future = tmp_path / "future.pt"
    torch.save({"format": "shiftbench/9", "arch": TINY_ARCH}, future)
    with pytest.raises(CheckpointError, match="format 'shiftbench/9'"):
        load_checkpoint(future)
    odd = tmp_path / "odd.pt"
    torch.save({"epoch": 3, "lr": 0.1}, odd)
    with pytest.raises(CheckpointError, match="holds a dict with keys epoch, lr"):
        load_checkpoint(odd)
    good = save_tiny_checkpoint(tmp_path / "good.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(cut)
