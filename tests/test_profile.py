"""`shiftbench profile`: statistics vs cv2/numpy/staintools on real images, equivalent shift, errors."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import CRC, HE_IMAGES, ORAL, clean_oral_rows, read_rgb

from shiftbench.errors import DataError, UserInputError
from shiftbench.profiling import parse_data_specs, profile
from shiftbench.profiling.equivalent import OUTSIDE, equivalent_magnitude
from shiftbench.profiling.statistics import cv2_grey, laplacian_variance


def cv2_sharpness(rgb: np.ndarray) -> float:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _write_pngs(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for i, rgb in enumerate(images):
        cv2.imwrite(str(folder / f"tile_{i:02d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="module")
def oral_csv(tmp_path_factory):
    """CSV manifest of 8 clean oral tiles (flagged rows dropped), both magnifications."""
    if not ORAL.exists() or not CRC.exists():
        pytest.skip("shared data not found")
    rows = clean_oral_rows()[::150][:8]
    path = tmp_path_factory.mktemp("oral") / "oral.csv"
    pd.DataFrame(
        {"path": [str(ORAL / r["path"]) for r in rows], "label": [r["label"] for r in rows]}
    ).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def profiled(oral_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("profile")
    result = profile(
        [f"oral={oral_csv}", f"crc={CRC}"],
        out,
        reference="oral",
        limit=8,
        workers=0,
        shifts=["sharpen", "eosin"],
    )
    return result, out


def test_statistics_match_cv2_numpy_and_staintools(profiled):
    result, _ = profiled
    rows = result.profiles
    assert list(rows["dataset"].unique()) == ["oral", "crc"] and len(rows) == 16
    oral_paths = [str(ORAL / r["path"]) for r in clean_oral_rows()[::150][:8]]
    crc_paths = [str(CRC / p) for p in rows.loc[rows["dataset"] == "crc", "path"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        staintools = pytest.importorskip("staintools")
        from staintools.miscellaneous.get_concentrations import get_concentrations
    for (_, row), path in zip(rows.iterrows(), oral_paths + crc_paths, strict=True):
        rgb = read_rgb(path)
        assert row["sharpness"] == pytest.approx(cv2_sharpness(rgb), rel=1e-12)
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        assert row["brightness"] == pytest.approx(grey.mean(), rel=1e-12)
        lab_l = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[..., 0] / 255.0
        assert row["tissue_fraction"] == pytest.approx((lab_l < 0.8).mean(), abs=1e-12)
        od = np.maximum(-np.log(np.maximum(rgb, 1) / 255.0), 1e-6)
        assert row["mean_od"] == pytest.approx(od.mean(), rel=1e-5)
        assert bool(row["stain_valid"])
        s = staintools.MacenkoStainExtractor.get_stain_matrix(rgb.copy())
        ours = np.array([[row[f"{k}_{c}"] for c in "rgb"] for k in "he"])
        assert (ours * s).sum(axis=1) == pytest.approx([1, 1], abs=1e-6)
        p99 = np.percentile(get_concentrations(rgb.copy(), s), 99, axis=0)
        assert [row["h_p99"], row["e_p99"]] == pytest.approx(p99, rel=2e-3)


def test_grey_and_laplacian_variance_are_cv2_at_any_size():
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, size=(1, 512, 512, 3), dtype=np.uint8)
    colours[0, 0, :256] = np.arange(256)[:, None]  # every grey level
    x = torch.from_numpy(colours).permute(0, 3, 1, 2).contiguous()
    want = cv2.cvtColor(colours[0], cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(cv2_grey(x)[0].numpy(), want)
    big = read_rgb(HE_IMAGES / "stardist_histo.jpg")
    for h, w in ((300, 500), (171, 233), (2, 7), (41, 3)):
        crop = np.ascontiguousarray(big[:h, :w])
        grey = torch.from_numpy(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY))[None]
        assert float(laplacian_variance(grey)[0]) == pytest.approx(
            cv2_sharpness(crop), rel=1e-12, abs=1e-12
        )


def test_summary_is_numpy_on_the_profile(profiled):
    result, _ = profiled
    s = result.summary.set_index(["dataset", "statistic"])
    v = result.profiles.loc[result.profiles["dataset"] == "crc", "sharpness"].to_numpy()
    row = s.loc[("crc", "sharpness")]
    assert row["n"] == 8
    assert row["median"] == pytest.approx(np.median(v))
    assert row["iqr"] == pytest.approx(np.percentile(v, 75) - np.percentile(v, 25))
    assert row["mean"] == pytest.approx(v.mean())


def test_files_are_written(profiled):
    result, out = profiled
    for name in (
        "profile.parquet",
        "summary.csv",
        "equivalent_shift.csv",
        "sharpness.png",
        "sharpness.pdf",
        "stain.png",
        "stain.pdf",
    ):
        assert (out / name).stat().st_size > 0, name
    stored = pd.read_parquet(out / "profile.parquet")
    pd.testing.assert_frame_equal(stored, result.profiles)
    eq = pd.read_csv(out / "equivalent_shift.csv")
    assert list(eq["shift"]) == ["sharpen", "eosin"] and set(eq["dataset"]) == {"crc"}
    assert not list(out.glob(".*"))  # no temp files left


def test_equivalent_shift_recovers_a_known_blur(tmp_path):
    n = 5
    tiles = [read_rgb(ORAL / r["path"]) for r in clean_oral_rows()[::200][:6]]
    a = _write_pngs(tmp_path / "a", tiles)
    b = _write_pngs(tmp_path / "b", [cv2.blur(t, (n, n)) for t in tiles])
    result = profile(
        {"sharp": a, "blurred": b},
        tmp_path / "out",
        reference="sharp",
        workers=0,
        shifts=["blur", "sharpen"],
        figures=False,
    )
    table = result.equivalent.set_index("shift")
    blur = table.loc["blur"]
    assert blur["bracket_low"] <= n <= blur["bracket_high"]
    assert abs(float(blur["magnitude"]) - n) <= 0.5
    assert table.loc["sharpen", "magnitude"] == OUTSIDE  # blurrier than any sharpening
    assert "is below every value the sweep reaches" in table.loc["sharpen", "note"]


def test_equivalent_magnitude_interpolates_the_first_crossing():
    mags = [1, 2, 3, 4]
    assert equivalent_magnitude(mags, [10, 8, 4, 2], 6).magnitude == pytest.approx(2.5)
    hit = equivalent_magnitude(mags, [10, 8, 4, 2], 8)
    assert (hit.magnitude, hit.low, hit.high) == (2, 2, 2)
    assert equivalent_magnitude(mags, [10, 8, 4, 2], 12).magnitude is None
    assert equivalent_magnitude(mags, [10, 6, 9, 2], 7).magnitude == pytest.approx(1.75)
    assert equivalent_magnitude(mags, [10, np.nan, 4, 2], 7).magnitude == pytest.approx(2.0)
    assert equivalent_magnitude(mags, [10, 8, 4, 2], 2).magnitude == 4


def test_image_size_resizes_first(tmp_path):
    rows = clean_oral_rows()[:3]
    csv = tmp_path / "m.csv"
    pd.DataFrame({"path": [str(ORAL / r["path"]) for r in rows], "label": 0}).to_csv(
        csv, index=False
    )
    result = profile([str(csv)], tmp_path / "out", image_size=112, workers=0, figures=False)
    assert list(result.profiles["dataset"].unique()) == ["m"]
    for (_, row), r in zip(result.profiles.iterrows(), rows, strict=True):
        small = cv2.resize(read_rgb(ORAL / r["path"]), (112, 112), interpolation=cv2.INTER_AREA)
        assert row["sharpness"] == pytest.approx(cv2_sharpness(small), rel=1e-12)
        assert (row["height"], row["width"]) == (112, 112)


def test_bad_input_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError, match="'a' is given twice"):
        parse_data_specs(["a=/x", "a=/y"])
    assert parse_data_specs(["/data/ext_set", "n=/d/m.csv"]) == {
        "ext_set": __import__("pathlib").Path("/data/ext_set"),
        "n": __import__("pathlib").Path("/d/m.csv"),
    }
    with pytest.raises(UserInputError, match="--reference 'c' is not one of"):
        profile([f"a={CRC}", f"b={CRC}"], tmp_path, reference="c")
    with pytest.raises(UserInputError, match="at least one other"):
        profile([f"a={CRC}"], tmp_path, reference="a")
    with pytest.raises(UserInputError, match="'cutout' has no equivalent-shift"):
        profile([f"a={CRC}", f"b={CRC}"], tmp_path, reference="a", shifts=["cutout"])
    with pytest.raises(UserInputError, match="--limit must be a whole number"):
        profile([f"a={CRC}"], tmp_path, limit=0)
    with pytest.raises(DataError, match="data not found"):
        profile([f"a={tmp_path / 'nope'}"], tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written


def test_cli_in_process(cli, tmp_path, oral_csv):
    out = tmp_path / "out"
    code, stdout, err = cli(
        "profile",
        "--data",
        f"oral={oral_csv}",
        "--data",
        f"crc={CRC}",
        "--out",
        out,
        "--reference",
        "oral",
        "--shifts",
        "blur",
        "--limit",
        "3",
        "--workers",
        "0",
        "--no-figures",
    )
    assert code == 0, err
    assert "oral: 3 images, crc: 3 images" in stdout
    assert "crc ≈ blur" in stdout
    assert (out / "equivalent_shift.csv").exists() and not (out / "sharpness.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", f"a={CRC}", "--data", f"a={CRC}"], "given twice"),
        (["--data", f"a={CRC}", "--data", f"b={CRC}", "--reference", "zz"], "is not one of"),
        (["--data", f"a={CRC}", "--shifts", "blur,nope"], "'nope' has no equivalent"),
        (["--data", "a=/no/such/folder"], "data not found"),
    ],
)
def test_cli_errors_are_one_line(cli, tmp_path, args, message):
    code, _, err = cli("profile", *args, "--out", tmp_path / "o", "--workers", "0")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0]


def test_python_api_is_exported():
    import shiftbench
    import shiftbench.normalize

    assert shiftbench.profile is profile
    assert shiftbench.StainNormalizer is shiftbench.normalize.StainNormalizer


def test_images_of_different_sizes_are_profiled_at_their_own_size(tmp_path):
    big = read_rgb(HE_IMAGES / "stardist_histo.jpg")
    crops = [big[:200, :300], big[50:290, 100:260], big[:224, :224]]
    flat = _write_pngs(tmp_path / "flat", crops)
    classes = tmp_path / "classes"
    _write_pngs(classes / "a", crops[:2])
    _write_pngs(classes / "b", crops[2:])
    result = profile({"flat": flat, "classes": classes}, tmp_path / "out", workers=0, figures=False)
    rows = result.profiles
    assert len(rows) == 6
    for name in ("flat", "classes"):
        part = rows[rows["dataset"] == name]
        sizes = sorted(zip(part["height"], part["width"], strict=True))
        assert sizes == sorted(c.shape[:2] for c in crops)
        for _, row in part.iterrows():
            root = flat if name == "flat" else classes
            rgb = read_rgb(root / row["path"])
            assert row["sharpness"] == pytest.approx(cv2_sharpness(rgb), rel=1e-12)
