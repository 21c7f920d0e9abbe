"""The sweep: evaluate checkpoints on a test set at every magnitude of every shift.

``run(checkpoints, data, shifts, out=DIR)`` writes a *run directory* (see
docs/reference/run-directory.md) from which every table and figure is derived without running a
model again:

* ``predictions.parquet`` — one row per checkpoint × shift × magnitude × sample;
* ``metrics.csv`` — one row per checkpoint × shift × magnitude (× group), from
  :func:`shiftbench.metrics.cell_metrics` with the run seed;
* ``manifest.json`` — command, versions, checksums, data fingerprint, seeds, device, skipped files,
  unchanged counts, timings and finished cells;
* ``parts/`` — the raw results, one file per batch and invocation, written atomically as soon as a
  batch is done. They are the source of truth: the tables above are rebuilt from them.

How the work is organised: each batch of images is decoded once; for each shift one
:meth:`~shiftbench.shifts.base.Shift.sweep` covers all magnitudes, and every checkpoint sees every
shifted batch. The identity magnitude is evaluated once per checkpoint (the *clean* cell) and its
rows are repeated under every shift.

Resume: a *cell* is checkpoint (by SHA-256) × shift × magnitude. Each part file records which
cells of which batch it holds, so after an interruption (even ``kill -9``) ``resume=True`` computes
only the missing (batch, cell) pairs — including cells that a new command adds (another
checkpoint or shift) — and rebuilds the tables, sorted deterministically, so they are identical to
those of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from shiftbench.checkpoint import LoadedCheckpoint, load_checkpoint
from shiftbench.data import Batch, ImageDataset, default_workers, make_loader, open_dataset
from shiftbench.devices import describe_device, resolve_device
from shiftbench.errors import DataError, RunError, UserInputError
from shiftbench.preprocess import Preprocess
from shiftbench.registry import get_shift, list_shifts, load_plugins
from shiftbench.shifts.base import Shift

__all__ = ["MANIFEST_FORMAT", "RunResult", "run"]

log = logging.getLogger("shiftbench.run")

MANIFEST_FORMAT = "shiftbench-run/1"
PREDICTIONS = "predictions.parquet"
METRICS = "metrics.csv"
MANIFEST = "manifest.json"
PARTS = "parts"
_CLEAN = ""  # shift key of the clean (identity) cell in part files
_LOCK = ".shiftbench.lock"
DEFAULT_BATCH_SIZE = 64

Cell = tuple[str, str, float]  # (checkpoint sha256, shift key, magnitude); clean: (sha, "", 0.0)


@dataclass
class RunResult:
    """What :func:`run` produced.

    Attributes:
        out_dir: the run directory.
        predictions_path, metrics_path, manifest_path: the three tables.
        metrics: the contents of ``metrics.csv``.
        manifest: the contents of ``manifest.json``.
    """

    out_dir: Path
    predictions_path: Path
    metrics_path: Path
    manifest_path: Path
    metrics: pd.DataFrame
    manifest: dict[str, Any]

    def predictions(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Read ``predictions.parquet`` (optionally only some columns)."""
        return pd.read_parquet(self.predictions_path, columns=list(columns) if columns else None)

    def summary(self) -> Any:
        """A rich renderable: accuracy per magnitude (rows) per checkpoint (columns), per shift."""
        return summary_table(self.metrics, self.manifest)


@dataclass
class _ShiftPlan:
    shift: Shift
    key: str  # name, plus parameters when not the defaults
    magnitudes: list[float]

    @property
    def name(self) -> str:
        return self.shift.name

    @property
    def has_identity(self) -> bool:
        return self.shift.identity in self.magnitudes

    @property
    def non_identity(self) -> list[float]:
        return [m for m in self.magnitudes if m != self.shift.identity]


@dataclass
class _Model:
    ckpt: LoadedCheckpoint
    name: str
    prep: Preprocess


@dataclass
class _PartIndex:
    """What the part files of a run directory hold."""

    done: dict[int, set[Cell]] = field(default_factory=dict)  # batch → cells
    files: list[Path] = field(default_factory=list)
    skipped: dict[int, list[list[Any]]] = field(default_factory=dict)  # batch → [[sid, path, why]]
    unchanged: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# public entry point
# ---------------------------------------------------------------------------------------------


def run(
    checkpoints: Sequence[str | os.PathLike[str] | LoadedCheckpoint] | str | os.PathLike[str],
    data: str | os.PathLike[str] | ImageDataset,
    shifts: Sequence[str | Shift] | str = "all",
    *,
    out: str | os.PathLike[str],
    magnitudes: Sequence[float] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str | torch.device = "auto",
    batch_size: int | None = None,
    workers: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    group_by: str | None = None,
    n_boot: int = 1000,
    strict: bool = False,
    arch: str | None = None,
    num_classes: int | None = None,
    trust_checkpoint: bool = False,
    plugins: Sequence[str] = (),
    image_size: int | None = None,
    channels_last: bool | None = None,
    progress: bool = False,
    console: Any = None,
    command: Sequence[str] | None = None,
) -> RunResult:
    """Evaluate checkpoints on a test set under every magnitude of every shift.

    Mirrors ``shiftbench run`` (see ``shiftbench run --help``).

    Args:
        checkpoints: checkpoint file(s) (any format :func:`~shiftbench.load_checkpoint` reads) or
            already loaded :class:`~shiftbench.checkpoint.LoadedCheckpoint` objects.
        data: image folder, CSV manifest, ``.npz`` file or an opened data set.
        shifts: shift names (or :class:`Shift` instances), ``"all"``, or a comma-separated string.
        out: run directory.
        magnitudes: magnitudes for every shift (default: each shift's own sweep).
        resume: reuse the finished cells in ``out`` and compute only the rest.
        overwrite: delete the run files in ``out`` first.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        batch_size: images per batch (default 64; with ``resume``, the run's own batch size).
            Part of the run's identity: a resumed run must keep it.
        workers: image-decoding processes (default: half the cores, 1 to 4).
        seed: seed of stochastic shifts and of the bootstrap.
        limit: use only the first ``limit`` samples.
        group_by: extra CSV column; metrics get one row per value.
        n_boot: bootstrap resamples for the confidence intervals (0: no CIs).
        strict: unreadable images are errors instead of being skipped.
        arch, num_classes, trust_checkpoint: passed to :func:`~shiftbench.load_checkpoint`.
        plugins: modules to import so that the shifts they define are registered.
        image_size: resize images to ``image_size²`` on load (needed when sizes differ).
        channels_last: run models in channels-last memory format (default: on for the CPU).
        progress: show a rich progress bar.
        console: rich Console for progress and messages (default: log messages instead).
        command: the command line, for the manifest.

    Returns:
        A :class:`RunResult` with the table paths and the metrics DataFrame.

    Raises:
        UserInputError, CheckpointError, DataError, RunError: one-line messages saying what is
            wrong; nothing already written is deleted (except with ``overwrite``).
    """
    t_start = time.perf_counter()
    started_at = _now()
    say = _Messenger(console)
    out_dir = Path(out)
    if resume and overwrite:
        raise UserInputError("--resume and --overwrite exclude each other; pick one")
    if batch_size is None:
        batch_size = _stored_batch_size(out_dir) if resume else None
        batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    batch_size = _positive(batch_size, "batch size")
    n_boot = _non_negative(n_boot, "--n-boot")
    seed = _integer(seed, "seed")
    if workers is None:
        workers = default_workers()
    workers = _non_negative(workers, "workers")
    if plugins:
        load_plugins(list(plugins))
    plans = _plan_shifts(shifts, magnitudes)
    dev = resolve_device(device)
    if channels_last is None:
        channels_last = dev.type == "cpu"

    # -- inputs: data, checkpoints (all validated before anything is written) -------------------
    t0 = time.perf_counter()
    if isinstance(data, ImageDataset):
        if limit is not None or image_size is not None:
            raise UserInputError(
                "pass limit/image_size to open_dataset, not with an opened data set"
            )
        dataset = data
        dataset.strict = dataset.strict or strict
    else:
        dataset = open_dataset(data, limit=limit, strict=strict, image_size=image_size)
    if len(dataset) == 0:
        raise DataError(f"data set {dataset.source} is empty")
    models = _load_models(checkpoints, arch, num_classes, trust_checkpoint, dev, channels_last, say)
    out_size = _probe(models, dataset, dev)
    class_names, label_map = _resolve_classes(dataset, models, out_size)
    if group_by is not None and group_by not in dataset.extras.columns:
        have = ", ".join(map(str, dataset.extras.columns)) or "none (only CSV manifests have them)"
        raise UserInputError(
            f"--group-by {group_by!r} is not a column of the data; columns: {have}"
        )
    _check_meta_vs_extras(models, dataset)
    t_load = time.perf_counter() - t0

    # -- the run's identity and its cells -------------------------------------------------------
    config = {
        "data_fingerprint": dataset.fingerprint(),
        "n_samples": len(dataset),
        "image_size": dataset.image_size,
        "batch_size": batch_size,
        "seed": seed,
        "class_names": class_names,
    }
    cells = _requested_cells(models, plans)
    n = len(dataset)
    grid = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]

    with _locked(out_dir):
        previous = _check_out_dir(out_dir, config, resume, overwrite)
        if overwrite:
            _remove_run_files(out_dir)
            previous = None
        _clean_temp_files(out_dir)
        invocation = {
            "command": list(command) if command is not None else _default_command(),
            "started_at": started_at,
            "resume": bool(resume),
        }
        manifest = _base_manifest(
            previous,
            config,
            invocation,
            models,
            dataset,
            plans,
            class_names,
            dev,
            workers,
            batch_size,
            seed,
            n_boot,
            group_by,
            strict,
            channels_last,
        )
        manifest["status"] = "running"
        _write_json(out_dir / MANIFEST, manifest)

        try:
            index = _scan_parts(out_dir / PARTS)
            todo = _pending(grid, index, cells)
            n_images_todo = sum(len(grid[b]) for b, _ in todo)
            if resume and previous is not None:
                say(f"resuming: {len(grid) - len(todo)} of {len(grid)} batches already done")

            # -- the sweep ----------------------------------------------------------------------
            t0 = time.perf_counter()
            timers = {"data_wait": 0.0, "shift": 0.0, "model": 0.0, "write": 0.0}
            if todo:
                _sweep(
                    todo,
                    grid,
                    dataset,
                    models,
                    plans,
                    label_map,
                    dev,
                    seed,
                    workers,
                    out_dir,
                    timers,
                    say,
                    progress,
                    console,
                    batch_size,
                )
            t_sweep = time.perf_counter() - t0

            # -- tables -------------------------------------------------------------------------
            t0 = time.perf_counter()
            index = _scan_parts(out_dir / PARTS)
            missing = [c for b in range(len(grid)) for c in cells if c not in index.done.get(b, ())]
            if missing:  # pragma: no cover - would be a bug in _pending/_sweep
                raise RunError(f"internal error: {len(missing)} (batch, cell) results missing")
            pred_path = out_dir / PREDICTIONS
            per_ckpt = _write_predictions(
                pred_path, index, models, plans, dataset, class_names, cells
            )
            t_pred = time.perf_counter() - t0
            t0 = time.perf_counter()
            metrics = _compute_metrics(per_ckpt, models, plans, dataset, group_by, n_boot, seed)
            metrics_path = out_dir / METRICS
            _write_atomic(metrics_path, lambda p: metrics.to_csv(p, index=False))
            t_metrics = time.perf_counter() - t0

            skipped = sorted(
                {tuple(s) for rows in index.skipped.values() for s in rows}, key=lambda s: s[0]
            )
            unchanged: dict[str, Any] = {}
            for plan in plans:
                counts = [
                    v
                    for (_, key), v in index.unchanged.items()
                    if key == plan.key and "unchanged" in v
                ]
                if counts:
                    unchanged[plan.name] = {
                        "count": int(sum(v.get("unchanged", 0) for v in counts)),
                        "sample_ids": sorted(
                            int(i) for v in counts for i in v.get("unchanged_ids", [])
                        ),
                    }
            invocation.update(
                finished_at=_now(),
                batches_computed=len(todo),
                images_computed=n_images_todo,
                timings_s={
                    "load": round(t_load, 3),
                    "sweep": round(t_sweep, 3),
                    **{k: round(v, 3) for k, v in timers.items()},
                    "predictions": round(t_pred, 3),
                    "metrics": round(t_metrics, 3),
                    "total": round(time.perf_counter() - t_start, 3),
                },
                images_per_s=round(n_images_todo / t_sweep, 2) if t_sweep > 0 and todo else None,
            )
            manifest["invocations"][-1] = invocation
            manifest.update(
                status="complete",
                skipped_files=[{"sample_id": s[0], "path": s[1], "reason": s[2]} for s in skipped],
                n_skipped=len(skipped),
                unchanged=unchanged,
                done_cells=_done_cells(models, plans),
                compute_seconds_total=round(index.seconds, 3),
            )
            _write_json(out_dir / MANIFEST, manifest)
        except BaseException as e:
            # The parts written so far stay; the manifest says why the tables are missing.
            manifest["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            manifest["error"] = _first_line(e)
            manifest["invocations"][-1]["finished_at"] = _now()
            with contextlib.suppress(Exception):
                _write_json(out_dir / MANIFEST, manifest)
            raise
    if skipped:
        say(f"{len(skipped)} unreadable image(s) skipped; listed in {out_dir / MANIFEST}", "yellow")
    return RunResult(
        out_dir=out_dir,
        predictions_path=pred_path,
        metrics_path=metrics_path,
        manifest_path=out_dir / MANIFEST,
        metrics=metrics,
        manifest=manifest,
    )


# ---------------------------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------------------------


def _plan_shifts(
    shifts: Sequence[str | Shift] | str, magnitudes: Sequence[float] | None
) -> list[_ShiftPlan]:
    items: list[str | Shift] = []
    for s in [shifts] if isinstance(shifts, str | Shift) else list(shifts):
        if isinstance(s, str):
            items += [p.strip() for p in s.split(",") if p.strip()]
        else:
            items.append(s)
    if not items:
        raise UserInputError(f"no shift given; valid shifts: {', '.join(list_shifts())}, all")
    expanded: list[str | Shift] = []
    for s in items:
        if isinstance(s, str) and s == "all":
            expanded += list_shifts()
        else:
            expanded.append(s)
    plans: list[_ShiftPlan] = []
    seen: dict[str, str] = {}
    for s in expanded:
        shift = get_shift(s) if isinstance(s, str) else s
        if not isinstance(shift, Shift):
            raise UserInputError(f"not a shift: {s!r}")
        key = _shift_key(shift)
        if shift.name in seen:
            if seen[shift.name] == key:
                continue  # listed twice (e.g. "blur" and "all")
            raise UserInputError(f"shift {shift.name!r} given twice with different parameters")
        seen[shift.name] = key
        if magnitudes is None:
            mags = [float(m) for m in shift.magnitudes]
        else:
            mags = [shift.check_magnitude(m) for m in magnitudes]
        if not mags:
            raise UserInputError("--magnitudes is empty")
        plans.append(_ShiftPlan(shift, key, list(dict.fromkeys(mags))))
    return plans


def _shift_key(shift: Shift) -> str:
    params = shift.params()
    default = type(shift)().params() if _constructible(type(shift)) else None
    if not params or params == default:
        return shift.name
    return f"{shift.name}{json.dumps(params, sort_keys=True, default=str)}"


def _constructible(cls: type) -> bool:
    try:
        cls()
        return True
    except Exception:
        return False


def _load_models(
    checkpoints: Any,
    arch: str | None,
    num_classes: int | None,
    trust: bool,
    device: torch.device,
    channels_last: bool,
    say: _Messenger,
) -> list[_Model]:
    if isinstance(checkpoints, str | os.PathLike | LoadedCheckpoint):
        checkpoints = [checkpoints]
    checkpoints = list(checkpoints)
    if not checkpoints:
        raise UserInputError("no checkpoint given; pass --ckpt FILE")
    loaded: list[LoadedCheckpoint] = []
    for c in checkpoints:
        if isinstance(c, LoadedCheckpoint):
            c.model.to(device).eval()
            loaded.append(c)
        else:
            loaded.append(
                load_checkpoint(
                    c, arch=arch, num_classes=num_classes, trust_checkpoint=trust, device=device
                )
            )
    by_sha: dict[str, Path] = {}
    for ck in loaded:
        if ck.sha256 in by_sha:
            raise UserInputError(
                f"the same checkpoint is given twice ({by_sha[ck.sha256]} and {ck.path})"
            )
        by_sha[ck.sha256] = ck.path
    names = _unique_names([ck.path for ck in loaded], [ck.name for ck in loaded])
    models = []
    for ck, name in zip(loaded, names, strict=True):
        for note in ck.notes:
            say(f"{name}: {note}")
        if ck.defaults_used:
            say(f"{name}: using default {', '.join(ck.defaults_used)} (recorded in the manifest)")
        if channels_last:
            with contextlib.suppress(Exception):  # e.g. TorchScript modules
                ck.model.to(memory_format=torch.channels_last)
        models.append(_Model(ck, name, ck.preprocess(channels_last=channels_last)))
    return models


def _unique_names(paths: list[Path], names: list[str]) -> list[str]:
    """File stems, disambiguated by parent folders (then a counter) when two are equal."""
    out = list(names)
    for depth in range(1, 4):
        dups = {n for n in out if out.count(n) > 1}
        if not dups:
            return out
        out = [
            "/".join([*p.parts[-depth - 1 : -1], n0]) if n in dups else n
            for p, n, n0 in zip(paths, out, names, strict=True)
        ]
    seen: dict[str, int] = {}
    final = []
    for n in out:
        seen[n] = seen.get(n, 0) + 1
        final.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return final


def _probe(models: list[_Model], dataset: ImageDataset, device: torch.device) -> int:
    """One forward pass per model on a grey image: checks the output shape before any work."""
    size = dataset.native_size or (
        (dataset.image_size, dataset.image_size) if dataset.image_size else None
    )
    if size is None:  # sizes unknown (e.g. all headers unreadable): use the first readable image
        size = (224, 224)
    x = torch.full((1, 3, *size), 128, dtype=torch.uint8, device=device)
    counts = {}
    for m in models:
        try:
            with torch.inference_mode():
                logits = m.ckpt.model(m.prep(x))
        except Exception as e:
            raise RunError(
                f"checkpoint {m.name} fails on a {size[1]}x{size[0]} input "
                f"(input_size {m.ckpt.input_size or 'data size'}): {_first_line(e)}"
            ) from None
        if not torch.is_tensor(logits) or logits.ndim != 2 or logits.shape[0] != 1:
            shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
            raise RunError(
                f"checkpoint {m.name} must return logits of shape [batch, classes]; got {shape}"
            )
        c = int(logits.shape[1])
        if c < 2:
            raise RunError(f"checkpoint {m.name} has {c} output; shiftbench needs >= 2 classes")
        if m.ckpt.num_classes is not None and m.ckpt.num_classes != c:
            raise RunError(
                f"checkpoint {m.name} says {m.ckpt.num_classes} classes but outputs {c} logits"
            )
        if m.ckpt.num_classes is None:
            m.ckpt.num_classes = c
            m.ckpt.notes.append(f"num_classes={c} taken from the model's output")
        counts[m.name] = c
    if len(set(counts.values())) > 1:
        raise UserInputError(
            "checkpoints of one run must have the same number of classes; got "
            + ", ".join(f"{k}: {v}" for k, v in counts.items())
        )
    return next(iter(counts.values()))


def _resolve_classes(
    dataset: ImageDataset, models: list[_Model], num_classes: int
) -> tuple[list[str], np.ndarray]:
    """Class names of the run and the map from data-set labels to model class indices."""
    named = [m for m in models if m.ckpt.class_names]
    ckpt_names = named[0].ckpt.class_names if named else None
    for m in named[1:]:
        if m.ckpt.class_names != ckpt_names:
            raise UserInputError(
                f"checkpoints {named[0].name} and {m.name} have different class names "
                f"({ckpt_names} vs {m.ckpt.class_names}); evaluate them in separate runs"
            )
    data_names = list(dataset.class_names)
    identity = np.arange(max(len(data_names), num_classes), dtype=np.int64)
    labels = dataset.labels
    if dataset.labels_are_names:
        if ckpt_names is not None:
            lookup = {n: i for i, n in enumerate(ckpt_names)}
            unknown = [n for n in data_names if n not in lookup]
            if unknown:
                raise DataError(
                    f"data class(es) {', '.join(unknown)} are not among the checkpoint's classes "
                    f"({', '.join(ckpt_names)}); rename the folders/labels to match"
                )
            return list(ckpt_names), np.array([lookup[n] for n in data_names], dtype=np.int64)
        if len(data_names) != num_classes:
            raise DataError(
                f"the data has {len(data_names)} classes ({', '.join(data_names)}) but the model "
                f"outputs {num_classes}; use a CSV manifest with integer labels to say which "
                "index each class has"
            )
        return data_names, identity
    too_big = np.flatnonzero(labels >= num_classes)
    if len(too_big):
        i = int(too_big[0])
        raise DataError(
            f"label {int(labels[i])} of {dataset.paths[i]} is outside the model's "
            f"{num_classes} classes (0..{num_classes - 1})"
        )
    if ckpt_names is not None:
        given = [i for i, n in enumerate(data_names) if n != str(i) and i < num_classes]
        clash = [i for i in given if data_names[i] != ckpt_names[i]]
        if clash:
            i = clash[0]
            raise DataError(
                f"class {i} is {data_names[i]!r} in the data but {ckpt_names[i]!r} in the "
                "checkpoint; fix the labels or the class names"
            )
        return list(ckpt_names), identity
    names = [data_names[i] if i < len(data_names) else str(i) for i in range(num_classes)]
    return names, identity


def _check_meta_vs_extras(models: list[_Model], dataset: ImageDataset) -> None:
    extras = set(map(str, dataset.extras.columns))
    for m in models:
        clash = sorted(extras & set(m.ckpt.meta))
        if clash:
            raise UserInputError(
                f"checkpoint {m.name} meta key {clash[0]!r} is also a column of the data "
                "manifest; rename one of them"
            )


def _requested_cells(models: list[_Model], plans: list[_ShiftPlan]) -> list[Cell]:
    cells: list[Cell] = []
    clean = any(p.has_identity for p in plans)
    for m in models:
        if clean:
            cells.append((m.ckpt.sha256, _CLEAN, 0.0))
        for p in plans:
            cells += [(m.ckpt.sha256, p.key, mag) for mag in p.non_identity]
    return cells


def _pending(grid: list[list[int]], index: _PartIndex, cells: list[Cell]) -> list[tuple[int, set]]:
    todo = []
    for b in range(len(grid)):
        need = {c for c in cells if c not in index.done.get(b, ())}
        if need:
            todo.append((b, need))
    return todo


# ---------------------------------------------------------------------------------------------
# the output directory
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` so two runs never write into it at once."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    fd = os.open(out_dir / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(
                f"{out_dir} is in use by another shiftbench run; wait for it or use another --out"
            ) from None
        yield
    finally:
        os.close(fd)


def _check_out_dir(
    out_dir: Path, config: dict[str, Any], resume: bool, overwrite: bool
) -> dict[str, Any] | None:
    """The manifest of the run already in ``out_dir`` (None if empty); errors on a conflict."""
    manifest_path = out_dir / MANIFEST
    has_parts = (out_dir / PARTS).exists() and any((out_dir / PARTS).iterdir())
    if not manifest_path.exists():
        if has_parts and not overwrite:
            raise RunError(
                f"{out_dir} has a parts/ folder but no {MANIFEST}; pass --overwrite to start over"
            )
        return None
    try:
        previous = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        if overwrite:
            return None
        raise RunError(
            f"{manifest_path} is unreadable; pass --overwrite to start over in {out_dir}"
        ) from None
    if overwrite:
        return previous
    if previous.get("format") != MANIFEST_FORMAT:
        raise RunError(
            f"{out_dir} holds something other than a shiftbench run ({MANIFEST} format "
            f"{previous.get('format')!r}); use another --out"
        )
    old = previous.get("config", {})
    diffs = [k for k in config if old.get(k) != config[k]]
    if diffs:
        detail = "; ".join(f"{k}: {_short(old.get(k))} → {_short(config[k])}" for k in diffs)
        raise RunError(
            f"{out_dir} holds a different run ({detail}); use another --out, or --overwrite to "
            "replace it"
        )
    if not resume:
        status = previous.get("status", "unknown")
        raise RunError(
            f"{out_dir} already holds a run ({status}); pass --resume to reuse its finished "
            "cells and compute only the rest, or --overwrite to start over"
        )
    return previous


def _stored_batch_size(out_dir: Path) -> int | None:
    try:
        return int(json.loads((out_dir / MANIFEST).read_text())["config"]["batch_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remove_run_files(out_dir: Path) -> None:
    for name in (PREDICTIONS, METRICS, MANIFEST):
        with contextlib.suppress(FileNotFoundError):
            (out_dir / name).unlink()
    shutil.rmtree(out_dir / PARTS, ignore_errors=True)


def _clean_temp_files(out_dir: Path) -> None:
    """Remove temp files left by a killed run (they are never the only copy of anything)."""
    for folder in (out_dir, out_dir / PARTS):
        if folder.exists():
            for f in folder.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    f.unlink()


def _scan_parts(parts_dir: Path) -> _PartIndex:
    index = _PartIndex()
    if not parts_dir.exists():
        return index
    for f in sorted(parts_dir.glob("b*.parquet")):
        try:
            meta = json.loads(pq.read_schema(f).metadata[b"shiftbench"])
        except Exception:
            log.warning("ignoring unreadable part file %s", f)
            continue
        b = int(meta["batch"])
        index.files.append(f)
        index.done.setdefault(b, set()).update(
            (str(c[0]), str(c[1]), float(c[2])) for c in meta["cells"]
        )
        index.skipped[b] = meta.get("skipped", [])
        for key, report in meta.get("reports", {}).items():
            index.unchanged[(b, key)] = report
        index.seconds += float(meta.get("seconds", 0.0))
    return index


# ---------------------------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------------------------


def _sweep(
    todo: list[tuple[int, set[Cell]]],
    grid: list[list[int]],
    dataset: ImageDataset,
    models: list[_Model],
    plans: list[_ShiftPlan],
    label_map: np.ndarray,
    device: torch.device,
    seed: int,
    workers: int,
    out_dir: Path,
    timers: dict[str, float],
    say: _Messenger,
    progress: bool,
    console: Any,
    batch_size: int,
) -> None:
    parts_dir = out_dir / PARTS
    parts_dir.mkdir(exist_ok=True)
    token = uuid.uuid4().hex[:8]
    need = dict(todo)
    loader = make_loader(
        dataset,
        batch_size,
        workers,
        batches=[grid[b] for b, _ in todo],
        pin_memory=device.type == "cuda",
        warn_skipped=False,
    )
    label_map_t = torch.as_tensor(label_map)
    n_evals = sum(len(c) for _, c in todo)
    with _progress(progress, console, sum(len(grid[b]) for b, _ in todo), n_evals) as bar:
        t_wait = time.perf_counter()
        for batch in loader:
            timers["data_wait"] += time.perf_counter() - t_wait
            t_batch = time.perf_counter()
            b = todo[batch.index][0]
            for s in batch.skipped:
                say(f"skipping unreadable image {s.path}: {s.reason}", "yellow")
            cells = need[b]
            table, reports = _evaluate_batch(
                batch, b, cells, models, plans, label_map_t, device, seed, timers
            )
            t0 = time.perf_counter()
            meta = {
                "batch": b,
                "cells": sorted([list(c) for c in cells]),
                "skipped": [[s.sample_id, s.path, s.reason] for s in batch.skipped],
                "reports": reports,
                "seconds": round(time.perf_counter() - t_batch, 4),
            }
            table = table.replace_schema_metadata({"shiftbench": json.dumps(meta)})
            path = parts_dir / f"b{b:06d}-{token}.parquet"
            _write_atomic(path, lambda p, t=table: pq.write_table(t, p))
            timers["write"] += time.perf_counter() - t0
            bar.advance(len(grid[b]), len(cells))
            t_wait = time.perf_counter()


def _evaluate_batch(
    batch: Batch,
    b: int,
    cells: set[Cell],
    models: list[_Model],
    plans: list[_ShiftPlan],
    label_map: torch.Tensor,
    device: torch.device,
    seed: int,
    timers: dict[str, float],
) -> tuple[pa.Table, dict[str, Any]]:
    """All needed cells of one batch → an arrow table of predictions (+ shift reports)."""
    sample_ids = batch.sample_ids
    labels = label_map[batch.labels] if len(batch.labels) else batch.labels
    n_img = int(sample_ids.numel())
    results: list[tuple[str, str, float, torch.Tensor]] = []  # (sha, shift key, mag, probs)
    reports: dict[str, Any] = {}
    if n_img:
        images = batch.images.to(device, non_blocking=True)
        with torch.inference_mode():
            clean = [m for m in models if (m.ckpt.sha256, _CLEAN, 0.0) in cells]
            if clean:
                _forward(images, clean, _CLEAN, 0.0, results, timers)
            for plan in plans:
                mags = [
                    mag
                    for mag in plan.non_identity
                    if any((m.ckpt.sha256, plan.key, mag) in cells for m in models)
                ]
                if not mags:
                    continue
                sweep = plan.shift.sweep(images, mags, seed=seed, sample_ids=sample_ids)
                steps = iter(sweep)
                while True:
                    t0 = time.perf_counter()
                    with _shift_threads(device):  # the shift's work happens inside next()
                        step = next(steps, None)
                    timers["shift"] += time.perf_counter() - t0
                    if step is None:
                        break
                    mag, shifted = step
                    wanted = [m for m in models if (m.ckpt.sha256, plan.key, mag) in cells]
                    _forward(shifted, wanted, plan.key, mag, results, timers)
                reports[plan.key] = _jsonable(sweep.report)
        _check_finite(results, models, b, sample_ids, batch)
    return _to_table(results, sample_ids, labels, models), reports


@contextlib.contextmanager
def _shift_threads(device: torch.device) -> Iterator[None]:
    """Run shifts with one intra-op thread on the CPU; the model keeps the default.

    Shifts are chains of small, memory-bound tensor ops. Measured on 2 cores
    (benchmarks/perf_run.py, results/README-perf_run.md): the stain sweep took 3–4 ms/image with
    one thread and 8–67 ms/image with two (thread hand-offs, worst when other processes share
    the cores); blur was the same either way. Switching costs < 1 µs.
    """
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _forward(
    images: torch.Tensor,
    models: list[_Model],
    shift_key: str,
    mag: float,
    results: list[tuple[str, str, float, torch.Tensor]],
    timers: dict[str, float],
) -> None:
    t0 = time.perf_counter()
    inputs: dict[tuple, torch.Tensor] = {}
    for m in models:
        x = inputs.get(m.prep.key)
        if x is None:
            x = inputs[m.prep.key] = m.prep(images)
        logits = m.ckpt.model(x)
        results.append((m.ckpt.sha256, shift_key, mag, logits.float()))
    timers["model"] += time.perf_counter() - t0


def _check_finite(
    results: list[tuple[str, str, float, torch.Tensor]],
    models: list[_Model],
    b: int,
    sample_ids: torch.Tensor,
    batch: Batch,
) -> None:
    if not results:
        return
    ok = torch.stack([torch.isfinite(r[3]).all() for r in results]).cpu()  # one sync per batch
    if bool(ok.all()):
        return
    sha, key, mag, logits = results[int((~ok).nonzero()[0])]
    name = next(m.name for m in models if m.ckpt.sha256 == sha)
    bad_rows = (~torch.isfinite(logits).all(dim=1)).nonzero().flatten().cpu()
    sid = int(sample_ids[int(bad_rows[0])])
    where = "clean images" if key == _CLEAN else f"shift {key} at magnitude {mag:g}"
    raise RunError(
        f"checkpoint {name} produced non-finite logits (NaN/inf) on batch {b} "
        f"(sample {sid}, {len(bad_rows)} image(s); {where}); check the model and its input "
        "normalisation. Finished batches are kept."
    )


def _to_table(
    results: list[tuple[str, str, float, torch.Tensor]],
    sample_ids: torch.Tensor,
    labels: torch.Tensor,
    models: list[_Model],
) -> pa.Table:
    num_classes = models[0].ckpt.num_classes or 2
    if results:
        logits = torch.cat([r[3] for r in results])
        probs = torch.softmax(logits, dim=1).to("cpu", torch.float32).numpy()
    else:
        probs = np.zeros((0, num_classes), np.float32)
    n = int(sample_ids.numel())
    k = len(results)
    columns: dict[str, Any] = {
        "ckpt": pa.array(np.repeat([r[0] for r in results], n) if k else [], pa.string()),
        "shift": pa.array(np.repeat([r[1] for r in results], n) if k else [], pa.string()),
        "magnitude": pa.array(
            np.repeat(np.array([r[2] for r in results], np.float64), n), pa.float64()
        ),
        "sample_id": pa.array(np.tile(sample_ids.numpy().astype(np.int64), k), pa.int64()),
        "label": pa.array(np.tile(labels.numpy().astype(np.int64), k), pa.int64()),
        "pred": pa.array(probs.argmax(axis=1).astype(np.int64), pa.int64()),
    }
    for c in range(num_classes):
        columns[f"p{c}"] = pa.array(probs[:, c], pa.float32())
    return pa.table(columns)


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------


def _write_predictions(
    path: Path,
    index: _PartIndex,
    models: list[_Model],
    plans: list[_ShiftPlan],
    dataset: ImageDataset,
    class_names: list[str],
    cells: list[Cell],
) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """Assemble predictions.parquet from the parts.

    Returns:
        Per checkpoint name: the rows' ``shift, magnitude, sample_id, label`` and their
        probabilities ``[rows, C]``, in table order (what the metrics need).
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    num_classes = len(class_names)
    prob_cols = [f"prob_{n}" for n in class_names]
    meta_keys = list(dict.fromkeys(k for m in models for k in m.ckpt.meta))
    meta_types = {k: _meta_type([m.ckpt.meta.get(k) for m in models]) for k in meta_keys}
    extras = dataset.extras
    extras_schema = (
        pa.Schema.from_pandas(extras, preserve_index=False) if len(extras.columns) else None
    )
    fields = [
        pa.field("checkpoint", pa.string()),
        pa.field("shift", pa.string()),
        pa.field("magnitude", pa.float64()),
        pa.field("sample_id", pa.int64()),
        pa.field("path", pa.string()),
        pa.field("label", pa.int64()),
        pa.field("pred", pa.int64()),
        *[pa.field(c, pa.float32()) for c in prob_cols],
        *[pa.field(k, meta_types[k]) for k in meta_keys],
        *([extras_schema.field(c) for c in extras_schema.names] if extras_schema else []),
    ]
    schema = pa.schema(fields).with_metadata(
        {"shiftbench": json.dumps({"class_names": class_names, "format": MANIFEST_FORMAT})}
    )
    paths = np.asarray(dataset.paths, dtype=object)
    if not index.files:  # pragma: no cover - every run writes at least one part
        raise RunError("internal error: no results in parts/")
    source = pads.dataset([str(f) for f in index.files], format="parquet")
    per_ckpt: dict[str, tuple[pd.DataFrame, np.ndarray]] = {}

    def tables() -> Iterator[pa.Table]:
        for m in models:
            sha = m.ckpt.sha256
            raw = source.to_table(filter=pc.field("ckpt") == sha).to_pandas()
            wanted = [(c[1], c[2]) for c in cells if c[0] == sha]
            keep = pd.MultiIndex.from_arrays([raw["shift"], raw["magnitude"]]).isin(wanted)
            raw = raw[keep].drop_duplicates(subset=["shift", "magnitude", "sample_id"])
            frames = []
            for order, plan in enumerate(plans):
                parts = []
                if plan.has_identity:
                    clean = raw[raw["shift"] == _CLEAN].assign(magnitude=plan.shift.identity)
                    parts.append(clean)
                parts.append(raw[raw["shift"] == plan.key])
                block = pd.concat(parts, ignore_index=True)
                mag_rank = {mg: i for i, mg in enumerate(plan.magnitudes)}
                block = block.assign(
                    shift=plan.name,
                    _s=order,
                    _m=block["magnitude"].map(mag_rank),
                )
                frames.append(block)
            df = pd.concat(frames, ignore_index=True).sort_values(
                ["_s", "_m", "sample_id"], kind="stable"
            )
            df = df.reset_index(drop=True)
            probs = df[[f"p{c}" for c in range(num_classes)]].to_numpy(np.float32)
            per_ckpt[m.name] = (df[["shift", "magnitude", "sample_id", "label"]], probs)
            ids = df["sample_id"].to_numpy(np.int64)
            cols: dict[str, Any] = {
                "checkpoint": pa.array([m.name] * len(df), pa.string()),
                "shift": pa.array(df["shift"].to_numpy(object), pa.string()),
                "magnitude": pa.array(df["magnitude"].to_numpy(np.float64), pa.float64()),
                "sample_id": pa.array(ids, pa.int64()),
                "path": pa.array(paths[ids] if len(ids) else [], pa.string()),
                "label": pa.array(df["label"].to_numpy(np.int64), pa.int64()),
                "pred": pa.array(df["pred"].to_numpy(np.int64), pa.int64()),
            }
            for c, name in enumerate(prob_cols):
                cols[name] = pa.array(df[f"p{c}"].to_numpy(np.float32), pa.float32())
            for k in meta_keys:
                cols[k] = pa.array([m.ckpt.meta.get(k)] * len(df), meta_types[k])
            if extras_schema is not None:
                ex = pa.Table.from_pandas(
                    extras.iloc[ids].reset_index(drop=True),
                    schema=extras_schema,
                    preserve_index=False,
                )
                for c in extras_schema.names:
                    cols[c] = ex.column(c)
            yield pa.table(cols, schema=schema)

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema) as writer:
            for t in tables():
                writer.write_table(t)

    _write_atomic(path, write)
    return per_ckpt


def _meta_type(values: list[Any]) -> pa.DataType:
    present = [v for v in values if v is not None]
    if not present:
        return pa.string()
    try:
        return pa.array(present).type
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.string()


def _compute_metrics(
    per_ckpt: dict[str, pd.DataFrame],
    models: list[_Model],
    plans: list[_ShiftPlan],
    dataset: ImageDataset,
    group_by: str | None,
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    from shiftbench.metrics import cell_metrics

    rows: list[dict[str, Any]] = []
    groups = dataset.extras[group_by] if group_by else None
    meta_keys = list(dict.fromkeys(k for m in models for k in m.ckpt.meta))
    for m in models:
        df, probs_all = per_ckpt[m.name]
        shift_col = df["shift"].to_numpy()
        mag_col = df["magnitude"].to_numpy()
        cache: dict[tuple, dict[str, float]] = {}  # clean cells are shared across shifts
        for plan in plans:
            for mag in plan.magnitudes:
                sel = np.flatnonzero((shift_col == plan.name) & (mag_col == mag))
                ids = df["sample_id"].to_numpy()[sel]
                labels = df["label"].to_numpy()[sel]
                probs = probs_all[sel]
                is_clean = mag == plan.shift.identity
                if groups is None:
                    subsets = [(None, np.arange(len(sel)))]
                else:
                    g = pd.Series(groups.to_numpy()[ids])
                    subsets = [
                        (v, np.flatnonzero(g.isna() if _isna(v) else g.eq(v)))
                        for v in _sorted_values(g.unique())
                    ]
                for value, rows_idx in subsets:
                    key = ("clean", value) if is_clean else (plan.key, mag, value)
                    result = cache.get(key)
                    if result is None:
                        result = cell_metrics(
                            labels[rows_idx], probs[rows_idx], n_boot=n_boot, seed=seed
                        )
                        cache[key] = result
                    row: dict[str, Any] = {
                        "checkpoint": m.name,
                        "shift": plan.name,
                        "magnitude": mag,
                    }
                    if group_by:
                        row[group_by] = value
                    row.update(result)
                    for k in meta_keys:
                        row[k] = m.ckpt.meta.get(k)
                    rows.append(row)
    frame = pd.DataFrame(rows)
    if "n" in frame.columns:
        frame["n"] = frame["n"].astype("int64")
    front = ["checkpoint", "shift", "magnitude", *([group_by] if group_by else [])]
    metric_cols = [c for c in frame.columns if c not in front and c not in meta_keys]
    return frame[front + metric_cols + meta_keys]


def _isna(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _sorted_values(values: Any) -> list[Any]:
    vals = list(values)
    present = [v for v in vals if not _isna(v)]
    try:
        present = sorted(present)
    except TypeError:
        present = sorted(present, key=str)
    return present + [v for v in vals if _isna(v)][:1]


# ---------------------------------------------------------------------------------------------
# manifest, summary, helpers
# ---------------------------------------------------------------------------------------------


def _base_manifest(
    previous: dict[str, Any] | None,
    config: dict[str, Any],
    invocation: dict[str, Any],
    models: list[_Model],
    dataset: ImageDataset,
    plans: list[_ShiftPlan],
    class_names: list[str],
    device: torch.device,
    workers: int,
    batch_size: int,
    seed: int,
    n_boot: int,
    group_by: str | None,
    strict: bool,
    channels_last: bool,
) -> dict[str, Any]:
    import timm

    import shiftbench

    invocations = list(previous.get("invocations", [])) if previous else []
    invocations.append(invocation)
    return {
        "format": MANIFEST_FORMAT,
        "status": "running",
        "command": invocation["command"],
        "config": config,
        "versions": {
            "shiftbench": shiftbench.__version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "timm": timm.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "pyarrow": pa.__version__,
        },
        "checkpoints": [{**m.ckpt.describe(), "name": m.name} for m in models],
        "data": dataset.describe(),
        "class_names": class_names,
        "shifts": [
            {
                "name": p.name,
                "params": p.shift.params(),
                "magnitudes": p.magnitudes,
                "identity": p.shift.identity,
                "units": p.shift.units,
                "stochastic": p.shift.stochastic,
            }
            for p in plans
        ],
        "seed": seed,
        "n_boot": n_boot,
        "group_by": group_by,
        "batch_size": batch_size,
        "strict": strict,
        "device": {**describe_device(device), "workers": workers, "channels_last": channels_last},
        "invocations": invocations,
    }


def _done_cells(models: list[_Model], plans: list[_ShiftPlan]) -> list[list[Any]]:
    return [[m.name, p.name, mag] for m in models for p in plans for mag in p.magnitudes]


def summary_table(metrics: pd.DataFrame, manifest: dict[str, Any]) -> Any:
    """Rich table: accuracy per magnitude per checkpoint, one block per shift."""
    from rich.table import Table

    group_by = manifest.get("group_by")
    names = list(dict.fromkeys(metrics["checkpoint"]))
    table = Table(title="accuracy (shift × magnitude × checkpoint)", show_lines=False)
    table.add_column("shift")
    table.add_column("magnitude", justify="right")
    for n in names:
        table.add_column(n, justify="right")
    df = metrics
    if group_by:  # overall accuracy = n-weighted mean of the group accuracies
        df = (
            metrics.assign(_c=metrics["accuracy"] * metrics["n"])
            .groupby(["checkpoint", "shift", "magnitude"], sort=False, as_index=False)[["_c", "n"]]
            .sum()
            .assign(accuracy=lambda d: d["_c"] / d["n"])
        )
    shifts = list(dict.fromkeys(df["shift"]))
    for s in shifts:
        block = df[df["shift"] == s]
        for i, mag in enumerate(dict.fromkeys(block["magnitude"])):
            row = [s if i == 0 else "", f"{mag:g}"]
            for n in names:
                v = block[(block["checkpoint"] == n) & (block["magnitude"] == mag)]["accuracy"]
                row.append(f"{float(v.iloc[0]):.3f}" if len(v) and pd.notna(v.iloc[0]) else "–")
            table.add_row(*row, end_section=i == block["magnitude"].nunique() - 1)
    return table


class _Messenger:
    def __init__(self, console: Any) -> None:
        self.console = console

    def __call__(self, message: str, style: str | None = None) -> None:
        if self.console is not None:
            self.console.print(message, style=style, markup=False, highlight=False, soft_wrap=True)
        else:
            log.warning(message) if style else log.info(message)


class _NullBar:
    def advance(self, images: int, evals: int) -> None:
        pass


class _RichBar:
    def __init__(self, progress: Any, task: Any) -> None:
        self.progress = progress
        self.task = task
        self.evals = 0

    def advance(self, images: int, evals: int) -> None:
        self.evals += evals
        self.progress.update(self.task, advance=images, evals=self.evals)


@contextlib.contextmanager
def _progress(enabled: bool, console: Any, total: int, n_evals: int) -> Iterator[Any]:
    if not enabled:
        yield _NullBar()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class _Speed(TextColumn):
        def render(self, task: Any) -> Any:
            from rich.text import Text

            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.1f} img/s" if speed else "– img/s")

    progress = Progress(
        TextColumn("sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("images"),
        TaskProgressColumn(),
        _Speed(""),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    with progress:
        task = progress.add_task("sweep", total=total, evals=0)
        yield _RichBar(progress, task)


def _write_atomic(path: Path, writer: Any) -> None:
    """Call ``writer(tmp)`` for a temp file in the same folder, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp")
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    text = json.dumps(obj, indent=2, default=_json_default, allow_nan=False)
    _write_atomic(path, lambda p: p.write_text(text + "\n"))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, set | tuple):
        return list(o)
    return str(o)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=_json_default))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


def _default_command() -> list[str]:
    return [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else []


def _short(v: Any) -> str:
    s = json.dumps(v, default=str)
    return s if len(s) <= 24 else s[:10] + "…" + s[-8:]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _positive(value: Any, name: str) -> int:
    v = _integer(value, name)
    if v < 1:
        raise UserInputError(f"{name} must be >= 1; got {value!r}")
    return v


def _non_negative(value: Any, name: str) -> int:
    v = _integer(value, name)
    if v < 0:
        raise UserInputError(f"{name} must be >= 0; got {value!r}")
    return v


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise UserInputError(f"{name} must be an integer; got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise UserInputError(f"{name} must be an integer; got {value!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise UserInputError(f"{name} must be an integer; got {value!r}")
    return int(f)
