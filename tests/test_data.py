"""Data sets: folder / CSV / npz layouts, decoding, unreadable files, sizes, streaming loader."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
import torch
from _models import write_oral_csv, write_oral_folder, write_oral_npz
from conftest import read_rgb

from shiftbench import open_dataset
from shiftbench.data import make_loader
from shiftbench.errors import DataError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_oral_folder(tmp_path_factory.mktemp("folder") / "data", n_per_class=4)


def test_folder_layout_labels_and_pixels(folder):
    ds = open_dataset(folder)
    assert ds.format == "folder" and ds.class_names == ["Normal", "OSCC"]
    assert len(ds) == 8 and ds.labels.tolist() == [0] * 4 + [1] * 4
    assert ds.paths == sorted(ds.paths[:4]) + sorted(ds.paths[4:])
    assert all(p.startswith(("Normal/", "OSCC/")) for p in ds.paths)
    assert ds.native_size == (64, 64) and ds.extras.shape == (8, 0)
    for i in (0, 5):
        image, label, sid = ds[i]
        assert image.dtype == torch.uint8 and image.shape == (3, 64, 64)
        ref = read_rgb(folder / ds.paths[i])  # cv2 reference decoder
        assert np.array_equal(image.permute(1, 2, 0).numpy(), ref)
        assert (label, sid) == (int(ds.labels[i]), i)


def test_limit_and_fingerprint(folder, tmp_path):
    a = open_dataset(folder)
    assert a.fingerprint() == open_dataset(folder).fingerprint()
    assert open_dataset(folder, limit=3).paths == a.paths[:3]
    assert open_dataset(folder, limit=3).fingerprint() != a.fingerprint()
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(folder, copy)
    assert open_dataset(copy).fingerprint() == a.fingerprint()  # location-independent
    cv2.imwrite(str(copy / "OSCC" / "zz_extra.png"), np.zeros((64, 64, 3), np.uint8))
    assert open_dataset(copy).fingerprint() != a.fingerprint()


def test_csv_manifest_int_and_name_labels(tmp_path):
    csv_path = write_oral_csv(tmp_path / "ints", n_per_class=3)
    ds = open_dataset(csv_path)
    assert ds.format == "csv" and not ds.labels_are_names
    assert ds.class_names == ["0", "1"] and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert list(ds.extras.columns) == ["magnification"]
    assert set(ds.extras["magnification"]) <= {"100x", "400x"}
    image, _, _ = ds[0]
    ref = read_rgb(tmp_path / "ints" / ds.paths[0])
    assert np.array_equal(image.permute(1, 2, 0).numpy(), ref)

    named = open_dataset(write_oral_csv(tmp_path / "names", n_per_class=3, label_names=True))
    assert named.labels_are_names and named.class_names == ["Normal", "OSCC"]
    assert named.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_csv_class_name_column_names_int_labels(tmp_path):
    (tmp_path / "a.png").write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1])
    (tmp_path / "m.csv").write_text("path,label,class_name\na.png,1,tumour\na.png,0,normal\n")
    ds = open_dataset(tmp_path / "m.csv")
    assert ds.class_names == ["normal", "tumour"] and ds.labels.tolist() == [1, 0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,label\na.png,0\n", "needs columns path,label; missing path"),
        ("path,label\n", "has no rows"),
        ("path,label\na.png,0.5\n", "is not a class index"),
        ("path,label\na.png,0\na.png,tumour\n", "mixes numbers and names"),
        ("path,label\na.png,\n", "row 2 has an empty label"),
        ("path,label,pred\na.png,0,1\n", "column: 'pred' is a reserved name"),
    ],
)
def test_csv_errors(tmp_path, text, message):
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        open_dataset(tmp_path / "m.csv")


@pytest.mark.parametrize("compressed", [False, True])
def test_npz(tmp_path, compressed):
    path = write_oral_npz(tmp_path / "d.npz", n_per_class=3, compressed=compressed)
    ds = open_dataset(path)
    ref = np.load(path)
    assert ds.format == "npz" and ds.class_names == ["Normal", "OSCC"]
    assert isinstance(ds.images, np.memmap) == (not compressed)
    assert ds.paths[2] == "npz:2" and ds.labels.tolist() == ref["labels"].tolist()
    image, label, sid = ds[4]
    assert np.array_equal(image.permute(1, 2, 0).numpy(), ref["images"][4])
    assert (label, sid) == (int(ref["labels"][4]), 4)


def test_npz_grey_rgba_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (2, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "g.npz", images=grey, labels=np.array([0, 1]))
    img, _, _ = open_dataset(tmp_path / "g.npz")[1]
    assert all(np.array_equal(img[c].numpy(), grey[1]) for c in range(3))
    rgba = rng.integers(0, 256, (2, 8, 8, 4), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=rgba, labels=np.array([0, 1]))
    img, _, _ = open_dataset(tmp_path / "a.npz")[0]
    assert np.array_equal(img.permute(1, 2, 0).numpy(), rgba[0, :, :, :3])
    np.savez(tmp_path / "f.npz", images=grey.astype(np.float32), labels=np.array([0, 1]))
    with pytest.raises(DataError, match="must be uint8"):
        open_dataset(tmp_path / "f.npz")
    np.savez(tmp_path / "c.npz", images=np.zeros((2, 3, 8, 8), np.uint8), labels=np.array([0, 1]))
    with pytest.raises(DataError, match="channels-first"):
        open_dataset(tmp_path / "c.npz")
    np.savez(tmp_path / "n.npz", images=grey)
    with pytest.raises(DataError, match="missing 'labels'"):
        open_dataset(tmp_path / "n.npz")


def test_grey_and_rgba_files_become_rgb(tmp_path):
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    bgra = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    (tmp_path / "c").mkdir()
    cv2.imwrite(str(tmp_path / "c" / "grey.png"), grey)
    cv2.imwrite(str(tmp_path / "c" / "rgba.png"), bgra)
    ds = open_dataset(tmp_path)
    by_name = {p.split("/")[-1]: i for i, p in enumerate(ds.paths)}
    g = ds[by_name["grey.png"]][0].permute(1, 2, 0).numpy()
    assert np.array_equal(g, np.repeat(grey[..., None], 3, axis=2))
    a = ds[by_name["rgba.png"]][0].permute(1, 2, 0).numpy()
    assert np.array_equal(a, cv2.cvtColor(bgra[..., :3], cv2.COLOR_BGR2RGB))  # alpha dropped


def _with_bad_files(folder, tmp_path):
    import shutil

    root = tmp_path / "bad"
    shutil.copytree(folder, root)
    good = (root / "OSCC").iterdir().__next__().read_bytes()
    (root / "OSCC" / "a_truncated.png").write_bytes(good[: len(good) // 2])
    (root / "Normal" / "a_text.jpg").write_text("not an image")
    return root


def test_unreadable_files_are_skipped_by_the_loader(folder, tmp_path):
    root = _with_bad_files(folder, tmp_path)
    ds = open_dataset(root)
    assert len(ds) == 10
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(make_loader(ds, batch_size=4, workers=2))
    skipped = [s for b in batches for s in b.skipped]
    assert sorted(s.path for s in skipped) == ["Normal/a_text.jpg", "OSCC/a_truncated.png"]
    assert any("truncated" in s.reason for s in skipped)
    assert len(caught) == 2
    ids = torch.cat([b.sample_ids for b in batches]).tolist()
    assert ids == [i for i in range(10) if i not in {s.sample_id for s in skipped}]
    assert sum(len(b.images) for b in batches) == 8


def test_strict_makes_unreadable_files_an_error(folder, tmp_path):
    ds = open_dataset(_with_bad_files(folder, tmp_path), strict=True)
    with pytest.raises(DataError, match=r"a_text\.jpg.*strict mode"):
        list(make_loader(ds, batch_size=4, workers=0))


def test_different_sizes_need_image_size(folder, tmp_path):
    import shutil

    root = tmp_path / "mixed"
    shutil.copytree(folder, root)
    big = read_rgb(next((root / "OSCC").iterdir()))
    big = cv2.resize(big, (96, 80))
    cv2.imwrite(str(root / "OSCC" / "zz_big.png"), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    with pytest.raises(DataError, match=r"64x64 .* vs 96x80 .*--image-size"):
        open_dataset(root)
    ds = open_dataset(root, image_size=32)
    image, _, _ = ds[len(ds) - 1]
    ref = cv2.resize(big, (32, 32), interpolation=cv2.INTER_AREA)
    assert np.array_equal(image.permute(1, 2, 0).numpy(), ref)


def test_missing_or_empty_data(tmp_path):
    with pytest.raises(DataError, match="data not found"):
        open_dataset(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        open_dataset(tmp_path / "empty")
    loose = tmp_path / "loose"
    loose.mkdir()
    cv2.imwrite(str(loose / "x.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="directly in it"):
        open_dataset(loose)
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(DataError, match="must be a folder"):
        open_dataset(tmp_path / "x.txt")


def test_loader_batches_follow_the_given_plan(folder):
    ds = open_dataset(folder)
    plan = [[4, 5, 6], [0, 1]]
    batches = list(make_loader(ds, batch_size=3, workers=0, batches=plan))
    assert [b.sample_ids.tolist() for b in batches] == plan
    assert [b.index for b in batches] == [0, 1]
    assert torch.equal(batches[1].images[1], ds[1][0])
    shuffled = list(make_loader(ds, batch_size=8, workers=0, shuffle=True, seed=3))
    again = list(make_loader(ds, batch_size=8, workers=0, shuffle=True, seed=3))
    assert shuffled[0].sample_ids.tolist() == again[0].sample_ids.tolist()
    assert sorted(shuffled[0].sample_ids.tolist()) == list(range(8))
