"""lowpass / highpass / ring: parity with a direct numpy.fft implementation on real H&E tiles."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from conftest import load_oral_tiles

import shiftbench
from shiftbench.errors import UserInputError
from shiftbench.shifts.base import derive_seed
from shiftbench.shifts.frequency import fourier_filter, ring_bins, transfer

EDGES = ["hard", "gaussian"]


@pytest.fixture(scope="module")
def tiles() -> torch.Tensor:
    return load_oral_tiles(4, stride=190)  # real 224×224 tiles, both classes/magnifications


# -- independent numpy reference ------------------------------------------------------------------


def signed_bins(n: int) -> np.ndarray:
    """Integer frequency index k of each DFT bin (fftfreq(n) = k / n), as int64."""
    return np.rint(np.fft.fftfreq(n) * n).astype(np.int64)


def inside_disc(h: int, w: int, m: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact (integer) r < m·r_max and r == m·r_max masks, r_max = the largest r on the grid."""
    ky, kx = signed_bins(h)[:, None], signed_bins(w)[None, :]
    # r² = (ky/h)² + (kx/w)²; multiply by (h·w)² to stay in integers.
    r2 = (ky * w) ** 2 + (kx * h) ** 2
    r2_max = r2.max()
    q = Fraction(str(m)).limit_denominator(10**6)
    lhs, rhs = r2 * q.denominator**2, r2_max * q.numerator**2
    return lhs < rhs, lhs == rhs


def np_filter(x: torch.Tensor, m: float, kind: str, edge: str) -> np.ndarray:
    """Per-channel numpy.fft low/high-pass in float64, written from the issue's formulas."""
    img = x.numpy().astype(np.float64)
    h, w = img.shape[-2:]
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    r = np.hypot(fy, fx)
    if edge == "hard":
        below, tie = inside_disc(h, w, m)
        if kind == "lowpass":
            t = below | tie  # keep r ≤ m·r_max
        else:
            t = ~(below & (r > 0))  # remove 0 < r < m·r_max
    else:
        sigma = m * r.max()
        g = np.exp(-(r**2) / (2 * sigma**2)) if sigma > 0 else (r == 0).astype(float)
        t = g if kind == "lowpass" else np.where(r == 0, 1.0, 1.0 - g)
    spectrum = np.fft.fft2(img, axes=(-2, -1))
    y = np.fft.ifft2(spectrum * t, axes=(-2, -1)).real
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def np_ring(x: torch.Tensor, m: float, f0: float, seed: int, ids: list[int]) -> np.ndarray:
    """numpy ring (noise) with the phases drawn as documented: rand(|R|, float64) per sample,
    the j-th draw for the j-th ring bin in row-major fft order."""
    img = x.numpy().astype(np.float64)
    h, w = img.shape[-2:]
    r = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])
    dist = np.abs(r - f0) - 0.5 / min(h, w)
    assert np.abs(dist).min() > 1e-9, "a bin on the ring's edge: pick another frequency"
    ring = np.argwhere(dist < 0)  # row-major order
    out = []
    for i, sid in enumerate(ids):
        g = torch.Generator().manual_seed(derive_seed(seed, sid, "ring", None))
        u = torch.rand(len(ring), generator=g, dtype=torch.float64).numpy()
        coeffs = np.zeros((h, w), dtype=complex)
        for (ky, kx), uj in zip(ring, u, strict=True):
            coeffs[ky, kx] = np.exp(2j * np.pi * uj)
        p = np.fft.ifft2(coeffs).real
        p /= np.sqrt(np.mean(p**2))
        out.append(np.clip(np.round(img[i] + m * p[None]), 0, 255))
    return np.stack(out).astype(np.uint8)


def assert_within_one_grey_level(ours: torch.Tensor, ref: np.ndarray, what: object) -> None:
    diff = np.abs(ours.numpy().astype(np.int16) - ref.astype(np.int16))
    assert diff.max() <= 1, (what, diff.max())
    # float32 vs float64 only flips roundings of values within ~1e-4 of a half grey level.
    assert (diff == 0).mean() > 0.999, (what, (diff == 0).mean())


def radial_power_fraction(signal: np.ndarray, f0: float, half_width: float) -> float:
    """Share of the DFT power of ``signal`` [H, W] with |r − f0| ≤ half_width (DC included)."""
    h, w = signal.shape
    power = np.abs(np.fft.fft2(signal)) ** 2
    r = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])
    return float(power[np.abs(r - f0) <= half_width].sum() / power.sum())


# -- lowpass / highpass ---------------------------------------------------------------------------


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("name", ["lowpass", "highpass"])
def test_default_sweep_matches_numpy_fft(tiles, name, edge):
    shift = shiftbench.get_shift(name, edge=edge)
    seen = []
    for m, out in shift.sweep(tiles):
        seen.append(m)
        if m == shift.identity:
            assert torch.equal(out, tiles)
            continue
        assert_within_one_grey_level(out, np_filter(tiles, m, name, edge), (name, edge, m))
    assert seen == list(shift.magnitudes)


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("kind", ["lowpass", "highpass"])
def test_odd_sizes_and_extreme_magnitudes_match_numpy_fft(tiles, kind, edge):
    crop = tiles[:2, :, 17:62, 30:91].contiguous()  # 45×61: odd sizes, r_max < √2/2
    for m in (0.0, 0.03, 0.5, 0.999, 1.0):
        ours = fourier_filter(crop, m, kind, edge)  # no identity short-circuit here
        assert_within_one_grey_level(ours, np_filter(crop, m, kind, edge), (kind, edge, m))


def test_bins_exactly_on_the_cut_off_are_kept(tiles):
    # 0.5·r_max on 224² passes exactly through the bins (±56, ±56): "keep r ≤ m·r_max" keeps
    # them, "remove 0 < r < m·r_max" keeps them too.
    _, tie = inside_disc(224, 224, 0.5)
    assert tie.sum() == 4
    for kind in ("lowpass", "highpass"):
        t = transfer(224, 224, 0.5, kind, half=False).numpy()
        assert (t[tie] == 1).all(), kind


def test_highpass_keeps_the_mean_and_lowpass_zero_is_the_mean(tiles):
    for edge in EDGES:
        for m in (0.02, 0.5, 1.0):
            assert transfer(224, 224, m, "highpass", edge)[0, 0] == 1.0
        t = transfer(224, 224, 0.0, "lowpass", edge, half=False)
        assert t[0, 0] == 1.0 and t.sum() == 1.0
    x = tiles[:2]
    flat = fourier_filter(x, 0.0, "lowpass")
    mean = x.double().mean(dim=(-2, -1), keepdim=True).round().to(torch.uint8)
    assert torch.equal(flat, mean.expand_as(x))


def test_identity_exact_also_through_the_transform(tiles):
    x = tiles[:2]
    # The full transform round trip is exact after rounding (float32 error ≪ 0.5 grey levels).
    assert torch.equal(fourier_filter(x, 1.0, "lowpass"), x)
    assert torch.equal(fourier_filter(x, 0.0, "highpass", "gaussian"), x)
    gauss = shiftbench.get_shift("lowpass", edge="gaussian")
    # m = 1 is the declared identity of lowpass for both edges (a documented convention for the
    # gaussian, whose formula would still attenuate r_max by e^{-1/2}).
    assert torch.equal(gauss(x, 1.0), x)
    assert not torch.equal(fourier_filter(x, 1.0, "lowpass", "gaussian"), x)


@pytest.mark.parametrize("edge", EDGES)
def test_sweeps_are_nested(edge):
    # Lowering the lowpass cut or raising the highpass cut only removes or damps more.
    low = [transfer(64, 48, m, "lowpass", edge) for m in (1, 0.7, 0.35, 0.125, 0.06)]
    high = [transfer(64, 48, m, "highpass", edge) for m in (0, 0.05, 0.2, 0.5)]
    for seq in (low, high):
        for a, b in itertools.pairwise(seq):
            assert (b <= a).all()


@pytest.mark.parametrize("name", ["lowpass", "highpass", "ring"])
def test_channels_last_in_channels_last_out(tiles, name):
    shift = shiftbench.get_shift(name)
    m = shift.magnitudes[3]
    x = tiles[:2].contiguous(memory_format=torch.channels_last)
    out = shift(x, m, seed=4)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, shift(tiles[:2], m, seed=4))


# -- ring -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("f0", [0.25, 0.1, 0.4])
def test_ring_matches_numpy_fft(tiles, f0):
    shift = shiftbench.get_shift("ring", frequency=f0)
    ids = [7, 301, 12, 9]
    for m, out in shift.sweep(tiles, [2, 8, 32], seed=11, sample_ids=ids):
        assert_within_one_grey_level(out, np_ring(tiles, m, f0, 11, ids), (f0, m))


@pytest.mark.parametrize("pattern", ["noise", "grating"])
@pytest.mark.parametrize("f0", [0.05, 0.125, 0.25, 0.4])
def test_ring_power_lies_at_the_requested_frequency(pattern, f0):
    grey = torch.full((3, 3, 128, 128), 128, dtype=torch.uint8)
    out = shiftbench.get_shift("ring", frequency=f0, pattern=pattern)(grey, 8, seed=2)
    added = out.double() - 128
    assert added.abs().max() < 127, "clipped: the test needs the signal before clipping"
    for i in range(3):
        assert torch.equal(added[i, 0], added[i, 1]) and torch.equal(added[i, 0], added[i, 2])
        signal = added[i, 0].numpy()
        assert abs(np.sqrt(np.mean(signal**2)) - 8) < 0.1  # unit RMS × magnitude
        assert radial_power_fraction(signal, f0, 1 / 128) >= 0.9, (pattern, f0, i)


def test_ring_is_nested_across_magnitudes():
    grey = torch.full((2, 3, 96, 96), 128, dtype=torch.uint8)
    shift = shiftbench.get_shift("ring")
    added = {m: out.double() - 128 for m, out in shift.sweep(grey, [0, 1, 2, 4, 8, 16], seed=5)}
    assert added[16].abs().max() < 127, "clipped: the test needs the signal before clipping"
    for m in (1, 2, 4, 8):
        # same pattern, scaled: only the two roundings separate them
        assert (added[m] - added[16] * m / 16).abs().max() <= 0.5 + 0.5 * m / 16, m
    assert (added[16].abs() > 0).float().mean() > 0.9


def test_grating_is_one_cosine_at_a_random_orientation():
    grey = torch.full((8, 3, 64, 64), 128, dtype=torch.uint8)
    out = shiftbench.get_shift("ring", pattern="grating")(grey, 20, seed=0)
    peaks = set()
    for i in range(8):
        power = np.abs(np.fft.fft2(out[i, 0].double().numpy() - 128)) ** 2
        top = np.argsort(power.ravel())[::-1][:2]
        assert power.ravel()[top].sum() / power.sum() > 0.99  # one ± bin pair
        ky, kx = np.unravel_index(top[0], power.shape)
        r = math.hypot(np.fft.fftfreq(64)[ky], np.fft.fftfreq(64)[kx])
        assert abs(r - 0.25) < 0.5 / 64
        peaks.add(frozenset({(ky, kx), ((-ky) % 64, (-kx) % 64)}))
    assert len(peaks) >= 3, "orientations should vary between samples"


@pytest.mark.parametrize("params", [{}, {"pattern": "grating"}, {"frequency": 0.1}])
def test_ring_independent_of_batch_size_and_order(tiles, params):
    shift = shiftbench.get_shift("ring", **params)
    ids = [40, 41, 42, 43]
    full = shift(tiles, 16, seed=9, sample_ids=ids)
    perm = [2, 0, 3, 1]
    assert torch.equal(
        full[perm], shift(tiles[perm], 16, seed=9, sample_ids=[ids[p] for p in perm])
    )
    assert torch.equal(full[1:2], shift(tiles[1:2], 16, seed=9, sample_ids=[41]))
    other = shift(tiles, 16, seed=10, sample_ids=ids)
    assert not torch.equal(full, other)


def test_ring_bins_follow_the_formula():
    mask = ring_bins(224, 224, 0.25).numpy()
    r = np.hypot(np.fft.fftfreq(224)[:, None], np.fft.fftfreq(224)[None, :])
    np.testing.assert_array_equal(mask, np.abs(r - 0.25) < 0.5 / 224)
    assert mask.sum() > 300  # a ring ~2π·56 bins long


def test_bad_arguments():
    with pytest.raises(UserInputError, match="edge must be one of hard, gaussian"):
        shiftbench.get_shift("lowpass", edge="soft")
    with pytest.raises(UserInputError, match="pattern must be one of noise, grating"):
        shiftbench.get_shift("ring", pattern="stripes")
    for f in (0, -0.1, 0.75, "high", math.nan):
        with pytest.raises(UserInputError, match=r"frequency must be a number in \(0, 0.7071\]"):
            shiftbench.get_shift("ring", frequency=f)
    tiny = torch.zeros(1, 3, 5, 5, dtype=torch.uint8)  # r_max = 0.566 < 0.7
    with pytest.raises(UserInputError, match="no DFT bin"):
        shiftbench.get_shift("ring", frequency=0.7)(tiny, 4)
    with pytest.raises(UserInputError, match="uint8"):
        fourier_filter(tiny.float(), 0.5, "lowpass")
    with pytest.raises(UserInputError, match=r"highpass: magnitude must be in \[0, 1\]"):
        fourier_filter(tiny, 1.2, "highpass")
    with pytest.raises(UserInputError, match="kind must be one of lowpass, highpass"):
        fourier_filter(tiny, 0.5, "bandpass")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range"):
        shiftbench.get_shift("lowpass")(tiny, 1.5)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("lowpass", {}),
        ("highpass", {"edge": "gaussian"}),
        ("ring", {}),
        ("ring", {"frequency": 0.1}),
    ],
)
def test_each_image_bit_identical_alone_and_in_any_batch(tiles, name, params):
    # An FFT library that groups transforms into SIMD blocks must not make an image's pixels
    # depend on its neighbours (a batch computed in blocks of 3 images failed this on the full
    # tiles with ring frequency 0.1). Odd-sized crops and full tiles, batches of 8 and 4.
    crops = torch.cat([tiles[:, :, :45, :61], tiles[:, :, 100:145, 50:111]]).contiguous()
    shift = shiftbench.get_shift(name, **params)
    # For ring, many magnitudes: a last-bit difference shows only where a value is within ~1e-5
    # of a half grey level, so give it millions of chances (cheap: one add per magnitude).
    mags = [k * 64 / 24 for k in range(1, 25)] if name == "ring" else shift.magnitudes[1::2]
    for batch in (crops, tiles):
        ids = list(range(50, 50 + batch.shape[0]))
        batched = [out for _, out in shift.sweep(batch, mags, seed=9, sample_ids=ids)]
        for i in range(batch.shape[0]):
            alone = shift.sweep(batch[i : i + 1], mags, seed=9, sample_ids=[ids[i]])
            for k, (m, out) in enumerate(alone):
                assert torch.equal(batched[k][i : i + 1], out), (m, i)
