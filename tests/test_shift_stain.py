"""haematoxylin / eosin shifts vs staintools (Macenko), numpy least squares and cv2 Lab.

References are independent of the code under test: staintools 2.1.2 (``MacenkoStainExtractor``,
``convert_RGB_to_OD``), ``cv2.cvtColor(..., COLOR_RGB2LAB)``, ``np.percentile`` and
``np.linalg.lstsq``. staintools overwrites zero pixels of its input, so it always gets a copy.
"""

from __future__ import annotations

import warnings
from collections import defaultdict

import cv2
import numpy as np
import pytest
import torch
from conftest import ORAL, clean_oral_rows, load_oral_tiles, read_rgb

import shiftbench
from shiftbench.errors import UserInputError
from shiftbench.shifts import stain
from shiftbench.shifts.stain import (
    macenko_stain_matrix,
    optical_density,
    stain_concentrations,
    tissue_mask,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from staintools.miscellaneous.optical_density_conversion import convert_RGB_to_OD
    from staintools.stain_extraction.macenko_stain_extractor import MacenkoStainExtractor

STAIN_SHIFTS = ["haematoxylin", "eosin"]
STAIN_ROW = {"haematoxylin": 0, "eosin": 1}


def to_hwc(images: torch.Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).contiguous().numpy()


def staintools_stain_matrix(rgb: np.ndarray) -> np.ndarray:
    return MacenkoStainExtractor.get_stain_matrix(rgb.copy())  # copy: it writes zeros to 1


def cv2_tissue(rgb: np.ndarray, threshold: float = 0.8) -> np.ndarray:
    """staintools' LuminosityThresholdTissueLocator, without its empty-mask exception."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[..., 0] / 255.0 < threshold


@pytest.fixture(scope="module")
def stratified_tiles() -> torch.Tensor:
    """120 clean tiles: 30 evenly spaced from each class × magnification stratum."""
    if not ORAL.exists():
        pytest.skip(f"shared data not found at {ORAL}")
    strata: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in clean_oral_rows():
        strata[(row["class_name"], row["magnification"])].append(row)
    assert len(strata) == 4
    picked = []
    for rows in strata.values():
        picked += [rows[i] for i in np.linspace(0, len(rows) - 1, 30).round().astype(int)]
    arr = np.stack([read_rgb(ORAL / r["path"]) for r in picked])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def tiles() -> torch.Tensor:
    return load_oral_tiles(8, stride=140)


# -- building blocks vs references ---------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.8, 0.55])
def test_tissue_mask_equals_cv2_lab_on_every_colour(threshold):
    v = np.arange(256, dtype=np.uint8)
    cube = np.stack(np.meshgrid(v, v, v, indexing="ij"), -1).reshape(4096, 4096, 3)
    expected = cv2_tissue(cube, threshold)
    got = tissue_mask(torch.from_numpy(cube).permute(2, 0, 1)[None].contiguous(), threshold)
    mismatch = int((got[0].numpy() != expected).sum())
    assert mismatch == 0, f"{mismatch} of 2^24 colours differ from cv2's Lab mask"


def test_optical_density_equals_staintools(tiles):
    x = tiles[:2].clone()
    x[0, :, :5, :5] = 0  # zeros: staintools counts them as 1
    x[1, :, :5, :5] = 255
    expected = np.stack([convert_RGB_to_OD(im.copy()) for im in to_hwc(x)])
    got = optical_density(x).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("keep", "angles"),
    [
        ([1, 2, 3, 101, 1500, 2999, 3000], False),  # ragged, down to one value: topk path
        ([64, 65, 101, 1500, 2999, 3000, 2000], True),  # histogram path
    ],
)
def test_masked_percentiles_equal_numpy(keep, angles):
    rng = np.random.default_rng(0)
    rows, width = len(keep), 3000
    values = rng.normal(0.3, 0.5, size=(rows, width)).astype(np.float32)
    values[:, ::7] = values[:, 1::7][:, : values[:, ::7].shape[1]]  # ties
    values[:, 5] = np.float32(np.pi)  # atan2's extremes (values within [−π, π] for "angles")
    values[:, 9] = -np.float32(np.pi)
    values[-1] = np.round(values[-1], 1)  # many ties in one bin
    values = np.clip(values, -np.float32(np.pi), np.float32(np.pi))
    mask = np.zeros((rows, width), dtype=bool)
    for i, k in enumerate(keep):
        mask[i, rng.choice(width, k, replace=False)] = True
    counts = torch.from_numpy(mask.sum(1))
    for q in (1.0, 2.5, 10.0, 50.0):
        low, high = stain._masked_percentiles(
            torch.from_numpy(values.copy()),
            torch.from_numpy(mask),
            counts,
            q,
            100 - q,
            angles=angles,
        )
        for i in range(rows):
            sel = values[i][mask[i]].astype(np.float64)
            assert low[i].item() == pytest.approx(np.percentile(sel, q), abs=1e-12)
            assert high[i].item() == pytest.approx(np.percentile(sel, 100 - q), abs=1e-12)


def test_stain_vectors_match_staintools_on_real_tiles(stratified_tiles):
    """Spec: cosine ≥ 0.99 for H and for E on ≥ 95% of tiles, H/E never swapped."""
    est = macenko_stain_matrix(stratified_tiles)
    assert bool(est.valid.all())
    ours = est.stain_matrix.double().numpy()
    ref = np.stack([staintools_stain_matrix(im) for im in to_hwc(stratified_tiles)])
    cos_h = (ours[:, 0] * ref[:, 0]).sum(1)
    cos_e = (ours[:, 1] * ref[:, 1]).sum(1)
    agree = (cos_h >= 0.99) & (cos_e >= 0.99)
    assert agree.mean() >= 0.95, f"only {agree.mean():.1%} of tiles agree; worst {cos_h.min()}"
    swapped = (ours[:, 0] * ref[:, 1]).sum(1) > cos_h
    assert not swapped.any(), f"H/E swapped on tiles {np.flatnonzero(swapped)}"
    np.testing.assert_allclose(np.linalg.norm(ours, axis=2), 1.0, atol=1e-6)


def test_concentrations_equal_numpy_least_squares(tiles):
    x = tiles[:2]
    est = macenko_stain_matrix(x)
    got = stain_concentrations(x, est.stain_matrix).numpy()
    for i, im in enumerate(to_hwc(x)):
        od = convert_RGB_to_OD(im.copy()).reshape(-1, 3)
        c, *_ = np.linalg.lstsq(est.stain_matrix[i].double().numpy().T, od.T, rcond=None)
        np.testing.assert_allclose(got[i].reshape(2, -1), c, atol=2e-5, rtol=1e-4)


# -- the shift ------------------------------------------------------------------------------------


def redecompose(images: torch.Tensor, stains: np.ndarray) -> list[np.ndarray]:
    """Least-squares concentrations [N, 2] per image with numpy and staintools' OD."""
    out = []
    for i, im in enumerate(to_hwc(images)):
        od = convert_RGB_to_OD(im.copy()).reshape(-1, 3)
        c, *_ = np.linalg.lstsq(stains[i].T, od.T, rcond=None)
        out.append(c.T)
    return out


def quantisation_bound(rgb: np.ndarray, stains: np.ndarray) -> np.ndarray:
    """Largest concentration change rounding to uint8 can cause, per pixel and stain [N, 2].

    |ln(I ± ½) − ln I| ≤ ½ / (I − ½) per channel, propagated through the unmixing matrix.
    """
    pinv = np.linalg.pinv(stains.T)  # [2, 3]
    d_od = 0.5 / (rgb.reshape(-1, 3).astype(np.float64) - 0.5)
    return d_od @ np.abs(pinv).T


@pytest.mark.parametrize("name", STAIN_SHIFTS)
@pytest.mark.parametrize("factor", [0.0, 0.5, 1.7])
def test_shift_scales_one_concentration_and_keeps_the_other(name, factor, tiles):
    """Re-decomposed with the same stain matrix, C_s' = f · C_s and the other stain is kept,
    up to uint8 rounding, on tissue pixels that were not clipped."""
    shift = shiftbench.get_shift(name)
    s, other = STAIN_ROW[name], 1 - STAIN_ROW[name]
    x = tiles[:4]
    out = shift(x, factor)
    stains = macenko_stain_matrix(x).stain_matrix.double().numpy()
    before, after = redecompose(x, stains), redecompose(out, stains)
    for i, (im_in, im_out) in enumerate(zip(to_hwc(x), to_hwc(out), strict=True)):
        tissue = cv2_tissue(im_in).reshape(-1)
        flat_in, flat_out = im_in.reshape(-1, 3), im_out.reshape(-1, 3)
        unclipped = (flat_out > 0).all(1) & (flat_out < 255).all(1) & (flat_in > 0).all(1)
        sel = tissue & unclipped
        assert sel.mean() > 0.2, "too few comparable pixels for a meaningful test"
        bound = quantisation_bound(flat_out[sel], stains[i]) + 1e-4
        err_s = np.abs(after[i][sel, s] - factor * before[i][sel, s])
        err_other = np.abs(after[i][sel, other] - before[i][sel, other])
        assert (err_s <= bound[:, s]).all(), (i, err_s.max())
        assert (err_other <= bound[:, other]).all(), (i, err_other.max())
        if factor == 0.0:  # the stain is gone: typical residue far below typical stain
            assert np.median(np.abs(after[i][sel, s])) < 0.02 * np.median(before[i][tissue, s])


@pytest.mark.parametrize("name", STAIN_SHIFTS)
def test_background_pixels_are_bit_exact(name, tiles):
    shift = shiftbench.get_shift(name)
    background = ~np.stack([cv2_tissue(im) for im in to_hwc(tiles)])
    assert background.sum() > 1000, "the test tiles need some background"
    bg = torch.from_numpy(background)[:, None].expand_as(tiles)
    for m, out in shift.sweep(tiles, [1.0, 0.5, 0.0, 2.0]):
        assert torch.equal(out[bg], tiles[bg]), m
        if m != 1.0:
            assert not torch.equal(out[~bg], tiles[~bg]), m


@pytest.mark.parametrize("name", STAIN_SHIFTS)
def test_too_little_tissue_is_unchanged_and_counted(name, tiles):
    shift = shiftbench.get_shift(name)
    white = torch.full((3, 224, 224), 255, dtype=torch.uint8)
    small = white.clone()
    small[:, :20, :20] = tiles[0, :, 100:120, 100:120]  # ≤ 400 tissue pixels < 1000
    enough = white.clone()
    enough[:, :40, :40] = tiles[0, :, 100:140, 100:140]  # up to 1,600 tissue pixels
    n_small = int(tissue_mask(small[None]).sum())
    n_enough = int(tissue_mask(enough[None]).sum())
    assert 0 < n_small < shift.min_tissue_pixels <= n_enough
    black = torch.zeros_like(white)
    flat_pink = torch.tensor([200, 120, 170], dtype=torch.uint8)[:, None, None].expand_as(white)
    batch = torch.stack([tiles[1], small, white, black, flat_pink.clone(), enough, tiles[2]])
    ids = [50, 51, 52, 53, 54, 55, 56]
    sweep = shift.sweep(batch, sample_ids=ids)
    for m, out in sweep:
        assert torch.equal(out[1:5], batch[1:5]), m
        if m != shift.identity:
            for i in (0, 5, 6):
                assert not torch.equal(out[i], batch[i]), (m, i)
    assert sweep.report["unchanged"] == 4
    assert sweep.report["unchanged_ids"] == [51, 52, 53, 54]


@pytest.mark.parametrize("name", STAIN_SHIFTS)
def test_sweep_equals_single_calls_with_an_unchanged_image(name, tiles):
    shift = shiftbench.get_shift(name)
    batch = tiles[:3].clone()
    batch[1] = 255
    sweep = shift.sweep(batch, [1.0, 0.8, 0.3, 0.0, 1.5])
    for m, out in sweep:
        assert torch.equal(out, shift(batch, m)), m
        for i in range(3):
            assert torch.equal(out[i : i + 1], shift(batch[i : i + 1], m)), (m, i)
    assert sweep.report["unchanged"] == 1


def with_zeros(tiles: torch.Tensor) -> torch.Tensor:
    """Tiles with some zero channel values in tissue (as JPEG gives in dark nuclei)."""
    x = tiles.clone()
    x[:, 1, 100:110, 100:110] = 0
    x[:, :, 120:123, 120:123] = 0
    return x


@pytest.mark.parametrize("name", STAIN_SHIFTS)
@pytest.mark.parametrize("factor", [0.0, 0.35, 2.0])
def test_pixels_equal_the_direct_formula(name, factor, tiles):
    """I' = clip(⌊max(I, 1) · exp((1 − f) · C_s · v_s) + ½⌋ − [I = 0], 0, 255) on tissue, in
    float64 numpy with numpy least squares; float32 + exp2 may round differently at a .5 tie."""
    x = with_zeros(tiles[:3])
    s = STAIN_ROW[name]
    stains = macenko_stain_matrix(x).stain_matrix.double().numpy()
    got = to_hwc(shiftbench.get_shift(name)(x, factor)).astype(np.int64)
    conc = redecompose(x, stains)
    for i, im in enumerate(to_hwc(x)):
        rgb = im.reshape(-1, 3).astype(np.float64)
        tissue = cv2_tissue(im).reshape(-1, 1)
        delta = (1 - factor) * conc[i][:, s : s + 1] * stains[i, s][None, :] * tissue
        want = np.floor(np.maximum(rgb, 1) * np.exp(delta) + 0.5) - (rgb == 0)
        want = np.clip(want, 0, 255).astype(np.int64)
        diff = np.abs(got[i].reshape(-1, 3) - want)
        assert diff.max() <= 1
        assert (diff == 0).mean() > 0.999, (diff != 0).mean()


@pytest.mark.parametrize("name", STAIN_SHIFTS)
def test_continuous_at_the_identity(name, tiles):
    shift = shiftbench.get_shift(name)
    x = with_zeros(tiles)
    for m in (0.9999, 1.0001):
        diff = (shift(x, m).int() - x.int()).abs()
        assert diff.max() <= 1, (m, diff.max())


@pytest.mark.parametrize("name", STAIN_SHIFTS)
def test_boost_above_one_adds_stain(name, tiles):
    shift = shiftbench.get_shift(name)
    s = STAIN_ROW[name]
    x = tiles[:2]
    stains = macenko_stain_matrix(x).stain_matrix.double().numpy()
    c0, c2 = redecompose(x, stains), redecompose(shift(x, 2.0), stains)
    for i, im in enumerate(to_hwc(x)):
        tissue = cv2_tissue(im).reshape(-1)
        assert np.median(c2[i][tissue, s]) > 1.5 * np.median(c0[i][tissue, s])
    with pytest.raises(ValueError, match=r"valid: numbers in \[0, 2\]"):
        shift(x, 2.01)


def test_code_paths_create_tensors_on_the_input_device(tiles, monkeypatch):
    """With "meta" as the default device, any tensor created without an explicit device (or
    not derived from the input) lands on meta and mixing it with the CPU input raises."""
    x = tiles[:2]
    expected = {n: shiftbench.get_shift(n)(x, 0.3) for n in STAIN_SHIFTS}
    monkeypatch.setattr(stain, "_LUT_CACHE", {})  # also exercise the table construction
    with torch.device("meta"):
        for n in STAIN_SHIFTS:
            out = shiftbench.get_shift(n)(x, 0.3)
            assert out.device.type == "cpu"
            assert torch.equal(out, expected[n])
        est = macenko_stain_matrix(x)
        assert est.stain_matrix.device.type == "cpu"


@pytest.mark.parametrize("name", STAIN_SHIFTS)
def test_layout_and_chunking_do_not_change_results(name, tiles):
    x = tiles[:5]
    ref = shiftbench.get_shift(name)(x, 0.4)
    channels_last = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(shiftbench.get_shift(name)(channels_last, 0.4), ref)
    assert torch.equal(shiftbench.get_shift(name, chunk_size=2)(x, 0.4), ref)


def test_stats_stride_gives_close_unit_vectors(stratified_tiles):
    x = stratified_tiles[::6]
    full = macenko_stain_matrix(x).stain_matrix
    strided = macenko_stain_matrix(x, stats_stride=2).stain_matrix
    cos = (full * strided).sum(2)
    assert (cos > 0.99).all(1).float().mean() >= 0.9
    torch.testing.assert_close(strided.norm(dim=2), torch.ones(len(x), 2))


@pytest.mark.parametrize(
    "params",
    [
        {"luminosity_threshold": 0.0},
        {"angular_percentile": 40},
        {"min_tissue_pixels": 2},
        {"max_stain_cosine": 1.5},
        {"stats_stride": 0},
        {"chunk_size": 1.5},
    ],
)
def test_bad_parameters_name_the_valid_values(params):
    with pytest.raises(UserInputError, match="must be"):
        shiftbench.get_shift("haematoxylin", **params)


def test_empty_batch():
    x = torch.zeros(0, 3, 16, 16, dtype=torch.uint8)
    assert shiftbench.get_shift("eosin")(x, 0.5).shape == x.shape
    assert macenko_stain_matrix(x).stain_matrix.shape == (0, 2, 3)
