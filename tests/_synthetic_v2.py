"""Write a synthetic predictions table (tests/_synthetic.py) as a format-2 run directory.

An independent little writer of the layout of docs/reference/run-directory.md (it does not use
the runner): ``manifest.json`` (format, class names, shifts with identity = first magnitude of
each sweep, units "magnitude"), ``checkpoints.parquet``, ``samples.parquet`` and
``predictions/shift=<name>/part-c<index>.parquet`` with one row group per magnitude.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shiftbench.run import rundir

_ROW = ("checkpoint", "shift", "magnitude", "sample_id", "path", "label", "pred", "dataset")


def shift_records(table: pd.DataFrame, units: str = "magnitude") -> list[dict]:
    """Manifest shift records: magnitudes in sweep (first-seen) order, identity = the first."""
    out = []
    for shift, g in table.groupby("shift", sort=False):
        mags = [float(m) for m in pd.unique(g["magnitude"])]
        out.append(
            {
                "name": str(shift),
                "params": {},
                "magnitudes": mags,
                "identity": mags[0],
                "units": units,
                "stochastic": False,
            }
        )
    return out


def declare_shifts(run_dir: Path, table: pd.DataFrame) -> Path:
    """Add the ``shifts`` records to the manifest of a format-1 run directory (as 0.1 wrote)."""
    path = Path(run_dir) / rundir.MANIFEST
    manifest = json.loads(path.read_text())
    manifest["shifts"] = shift_records(table)
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return Path(run_dir)


def write_run_v2(
    run_dir: str | Path, table: pd.DataFrame, class_names: Sequence[str] | None = None
) -> Path:
    """Write ``table`` (the wide 0.1 schema) as a format-2 run directory; returns it.

    A ``dataset`` column (the evaluation set of each sample, sets in contiguous sample-id
    ranges) is written to samples.parquet, as ``run --data NAME=PATH …`` does.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    probs = [c for c in table.columns if c.startswith(rundir.PROB_PREFIX)]
    names = list(class_names or [c[len(rundir.PROB_PREFIX) :] for c in probs])
    meta = [c for c in table.columns if c not in (*_ROW, *probs)]
    cks = table.drop_duplicates("checkpoint")[["checkpoint", *meta]].reset_index(drop=True)
    index = {ck: i for i, ck in enumerate(cks["checkpoint"])}
    values = [  # the fixed columns, in rundir.CHECKPOINT_COLUMNS order
        cks["checkpoint"].astype(str),
        pd.Series(range(len(cks)), dtype="int32"),
        "0" * 64,
        cks["checkpoint"].astype(str) + ".pt",
        "shiftbench/1",
        "synthetic",
        pd.Series([len(names)] * len(cks), dtype="int32"),
        pd.Series([224] * len(cks), dtype="int32"),
    ]
    fixed = pd.DataFrame(dict(zip(rundir.CHECKPOINT_COLUMNS, values, strict=True)))
    pd.concat([fixed, cks[meta]], axis=1).to_parquet(run_dir / rundir.CHECKPOINTS, index=False)
    # A ``dataset`` column of the table (several evaluation sets) goes to samples.parquet.
    fixed_samples = ["sample_id", "path", "label", *(["dataset"] if "dataset" in table else [])]
    samples = table.drop_duplicates("sample_id")[fixed_samples]
    samples = samples.sort_values("sample_id").astype({"sample_id": "int32", "label": "int32"})
    samples.to_parquet(run_dir / rundir.SAMPLES, index=False)
    schema = rundir.prediction_schema(names)
    for (shift, ck), g in table.groupby(["shift", "checkpoint"], sort=False):
        path = rundir.checkpoint_file(run_dir, str(shift), index[ck])
        path.parent.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(path, schema) as writer:
            for _, cell in g.groupby("magnitude", sort=False):
                cell = cell.sort_values("sample_id")
                columns = {
                    "checkpoint": pa.array(cell["checkpoint"].astype(str)).dictionary_encode(),
                    "magnitude": pa.array(cell["magnitude"], pa.float64()),
                    "sample_id": pa.array(cell["sample_id"], pa.int32()),
                    "label": pa.array(cell["label"], pa.int32()),
                    "pred": pa.array(cell["pred"], pa.int32()),
                    **{p: pa.array(cell[p], pa.float32()) for p in probs},
                }
                columns["checkpoint"] = columns["checkpoint"].cast(schema.field("checkpoint").type)
                writer.write_table(pa.table(columns, schema=schema))
    manifest = {
        "format": rundir.FORMAT_V2,
        "command": "tests/_synthetic_v2.py",
        "class_names": names,
        "shifts": shift_records(table),
    }
    (run_dir / rundir.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return run_dir
