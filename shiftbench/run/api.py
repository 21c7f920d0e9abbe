"""``run()``: evaluate checkpoints on a test set under every magnitude of every shift.

Orchestration only; the steps live in their own modules: plan → models → (lock) out dir →
sweep → tables → metrics → manifest. See docs/reference/run-directory.md for what it writes.

Resume: a *cell* is checkpoint (by SHA-256) × shift × magnitude. Each part file records which
cells of which batch it holds, so after an interruption (even ``kill -9``) ``resume=True``
computes only the missing (batch, cell) pairs — including cells a new command adds (another
checkpoint or shift) — and rebuilds the tables, sorted deterministically, so they are identical
to those of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from shiftbench.checkpoint import LoadedCheckpoint
from shiftbench.data import ImageDataset, default_workers
from shiftbench.devices import resolve_device
from shiftbench.errors import RunError, UserInputError
from shiftbench.registry import load_plugins
from shiftbench.run.datasets import EvalSets, check_group_by, open_eval_sets
from shiftbench.run.distributed import Ranks, fault_hook, join_ranks, rank_device
from shiftbench.run.manifest import base_manifest, outcome
from shiftbench.run.metrics_step import compute_run_metrics
from shiftbench.run.models import Model, check_names, load_models, probe, resolve_classes
from shiftbench.run.normalization import RunNormalizer, open_normalizer
from shiftbench.run.outdir import (
    check_out_dir,
    clean_temp_dirs,
    remove_run_files,
    stored_batch_size,
)
from shiftbench.run.parts import scan_parts
from shiftbench.run.plan import Cell, ShiftPlan, pending, plan_shifts, requested_cells
from shiftbench.run.progress import Messenger
from shiftbench.run.rundir import (
    MANIFEST,
    METRICS,
    PARTS_DIR,
    PREDICTIONS_DIR,
    atomic_write,
    atomic_write_json,
    locked,
)
from shiftbench.run.summary import summary_table
from shiftbench.run.sweep import amp_dtype, sweep
from shiftbench.run.tables import write_tables
from shiftbench.run.values import default_command, first_line, integer, non_negative, now, positive
from shiftbench.shifts.base import Shift

__all__ = ["DEFAULT_BATCH_SIZE", "RunResult", "run"]

DEFAULT_BATCH_SIZE = 64


@dataclass
class RunResult:
    """What :func:`run` produced.

    Attributes:
        out_dir: the run directory.
        predictions_path: the ``predictions/`` folder (one parquet file per shift × checkpoint).
        metrics_path, manifest_path: ``metrics.csv`` and ``manifest.json``.
        metrics: the contents of ``metrics.csv``.
        manifest: the contents of ``manifest.json``.
    """

    out_dir: Path
    predictions_path: Path
    metrics_path: Path
    manifest_path: Path
    metrics: pd.DataFrame
    manifest: dict[str, Any]

    def predictions(self, columns: Sequence[str] | None = None, **kwargs: Any) -> Any:
        """The joined predictions table (see :func:`shiftbench.read_predictions`)."""
        from shiftbench.run.read import read_predictions

        return read_predictions(self.out_dir, columns=columns, **kwargs)

    def summary(self) -> Any:
        """A rich renderable: accuracy per magnitude (rows) per checkpoint (columns), per shift."""
        return summary_table(self.metrics, self.manifest)


@dataclass
class _Inputs:
    sets: EvalSets
    dataset: ImageDataset  # sets.dataset: the one data set the sweep reads
    models: list[Model]
    plans: list[ShiftPlan]
    class_names: list[str]
    label_map: np.ndarray
    device: torch.device
    channels_last: bool
    normalizer: RunNormalizer | None = None


def run(
    checkpoints: Sequence[str | os.PathLike[str] | LoadedCheckpoint] | str | os.PathLike[str],
    data: (
        str
        | os.PathLike[str]
        | ImageDataset
        | Mapping[str, str | os.PathLike[str] | ImageDataset]
        | Sequence[str | os.PathLike[str] | ImageDataset]
    ),
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
    amp: str | None = None,
    normalize: str = "none",
    normalize_target: str | os.PathLike[str] | None = None,
    progress: bool = False,
    console: Any = None,
    command: Sequence[str] | None = None,
) -> RunResult:
    """Evaluate checkpoints on a test set under every magnitude of every shift.

    Mirrors ``shiftbench run`` (see ``shiftbench run --help``).

    Args:
        checkpoints: checkpoint file(s) (any format :func:`~shiftbench.load_checkpoint` reads) or
            already loaded :class:`~shiftbench.checkpoint.LoadedCheckpoint` objects.
        data: the evaluation set(s): an image folder, CSV manifest, ``.npz`` file or opened
            data set; or several, as a mapping ``{name: path or data set}`` or a sequence of
            ``"NAME=PATH"`` strings (bare paths are named after their folder, see
            :func:`~shiftbench.run.rundir.dataset_name`). Several sets are evaluated as one,
            with contiguous sample ids in the given order, and every table gets their name
            (``dataset`` column); class names must agree, image sizes too unless
            ``image_size`` is given.
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
        limit: use only the first ``limit`` samples of each set.
        group_by: extra CSV column (of every set); metrics get one row per value.
        n_boot: bootstrap resamples for the confidence intervals (0: no CIs).
        strict: unreadable images are errors instead of being skipped.
        arch, num_classes, trust_checkpoint: passed to :func:`~shiftbench.load_checkpoint`.
        plugins: modules to import so that the shifts they define are registered.
        image_size: resize images to ``image_size²`` on load (needed when sizes differ).
        channels_last: run models in channels-last memory format (default: on for the CPU).
        amp: mixed precision of the model forward, ``"bf16"`` or ``"fp16"`` (torch.autocast;
            default off: float32). Part of the run's identity. See docs/how-to/
            evaluate-on-several-gpus-or-nodes.md for its agreement with float32.
        normalize: stain normalisation of every image before the models, after the shift:
            ``"none"`` (default) or ``"macenko"`` (needs ``normalize_target``). An evaluation
            condition: recorded per checkpoint, so reports group e.g. ``sd+macenko``. Part of
            the run's identity. See docs/how-to/compare-against-stain-normalisation.md.
        normalize_target: the H&E image file whose stain matrix and 99th-percentile
            concentrations every image is mapped to.
        progress: show a rich progress bar (rank 0 only when launched by torchrun).
        console: rich Console for progress and messages (default: log messages instead).
        command: the command line, for the manifest.

    Returns:
        A :class:`RunResult` with the table paths and the metrics DataFrame.

    Raises:
        UserInputError, CheckpointError, DataError, RunError: one-line messages saying what is
            wrong; nothing already written is deleted (except with ``overwrite``).
    """
    t_start, started_at, out_dir = time.perf_counter(), now(), Path(out)
    with join_ranks(device) as ranks:  # one rank unless launched by torchrun
        say = Messenger(console if ranks.is_main else None)
        settings = _settings(out_dir, resume, overwrite, batch_size, seed, n_boot, workers)
        settings.update(group_by=group_by, strict=strict, amp=amp_dtype(amp))
        normalizer = open_normalizer(normalize, normalize_target)  # fitted once, before any work
        if plugins:
            load_plugins(list(plugins))
        plans = plan_shifts(shifts, magnitudes)
        t0 = time.perf_counter()
        inp = _open_inputs(
            checkpoints, data, plans, rank_device(device, ranks), channels_last, limit,
            image_size, strict, group_by, (arch, num_classes, trust_checkpoint), say,
        )  # fmt: skip
        settings["channels_last"] = inp.channels_last
        inp.normalizer = normalizer
        timings = {"load": time.perf_counter() - t0}
        config = _identity(inp, settings, amp)
        with locked(out_dir) if ranks.is_main else contextlib.nullcontext():
            start = ranks.on_main(
                "checking the run directory",
                lambda: _start(out_dir, config, resume, overwrite, command, started_at, inp,
                               settings, ranks.world_size),
            )  # fmt: skip
            manifest, invocation = start or ({}, {})
            try:
                share = _sweep_share(out_dir, inp, settings, timings, resume, say, progress,
                                     console, ranks)  # fmt: skip
                metrics = ranks.on_main(
                    "writing the tables",
                    lambda: _finish(out_dir, inp, settings, timings, share, manifest, invocation,
                                    t_start),
                )  # fmt: skip
            except BaseException as e:  # the parts stay; the manifest says why tables are missing
                if ranks.is_main:
                    _record_failure(out_dir, manifest, e)
                raise
    if not ranks.is_main:  # rank 0 wrote them; every rank returns the same result
        metrics = pd.read_csv(out_dir / METRICS)
        manifest = json.loads((out_dir / MANIFEST).read_text())
    if manifest["n_skipped"] and ranks.is_main:
        say(
            f"{manifest['n_skipped']} unreadable image(s) skipped; listed in {out_dir / MANIFEST}",
            "yellow",
        )
    return RunResult(
        out_dir, out_dir / PREDICTIONS_DIR, out_dir / METRICS, out_dir / MANIFEST, metrics, manifest
    )


def _identity(inp: _Inputs, settings: dict[str, Any], amp: str | None) -> dict[str, Any]:
    """What a resumed run must share with the run in the directory (manifest ``config``)."""
    config = {
        "data_fingerprint": inp.dataset.fingerprint(),
        "n_samples": len(inp.dataset),
        "image_size": inp.dataset.image_size,
        "batch_size": settings["batch_size"],
        "seed": settings["seed"],
        "class_names": inp.class_names,
    }
    datasets = inp.sets.identity()
    if datasets is not None:  # absent for one set: runs of earlier versions stay resumable
        config["datasets"] = datasets
    if amp is not None:  # absent when off: runs of earlier versions stay resumable
        config["amp"] = str(amp)
    if inp.normalizer is not None:  # likewise absent without normalisation
        config["normalize"] = inp.normalizer.identity()
    return config


def _start(
    out_dir: Path,
    config: dict[str, Any],
    resume: bool,
    overwrite: bool,
    command: Sequence[str] | None,
    started_at: str,
    inp: _Inputs,
    settings: dict[str, Any],
    world_size: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check (and with ``overwrite`` empty) the run directory; write the starting manifest.

    Returns:
        The manifest and its entry for this invocation.
    """
    previous = check_out_dir(out_dir, config, resume, overwrite, inp.sets.names)
    if overwrite:
        remove_run_files(out_dir)
        previous = None
    clean_temp_dirs(out_dir)
    command = list(command) if command is not None else default_command()
    invocation = {"command": command, "started_at": started_at, "resume": bool(resume)}
    if world_size > 1:
        invocation["world_size"] = world_size
    manifest = base_manifest(
        previous, config, invocation, inp.models, inp.dataset, inp.plans, settings, inp.device,
        datasets=inp.sets.describe(),
    )  # fmt: skip
    atomic_write_json(out_dir / MANIFEST, manifest)
    return manifest, invocation


def _settings(
    out_dir: Path,
    resume: bool,
    overwrite: bool,
    batch_size: int | None,
    seed: int,
    n_boot: int,
    workers: int | None,
) -> dict[str, Any]:
    """Checked numeric options (batch size: the stored one when resuming without one)."""
    if resume and overwrite:
        raise UserInputError("--resume and --overwrite exclude each other; pick one")
    if batch_size is None and resume:
        batch_size = stored_batch_size(out_dir)
    return {
        "seed": integer(seed, "seed"),
        "n_boot": non_negative(n_boot, "--n-boot"),
        "batch_size": positive(
            DEFAULT_BATCH_SIZE if batch_size is None else batch_size, "batch size"
        ),
        "workers": non_negative(default_workers() if workers is None else workers, "workers"),
    }


def _record_failure(out_dir: Path, manifest: dict[str, Any], error: BaseException) -> None:
    """Mark the manifest failed/interrupted with the one-line reason (best effort)."""
    manifest["status"] = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
    manifest["error"] = first_line(error)
    manifest["invocations"][-1]["finished_at"] = now()
    with contextlib.suppress(Exception):
        atomic_write_json(out_dir / MANIFEST, manifest)


def _open_inputs(
    checkpoints: Any,
    data: Any,
    plans: list[ShiftPlan],
    device: str | torch.device,
    channels_last: bool | None,
    limit: int | None,
    image_size: int | None,
    strict: bool,
    group_by: str | None,
    load_options: tuple[str | None, int | None, bool],
    say: Messenger,
) -> _Inputs:
    """Data set and checkpoints, validated before anything is written."""
    dev = resolve_device(device)
    if channels_last is None:
        channels_last = dev.type == "cpu"
    sets = open_eval_sets(data, limit=limit, strict=strict, image_size=image_size)
    dataset = sets.dataset
    arch, num_classes, trust = load_options
    models = load_models(checkpoints, arch, num_classes, trust, dev, channels_last, say)
    out_size = probe(models, dataset, dev)
    class_names, label_map = resolve_classes(dataset, models, out_size)
    check_group_by(sets, group_by)
    check_names(models, dataset)
    return _Inputs(sets, dataset, models, plans, class_names, label_map, dev, channels_last)


@dataclass
class _Share:
    """What the sweep step leaves for the final one (on rank 0: about every rank's batches)."""

    grid: list[list[int]]
    cells: list[Cell]
    todo: list[tuple[int, set[Cell]]]  # pending (batch, cells) of all ranks
    seconds: float


def _sweep_share(
    out_dir: Path,
    inp: _Inputs,
    settings: dict[str, Any],
    timings: dict[str, float],
    resume: bool,
    say: Messenger,
    progress: bool,
    console: Any,
    ranks: Ranks,
) -> _Share:
    """Sweep this rank's share of the missing (batch, cell) pairs; wait for the other ranks."""
    n, batch_size = len(inp.dataset), settings["batch_size"]
    grid = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
    cells: list[Cell] = requested_cells([m.ckpt.sha256 for m in inp.models], inp.plans)
    todo = pending(grid, scan_parts(out_dir / PARTS_DIR).done, cells)
    ranks.barrier("scanning the part files")  # every rank sees the same pending batches
    if resume and len(todo) < len(grid):
        say(f"resuming: {len(grid) - len(todo)} of {len(grid)} batches already done")
    t0 = time.perf_counter()
    timers = {"data_wait": 0.0, "shift": 0.0, "model": 0.0, "write": 0.0}
    if inp.normalizer is not None:
        timers["normalize"] = 0.0
    error: Exception | None = None
    try:
        if ranks.shard(todo):
            sweep(
                ranks.shard(todo), grid, inp.dataset, inp.models, inp.plans, inp.label_map,
                inp.device, settings["seed"], settings["workers"], out_dir, timers, say,
                progress and ranks.is_main, console, batch_size, amp=settings["amp"],
                normalizer=inp.normalizer, after_part=fault_hook(ranks),
            )  # fmt: skip
    except Exception as e:  # shared with the other ranks at the barrier, which raises it
        error = e
    ranks.barrier("evaluating batches", error)
    timings["sweep"] = t_sweep = time.perf_counter() - t0
    timings.update(timers)
    return _Share(grid, cells, todo, t_sweep)


def _finish(
    out_dir: Path,
    inp: _Inputs,
    settings: dict[str, Any],
    timings: dict[str, float],
    share: _Share,
    manifest: dict[str, Any],
    invocation: dict[str, Any],
    t_start: float,
) -> pd.DataFrame:
    """Write the tables, metrics.csv and the finished manifest from the part files.

    Returns:
        The metrics table.
    """
    t0 = time.perf_counter()
    index = scan_parts(out_dir / PARTS_DIR)
    grid, cells = share.grid, share.cells
    missing = [c for b in range(len(grid)) for c in cells if c not in index.done.get(b, ())]
    if missing:  # pragma: no cover - would be a bug in pending/sweep
        raise RunError(f"internal error: {len(missing)} (batch, cell) results missing")
    write_tables(
        out_dir, index, inp.models, inp.plans, inp.dataset, inp.label_map, inp.class_names, cells,
        inp.sets.sample_names(),
        normalize=inp.normalizer.method if inp.normalizer is not None else "none",
    )  # fmt: skip
    timings["predictions"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = compute_run_metrics(
        out_dir, n_boot=settings["n_boot"], seed=settings["seed"], group_by=settings["group_by"]
    )
    atomic_write(out_dir / METRICS, lambda p: metrics.to_csv(p, index=False))
    timings["metrics"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    n_images = sum(len(grid[b]) for b, _ in share.todo)
    speed = round(n_images / share.seconds, 2) if share.seconds > 0 and share.todo else None
    invocation.update(
        finished_at=now(),
        batches_computed=len(share.todo),
        images_computed=n_images,
        images_per_s=speed,
        timings_s={k: round(v, 3) for k, v in timings.items()},
    )
    manifest.update(outcome(index, inp.models, inp.plans, inp.normalizer))
    atomic_write_json(out_dir / MANIFEST, manifest)
    return metrics
