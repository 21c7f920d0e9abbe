"""Loading run directories for a report: one scan of the key columns, nothing else in memory.

A :class:`Study` is the *index* of one or more run directories: the checkpoints with their meta
(``checkpoints.parquet`` in format 2, the meta columns of ``predictions.parquet`` in format 1),
the cells (shift × magnitude × checkpoint, with their sample and class counts), the labels of the
test samples and each shift's axis from the manifest. The predictions themselves stay on disk and
are read one cell at a time (:mod:`shiftbench.report.cells`), so a report's memory does not grow
with the number of prediction rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from shiftbench.errors import DataError, UserInputError
from shiftbench.report.sets import StudySets, study_sets
from shiftbench.run import rundir

REQUIRED_COLUMNS = ("checkpoint", "shift", "magnitude", "sample_id", "label", "pred")
# Columns of the predictions that are not per-checkpoint (never meta, never a --by column).
_ROW_COLUMNS = (*REQUIRED_COLUMNS, "path")
# Scan in bounded batches with little read-ahead: memory stays flat for any table size.
_SCAN_ROWS = 1 << 18
# Labels are class indices < 2**20 (packed with sample ids into one int64 while scanning).
_LABELS = 1 << 20
_SCAN = {"batch_size": _SCAN_ROWS, "batch_readahead": 2, "fragment_readahead": 2}


@dataclass
class Source:
    """One run directory of a study.

    Attributes:
        run: the directory (or ``predictions.parquet`` file) as given.
        run_dir: the directory.
        dataset: the predictions as a lazy ``pyarrow.dataset.Dataset``.
        format: ``shiftbench-run/2`` or ``shiftbench-run/1`` (also for a bare predictions file).
        shifts: the manifest's shift records by name (``identity``, ``units``, ``magnitudes``).
        rename: stored checkpoint name → name in the study (``<run>/<name>`` on clashes).
    """

    run: str
    run_dir: Path
    dataset: Any
    format: str
    shifts: dict[str, dict[str, Any]]
    rename: dict[str, str] = field(default_factory=dict)


@dataclass
class Study:
    """The index of the predictions of one or more run directories, checked and concatenated.

    Attributes:
        checkpoints: one row per checkpoint: ``checkpoint`` (unique in the study), ``run`` and
            the per-checkpoint (meta) columns.
        class_names: class names in class-index order.
        prob_columns: the ``prob_<class>`` columns in class-index order.
        run_dirs: the directories as given.
        meta_columns: per-checkpoint columns (``method``, ``seed``, …).
        grid: one row per shift × magnitude × checkpoint × label with the row count ``n``.
        samples: one row per shift × sample: ``shift``, ``sample_id``, ``label``.
        sources: the run directories.
        columns: every column of the joined (tidy) predictions view, for messages.
        varying: columns that vary within a checkpoint (format 1) → a checkpoint where they do.
        datasets: the evaluation sets (``dataset`` key of samples.parquet) in the order given to
            ``run``, the union over the run directories in first-seen order; ``grid`` and
            ``samples`` have a ``dataset`` column.
        sample_ids: the sorted sample ids of the one set a study is restricted to
            (:meth:`for_dataset`), which :mod:`~shiftbench.report.cells` reads; None: all rows.
    """

    checkpoints: pd.DataFrame
    class_names: list[str]
    prob_columns: list[str]
    run_dirs: list[str]
    meta_columns: list[str]
    grid: pd.DataFrame
    samples: pd.DataFrame
    sources: list[Source]
    columns: list[str]
    varying: dict[str, str] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=lambda: ["data"])
    sample_ids: np.ndarray | None = None
    _aligned: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)
    _table: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.prob_columns)

    @property
    def table(self) -> pd.DataFrame:
        """All predictions as one wide DataFrame (meta joined, ``run`` column): loads everything.

        Kept for callers of shiftbench 0.1; the reports never use it.
        """
        if self._table is None:
            self._table = _wide_table(self)
        return self._table

    def for_dataset(self, name: str, option: str = "--dataset") -> Study:
        """The study restricted to evaluation set ``name``: its cells, samples and checkpoints.

        Cell reads are then filtered to the set's sample ids, so every report runs unchanged
        on one set. A study of one set returns itself.

        Raises:
            UserInputError: ``name`` is not a set of the study.
        """
        if name not in self.datasets:
            raise UserInputError(
                f"{_given(option)}{name!r} is not an evaluation set of the runs; sets: "
                f"{', '.join(self.datasets)}"
            )
        if len(self.datasets) == 1:
            return self
        grid = self.grid[self.grid["dataset"] == name].reset_index(drop=True)
        samples = self.samples[self.samples["dataset"] == name].reset_index(drop=True)
        keep = self.checkpoints["checkpoint"].isin(set(grid["checkpoint"]))
        return replace(
            self,
            checkpoints=self.checkpoints[keep].reset_index(drop=True),
            grid=grid,
            samples=samples,
            datasets=[name],
            sample_ids=np.unique(samples["sample_id"].to_numpy(np.int64)),
            _aligned={},
            _table=None,
        )

    def select(self, name: str | None, option: str = "--dataset", hint: str = "") -> Study:
        """:meth:`for_dataset` ``name``; with ``name`` None the study itself, if it has one set.

        Raises:
            UserInputError: several sets and none chosen (a report never pools them), or an
                unknown name.
        """
        if name is not None:
            return self.for_dataset(name, option)
        if len(self.datasets) > 1:
            raise UserInputError(
                f"the runs hold {len(self.datasets)} evaluation sets ({', '.join(self.datasets)}); "
                f"choose one with {_given(option)}NAME{hint}"
            )
        return self

    def check_column(self, column: str, option: str) -> None:
        """Raise unless ``column`` exists and is constant within every checkpoint."""
        if column not in self.columns:
            raise UserInputError(
                f"{option} column {column!r} is not in the predictions; available columns: "
                f"{', '.join(self.columns)}"
            )
        if column != "checkpoint" and column not in self.checkpoints.columns:
            ck = self.varying.get(column, str(self.checkpoints["checkpoint"].iloc[0]))
            raise UserInputError(
                f"{option} column {column!r} varies within checkpoint {ck!r}; "
                "choose a per-checkpoint column such as method"
            )
        missing = self.checkpoints[column].isna()
        if missing.any():
            ck = self.checkpoints.loc[missing, "checkpoint"].iloc[0]
            raise UserInputError(
                f"checkpoint {ck!r} has no value in column {column!r}; give every checkpoint a "
                f"{column!r} in its meta, or choose another {option} column"
            )


def _given(option: str) -> str:
    """What precedes a value in messages: ``--dataset`` (CLI option) → ``--dataset ``;
    ``dataset=`` (keyword argument) and ``dataset = `` (figures spec key) as given."""
    return option if option.endswith(("=", " ")) else option + " "


def load_runs(runs: str | Path | Sequence[str | Path], *, plugins: Sequence[str] = ()) -> Study:
    """Index the predictions of run directories (format 2, or format 1 ``predictions.parquet``).

    Reads the manifest, ``checkpoints.parquet`` and one pass over the key columns of the
    predictions (checkpoint, shift, magnitude, sample_id, label) in bounded batches.

    Args:
        runs: one or more run directories (or format-1 ``predictions.parquet`` files).
        plugins: modules to import first, for shifts whose axis a format-1 manifest lacks.

    Returns:
        A :class:`Study`.

    Raises:
        UserInputError: a path is missing or given twice, columns are missing, or the runs have
            different classes or disagree on a sample's label.
        DataError: a file cannot be read.
    """
    from shiftbench.registry import load_plugins

    runs = _run_list(runs)
    load_plugins(list(plugins))
    opened = [_open_source(run) for run in runs]
    sets = study_sets([source for source, _, _ in opened])
    _, prob_columns, class_names = opened[0]
    indexes = []
    for run, (source, probs, _) in zip(runs, opened, strict=True):
        if probs != prob_columns:
            raise UserInputError(
                f"runs have different classes: {runs[0]} has {', '.join(prob_columns)}, "
                f"{run} has {', '.join(probs)}"
            )
        indexes.append(_index_run(run, source, probs, sets))
    return _study(runs, indexes, prob_columns, class_names, sets)


def _run_list(runs: str | Path | Sequence[str | Path]) -> list[str]:
    """The run paths as strings, checked: at least one, none given twice."""
    if isinstance(runs, (str, Path)):
        runs = [runs]
    runs = [str(r) for r in runs]
    if not runs:
        raise UserInputError("no run directory given")
    if len({Path(r).resolve() for r in runs}) != len(runs):
        raise UserInputError(f"a run directory is given twice: {', '.join(runs)}")
    return runs


@dataclass
class _RunIndex:
    """The index of one run: checkpoints, grid and samples (each with a ``run`` column)."""

    source: Source
    checkpoints: pd.DataFrame
    grid: pd.DataFrame
    samples: pd.DataFrame
    varying: dict[str, str]


def _index_run(run: str, source: Source, probs: list[str], sets: StudySets) -> _RunIndex:
    """Scan one opened run and read its checkpoint table."""
    grid, ids = _scan(source, sets)
    if grid.empty:
        raise UserInputError(f"{_where(source)} has no rows")
    cks, vary = _checkpoint_table(source, probs)
    return _RunIndex(source, cks.assign(run=run), grid.assign(run=run), ids.assign(run=run), vary)


def _study(
    runs: list[str],
    indexes: list[_RunIndex],
    prob_columns: list[str],
    class_names: list[str],
    sets: StudySets,
) -> Study:
    """The :class:`Study` of the indexed runs: checkpoint names made unique, tables joined."""
    sources = [index.source for index in indexes]
    samples = [index.samples for index in indexes]
    varying: dict[str, str] = {}
    for index in indexes:
        varying.update(index.varying)
    grids = [index.grid for index in indexes]
    ck_tables = [index.checkpoints for index in indexes]
    _unique_checkpoints(sources, ck_tables, grids)  # renames in ck_tables and grids
    checkpoints, meta = _study_checkpoints(ck_tables, varying)
    grid = pd.concat(grids, ignore_index=True).drop(columns="run")
    samples_all = pd.concat(samples, ignore_index=True)
    _check_labels(samples_all)
    samples_all = samples_all.drop_duplicates(["shift", "sample_id"]).drop(columns="run")
    columns = [*REQUIRED_COLUMNS[:4], *REQUIRED_COLUMNS[4:], *prob_columns, *meta]
    return Study(
        checkpoints=checkpoints,
        class_names=class_names,
        prob_columns=prob_columns,
        run_dirs=runs,
        meta_columns=meta,
        grid=grid,
        samples=samples_all.sort_values(["shift", "sample_id"], ignore_index=True),
        sources=sources,
        columns=list(dict.fromkeys(columns)),
        varying=varying,
        datasets=sets.order(samples),
    )


def _study_checkpoints(
    ck_tables: list[pd.DataFrame], varying: dict[str, str]
) -> tuple[pd.DataFrame, list[str]]:
    """The checkpoints of all runs and the meta column names.

    Columns that vary within a checkpoint stay in the meta names (so messages can name them)
    but are dropped from the table.
    """
    checkpoints = pd.concat(ck_tables, ignore_index=True)
    if rundir.NORMALIZE in checkpoints.columns:  # runs written before it had none
        checkpoints[rundir.NORMALIZE] = checkpoints[rundir.NORMALIZE].fillna("none")
    meta = [c for c in checkpoints.columns if c not in ("checkpoint", "run")]
    for column in varying:
        if column in checkpoints.columns:
            checkpoints = checkpoints.drop(columns=column)
    return checkpoints.reset_index(drop=True), meta


def _where(source: Source) -> Path:
    if source.format == rundir.FORMAT_V2:
        return source.run_dir / rundir.PREDICTIONS_DIR
    return source.run_dir / rundir.PREDICTIONS_V1


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise DataError(f"cannot read {path}: not a JSON object")
    return data


def _open_source(run: str) -> tuple[Source, list[str], list[str]]:
    """Open one run: its predictions dataset, manifest shifts, prob columns and class names."""
    path = Path(run)
    if path.is_file() and path.suffix == ".parquet":
        pred_path, run_dir = path, path.parent
    elif path.is_dir():
        pred_path, run_dir = path / rundir.PREDICTIONS_V1, path
    else:
        raise UserInputError(f"run directory {run} does not exist")
    manifest = _read_json(run_dir / rundir.MANIFEST)
    if "format" in manifest:
        manifest = rundir.read_manifest(run_dir)  # refuses formats this version cannot read
    dataset, fmt = _open_predictions(run, path, pred_path, run_dir, manifest)
    where = pred_path if fmt == rundir.FORMAT_V1 else run_dir / rundir.PREDICTIONS_DIR
    probs = _prob_columns([str(n) for n in dataset.schema.names], where)
    class_names = _class_names(manifest, probs, run_dir)
    shifts = {
        str(s["name"]): s for s in manifest.get("shifts", []) if isinstance(s, dict) and "name" in s
    }
    return Source(run, run_dir, dataset, fmt, shifts), probs, class_names


def _open_predictions(
    run: str, path: Path, pred_path: Path, run_dir: Path, manifest: dict[str, Any]
) -> tuple[Any, str]:
    """``(dataset, format)``: the format-2 predictions folder, else the format-1 file."""
    import pyarrow.dataset as pads

    fmt = str(manifest.get("format", rundir.FORMAT_V1))
    if fmt == rundir.FORMAT_V2 and pred_path.parent == run_dir and path.is_dir():
        return rundir.open_predictions(run_dir), fmt
    if not pred_path.is_file():
        raise UserInputError(
            f"{pred_path} not found; is {run} a run directory written by `shiftbench run`?"
        )
    try:
        dataset = pads.dataset(pred_path, format="parquet")
    except Exception as e:  # pyarrow raises several types for a broken file
        raise DataError(f"cannot read {pred_path}: {e}") from e
    return dataset, rundir.FORMAT_V1


def _prob_columns(names: list[str], where: Path) -> list[str]:
    """The ``prob_<class>`` columns, after checking the required and reserved columns."""
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    probs = [c for c in names if c.startswith(rundir.PROB_PREFIX)]
    if missing or len(probs) < 2:
        what = ", ".join(missing) if missing else "prob_<class> (at least 2)"
        raise UserInputError(f"{where} lacks column(s) {what}; available: {', '.join(names)}")
    if "run" in names:
        raise UserInputError(f"{where} has a column named 'run', which shiftbench reserves")
    return probs


def _class_names(manifest: dict[str, Any], probs: list[str], run_dir: Path) -> list[str]:
    """The manifest's class names, else the names in the ``prob_<class>`` columns."""
    stored = manifest.get("class_names")
    if stored is None:
        return [c[len(rundir.PROB_PREFIX) :] for c in probs]
    if len(stored) != len(probs):
        raise DataError(
            f"{run_dir / rundir.MANIFEST} lists {len(stored)} class names but predictions "
            f"have {len(probs)} prob_ columns; the run directory is inconsistent"
        )
    return [str(s) for s in stored]


def _chunks(dataset: Any, columns: list[str]) -> Iterator[pa.Table]:
    """The columns in tables of about ``_SCAN_ROWS`` rows (small row groups coalesced)."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in dataset.to_batches(columns=columns, **_SCAN):
        if batch.num_rows:
            pending.append(batch)
            rows += batch.num_rows
        if rows >= _SCAN_ROWS:
            yield _decoded(pa.Table.from_batches(pending))
            pending, rows = [], 0
    if pending:
        yield _decoded(pa.Table.from_batches(pending))


def _decoded(table: pa.Table) -> pa.Table:
    """The table with dictionary columns decoded (group_by keys)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, pc.cast(table[f.name], f.type.value_type))
    return table


def _fragment_batches(
    dataset: Any, columns: list[str]
) -> Iterator[tuple[dict[str, Any], pa.RecordBatch]]:
    """``(partition keys, batch)`` of every file, read row group by row group, single-threaded.

    pyarrow's dataset scanner reads ahead on several threads, whose allocations stay in the
    process (measured: 1.1 GB peak RSS for the key columns of 27.5 M rows, against 0.16 GB
    for this loop).
    """
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    for fragment in dataset.get_fragments():
        keys = pads.get_partition_keys(fragment.partition_expression) or {}
        file = pq.ParquetFile(fragment.path)
        present = [c for c in columns if c in file.schema_arrow.names]
        for batch in file.iter_batches(batch_size=_SCAN_ROWS, columns=present, use_threads=False):
            yield keys, batch


def _codes(column: pa.Array) -> tuple[np.ndarray, list[Any]]:
    """Integer codes and their values of a string or dictionary column."""
    if not pa.types.is_dictionary(column.type):
        column = column.dictionary_encode()
    return column.indices.to_numpy(zero_copy_only=False), column.dictionary.to_pylist()


def _scan(source: Source, sets: StudySets) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One pass over the key columns, one row group at a time (nothing kept but counts).

    Returns:
        ``grid``: shift, magnitude, checkpoint, label, dataset, n (rows); ``ids``: shift,
        sample_id, label, dataset (distinct).
    """
    keys = ["shift", "magnitude", "checkpoint", "label", "dataset"]
    counts: dict[tuple[str, float, str, int, str], int] = {}
    ids: dict[str, list[np.ndarray]] = {}  # shift -> (sample_id << 20 | label) arrays
    try:
        for part, batch in _fragment_batches(source.dataset, [*keys, "sample_id"]):
            if batch.num_rows == 0:
                continue
            s_codes, s_names, sids, labels = _scan_batch(source, sets, part, batch, counts)
            _add_ids(ids, s_codes, s_names, sids, labels)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"cannot read {_where(source)}: {e}") from e
    grid = pd.DataFrame([(*k, n) for k, n in counts.items()], columns=[*keys, "n"])
    grid = grid.sort_values(keys, ignore_index=True).astype(
        {"magnitude": np.float64, "label": np.int64, "n": np.int64}
    )
    return grid, _ids_frame(source, sets, ids)


def _scan_batch(
    source: Source,
    sets: StudySets,
    part: dict[str, Any],
    batch: pa.RecordBatch,
    counts: dict[tuple[str, float, str, int, str], int],
) -> tuple[np.ndarray, list[Any], np.ndarray, np.ndarray]:
    """Add one batch's row counts per cell × label × set to ``counts``.

    Returns:
        ``(shift codes, shift names, sample ids, labels)`` of the batch's rows.
    """
    n_sets = len(sets.names)
    names = batch.schema.names
    if "shift" in names:
        s_codes, s_names = _codes(batch.column(names.index("shift")))
    else:
        s_codes, s_names = np.zeros(batch.num_rows, np.int64), [part["shift"]]
    c_codes, c_names = _codes(batch.column(names.index("checkpoint")))
    mags = batch.column(names.index("magnitude")).to_numpy(zero_copy_only=False)
    labels = batch.column(names.index("label")).to_numpy(zero_copy_only=False)
    sids = batch.column(names.index("sample_id")).to_numpy(zero_copy_only=False)
    labels, sids = labels.astype(np.int64), sids.astype(np.int64)
    key = (s_codes.astype(np.int64) * len(c_names) + c_codes) * n_sets
    key = (key + sets.codes(source.run, sids)) * _LABELS + labels
    for mag in np.unique(mags):
        sel = mags == mag
        uniq, n = np.unique(key[sel], return_counts=True)
        for u, c in zip(uniq.tolist(), n.tolist(), strict=True):
            scd, label = divmod(u, _LABELS)
            sc, di = divmod(scd, n_sets)
            si, ci = divmod(sc, len(c_names))
            k = (str(s_names[si]), float(mag), str(c_names[ci]), label, sets.names[di])
            counts[k] = counts.get(k, 0) + c
    return s_codes, s_names, sids, labels


def _add_ids(
    ids: dict[str, list[np.ndarray]],
    s_codes: np.ndarray,
    s_names: list[Any],
    sids: np.ndarray,
    labels: np.ndarray,
) -> None:
    """Add one batch's distinct ``sample_id << 20 | label`` per shift to ``ids``."""
    for si, name in enumerate(s_names):
        sel = s_codes == si
        got = ids.setdefault(str(name), [])
        got.append(np.unique((sids[sel] << 20) | labels[sel]))
        if len(got) >= 64:  # keep the distinct ids compact while scanning
            ids[str(name)] = [np.unique(np.concatenate(got))]


def _ids_frame(source: Source, sets: StudySets, ids: dict[str, list[np.ndarray]]) -> pd.DataFrame:
    """The distinct ``(shift, sample_id, label, dataset)`` rows of a scan."""
    frames = []
    for name, arrays in ids.items():
        both = np.unique(np.concatenate(arrays))
        sids = both >> 20
        frames.append(
            pd.DataFrame(
                {
                    "shift": name,
                    "sample_id": sids,
                    "label": both & (_LABELS - 1),
                    "dataset": np.asarray(sets.names, dtype=object)[sets.codes(source.run, sids)],
                }
            )
        )
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["shift", "sample_id", "label", "dataset"])
    )


def _checkpoint_table(source: Source, probs: list[str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """One row per checkpoint with its meta; and columns that vary within a checkpoint."""
    if source.format == rundir.FORMAT_V2:
        path = source.run_dir / rundir.CHECKPOINTS
        try:
            cks = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several types for a broken file
            raise DataError(f"cannot read {path}: {e}") from e
        fixed = [c for c in rundir.CHECKPOINT_COLUMNS if c != "checkpoint"]
        cks = cks.drop(columns=[c for c in fixed if c in cks.columns])
        cks["checkpoint"] = cks["checkpoint"].astype(str)
        return cks, {}
    names = list(source.dataset.schema.names)
    meta = [c for c in names if c not in (*_ROW_COLUMNS, *probs)]
    parts: list[pd.DataFrame] = []
    try:
        for t in _chunks(source.dataset, ["checkpoint", *meta]):
            parts.append(t.group_by(["checkpoint", *meta]).aggregate([]).to_pandas())
            if len(parts) >= 16:
                parts = [pd.concat(parts, ignore_index=True).drop_duplicates()]
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"cannot read {_where(source)}: {e}") from e
    distinct = pd.concat(parts, ignore_index=True).drop_duplicates()
    distinct["checkpoint"] = distinct["checkpoint"].astype(str)
    varying: dict[str, str] = {}
    for column in meta:
        counts = distinct.groupby("checkpoint", sort=False)[column].nunique(dropna=False)
        if (counts > 1).any():
            varying[column] = str(counts.idxmax())
    constant = [c for c in meta if c not in varying]
    cks = distinct.drop_duplicates("checkpoint")[["checkpoint", *constant]]
    return cks.reset_index(drop=True), varying


def _unique_checkpoints(
    sources: list[Source], ck_tables: list[pd.DataFrame], grids: list[pd.DataFrame]
) -> None:
    """Checkpoint names seen in several runs get a ``<run>/`` prefix (in place)."""
    owners: dict[str, set[str]] = {}
    for source, cks in zip(sources, ck_tables, strict=True):
        for ck in cks["checkpoint"]:
            owners.setdefault(str(ck), set()).add(source.run)
    clashes = {ck for ck, rs in owners.items() if len(rs) > 1}
    for source, cks, grid in zip(sources, ck_tables, grids, strict=True):
        label = Path(source.run).name or source.run
        source.rename = {
            str(ck): (f"{label}/{ck}" if ck in clashes else str(ck)) for ck in cks["checkpoint"]
        }
        cks["checkpoint"] = cks["checkpoint"].map(source.rename)
        grid["checkpoint"] = grid["checkpoint"].map(source.rename).fillna(grid["checkpoint"])
    names = [ck for cks in ck_tables for ck in cks["checkpoint"]]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UserInputError(
            f"checkpoint {dup!r} appears in two runs with the same directory name; "
            "rename one run directory"
        )


def _check_labels(samples: pd.DataFrame) -> None:
    """Every sample id has one label across shifts and runs."""
    labels_per_id = samples.groupby("sample_id")["label"].nunique()
    if (labels_per_id > 1).any():
        sid = labels_per_id.idxmax()
        seen = samples.loc[samples["sample_id"] == sid].groupby("run")["label"].unique()
        detail = "; ".join(f"{r}: {sorted(map(int, v))}" for r, v in seen.items())
        raise UserInputError(
            f"test sets differ: sample {sid} has different labels ({detail}); "
            "combine only runs evaluated on the same data set"
        )


def _wide_table(study: Study) -> pd.DataFrame:
    """The 0.1 wide predictions table of the whole study (everything in memory)."""
    frames = []
    meta = study.checkpoints.drop(columns="run")
    for source in study.sources:
        df = source.dataset.to_table().to_pandas()
        df["checkpoint"] = df["checkpoint"].astype(str).map(source.rename)
        df["shift"] = df["shift"].astype(str)
        if source.format == rundir.FORMAT_V2:
            df = df.merge(meta, on="checkpoint", how="left")
        df["run"] = source.run
        frames.append(df)
    table = pd.concat(frames, ignore_index=True)
    table["magnitude"] = table["magnitude"].astype(np.float64)
    if study.sample_ids is not None:  # restricted to one evaluation set
        table = table[table["sample_id"].isin(study.sample_ids)].reset_index(drop=True)
    return table
