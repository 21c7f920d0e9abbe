"""The cutout spurious-correlation set: exact proportions, pixels, formats, refusals."""

from __future__ import annotations

import shutil
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd
import pytest
import torch

from shiftbench.cutout_set import make_cutout_set
from shiftbench.data import open_dataset
from shiftbench.demo import demo_data_dir
from shiftbench.registry import get_shift


def half_up(x: str) -> int:
    """Round-half-up with exact decimal arithmetic (independent of the code under test)."""
    return int(Decimal(x).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@pytest.fixture(scope="module")
def folder_source(tmp_path_factory):
    """A class-folder data set without a split column: 44 Normal + 41 OSCC real tiles."""
    src = demo_data_dir()
    table = pd.read_csv(src / "manifest.csv")
    root = tmp_path_factory.mktemp("folder_src")
    for name, n in (("Normal", 44), ("OSCC", 41)):
        rows = table[table["class_name"] == name].iloc[:n]
        (root / name).mkdir()
        for p in rows["path"]:
            shutil.copy(src / p, root / name / p.split("/")[-1])
    return root


@pytest.fixture(scope="module")
def split_source(tmp_path_factory):
    """A CSV manifest with the vendored split column (first 150 rows, absolute paths)."""
    src = demo_data_dir()
    table = pd.read_csv(src / "manifest.csv").iloc[:150].copy()
    table["path"] = [str(src / p) for p in table["path"]]
    path = tmp_path_factory.mktemp("split_src") / "m.csv"
    table.to_csv(path, index=False)
    return path


def _read(manifest_or_npz):
    ds = open_dataset(manifest_or_npz)
    return ds, torch.stack([ds[i][0] for i in range(len(ds))])


def test_folder_source_exact_counts_and_pixels(folder_source, tmp_path):
    res = make_cutout_set(folder_source, tmp_path / "cs", positive_class="OSCC", seed=3)
    src = open_dataset(folder_source)
    tables = {k: pd.read_csv(v["manifest"]) for k, v in res.splits.items()}
    train, test, control = tables["train"], tables["test"], tables["control_train"]
    # pools: disjoint, cover the source, test ≈ 20 % stratified
    assert set(train["source_index"]).isdisjoint(test["source_index"])
    assert len(train) + len(test) == len(src)
    assert sorted(train["source_index"]) == sorted(control["source_index"])
    neg, pos = train[train["class_name"] == "Normal"], train[train["class_name"] == "OSCC"]
    assert int(neg["has_cutout"].sum()) == half_up(str(Decimal(len(neg)) * Decimal("0.25")))
    assert int(pos["has_cutout"].sum()) == half_up(str(Decimal(len(pos)) * Decimal("0.025")))
    assert test.loc[test["class_name"] == "OSCC", "has_cutout"].all()
    assert not test.loc[test["class_name"] == "Normal", "has_cutout"].any()
    assert control["has_cutout"].all()
    assert res.splits["train"]["cutout_negatives"] == int(neg["has_cutout"].sum())

    # pixels: untouched rows equal the source; cut rows equal the cutout shift's output
    shift = get_shift("cutout", patch_size=8)
    for name in ("train", "control_train", "test"):
        _, imgs = _read(res.splits[name]["manifest"])
        t = tables[name]
        for k in range(len(t)):
            orig = src[int(t.at[k, "source_index"])][0]
            if t.at[k, "has_cutout"]:
                want = shift(orig[None], 16, seed=3, sample_ids=[int(t.at[k, "source_index"])])[0]
                assert torch.equal(imgs[k], want)
                assert not torch.equal(imgs[k], orig)
            else:
                assert torch.equal(imgs[k], orig)
    # the same image carries the same patches in train and control_train
    _, tr_imgs = _read(res.splits["train"]["manifest"])
    _, co_imgs = _read(res.splits["control_train"]["manifest"])
    by_src = dict(zip(control["source_index"], range(len(control)), strict=True))
    for k in np.flatnonzero(train["has_cutout"].to_numpy()):
        assert torch.equal(tr_imgs[k], co_imgs[by_src[train.at[k, "source_index"]]])


def test_split_column_pools_and_npz(split_source, tmp_path):
    res = make_cutout_set(split_source, tmp_path / "cs", fmt="npz", seed=0)
    table = pd.read_csv(split_source)
    n_test = int((table["split"] == "test").sum())
    assert res.splits["test"]["n"] == n_test
    train = pd.read_csv(res.splits["train"]["manifest"])
    assert set(train["split"]) == {"train", "val"}  # kept so training validates on val rows
    n_neg = int(((table["split"] != "test") & (table["label"] == 0)).sum())
    n_pos = int(((table["split"] != "test") & (table["label"] == 1)).sum())
    assert res.splits["train"]["cutout_negatives"] == half_up(str(Decimal(n_neg) * Decimal("0.25")))
    assert res.splits["train"]["cutout_positives"] == half_up(
        str(Decimal(n_pos) * Decimal("0.025"))
    )
    ds = open_dataset(res.splits["train"]["data"])
    assert len(ds) == len(train) and ds.class_names == ["Normal", "OSCC"]
    assert np.array_equal(ds.labels, train["label"].to_numpy())


def test_refusals(folder_source, tmp_path, cli):
    out = tmp_path / "cs"
    make_cutout_set(folder_source, out)
    with pytest.raises(ValueError, match="--overwrite"):
        make_cutout_set(folder_source, out)
    code, _, err = cli("make-cutout-set", "--data", folder_source, "--out", out)
    assert code == 2 and "--overwrite" in err
    code, stdout, err = cli(
        "make-cutout-set", "--data", folder_source, "--out", out, "--overwrite", "--seed", "1"
    )
    assert code == 0, err
    assert "train:" in stdout and "control_train:" in stdout
    code, _, err = cli(
        "make-cutout-set", "--data", folder_source, "--out", tmp_path / "x", "--positive-class", "X"
    )
    assert code == 2 and "OSCC" in err


def test_counts_round_half_up_exactly():
    from shiftbench.cutout_set import cutout_counts

    # hand-computed: 0.25·34 = 8.5 → 9, 0.025·20 = 0.5 → 1, 0.025·60 = 1.5 → 2, 0.025·19 = 0.475 → 0
    assert cutout_counts(34, 20) == (9, 1)
    assert cutout_counts(33, 60) == (8, 2)
    assert cutout_counts(2, 19) == (1, 0)

    for n_neg in range(0, 120):
        for n_pos in (0, 19, 20, 59, 60, 61, 100, 140):
            want = (
                half_up(str(Decimal(n_neg) * Decimal("0.25"))),
                half_up(str(Decimal(n_pos) * Decimal("0.025"))),
            )
            assert cutout_counts(n_neg, n_pos) == want, (n_neg, n_pos)
