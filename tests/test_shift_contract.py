"""The contract every registered shift must keep (torchvision ``check_kernel`` style).

Parametrised over ``list_shifts()``, so a new shift file is checked without editing this test.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import ClassVar

import numpy as np
import pytest
import torch

import shiftbench
from shiftbench.errors import UserInputError
from shiftbench.registry import _unregister
from shiftbench.rng import derive_seed
from shiftbench.shifts.base import Shift

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


# -- stricter contract: in-place writes, empty batches, magnitudes, undeclared randomness --------


@pytest.mark.parametrize("name", SHIFTS)
def test_input_version_counter_unchanged(name, tiles):
    """No in-place write at all, not even one that restores the values (torch ``_version``)."""
    shift = shiftbench.get_shift(name)
    strongest = [shift.identity, non_identity(shift)[-1]]
    for x, mags in ((tiles.clone(), None), (tiles.float() / 255, strongest)):
        version = x._version
        for _ in shift.sweep(x, mags, seed=3):
            pass
        assert x._version == version, f"{name} wrote into its input"


@pytest.mark.parametrize("name", SHIFTS)
def test_empty_batch(name, tiles):
    shift = shiftbench.get_shift(name)
    for x in (tiles[:0], tiles[:0].float()):
        steps = list(shift.sweep(x, seed=0, sample_ids=[]))
        assert [m for m, _ in steps] == [float(m) for m in shift.magnitudes]
        for _, out in steps:
            assert out.shape == (0, *tiles.shape[1:]) and out.dtype == x.dtype


@pytest.mark.parametrize("name", SHIFTS)
def test_empty_magnitude_list_is_an_error(name, tiles):
    shift = shiftbench.get_shift(name)
    for empty in ([], (), np.array([]), torch.tensor([])):
        with pytest.raises(UserInputError, match="no magnitudes given"):
            shift.sweep(tiles, empty)


@pytest.mark.parametrize("name", SHIFTS)
def test_array_valued_magnitudes(name, tiles):
    shift = shiftbench.get_shift(name)
    mags = non_identity(shift)[:2]
    reference = [out for _, out in shift.sweep(tiles, mags, seed=4)]
    for as_array in (np.array(mags), torch.tensor(mags, dtype=torch.float64)):
        got = list(shift.sweep(tiles, as_array, seed=4))
        assert [m for m, _ in got] == [float(m) for m in mags]
        assert all(torch.equal(a, b) for (_, a), b in zip(got, reference, strict=True))
    assert torch.equal(shift(tiles, np.float64(mags[0]), seed=4), reference[0])
    assert torch.equal(shift(tiles, torch.tensor(mags[0]), seed=4), reference[0])
    for not_one in (np.array(mags), torch.tensor(mags), list(mags)):
        with pytest.raises(UserInputError, match="not one number"):
            shift(tiles, not_one)
    with pytest.raises(UserInputError, match="1-D array"):
        shift.sweep(tiles, np.array([mags]))


def _rng_states() -> tuple:
    # The legacy global numpy state is exactly what must stay untouched.
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()  # noqa: NPY002


def check_randomness_declared(shift: Shift, images: torch.Tensor) -> None:
    """Global RNGs untouched; a shift that is not ``stochastic`` ignores the seed."""
    mags = non_identity(shift)
    mags = sorted(set(mags[:1] + mags[len(mags) // 2 : len(mags) // 2 + 1] + mags[-1:]))
    before = _rng_states()
    first = [out for _, out in shift.sweep(images, mags, seed=1)]
    after = _rng_states()
    assert torch.equal(before[0], after[0]), f"{shift.name} drew from torch's global RNG"
    assert np.array_equal(before[1], after[1]), f"{shift.name} drew from numpy's global RNG"
    assert before[2] == after[2], f"{shift.name} drew from Python's global RNG"
    if not shift.stochastic:
        second = [out for _, out in shift.sweep(images, mags, seed=2)]
        assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True)), (
            f"{shift.name} depends on the seed but does not declare stochastic = True"
        )


@pytest.mark.parametrize("name", SHIFTS)
def test_randomness_is_declared_and_explicit(name, tiles):
    check_randomness_declared(shiftbench.get_shift(name), tiles)


def _noise_shift(name: str, *, stochastic: bool, draw: str) -> type[Shift]:
    """A test shift that adds noise from the global RNG or from ``ctx.generator``."""

    class Noise(Shift):
        magnitudes: ClassVar[tuple[float, ...]] = (0.0, 5.0)
        identity: ClassVar[float] = 0.0
        units: ClassVar[str] = "grey levels"
        description: ClassVar[str] = "additive noise (test)"
        valid_range: ClassVar[tuple[float, float]] = (0.0, 50.0)

        def apply(self, state, magnitude, ctx):
            if draw == "global":
                noise = torch.randn(state.shape)
            else:
                g = [ctx.generator(i, magnitude) for i in range(state.shape[0])]
                noise = torch.stack([torch.randn(state.shape[1:], generator=gi) for gi in g])
            return (state.float() + magnitude * noise).round().clamp(0, 255).to(torch.uint8)

    return type(f"Noise_{name}", (Noise,), {"name": name, "stochastic": stochastic})


def test_undeclared_randomness_is_caught(tiles):
    names = ["test_noise_global", "test_noise_undeclared", "test_noise_declared"]
    try:
        global_rng = _noise_shift(names[0], stochastic=True, draw="global")()
        with pytest.raises(AssertionError, match="torch's global RNG"):
            check_randomness_declared(global_rng, tiles)
        undeclared = _noise_shift(names[1], stochastic=False, draw="generator")()
        with pytest.raises(RuntimeError, match="does not declare stochastic = True"):
            undeclared(tiles, 5.0)
        declared = _noise_shift(names[2], stochastic=True, draw="generator")()
        check_randomness_declared(declared, tiles)
        assert not torch.equal(declared(tiles, 5.0, seed=1), declared(tiles, 5.0, seed=2))
    finally:
        for n in names:
            _unregister(n)
