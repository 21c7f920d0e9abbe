"""manifest.json of a run: what was run, with what, on what, and how it went."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from shiftbench.data import ImageDataset
from shiftbench.devices import describe_device
from shiftbench.run.models import Model
from shiftbench.run.normalization import RunNormalizer, normalization_record
from shiftbench.run.parts import PartIndex
from shiftbench.run.plan import ShiftPlan
from shiftbench.run.rundir import FORMAT_V2


def base_manifest(
    previous: dict[str, Any] | None,
    config: dict[str, Any],
    invocation: dict[str, Any],
    models: list[Model],
    dataset: ImageDataset,
    plans: list[ShiftPlan],
    settings: dict[str, Any],
    device: torch.device,
    *,
    datasets: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The manifest at the start of an invocation (earlier invocations are kept).

    Args:
        dataset: the data set the sweep reads (with several sets: ``data`` describes the first).
        settings: ``seed, n_boot, group_by, batch_size, strict, workers, channels_last``.
        datasets: per evaluation set ``{name, first_sample_id, n_samples, …describe()}``.
    """
    import timm

    import shiftbench

    invocations = list(previous.get("invocations", [])) if previous else []
    invocations.append(invocation)
    return {
        "format": FORMAT_V2,
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
        **({"datasets": datasets} if datasets is not None else {}),
        "class_names": config["class_names"],
        "shifts": [p.describe() for p in plans],
        "seed": settings["seed"],
        "n_boot": settings["n_boot"],
        "group_by": settings["group_by"],
        "batch_size": settings["batch_size"],
        "strict": settings["strict"],
        "device": {
            **describe_device(device),
            "workers": settings["workers"],
            "channels_last": settings["channels_last"],
        },
        "invocations": invocations,
    }


def outcome(
    index: PartIndex,
    models: list[Model],
    plans: list[ShiftPlan],
    normalizer: RunNormalizer | None = None,
) -> dict[str, Any]:
    """Manifest fields of a finished run: skipped files, unchanged counts, cells, compute time;
    with a stain normaliser, its ``normalize`` entry (fitted target, pass-through counts)."""
    skipped = sorted(
        {tuple(s) for rows in index.skipped.values() for s in rows}, key=lambda s: s[0]
    )
    unchanged: dict[str, Any] = {}
    for plan in plans:
        counts = [
            v for (_, key), v in index.unchanged.items() if key == plan.key and "unchanged" in v
        ]
        if counts:
            unchanged[plan.name] = {
                "count": int(sum(v.get("unchanged", 0) for v in counts)),
                "sample_ids": sorted(int(i) for v in counts for i in v.get("unchanged_ids", [])),
            }
    done = {
        "status": "complete",
        "skipped_files": [{"sample_id": s[0], "path": s[1], "reason": s[2]} for s in skipped],
        "n_skipped": len(skipped),
        "unchanged": unchanged,
        "done_cells": [
            [m.name, p.name, mag] for m in models for p in plans for mag in p.magnitudes
        ],
        "compute_seconds_total": round(index.seconds, 3),
    }
    if normalizer is not None:
        done["normalize"] = normalization_record(normalizer, index.passthrough, plans)
    return done
