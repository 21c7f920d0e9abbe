"""``shiftbench.profile``: per-image statistics of several data sets, and the equivalent shift.

Three stages, kept apart: **compute** (stream every data set in batches through
:func:`~shiftbench.profiling.statistics.image_statistics`; the reference set also through the
blur / sharpen / haematoxylin / eosin sweeps, :mod:`shiftbench.profiling.equivalent`), **render**
(:mod:`shiftbench.profiling.render`) and **write** (atomic files in ``out``):

* ``profile.parquet``: one row per image: ``dataset, sample_id, path`` and the statistics;
* ``summary.csv``: per data set and statistic: ``n, median, q1, q3, iqr, mean``;
* ``sharpness.png/.pdf``, ``stain.png/.pdf``;
* with a reference: ``equivalent_shift.csv`` (one row per other data set and shift) and
  ``equivalent_shift_curves.csv`` (the reference's median statistic along each sweep).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from shiftbench.errors import DataError, UserInputError
from shiftbench.profiling.equivalent import (
    EQUIVALENT_SHIFTS,
    equivalent_shift_table,
    shifted_statistics,
)
from shiftbench.profiling.files import write_csv, write_figure, write_parquet
from shiftbench.profiling.render import sharpness_figure, stain_figure
from shiftbench.profiling.statistics import STATISTICS, image_statistics, one_statistic

__all__ = ["ProfileResult", "parse_data_specs", "profile", "profile_tables", "summarize"]

#: Images per statistics step (bounds memory for large images; results do not depend on it).
_CHUNK = 8


@dataclass
class ProfileResult:
    """Outputs of :func:`profile`.

    Attributes:
        profiles: one row per image (the content of ``profile.parquet``).
        summary: ``summary.csv``.
        equivalent: ``equivalent_shift.csv`` (``None`` without a reference).
        curves: the reference's median statistic per shift and magnitude (``None`` without one).
        paths: ``{name: path}`` of every file written.
        skipped: ``{dataset: number of unreadable images skipped}``.
    """

    profiles: pd.DataFrame
    summary: pd.DataFrame
    equivalent: pd.DataFrame | None
    curves: pd.DataFrame | None
    paths: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)


def parse_data_specs(
    data: Mapping[str, str | os.PathLike[str]] | Sequence[str | os.PathLike[str]],
) -> dict[str, Path]:
    """``["internal=/a", "/b/external"]`` → ``{"internal": /a, "external": /b/external}``.

    ``NAME=PATH`` names a data set; a bare path is named after its folder (or file stem).

    Raises:
        UserInputError: no data set, an empty name or path, or a name given twice.
    """
    pairs: list[tuple[str, str]] = []
    if isinstance(data, Mapping):
        pairs = [(str(k), os.fspath(v)) for k, v in data.items()]
    else:
        if isinstance(data, (str, os.PathLike)):
            data = [data]
        for spec in data:
            text = os.fspath(spec)
            name, sep, path = text.partition("=")
            if not sep or "/" in name or os.sep in name:
                name, path = "", text
            pairs.append((name.strip(), path.strip()))
    if not pairs:
        raise UserInputError("give at least one data set: --data NAME=PATH")
    out: dict[str, Path] = {}
    for name, path in pairs:
        if not path:
            raise UserInputError(f"--data {name}=: the path is empty; write --data {name}=PATH")
        p = Path(path)
        name = name or (p.stem if p.suffix.lower() in (".csv", ".npz") else p.name)
        if not name:
            raise UserInputError(f"--data {path}: cannot name it; write --data NAME={path}")
        if name in out:
            raise UserInputError(
                f"--data name {name!r} is given twice ({out[name]} and {p}); give each data set "
                "its own name with --data NAME=PATH"
            )
        out[name] = p
    return out


def _open(path: Path, image_size: int | None, limit: int | None) -> tuple[Any, bool]:
    """``(data set, sizes differ)``: a data set from ``shiftbench.data``, or a flat folder.

    Unlike ``run``, profiling needs no common size: without ``image_size``, a data set whose
    images differ in size is opened anyway and streamed one image per batch (each image is
    profiled at its own size).
    """
    from shiftbench import data

    if path.is_dir() and not any(d.is_dir() and not d.name.startswith(".") for d in path.iterdir()):
        files = sorted(
            f.name
            for f in path.iterdir()
            if f.is_file()
            and f.suffix.lower() in data.IMAGE_EXTENSIONS
            and not f.name.startswith(".")
        )
        if files:  # labels are not needed to profile: one unnamed class
            files = files[:limit] if limit else files
            ds = data.FileDataset(
                root=path,
                fmt="folder",
                source=path,
                paths=files,
                labels=np.zeros(len(files), dtype=np.int64),
                class_names=["images"],
                labels_are_names=False,
                extras=pd.DataFrame(index=range(len(files))),
                image_size=image_size,
                strict=False,
            )
            return ds, not _one_size(ds)
    try:
        return data.open_dataset(path, image_size=image_size, limit=limit), False
    except DataError as e:
        if image_size is not None or not str(e).startswith("images differ in size"):
            raise
    opener = data._open_csv if path.suffix.lower() == ".csv" else data._open_folder
    return opener(path, limit, False, None), True


def _one_size(ds: Any) -> bool:
    """Whether every image of a file data set has one size (``check_sizes`` passes)."""
    try:
        ds.check_sizes()
    except DataError:
        return False
    return True


def _batches(dataset: Any, batch_size: int, workers: int | None) -> Iterator[Any]:
    from shiftbench.data import make_loader

    yield from make_loader(dataset, batch_size, workers)


def _chunked_statistics(images: torch.Tensor, min_tissue_pixels: int) -> dict[str, torch.Tensor]:
    parts = [
        image_statistics(images[i : i + _CHUNK], min_tissue_pixels=min_tissue_pixels)
        for i in range(0, images.shape[0], _CHUNK)
    ]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _chunked_statistic(images: torch.Tensor, name: str, min_tissue_pixels: int) -> torch.Tensor:
    return torch.cat(
        [
            one_statistic(images[i : i + _CHUNK], name, min_tissue_pixels=min_tissue_pixels)
            for i in range(0, images.shape[0], _CHUNK)
        ]
    )


def profile_tables(
    datasets: Mapping[str, Any],
    *,
    reference: str | None = None,
    batch_size: int = 16,
    workers: int | None = None,
    min_tissue_pixels: int = 1000,
    shifts: Sequence[str] = tuple(EQUIVALENT_SHIFTS),
    one_per_batch: Collection[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, int]]:
    """Compute stage: ``(profiles, reference sweep values or None, skipped counts)``.

    Data sets named in ``one_per_batch`` (images of different sizes) are streamed one image per
    batch.
    """
    frames, sweeps, skipped = [], [], {}
    for name, ds in datasets.items():
        skipped[name] = 0
        size = 1 if name in one_per_batch else batch_size
        for batch in _batches(ds, size, workers):
            skipped[name] += len(batch.skipped)
            if batch.images.shape[0] == 0:
                continue
            ids = batch.sample_ids.tolist()
            stats = _chunked_statistics(batch.images, min_tissue_pixels)
            frame = pd.DataFrame({k: v.cpu().numpy() for k, v in stats.items()})
            frame.insert(0, "path", [ds.paths[i] for i in ids])
            frame.insert(0, "sample_id", np.asarray(ids, dtype=np.int64))
            frame.insert(0, "dataset", name)
            frames.append(frame)
            if name == reference:
                sweeps.append(
                    shifted_statistics(
                        batch.images,
                        ids,
                        lambda x, stat: _chunked_statistic(x, stat, min_tissue_pixels),
                        shifts,
                    )
                )
        if skipped[name] == len(ds):
            raise DataError(f"--data {name}: no image could be read ({len(ds)} unreadable)")
    profiles = pd.concat(frames, ignore_index=True)
    return profiles, (pd.concat(sweeps, ignore_index=True) if sweeps else None), skipped


def summarize(profiles: pd.DataFrame) -> pd.DataFrame:
    """Per data set and statistic: ``n`` (finite values), ``median, q1, q3, iqr, mean``."""
    rows = []
    for name in pd.unique(profiles["dataset"]):
        part = profiles[profiles["dataset"] == name]
        for stat in STATISTICS:
            v = part[stat].to_numpy(dtype=np.float64)
            v = v[np.isfinite(v)]
            if v.size:
                q1, med, q3 = np.percentile(v, [25, 50, 75])
                mean = float(v.mean())
            else:
                q1 = med = q3 = mean = float("nan")
            rows.append(
                {
                    "dataset": name,
                    "statistic": stat,
                    "n": int(v.size),
                    "median": float(med),
                    "q1": float(q1),
                    "q3": float(q3),
                    "iqr": float(q3 - q1),
                    "mean": mean,
                }
            )
    return pd.DataFrame(rows)


def profile(
    data: Mapping[str, str | os.PathLike[str]] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    reference: str | None = None,
    image_size: int | None = None,
    limit: int | None = None,
    batch_size: int = 16,
    workers: int | None = None,
    min_tissue_pixels: int = 1000,
    shifts: Sequence[str] = tuple(EQUIVALENT_SHIFTS),
    figures: bool = True,
) -> ProfileResult:
    """Profile data sets (sharpness, brightness, tissue, OD, Macenko stains) and place them on
    the shift axes of a reference set.

    Args:
        data: ``{name: path}``, or ``["NAME=PATH", …]`` (a bare path is named after its folder).
            Each path is a class-folder tree, a flat folder of images, a CSV manifest or an
            ``.npz`` (:func:`shiftbench.open_dataset`).
        out: output folder (created; the files listed in the module docstring are replaced).
        reference: name of the data set A whose blur / sharpen / haematoxylin / eosin sweeps
            give every other set's equivalent shift (an approximation: see
            :mod:`shiftbench.profiling.equivalent`).
        image_size: resize every image to ``N×N`` first (as ``run`` does); default: each image at
            its own size (a data set whose images differ in size is streamed one image at a
            time).
        limit: profile only the first ``limit`` images of each data set.
        batch_size: images decoded per batch.
        workers: decoding processes (0: in this process; default: as ``run``).
        min_tissue_pixels: fewer tissue pixels → no stain estimate for that image (NaN).
        shifts: shifts to give the equivalent magnitude of (default all four: blur, sharpen,
            haematoxylin, eosin; the stain sweeps cost most).
        figures: render and write the figures (``False``: tables only).

    Returns:
        :class:`ProfileResult`.

    Raises:
        UserInputError: a name given twice, an unknown ``reference``, a reference without any
            other data set.
        DataError: a data set cannot be read.
    """
    specs = parse_data_specs(data)
    if reference is not None:
        if reference not in specs:
            raise UserInputError(
                f"--reference {reference!r} is not one of the --data names "
                f"({', '.join(specs)}); pass one of them"
            )
        if len(specs) < 2:
            raise UserInputError(
                "--reference needs at least one other --data set to place on its shift axes"
            )
    shifts = list(dict.fromkeys(shifts))
    for option, value in (("--limit", limit), ("--image-size", image_size)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise UserInputError(f"{option} must be a whole number >= 1; got {value!r}")
    choices = ", ".join(EQUIVALENT_SHIFTS)
    if not shifts:
        raise UserInputError(f"--shifts is empty; choose from {choices}")
    unknown = [s for s in shifts if s not in EQUIVALENT_SHIFTS]
    if unknown:
        raise UserInputError(
            f"--shifts: {unknown[0]!r} has no equivalent-shift statistic; choose from {choices}"
        )
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserInputError(f"--out {out_dir} is a file; give a folder")
    opened = {name: _open(path, image_size, limit) for name, path in specs.items()}
    datasets = {name: ds for name, (ds, _) in opened.items()}
    mixed = {name for name, (_, differ) in opened.items() if differ}

    profiles, sweep_values, skipped = profile_tables(
        datasets,
        reference=reference,
        batch_size=batch_size,
        workers=workers,
        min_tissue_pixels=min_tissue_pixels,
        shifts=shifts,
        one_per_batch=mixed,
    )
    summary = summarize(profiles)
    table = curves = None
    if reference is not None and sweep_values is not None:
        table, curves = equivalent_shift_table(sweep_values, profiles, reference)

    rendered = (
        {
            "sharpness": sharpness_figure(profiles, table, curves),
            "stain": stain_figure(profiles, table, curves),
        }
        if figures
        else {}
    )

    paths = {
        "profile": write_parquet(out_dir / "profile.parquet", profiles),
        "summary": write_csv(out_dir / "summary.csv", summary),
    }
    if table is not None and curves is not None:
        paths["equivalent_shift"] = write_csv(out_dir / "equivalent_shift.csv", table)
        paths["equivalent_shift_curves"] = write_csv(
            out_dir / "equivalent_shift_curves.csv", curves
        )
    for name, fig in rendered.items():
        for ext in ("png", "pdf"):
            paths[f"{name}_{ext}"] = write_figure(fig, out_dir / f"{name}.{ext}")
    return ProfileResult(profiles, summary, table, curves, paths, skipped)
