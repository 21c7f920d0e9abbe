"""Aligning a study: checkpoints grouped by a meta column, the common sweep, the shifts' axes.

Everything here works on the study's index (:class:`shiftbench.report.study.Study`): no
prediction row is read. Each shift's units, identity magnitude and sweep come from the run
directories' manifests (``shifts``: ``name``, ``magnitudes``, ``identity``, ``units``); only a
format-1 directory whose manifest does not record a shift falls back to the shift registry.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shiftbench.errors import UserInputError
from shiftbench.report.notes import ReportWarning
from shiftbench.report.study import Study
from shiftbench.run import rundir


@dataclass
class CellInfo:
    """One shift × magnitude: sample count and class counts (of the first checkpoint)."""

    shift: str
    magnitude: float
    n: int
    class_counts: np.ndarray


@dataclass
class Aligned:
    """Checkpoints × cells of a study, grouped by a meta column (no predictions held)."""

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
    cells: dict[tuple[str, float], CellInfo]
    universe: np.ndarray  # sorted union of sample ids of the selected shifts
    runs_of: dict[str, str]  # checkpoint -> run

    def members(self, group: str) -> np.ndarray:
        return np.array([g == group for g in self.groups])

    def n_seeds(self, group: str) -> int:
        return int(self.members(group).sum())


def fmt_list(values: Iterable[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def _group_order(values: pd.Series) -> list[Any]:
    uniq = list(pd.unique(values))
    try:
        return sorted(uniq)
    except TypeError:
        return sorted(uniq, key=str)


def align(study: Study, by: str, shifts: Sequence[str] | None, option: str = "--by") -> Aligned:
    """Group the checkpoints by ``by`` and check that they share one sweep and one test set.

    Raises:
        UserInputError: unknown column or shift, a checkpoint lacking a shift, different
            magnitudes or sample counts between checkpoints.
    """
    key = (by, tuple(shifts) if shifts else None)
    if key in study._aligned:
        return study._aligned[key]
    study.check_column(by, option)
    grid, shift_list = _select_shifts(study.grid, shifts)
    per_ck = study.checkpoints[study.checkpoints["checkpoint"].isin(set(grid["checkpoint"]))]
    per_ck = per_ck.set_index("checkpoint", drop=False)
    checkpoints, groups, seeds = _grouped(study, per_ck, by)
    runs_of = per_ck["run"].to_dict()
    magnitudes = _common_sweep(grid, shift_list, checkpoints, runs_of)
    cells = _cells(grid, checkpoints, runs_of, study.num_classes)
    ids = study.samples.loc[study.samples["shift"].isin(shift_list), "sample_id"]
    identity, units, source = shift_axes(study, shift_list)
    aligned = Aligned(
        by=by,
        checkpoints=checkpoints,
        groups=groups,
        group_names=list(dict.fromkeys(groups)),
        seeds=seeds,
        shifts=shift_list,
        magnitudes=magnitudes,
        identity=identity,
        units=units,
        identity_source=source,
        cells=cells,
        universe=np.unique(ids.to_numpy(np.int64)),
        runs_of=runs_of,
    )
    study._aligned[key] = aligned
    return aligned


def _select_shifts(
    grid: pd.DataFrame, shifts: Sequence[str] | None
) -> tuple[pd.DataFrame, list[str]]:
    """The grid rows of the chosen shifts, and the shifts in order (default: all, sorted).

    Raises:
        UserInputError: a chosen shift is not in the runs.
    """
    available = list(pd.unique(grid["shift"]))
    if not shifts:
        return grid, sorted(available)
    unknown = [s for s in shifts if s not in available]
    if unknown:
        raise UserInputError(
            f"shift(s) {', '.join(unknown)} not in the runs; available: {', '.join(available)}"
        )
    return grid[grid["shift"].isin(list(shifts))], list(shifts)


def _grouped(
    study: Study, per_ck: pd.DataFrame, by: str
) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """``(checkpoints, their groups, seed values per group)``, checkpoints in group order.

    Groups sort by their ``by`` value, then unnormalised before normalised runs; the seed
    value of a checkpoint is its ``seed`` column, else its name.
    """
    rank = {v: i for i, v in enumerate(_group_order(per_ck[by]))}
    norm = _normalization(study, per_ck, by)
    checkpoints = sorted(
        per_ck.index, key=lambda ck: (rank[per_ck.at[ck, by]], norm[ck] != "none", norm[ck], ck)
    )
    groups = [group_label(per_ck.at[ck, by], norm[ck]) for ck in checkpoints]
    seeds: dict[str, list[str]] = {}
    for ck, g in zip(checkpoints, groups, strict=True):
        seed_val = per_ck.at[ck, "seed"] if "seed" in per_ck.columns else ck
        seeds.setdefault(g, []).append(str(seed_val))
    return checkpoints, groups, seeds


def group_label(value: Any, normalize: str) -> str:
    """The group of a checkpoint: its ``--by`` value, plus ``+<normalisation>`` when the run
    normalised its images (``sd`` vs ``sd+macenko``: the same models, another condition)."""
    return str(value) if normalize == "none" else f"{value}+{normalize}"


def _normalization(study: Study, per_ck: pd.DataFrame, by: str) -> pd.Series:
    """Stain normalisation of each checkpoint's run (``"none"`` when not recorded, or when the
    groups are formed by the normalisation itself).

    When the study's normalised runs used different targets, the label names the target
    (``macenko:histoqc_template1``) so that they form different groups instead of one.
    """
    column = rundir.NORMALIZE
    if column not in per_ck.columns or by == column:
        return pd.Series("none", index=per_ck.index)
    norm = per_ck[column].fillna("none").astype(str)
    targets = _normalization_targets(study)
    normalised = norm != "none"
    keys = {(norm[ck], targets.get(per_ck.at[ck, "run"])) for ck in norm.index[normalised]}
    if len(keys) <= len({method for method, _ in keys}):
        return norm
    names = {run: name for run, name in targets.items() if name is not None}
    return pd.Series(
        {ck: f"{norm[ck]}:{names.get(per_ck.at[ck, 'run'], 'unknown target')}"
         if normalised[ck] else "none" for ck in norm.index},
    )  # fmt: skip


def _normalization_targets(study: Study) -> dict[str, str | None]:
    """Run → a short name of its normalisation target (file stem, plus the start of its
    SHA-256 when two targets share a stem); None for runs that did not normalise."""
    records = {}
    for source in study.sources:
        record = rundir.read_manifest(source.run_dir).get(rundir.NORMALIZE) or {}
        records[source.run] = record if record.get("target_sha256") else None
    stems: dict[str, set[str]] = {}
    for r in filter(None, records.values()):
        stems.setdefault(Path(r["target"]).stem, set()).add(r["target_sha256"])
    names: dict[str, str | None] = {}
    for run, r in records.items():
        if r is None:
            names[run] = None
            continue
        stem = Path(r["target"]).stem
        names[run] = stem if len(stems[stem]) == 1 else f"{stem}@{r['target_sha256'][:8]}"
    return names


def _common_sweep(
    grid: pd.DataFrame, shifts: list[str], checkpoints: list[str], runs_of: dict[str, str]
) -> dict[str, list[float]]:
    """Every checkpoint must have the same magnitudes of every shift."""
    mags_of = grid.groupby(["shift", "checkpoint"])["magnitude"].unique()
    magnitudes: dict[str, list[float]] = {}
    for shift in shifts:
        ref_ck, ref = None, None
        for ck in checkpoints:
            if (shift, ck) not in mags_of.index:
                raise UserInputError(
                    f"checkpoint {ck!r} ({runs_of[ck]}) has no rows for shift {shift!r}; "
                    "restrict the shifts (--shifts) or add the missing runs"
                )
            mags = sorted(map(float, mags_of[(shift, ck)]))
            if ref is None:
                ref_ck, ref = ck, mags
            elif mags != ref:
                raise UserInputError(
                    f"shift {shift!r}: checkpoint {ck!r} ({runs_of[ck]}) has magnitudes "
                    f"{fmt_list(mags)} but {ref_ck!r} ({runs_of[ref_ck]}) has {fmt_list(ref)}; "
                    "evaluate all runs on the same sweep"
                )
        magnitudes[shift] = ref or []
    return magnitudes


def _cells(
    grid: pd.DataFrame, checkpoints: list[str], runs_of: dict[str, str], num_classes: int
) -> dict[tuple[str, float], CellInfo]:
    """Sample and class counts per cell; every checkpoint must have as many samples."""
    sizes = grid.groupby(["shift", "magnitude", "checkpoint"], sort=True)["n"].sum()
    cells: dict[tuple[str, float], CellInfo] = {}
    for (shift, mag), per_ck in sizes.groupby(level=[0, 1], sort=True):
        n_of = per_ck.droplevel([0, 1])
        if n_of.nunique() != 1:
            big, small = n_of.idxmax(), n_of.idxmin()
            raise UserInputError(
                f"test sets differ at {shift} {mag:g}: checkpoint {big!r} "
                f"({runs_of[big]}) has {n_of.max()} samples, "
                f"{small!r} ({runs_of[small]}) has {n_of.min()}; "
                "combine only runs evaluated on the same data set"
            )
        first = grid[
            (grid["shift"] == shift)
            & (grid["magnitude"] == mag)
            & (grid["checkpoint"] == checkpoints[0])
        ]
        counts = np.zeros(num_classes, dtype=np.int64)
        for label, n in zip(first["label"], first["n"], strict=True):
            if 0 <= label < num_classes:
                counts[label] += n
        cells[(str(shift), float(mag))] = CellInfo(
            str(shift), float(mag), int(n_of.iloc[0]), counts
        )
    return cells


def shift_axes(
    study: Study, shifts: list[str]
) -> tuple[dict[str, float | None], dict[str, str], dict[str, str]]:
    """Units and identity magnitude of each shift, from the runs' manifests.

    A shift recorded in no manifest (format-1 directories written by hand or by an early 0.1)
    falls back to the registered shift of that name; otherwise its units are "magnitude" and its
    identity is unknown (clean score and drop are then not reported).

    Raises:
        UserInputError: two runs record different units or identities for one shift.
    """
    identity: dict[str, float | None] = {}
    units: dict[str, str] = {}
    source: dict[str, str] = {}
    for s in shifts:
        records = [(src.run, src.shifts[s]) for src in study.sources if s in src.shifts]
        if records:
            seen = {
                (_as_float(r.get("identity")), str(r.get("units", "magnitude"))) for _, r in records
            }
            if len(seen) > 1:
                detail = "; ".join(
                    f"{run}: identity {r.get('identity')}, units {r.get('units')!r}"
                    for run, r in records
                )
                raise UserInputError(
                    f"runs record different axes for shift {s!r} ({detail}); "
                    "combine only runs of the same shift"
                )
            identity[s], units[s] = seen.pop()
            source[s] = "recorded in the run manifest"
            continue
        cls, error = _registered(s)
        if cls is not None:
            units[s] = str(cls.units)
            identity[s] = float(cls.identity)
            source[s] = "declared by the registered shift (not recorded in the run manifest)"
            continue
        units[s] = "magnitude"
        identity[s] = None
        source[s] = (
            "unknown (not recorded in the run manifest and not a registered shift"
            + error
            + "; load its plugin with --plugin)"
        )
    return identity, units, source


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _registered(name: str) -> tuple[Any, str]:
    from shiftbench.registry import get_shift_class

    try:
        return get_shift_class(name), ""
    except UserInputError:
        return None, ""
    except ImportError as e:  # a broken shift module must not block reading stored results
        warnings.warn(
            f"shift registry failed to load ({e}); treating {name!r} as unregistered",
            ReportWarning,
            stacklevel=4,
        )
        return None, f"; the shift registry failed to load ({e})"
