"""The sweep: every pending batch is decoded once, shifted at every magnitude, seen by every model.

For each shift one :meth:`~shiftbench.shifts.base.Shift.sweep` covers all its magnitudes of a
batch; the clean images are evaluated once per checkpoint (the shared clean cell). With a stain
normaliser, each step's images (clean, or one magnitude of a shift) are normalised once, after the
shift and before the models' preprocessing, and shared by all models. Each batch's results go to
one part file as soon as the batch is done.

Threads: the shifts and the models run with the caller's torch settings; nothing here changes
process-wide state (0.1 switched ``torch.set_num_threads(1)`` around every shift step).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from shiftbench.data import Batch, ImageDataset, make_loader
from shiftbench.errors import RunError, UserInputError
from shiftbench.run.models import Model
from shiftbench.run.normalization import Passthrough, RunNormalizer
from shiftbench.run.parts import write_part
from shiftbench.run.plan import CLEAN, Cell, ShiftPlan
from shiftbench.run.progress import Messenger, progress_bar
from shiftbench.run.rundir import PARTS_DIR
from shiftbench.run.values import jsonable


def sweep(
    todo: list[tuple[int, set[Cell]]],
    grid: list[list[int]],
    dataset: ImageDataset,
    models: list[Model],
    plans: list[ShiftPlan],
    label_map: np.ndarray,
    device: torch.device,
    seed: int,
    workers: int,
    out_dir: Path,
    timers: dict[str, float],
    say: Messenger,
    progress: bool,
    console: Any,
    batch_size: int,
    *,
    amp: torch.dtype | None = None,
    normalizer: RunNormalizer | None = None,
    after_part: Callable[[int], None] | None = None,
) -> None:
    """Evaluate the pending (batch, cells) pairs of ``todo``; one part file per batch.

    Args:
        amp: autocast dtype of the model forward (``torch.bfloat16``/``float16``; None: off).
        normalizer: stain normalisation applied to every step's images before the models
            (None: off); its seconds go to ``timers["normalize"]``.
        after_part: called with the number of part files written so far (test hook).
    """
    parts_dir = out_dir / PARTS_DIR
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
    written = 0
    with progress_bar(progress, console, sum(len(grid[b]) for b, _ in todo), n_evals) as bar:
        t_wait = time.perf_counter()
        for batch in loader:
            timers["data_wait"] += time.perf_counter() - t_wait
            t_batch = time.perf_counter()
            b = todo[batch.index][0]
            for s in batch.skipped:
                say(f"skipping unreadable image {s.path}: {s.reason}", "yellow")
            cells = need[b]
            passthrough: Passthrough = []
            table, reports = _evaluate_batch(
                batch, b, cells, models, plans, label_map_t, device, seed, timers, amp,
                normalizer, passthrough,
            )  # fmt: skip
            t0 = time.perf_counter()
            meta = {
                "batch": b,
                "cells": sorted([list(c) for c in cells]),
                "skipped": [[s.sample_id, s.path, s.reason] for s in batch.skipped],
                "reports": reports,
                "seconds": round(time.perf_counter() - t_batch, 4),
            }
            if normalizer is not None:
                meta["normalize"] = {"passthrough": passthrough}
            write_part(parts_dir / f"b{b:06d}-{token}.parquet", table, meta)
            timers["write"] += time.perf_counter() - t0
            bar.advance(len(grid[b]), len(cells))
            written += 1
            if after_part is not None:
                after_part(written)
            t_wait = time.perf_counter()


def _evaluate_batch(
    batch: Batch,
    b: int,
    cells: set[Cell],
    models: list[Model],
    plans: list[ShiftPlan],
    label_map: torch.Tensor,
    device: torch.device,
    seed: int,
    timers: dict[str, float],
    amp: torch.dtype | None = None,
    normalizer: RunNormalizer | None = None,
    passthrough: Passthrough | None = None,
) -> tuple[pa.Table, dict[str, Any]]:
    """All needed cells of one batch → an arrow table of predictions (+ shift reports).

    With ``normalizer``, the images of each step are normalised once before the models see them;
    the images it passes through are appended to ``passthrough``.
    """
    sample_ids = batch.sample_ids
    seen: Passthrough = [] if passthrough is None else passthrough

    def prepared(x: torch.Tensor, key: str, mag: float) -> torch.Tensor:
        if normalizer is None:
            return x
        return normalizer(x, sample_ids, key, mag, seen, timers)

    labels = label_map[batch.labels] if len(batch.labels) else batch.labels
    n_img = int(sample_ids.numel())
    results: list[tuple[str, str, float, torch.Tensor]] = []  # (sha, shift key, mag, probs)
    reports: dict[str, Any] = {}
    if n_img:
        images = batch.images.to(device, non_blocking=True)
        with torch.inference_mode():
            clean = [m for m in models if (m.ckpt.sha256, CLEAN, 0.0) in cells]
            if clean:
                _forward(prepared(images, CLEAN, 0.0), clean, CLEAN, 0.0, results, timers, amp)
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
                    step = next(steps, None)  # the shift's work happens inside next()
                    timers["shift"] += time.perf_counter() - t0
                    if step is None:
                        break
                    mag, shifted = step
                    wanted = [m for m in models if (m.ckpt.sha256, plan.key, mag) in cells]
                    shifted = prepared(shifted, plan.key, mag)
                    _forward(shifted, wanted, plan.key, mag, results, timers, amp)
                reports[plan.key] = jsonable(sweep.report)
        _check_finite(results, models, b, sample_ids, batch)
    return _to_table(results, sample_ids, labels, models), reports


def _forward(
    images: torch.Tensor,
    models: list[Model],
    shift_key: str,
    mag: float,
    results: list[tuple[str, str, float, torch.Tensor]],
    timers: dict[str, float],
    amp: torch.dtype | None = None,
) -> None:
    t0 = time.perf_counter()
    inputs: dict[tuple, torch.Tensor] = {}
    for m in models:
        x = inputs.get(m.prep.key)
        if x is None:
            x = inputs[m.prep.key] = m.prep(images)
        with _autocast(images.device.type, amp):
            logits = m.ckpt.model(x)
        results.append((m.ckpt.sha256, shift_key, mag, logits.float()))
    timers["model"] += time.perf_counter() - t0


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(amp: str | None) -> torch.dtype | None:
    """``--amp`` (None, ``"bf16"`` or ``"fp16"``) → the autocast dtype of the model forward.

    Raises:
        UserInputError: another value.
    """
    if amp is None or amp == "off":
        return None
    if amp not in AMP_DTYPES:
        raise UserInputError(f"--amp {amp!r} is not one of bf16, fp16 (or leave it off)")
    return AMP_DTYPES[amp]


def _autocast(device_type: str, amp: torch.dtype | None) -> Any:
    """Mixed precision for the model forward only (the shifts stay in their own precision)."""
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=amp)


def _check_finite(
    results: list[tuple[str, str, float, torch.Tensor]],
    models: list[Model],
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
    where = "clean images" if key == CLEAN else f"shift {key} at magnitude {mag:g}"
    raise RunError(
        f"checkpoint {name} produced non-finite logits (NaN/inf) on batch {b} "
        f"(sample {sid}, {len(bad_rows)} image(s); {where}); check the model and its input "
        "normalisation. Finished batches are kept."
    )


def _to_table(
    results: list[tuple[str, str, float, torch.Tensor]],
    sample_ids: torch.Tensor,
    labels: torch.Tensor,
    models: list[Model],
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
