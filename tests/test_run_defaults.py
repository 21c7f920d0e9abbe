"""``shiftbench run --ckpt model.pt --shift eosin``: --out and --data default from the checkpoint."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from _models import CLASS_NAMES, save_tiny_checkpoint

from shiftbench import read_predictions
from shiftbench.data import open_dataset
from shiftbench.defaults import (
    EvalData,
    default_eval_data,
    default_run_dir,
    open_eval_data,
    recorded_eval_data,
)
from shiftbench.demo import demo_data_dir
from shiftbench.errors import UserInputError

MANIFEST = demo_data_dir() / "manifest.csv"
TEST_CSV = demo_data_dir() / "test.csv"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _recorded_meta(source=MANIFEST, split_source="column") -> dict:
    # What shiftbench.train writes for a manifest with a split column (see test_demo.py).
    return {"method": "test", "seed": 0, "data_source": str(source), "split_source": split_source}


def test_default_run_dir_never_reuses_a_non_empty_folder(tmp_path):
    root = tmp_path / "runs"
    assert default_run_dir([tmp_path / "model.pt"], root) == root / "model"
    (root / "model").mkdir(parents=True)
    assert default_run_dir(["model.pt"], root) == root / "model"  # empty: reused
    (root / "model" / "manifest.json").write_text("{}")
    assert default_run_dir(["model.pt", "other.pt"], root) == root / "model-2"
    (root / "model-2").write_text("a file, not a folder")
    assert default_run_dir(["model.pt"], root) == root / "model-3"


def test_recorded_eval_data_reads_the_split_column(tmp_path):
    assert recorded_eval_data(_recorded_meta()) == EvalData(MANIFEST, "test")
    assert recorded_eval_data(_recorded_meta(split_source="random")) is None
    assert recorded_eval_data(_recorded_meta(source=tmp_path / "gone.csv")) is None
    no_test = tmp_path / "no_test.csv"
    pd.read_csv(MANIFEST).query("split != 'test'").to_csv(no_test, index=False)
    assert recorded_eval_data(_recorded_meta(source=no_test)) is None
    assert recorded_eval_data({"method": "sd"}) is None


def test_open_eval_data_equals_the_bundled_test_csv():
    subset = open_eval_data(EvalData(MANIFEST, "test"))
    reference = open_dataset(TEST_CSV)  # the same rows, written out by the data's authors
    assert subset.paths == reference.paths
    assert subset.labels.tolist() == reference.labels.tolist()
    assert subset.fingerprint() == reference.fingerprint()
    assert open_eval_data(EvalData(MANIFEST, "test"), limit=5).paths == reference.paths[:5]


def test_default_eval_data_errors_name_data(tmp_path):
    class Ck:
        def __init__(self, path, meta):
            self.path, self.meta = path, meta

    with pytest.raises(UserInputError, match=r"^--data is needed for b\.pt: it records no"):
        default_eval_data([Ck("a.pt", _recorded_meta()), Ck("b.pt", {"seed": 1})])
    other = tmp_path / "other.csv"
    pd.read_csv(MANIFEST).to_csv(other, index=False)
    with pytest.raises(UserInputError, match=r"record different evaluation data.*--data PATH"):
        default_eval_data([Ck("a.pt", _recorded_meta()), Ck("b.pt", _recorded_meta(other))])


def test_run_with_only_ckpt_and_shift(cli, tmp_path, monkeypatch):
    ckpt = save_tiny_checkpoint(
        tmp_path / "model.pt", class_names=CLASS_NAMES, meta=_recorded_meta()
    )
    monkeypatch.chdir(tmp_path)
    args = ("run", "--ckpt", ckpt, "--shift", "eosin", "--magnitudes", "1,0", "--limit", "6")
    fast = ("--workers", "0", "--n-boot", "0", "--no-progress")
    code, _, err = cli(*args, *fast)
    assert code == 0, err
    assert "writing the run to runs/model " in err and "split == test" in err
    pred = read_predictions(tmp_path / "runs" / "model")
    first_test_rows = pd.read_csv(TEST_CSV)["path"].head(6).tolist()
    assert sorted(set(pred["path"])) == sorted(first_test_rows)
    assert sorted(set(pred["magnitude"])) == [0.0, 1.0]
    assert set(pred["dataset"]) == {MANIFEST.parent.name}  # the recorded split's folder name

    code, _, err = cli(*args, *fast)  # never clobbers: a new folder
    assert code == 0, err
    assert (tmp_path / "runs" / "model-2" / "metrics.csv").is_file()
    assert "writing the run to runs/model-2 " in err


def test_run_without_recorded_data_or_out(cli, tmp_path, monkeypatch):
    bare = save_tiny_checkpoint(tmp_path / "bare.pt", class_names=CLASS_NAMES)
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("run", "--ckpt", bare, "--shift", "eosin")
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: --data is needed for {bare}: it records no evaluation data; pass --data PATH "
        "(image folder, CSV manifest or .npz)"
    ]
    assert not (tmp_path / "runs").exists()
    code, _, err = cli("run", "--ckpt", bare, "--shift", "eosin", "--data", TEST_CSV, "--resume")
    assert code == 2 and err.strip() == "error: --resume needs --out DIR (the run to resume)"


def test_resolve_run_inputs_for_the_python_api(tmp_path, monkeypatch):
    from shiftbench.defaults import resolve_run_inputs

    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", class_names=CLASS_NAMES, meta=_recorded_meta())
    monkeypatch.chdir(tmp_path)
    given = resolve_run_inputs([ckpt], TEST_CSV, "here", limit=3)
    assert (given.checkpoints, given.data, given.out, given.limit) == (
        [ckpt],
        TEST_CSV,
        Path("here"),
        3,
    )
    assert given.notes == []
    filled = resolve_run_inputs([ckpt], limit=3)
    assert filled.out == Path("runs/m") and filled.limit is None
    assert [c.path for c in filled.checkpoints] == [ckpt]
    assert filled.data.paths == open_dataset(TEST_CSV).paths[:3]
    assert len(filled.notes) == 2
