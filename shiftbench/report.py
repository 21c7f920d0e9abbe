"""Leaderboards, figures and tables, derived only from stored run directories.

Nothing here loads a model: every number comes from ``predictions.parquet`` (one row per
checkpoint × shift × magnitude × sample; schema in ``docs/concepts/architecture.md``). Several run
directories are concatenated when they were evaluated on the same test set.

* :func:`leaderboard` — one row per method: clean score and per-shift robustness summaries as
  mean ± SD over seeds, the corruption error and the paired-bootstrap difference to a baseline
  (95 % CI, p); ``leaderboard.{md,csv,html}`` and ``differences.csv`` (per-magnitude differences).
* :func:`plot` — the paper's Figure 4: one panel per shift, metric vs magnitude, mean over seeds
  with a ±1 SD band (or a bootstrap CI over samples); PNG, PDF and the plotted numbers as CSV.
* :func:`roc` — ROC curves of seed ensembles with bootstrap AUROC CIs and DeLong's test against
  the baseline (paper Figure 7); PNG, PDF and CSVs.
* :func:`figures` — everything a report needs, from a TOML spec (``benchmarks/*.toml``).

Choices (also printed in the footnotes): the difference to the baseline is that of the
*seed-averaged* metric (mean over a method's checkpoints), bootstrapped by resampling test sample
ids jointly for all methods, seeds and magnitudes, with a percentile interval and the two-sided
p-value of :func:`shiftbench.stats.bootstrap_p_value`.
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from shiftbench.errors import DataError, UserInputError
from shiftbench.metrics import bootstrap_weights
from shiftbench.stats import (
    check_metric,
    corruption_error,
    delong_test,
    ensemble_probs,
    metric_values,
    robustness_summary,
    seed_bands,
)

__all__ = [
    "BANDS",
    "FiguresResult",
    "LeaderboardResult",
    "PlotResult",
    "ReportWarning",
    "RocResult",
    "Study",
    "checkpoint_metrics",
    "figures",
    "leaderboard",
    "load_runs",
    "plot",
    "roc",
]

#: Band kinds of :func:`plot`: ±1 SD over seeds, or a bootstrap CI over test samples.
BANDS = ("sd", "ci")

REQUIRED_COLUMNS = ("checkpoint", "shift", "magnitude", "sample_id", "label", "pred")
_BASE_COLUMNS = (*REQUIRED_COLUMNS, "path")
_CSV_FLOAT = "%.6g"
_METRIC_TITLES = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "auroc": "AUROC",
    "recall": "recall",
}
_MAX_BLOCK_ELEMENTS = 4_000_000


class ReportWarning(UserWarning):
    """Something the reader of a report must know (e.g. SD undefined for a single seed)."""


def _warn(notes: list[str], message: str) -> None:
    notes.append(message)
    warnings.warn(message, ReportWarning, stacklevel=3)


# =================================================================================================
# Loading and aligning runs
# =================================================================================================
@dataclass
class Study:
    """Predictions of one or more run directories, checked and concatenated.

    Attributes:
        table: the concatenated predictions (a ``run`` column names the source directory).
        class_names: class names in class-index order.
        prob_columns: the ``prob_<class>`` columns in class-index order.
        run_dirs: the directories as given.
        meta_columns: columns besides the base schema (``method``, ``seed``, …).
    """

    table: pd.DataFrame
    class_names: list[str]
    prob_columns: list[str]
    run_dirs: list[str]
    meta_columns: list[str]
    _aligned: dict[tuple[Any, ...], _Aligned] = field(default_factory=dict, repr=False)
    _fingerprints: dict[str, dict[float, int]] | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.prob_columns)

    def check_column(self, column: str, option: str) -> None:
        """Raise unless ``column`` exists and is constant within every checkpoint."""
        if column not in self.table.columns:
            raise UserInputError(
                f"{option} column {column!r} is not in the predictions; available columns: "
                f"{', '.join(c for c in self.table.columns if c != 'run')}"
            )
        if self.table[column].isna().any():
            ck = self.table.loc[self.table[column].isna(), "checkpoint"].iloc[0]
            raise UserInputError(
                f"checkpoint {ck!r} has no value in column {column!r}; give every checkpoint a "
                f"{column!r} in its meta, or choose another {option} column"
            )
        varying = self.table.groupby("checkpoint")[column].nunique()
        if (varying > 1).any():
            raise UserInputError(
                f"{option} column {column!r} varies within checkpoint {varying.idxmax()!r}; "
                "choose a per-checkpoint column such as method"
            )


def _read_class_names(run_dir: Path, prob_columns: list[str]) -> list[str]:
    names = [c[len("prob_") :] for c in prob_columns]
    manifest = run_dir / "manifest.json"
    if manifest.is_file():
        try:
            stored = json.loads(manifest.read_text()).get("class_names")
        except (json.JSONDecodeError, OSError, AttributeError) as e:
            raise DataError(f"cannot read {manifest}: {e}") from e
        if stored is not None:
            if len(stored) != len(prob_columns):
                raise DataError(
                    f"{manifest} lists {len(stored)} class names but predictions have "
                    f"{len(prob_columns)} prob_ columns; the run directory is inconsistent"
                )
            names = [str(s) for s in stored]
    return names


def load_runs(runs: str | Path | Sequence[str | Path], *, plugins: Sequence[str] = ()) -> Study:
    """Read and concatenate the predictions of run directories.

    Args:
        runs: one or more run directories (or ``predictions.parquet`` files).
        plugins: modules to import first so the shifts they define are known (units, identity).

    Returns:
        A :class:`Study`.

    Raises:
        UserInputError: a path is missing or given twice, columns are missing, or the runs have
            different classes or disagree on a sample's label.
        DataError: a file cannot be read.
    """
    from shiftbench.registry import load_plugins

    if isinstance(runs, (str, Path)):
        runs = [runs]
    runs = [str(r) for r in runs]
    if not runs:
        raise UserInputError("no run directory given")
    if len({Path(r).resolve() for r in runs}) != len(runs):
        raise UserInputError(f"a run directory is given twice: {', '.join(runs)}")
    load_plugins(list(plugins))
    frames: list[pd.DataFrame] = []
    prob_columns: list[str] | None = None
    class_names: list[str] | None = None
    for run in runs:
        path = Path(run)
        if path.is_file() and path.suffix == ".parquet":
            pred_path, run_dir = path, path.parent
        elif path.is_dir():
            pred_path, run_dir = path / "predictions.parquet", path
        else:
            raise UserInputError(f"run directory {run} does not exist")
        if not pred_path.is_file():
            raise UserInputError(
                f"{pred_path} not found; is {run} a run directory written by `shiftbench run`?"
            )
        try:
            df = pd.read_parquet(pred_path)
        except Exception as e:  # pyarrow raises several types for a broken file
            raise DataError(f"cannot read {pred_path}: {e}") from e
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        probs = [c for c in df.columns if str(c).startswith("prob_")]
        if missing or len(probs) < 2:
            what = ", ".join(missing) if missing else "prob_<class> (at least 2)"
            raise UserInputError(
                f"{pred_path} lacks column(s) {what}; available: {', '.join(map(str, df.columns))}"
            )
        if "run" in df.columns:
            raise UserInputError(f"{pred_path} has a column named 'run', which shiftbench reserves")
        names = _read_class_names(run_dir, probs)
        if prob_columns is None:
            prob_columns, class_names = probs, names
        elif probs != prob_columns:
            raise UserInputError(
                f"runs have different classes: {runs[0]} has {', '.join(prob_columns)}, "
                f"{run} has {', '.join(probs)}"
            )
        if len(df) == 0:
            raise UserInputError(f"{pred_path} has no rows")
        df = df.copy()
        df["run"] = run
        frames.append(df)
    assert prob_columns is not None and class_names is not None
    table = _unique_checkpoints(frames)
    table["magnitude"] = table["magnitude"].astype(np.float64)
    if not np.isfinite(table[prob_columns].to_numpy(dtype=np.float64)).all():
        raise DataError("predictions contain NaN or infinite probabilities")
    labels_per_id = table.groupby("sample_id")["label"].nunique()
    if (labels_per_id > 1).any():
        sid = labels_per_id.idxmax()
        seen = table.loc[table["sample_id"] == sid].groupby("run")["label"].unique()
        detail = "; ".join(f"{r}: {sorted(map(int, v))}" for r, v in seen.items())
        raise UserInputError(
            f"test sets differ: sample {sid} has different labels ({detail}); "
            "combine only runs evaluated on the same data set"
        )
    meta = [c for c in table.columns if c not in (*_BASE_COLUMNS, *prob_columns, "run")]
    return Study(table, class_names, prob_columns, runs, meta)


def _unique_checkpoints(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate runs; checkpoint names seen in several runs get a ``<run>/`` prefix."""
    owners: dict[str, set[str]] = {}
    for df in frames:
        for ck in df["checkpoint"].unique():
            owners.setdefault(str(ck), set()).add(str(df["run"].iloc[0]))
    clashes = {ck for ck, rs in owners.items() if len(rs) > 1}
    out = []
    for df in frames:
        df["checkpoint"] = df["checkpoint"].astype(str)
        if clashes:
            run = str(df["run"].iloc[0])
            label = Path(run).name or run
            mask = df["checkpoint"].isin(clashes)
            df.loc[mask, "checkpoint"] = label + "/" + df.loc[mask, "checkpoint"]
        out.append(df)
    table = pd.concat(out, ignore_index=True)
    if table.duplicated(["checkpoint", "shift", "magnitude", "sample_id"]).any():
        dup = table[table.duplicated(["checkpoint", "shift", "magnitude", "sample_id"])].iloc[0]
        raise UserInputError(
            f"sample {dup['sample_id']} appears twice for checkpoint {dup['checkpoint']!r} at "
            f"{dup['shift']} {dup['magnitude']:g}; two runs with the same directory name? "
            "rename one run directory"
        )
    return table


@dataclass
class _Cell:
    shift: str
    magnitude: float
    ids: np.ndarray  # [n] sorted sample ids
    columns: np.ndarray  # [n] positions of ids in the study's universe of ids
    labels: np.ndarray  # [n]
    preds: np.ndarray  # [K, n]
    probs: np.ndarray  # [K, n, C]


@dataclass
class _Aligned:
    """Checkpoints × cells as arrays, grouped by a meta column."""

    by: str
    checkpoints: list[str]
    groups: list[str]  # group of each checkpoint
    group_names: list[str]  # sorted unique groups
    seeds: dict[str, list[str]]  # group -> seed values (or checkpoint names)
    shifts: list[str]
    magnitudes: dict[str, list[float]]
    identity: dict[str, float | None]
    units: dict[str, str]
    identity_source: dict[str, str]
    cells: dict[tuple[str, float], _Cell]
    universe: np.ndarray  # sorted union of sample ids

    def members(self, group: str) -> np.ndarray:
        return np.array([g == group for g in self.groups])

    def n_seeds(self, group: str) -> int:
        return int(self.members(group).sum())


def _group_order(values: pd.Series) -> list[Any]:
    uniq = list(pd.unique(values))
    try:
        return sorted(uniq)
    except TypeError:
        return sorted(uniq, key=str)


def _align(study: Study, by: str, shifts: Sequence[str] | None, option: str = "--by") -> _Aligned:
    key = (by, tuple(shifts) if shifts else None)
    if key in study._aligned:
        return study._aligned[key]
    study.check_column(by, option)
    table = study.table
    available = list(pd.unique(table["shift"]))
    if shifts:
        unknown = [s for s in shifts if s not in available]
        if unknown:
            raise UserInputError(
                f"shift(s) {', '.join(unknown)} not in the runs; available: {', '.join(available)}"
            )
        table = table[table["shift"].isin(list(shifts))]
        shift_list = list(shifts)
    else:
        shift_list = sorted(available)

    per_ck = table.drop_duplicates("checkpoint").set_index("checkpoint", drop=False)
    rank = {v: i for i, v in enumerate(_group_order(per_ck[by]))}
    checkpoints = sorted(per_ck.index, key=lambda ck: (rank[per_ck.at[ck, by]], ck))
    groups = [str(per_ck.at[ck, by]) for ck in checkpoints]
    group_names = list(dict.fromkeys(groups))
    seeds: dict[str, list[str]] = {}
    for ck, g in zip(checkpoints, groups, strict=True):
        seed_val = per_ck.at[ck, "seed"] if "seed" in per_ck.columns else ck
        seeds.setdefault(g, []).append(str(seed_val))
    ck_index = {ck: i for i, ck in enumerate(checkpoints)}
    runs_of = per_ck["run"].to_dict()

    # Every checkpoint must have the same magnitudes of every shift.
    grid = table.groupby(["shift", "checkpoint"])["magnitude"].unique()
    magnitudes: dict[str, list[float]] = {}
    for shift in shift_list:
        ref_ck, ref = None, None
        for ck in checkpoints:
            if (shift, ck) not in grid.index:
                raise UserInputError(
                    f"checkpoint {ck!r} ({runs_of[ck]}) has no rows for shift {shift!r}; "
                    "restrict the shifts (--shifts) or add the missing runs"
                )
            mags = sorted(map(float, grid[(shift, ck)]))
            if ref is None:
                ref_ck, ref = ck, mags
            elif mags != ref:
                raise UserInputError(
                    f"shift {shift!r}: checkpoint {ck!r} ({runs_of[ck]}) has magnitudes "
                    f"{_fmt_list(mags)} but {ref_ck!r} ({runs_of[ref_ck]}) has {_fmt_list(ref)}; "
                    "evaluate all runs on the same sweep"
                )
        magnitudes[shift] = ref or []

    universe = np.sort(table["sample_id"].unique())
    prob_cols = study.prob_columns
    cells: dict[tuple[str, float], _Cell] = {}
    sorted_table = table.assign(_k=table["checkpoint"].map(ck_index)).sort_values(
        ["shift", "magnitude", "_k", "sample_id"], kind="stable"
    )
    for (shift, mag), g in sorted_table.groupby(["shift", "magnitude"], sort=False):
        k_count = len(checkpoints)
        sizes = g.groupby("_k").size()
        if sizes.nunique() != 1:
            big, small = sizes.idxmax(), sizes.idxmin()
            raise UserInputError(
                f"test sets differ at {shift} {mag:g}: checkpoint {checkpoints[big]!r} "
                f"({runs_of[checkpoints[big]]}) has {sizes.max()} samples, "
                f"{checkpoints[small]!r} ({runs_of[checkpoints[small]]}) has {sizes.min()}; "
                "combine only runs evaluated on the same data set"
            )
        n = int(sizes.iloc[0])
        ids = g["sample_id"].to_numpy().reshape(k_count, n)
        bad = np.flatnonzero((ids != ids[0]).any(axis=1))
        if bad.size:
            k = int(bad[0])
            raise UserInputError(
                f"test sets differ at {shift} {mag:g}: checkpoint {checkpoints[k]!r} "
                f"({runs_of[checkpoints[k]]}) has other sample ids than {checkpoints[0]!r} "
                f"({runs_of[checkpoints[0]]}); combine only runs evaluated on the same data set"
            )
        labels = g["label"].to_numpy().reshape(k_count, n)[0].astype(np.int64)
        cells[(shift, float(mag))] = _Cell(
            shift=shift,
            magnitude=float(mag),
            ids=ids[0],
            columns=np.searchsorted(universe, ids[0]),
            labels=labels,
            preds=g["pred"].to_numpy().reshape(k_count, n).astype(np.int64),
            probs=g[prob_cols].to_numpy(dtype=np.float64).reshape(k_count, n, len(prob_cols)),
        )

    if study._fingerprints is None:
        study._fingerprints = _cell_fingerprints(study.table, study.prob_columns)
    identity, units, source = _shift_axes(shift_list, study._fingerprints)
    aligned = _Aligned(
        by=by,
        checkpoints=checkpoints,
        groups=groups,
        group_names=group_names,
        seeds=seeds,
        shifts=shift_list,
        magnitudes=magnitudes,
        identity=identity,
        units=units,
        identity_source=source,
        cells=cells,
        universe=universe,
    )
    study._aligned[key] = aligned
    return aligned


def _cell_fingerprints(table: pd.DataFrame, prob_columns: list[str]) -> dict[str, dict[float, int]]:
    """``{shift: {magnitude: fingerprint}}`` of the predictions of every cell of the table.

    The fingerprint is the (order-free) sum of row hashes of checkpoint, sample id and
    probabilities: equal for cells holding the same rows.
    """
    cols = ["checkpoint", "sample_id", *prob_columns]
    hashes = pd.util.hash_pandas_object(table[cols], index=False).to_numpy(np.uint64)
    keyed = pd.DataFrame(
        {
            "shift": table["shift"].to_numpy(),
            "magnitude": table["magnitude"].to_numpy(),
            "h": hashes,
        }
    )
    out: dict[str, dict[float, int]] = {}
    for (shift, mag), g in keyed.groupby(["shift", "magnitude"], sort=True):
        with np.errstate(over="ignore"):
            out.setdefault(str(shift), {})[float(mag)] = int(g["h"].to_numpy().sum(dtype=np.uint64))
    return out


def _shift_axes(
    shifts: list[str], prints: dict[str, dict[float, int]]
) -> tuple[dict[str, float | None], dict[str, str], dict[str, str]]:
    """Units and identity magnitude of each shift.

    Registered shifts declare both. For a shift that is not registered, units are "magnitude"
    and the identity is found in the data: the runner repeats the identity rows under every
    shift, so it is the one magnitude whose predictions equal a magnitude of every other shift
    of the runs (``prints`` from :func:`_cell_fingerprints`).
    """
    from shiftbench.registry import get_shift_class

    identity: dict[str, float | None] = {}
    units: dict[str, str] = {}
    source: dict[str, str] = {}
    source_error = ""
    for s in shifts:
        try:
            cls = get_shift_class(s)
        except UserInputError:
            cls = None
        except ImportError as e:  # a broken shift module must not block reading stored results
            cls = None
            source_error = f"; the shift registry failed to load ({e})"
            warnings.warn(
                f"shift registry failed to load ({e}); treating {s!r} as unregistered",
                ReportWarning,
                stacklevel=4,
            )
        if cls is not None:
            units[s] = str(cls.units)
            identity[s] = float(cls.identity)
            source[s] = "declared by the registered shift"
            continue
        units[s] = "magnitude"
        others = [set(prints[o].values()) for o in prints if o != s]
        found = [m for m, fp in prints[s].items() if others and all(fp in o for o in others)]
        if len(found) == 1:
            identity[s] = found[0]
            source[s] = "found in the data (shift not registered" + source_error + ")"
        else:
            identity[s] = None
            source[s] = (
                "unknown (shift not registered" + source_error + "; load its plugin with --plugin)"
            )
    return identity, units, source


def _fmt_list(values: Iterable[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


# =================================================================================================
# Metrics per checkpoint × cell, with bootstrap replicates
# =================================================================================================
def _replicates(
    aligned: _Aligned, metric: str, n_boot: int, seed: int, num_classes: int
) -> dict[tuple[str, float], np.ndarray]:
    """``{cell: [1 + n_boot, K]}``: row 0 the metric on the test set, then one row per resample.

    One set of resample weights over the universe of sample ids serves every cell, checkpoint and
    method, so sample ids are resampled jointly (paired) across all of them.
    """
    check_metric(metric, num_classes)
    n_all = aligned.universe.size
    weights = np.ones((1, n_all), dtype=np.int32)
    if n_boot > 0:
        weights = np.concatenate([weights, bootstrap_weights(n_all, n_boot, seed)])
    step = max(1, _MAX_BLOCK_ELEMENTS // max(n_all, 1))
    out = {}
    # Single-threaded BLAS: these are many small matrix-vector products, for which OpenBLAS
    # threads cost more than they give (measured 0.55 vs 21 ms per product on 2 busy cores).
    with threadpool_limits(1, user_api="blas"):
        for key, cell in aligned.cells.items():
            out[key] = _cell_replicates(aligned, cell, weights, step, metric)
    return out


def _cell_replicates(
    aligned: _Aligned, cell: _Cell, weights: np.ndarray, step: int, metric: str
) -> np.ndarray:
    values = np.empty((weights.shape[0], len(aligned.checkpoints)))
    for start in range(0, weights.shape[0], step):
        # float once per cell, not once per metric call (the matmuls want float64)
        w = weights[start : start + step][:, cell.columns].astype(np.float64)
        for k in range(len(aligned.checkpoints)):
            values[start : start + step, k] = metric_values(
                metric, w, cell.labels, cell.preds[k], cell.probs[k]
            )
    return values


def checkpoint_metrics(
    runs: str | Path | Sequence[str | Path] | Study,
    *,
    metric: str = "accuracy",
    by: str = "method",
    shifts: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per checkpoint × shift × magnitude: ``by``, checkpoint, shift, magnitude, n, metric.

    The metric is computed from the stored predictions (``pred`` column; AUROC from the
    probabilities), so it equals the point estimate in ``metrics.csv``.
    """
    study = runs if isinstance(runs, Study) else load_runs(runs)
    aligned = _align(study, by, shifts)
    reps = _replicates(aligned, metric, 0, 0, study.num_classes)
    rows = []
    for (shift, mag), values in reps.items():
        n = aligned.cells[(shift, mag)].ids.size
        for k, ck in enumerate(aligned.checkpoints):
            rows.append(
                {
                    by: aligned.groups[k],
                    "checkpoint": ck,
                    "shift": shift,
                    "magnitude": mag,
                    "n": n,
                    metric: values[0, k],
                }
            )
    df = pd.DataFrame(rows)
    return df.sort_values([by, "checkpoint", "shift", "magnitude"], ignore_index=True)


def _group_mean(values: np.ndarray, aligned: _Aligned) -> np.ndarray:
    """``[..., K] -> [..., G]``: mean over the checkpoints (seeds) of each group."""
    return np.stack(
        [values[..., aligned.members(g)].mean(axis=-1) for g in aligned.group_names], -1
    )


def _group_sd(values: np.ndarray, aligned: _Aligned) -> np.ndarray:
    """``[K] -> [G]``: SD (ddof = 1) over seeds; NaN for a single seed."""
    out = []
    for g in aligned.group_names:
        v = values[aligned.members(g)]
        out.append(float(np.std(v, ddof=1)) if v.size > 1 else math.nan)
    return np.array(out)


def _interval(reps: np.ndarray, ci: float) -> tuple[float, float, float]:
    """Percentile interval and bootstrap p-value of replicate rows ``reps [B]``."""
    from shiftbench.stats import bootstrap_p_value

    finite = reps[np.isfinite(reps)]
    if finite.size == 0:
        return math.nan, math.nan, math.nan
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(lo), float(hi), bootstrap_p_value(finite)


def _check_common(metric: str, n_boot: int, ci: float, num_classes: int) -> None:
    check_metric(metric, num_classes)
    if n_boot < 0:
        raise UserInputError(f"n_boot must be ≥ 0; got {n_boot}")
    if not 0.0 < ci < 1.0:
        raise UserInputError(f"ci must be in (0, 1), e.g. 0.95; got {ci}")


def _check_baseline(aligned: _Aligned, baseline: str | None) -> None:
    if baseline is not None and baseline not in aligned.group_names:
        raise UserInputError(
            f"unknown baseline {baseline!r}: not a value of column {aligned.by!r}; "
            f"values: {', '.join(aligned.group_names)}"
        )


def _single_seed_notes(aligned: _Aligned, notes: list[str]) -> None:
    single = [g for g in aligned.group_names if aligned.n_seeds(g) == 1]
    if single:
        names = ", ".join(repr(g) for g in single)
        _warn(
            notes,
            f"{aligned.by} {names} {'has' if len(single) == 1 else 'have'} a single seed "
            "(checkpoint): SD over seeds is undefined (shown as n/a); the mean is still reported",
        )


# =================================================================================================
# Output helpers
# =================================================================================================
def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write_csv(path: Path, df: pd.DataFrame) -> None:
    _atomic_write_text(path, df.to_csv(index=False, float_format=_CSV_FLOAT, lineterminator="\n"))


def _atomic_savefig(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        # No creation date / software stamp: the same numbers give the same file.
        metadata = {"CreationDate": None} if path.suffix == ".pdf" else {"Software": None}
        fig.savefig(tmp, dpi=150, bbox_inches="tight", metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _figure_paths(out: str | Path) -> dict[str, Path]:
    out = Path(out)
    if out.suffix.lower() not in (".png", ".pdf"):
        raise UserInputError(f"--out must end in .png or .pdf (both are written); got {out}")
    stem = out.with_suffix("")
    return {
        "png": stem.with_suffix(".png"),
        "pdf": stem.with_suffix(".pdf"),
        "csv": stem.with_suffix(".csv"),
    }


def _is_percent(metric: str) -> bool:
    return metric != "auroc"


def _fmt_value(x: float, metric: str) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{100 * x:.1f}" if _is_percent(metric) else f"{x:.3f}"


def _fmt_mean_sd(mean: float, sd: float, metric: str) -> str:
    return f"{_fmt_value(mean, metric)} ± {_fmt_value(sd, metric)}"


def _fmt_signed(x: float, metric: str) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{100 * x:+.1f}" if _is_percent(metric) else f"{x:+.3f}"


def _fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _p_text(p: float) -> str:
    """``p = 0.012`` / ``p < 0.001`` / ``p = n/a``."""
    text = _fmt_p(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def _fmt_diff(d: float, lo: float, hi: float, p: float, metric: str) -> str:
    return (
        f"{_fmt_signed(d, metric)} [{_fmt_signed(lo, metric)}, {_fmt_signed(hi, metric)}], "
        f"{_p_text(p)}"
    )


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(_md_escape(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_page(title: str, header: list[str], rows: list[list[str]], notes: list[str]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    foot = "\n".join(f"<li>{esc(n)}</li>" for n in notes)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{esc(title)}</title>\n<style>\n"
        "body { font-family: sans-serif; margin: 2em; }\n"
        "table { border-collapse: collapse; }\n"
        "th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: right; }\n"
        "th { background: #eee; }\n"
        "td:nth-child(2), th:nth-child(2) { text-align: left; }\n"
        "</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n"
        f"</tbody>\n</table>\n<h2>Notes</h2>\n<ol>\n{foot}\n</ol>\n</body>\n</html>\n"
    )


# =================================================================================================
# Leaderboard
# =================================================================================================
@dataclass
class LeaderboardResult:
    """What :func:`leaderboard` computed and wrote.

    Attributes:
        table: one row per method (the content of ``leaderboard.csv``).
        differences: per shift × magnitude × method, the paired difference to the baseline
            (``differences.csv``), or None without a baseline.
        markdown: the content of ``leaderboard.md``.
        paths: ``{"md", "csv", "html"[, "differences"]: path}``.
        notes: warnings that were also written as footnotes.
    """

    table: pd.DataFrame
    differences: pd.DataFrame | None
    markdown: str
    paths: dict[str, Path]
    notes: list[str]


def leaderboard(
    runs: str | Path | Sequence[str | Path] | Study,
    *,
    out: str | Path,
    by: str = "method",
    baseline: str | None = None,
    metric: str = "balanced_accuracy",
    shifts: Sequence[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    plugins: Sequence[str] = (),
    title: str | None = None,
) -> LeaderboardResult:
    """Leaderboard of methods under shift, written as Markdown, CSV and HTML.

    Per method (value of column ``by``): the clean score (metric at the identity magnitude) and,
    per shift, the sweep mean (normalised area under the metric–magnitude curve), the worst
    magnitude's score and the drop from clean, each as mean ± SD (ddof = 1) over seeds. With a
    ``baseline``: the corruption error relative to it (mean ± SD over seeds of
    ``Σ_{m≠id}(1 − metric) / Σ_{m≠id}(1 − baseline's seed-mean metric)``) and the difference
    of the seed-averaged clean score and sweep mean to the baseline with a percentile CI and
    p-value from a paired bootstrap over test samples (ids resampled jointly for all methods,
    seeds and magnitudes). Rows are sorted by ``overall`` (mean over shifts of the sweep mean),
    best first.

    Args:
        runs: run directories (or a loaded :class:`Study`).
        out: output directory (created).
        by: per-checkpoint column that names the method.
        baseline: a value of ``by`` to compare against (None: no CE / difference columns).
        metric: one of accuracy, balanced_accuracy, auroc, recall.
        shifts: shifts to include (default: all in the runs, sorted).
        n_boot: bootstrap resamples for the differences (0: none).
        seed: resampling seed.
        ci: interval coverage.
        plugins: modules defining extra shifts (for their units and identity).
        title: heading of the Markdown / HTML page.

    Returns:
        :class:`LeaderboardResult`.

    Raises:
        UserInputError: missing runs or columns, unknown metric / baseline / shift, test sets
            that differ between runs.
    """
    study = runs if isinstance(runs, Study) else load_runs(runs, plugins=plugins)
    _check_common(metric, n_boot, ci, study.num_classes)
    aligned = _align(study, by, shifts)
    _check_baseline(aligned, baseline)
    notes: list[str] = []
    _single_seed_notes(aligned, notes)
    boot = n_boot if baseline is not None else 0
    reps = _replicates(aligned, metric, boot, seed, study.num_classes)
    groups = aligned.group_names
    base_idx = groups.index(baseline) if baseline is not None else None

    columns: dict[str, list[Any]] = {by: list(groups)}
    columns["metric"] = [metric] * len(groups)
    columns["n_seeds"] = [aligned.n_seeds(g) for g in groups]
    columns["seeds"] = [" ".join(aligned.seeds[g]) for g in groups]
    diff_rows: list[dict[str, Any]] = []

    def add_stat(name: str, per_ck: np.ndarray) -> None:
        """per_ck [1 + B, K] -> mean, SD over seeds (and paired difference to the baseline)."""
        point = per_ck[0]
        columns[f"{name}_mean"] = list(_group_mean(point, aligned))
        columns[f"{name}_sd_ddof1"] = list(_group_sd(point, aligned))
        if base_idx is None:
            return
        gm = _group_mean(per_ck, aligned)  # [1 + B, G]
        diff = gm - gm[:, [base_idx]]
        est, lo, hi, p = [], [], [], []
        for j in range(len(groups)):
            if j == base_idx:
                est.append(math.nan), lo.append(math.nan), hi.append(math.nan), p.append(math.nan)
                continue
            interval = _interval(diff[1:, j], ci) if boot > 0 else (math.nan,) * 3
            est.append(float(diff[0, j]))
            lo.append(interval[0]), hi.append(interval[1]), p.append(interval[2])
        columns[f"{name}_diff"] = est
        columns[f"{name}_diff_ci_low"] = lo
        columns[f"{name}_diff_ci_high"] = hi
        columns[f"{name}_diff_p"] = p

    clean_shift = next((s for s in aligned.shifts if aligned.identity[s] is not None), None)
    if clean_shift is None:
        _warn(
            notes,
            "no shift has a known identity magnitude: clean score and drop are not reported "
            "(register the shifts or load their plugin with --plugin)",
        )
    else:
        cell = reps[(clean_shift, aligned.identity[clean_shift])]
        add_stat("clean", cell)

    sweep_points: list[np.ndarray] = []
    n_samples: dict[str, set[int]] = {}
    for shift in aligned.shifts:
        mags = aligned.magnitudes[shift]
        ident = aligned.identity[shift]
        curves = np.stack([reps[(shift, m)] for m in mags], axis=-1)  # [1 + B, K, M]
        summary = robustness_summary(mags, curves, ident)
        add_stat(f"{shift}.sweep_mean", summary["sweep_mean"])
        sweep_points.append(_group_mean(summary["sweep_mean"][0], aligned))
        columns[f"{shift}.worst_mean"] = list(_group_mean(summary["worst"][0], aligned))
        columns[f"{shift}.worst_sd_ddof1"] = list(_group_sd(summary["worst"][0], aligned))
        if ident is not None and ident in mags:
            columns[f"{shift}.drop_mean"] = list(_group_mean(summary["drop"][0], aligned))
            columns[f"{shift}.drop_sd_ddof1"] = list(_group_sd(summary["drop"][0], aligned))
        elif clean_shift is not None:
            _warn(notes, f"shift {shift!r}: identity magnitude unknown, drop not reported")
        if base_idx is not None:
            base_curve = curves[0][aligned.members(baseline)].mean(axis=0)  # [M]
            ce = corruption_error(mags, curves[0], base_curve, ident)  # [K]
            columns[f"{shift}.ce_mean"] = list(_group_mean(ce, aligned))
            columns[f"{shift}.ce_sd_ddof1"] = list(_group_sd(ce, aligned))
            for m in mags:
                cell_reps = reps[(shift, m)]
                gm = _group_mean(cell_reps, aligned)
                for j, g in enumerate(groups):
                    if j == base_idx:
                        continue
                    d = gm[:, j] - gm[:, base_idx]
                    lo, hi, p = _interval(d[1:], ci) if boot > 0 else (math.nan,) * 3
                    diff_rows.append(
                        {
                            "shift": shift,
                            "units": aligned.units[shift],
                            "magnitude": m,
                            by: g,
                            "baseline": baseline,
                            "metric": metric,
                            f"{metric}_mean": gm[0, j],
                            f"baseline_{metric}_mean": gm[0, base_idx],
                            "diff": d[0],
                            "diff_ci_low": lo,
                            "diff_ci_high": hi,
                            "diff_p": p,
                            "n_seeds": aligned.n_seeds(g),
                            "baseline_n_seeds": aligned.n_seeds(baseline),
                            "n_samples": aligned.cells[(shift, m)].ids.size,
                        }
                    )
        n_samples[shift] = {aligned.cells[(shift, m)].ids.size for m in mags}
    columns["overall_sweep_mean"] = list(np.mean(sweep_points, axis=0))

    table = pd.DataFrame(columns)
    sort_cols = ["overall_sweep_mean"] + (["clean_mean"] if "clean_mean" in table else [])
    table = table.sort_values(
        [*sort_cols, by], ascending=[False] * len(sort_cols) + [True], kind="stable"
    ).reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    differences = pd.DataFrame(diff_rows) if base_idx is not None else None

    footnotes = _leaderboard_notes(
        study, aligned, metric, baseline, boot, seed, ci, n_samples, clean_shift
    )
    footnotes += notes
    title = title or f"Leaderboard: {_METRIC_TITLES[metric]} under distribution shift"
    header, rows = _leaderboard_rows(table, aligned, metric, baseline, by)
    markdown = (
        f"# {title}\n\n"
        + _markdown_table(header, rows)
        + "\n\n## Notes\n\n"
        + "\n".join(f"{i}. {n}" for i, n in enumerate(footnotes, 1))
        + "\n"
    )
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out} is a file; give a directory for the leaderboard")
    paths = {
        "md": out / "leaderboard.md",
        "csv": out / "leaderboard.csv",
        "html": out / "leaderboard.html",
    }
    _atomic_write_csv(paths["csv"], table)
    _atomic_write_text(paths["md"], markdown)
    _atomic_write_text(paths["html"], _html_page(title, header, rows, footnotes))
    if differences is not None:
        paths["differences"] = out / "differences.csv"
        _atomic_write_csv(paths["differences"], differences)
    return LeaderboardResult(table, differences, markdown, paths, notes)


def _leaderboard_rows(
    table: pd.DataFrame, aligned: _Aligned, metric: str, baseline: str | None, by: str
) -> tuple[list[str], list[list[str]]]:
    header = ["rank", by, "seeds"]
    has_clean = "clean_mean" in table
    if has_clean:
        header.append("clean")
        if baseline is not None:
            header.append(f"Δ clean vs {baseline}")
    for s in aligned.shifts:
        header += [f"{s}: sweep mean", f"{s}: worst"]
        if baseline is not None:
            header += [f"{s}: CE vs {baseline}", f"{s}: Δ sweep mean vs {baseline}"]
    header.append("overall")
    rows = []
    for _, r in table.iterrows():
        is_base = baseline is not None and r[by] == baseline
        row = [str(r["rank"]), str(r[by]), str(r["n_seeds"])]
        if has_clean:
            row.append(_fmt_mean_sd(r["clean_mean"], r["clean_sd_ddof1"], metric))
            if baseline is not None:
                row.append(
                    "(baseline)"
                    if is_base
                    else _fmt_diff(
                        r["clean_diff"],
                        r["clean_diff_ci_low"],
                        r["clean_diff_ci_high"],
                        r["clean_diff_p"],
                        metric,
                    )
                )
        for s in aligned.shifts:
            row.append(
                _fmt_mean_sd(r[f"{s}.sweep_mean_mean"], r[f"{s}.sweep_mean_sd_ddof1"], metric)
            )
            row.append(_fmt_mean_sd(r[f"{s}.worst_mean"], r[f"{s}.worst_sd_ddof1"], metric))
            if baseline is not None:
                ce, ce_sd = r[f"{s}.ce_mean"], r[f"{s}.ce_sd_ddof1"]
                row.append(
                    f"{ce:.2f} ± {ce_sd:.2f}"
                    if math.isfinite(ce_sd)
                    else (f"{ce:.2f} ± n/a" if math.isfinite(ce) else "n/a")
                )
                row.append(
                    "(baseline)"
                    if is_base
                    else _fmt_diff(
                        r[f"{s}.sweep_mean_diff"],
                        r[f"{s}.sweep_mean_diff_ci_low"],
                        r[f"{s}.sweep_mean_diff_ci_high"],
                        r[f"{s}.sweep_mean_diff_p"],
                        metric,
                    )
                )
        row.append(_fmt_value(r["overall_sweep_mean"], metric))
        rows.append(row)
    return header, rows


def _leaderboard_notes(
    study: Study,
    aligned: _Aligned,
    metric: str,
    baseline: str | None,
    n_boot: int,
    seed: int,
    ci: float,
    n_samples: dict[str, set[int]],
    clean_shift: str | None,
) -> list[str]:
    name = _METRIC_TITLES[metric]
    unit = "in % (points)" if _is_percent(metric) else "as a fraction"
    pct = f"{100 * ci:g} %"
    notes = [
        f"Metric: {name} ({metric}), {unit}, computed from the stored predictions. Every "
        "entry 'a ± b' is the mean ± SD (ddof = 1) over seeds (checkpoints) of a method; "
        "n/a = undefined (a single seed).",
    ]
    if clean_shift is not None:
        notes.append(
            f"clean = {name} at the identity magnitude (unshifted images; the same rows under "
            "every shift)."
        )
    notes.append(
        "sweep mean = normalised area under the metric-magnitude curve: trapezoid rule over the "
        "sorted magnitudes divided by the magnitude range. worst = minimum over the sweep "
        "(identity included). leaderboard.csv adds drop = clean − worst."
    )
    if baseline is not None:
        notes.append(
            f"CE = corruption error relative to the baseline {aligned.by} {baseline!r}: "
            "Σ over non-identity magnitudes of (1 − metric) of a seed ÷ the same sum for the "
            f"baseline's seed-mean metric; < 1 is better than {baseline!r}, the baseline's "
            "mean is 1."
        )
        notes.append(
            f"Δ = difference of the seed-averaged score to {baseline!r} with a {pct} "
            f"percentile CI and a two-sided p-value from a paired bootstrap over test samples "
            f"(sample ids resampled jointly for all methods, seeds and magnitudes; "
            f"B = {n_boot} resamples, seed {seed}); p = min(1, 2·min tail fraction beyond 0), "
            f"smallest possible {2 / (n_boot + 1):.2g}. Between-seed variation is in the SDs, "
            "not in these intervals."
        )
    seeds = "; ".join(
        f"{g}: {aligned.n_seeds(g)} ({', '.join(aligned.seeds[g])})" for g in aligned.group_names
    )
    seed_word = "seed" if "seed" in study.table.columns else "checkpoint"
    notes.append(f"Seeds per {aligned.by} ({seed_word} values): {seeds}.")
    counts = _class_counts(aligned, study.class_names)
    sizes = sorted({n for v in n_samples.values() for n in v})
    notes.append(
        f"Test samples per cell: n = {', '.join(map(str, sizes))} ({counts}); the same samples "
        "for every method and seed."
    )
    for s in aligned.shifts:
        ident = aligned.identity[s]
        ident_txt = "unknown" if ident is None else f"{ident:g}"
        notes.append(
            f"Shift {s}: magnitudes {_fmt_list(aligned.magnitudes[s])} ({aligned.units[s]}); "
            f"identity {ident_txt}, {aligned.identity_source[s]}."
        )
    notes.append(f"Runs: {', '.join(study.run_dirs)}.")
    notes.append(
        "Sorted by overall = mean over shifts of the seed-mean sweep mean (best first), then by "
        "clean score."
    )
    return notes


def _class_counts(aligned: _Aligned, class_names: list[str]) -> str:
    first = next(iter(aligned.cells.values()))
    counts = np.bincount(first.labels, minlength=len(class_names))
    return ", ".join(f"{c}: {int(k)}" for c, k in zip(class_names, counts, strict=False))


# =================================================================================================
# Figure 4: metric vs magnitude
# =================================================================================================
@dataclass
class PlotResult:
    """What :func:`plot` computed and wrote: the plotted numbers and the file paths."""

    data: pd.DataFrame
    paths: dict[str, Path]
    notes: list[str]


def _palette(n: int) -> list[Any]:
    import seaborn as sns

    return list(sns.color_palette("colorblind", n))


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
_LINESTYLES = ("-", "--", "-.", ":")


def plot(
    runs: str | Path | Sequence[str | Path] | Study,
    *,
    out: str | Path,
    metric: str = "accuracy",
    hue: str = "method",
    shifts: Sequence[str] | None = None,
    band: str = "sd",
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    plugins: Sequence[str] = (),
    title: str | None = None,
) -> PlotResult:
    """Metric vs shift magnitude, one panel per shift (the paper's Figure 4).

    Lines are the mean over seeds of each ``hue`` group; the band is ±1 SD (ddof = 1) over seeds
    (``band="sd"``; none for a single seed) or the ``ci`` percentile interval of the
    seed-averaged metric from a bootstrap over test samples (``band="ci"``). The x axis is the
    magnitude in the shift's units. Writes ``<out>.png``, ``<out>.pdf`` and the plotted numbers
    as ``<out>.csv``.

    Args:
        runs: run directories (or a loaded :class:`Study`).
        out: figure path ending in ``.png`` or ``.pdf``.
        metric: one of accuracy, balanced_accuracy, auroc, recall.
        hue: per-checkpoint column with one line per value.
        shifts: shifts to draw, in panel order (default: all, sorted).
        band: ``sd`` or ``ci``.
        n_boot, seed, ci: bootstrap for ``band="ci"``.
        plugins: modules defining extra shifts.
        title: figure title (default names metric and band).

    Returns:
        :class:`PlotResult` with the plotted numbers (``data``) and ``paths`` (png, pdf, csv).
    """
    if band not in BANDS:
        raise UserInputError(f"unknown band {band!r}; valid: {', '.join(BANDS)}")
    paths = _figure_paths(out)
    study = runs if isinstance(runs, Study) else load_runs(runs, plugins=plugins)
    _check_common(metric, n_boot, ci, study.num_classes)
    aligned = _align(study, hue, shifts, option="--hue")
    notes: list[str] = []
    if band == "sd":
        _single_seed_notes(aligned, notes)
    boot = n_boot if band == "ci" else 0
    if band == "ci" and boot == 0:
        raise UserInputError("band 'ci' needs n_boot > 0")
    reps = _replicates(aligned, metric, boot, seed, study.num_classes)

    per_ck = []
    for (shift, mag), values in reps.items():
        for k, ck in enumerate(aligned.checkpoints):
            per_ck.append(
                {
                    "_hue": aligned.groups[k],
                    "checkpoint": ck,
                    "shift": shift,
                    "magnitude": mag,
                    metric: values[0, k],
                }
            )
    bands = seed_bands(pd.DataFrame(per_ck), metric, by="_hue")
    rows = []
    for _, r in bands.iterrows():
        shift, mag, g = r["shift"], float(r["magnitude"]), r["_hue"]
        mean, sd = r[f"{metric}_mean"], r[f"{metric}_sd_ddof1"]
        if band == "sd":
            lo, hi = mean - sd, mean + sd
        else:
            gm = _group_mean(reps[(shift, mag)], aligned)[:, aligned.group_names.index(g)]
            lo, hi, _ = _interval(gm[1:], ci)
        rows.append(
            {
                "shift": shift,
                "units": aligned.units[shift],
                "magnitude": mag,
                hue: g,
                "n_seeds": int(r["n_seeds"]),
                "n_samples": aligned.cells[(shift, mag)].ids.size,
                f"{metric}_mean": mean,
                f"{metric}_sd_ddof1": sd,
                f"{metric}_se": r[f"{metric}_se"],
                "band": "sd" if band == "sd" else f"ci{100 * ci:g}_bootstrap_samples",
                "band_low": lo,
                "band_high": hi,
            }
        )
    data = pd.DataFrame(rows)
    order = {s: i for i, s in enumerate(aligned.shifts)}
    gorder = {g: i for i, g in enumerate(aligned.group_names)}
    data = data.sort_values(
        ["shift", hue, "magnitude"],
        key=lambda c: (
            c.map(order) if c.name == "shift" else (c.map(gorder) if c.name == hue else c)
        ),
        ignore_index=True,
    )

    band_txt = (
        "±1 SD over seeds"
        if band == "sd"
        else f"{100 * ci:g} % bootstrap CI over test samples (B = {boot})"
    )
    title = title or f"{_METRIC_TITLES[metric]} vs shift magnitude (mean over seeds, {band_txt})"
    fig = _draw_curves(data, aligned, metric, hue, title)
    _atomic_write_csv(paths["csv"], data)
    _atomic_savefig(fig, paths["png"])
    _atomic_savefig(fig, paths["pdf"])
    return PlotResult(data, paths, notes)


def _draw_curves(data: pd.DataFrame, aligned: _Aligned, metric: str, hue: str, title: str) -> Any:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    shifts = aligned.shifts
    n = len(shifts)
    ncols = n if n <= 3 else (2 if n == 4 else 3)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    colors = _palette(len(aligned.group_names))
    scale = 100.0 if _is_percent(metric) else 1.0
    for i, shift in enumerate(shifts):
        ax = axes[i // ncols][i % ncols]
        d = data[data["shift"] == shift]
        for j, g in enumerate(aligned.group_names):
            dg = d[d[hue] == g].sort_values("magnitude")
            x = dg["magnitude"].to_numpy()
            y = dg[f"{metric}_mean"].to_numpy() * scale
            lo = dg["band_low"].to_numpy() * scale
            hi = dg["band_high"].to_numpy() * scale
            label = f"{g} ({aligned.n_seeds(g)} seed{'s' if aligned.n_seeds(g) != 1 else ''})"
            ax.plot(
                x,
                y,
                color=colors[j],
                marker=_MARKERS[j % len(_MARKERS)],
                linestyle=_LINESTYLES[j % len(_LINESTYLES)],
                markersize=4,
                linewidth=1.6,
                label=label if i == 0 else None,
            )
            if np.isfinite(lo).any():
                ax.fill_between(x, lo, hi, color=colors[j], alpha=0.2, linewidth=0)
        mags = aligned.magnitudes[shift]
        if len(mags) <= 12:
            ax.set_xticks(mags)
            ax.set_xticklabels([f"{m:g}" for m in mags], fontsize=8)
        elif all(float(m).is_integer() for m in mags):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(shift, fontsize=11)
        ax.set_xlabel(aligned.units[shift])
        if i % ncols == 0:
            ax.set_ylabel(_METRIC_TITLES[metric] + (" (%)" if _is_percent(metric) else ""))
        ax.grid(True, color="#dddddd", linewidth=0.6)
        ax.set_axisbelow(True)
    for i in range(n, nrows * ncols):
        axes[i // ncols][i % ncols].set_visible(False)
    fig.legend(loc="outside lower center", ncols=min(len(aligned.group_names), 5), frameon=False)
    fig.suptitle(title, fontsize=11)
    return fig


# =================================================================================================
# Figure 7: ROC of seed ensembles
# =================================================================================================
@dataclass
class RocResult:
    """What :func:`roc` computed and wrote.

    Attributes:
        summary: per method: seeds, AUROC of the seed ensemble with bootstrap CI, and DeLong's
            test against the baseline (``<out>_auroc.csv``).
        curves: the ROC points per method (``<out>.csv``).
        paths: png, pdf, csv, summary.
        notes: warnings.
    """

    summary: pd.DataFrame
    curves: pd.DataFrame
    paths: dict[str, Path]
    notes: list[str]


def _match_magnitude(aligned: _Aligned, shift: str, magnitude: float | str) -> float:
    mags = aligned.magnitudes[shift]
    if isinstance(magnitude, str):
        if magnitude == "strongest":
            ident = aligned.identity[shift]
            if ident is None:
                raise UserInputError(
                    f"shift {shift!r}: identity unknown, cannot pick the strongest magnitude; "
                    "give a number"
                )
            return max(mags, key=lambda m: (abs(m - ident), m))
        try:
            magnitude = float(magnitude)
        except ValueError:
            raise UserInputError(
                f"magnitude {magnitude!r} is not a number or 'strongest'"
            ) from None
    hits = [m for m in mags if math.isclose(m, float(magnitude), rel_tol=1e-9, abs_tol=1e-12)]
    if not hits:
        raise UserInputError(
            f"shift {shift!r} has no magnitude {magnitude:g}; available: {_fmt_list(mags)}"
        )
    return hits[0]


def roc(
    runs: str | Path | Sequence[str | Path] | Study,
    *,
    shift: str,
    magnitude: float | str,
    out: str | Path,
    by: str = "method",
    baseline: str | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    plugins: Sequence[str] = (),
    title: str | None = None,
) -> RocResult:
    """ROC curves of seed ensembles at one shift magnitude (the paper's Figure 7).

    Per method (value of ``by``), the ensemble is the mean positive-class probability over its
    seeds. The legend gives its AUROC with a ``ci`` percentile bootstrap interval over test
    samples, and for every method but the baseline DeLong's two-sided test of its AUROC against
    the baseline's (same samples). Binary tasks only; the positive class is the second class.

    Args:
        runs: run directories (or a loaded :class:`Study`).
        shift: shift name; magnitude: a magnitude of its sweep, or ``"strongest"`` (farthest
            from the identity).
        out: figure path ending in ``.png`` or ``.pdf``.
        by: per-checkpoint column naming the method.
        baseline: reference method for DeLong's test (default: the first method in sorted order).
        n_boot, seed, ci: bootstrap of the AUROC interval.
        plugins: modules defining extra shifts.
        title: figure title.

    Returns:
        :class:`RocResult`.
    """
    from sklearn.metrics import roc_curve

    from shiftbench.stats import bootstrap_ci, metric_values

    paths = _figure_paths(out)
    paths["summary"] = paths["csv"].with_name(paths["csv"].stem + "_auroc.csv")
    study = runs if isinstance(runs, Study) else load_runs(runs, plugins=plugins)
    if study.num_classes != 2:
        raise UserInputError(
            f"roc needs a binary task; these runs have {study.num_classes} classes "
            f"({', '.join(study.class_names)})"
        )
    _check_common("auroc", n_boot, ci, 2)
    if n_boot < 1:
        raise UserInputError("roc needs n_boot ≥ 1 for the AUROC interval")
    aligned = _align(study, by, [shift])
    _check_baseline(aligned, baseline)
    mag = _match_magnitude(aligned, shift, magnitude)
    cell = aligned.cells[(shift, mag)]
    if len(np.unique(cell.labels)) < 2:
        raise UserInputError(f"{shift} {mag:g}: the test set has one class only; AUROC undefined")
    notes: list[str] = []
    ref = baseline if baseline is not None else aligned.group_names[0]
    positive = study.class_names[1]
    ens = {g: ensemble_probs(cell.probs[aligned.members(g)])[:, 1] for g in aligned.group_names}
    summary_rows, curve_rows = [], []
    for g in aligned.group_names:
        scores = ens[g]
        two = np.stack([1.0 - scores, scores], axis=1)
        res = bootstrap_ci(
            lambda w, y, p, pr: metric_values("auroc", w, y, p, pr),
            cell.labels,
            two.argmax(axis=1),
            two,
            n_boot=n_boot,
            ci=ci,
            seed=seed,
        )
        row: dict[str, Any] = {
            by: g,
            "shift": shift,
            "units": aligned.units[shift],
            "magnitude": mag,
            "n_seeds": aligned.n_seeds(g),
            "n_samples": cell.ids.size,
            "auroc": res.estimate,
            "auroc_ci_low": res.ci_low,
            "auroc_ci_high": res.ci_high,
            "baseline": ref,
        }
        if g != ref:
            dl = delong_test(cell.labels, scores, ens[ref])
            row.update(
                {
                    "delong_diff": dl.difference,
                    "delong_ci_low": dl.ci_low,
                    "delong_ci_high": dl.ci_high,
                    "delong_z": dl.z,
                    "delong_p": dl.p_value,
                }
            )
        summary_rows.append(row)
        fpr, tpr, thr = roc_curve(cell.labels, scores, pos_label=1)
        for f, t, th in zip(fpr, tpr, thr, strict=True):
            curve_rows.append({by: g, "fpr": f, "tpr": t, "threshold": th})
    summary = pd.DataFrame(summary_rows)
    for col in ("delong_diff", "delong_ci_low", "delong_ci_high", "delong_z", "delong_p"):
        if col not in summary:
            summary[col] = np.nan
    curves = pd.DataFrame(curve_rows)

    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 6.0), layout="constrained")
    ax = fig.subplots()
    colors = _palette(len(aligned.group_names))
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1)
    for j, r in summary.iterrows():
        g = r[by]
        cg = curves[curves[by] == g]
        label = (
            f"{g} (ensemble of {r['n_seeds']}): AUROC {r['auroc']:.3f} "
            f"[{r['auroc_ci_low']:.3f}, {r['auroc_ci_high']:.3f}]"
        )
        if g != ref:
            label += (
                f"\n  vs {ref}: Δ {r['delong_diff']:+.3f}, DeLong Z = {r['delong_z']:.2f}, "
                f"{_p_text(r['delong_p'])}"
            )
        ax.plot(
            cg["fpr"],
            cg["tpr"],
            color=colors[j],
            linestyle=_LINESTYLES[j % len(_LINESTYLES)],
            linewidth=1.8,
            label=label,
        )
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (1 − specificity)")
    ax.set_ylabel(f"true positive rate (sensitivity, positive = {positive})")
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.legend(loc="lower right", fontsize=7.5, frameon=True)
    ax.set_title(
        title
        or (
            f"ROC of seed ensembles: {shift}, {aligned.units[shift]} = {mag:g}, "
            f"n = {cell.ids.size}\nAUROC {100 * ci:g} % bootstrap CI (B = {n_boot}); "
            f"DeLong two-sided vs {ref}"
        ),
        fontsize=9,
    )
    _atomic_write_csv(paths["csv"], curves)
    _atomic_write_csv(paths["summary"], summary)
    _atomic_savefig(fig, paths["png"])
    _atomic_savefig(fig, paths["pdf"])
    return RocResult(summary, curves, paths, notes)


# =================================================================================================
# figures: everything from a TOML spec
# =================================================================================================
@dataclass
class FiguresResult:
    """Outputs of :func:`figures`: ``{name: {kind: path}}`` and the index file."""

    outputs: dict[str, dict[str, Path]]
    index: Path
    notes: list[str]


_TOP_KEYS = {
    "title",
    "root",
    "runs",
    "out",
    "by",
    "baseline",
    "n_boot",
    "seed",
    "ci",
    "plugins",
    "leaderboard",
    "plot",
    "roc",
}
_ENTRY_KEYS = {
    "leaderboard": {
        "name",
        "runs",
        "metric",
        "by",
        "baseline",
        "shifts",
        "n_boot",
        "seed",
        "ci",
        "title",
    },
    "plot": {"name", "runs", "metric", "hue", "shifts", "band", "n_boot", "seed", "ci", "title"},
    "roc": {
        "name",
        "runs",
        "shift",
        "magnitude",
        "by",
        "baseline",
        "n_boot",
        "seed",
        "ci",
        "title",
    },
}


def _spec_error(spec: Path, message: str) -> UserInputError:
    return UserInputError(f"{spec}: {message}")


# Expected TOML types of spec values (a list: every element of that type).
_SPEC_TYPES: dict[str, Any] = {
    "title": str,
    "root": str,
    "out": str,
    "name": str,
    "by": str,
    "baseline": str,
    "metric": str,
    "hue": str,
    "band": str,
    "shift": str,
    "n_boot": int,
    "seed": int,
    "ci": (float, int),
    "runs": (str, list),
    "plugins": list,
    "shifts": list,
    "magnitude": (float, int, str),
}


def _check_spec_types(spec: Path, where: str, item: dict[str, Any]) -> None:
    for key, value in item.items():
        want = _SPEC_TYPES.get(key)
        if want is None:
            continue
        ok = isinstance(value, want) and not (isinstance(value, bool) and want is not bool)
        if ok and isinstance(value, list):
            ok = all(isinstance(v, str) for v in value)
        if not ok:
            label = where if where == "top level" else f"[[{where}]] {item.get('name', '?')!r}"
            raise _spec_error(spec, f"{label}: {key} = {value!r} has the wrong type")


def figures(spec: str | Path, *, root: str | Path | None = None) -> FiguresResult:
    """Regenerate every table and figure listed in a TOML spec, from stored run directories.

    The spec (see ``benchmarks/demo.toml`` and ``docs/reference/cli-report.md``) names the runs,
    the output folder, defaults (``by``, ``baseline``, ``n_boot``, ``seed``, ``ci``) and lists
    ``[[leaderboard]]``, ``[[plot]]`` and ``[[roc]]`` entries, each with a unique ``name``.
    Relative paths are resolved against ``root`` (argument, else the spec's ``root`` key relative
    to the spec file, else the spec's folder). Outputs: ``<out>/<name>/leaderboard.*``,
    ``<out>/<name>.{png,pdf,csv}`` and ``<out>/index.md``. Seeded throughout: running it twice
    gives byte-identical CSV and Markdown files.

    Raises:
        UserInputError: unreadable spec, unknown keys, duplicate names, or any error of the
            entries (prefixed with the entry's name).
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise UserInputError("shiftbench figures needs Python ≥ 3.11 (tomllib)") from None

    spec = Path(spec)
    if not spec.is_file():
        raise UserInputError(f"figures spec {spec} does not exist")
    try:
        cfg = tomllib.loads(spec.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise _spec_error(spec, f"not valid TOML ({e})") from e
    unknown = set(cfg) - _TOP_KEYS
    if unknown:
        raise _spec_error(
            spec,
            f"unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(_TOP_KEYS))}",
        )
    if root is not None:
        base = Path(root)
    else:
        base = spec.parent / str(cfg.get("root", "."))
    if "out" not in cfg:
        raise _spec_error(spec, "missing key 'out' (output folder)")
    out_dir = base / str(cfg["out"])
    defaults = {k: cfg[k] for k in ("by", "baseline", "n_boot", "seed", "ci") if k in cfg}
    plugins = list(cfg.get("plugins", []))
    default_runs = cfg.get("runs")

    entries: list[tuple[str, dict[str, Any]]] = []
    for kind in ("leaderboard", "plot", "roc"):
        items = cfg.get(kind, [])
        if not isinstance(items, list):
            raise _spec_error(spec, f"{kind} must be an array of tables ([[{kind}]])")
        for item in items:
            bad = set(item) - _ENTRY_KEYS[kind]
            if bad:
                raise _spec_error(
                    spec,
                    f"[[{kind}]] {item.get('name', '?')!r}: unknown key(s) "
                    f"{', '.join(sorted(bad))}; valid: {', '.join(sorted(_ENTRY_KEYS[kind]))}",
                )
            if "name" not in item:
                raise _spec_error(spec, f"a [[{kind}]] entry has no 'name'")
            entries.append((kind, item))
    if not entries:
        raise _spec_error(spec, "lists no [[leaderboard]], [[plot]] or [[roc]] entries")
    names = [item["name"] for _, item in entries]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise _spec_error(spec, f"duplicate entry name(s): {', '.join(dup)}")

    for kind, item in entries:
        _check_spec_types(spec, kind, item)
    _check_spec_types(spec, "top level", {k: v for k, v in cfg.items() if k not in _ENTRY_KEYS})

    studies: dict[tuple[str, ...], Study] = {}

    def study_for(item: dict[str, Any]) -> tuple[Study, list[str]]:
        runs = item.get("runs", default_runs)
        if not runs:
            raise _spec_error(spec, f"{item['name']!r}: no 'runs' (top level or in the entry)")
        runs = [runs] if isinstance(runs, str) else list(runs)
        key = tuple(runs)
        if key not in studies:
            study = load_runs([base / r for r in runs], plugins=plugins)
            study.run_dirs = list(runs)  # as written in the spec: stable across machines
            studies[key] = study
        return studies[key], runs

    outputs: dict[str, dict[str, Path]] = {}
    notes: list[str] = []
    index = [
        f"# {cfg.get('title', 'Figures and tables')}",
        "",
        f"Generated by `shiftbench figures {spec.name}` from stored predictions.",
        "",
    ]
    for kind, item in entries:
        name = item["name"]
        opts = {**defaults, **{k: v for k, v in item.items() if k not in ("name", "runs")}}
        try:
            study, runs = study_for(item)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ReportWarning)
                if kind == "leaderboard":
                    opts.pop("hue", None)
                    res = leaderboard(study, out=out_dir / name, **opts)
                    outputs[name] = res.paths
                elif kind == "plot":
                    by_default = opts.pop("by", "method")
                    opts.setdefault("hue", by_default)
                    opts.pop("baseline", None)
                    res = plot(study, out=out_dir / f"{name}.png", **opts)
                    outputs[name] = res.paths
                else:
                    if "shift" not in opts or "magnitude" not in opts:
                        raise UserInputError("[[roc]] needs 'shift' and 'magnitude'")
                    res = roc(study, out=out_dir / f"{name}.png", **opts)
                    outputs[name] = res.paths
            notes += [
                f"{name}: {w.message}" for w in caught if issubclass(w.category, ReportWarning)
            ]
        except UserInputError as e:
            raise _spec_error(spec, f"[[{kind}]] {name!r}: {e}") from e
        index.append(f"## {name} ({kind})")
        index.append("")
        index.append(f"runs: {', '.join(runs)}")
        index.append("")
        for fkind, p in outputs[name].items():
            index.append(f"- {fkind}: [{p.relative_to(out_dir)}]({p.relative_to(out_dir)})")
        index.append("")
    for n in notes:
        warnings.warn(n, ReportWarning, stacklevel=2)
    if notes:
        index += ["## Warnings", "", *[f"- {n}" for n in notes], ""]
    index_path = out_dir / "index.md"
    _atomic_write_text(index_path, "\n".join(index))
    return FiguresResult(outputs, index_path, notes)
