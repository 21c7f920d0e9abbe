"""The runner's metrics step (shared resamples, all checkpoints of a cell in one pass) against
one :func:`shiftbench.metrics.cell_metrics` call per checkpoint × cell (the 0.1 definition).

Since issue 10, ``cell_metrics`` is ``same_size_cell_metrics`` with one cell, so these tests check
the step's cells, grouping and shared weights; the values themselves (ece, brier, nll included)
are checked against slow direct loops in tests/test_metrics.py and
tests/test_metrics_calibration.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from _synthetic import synthetic_predictions
from _synthetic_v2 import write_run_v2

from shiftbench.bootstrap import ResampleWeights
from shiftbench.metrics import cell_metrics, same_size_cell_metrics
from shiftbench.run import rundir
from shiftbench.run.metrics_step import compute_run_metrics

SHIFTS = {"blur": (0.0, 1.0, 2.0), "noise": (0.0, 0.5)}
N_BOOT, SEED = 60, 3


def _run_dir(tmp_path, class_names, n_samples=45):
    table = synthetic_predictions(
        n_samples=n_samples,
        seeds=(0, 1),
        shifts=SHIFTS,
        class_names=class_names,
        sample_id_offset=0,  # samples.parquet rows are indexed by sample id
    )
    run_dir = write_run_v2(tmp_path / "run", table)
    rng = np.random.default_rng(7)  # groups of unequal sizes, and a missing value
    site = rng.choice(np.array(["b", "a", None], dtype=object), size=n_samples, p=[0.5, 0.3, 0.2])
    samples = pd.read_parquet(run_dir / rundir.SAMPLES).assign(site=site)
    samples.to_parquet(run_dir / rundir.SAMPLES, index=False)
    manifest = json.loads((run_dir / rundir.MANIFEST).read_text())
    checkpoints = table.drop_duplicates("checkpoint")
    manifest["checkpoints"] = [
        {"name": r.checkpoint, "meta": {"method": r.method, "seed": int(r.seed)}}
        for r in checkpoints.itertuples()
    ]
    (run_dir / rundir.MANIFEST).write_text(json.dumps(manifest))
    return run_dir, table, samples.set_index("sample_id")["site"]


def _reference(table, sites, group_by):
    """One cell_metrics call per checkpoint × shift × magnitude (× site), written directly."""
    probs = [c for c in table.columns if c.startswith("prob_")]
    first_shift = next(iter(SHIFTS))
    rows = []
    for ck, g_ck in table.groupby("checkpoint", sort=False):
        for shift, mags in SHIFTS.items():
            for mag in mags:
                # the clean cell is the first shift's (identity rows repeat under every shift)
                src = first_shift if mag == mags[0] else shift
                cell = g_ck[(g_ck["shift"] == src) & (g_ck["magnitude"] == mag)]
                cell = cell.sort_values("sample_id")
                site = sites.loc[cell["sample_id"]].to_numpy()
                values = ["a", "b", None] if group_by else [None]
                for value in values:
                    if not group_by:
                        part = cell
                    elif value is None:
                        part = cell[pd.isna(site)]
                    else:
                        part = cell[site == value]
                    m = cell_metrics(
                        part["label"].to_numpy(), part[probs].to_numpy(), n_boot=N_BOOT, seed=SEED
                    )
                    key = {"checkpoint": ck, "shift": shift, "magnitude": mag}
                    if group_by:
                        key["site"] = value
                    rows.append({**key, **m})
    return rows


def _assert_same(got: pd.DataFrame, expected: list[dict]) -> None:
    assert len(got) == len(expected)
    for row, exp in zip(got.to_dict("records"), expected, strict=True):
        for k, v in exp.items():
            if isinstance(v, float) and math.isnan(v):
                assert pd.isna(row[k]), (k, row)
            elif v is None:
                assert pd.isna(row[k]), (k, row)
            else:
                assert row[k] == v, (k, row[k], v, exp)  # bit for bit, not approximately


@pytest.mark.parametrize("class_names", [("Normal", "OSCC"), ("A", "B", "C")])
def test_metrics_step_equals_one_cell_metrics_call_per_cell(tmp_path, class_names):
    run_dir, table, sites = _run_dir(tmp_path, class_names)
    got = compute_run_metrics(run_dir, n_boot=N_BOOT, seed=SEED)
    _assert_same(got, _reference(table, sites, group_by=None))
    assert list(got.columns[-2:]) == ["method", "seed"]


def test_metrics_step_with_group_by_equals_one_call_per_group(tmp_path):
    run_dir, table, sites = _run_dir(tmp_path, ("Normal", "OSCC"))
    got = compute_run_metrics(run_dir, n_boot=N_BOOT, seed=SEED, group_by="site")
    expected = _reference(table, sites, group_by="site")
    assert len({r["n"] for r in expected}) == 3  # groups of different sizes: several weight sets
    _assert_same(got, expected)


def test_same_size_cell_metrics_with_cached_weights_equals_cell_metrics():
    rng = np.random.default_rng(0)
    n = 80
    cells = []
    for k in range(4):
        y = rng.integers(0, 3 if k == 3 else 2, n)
        p = rng.random((n, 3 if k == 3 else 2))
        cells.append((y, np.round(p / p.sum(axis=1, keepdims=True), 1)))  # with ties
    weights = ResampleWeights(n, 200, 5, cache=True)
    for _ in range(2):  # reused weights give the same numbers again
        got = same_size_cell_metrics(cells, weights, n_boot=200, seed=5)
        for (y, p), g in zip(cells, got, strict=True):
            ref = cell_metrics(y, p, n_boot=200, seed=5)
            assert g.keys() == ref.keys()
            np.testing.assert_array_equal(list(g.values()), list(ref.values()))


def test_same_size_cell_metrics_refuses_mismatched_inputs():
    y, p = np.array([0, 1, 1]), np.array([[0.2, 0.8], [0.6, 0.4], [0.1, 0.9]])
    with pytest.raises(ValueError, match="same number"):
        same_size_cell_metrics([(y, p), (y[:2], p[:2])], n_boot=5)
    with pytest.raises(ValueError, match="ResampleWeights"):
        same_size_cell_metrics([(y, p)], ResampleWeights(3, 5, 1), n_boot=5, seed=0)
