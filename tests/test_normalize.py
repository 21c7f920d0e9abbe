"""Macenko normalisation: parity with staintools 2.1.2 on real tiles, pass-through, errors."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
import torch
from conftest import CRC, HE_IMAGES, load_oral_tiles, read_rgb

from shiftbench.errors import UserInputError
from shiftbench.normalize import StainNormalizer, fit_macenko_target, macenko_normalize
from shiftbench.shifts.stain import optical_density, tissue_mask
from shiftbench.stain_concentrations import lasso_concentrations, percentile_per_image

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    staintools = pytest.importorskip("staintools")
    spams = pytest.importorskip("spams")


@pytest.fixture(scope="module")
def tiles() -> torch.Tensor:
    """12 oral tiles (both magnifications and classes) + one CRC tile of each of 7 classes."""
    oral = load_oral_tiles(12, stride=97)
    if not CRC.exists():
        pytest.skip(f"shared data not found at {CRC}")
    crc_paths = [sorted(d.glob("*.jpg"))[0] for d in sorted(CRC.iterdir()) if d.is_dir()]
    crc = torch.from_numpy(np.stack([read_rgb(p) for p in crc_paths])).permute(0, 3, 1, 2)
    return torch.cat([oral, crc]).contiguous()


def _staintools_stain_matrix(image: np.ndarray) -> np.ndarray:
    from staintools.stain_extraction.macenko_stain_extractor import MacenkoStainExtractor

    return MacenkoStainExtractor.get_stain_matrix(image.copy())


def test_closed_form_lasso_matches_spams(tiles):
    for i in (0, 5, 13):
        image = tiles[i].permute(1, 2, 0).numpy()
        s = _staintools_stain_matrix(image)
        od = np.maximum(-np.log(np.maximum(image, 1) / 255.0), 1e-6).reshape(-1, 3)
        ref = spams.lasso(
            X=np.asfortranarray(od.T), D=np.asfortranarray(s.T), mode=2, lambda1=0.01, pos=True
        ).toarray()  # [2, N]
        got = lasso_concentrations(torch.from_numpy(od.T.copy())[None], torch.from_numpy(s)[None])[
            0
        ].numpy()
        assert np.abs(got - ref).max() < 1e-6
        assert (got >= 0).all()


def test_percentile_per_image_is_numpys_linear_percentile():
    g = torch.Generator().manual_seed(0)
    values = torch.rand(3, 2, 1001, generator=g, dtype=torch.float64)
    values[0, 0, :600] = 0.0  # many ties
    for q in (99.0, 50.0, 1.0, 100.0, 0.0, 99.37):
        want = np.percentile(values.numpy(), q, axis=-1)
        np.testing.assert_allclose(percentile_per_image(values, q).numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("target_name", ["histoqc_template1.png", "stardist_histo.jpg"])
def test_parity_with_staintools_on_real_tiles(tiles, target_name):
    """Within 1 grey level of staintools on every pixel (lasso concentrations, as staintools)."""
    target = read_rgb(HE_IMAGES / target_name)
    ref = staintools.StainNormalizer("macenko")
    ref.fit(target.copy())
    ours = StainNormalizer().fit(HE_IMAGES / target_name)
    np.testing.assert_allclose(
        ours.target.max_concentrations.numpy(), ref.maxC_target[0], rtol=5e-4
    )
    result = ours(tiles)
    assert result.n_passthrough == 0
    want = np.stack([ref.transform(im.copy()) for im in tiles.permute(0, 2, 3, 1).numpy()])
    got = result.images.permute(0, 2, 3, 1).numpy()
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16)).max(axis=-1)  # per pixel
    tissue = tissue_mask(tiles).numpy()
    assert (diff[tissue] <= 2).mean() >= 0.99  # the bar
    assert (diff <= 1).mean() >= 0.999  # what the lasso closed form actually gives
    assert (diff == 0).mean() >= 0.9  # the rest: float32 vs float64 before the ⌊·⌋


def test_least_squares_concentrations_differ_from_staintools_where_the_lasso_bites(tiles):
    """The gap least squares leaves (torchstain's choice): pixels outside the stain cone."""
    target = read_rgb(HE_IMAGES / "histoqc_template1.png")
    ref = staintools.StainNormalizer("macenko")
    ref.fit(target.copy())
    ls = StainNormalizer(concentrations="least_squares").fit(target)(tiles[:4])
    want = np.stack([ref.transform(im.copy()) for im in tiles[:4].permute(0, 2, 3, 1).numpy()])
    diff = np.abs(ls.images.permute(0, 2, 3, 1).numpy().astype(int) - want).max(axis=-1)
    assert (diff > 2).mean() > 0.01


def test_tissue_free_images_pass_through_unchanged_and_are_counted(tiles):
    normalizer = StainNormalizer().fit(read_rgb(HE_IMAGES / "histoqc_template1.png"))
    white = torch.full((1, 3, 224, 224), 250, dtype=torch.uint8)
    batch = torch.cat([tiles[:2], white, tiles[2:3]])
    before = batch.clone()
    out = normalizer(batch)
    assert torch.equal(batch, before)  # input untouched
    assert out.passthrough.tolist() == [False, False, True, False]
    assert out.n_passthrough == 1
    assert torch.equal(out.images[2], white[0])
    # independent of batch composition and chunking
    alone = normalizer(tiles[2:3]).images[0]
    assert torch.equal(out.images[3], alone)
    chunked = macenko_normalize(batch, normalizer.target, chunk_size=1)
    assert torch.equal(chunked.images, out.images)


def test_target_without_tissue_is_a_one_line_error(tmp_path):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((300, 300, 3), 245, np.uint8))
    with pytest.raises(UserInputError, match=r"blank\.png has no usable tissue") as e:
        StainNormalizer.from_file(blank)
    assert "\n" not in str(e.value)
    with pytest.raises(UserInputError, match="cannot read image"):
        StainNormalizer.from_file(tmp_path / "missing.png")


def test_bad_use_is_a_user_error(tiles):
    with pytest.raises(UserInputError, match="not fitted"):
        StainNormalizer()(tiles[:1])
    with pytest.raises(UserInputError, match="concentrations must be one of"):
        StainNormalizer(concentrations="nmf")
    target = fit_macenko_target(read_rgb(HE_IMAGES / "stardist_histo.jpg"))
    with pytest.raises(UserInputError, match="uint8"):
        macenko_normalize(tiles[:1].float() / 255, target)


def test_describe_records_the_condition():
    n = StainNormalizer().fit(HE_IMAGES / "stardist_histo.jpg")
    d = n.describe()
    assert d["method"] == "macenko" and d["target"].endswith("stardist_histo.jpg")
    assert len(d["target_stain_matrix"]) == 2 and len(d["target_max_concentrations"]) == 2


def test_optical_density_used_is_staintools():
    x = torch.tensor([0, 1, 128, 255], dtype=torch.uint8).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    od = optical_density(x.contiguous())[0, 0, 0].double().numpy()
    np.testing.assert_allclose(
        od, np.maximum(-np.log(np.maximum([0, 1, 128, 255], 1) / 255), 1e-6), rtol=1e-6
    )


def test_least_squares_concentrations_match_numpy_lstsq(tiles):
    from shiftbench.stain_concentrations import least_squares_concentrations

    image = tiles[1].permute(1, 2, 0).numpy()
    s = _staintools_stain_matrix(image)
    od = np.maximum(-np.log(np.maximum(image, 1) / 255.0), 1e-6).reshape(-1, 3)
    want = np.linalg.lstsq(s.T, od.T, rcond=None)[0]  # [2, N]
    got = least_squares_concentrations(
        torch.from_numpy(od.T.copy())[None], torch.from_numpy(s)[None]
    )
    np.testing.assert_allclose(got[0].numpy(), want, atol=1e-9)
