"""Reading the predictions of a run directory (formats 1 and 2) and migrating format 1.

:func:`read_predictions` joins the normalised format-2 tables back into the wide table of
shiftbench 0.1 (one row per checkpoint × shift × magnitude × sample, with the sample's path and
extra columns and the checkpoint's meta keys), or returns a lazy ``pyarrow.dataset.Dataset``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from shiftbench.errors import UserInputError
from shiftbench.run.rundir import (
    CHECKPOINT_COLUMNS,
    CHECKPOINTS,
    DATASET,
    FORMAT_V1,
    FORMAT_V2,
    MANIFEST,
    NORMALIZE,
    PREDICTIONS_DIR,
    PREDICTIONS_V1,
    SAMPLES,
    atomic_write,
    atomic_write_json,
    checkpoint_file,
    locked,
    open_predictions,
    prob_column,
    read_manifest,
    sample_extra_columns,
)

#: Columns of the wide table, in order, before the meta and extra columns.
WIDE_FRONT = ("checkpoint", "shift", "magnitude", "sample_id", "path", "label", "pred")


def read_predictions(
    run_dir: str | os.PathLike[str],
    columns: Sequence[str] | None = None,
    shifts: Sequence[str] | None = None,
    checkpoints: Sequence[str] | None = None,
    with_meta: bool = True,
    lazy: bool = False,
) -> Any:
    """The predictions of a run directory (format 2, or format 1 of shiftbench 0.1).

    Args:
        run_dir: the run directory.
        columns: columns to return (default: all); names as in the wide table.
        shifts: only these shifts (default: all); only their files are read.
        checkpoints: only these checkpoint names (default: all).
        with_meta: join the checkpoints' meta keys and the samples' ``path`` and extra columns
            (the wide table of 0.1); ``False``: keys, ``label``, ``pred`` and probabilities only.
        lazy: return a ``pyarrow.dataset.Dataset`` over the (filtered) predictions instead of
            reading them: nothing is loaded until you scan it (``to_batches``, ``to_table`` with
            ``columns``/``filter``), so it works on tables larger than memory. It holds the
            normalised columns (``checkpoint, shift, magnitude, sample_id, label, pred,
            prob_*``); join ``checkpoints.parquet``/``samples.parquet`` (small) yourself.
            ``columns`` and ``with_meta`` do not apply.

    Returns:
        A pandas DataFrame with the columns and dtypes of 0.1's ``predictions.parquet``
        (``checkpoint, shift, magnitude, sample_id, path, label, pred, prob_<class>...``, meta
        keys, extra data columns; runs with a ``dataset`` column in samples.parquet have
        ``dataset``, the sample's evaluation set, right after ``sample_id``), rows in run order (checkpoint, shift, magnitude in sweep
        order, sample id) — or the lazy dataset.

    Raises:
        DataError: not a finished run directory. UserInputError: unknown shift, checkpoint or
            column.
    """
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    all_shifts = [s["name"] for s in manifest["shifts"]]
    all_ckpts = [c["name"] for c in manifest["checkpoints"]]
    shifts_ = _subset(shifts, all_shifts, "shift")
    ckpts_ = _subset(checkpoints, all_ckpts, "checkpoint")
    if lazy:
        return _lazy(run_dir, manifest, shifts_, ckpts_)
    if manifest["format"] == FORMAT_V1:
        return _read_v1(run_dir, manifest, columns, shifts_, ckpts_, with_meta)
    table = _wide_v2(run_dir, manifest, columns, shifts_, ckpts_, with_meta)
    return table.to_pandas()


def _lazy(run_dir: Path, manifest: dict[str, Any], shifts: list[str], ckpts: list[str]) -> Any:
    """A dataset over only the selected files (format 2) or a filtered one (format 1)."""
    dataset = open_predictions(run_dir)
    if manifest["format"] == FORMAT_V1:
        expr = pads.field("shift").isin(shifts) & pads.field("checkpoint").isin(ckpts)
        return dataset.filter(expr)
    index = _checkpoint_index(run_dir)
    files = [str(checkpoint_file(run_dir, s, index[c])) for c in ckpts for s in shifts]
    return pads.dataset(
        files,
        format="parquet",
        schema=dataset.schema,
        partitioning=dataset.partitioning,
        partition_base_dir=str(run_dir / PREDICTIONS_DIR),
    )


def _checkpoint_index(run_dir: Path) -> dict[str, int]:
    t = pq.read_table(run_dir / CHECKPOINTS, columns=["checkpoint", "checkpoint_index"])
    return dict(zip(t["checkpoint"].to_pylist(), t["checkpoint_index"].to_pylist(), strict=True))


def _subset(given: Sequence[str] | None, have: list[str], what: str) -> list[str]:
    if given is None:
        return list(have)
    given = [given] if isinstance(given, str) else list(given)
    unknown = [g for g in given if g not in have]
    if unknown:
        raise UserInputError(f"unknown {what} {unknown[0]!r}; the run has: {', '.join(have)}")
    return [h for h in have if h in given]


def _check_columns(columns: Sequence[str] | None, available: list[str]) -> list[str]:
    if columns is None:
        return available
    columns = [columns] if isinstance(columns, str) else list(columns)
    unknown = [c for c in columns if c not in available]
    if unknown:
        raise UserInputError(
            f"column {unknown[0]!r} is not in the predictions; columns: {', '.join(available)}"
        )
    return columns


def _read_v1(
    run_dir: Path,
    manifest: dict[str, Any],
    columns: Sequence[str] | None,
    shifts: list[str],
    ckpts: list[str],
    with_meta: bool,
) -> pd.DataFrame:
    path = run_dir / PREDICTIONS_V1
    names = pq.read_schema(path).names
    if not with_meta:
        core = {*WIDE_FRONT, *(prob_column(c) for c in manifest["class_names"])} - {"path"}
        names = [n for n in names if n in core]
    wanted = _check_columns(columns, names)
    filters = [("shift", "in", shifts), ("checkpoint", "in", ckpts)]
    return pd.read_parquet(path, columns=wanted, filters=filters)


def _wide_v2(
    run_dir: Path,
    manifest: dict[str, Any],
    columns: Sequence[str] | None,
    shifts: list[str],
    ckpts: list[str],
    with_meta: bool,
) -> pa.Table:
    """The wide table (as 0.1 wrote it) of the selected shifts and checkpoints."""
    probs = [prob_column(c) for c in manifest["class_names"]]
    ck = pq.read_table(run_dir / CHECKPOINTS)
    # the meta keys (not the run's evaluation condition ``normalize``: see the manifest)
    meta_names = [c for c in ck.column_names[len(CHECKPOINT_COLUMNS) :] if c != NORMALIZE]
    meta_names = meta_names if with_meta else []
    sample_names = pq.read_schema(run_dir / SAMPLES).names
    extra_names = sample_extra_columns(sample_names) if with_meta else []
    front = [c for c in WIDE_FRONT if with_meta or c != "path"]
    if DATASET in sample_names:  # the sample's evaluation set, right after its id
        front.insert(front.index("sample_id") + 1, DATASET)
    available = [*front, *probs, *meta_names, *extra_names]
    wanted = _check_columns(columns, available)
    sample_cols = [c for c in wanted if c in ("path", DATASET) or c in extra_names]
    samples = pq.read_table(run_dir / SAMPLES, columns=["sample_id", *sample_cols])
    sample_pos = samples["sample_id"].to_numpy()
    order = np.argsort(sample_pos, kind="stable")
    index = dict(zip(ck["checkpoint"].to_pylist(), ck["checkpoint_index"].to_pylist(), strict=True))
    file_cols = [c for c in ("magnitude", "sample_id", "label", "pred", *probs) if c in wanted]
    file_cols = list(dict.fromkeys(["sample_id", *file_cols]))
    tables = []
    for name in ckpts:
        row = ck["checkpoint"].to_pylist().index(name)
        for shift in shifts:
            t = pq.read_table(checkpoint_file(run_dir, shift, index[name]), columns=file_cols)
            n = t.num_rows
            ids = t["sample_id"].to_numpy()
            cols: dict[str, pa.Array] = {
                "checkpoint": pa.array([name] * n, pa.string()),
                "shift": pa.array([shift] * n, pa.string()),
            }
            for c in ("magnitude", "sample_id", "label", "pred", *probs):
                if c in wanted:
                    cols[c] = _v1_column(c, t[c])
            if sample_cols:
                pos = pa.array(order[np.searchsorted(sample_pos, ids, sorter=order)])
                for c in sample_cols:
                    cols[c] = samples[c].take(pos)
            for c in meta_names:
                if c in wanted:
                    cols[c] = pc.take(ck[c], pa.array(np.full(n, row, np.int64)))
            tables.append(pa.table({c: cols[c] for c in wanted}))
    if not tables:
        return pa.table({c: pa.array([]) for c in wanted})
    return pa.concat_tables(tables)


def _v1_column(name: str, column: Any) -> Any:
    # 0.1 stored ids, labels and predictions as int64; the pandas view keeps those dtypes.
    if name in ("sample_id", "label", "pred"):
        return column.cast(pa.int64())
    return column


# -- migration --------------------------------------------------------------------------------


def migrate(run_dir: str | os.PathLike[str]) -> Path:
    """Convert a format-1 run directory (0.1) to format 2 in place.

    Writes checkpoints.parquet, samples.parquet and predictions/ from ``predictions.parquet``,
    then the manifest (format 2, ``migrated_from`` recorded), then deletes
    ``predictions.parquet``. Interrupted, it leaves a valid format-1 directory. metrics.csv and
    parts/ are kept as they are.

    Returns:
        The run directory.

    Raises:
        DataError: not a run directory, or not a finished one. UserInputError: already format 2.
    """
    from shiftbench.run.tables import _write_predictions_file, meta_type

    run_dir = Path(run_dir)
    with locked(run_dir):
        manifest = read_manifest(run_dir)
        if manifest["format"] == FORMAT_V2:
            raise UserInputError(f"{run_dir} is already in format {FORMAT_V2}; nothing to do")
        source = open_predictions(run_dir)  # checks predictions.parquet exists
        path = run_dir / PREDICTIONS_V1
        class_names = [str(c) for c in manifest["class_names"]]
        probs = [prob_column(c) for c in class_names]
        schema = pq.read_schema(path)
        ckpt_entries = manifest["checkpoints"]
        meta_keys = list(dict.fromkeys(k for c in ckpt_entries for k in (c.get("meta") or {})))
        core = {*WIDE_FRONT, *probs, *meta_keys}
        extras = [n for n in schema.names if n not in core]
        ck_cols: dict[str, Any] = {
            "checkpoint": pa.array([c["name"] for c in ckpt_entries], pa.string()),
            "checkpoint_index": pa.array(range(len(ckpt_entries)), pa.int32()),
        }
        for k in ("sha256", "path", "format", "arch"):
            ck_cols[f"checkpoint_{k}"] = pa.array([c.get(k) for c in ckpt_entries], pa.string())
        for k in ("num_classes", "input_size"):
            values = [c.get(k) for c in ckpt_entries]
            values = [v[0] if isinstance(v, list) else v for v in values]
            ck_cols[f"checkpoint_{k}"] = pa.array(values, pa.int32())
        for k in meta_keys:
            values = [(c.get("meta") or {}).get(k) for c in ckpt_entries]
            typ = schema.field(k).type if k in schema.names else meta_type(values)
            ck_cols[k] = pa.array(values, typ)
        atomic_write(run_dir / CHECKPOINTS, lambda p: pq.write_table(pa.table(ck_cols), p))
        samples = (
            pq.read_table(path, columns=["sample_id", "path", "label", *extras])
            .to_pandas()
            .drop_duplicates("sample_id")
            .sort_values("sample_id", kind="stable")
        )
        st = pa.Table.from_pandas(
            samples, preserve_index=False, schema=_samples_schema(schema, extras)
        )
        st = st.replace_schema_metadata(None)
        atomic_write(run_dir / SAMPLES, lambda p: pq.write_table(st, p))
        for ci, c in enumerate(ckpt_entries):
            for s in manifest["shifts"]:
                expr = (pads.field("checkpoint") == c["name"]) & (pads.field("shift") == s["name"])
                block = source.to_table(filter=expr).to_pandas()
                rank = {m: i for i, m in enumerate(s["magnitudes"])}
                block = block.rename(columns={p: f"p{i}" for i, p in enumerate(probs)})
                block["_m"] = block["magnitude"].map(rank)
                block = block.sort_values(["_m", "sample_id"], kind="stable")
                out = checkpoint_file(run_dir, s["name"], ci)
                out.parent.mkdir(parents=True, exist_ok=True)
                _write_predictions_file(out, block.reset_index(drop=True), c["name"], class_names)
        manifest["format"] = FORMAT_V2
        manifest["migrated_from"] = FORMAT_V1
        atomic_write_json(run_dir / MANIFEST, manifest)
        path.unlink()
    return run_dir


def _samples_schema(v1: pa.Schema, extras: list[str]) -> pa.Schema:
    return pa.schema(
        [
            pa.field("sample_id", pa.int32()),
            pa.field("path", pa.string()),
            pa.field("label", pa.int32()),
            *[v1.field(e) for e in extras],
        ]
    )
