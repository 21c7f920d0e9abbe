"""Assemble the format-2 tables from the part files, one checkpoint at a time.

Writes ``checkpoints.parquet``, ``samples.parquet`` and one predictions file per shift ×
checkpoint (see :mod:`shiftbench.run.rundir`). At most one checkpoint's rows are in memory at a
time (its part rows, then one shift's block), never the whole table.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from shiftbench.data import ImageDataset
from shiftbench.errors import RunError
from shiftbench.run.models import Model
from shiftbench.run.parts import PartIndex
from shiftbench.run.plan import CLEAN, Cell, ShiftPlan
from shiftbench.run.rundir import (
    CHECKPOINT_TYPES,
    CHECKPOINTS,
    DATASET,
    NORMALIZE,
    PREDICTIONS_DIR,
    PREDICTIONS_V1,
    SAMPLE_TYPES,
    SAMPLES,
    atomic_write,
    checkpoint_file,
    prediction_schema,
    prob_column,
)


def write_tables(
    out_dir: Path,
    index: PartIndex,
    models: list[Model],
    plans: list[ShiftPlan],
    dataset: ImageDataset,
    label_map: np.ndarray,
    class_names: list[str],
    cells: list[Cell],
    set_names: list[str] | None = None,
    normalize: str = "none",
) -> None:
    """Write checkpoints.parquet, samples.parquet and predictions/ of ``out_dir`` from the parts.

    ``set_names``: the evaluation set of every sample (``dataset`` column of samples.parquet).
    ``normalize``: the run's stain normalisation (``"none"``, ``"macenko"``), recorded per
    checkpoint.

    Files of an earlier invocation that this run no longer has (another checkpoint list) and a
    format-1 ``predictions.parquet`` are removed afterwards.
    """
    if not index.files:  # pragma: no cover - every run writes at least one part
        raise RunError("internal error: no results in parts/")
    _write_parquet(out_dir / CHECKPOINTS, checkpoints_table(models, normalize))
    _write_parquet(out_dir / SAMPLES, samples_table(dataset, label_map, set_names))
    source = pads.dataset([str(f) for f in index.files], format="parquet")
    written: set[Path] = set()
    for ci, m in enumerate(models):
        raw = _checkpoint_rows(source, m.ckpt.sha256, cells, len(class_names))
        for plan in plans:
            path = checkpoint_file(out_dir, plan.name, ci)
            path.parent.mkdir(parents=True, exist_ok=True)
            block = _shift_block(raw, plan)
            _write_predictions_file(path, block, m.name, class_names)
            written.add(path)
    for stale in (out_dir / PREDICTIONS_DIR).glob("*/*.parquet"):
        if stale not in written:
            stale.unlink()
    for folder in (out_dir / PREDICTIONS_DIR).iterdir():
        if folder.is_dir():
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty
    with contextlib.suppress(FileNotFoundError):
        (out_dir / PREDICTIONS_V1).unlink()


def checkpoints_table(models: list[Model], normalize: str = "none") -> pa.Table:
    """One row per checkpoint: name, index, SHA-256, file, format, arch, sizes, the run's stain
    normalisation (``normalize``: an evaluation condition, so reports group ``sd+macenko``
    apart from ``sd``), then meta keys."""
    meta_keys = list(dict.fromkeys(k for m in models for k in m.ckpt.meta))
    cols: dict[str, pa.Array] = {
        "checkpoint": pa.array([m.name for m in models], CHECKPOINT_TYPES["checkpoint"]),
        "checkpoint_index": pa.array(range(len(models)), CHECKPOINT_TYPES["checkpoint_index"]),
        "checkpoint_sha256": pa.array([m.ckpt.sha256 for m in models], pa.string()),
        "checkpoint_path": pa.array([str(m.ckpt.path) for m in models], pa.string()),
        "checkpoint_format": pa.array([m.ckpt.format for m in models], pa.string()),
        "checkpoint_arch": pa.array([m.ckpt.arch for m in models], pa.string()),
        "checkpoint_num_classes": pa.array([m.ckpt.num_classes for m in models], pa.int32()),
        "checkpoint_input_size": pa.array([_size(m.ckpt.input_size) for m in models], pa.int32()),
        NORMALIZE: pa.array([normalize] * len(models), pa.string()),
    }
    for k in meta_keys:
        values = [m.ckpt.meta.get(k) for m in models]
        cols[k] = pa.array(values, meta_type(values))
    return pa.table(cols)


def _size(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return int(value[0])
    return int(value)


def meta_type(values: list[Any]) -> pa.DataType:
    """Arrow type of one meta key over the checkpoints (as 0.1: inferred; mixed → string)."""
    present = [v for v in values if v is not None]
    if not present:
        return pa.string()
    try:
        return pa.array(present).type
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.string()


def samples_table(
    dataset: ImageDataset, label_map: np.ndarray, set_names: list[str] | None = None
) -> pa.Table:
    """One row per sample: id, path, label (the model's class index), evaluation set name
    (``dataset``, when ``set_names`` gives one per sample) and the extra columns."""
    n = len(dataset)
    labels = np.asarray(label_map)[np.asarray(dataset.labels, dtype=np.int64)] if n else []
    columns = {
        "sample_id": pa.array(np.arange(n, dtype=np.int32), SAMPLE_TYPES["sample_id"]),
        "path": pa.array([str(p) for p in dataset.paths], SAMPLE_TYPES["path"]),
        "label": pa.array(np.asarray(labels, dtype=np.int32), SAMPLE_TYPES["label"]),
    }
    if set_names is not None:
        columns[DATASET] = pa.array(set_names, SAMPLE_TYPES[DATASET])
    table = pa.table(columns)
    extras = dataset.extras
    if len(extras.columns):
        ex = pa.Table.from_pandas(extras.reset_index(drop=True), preserve_index=False)
        for name in ex.column_names:
            table = table.append_column(ex.schema.field(name), ex.column(name))
    return table.replace_schema_metadata(None)


def _write_parquet(path: Path, table: pa.Table) -> None:
    atomic_write(path, lambda p: pq.write_table(table, p))


def _checkpoint_rows(source: Any, sha: str, cells: list[Cell], num_classes: int) -> pd.DataFrame:
    """The part rows of one checkpoint, restricted to the run's cells, without duplicates."""
    columns = ["shift", "magnitude", "sample_id", "label", "pred"]
    columns += [f"p{c}" for c in range(num_classes)]
    raw = source.to_table(filter=pc.field("ckpt") == sha, columns=columns).to_pandas()
    wanted = [(c[1], c[2]) for c in cells if c[0] == sha]
    keep = pd.MultiIndex.from_arrays([raw["shift"], raw["magnitude"]]).isin(wanted)
    return raw[keep].drop_duplicates(subset=["shift", "magnitude", "sample_id"])


def _shift_block(raw: pd.DataFrame, plan: ShiftPlan) -> pd.DataFrame:
    """One shift's rows (the clean rows under the identity magnitude), in sweep order."""
    parts = []
    if plan.has_identity:
        parts.append(raw[raw["shift"] == CLEAN].assign(magnitude=plan.shift.identity))
    parts.append(raw[raw["shift"] == plan.key])
    block = pd.concat(parts, ignore_index=True)
    rank = {mg: i for i, mg in enumerate(plan.magnitudes)}
    block = block.assign(_m=block["magnitude"].map(rank))
    return block.sort_values(["_m", "sample_id"], kind="stable").reset_index(drop=True)


def _write_predictions_file(
    path: Path, block: pd.DataFrame, name: str, class_names: list[str]
) -> None:
    """One shift × checkpoint file, one row group per magnitude."""
    schema = prediction_schema(class_names)
    mags = block["_m"].to_numpy()
    bounds = np.flatnonzero(np.diff(mags)) + 1
    starts = [0, *bounds.tolist()]
    stops = [*bounds.tolist(), len(block)]

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema) as writer:
            if not len(block):
                writer.write_table(schema.empty_table())
            for a, b in zip(starts, stops, strict=True):
                if b > a:
                    writer.write_table(_rows(block.iloc[a:b], name, class_names, schema))

    atomic_write(path, write)


def _rows(df: pd.DataFrame, name: str, class_names: list[str], schema: pa.Schema) -> pa.Table:
    n = len(df)
    cols: dict[str, pa.Array] = {
        "checkpoint": pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(n, np.int32)), pa.array([name], pa.string())
        ),
        "magnitude": pa.array(df["magnitude"].to_numpy(np.float64)),
        "sample_id": pa.array(df["sample_id"].to_numpy(np.int32)),
        "label": pa.array(df["label"].to_numpy(np.int32)),
        "pred": pa.array(df["pred"].to_numpy(np.int32)),
    }
    for c, cname in enumerate(class_names):
        cols[prob_column(cname)] = pa.array(df[f"p{c}"].to_numpy(np.float32))
    return pa.table(cols, schema=schema)
