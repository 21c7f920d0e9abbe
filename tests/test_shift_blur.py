"""blur: pixel parity with cv2.blur on real H&E tiles, for both backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import load_oral_tiles

import shiftbench
from shiftbench.errors import UserInputError
from shiftbench.shifts.blur import box_blur, reflect101_index

cv2 = pytest.importorskip("cv2")

BACKENDS = ["cv2", "torch"]


@pytest.fixture(scope="module")
def tiles() -> torch.Tensor:
    return load_oral_tiles(6, stride=190)  # real 224×224 tiles, both classes/magnifications


def cv2_blur(batch: torch.Tensor, n: int) -> np.ndarray:
    """Reference: cv2.blur per HWC image, as a user would call it."""
    hwc = batch.permute(0, 2, 3, 1).numpy()
    return np.stack([cv2.blur(np.ascontiguousarray(im), (n, n)) for im in hwc])


def as_hwc(batch: torch.Tensor) -> np.ndarray:
    return batch.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_sweep_is_bit_exact_with_cv2(tiles, backend):
    shift = shiftbench.get_shift("blur", backend=backend)
    seen = []
    for m, out in shift.sweep(tiles):
        seen.append(int(m))
        np.testing.assert_array_equal(as_hwc(out), cv2_blur(tiles, int(m)), err_msg=f"n={m}")
    assert seen == list(range(1, 21))


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_kernels_are_bit_exact_with_cv2(tiles, backend):
    # 22 and 34: sizes where rounding S·(1/n²) in float64 (instead of float32) disagrees with cv2.
    shift = shiftbench.get_shift("blur", backend=backend)
    few = tiles[:2]
    for m, out in shift.sweep(few, [21, 22, 28, 34, 64, 127, 255]):
        np.testing.assert_array_equal(as_hwc(out), cv2_blur(few, int(m)), err_msg=f"n={m}")


def test_within_one_grey_level_of_the_exact_window_mean(tiles):
    """Independent of cv2's rounding: scipy's float64 mean over the same window and border."""
    ndimage = pytest.importorskip("scipy.ndimage")
    x = tiles[:3]
    for n in (2, 3, 8, 11, 18, 20):
        ours = box_blur(x, n).numpy().astype(np.float64)
        # mode="mirror" is REFLECT_101; origin 0 puts n//2 pixels before the centre, as cv2.
        mean = ndimage.uniform_filter(
            x.numpy().astype(np.float64), size=(1, 1, n, n), mode="mirror"
        )
        err = np.abs(ours - mean)
        assert err.max() <= 1.0, (n, err.max())
        # cv2 rounds n=2 means of k + 0.25 up (expected error 0.375 over uniform remainders); a
        # window shifted by one pixel would be off by several grey levels on these tiles.
        assert err.mean() < 0.4, (n, err.mean())


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernel_larger_than_the_image(tiles, backend):
    # cv2 keeps reflecting when the window is wider than the image; so must we.
    crops = [tiles[:1, :, 10:15, 20:27], tiles[:1, :, :1, :9], tiles[:1, :, 5:8, 5:8]]
    for crop in crops:
        crop = crop.contiguous()
        for n in (2, 3, 5, 8, 20):
            out = box_blur(crop, n, backend=backend)
            np.testing.assert_array_equal(
                as_hwc(out), cv2_blur(crop, n), err_msg=f"{crop.shape} n={n}"
            )


def test_reflect101_index_matches_cv2_border_interpolate():
    for length in (1, 2, 3, 7):
        idx = reflect101_index(length, 9, 11).tolist()
        ref = [
            cv2.borderInterpolate(p, length, cv2.BORDER_REFLECT_101) for p in range(-9, length + 11)
        ]
        assert idx == ref, length


@pytest.mark.parametrize("backend", BACKENDS)
def test_channels_last_in_channels_last_out(tiles, backend):
    x = tiles[:2].contiguous(memory_format=torch.channels_last)
    out = shiftbench.get_shift("blur", backend=backend)(x, 7)
    assert out.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_array_equal(as_hwc(out), cv2_blur(tiles[:2], 7))


def test_torch_backend_repads_for_kernels_beyond_the_default_sweep(tiles):
    x = tiles[:2]
    shift = shiftbench.get_shift("blur", backend="torch")
    for m, out in shift.sweep(x, [2, 41, 3, 20]):  # 41 > 20 forces a wider padding mid-sweep
        np.testing.assert_array_equal(as_hwc(out), cv2_blur(x, int(m)), err_msg=f"n={m}")


def test_bad_arguments():
    x = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(UserInputError, match="backend"):
        shiftbench.get_shift("blur", backend="gpu")
    with pytest.raises(UserInputError, match=r"\[1, 255\]"):
        box_blur(x, 0)
    with pytest.raises(UserInputError, match=r"\[1, 255\]"):
        box_blur(x, 2.5)  # type: ignore[arg-type]
    with pytest.raises(UserInputError, match="uint8"):
        box_blur(x.float(), 3)
    with pytest.raises(ValueError, match="whole number"):
        shiftbench.get_shift("blur")(x, 2.5)
    assert torch.equal(box_blur(x, 1), x)
