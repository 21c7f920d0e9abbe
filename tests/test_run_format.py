"""Run directory format 2: round trip to the 0.1 wide table, format-1 reading and migration.

The reference is tests/fixtures/run_v1, written by the 0.1 runner (tests/fixtures/make_run_v1.py)
before format 2 existed: its ``predictions.parquet`` and ``metrics.csv`` are what 0.1 produced.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import torch

from shiftbench import migrate, read_predictions
from shiftbench.cli import main
from shiftbench.errors import DataError, UserInputError
from shiftbench.run.metrics_step import compute_run_metrics
from shiftbench.run.rundir import (
    CHECKPOINTS,
    FORMAT_V1,
    FORMAT_V2,
    PREDICTIONS_V1,
    SAMPLES,
    checkpoint_file,
    open_predictions,
    read_manifest,
    read_sample_datasets,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
V1 = FIXTURES / "run_v1"


#: Columns that runs since issue 10 write and 0.1 did not. Key columns: samples.parquet / the
#: joined view gain ``dataset``; metrics.csv gains ``dataset`` and ``normalize`` after
#: ``magnitude``. Metric columns: ``ece``, ``brier``, ``nll`` (+ CIs) after ``recall``. The
#: comparisons with the 0.1 fixture check where these sit and what the keys hold (the one set,
#: "none"), then compare every shared column text for text (same seed, same resamples); the
#: calibration values are tested against direct formulas in tests/test_metrics_calibration.py.
NEW_METRIC_KEYS = ("dataset", "normalize")
CALIBRATION_COLUMNS = [m + s for m in ("ece", "brier", "nll") for s in ("", "_ci_low", "_ci_high")]


def assert_metrics_csv_matches_0_1(path: Path, dataset: str | None = None) -> None:
    """``path`` holds 0.1's metrics.csv, text for text, plus the columns issue 10 added."""
    want = pd.read_csv(V1 / "metrics.csv", dtype=str, keep_default_na=False)
    got = pd.read_csv(path, dtype=str, keep_default_na=False)
    columns = list(want.columns)
    at = columns.index("magnitude") + 1
    after = columns.index("recall_ci_high") + 1
    assert list(got.columns) == [
        *columns[:at], *NEW_METRIC_KEYS, *columns[at:after], *CALIBRATION_COLUMNS,
        *columns[after:],
    ]  # fmt: skip
    assert set(got["normalize"]) == {"none"}
    assert got["dataset"].nunique() == 1
    if dataset is not None:
        assert set(got["dataset"]) == {dataset}
    pd.testing.assert_frame_equal(got[want.columns], want)


def _without_dataset(frame: pd.DataFrame) -> pd.DataFrame:
    """The joined view without the new ``dataset`` column (checked: right after sample_id)."""
    if "dataset" not in frame.columns:
        return frame
    cols = list(frame.columns)
    assert cols[cols.index("dataset") - 1] == "sample_id"
    assert frame["dataset"].nunique() == 1
    return frame.drop(columns="dataset")


@pytest.fixture(scope="module")
def v1_table() -> pd.DataFrame:
    return pd.read_parquet(V1 / PREDICTIONS_V1)


def _fixture_run(tmp: Path, out: Path, **options) -> None:
    """Run the fixture's command (same checkpoints, data and options) with the current runner."""
    sys.path.insert(0, str(FIXTURES))
    try:
        from make_run_v1 import RUN_KWARGS, make_inputs
    finally:
        sys.path.remove(str(FIXTURES))
    from shiftbench.runner import run

    ckpts, data = make_inputs(tmp)
    kwargs = dict(RUN_KWARGS)
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # as the fixture script
    try:
        run(ckpts, data, kwargs.pop("shifts"), out=out, **kwargs, **options)
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="module")
def rerun(tmp_path_factory) -> Path:
    """The fixture's run by the current runner."""
    tmp = tmp_path_factory.mktemp("rerun")
    _fixture_run(tmp, tmp / "run")
    return tmp / "run"


def test_v2_round_trips_to_the_wide_table_of_0_1(rerun, v1_table):
    assert read_manifest(rerun)["format"] == FORMAT_V2
    assert not (rerun / PREDICTIONS_V1).exists()
    pd.testing.assert_frame_equal(_without_dataset(read_predictions(rerun)), v1_table)


def test_metrics_csv_is_unchanged_from_0_1(rerun):
    got = rerun / "metrics.csv"
    assert_metrics_csv_matches_0_1(got, dataset=read_sample_datasets(rerun).names[0])


def test_v2_files_are_normalised_and_compact(rerun):
    ck = pq.read_table(rerun / CHECKPOINTS)
    assert ck["checkpoint"].to_pylist() == ["sd_seed0", "wd_seed1"]
    assert ck["method"].to_pylist() == ["sd", "wd"]
    assert ck["weight_decay"].to_pylist() == [None, 1e-4]
    samples = pq.read_table(rerun / SAMPLES)
    assert samples.column_names == [
        "sample_id", "path", "label", "dataset", "magnification", "source_index"
    ]  # fmt: skip
    assert samples.num_rows == 16
    f = pq.ParquetFile(checkpoint_file(rerun, "blur", 1))
    schema = f.schema_arrow
    assert (
        str(schema.field("checkpoint").type)
        == "dictionary<values=string, indices=int32, ordered=0>"
    )
    assert str(schema.field("sample_id").type) == "int32"
    assert str(schema.field("prob_OSCC").type) == "float"
    assert "method" not in schema.names and "path" not in schema.names
    assert f.metadata.num_row_groups == 20  # one per blur magnitude
    assert f.metadata.num_rows == 20 * 16


def test_selecting_shifts_checkpoints_and_columns(rerun, v1_table):
    got = read_predictions(
        rerun, columns=["sample_id", "prob_OSCC", "method", "magnification"],
        shifts=["cutout"], checkpoints=["wd_seed1"],
    )  # fmt: skip
    ref = v1_table[(v1_table["shift"] == "cutout") & (v1_table["checkpoint"] == "wd_seed1")]
    ref = ref[["sample_id", "prob_OSCC", "method", "magnification"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, ref)
    bare = read_predictions(rerun, with_meta=False)
    assert list(bare.columns) == [
        "checkpoint", "shift", "magnitude", "sample_id", "dataset", "label", "pred",
        "prob_Normal", "prob_OSCC",
    ]  # fmt: skip
    with pytest.raises(UserInputError, match="unknown shift 'sharpen'"):
        read_predictions(rerun, shifts=["sharpen"])
    with pytest.raises(UserInputError, match="column 'auroc' is not in the predictions"):
        read_predictions(rerun, columns=["auroc"])


def test_lazy_dataset_reads_only_the_selected_shift(rerun, v1_table):
    ds = read_predictions(rerun, shifts=["cutout"], lazy=True)
    assert isinstance(ds, pads.Dataset)
    assert all("shift=cutout" in f for f in ds.files)
    t = ds.to_table(columns=["checkpoint", "magnitude", "prob_OSCC"]).to_pandas()
    ref = v1_table[v1_table["shift"] == "cutout"]
    assert len(t) == len(ref)
    assert sorted(t["prob_OSCC"]) == sorted(ref["prob_OSCC"])


def test_format_1_is_read_as_0_1_wrote_it(v1_table):
    assert read_manifest(V1)["format"] == FORMAT_V1
    pd.testing.assert_frame_equal(read_predictions(V1), v1_table)
    got = read_predictions(V1, shifts=["blur"], columns=["checkpoint", "prob_OSCC"])
    ref = v1_table[v1_table["shift"] == "blur"][["checkpoint", "prob_OSCC"]]
    pd.testing.assert_frame_equal(got, ref.reset_index(drop=True))
    keys = open_predictions(V1).to_table().to_pandas()
    pd.testing.assert_frame_equal(
        keys[["checkpoint", "shift", "magnitude", "sample_id", "prob_OSCC"]],
        v1_table[["checkpoint", "shift", "magnitude", "sample_id", "prob_OSCC"]],
    )


def test_metrics_step_on_format_1_reproduces_its_metrics_csv(tmp_path):
    got = compute_run_metrics(V1, n_boot=20, seed=0)
    got.to_csv(tmp_path / "m.csv", index=False)
    # One set, named after the data (see NEW_METRIC_KEYS).
    assert_metrics_csv_matches_0_1(tmp_path / "m.csv", dataset=read_sample_datasets(V1).names[0])


def test_migrate_converts_format_1(tmp_path, v1_table):
    run_dir = tmp_path / "run"
    shutil.copytree(V1, run_dir)
    assert main(["migrate", str(run_dir)]) == 0
    assert read_manifest(run_dir)["format"] == FORMAT_V2
    assert read_manifest(run_dir)["migrated_from"] == FORMAT_V1
    assert not (run_dir / PREDICTIONS_V1).exists()
    pd.testing.assert_frame_equal(read_predictions(run_dir), v1_table)
    got = compute_run_metrics(run_dir, n_boot=20, seed=0)
    got.to_csv(tmp_path / "m.csv", index=False)
    assert_metrics_csv_matches_0_1(tmp_path / "m.csv")
    with pytest.raises(UserInputError, match="already in format"):
        migrate(run_dir)


def test_migrate_refuses_what_is_not_a_finished_format_1_run(tmp_path, capsys):
    assert main(["migrate", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    unfinished = tmp_path / "unfinished"
    shutil.copytree(V1, unfinished)
    (unfinished / PREDICTIONS_V1).unlink()
    with pytest.raises(DataError, match="did not finish"):
        migrate(unfinished)


def test_resume_of_a_format_1_run_continues_in_format_2(tmp_path, v1_table):
    """(The fixture's checkpoint files are not stored, so their SHA-256 differ and the cells are
    recomputed; the point is that the format-1 directory is accepted and rewritten.)"""
    run_dir = tmp_path / "run"
    shutil.copytree(V1, run_dir)
    parts = sorted(p.name for p in (run_dir / "parts").iterdir())
    (tmp_path / "inputs").mkdir()
    _fixture_run(tmp_path / "inputs", run_dir, resume=True)
    manifest = read_manifest(run_dir)
    assert manifest["format"] == FORMAT_V2
    assert manifest["invocations"][0]["command"][-1] == "(tests/fixtures/make_run_v1.py)"
    assert set(parts) < {p.name for p in (run_dir / "parts").iterdir()}
    assert not (run_dir / PREDICTIONS_V1).exists()
    pd.testing.assert_frame_equal(_without_dataset(read_predictions(run_dir)), v1_table)
    assert_metrics_csv_matches_0_1(run_dir / "metrics.csv")
