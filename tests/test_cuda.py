"""GPU readiness: shifts and runs on CUDA agree with the CPU; ``--amp`` agrees with float32.

The CUDA tests are skipped (with the reason) on a machine without CUDA, such as CI. The mixed
precision tests run everywhere: torch.autocast does bfloat16 on the CPU too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _models import save_tiny_checkpoint, write_oral_csv
from conftest import load_oral_tiles

import shiftbench
from shiftbench.cli import main
from shiftbench.errors import RunError
from shiftbench.registry import get_shift, list_shifts

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA is not available on this machine"
)
EXACT_SHIFTS = {"blur", "sharpen"}  # integer filters: bit-exact, or off by <= 1 grey level
IDENTICAL_SHIFTS = {"cutout"}  # random draws stay on the CPU generator: identical


@pytest.fixture(scope="module")
def tiles() -> torch.Tensor:
    """8 real 224² oral tiles (uint8) spread over the classes and magnifications."""
    return load_oral_tiles(8, stride=140)


def _compare(name: str, cpu: torch.Tensor, gpu: torch.Tensor) -> None:
    diff = (cpu.int() - gpu.cpu().int()).abs()
    if name in IDENTICAL_SHIFTS:
        assert torch.equal(cpu, gpu.cpu()), f"{name}: CUDA differs from CPU"
    elif name in EXACT_SHIFTS:
        assert int(diff.max()) <= 1, f"{name}: max difference {int(diff.max())} grey levels"
    else:  # stain and frequency shifts: float maths, rounding may flip a pixel by 1
        assert int(diff.max()) <= 255
        within = float((diff <= 1).float().mean())
        assert within >= 0.999, f"{name}: only {within:.4%} of pixels within 1 grey level"


@needs_cuda
@pytest.mark.parametrize("name", list_shifts())
def test_every_shift_on_cuda_matches_the_cpu(name: str, tiles: torch.Tensor) -> None:
    shift = get_shift(name)
    mags = [m for m in shift.magnitudes if m != shift.identity]
    ids = list(range(100, 100 + len(tiles)))
    on_cpu = dict(shift.sweep(tiles, mags, seed=3, sample_ids=ids))
    on_gpu = dict(shift.sweep(tiles.cuda(), mags, seed=3, sample_ids=ids))
    assert list(on_cpu) == list(on_gpu)
    for mag in mags:
        assert on_gpu[mag].device.type == "cuda"
        _compare(name, on_cpu[mag], on_gpu[mag])


@pytest.fixture(scope="module")
def small_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("amp")
    csv_path = write_oral_csv(root / "data", n_per_class=12, size=64)
    ckpt = save_tiny_checkpoint(root / "m.pt", seed=0)
    return ckpt, csv_path


def _argmax_agreement(a: Path, b: Path) -> float:
    pa_ = shiftbench.read_predictions(a, with_meta=False)
    pb = shiftbench.read_predictions(b, with_meta=False)
    keys = ["checkpoint", "shift", "magnitude", "sample_id"]
    pa_, pb = pa_.sort_values(keys), pb.sort_values(keys)
    assert np.array_equal(pa_[keys].to_numpy(), pb[keys].to_numpy())
    return float((pa_["pred"].to_numpy() == pb["pred"].to_numpy()).mean())


OPTIONS = dict(shifts="sharpen,cutout", magnitudes=[0, 1], n_boot=0, workers=0, batch_size=8)


@needs_cuda
def test_a_run_on_cuda_predicts_as_on_the_cpu(
    small_study: tuple[Path, Path], tmp_path: Path
) -> None:
    ckpt, data = small_study
    shiftbench.run(ckpt, data, out=tmp_path / "cpu", device="cpu", **OPTIONS)
    cuda = shiftbench.run(ckpt, data, out=tmp_path / "cuda", device="cuda", **OPTIONS)
    assert cuda.manifest["device"]["type"] == "cuda"
    assert _argmax_agreement(tmp_path / "cpu", tmp_path / "cuda") >= 0.995


def test_bf16_autocast_agrees_with_float32(small_study: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, data = small_study
    shiftbench.run(ckpt, data, out=tmp_path / "fp32", device="cpu", **OPTIONS)
    amp = shiftbench.run(ckpt, data, out=tmp_path / "bf16", device="cpu", amp="bf16", **OPTIONS)
    assert amp.manifest["config"]["amp"] == "bf16"
    # bfloat16 keeps 8 bits of mantissa: probabilities move by ~1e-2, and only images near the
    # decision boundary change class (the docs state the agreement measured on the demo model).
    assert _argmax_agreement(tmp_path / "fp32", tmp_path / "bf16") >= 0.95
    probs = [
        shiftbench.read_predictions(tmp_path / d, with_meta=False).sort_values(
            ["checkpoint", "shift", "magnitude", "sample_id"]
        )
        for d in ("fp32", "bf16")
    ]
    p_cols = [c for c in probs[0].columns if c.startswith("prob_")]
    gap = np.abs(probs[0][p_cols].to_numpy() - probs[1][p_cols].to_numpy())
    assert 0 < gap.max() < 0.1  # bf16 really ran (not float32), and stays close


def test_amp_is_part_of_the_run_identity(small_study: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, data = small_study
    shiftbench.run(ckpt, data, out=tmp_path / "r", device="cpu", **OPTIONS)
    with pytest.raises(RunError, match="amp"):
        shiftbench.run(ckpt, data, out=tmp_path / "r", resume=True, amp="bf16", **OPTIONS)


def test_cli_refuses_an_unknown_amp_dtype(
    small_study: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt, data = small_study
    argv = ["run", "--ckpt", str(ckpt), "--data", str(data), "--shift", "blur"]
    argv += ["--out", str(tmp_path / "r"), "--amp", "fp8", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --amp 'fp8' is not one of bf16, fp16 (or leave it off)"]
    assert not (tmp_path / "r").exists()
