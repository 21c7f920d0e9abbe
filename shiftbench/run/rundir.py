"""The run directory: file names, table schemas, reserved names, manifest, lock, atomic writes.

This module is the one place that says what a run directory holds (format 2,
``shiftbench-run/2``; see docs/reference/run-directory.md)::

    RUN/
      manifest.json        format, config, versions, checkpoints, data, shifts (name, params,
                           magnitudes, identity, units, stochastic), seed, n_boot, invocations
      checkpoints.parquet  one row per checkpoint: checkpoint (name), checkpoint_index int32,
                           checkpoint_sha256, checkpoint_path, checkpoint_format,
                           checkpoint_arch, checkpoint_num_classes int32,
                           checkpoint_input_size int32, then one column per meta key (method,
                           seed, arch, ...). The fixed columns carry the ``checkpoint_`` prefix
                           so that meta keys such as ``arch`` (written by shiftbench train) keep
                           their names, as in the 0.1 wide table.
      samples.parquet      one row per sample: sample_id int32, path, label int32, dataset
                           (the evaluation set's name), then the extra columns of a CSV
                           manifest (magnification, ...)
      predictions/shift=<name>/part-c<checkpoint_index:04d>.parquet
                           hive-partitioned by shift (``<name>`` URI-encoded); columns:
                           checkpoint dictionary<int32, string>, magnitude float64,
                           sample_id int32, label int32, pred int32, prob_<class> float32;
                           rows sorted by magnitude (in sweep order) then sample_id; one row
                           group per magnitude
      metrics.csv          one row per checkpoint × shift × magnitude × dataset (× group)
      parts/               raw per-batch results, the source of truth for --resume

The identity magnitude of a shift (its *clean* cell) is evaluated once per checkpoint and stored
under every shift that sweeps it, so every (shift, magnitude) is a complete cell.

Format 1 (``shiftbench-run/1``, shiftbench 0.1) had one wide ``predictions.parquet`` instead of
the three tables; :func:`open_predictions` and :func:`shiftbench.read_predictions` read it too,
and ``shiftbench migrate RUN_DIR`` converts it.

Everything here is light (no torch): readers such as the report import it freely.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa

from shiftbench.errors import DataError, RunError, UserInputError

__all__ = [
    "CHECKPOINTS",
    "CHECKPOINT_COLUMNS",
    "DATASET",
    "FORMAT_V1",
    "FORMAT_V2",
    "KEY_COLUMNS",
    "LOCK",
    "MANIFEST",
    "METRICS",
    "METRIC_NAMES",
    "NORMALIZE",
    "PARTS_DIR",
    "PREDICTIONS_DIR",
    "PREDICTIONS_V1",
    "PROB_PREFIX",
    "RESERVED",
    "SAMPLES",
    "SAMPLE_COLUMNS",
    "SampleDatasets",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_reserved",
    "checkpoint_file",
    "dataset_name",
    "is_reserved",
    "locked",
    "open_predictions",
    "prediction_schema",
    "prob_column",
    "read_format",
    "read_manifest",
    "read_sample_datasets",
    "sample_extra_columns",
    "shift_dir",
]

# -- format versions and file names -----------------------------------------------------------

FORMAT_V1 = "shiftbench-run/1"
FORMAT_V2 = "shiftbench-run/2"
FORMATS = (FORMAT_V1, FORMAT_V2)

MANIFEST = "manifest.json"
CHECKPOINTS = "checkpoints.parquet"
SAMPLES = "samples.parquet"
PREDICTIONS_DIR = "predictions"
PREDICTIONS_V1 = "predictions.parquet"  # format 1 only
METRICS = "metrics.csv"
PARTS_DIR = "parts"
LOCK = ".shiftbench.lock"

# -- columns and dtypes -----------------------------------------------------------------------

#: Columns that identify a prediction row (with the partition column ``shift``).
KEY_COLUMNS = ("checkpoint", "shift", "magnitude", "sample_id")
#: Fixed columns of checkpoints.parquet (meta keys follow).
CHECKPOINT_TYPES = {
    "checkpoint": pa.string(),
    "checkpoint_index": pa.int32(),
    "checkpoint_sha256": pa.string(),
    "checkpoint_path": pa.string(),
    "checkpoint_format": pa.string(),
    "checkpoint_arch": pa.string(),
    "checkpoint_num_classes": pa.int32(),
    "checkpoint_input_size": pa.int32(),
}
CHECKPOINT_COLUMNS = tuple(CHECKPOINT_TYPES)
#: Fixed columns of samples.parquet; then ``dataset`` (runs since several evaluation sets; absent
#: in earlier ones), then the extra data columns. Readers take the extras as the names minus
#: these and ``dataset`` (see :func:`sample_extra_columns`), never by position.
SAMPLE_COLUMNS = ("sample_id", "path", "label")
SAMPLE_TYPES = {
    "sample_id": pa.int32(),
    "path": pa.string(),
    "label": pa.int32(),
    "dataset": pa.string(),
}
PROB_PREFIX = "prob_"
#: Column of samples.parquet and metrics.csv naming the evaluation set of a sample (``run
#: --data NAME=PATH``); the sets occupy contiguous sample-id ranges in the order given.
DATASET = "dataset"
#: Column of checkpoints.parquet and metrics.csv naming the stain normalisation applied before
#: the model (``"none"`` or ``"macenko"``): an evaluation condition (``sd`` vs ``sd+macenko``).
NORMALIZE = "normalize"
#: Metric columns of metrics.csv (each also with ``_ci_low`` and ``_ci_high``); mirrors
#: shiftbench.metrics.METRICS (a test checks they agree; not imported: that module pulls sklearn).
METRIC_NAMES = ("accuracy", "balanced_accuracy", "auroc", "recall", "ece", "brier", "nll")
CI_SUFFIXES = ("_ci_low", "_ci_high")

#: Names a checkpoint meta key or a data column may not take: table columns of the run
#: directory, metric columns of metrics.csv, and the columns the reports add.
RESERVED = frozenset(
    {
        *KEY_COLUMNS,
        *CHECKPOINT_COLUMNS,
        *SAMPLE_COLUMNS,
        "pred",
        "n",
        "group",
        "run",
        DATASET,
        NORMALIZE,
        *METRIC_NAMES,
        *(m + s for m in METRIC_NAMES for s in CI_SUFFIXES),
        # report columns (leaderboard, curves, differences)
        "rank",
        "metric",
        "clean",
        "clean_mean",
        "sweep_mean",
        "overall_sweep_mean",
        "worst",
        "drop",
        "n_seeds",
        "band_low",
        "band_high",
        "diff",
        "diff_p",
        "diff_ci_low",
        "diff_ci_high",
        "clean_diff",
        "clean_diff_p",
        "clean_diff_ci_low",
        "clean_diff_ci_high",
        "delong_diff",
        "delong_z",
        "delong_p",
        "delong_ci_low",
        "delong_ci_high",
        "fpr",
        "tpr",
        "threshold",
    }
)


def prob_column(class_name: str) -> str:
    """Column of the probability of class ``class_name``: ``prob_<class_name>``."""
    return f"{PROB_PREFIX}{class_name}"


def is_reserved(name: str) -> bool:
    """True if ``name`` is a run-directory or report column (or starts with ``prob_``/``_``)."""
    return name in RESERVED or name.startswith(PROB_PREFIX) or name.startswith("_")


def check_reserved(
    names: Iterable[Any], where: str, error: type[Exception] = UserInputError
) -> None:
    """Raise ``error`` (one line) if one of ``names`` is reserved.

    Args:
        names: meta keys or column names to check.
        where: what they are, for the message (e.g. ``"checkpoint meta"``, ``"CSV manifest x"``).
        error: exception class (``CheckpointError`` for meta, ``DataError`` for data columns).
    """
    for name in names:
        if isinstance(name, str) and is_reserved(name):
            raise error(
                f"{where}: {name!r} is a reserved name (a column of the run directory, a metric "
                "or a report column; see docs/reference/run-directory.md); rename it"
            )


def prediction_schema(class_names: list[str]) -> pa.Schema:
    """Schema of one predictions file (``shift`` is the partition column, not stored inside)."""
    return pa.schema(
        [
            pa.field("checkpoint", pa.dictionary(pa.int32(), pa.string())),
            pa.field("magnitude", pa.float64()),
            pa.field("sample_id", pa.int32()),
            pa.field("label", pa.int32()),
            pa.field("pred", pa.int32()),
            *[pa.field(prob_column(c), pa.float32()) for c in class_names],
        ]
    )


def shift_dir(run_dir: str | os.PathLike[str], shift: str) -> Path:
    """``RUN/predictions/shift=<name>`` (name URI-encoded, as pyarrow's hive partitioning reads)."""
    return Path(run_dir) / PREDICTIONS_DIR / f"shift={quote(shift, safe='')}"


def checkpoint_file(run_dir: str | os.PathLike[str], shift: str, checkpoint_index: int) -> Path:
    """The predictions file of one shift and one checkpoint."""
    return shift_dir(run_dir, shift) / f"part-c{checkpoint_index:04d}.parquet"


# -- manifest ---------------------------------------------------------------------------------


def read_manifest(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a run directory (format 1 or 2).

    Raises:
        DataError: no manifest, unreadable JSON, or a format this version does not know.
    """
    path = Path(run_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{run_dir} is not a shiftbench run directory (no {MANIFEST})") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path} is unreadable: {e}") from None
    fmt = manifest.get("format") if isinstance(manifest, dict) else None
    if fmt not in FORMATS:
        raise DataError(
            f"{path} has format {fmt!r}; this shiftbench reads {', '.join(FORMATS)} "
            "(a newer run directory needs a newer shiftbench)"
        )
    return manifest


def read_format(run_dir: str | os.PathLike[str]) -> str:
    """``FORMAT_V1`` or ``FORMAT_V2`` (from the manifest)."""
    return str(read_manifest(run_dir)["format"])


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (numpy scalars, paths and sets converted), atomically."""
    text = json.dumps(obj, indent=2, default=_json_default, allow_nan=False)
    atomic_write_text(path, text + "\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, set | tuple):
        return list(o)
    return str(o)


# -- predictions ------------------------------------------------------------------------------


def open_predictions(run_dir: str | os.PathLike[str]) -> Any:
    """A lazy ``pyarrow.dataset.Dataset`` over the predictions of a run directory.

    Format 2: the hive-partitioned ``predictions/`` folder (columns ``checkpoint``, ``magnitude``,
    ``sample_id``, ``label``, ``pred``, ``prob_*``, and ``shift`` from the folder names). Filter
    with ``pyarrow.dataset.field("shift") == "blur"`` to read one shift's files only.

    Format 1: the wide ``predictions.parquet``, projected onto the same columns and dtypes
    (meta, path and extra columns are left out: they are in the manifest and the file itself).

    Raises:
        DataError: not a run directory, or its predictions are missing (unfinished run).
    """
    import pyarrow.dataset as pads

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    class_names = [str(c) for c in manifest.get("class_names", [])]
    schema = prediction_schema(class_names).append(pa.field("shift", pa.string()))
    if manifest["format"] == FORMAT_V1:
        path = run_dir / PREDICTIONS_V1
        if not path.exists():
            raise DataError(f"{run_dir} has no {PREDICTIONS_V1} (the run did not finish)")
        v1 = pa.schema([f.with_type(_v1_type(f)) for f in schema])
        return pads.dataset(path, format="parquet", schema=v1)
    folder = run_dir / PREDICTIONS_DIR
    if not folder.is_dir():
        raise DataError(f"{run_dir} has no {PREDICTIONS_DIR}/ folder (the run did not finish)")
    return pads.dataset(
        folder,
        format="parquet",
        schema=schema,
        partitioning=pads.partitioning(pa.schema([("shift", pa.string())]), flavor="hive"),
        exclude_invalid_files=False,
        ignore_prefixes=[".", "_"],
    )


def _v1_type(field: pa.Field) -> pa.DataType:
    # Format 1 stored strings plainly and ids/labels as int64; the scan reads those types.
    if field.name in ("checkpoint", "shift"):
        return pa.string()
    if field.name in ("sample_id", "label", "pred"):
        return pa.int64()
    return field.type


# -- evaluation sets -------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleDatasets:
    """Which evaluation set each sample of a run belongs to.

    Attributes:
        names: the sets' names in the order they were given to ``run`` (= sample-id order).
        codes: ``int32 [n_samples]``: ``codes[sample_id]`` is the index of its set in ``names``.
    """

    names: list[str]
    codes: np.ndarray

    def ids(self, name: str) -> np.ndarray:
        """The sample ids of set ``name`` (ascending)."""
        return np.flatnonzero(self.codes == self.names.index(name))


def dataset_name(path: str | os.PathLike[str]) -> str:
    """The default name of a data set given as a bare path: its folder's name.

    A folder → its own name; a ``.csv`` manifest → the name of the folder holding it; any other
    file (``.npz``) → its stem. Relative paths are made absolute first, so ``.`` is named
    after the current folder (not ``""``).
    """
    p = Path(os.path.abspath(path))
    if p.suffix.lower() == ".csv":
        p = p.resolve().parent
    return p.name if p.is_dir() or p.suffix == "" else p.stem


def sample_extra_columns(names: Iterable[str]) -> list[str]:
    """The extra data columns among samples.parquet's column ``names`` (any format)."""
    return [n for n in names if n not in SAMPLE_COLUMNS and n != DATASET]


def read_sample_datasets(run_dir: str | os.PathLike[str]) -> SampleDatasets:
    """The evaluation set of every sample of a run directory (any format).

    Runs written before ``run --data NAME=PATH`` existed (format 1, and format 2 without a
    ``dataset`` column in samples.parquet) hold one set, named after the manifest's data path
    (``"data"`` if it has none).
    """
    import pandas as pd
    import pyarrow.parquet as pq

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    samples = run_dir / SAMPLES
    if manifest["format"] == FORMAT_V2 and DATASET in pq.read_schema(samples).names:
        column = pq.read_table(samples, columns=["sample_id", DATASET]).to_pandas()
        ids = column["sample_id"].to_numpy()
        names = list(dict.fromkeys(column[DATASET].astype(str)))
        codes = np.zeros(int(ids.max()) + 1 if len(ids) else 0, np.int32)
        codes[ids] = pd.Categorical(column[DATASET].astype(str), categories=names).codes
        return SampleDatasets(names, codes)
    data = manifest.get("data") or {}
    name = dataset_name(data["path"]) if data.get("path") else "data"
    n = int((manifest.get("config") or {}).get("n_samples") or data.get("n_samples") or 0)
    if manifest["format"] == FORMAT_V2:
        n = max(n, pq.read_metadata(samples).num_rows)
    return SampleDatasets([name], np.zeros(n, np.int32))


# -- lock -------------------------------------------------------------------------------------


@contextlib.contextmanager
def locked(run_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir`` (created if needed) so two runs never share it.

    Raises:
        RunError: another process holds the lock.
    """
    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / LOCK, timeout=0)  # no mode: created with the umask
    try:
        lock.acquire()
    except Timeout:
        raise RunError(
            f"{run_dir} is in use by another shiftbench process; wait for it or use another --out"
        ) from None
    try:
        yield
    finally:
        lock.release()


# -- atomic writes ----------------------------------------------------------------------------


def atomic_write(path: str | os.PathLike[str], writer: Callable[[Path], Any]) -> None:
    """Call ``writer(tmp)`` on a temp file beside ``path``, then rename it over ``path``.

    Readers see the old file or the new one, never a partial one. The temp file
    (``.<name>.<pid>.<random>.tmp``, removed on failure) is created with mode ``0o666`` so the
    kernel applies the caller's umask, as for any new file; the process umask is not touched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    os.close(fd)
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda p: p.write_bytes(data))


def clean_temp_files(folder: Path) -> None:
    """Remove temp files a killed process left in ``folder`` (never the only copy of anything)."""
    if folder.exists():
        for f in folder.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                f.unlink()
