"""make-spurious-set: exact proportions, the reversed O.O.D. rule, pixels, determinism, errors."""

from __future__ import annotations

import filecmp
import itertools
import json
import shutil
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd
import pytest
import torch

from shiftbench.data import open_dataset
from shiftbench.demo import demo_data_dir
from shiftbench.registry import get_shift
from shiftbench.spurious_set import make_spurious_set, parse_param

LEVELS = (0.0, 0.1, 0.2, 0.5, 0.8)


def half_up(fraction: str, n: int) -> int:
    """round(fraction · n), halves up, in exact decimal (independent of the code under test)."""
    return int((Decimal(fraction) * n).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _copy_tiles(root, counts: dict[str, tuple[str, int, int]]):
    """Class folders of real vendored tiles: new name -> (source class, first row, n)."""
    src = demo_data_dir()
    table = pd.read_csv(src / "manifest.csv")
    root.mkdir(exist_ok=True)
    for name, (source_class, start, n) in counts.items():
        rows = table[table["class_name"] == source_class].iloc[start : start + n]
        (root / name).mkdir()
        for p in rows["path"]:
            shutil.copy(src / p, root / name / p.split("/")[-1])
    return root


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A class-folder data set without a split column: 26 Normal + 24 OSCC real tiles."""
    root = tmp_path_factory.mktemp("spurious_src")
    return _copy_tiles(root, {"Normal": ("Normal", 0, 26), "OSCC": ("OSCC", 0, 24)})


@pytest.fixture(scope="module")
def ring_set(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("ring") / "set"
    res = make_spurious_set(
        source, out, artifact="ring:16", target_class="Normal", degradation=LEVELS, seed=3
    )
    return res


def tables(res) -> dict[str, pd.DataFrame]:
    return {k: pd.read_csv(v["manifest"]) for k, v in res.splits.items()}


def test_exact_proportions_and_reversed_ood(ring_set, source):
    t = tables(ring_set)
    assert set(t) == {f"{s}_d{d:g}" for d in LEVELS for s in ("train", "iid_test", "ood_test")} | {
        "control_train"
    }
    n_source = len(open_dataset(source))
    train0, test0 = t["train_d0"], t["iid_test_d0"]
    assert set(train0["source_index"]).isdisjoint(test0["source_index"])
    assert len(train0) + len(test0) == n_source
    for d in LEVELS:
        train, iid, ood = t[f"train_d{d:g}"], t[f"iid_test_d{d:g}"], t[f"ood_test_d{d:g}"]
        for split in (train, iid):
            normal = split[split["class_name"] == "Normal"]
            assert int(normal["has_artifact"].sum()) == half_up(str(d), len(normal)), d
            assert not split.loc[split["class_name"] == "OSCC", "has_artifact"].any()
            assert (split["degradation"] == d).all()
        # O.O.D.: the correlation reversed — every other-class image, no target-class image
        assert ood.loc[ood["class_name"] == "OSCC", "has_artifact"].all()
        assert not ood.loc[ood["class_name"] == "Normal", "has_artifact"].any()
        assert list(ood["source_index"]) == list(iid["source_index"])
        assert list(train["source_index"]) == list(train0["source_index"])
    control = t["control_train"]
    assert control["has_artifact"].all()
    assert sorted(control["source_index"]) == sorted(train0["source_index"])
    # hand-checked counts for this split (21 training Normal tiles: 0.1·21 = 2.1 → 2,
    # 0.5·21 = 10.5 → 11, 0.8·21 = 16.8 → 17)
    n_normal = int((train0["class_name"] == "Normal").sum())
    assert n_normal == 21
    marked = [int(t[f"train_d{d:g}"]["has_artifact"].sum()) for d in LEVELS]
    assert marked == [0, 2, 4, 11, 17]
    info = ring_set.splits["train_d0.5"]["classes"]
    assert info == {"Normal": {"n": 21, "artifact": 11}, "OSCC": {"n": 19, "artifact": 0}}


def test_levels_are_nested(ring_set):
    t = tables(ring_set)
    for split in ("train", "iid_test"):
        marked = [set(t[f"{split}_d{d:g}"].query("has_artifact")["source_index"]) for d in LEVELS]
        for a, b in itertools.pairwise(marked):
            assert a <= b, split


def test_pixels_are_the_registered_shift(ring_set, source):
    src = open_dataset(source)
    ring = get_shift("ring")
    t = tables(ring_set)
    for key in ("train_d0.5", "ood_test_d0.5", "control_train"):
        ds = open_dataset(ring_set.splits[key]["manifest"])
        for k in range(len(ds)):
            i = int(t[key].at[k, "source_index"])
            orig = src[i][0]
            img = ds[k][0]
            if t[key].at[k, "has_artifact"]:
                want = ring(orig[None], 16, seed=3, sample_ids=[i])[0]
                assert torch.equal(img, want), (key, k)
                assert not torch.equal(img, orig)
            else:
                assert torch.equal(img, orig), (key, k)
    # every image is stored once: the same source image has one path per variant
    paths = pd.concat(t.values())[["source_index", "has_artifact", "path"]].drop_duplicates()
    assert not paths.duplicated(["source_index", "has_artifact"]).any()


def test_deterministic_and_seeded(source, tmp_path):
    kwargs = dict(artifact="ring:8", target_class="OSCC", degradation=[0.5])
    a = make_spurious_set(source, tmp_path / "a", seed=1, **kwargs)
    b = make_spurious_set(source, tmp_path / "b", seed=1, **kwargs)
    cmp = filecmp.dircmp(tmp_path / "a", tmp_path / "b")
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    for sub in ("images/artifact/OSCC", "images/clean/Normal"):
        c = filecmp.dircmp(tmp_path / "a" / sub, tmp_path / "b" / sub)
        assert c.left_list and not c.diff_files
        _, mismatch, errors = filecmp.cmpfiles(
            tmp_path / "a" / sub, tmp_path / "b" / sub, c.common_files, shallow=False
        )
        assert not mismatch and not errors
    assert a.splits.keys() == b.splits.keys()
    c = make_spurious_set(source, tmp_path / "c", seed=2, **kwargs)
    pick = [
        set(pd.read_csv(r.manifest("train", 0.5)).query("has_artifact")["source_index"])
        for r in (a, c)
    ]
    assert pick[0] != pick[1], "another seed should mark other images"


def test_other_fraction_and_multiclass(tmp_path):
    classes = {"A": ("Normal", 0, 20), "B": ("OSCC", 0, 20), "C": ("Normal", 20, 20)}
    root = _copy_tiles(tmp_path / "src3", classes)
    res = make_spurious_set(
        root,
        tmp_path / "out",
        artifact="cutout:4",
        target_class="B",
        degradation="0.5",
        other_fraction=0.25,
        seed=0,
    )
    train = pd.read_csv(res.manifest("train", 0.5))
    for name, frac in (("A", "0.25"), ("B", "0.5"), ("C", "0.25")):
        rows = train[train["class_name"] == name]
        assert int(rows["has_artifact"].sum()) == half_up(frac, len(rows)), name
    ood = pd.read_csv(res.manifest("ood_test", 0.5))
    assert ood.loc[ood["class_name"] != "B", "has_artifact"].all()
    assert not ood.loc[ood["class_name"] == "B", "has_artifact"].any()
    assert set(ood["class_name"]) == {"A", "B", "C"}


def test_split_column_is_kept_for_training(tmp_path):
    src = demo_data_dir()
    table = pd.read_csv(src / "manifest.csv").iloc[:120].copy()
    table["path"] = [str(src / p) for p in table["path"]]
    path = tmp_path / "m.csv"
    table.to_csv(path, index=False)
    res = make_spurious_set(
        path, tmp_path / "out", artifact="ring:4", target_class="Normal", degradation=[0.2]
    )
    train = pd.read_csv(res.manifest("train", 0.2))
    iid = pd.read_csv(res.manifest("iid_test", 0.2))
    assert set(train["split"]) == {"train", "val"}  # the trainer validates on the val rows
    assert len(iid) == int((table["split"] == "test").sum())


def test_cli_ring_grating_example(source, tmp_path, cli):
    out = tmp_path / "cli"
    code, stdout, err = cli(
        "make-spurious-set", "--data", source, "--artifact", "ring:16", "--param",
        "frequency=0.1", "--param", "pattern=grating", "--class", "Normal",
        "--degradation", "0,0.5", "--out", out, "--seed", "5",
    )  # fmt: skip
    assert code == 0, err
    lines = stdout.strip().splitlines()
    assert len(lines) == 7 and lines[-1].startswith("control_train: 40 images")
    assert "ood_test_d0.5: 10 images; artifact on Normal 0/5, OSCC 5/5" in stdout
    params = json.loads((out / "spurious_set.json").read_text())["params"]
    assert params["artifact"] == {
        "shift": "ring",
        "magnitude": 16.0,
        "params": {"frequency": 0.1, "pattern": "grating"},
    }
    # the grating parameters reached the pixels
    ood = pd.read_csv(out / "ood_test_d0.5.csv")
    k = int(ood.index[ood["has_artifact"]][0])
    i = int(ood.at[k, "source_index"])
    orig = open_dataset(source)[i][0]
    want = get_shift("ring", frequency=0.1, pattern="grating")(
        orig[None], 16, seed=5, sample_ids=[i]
    )
    assert torch.equal(open_dataset(out / "ood_test_d0.5.csv")[k][0], want[0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--artifact", "wobble:3"], "unknown shift 'wobble'; valid shifts:"),
        (["--artifact", "ring"], "must be SHIFT:MAGNITUDE"),
        (["--artifact", "ring:loud"], "must be SHIFT:MAGNITUDE"),
        (["--artifact", "ring:300"], "out of range; valid: numbers in [0, 255]"),
        (["--artifact", "ring:0"], "is the identity of 'ring'"),
        (["--artifact", "cutout:2.5"], "must be a whole number"),
        (["--param", "frequency"], "must be NAME=VALUE"),
        (["--param", "colour=3"], "has no parameter 'colour'; its parameters: frequency, pattern"),
        (["--param", "frequency=0.9"], "frequency must be a number in (0, 0.7071]"),
        (["--class", "Tumour"], "--class 'Tumour' is not a class of"),
        (["--degradation", "0,1.5"], "'1.5' is outside [0, 1]"),
        (["--degradation", "0,-0.1"], "'-0.1' is outside [0, 1]"),
        (["--degradation", "0,,0.5"], "'' is not a number"),
        (["--degradation", "0.5,0.5"], "'0.5' is given twice"),
    ],
)
def test_bad_input_is_one_line(source, tmp_path, cli, args, message):
    base = {"--artifact": "ring:16", "--class": "Normal"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["make-spurious-set", "--data", source, "--out", tmp_path / "x"]
    for flag, value in base.items():
        argv += [flag, value]
    code, _, err = cli(*argv)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not (tmp_path / "x").exists()


def test_refuses_to_overwrite_and_single_class_data(source, tmp_path, cli):
    out = tmp_path / "o"
    make_spurious_set(source, out, artifact="ring:2", target_class="OSCC", degradation=[0.1])
    with pytest.raises(ValueError, match="--overwrite"):
        make_spurious_set(source, out, artifact="ring:2", target_class="OSCC")
    one = _copy_tiles(tmp_path / "one", {"OSCC": ("OSCC", 0, 10)})
    code, _, err = cli(
        "make-spurious-set", "--data", one, "--artifact", "ring:2", "--class", "OSCC",
        "--out", tmp_path / "y",
    )  # fmt: skip
    assert code == 2 and "no class other than 'OSCC'" in err and err.count("\n") == 1


def test_parse_param_values():
    assert parse_param("frequency=0.25") == ("frequency", 0.25)
    assert parse_param("patch_size=8") == ("patch_size", 8)
    assert parse_param("fill=0,255,0") == ("fill", (0, 255, 0))
    assert parse_param("pattern = grating") == ("pattern", "grating")
