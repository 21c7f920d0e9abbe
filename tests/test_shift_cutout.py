"""cutout: nested random patches, fully inside the image, reproducible per sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import load_oral_tiles

import shiftbench
from shiftbench.errors import UserInputError
from shiftbench.rng import derive_seed
from shiftbench.shifts.cutout import apply_cutout, cutout_boxes


@pytest.fixture(scope="module")
def tiles() -> torch.Tensor:
    return load_oral_tiles(6, stride=190)


def paint_slow(images: np.ndarray, boxes: np.ndarray, s: int, fill) -> np.ndarray:
    """Direct formula: loop over images and patches, assign the fill colour."""
    out = images.copy()
    colour = np.array([fill] * 3 if np.isscalar(fill) else fill, dtype=np.uint8)
    for i in range(images.shape[0]):
        for top, left in boxes[i]:
            out[i, :, top : top + s, left : left + s] = colour[:, None, None]
    return out


def generator(seed: int, sample_id: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, sample_id, "cutout", None))


def test_shift_uses_the_documented_per_sample_generator(tiles):
    """The builder of the cutout data set relies on this: boxes from ctx.generator(i, None)."""
    ids = [5, 17, 3, 99, 0, 42]
    out = shiftbench.get_shift("cutout")(tiles, 16, seed=11, sample_ids=ids)
    boxes = torch.stack([cutout_boxes(16, 224, 224, 8, generator(11, i)) for i in ids])
    expected = paint_slow(tiles.numpy(), boxes.numpy(), 8, 0)
    np.testing.assert_array_equal(out.numpy(), expected)


def test_boxes_are_nested_prefixes():
    full = cutout_boxes(40, 50, 60, 8, torch.Generator().manual_seed(1))
    for k in (0, 1, 5, 16, 17, 33):
        part = cutout_boxes(k, 50, 60, 8, torch.Generator().manual_seed(1))
        assert torch.equal(part, full[:k]), k


def test_sweep_is_nested_and_change_monotone_per_image(tiles):
    shift = shiftbench.get_shift("cutout", fill=(0, 255, 0))
    green = np.array([0, 255, 0], dtype=np.uint8).reshape(1, 3, 1, 1)
    x = tiles.numpy()
    already_green = (x == green).all(axis=1)
    previous_mask = np.zeros((x.shape[0], 224, 224), dtype=bool)
    previous_change = np.zeros(x.shape[0])
    for k, out in shift.sweep(tiles, seed=4):
        o = out.numpy()
        mask = (o == green).all(axis=1) & ~already_green
        assert (mask | ~previous_mask).all(), f"patches at a smaller k vanished at k={k}"
        change = np.abs(o.astype(np.int16) - x).mean(axis=(1, 2, 3))
        assert (change >= previous_change).all(), k
        painted = mask.sum(axis=(1, 2))
        if k > 0:
            # k patches of 64 px: at most 64·k painted pixels, at least one full patch.
            assert (painted <= 64 * k).all() and (painted >= 64).all()
        previous_mask, previous_change = mask, change


def test_same_seed_and_id_same_patches_whatever_the_batch(tiles):
    shift = shiftbench.get_shift("cutout")
    big = shift(tiles, 8, seed=3, sample_ids=[10, 11, 12, 13, 14, 15])
    pair = shift(tiles[[4, 1]], 8, seed=3, sample_ids=[14, 11])
    assert torch.equal(pair, big[[4, 1]])
    other_seed = shift(tiles, 8, seed=4, sample_ids=[10, 11, 12, 13, 14, 15])
    assert not torch.equal(other_seed, big)


def test_patches_stay_inside_and_cover_every_position():
    h, w, s = 12, 20, 8
    boxes = cutout_boxes(4000, h, w, s, torch.Generator().manual_seed(0))
    assert boxes.shape == (4000, 2) and boxes.dtype == torch.int64
    assert set(boxes[:, 0].tolist()) == set(range(h - s + 1))
    assert set(boxes[:, 1].tolist()) == set(range(w - s + 1))


def test_apply_cutout_matches_the_direct_formula(tiles):
    g = torch.Generator().manual_seed(9)
    boxes = torch.stack([cutout_boxes(16, 224, 224, 12, g) for _ in range(tiles.shape[0])])
    for fill in (0, 200, (255, 0, 128)):
        out = apply_cutout(tiles, boxes, 12, fill)
        np.testing.assert_array_equal(
            out.numpy(), paint_slow(tiles.numpy(), boxes.numpy(), 12, fill)
        )
    np.testing.assert_array_equal(apply_cutout(tiles, boxes[:, :0]).numpy(), tiles.numpy())


def test_patch_on_the_last_row_and_column(tiles):
    x = tiles[:1]
    boxes = torch.tensor([[[224 - 8, 224 - 8]]])
    out = apply_cutout(x, boxes, 8, 0)
    assert (out[0, :, -8:, -8:] == 0).all()
    assert int((out != x).any(dim=1).sum()) <= 64
    with pytest.raises(UserInputError, match="outside"):
        apply_cutout(x, boxes + 1, 8, 0)


def test_bad_arguments(tiles):
    with pytest.raises(UserInputError, match="fill"):
        shiftbench.get_shift("cutout", fill=256)
    with pytest.raises(UserInputError, match="fill"):
        shiftbench.get_shift("cutout", fill=(0, 0))
    with pytest.raises(UserInputError, match="patch_size"):
        shiftbench.get_shift("cutout", patch_size=0)
    with pytest.raises(UserInputError, match="does not fit"):
        shiftbench.get_shift("cutout", patch_size=300)(tiles[:1], 4)
    with pytest.raises(UserInputError, match="shape"):
        apply_cutout(tiles[:2], torch.zeros(1, 4, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="whole number"):
        shiftbench.get_shift("cutout")(tiles[:1], 1.5)
    assert shiftbench.get_shift("cutout", fill=(1, 2, 3)).params() == {
        "patch_size": 8,
        "fill": (1, 2, 3),
    }


def test_boxes_need_an_explicit_generator():
    state = torch.get_rng_state()
    with pytest.raises(UserInputError, match=r"needs a torch\.Generator"):
        cutout_boxes(4, 50, 60, 8)
    with pytest.raises(UserInputError, match=r"needs a torch\.Generator"):
        cutout_boxes(4, 50, 60, 8, generator=0)  # type: ignore[arg-type]
    assert torch.equal(torch.get_rng_state(), state)


def test_empty_batch_gives_an_empty_batch(tiles):
    out = shiftbench.get_shift("cutout")(tiles[:0], 16, seed=0)
    assert out.shape == (0, *tiles.shape[1:]) and out.dtype == torch.uint8
