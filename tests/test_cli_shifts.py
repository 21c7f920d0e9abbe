"""`shiftbench shifts` and `shiftbench preview`, plus their Python API and option parsers."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ORAL, clean_oral_rows, read_rgb

from shiftbench.cli.options import parse_magnitudes
from shiftbench.cli.shifts_cmd import format_sweep
from shiftbench.errors import UserInputError
from shiftbench.preview import GAP, preview_strip, read_image
from shiftbench.registry import _unregister, list_shifts
from shiftbench.shifts.blur import box_blur

HOWTO = Path(__file__).resolve().parents[1] / "docs" / "how-to" / "write-your-own-shift.md"


@pytest.fixture(scope="module")
def tile_path() -> Path:
    if not ORAL.exists():
        pytest.skip(f"shared data not found at {ORAL}")
    return ORAL / clean_oral_rows()[0]["path"]


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# -- shifts -------------------------------------------------------------------------------------
def test_shifts_lists_every_registered_shift(cli):
    code, out, err = cli("shifts")
    assert code == 0, err
    for name in list_shifts():
        assert re.search(rf"│ {name}\s+│", out), name
    assert "1, 2, 3, …, 20 (20)" in out  # blur's sweep, compacted
    assert "0, 1, 2, 4, 8, 16" in out  # cutout's sweep, in full
    assert "kernel size (px)" in out and "blend weight α" in out


def test_shifts_with_a_missing_plugin_is_one_line_and_exit_2(cli):
    code, _, err = cli("shifts", "--plugin", "no_such_plugin_module")
    assert code == 2
    assert "no_such_plugin_module" in one_line_error(err)


@pytest.fixture
def howto_plugin(tmp_path, monkeypatch):
    """The plugin module of docs/how-to/write-your-own-shift.md, importable as my_shifts."""
    text = HOWTO.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    module = next(b for b in blocks if b.startswith("# my_shifts.py"))
    (tmp_path / "my_shifts.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_shifts", raising=False)
    yield "my_shifts"
    for name in ("gamma", "speckle"):
        _unregister(name)
    sys.modules.pop("my_shifts", None)


def test_howto_plugin_works_with_shifts_and_preview(cli, howto_plugin, tile_path, tmp_path):
    code, out, err = cli("shifts", "--plugin", howto_plugin)
    assert code == 0, err
    assert "gamma" in out and "speckle" in out and "multiplicative Gaussian noise" in out

    out_png = tmp_path / "speckle.png"
    code, out, err = cli(
        "preview", "--plugin", howto_plugin, "--shift", "speckle", "--image", tile_path,
        "--out", out_png, "--seed", "1",
    )  # fmt: skip
    assert code == 0, err
    strip = read_image(out_png)
    assert strip.shape[1] == 4 * 224 + 3 * GAP  # the default sweep has 4 magnitudes

    import shiftbench

    tile = torch.from_numpy(read_rgb(tile_path)).permute(2, 0, 1)[None].repeat(3, 1, 1, 1)
    for name in ("gamma", "speckle"):
        shift = shiftbench.get_shift(name)
        changes = []
        for m, batched in shift.sweep(tile, seed=2, sample_ids=[7, 8, 9]):
            single = shift(tile[1:2], m, seed=2, sample_ids=[8])
            assert torch.equal(batched[1:2], single), (name, m)
            changes.append((batched.float() - tile.float()).abs().mean().item())
        assert changes[0] == 0 and changes == sorted(changes) and changes[-1] > 1, (name, changes)


# -- preview ------------------------------------------------------------------------------------
def test_preview_panels_are_the_shifted_image(cli, tile_path, tmp_path):
    out_png = tmp_path / "strip.png"
    code, out, err = cli(
        "preview", "--shift", "blur", "--image", tile_path, "--out", out_png,
        "--magnitudes", "1,5,20",
    )  # fmt: skip
    assert code == 0, err
    assert str(out_png) in out
    strip = read_image(out_png)
    tile = read_rgb(tile_path)
    assert strip.shape[1] == 3 * 224 + 2 * GAP and strip.shape[0] > 224  # label band below
    x = torch.from_numpy(tile).permute(2, 0, 1)[None].contiguous()
    for i, n in enumerate((1, 5, 20)):
        panel = strip[:224, i * (224 + GAP) : i * (224 + GAP) + 224]
        expected = box_blur(x, n)[0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(panel, expected, err_msg=f"n={n}")
        band = strip[224:, i * (224 + GAP) : i * (224 + GAP) + 224]
        assert (band < 128).any(), "no label drawn"
    assert not [p for p in tmp_path.iterdir() if p.name != "strip.png"], "temp file left behind"


def test_preview_default_sweep_and_panel_size(cli, tile_path, tmp_path):
    out_png = tmp_path / "cutout.jpg"
    code, _, err = cli(
        "preview", "--shift", "cutout", "--image", tile_path, "--out", out_png,
        "--panel-size", "100",
    )  # fmt: skip
    assert code == 0, err
    strip = read_image(out_png)
    assert strip.shape[1] == 6 * 100 + 5 * GAP  # cutout's default sweep: 0, 1, 2, 4, 8, 16


@pytest.mark.parametrize(
    ("shift", "magnitudes", "image", "ext", "message"),
    [
        ("blurr", None, "tile", ".png", "unknown shift 'blurr'"),
        ("blur", "1,x", "tile", ".png", "'x' is not a number"),
        ("blur", "0,2", "tile", ".png", "out of range; valid: integers in [1, 255]"),
        ("blur", "1.5", "tile", ".png", "whole number"),
        ("blur", None, "tile", ".gif", "unsupported extension '.gif'"),
        ("blur", None, "text file", ".png", "cannot read"),
        ("blur", None, "missing", ".png", "does not exist"),
    ],
)
def test_preview_bad_input_is_one_line_and_exit_2(
    cli, tile_path, tmp_path, shift, magnitudes, image, ext, message
):
    image_path = {"tile": tile_path, "text file": tmp_path / "notes.png"}.get(
        image, tmp_path / "missing.png"
    )
    if image == "text file":
        image_path.write_text("not an image")
    out_path = tmp_path / f"strip{ext}"
    out_path.write_bytes(b"previous result")  # must survive a failed command
    args = ["preview", "--shift", shift, "--image", image_path, "--out", out_path]
    if magnitudes is not None:
        args += ["--magnitudes", magnitudes]
    code, _, err = cli(*args)
    assert code == 2
    assert message in one_line_error(err)
    assert out_path.read_bytes() == b"previous result"


def test_preview_strip_passes_shift_parameters(tile_path):
    tile = read_rgb(tile_path)
    blend = preview_strip("sharpen", tile, [0.5], labels=False)
    kernel = preview_strip("sharpen", tile, [0.5], params={"mode": "kernel"}, labels=False)
    assert blend.shape == kernel.shape == tile.shape
    assert not np.array_equal(blend, kernel)
    with pytest.raises(UserInputError, match="H×W×3 uint8"):
        preview_strip("blur", tile[..., 0], [2])


# -- option parsers -------------------------------------------------------------------------------
def test_parse_magnitudes():
    assert parse_magnitudes("1,0.5,0") == [1.0, 0.5, 0.0]
    assert parse_magnitudes(" 2 , 4,8 ") == [2.0, 4.0, 8.0]
    assert parse_magnitudes("1e-1") == [0.1]
    for bad, match in [
        ("", "empty item"),
        ("1,,2", "empty item"),
        ("1,", "empty item"),
        ("a", "not a number"),
        ("nan", "finite"),
        ("1,inf", "finite"),
        ("1,1.0", "twice"),
    ]:
        with pytest.raises(UserInputError, match=match):
            parse_magnitudes(bad)


def test_format_sweep():
    assert format_sweep(tuple(range(1, 21))) == "1, 2, 3, …, 20 (20)"
    assert format_sweep((0, 1, 2, 4, 8, 16)) == "0, 1, 2, 4, 8, 16"
    assert format_sweep((0, 1, 2, 4, 8, 16, 32)) == "0, 1, 2, 4, 8, 16, 32"
    assert format_sweep((0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)) == "0, 0.1, 0.2, …, 0.6 (7)"


def test_preview_reads_pixels_like_the_data_loader(tmp_path):
    """One decoder: a grey PNG and an RGBA PNG give the loader's pixels (Pillow's conversion)."""
    from PIL import Image

    from shiftbench.data import open_dataset

    rng = np.random.default_rng(0)
    (tmp_path / "c").mkdir()
    grey = Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8), mode="L")
    grey.save(tmp_path / "c" / "a_grey.png")
    rgba = Image.fromarray(rng.integers(0, 256, (20, 24, 4), dtype=np.uint8), mode="RGBA")
    rgba.save(tmp_path / "c" / "b_rgba.png")
    ds = open_dataset(tmp_path)
    for i, name in enumerate(("a_grey.png", "b_rgba.png")):
        expected = ds[i][0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(read_image(tmp_path / "c" / name), expected)
    np.testing.assert_array_equal(
        read_image(tmp_path / "c" / "a_grey.png")[..., 1], np.asarray(grey)
    )
