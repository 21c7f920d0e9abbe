"""The output directory before a run: is it empty, the same run (resume), or something else?"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

from shiftbench.errors import RunError
from shiftbench.run.rundir import (
    CHECKPOINTS,
    FORMATS,
    MANIFEST,
    METRICS,
    PARTS_DIR,
    PREDICTIONS_DIR,
    PREDICTIONS_V1,
    SAMPLES,
    clean_temp_files,
)
from shiftbench.run.values import short


def check_out_dir(
    out_dir: Path,
    config: dict[str, Any],
    resume: bool,
    overwrite: bool,
    dataset_names: list[str] | None = None,
) -> dict[str, Any] | None:
    """The manifest of the run already in ``out_dir`` (None if empty); errors on a conflict.

    A format-1 run directory (0.1) can be resumed: its parts are the same; the tables are
    rewritten in format 2.

    Args:
        dataset_names: the names of this run's evaluation sets. The config identity of one set
            holds no name (so older runs stay resumable); the names are compared with the
            manifest's ``datasets`` instead, when it has them.
    """
    manifest_path = out_dir / MANIFEST
    has_parts = (out_dir / PARTS_DIR).exists() and any((out_dir / PARTS_DIR).iterdir())
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
    if previous.get("format") not in FORMATS:
        raise RunError(
            f"{out_dir} holds something other than a shiftbench run ({MANIFEST} format "
            f"{previous.get('format')!r}); use another --out"
        )
    old = previous.get("config", {})
    # both ways: an optional key (amp, normalize) in only one of the two runs is a difference
    diffs = [k for k in dict.fromkeys([*config, *old]) if old.get(k) != config.get(k)]
    details = [f"{k}: {_shown(old.get(k))} → {_shown(config.get(k))}" for k in diffs]
    renamed = _renamed_sets(previous, dataset_names)
    if renamed and "datasets" not in diffs:
        details.append(renamed)
    if details:
        detail = "; ".join(details)
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


def _renamed_sets(previous: dict[str, Any], names: list[str] | None) -> str | None:
    """``"data set names: [old] → [new]"`` when the evaluation sets were renamed, else None.

    Runs written before ``datasets`` was in the manifest hold no names: any name resumes them.
    """
    if names is None or "datasets" not in previous:
        return None
    old_names = [str(d.get("name")) for d in previous["datasets"]]
    if old_names == list(names):
        return None
    return f"data set names: {', '.join(map(repr, old_names))} → {', '.join(map(repr, names))}"


def _shown(value: Any) -> str:
    """A config value for a message (an absent optional key is "none")."""
    if value is None:
        return "none"
    if isinstance(value, dict) and "target_sha256" in value:  # normalisation identity
        return f"{value.get('method')} (target SHA-256 {str(value['target_sha256'])[:12]}…)"
    return short(value)


def stored_batch_size(out_dir: Path) -> int | None:
    """The batch size of the run in ``out_dir`` (None if there is none)."""
    try:
        return int(json.loads((out_dir / MANIFEST).read_text())["config"]["batch_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_run_files(out_dir: Path) -> None:
    """Delete the files of a run (both formats); other files in ``out_dir`` stay."""
    for name in (PREDICTIONS_V1, CHECKPOINTS, SAMPLES, METRICS, MANIFEST):
        with contextlib.suppress(FileNotFoundError):
            (out_dir / name).unlink()
    shutil.rmtree(out_dir / PREDICTIONS_DIR, ignore_errors=True)
    shutil.rmtree(out_dir / PARTS_DIR, ignore_errors=True)


def clean_temp_dirs(out_dir: Path) -> None:
    """Remove temp files left by a killed run in the run directory and its sub-folders."""
    clean_temp_files(out_dir)
    clean_temp_files(out_dir / PARTS_DIR)
    folder = out_dir / PREDICTIONS_DIR
    if folder.exists():
        for sub in folder.iterdir():
            if sub.is_dir():
                clean_temp_files(sub)
