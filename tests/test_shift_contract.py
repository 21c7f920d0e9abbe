"""The contract every registered shift must keep (torchvision ``check_kernel`` style).

Parametrised over ``list_shifts()``, so a new shift file is checked without editing this test.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import shiftbench
from shiftbench.shifts.base import derive_seed

SHIFTS = shiftbench.list_shifts()


def test_registry_has_the_paper_shifts():
    assert {"blur", "sharpen", "haematoxylin", "eosin", "cutout"} <= set(SHIFTS)


@pytest.fixture(scope="module")
def tiles() -> torch.Tensor:
    from conftest import load_oral_tiles

    # 6 real tiles cropped to 96x96 keep the contract fast; stain shifts need real tissue.
    return load_oral_tiles(6, stride=150)[:, :, 40:136, 60:156].contiguous()


def non_identity(shift) -> list[float]:
    return [m for m in shift.magnitudes if m != shift.identity]


@pytest.mark.parametrize("name", SHIFTS)
def test_declared_metadata(name):
    shift = shiftbench.get_shift(name)
    assert shift.name == name
    assert isinstance(shift.units, str) and shift.units
    assert isinstance(shift.description, str) and "\n" not in shift.description
    assert shift.identity in shift.magnitudes
    assert shift.magnitudes[0] == shift.identity, "sweeps start at the identity"
    for m in shift.magnitudes:
        assert shift.check_magnitude(m) == float(m)


@pytest.mark.parametrize("name", SHIFTS)
def test_identity_is_bit_exact(name, tiles):
    shift = shiftbench.get_shift(name)
    out = shift(tiles, shift.identity)
    assert out.dtype == tiles.dtype and out.shape == tiles.shape
    assert torch.equal(out, tiles)
    assert out.data_ptr() != tiles.data_ptr(), "identity must not alias the input"


@pytest.mark.parametrize("name", SHIFTS)
def test_shape_dtype_device_kept_and_input_untouched(name, tiles):
    shift = shiftbench.get_shift(name)
    before = tiles.clone()
    for m, out in shift.sweep(tiles, seed=3):
        assert out.shape == tiles.shape, m
        assert out.dtype == torch.uint8, m
        assert out.device == tiles.device, m
    assert torch.equal(tiles, before), "shift modified its input in place"


@pytest.mark.parametrize("name", SHIFTS)
def test_float_input_gives_float_output(name, tiles):
    shift = shiftbench.get_shift(name)
    m = non_identity(shift)[-1]
    x = tiles.float() / 255
    out = shift(x, m, seed=1)
    assert out.dtype == torch.float32 and out.shape == x.shape
    ref = shift(tiles, m, seed=1).float() / 255
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", SHIFTS)
def test_batch_equals_per_sample(name, tiles):
    shift = shiftbench.get_shift(name)
    ids = [10, 11, 12, 13, 14, 15]
    for m, batched in shift.sweep(tiles, seed=7, sample_ids=ids):
        for i in range(tiles.shape[0]):
            single = shift(tiles[i : i + 1], m, seed=7, sample_ids=[ids[i]])
            assert torch.equal(batched[i : i + 1], single), (m, i)


@pytest.mark.parametrize("name", SHIFTS)
def test_order_independent(name, tiles):
    shift = shiftbench.get_shift(name)
    ids = torch.arange(tiles.shape[0]) + 100
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    m = non_identity(shift)[len(non_identity(shift)) // 2]
    out = shift(tiles, m, seed=5, sample_ids=ids)
    out_perm = shift(tiles[perm], m, seed=5, sample_ids=ids[perm])
    assert torch.equal(out[perm], out_perm)


@pytest.mark.parametrize("name", SHIFTS)
def test_same_generator_seed_same_output(name, tiles):
    shift = shiftbench.get_shift(name)
    m = non_identity(shift)[-1]
    a = shift(tiles, m, torch.Generator().manual_seed(123))
    b = shift(tiles, m, torch.Generator().manual_seed(123))
    assert torch.equal(a, b)
    if shift.stochastic:
        c = shift(tiles, m, torch.Generator().manual_seed(124))
        assert not torch.equal(a, c), "a stochastic shift ignored its generator"


@pytest.mark.parametrize("name", SHIFTS)
def test_sweep_equals_single_calls(name, tiles):
    shift = shiftbench.get_shift(name)
    for m, out in shift.sweep(tiles, seed=2):
        assert torch.equal(out, shift(tiles, m, seed=2)), m


@pytest.mark.parametrize("name", SHIFTS)
def test_change_grows_along_default_sweep(name, tiles):
    shift = shiftbench.get_shift(name)
    changes = [
        (out.float() - tiles.float()).abs().mean().item() for _, out in shift.sweep(tiles, seed=0)
    ]
    assert changes[0] == 0.0
    assert changes[-1] > 0.5, f"strongest magnitude barely changes the images: {changes}"
    for a, b in itertools.pairwise(changes):
        assert b >= a - 1e-6, f"mean absolute change not monotone: {changes}"


@pytest.mark.parametrize("name", SHIFTS)
def test_out_of_range_magnitude_names_the_range(name, tiles):
    shift = shiftbench.get_shift(name)
    lo, hi = shift.valid_range
    bad = [lo - 1, math.nan] + ([hi + 1] if math.isfinite(hi) else [])
    for m in bad:
        with pytest.raises(ValueError, match=r"valid: .*\["):
            shift(tiles, m)
    with pytest.raises(ValueError, match="out of range"):
        list(shift.sweep(tiles, [shift.identity, lo - 1]))


@pytest.mark.parametrize("name", SHIFTS)
def test_bad_images_give_clear_errors(name, tiles):
    shift = shiftbench.get_shift(name)
    m = non_identity(shift)[0]
    with pytest.raises(ValueError, match="RGB"):
        shift(tiles[:, :1], m)  # grayscale
    with pytest.raises(ValueError, match="channels-last"):
        shift(tiles.permute(0, 2, 3, 1), m)
    with pytest.raises(ValueError, match="dtype"):
        shift(tiles.to(torch.int32), m)
    with pytest.raises(ValueError, match="batch axis"):
        shift(tiles[0], m)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        shift(tiles.float(), m)  # float input must be scaled to [0, 1]


def test_derive_seed_is_stable_and_distinct():
    a = derive_seed(0, 5, "cutout", 4)
    assert a == derive_seed(0, 5, "cutout", 4.0)
    assert len({a, derive_seed(1, 5, "cutout", 4), derive_seed(0, 6, "cutout", 4)}) == 3
    assert 0 <= a < 2**63
