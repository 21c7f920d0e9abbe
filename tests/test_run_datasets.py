"""Several evaluation sets in one run (``run --data internal=A --data external=B``).

Real oral tiles (downsized) split into two disjoint sets: a class-folder set and a CSV set with
integer labels. The independent reference for the two-set run is one separate run per set: each
set's predictions and metrics must equal those of its own run (same seed, so the bootstrap CIs
too), with the second set's sample ids shifted by the first set's size.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from _models import CLASS_NAMES, _small_rgb, _write_image, oral_rows, save_tiny_checkpoint
from conftest import one_error_line

from shiftbench import read_predictions
from shiftbench.data import make_loader, open_dataset
from shiftbench.data_sets import ConcatImageDataset
from shiftbench.errors import DataError, RunError, UserInputError
from shiftbench.run.api import run
from shiftbench.run.rundir import read_manifest, read_sample_datasets

OPTIONS = dict(magnitudes=[1.0, 0.5], batch_size=5, workers=0, n_boot=50, seed=3)
SHIFTS = ["eosin"]
KEYS = ["checkpoint", "shift", "magnitude"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _write_folder(root: Path, rows: list[dict[str, str]], size: int = 64) -> Path:
    for r in rows:
        name = Path(r["path"]).with_suffix(".png").name
        _write_image(root / r["class_name"] / name, _small_rgb(r["path"], size))
    return root


def _write_csv(root: Path, rows: list[dict[str, str]], size: int = 64, names=None) -> Path:
    """CSV manifest with integer labels and a class_name column (or name labels ``names``)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "class_name", "magnification"])
        for r in rows:
            rel = f"img/{Path(r['path']).with_suffix('.png').name}"
            _write_image(root / rel, _small_rgb(r["path"], size))
            label = names[int(r["label"])] if names else r["label"]
            w.writerow([rel, label, r["class_name"], r["magnification"]])
    return root / "labels.csv"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Two disjoint sets of real tiles (8 and 7 images) and one checkpoint."""
    root = tmp_path_factory.mktemp("sets")
    rows = oral_rows(8)
    internal = _write_folder(root / "internal_tiles", rows[0::2])
    external = _write_csv(root / "external_scanner", rows[1::2][:7])
    ckpt = save_tiny_checkpoint(root / "a.pt", class_names=CLASS_NAMES)
    return root, internal, external, ckpt


@pytest.fixture(scope="module")
def two(env):
    root, internal, external, ckpt = env
    return run([ckpt], {"internal": internal, "external": external}, SHIFTS,
               out=root / "two", **OPTIONS)  # fmt: skip


@pytest.fixture(scope="module")
def singles(env):
    root, internal, external, ckpt = env
    return {
        name: run([ckpt], path, SHIFTS, out=root / f"single_{name}", **OPTIONS)
        for name, path in (("internal", internal), ("external", external))
    }


def test_samples_have_their_set_in_contiguous_ranges(two):
    samples = pq.read_table(two.out_dir / "samples.parquet").to_pandas()
    assert list(samples.columns) == [
        "sample_id", "path", "label", "dataset", "class_name", "magnification"
    ]  # fmt: skip
    assert samples["sample_id"].tolist() == list(range(15))
    assert samples["dataset"].tolist() == ["internal"] * 8 + ["external"] * 7
    assert samples["magnification"].iloc[:8].isna().all()  # the folder set has no such column
    sets = read_sample_datasets(two.out_dir)
    assert sets.names == ["internal", "external"]
    assert sets.ids("external").tolist() == list(range(8, 15))
    m = two.manifest
    assert [(d["name"], d["first_sample_id"], d["n_samples"]) for d in m["datasets"]] == [
        ("internal", 0, 8),
        ("external", 8, 7),
    ]
    assert m["datasets"][1]["format"] == "csv" and m["data"] == {
        k: v for k, v in m["datasets"][0].items() if k not in ("name", "first_sample_id")
    }
    assert [d[0] for d in m["config"]["datasets"]] == ["internal", "external"]


def test_each_set_equals_its_own_run(two, singles):
    both = read_predictions(two.out_dir)
    assert list(both.columns[3:6]) == ["sample_id", "dataset", "path"]
    offset = {"internal": 0, "external": 8}
    for name, single in singles.items():
        got = both[both["dataset"] == name].drop(columns="dataset").reset_index(drop=True)
        got["sample_id"] -= offset[name]
        ref = single.predictions().drop(columns="dataset")
        if name == "internal":  # the folder set has no CSV columns of its own: missing values
            assert got[["class_name", "magnification"]].isna().all().all()
            got = got.drop(columns=["class_name", "magnification"])
        pd.testing.assert_frame_equal(got, ref)
    metrics = two.metrics
    assert list(metrics.columns[:6]) == [*KEYS, "dataset", "normalize", "n"]
    assert (metrics["normalize"] == "none").all()
    assert metrics["dataset"].tolist() == ["internal", "external"] * 2  # per magnitude, in order
    for name, single in singles.items():
        got = metrics[metrics["dataset"] == name].drop(columns="dataset").reset_index(drop=True)
        ref = single.metrics.drop(columns="dataset")
        assert (got["n"] == (8 if name == "internal" else 7)).all()
        pd.testing.assert_frame_equal(got, ref)


def test_bare_paths_are_named_after_their_folder_and_limit_is_per_set(cli, env, tmp_path):
    _, internal, external, ckpt = env
    out = tmp_path / "out"
    code, _, err = cli(
        "run", "--ckpt", ckpt, "--data", internal, "--data", f"ext={external}",
        "--shift", "eosin", "--magnitudes", "1", "--limit", "3", "--n-boot", "0",
        "--workers", "0", "--out", out, "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    samples = pq.read_table(out / "samples.parquet").to_pandas()
    assert samples["dataset"].tolist() == ["internal_tiles"] * 3 + ["ext"] * 3
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["dataset"].tolist() == ["internal_tiles", "ext"]
    assert metrics["n"].tolist() == [3, 3]


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["x={a}", "x={b}"], "--data name 'x' is given twice; give each set its own NAME=PATH"),
        (["{a}", "{a}"], "--data name 'internal_tiles' is given twice"),
        (["={a}"], "the name before '=' is empty"),
        (["x="], "the path is empty"),
    ],
)
def test_bad_data_options_are_one_line_and_write_nothing(cli, env, tmp_path, specs, message):
    _, internal, external, ckpt = env
    args = []
    for s in specs:
        args += ["--data", s.format(a=internal, b=external)]
    out = tmp_path / "out"
    code, _, err = cli("run", "--ckpt", ckpt, *args, "--shift", "eosin", "--out", out)
    assert message in one_error_line(code, err)
    assert not out.exists() or not any(out.iterdir())


def test_class_names_must_agree(env, tmp_path):
    _, internal, _, ckpt = env
    other = _write_csv(tmp_path / "other", oral_rows(2), names=["benign", "tumour"])
    with pytest.raises(DataError) as e:
        run([ckpt], {"internal": internal, "other": other}, SHIFTS, out=tmp_path / "o", **OPTIONS)
    msg = str(e.value)
    assert "'internal' and 'other' have different class names" in msg
    assert "(Normal, OSCC vs benign, tumour)" in msg and "\n" not in msg
    assert not (tmp_path / "o").exists()


def test_name_labels_are_mapped_by_name(env, tmp_path):
    """A set labelled by names is put on the other set's class order by name."""
    _, internal, _, _ = env
    swapped = _write_csv(tmp_path / "sw", oral_rows(2), names=["Normal", "OSCC"])
    a, b = open_dataset(internal), open_dataset(swapped)
    both = ConcatImageDataset([("a", a), ("b", b)])
    assert both.class_names == CLASS_NAMES and both.labels_are_names
    truth = [int(r["label"]) for r in oral_rows(2)]  # 0 = Normal, 1 = OSCC
    assert both.labels[len(a) :].tolist() == truth


def test_image_sizes_must_agree_unless_image_size(env, tmp_path):
    _, internal, _, ckpt = env
    small = _write_folder(tmp_path / "small", oral_rows(2), size=48)
    with pytest.raises(DataError, match=r"'internal' \(64x64\) and 'small' \(48x48\) differ in "
                       r"image size; pass --image-size N"):  # fmt: skip
        run([ckpt], {"internal": internal, "small": small}, SHIFTS, out=tmp_path / "o", **OPTIONS)
    assert not (tmp_path / "o").exists()
    res = run([ckpt], [str(internal), f"small={small}"], SHIFTS, out=tmp_path / "ok",
              image_size=56, **OPTIONS)  # fmt: skip
    assert res.metrics["n"].tolist() == [8, 4, 8, 4]


def test_group_by_must_be_a_column_of_every_set(env, tmp_path):
    _, internal, external, ckpt = env
    with pytest.raises(UserInputError, match="'magnification' is not a column of data set "
                       "'internal'"):  # fmt: skip
        run([ckpt], {"internal": internal, "external": external}, SHIFTS, out=tmp_path / "o",
            group_by="magnification", **OPTIONS)  # fmt: skip


def test_concatenation_streams_across_set_borders(env):
    _, internal, external, _ = env
    a, b = open_dataset(internal), open_dataset(external)
    both = ConcatImageDataset([("a", a), ("b", b)])
    assert len(both) == 15 and both.locate(8) == (1, 0)
    batches = list(make_loader(both, 4, workers=0))
    ids = np.concatenate([bt.sample_ids.numpy() for bt in batches])
    assert ids.tolist() == list(range(15))
    images = torch.cat([bt.images for bt in batches])
    assert torch.equal(images[7], a[7][0]) and torch.equal(images[8], b[0][0])


def test_resume_refuses_another_list_of_sets(env, two, tmp_path):
    _, internal, external, ckpt = env
    out = tmp_path / "run"
    shutil.copytree(two.out_dir, out)
    for data in ({"internal": internal}, {"external": external, "internal": internal},
                 {"internal": internal, "outside": external}):  # fmt: skip
        with pytest.raises(RunError, match="holds a different run") as e:
            run([ckpt], data, SHIFTS, out=out, resume=True, **OPTIONS)
        assert "\n" not in str(e.value)


def test_resume_after_losing_a_part_gives_identical_tables(env, two, tmp_path):
    _, internal, external, ckpt = env
    out = tmp_path / "run"
    shutil.copytree(two.out_dir, out)
    parts = sorted((out / "parts").iterdir())
    parts[1].unlink()  # batch 1: samples 5-9, straddling the two sets
    run([ckpt], {"internal": internal, "external": external}, SHIFTS, out=out, resume=True,
        **OPTIONS)  # fmt: skip
    for name in ("samples.parquet", "checkpoints.parquet", "metrics.csv"):
        assert (out / name).read_bytes() == (two.out_dir / name).read_bytes(), name
    pd.testing.assert_frame_equal(read_predictions(out), read_predictions(two.out_dir))
    assert read_manifest(out)["invocations"][-1]["batches_computed"] == 1


def test_unreadable_files_keep_their_global_sample_ids(env, tmp_path):
    _, internal, _, ckpt = env
    bad = tmp_path / "bad"
    shutil.copytree(internal, bad)
    (bad / "OSCC" / "0_broken.png").write_text("not a png")
    local = open_dataset(bad).paths.index("OSCC/0_broken.png")
    res = run([ckpt], {"a": internal, "b": bad}, SHIFTS, out=tmp_path / "o", **OPTIONS)
    skipped = res.manifest["skipped_files"]
    assert [(s["sample_id"], s["path"]) for s in skipped] == [(8 + local, "OSCC/0_broken.png")]
    assert res.metrics["n"].tolist() == [8, 8] * 2  # b: 9 files, one unreadable
    assert 8 + local not in set(res.predictions()["sample_id"])


def test_opened_sets_are_named_after_their_folder(env):
    """An opened data set (e.g. the test split recorded in a checkpoint, opened by
    shiftbench.defaults) is named like its path: a CSV after the folder holding it."""
    from shiftbench.run.datasets import named_sources

    _, internal, external, _ = env
    ds = open_dataset(external)
    assert [n for n, _ in named_sources(ds)] == ["external_scanner"]
    assert [n for n, _ in named_sources([ds, f"x={internal}"])] == ["external_scanner", "x"]
    assert [n for n, _ in named_sources({"b": internal, "a": ds})] == ["b", "a"]


def test_resume_of_one_set_keeps_its_name(env, singles, tmp_path):
    """Resuming under another name would relabel ``dataset`` in samples.parquet and metrics.csv."""
    _, internal, _, ckpt = env
    out = tmp_path / "run"
    shutil.copytree(singles["internal"].out_dir, out)
    with pytest.raises(RunError, match=r"'internal_tiles' → 'foo'") as e:
        run([ckpt], {"foo": internal}, SHIFTS, out=out, resume=True, **OPTIONS)
    assert "\n" not in str(e.value)
    assert pd.read_csv(out / "metrics.csv")["dataset"].eq("internal_tiles").all()


def test_runs_without_datasets_in_the_manifest_resume_under_any_name(env, singles, tmp_path):
    import json

    _, internal, _, ckpt = env
    out = tmp_path / "run"
    shutil.copytree(singles["internal"].out_dir, out)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["datasets"]  # as written before several sets existed
    (out / "manifest.json").write_text(json.dumps(manifest))
    res = run([ckpt], {"foo": internal}, SHIFTS, out=out, resume=True, **OPTIONS)
    assert res.manifest["invocations"][-1]["batches_computed"] == 0


def test_run_does_not_change_the_callers_data_set(env, tmp_path):
    _, internal, _, ckpt = env
    ds = open_dataset(internal)
    res = run([ckpt], ds, SHIFTS, out=tmp_path / "o", strict=True, **OPTIONS)
    assert ds.strict is False
    assert res.metrics["n"].tolist() == [8, 8]


def test_a_bare_dot_is_named_after_the_current_folder(monkeypatch, tmp_path):
    from shiftbench.run.rundir import dataset_name

    folder = tmp_path / "tiles_here"
    folder.mkdir()
    monkeypatch.chdir(folder)
    assert dataset_name(".") == "tiles_here"
    assert dataset_name("./") == "tiles_here"
