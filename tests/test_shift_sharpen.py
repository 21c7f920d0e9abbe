"""sharpen: pixel parity with cv2.filter2D (+ cv2.addWeighted) on real H&E tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import load_oral_tiles

import shiftbench
import shiftbench.shifts.sharpen as sharpen_mod
from shiftbench.errors import UserInputError
from shiftbench.shifts.sharpen import sharpen, sharpened

cv2 = pytest.importorskip("cv2")

BACKENDS = ["cv2", "torch"]
PAPER_KERNEL = np.array([[-1, -1, -1], [-1, 9, -1], [-1, -1, -1]], dtype=np.float64)
ALPHAS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


@pytest.fixture(scope="module")
def tiles() -> torch.Tensor:
    return load_oral_tiles(6, stride=190)


def hwc_images(batch: torch.Tensor) -> list[np.ndarray]:
    return [np.ascontiguousarray(im) for im in batch.permute(0, 2, 3, 1).numpy()]


def ref_blend(batch: torch.Tensor, alpha: float) -> np.ndarray:
    """The paper's recipe with OpenCV, per HWC image."""
    return np.stack(
        [
            cv2.addWeighted(im, 1 - alpha, cv2.filter2D(im, -1, PAPER_KERNEL), alpha, 0)
            for im in hwc_images(batch)
        ]
    )


def ref_kernel(batch: torch.Tensor, alpha: float) -> np.ndarray:
    k = np.zeros((3, 3))
    k[1, 1] = 1.0
    k_alpha = (1 - alpha) * k + alpha * PAPER_KERNEL
    return np.stack([cv2.filter2D(im, -1, k_alpha) for im in hwc_images(batch)])


def as_hwc(batch: torch.Tensor) -> np.ndarray:
    return batch.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["blend", "kernel"])
def test_default_sweep_is_bit_exact_with_cv2(tiles, mode, backend):
    ref = ref_blend if mode == "blend" else ref_kernel
    shift = shiftbench.get_shift("sharpen", mode=mode, backend=backend)
    seen = []
    for m, out in shift.sweep(tiles):
        seen.append(m)
        if m == 0:
            assert torch.equal(out, tiles)
            continue
        np.testing.assert_array_equal(as_hwc(out), ref(tiles, m), err_msg=f"alpha={m}")
    assert seen == [0.0, *ALPHAS]


def test_blend_table_matches_add_weighted_on_every_pixel_pair():
    """The torch backend's per-α table against cv2.addWeighted on all 256×256 uint8 pairs."""
    x, s = np.meshgrid(
        np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij"
    )
    for alpha in [*ALPHAS, 0.05, 0.33, 0.999]:
        ref = cv2.addWeighted(x, 1 - alpha, s, alpha, 0)
        lut = sharpen_mod._blend_lut(alpha).numpy().reshape(256, 256)
        np.testing.assert_array_equal(lut, ref, err_msg=f"alpha={alpha}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_odd_sized_crops_within_one_grey_level(tiles, backend):
    # cv2's own scalar tail loop (odd widths) rounds float kernels without FMA, so cv2 is not
    # layout-consistent there; we promise ≤ 1 grey level, and bit-exact for the blend mode.
    crop = tiles[:2, :, 3:64, 5:102].contiguous()  # 61×97
    for alpha in (0.1, 0.3, 0.5, 0.9):
        blend = sharpen(crop, alpha, backend=backend)
        np.testing.assert_array_equal(as_hwc(blend), ref_blend(crop, alpha))
        kern = sharpen(crop, alpha, mode="kernel", backend=backend).numpy().astype(int)
        diff = np.abs(as_hwc(torch.from_numpy(kern)) - ref_kernel(crop, alpha).astype(int))
        assert diff.max() <= 1, (alpha, diff.max())
        assert (diff > 0).mean() < 0.01


@pytest.mark.parametrize("backend", BACKENDS)
def test_sharpened_saturates_before_blending(tiles, backend):
    """x_sharp against a slow direct formula (int64, explicit reflect-101 borders)."""
    x = tiles[:2]
    xp = np.pad(x.numpy().astype(np.int64), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    h, w = x.shape[-2:]
    box = sum(xp[:, :, i : i + h, j : j + w] for i in range(3) for j in range(3))
    unclipped = 10 * x.numpy().astype(np.int64) - box
    assert unclipped.min() < 0 and unclipped.max() > 255  # the clip matters on real tiles
    np.testing.assert_array_equal(sharpened(x, backend=backend).numpy(), np.clip(unclipped, 0, 255))


def test_modes_agree_at_full_strength_and_differ_in_between(tiles):
    x = tiles[:2]
    assert torch.equal(sharpen(x, 1.0, mode="blend"), sharpen(x, 1.0, mode="kernel"))
    assert not torch.equal(sharpen(x, 0.5, mode="blend"), sharpen(x, 0.5, mode="kernel"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_channels_last_in_channels_last_out(tiles, backend):
    x = tiles[:2].contiguous(memory_format=torch.channels_last)
    for mode in ("blend", "kernel"):
        out = shiftbench.get_shift("sharpen", mode=mode, backend=backend)(x, 0.7)
        assert out.is_contiguous(memory_format=torch.channels_last)
        ref = ref_blend if mode == "blend" else ref_kernel
        np.testing.assert_array_equal(as_hwc(out), ref(tiles[:2], 0.7))


def test_sweep_filters_once(tiles, monkeypatch):
    calls = []
    original = sharpen_mod._sharpened_cv2

    def counting(images, kernel):
        calls.append(1)
        return original(images, kernel)

    monkeypatch.setattr(sharpen_mod, "_sharpened_cv2", counting)
    outs = list(shiftbench.get_shift("sharpen", backend="cv2").sweep(tiles[:2]))
    assert len(outs) == 11 and len(calls) == 1


def test_bad_arguments(tiles):
    with pytest.raises(UserInputError, match="mode"):
        shiftbench.get_shift("sharpen", mode="unsharp")
    with pytest.raises(UserInputError, match="backend"):
        shiftbench.get_shift("sharpen", backend="cuda")
    with pytest.raises(UserInputError, match=r"\[0, 1\]"):
        sharpen(tiles[:1], 1.5)
    with pytest.raises(ValueError, match="out of range"):
        shiftbench.get_shift("sharpen")(tiles[:1], -0.1)
