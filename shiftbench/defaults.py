"""Defaults of ``shiftbench run`` that come from the checkpoints: the run folder and the test set.

``shiftbench run --ckpt model.pt --shift eosin`` needs neither ``--out`` nor ``--data``:

* **run folder** (:func:`default_run_dir`): ``runs/<checkpoint stem>`` (the first checkpoint's
  stem when there are several). An existing, non-empty folder is never reused: the next free
  ``runs/<stem>-2``, ``runs/<stem>-3``, … is taken instead, so a second run never clobbers or
  resumes the first by accident (``--resume`` and ``--overwrite`` therefore need an explicit
  ``--out``).
* **test set** (:func:`recorded_eval_data`, :func:`open_eval_data`): a checkpoint written by
  :func:`shiftbench.train` records its training data (meta ``data_source``) and whether the split
  came from the data's ``split`` column (meta ``split_source``). When that data is a CSV
  manifest whose ``split`` column has ``test`` rows (as the bundled demo manifest does), those
  rows are the evaluation data. A checkpoint without such a record (or several checkpoints that
  record different data) needs ``--data``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from shiftbench.errors import UserInputError

__all__ = [
    "EVAL_SPLIT",
    "RUNS_ROOT",
    "EvalData",
    "RunInputs",
    "default_eval_data",
    "default_run_dir",
    "open_eval_data",
    "recorded_eval_data",
    "resolve_run_inputs",
]

#: Parent folder of default run folders (relative to the working directory).
RUNS_ROOT = Path("runs")
#: Value of the ``split`` column that marks evaluation rows.
EVAL_SPLIT = "test"


@dataclass(frozen=True)
class EvalData:
    """A test set recorded in a checkpoint: the rows of ``path`` whose ``split`` is ``split``."""

    path: Path
    split: str

    def __str__(self) -> str:
        return f"{self.path} (split == {self.split})"


def default_run_dir(
    checkpoint_paths: Sequence[str | os.PathLike[str]], root: Path = RUNS_ROOT
) -> Path:
    """``root/<stem of the first checkpoint>``, or the first free ``-2``, ``-3``, … suffix.

    A folder counts as taken when it exists and is not empty (an empty folder is reused).
    """
    if not checkpoint_paths:
        raise UserInputError("give at least one checkpoint (--ckpt FILE)")
    stem = Path(checkpoint_paths[0]).stem or "run"
    candidate = root / stem
    k = 1
    while _taken(candidate):
        k += 1
        candidate = root / f"{stem}-{k}"
    return candidate


def _taken(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def recorded_eval_data(meta: dict[str, Any]) -> EvalData | None:
    """The evaluation data a checkpoint's ``meta`` records, or ``None``.

    Recorded means: ``split_source`` says the training split came from the data's ``split``
    column, and ``data_source`` is a CSV manifest that exists here and has ``test`` rows.
    """
    source = meta.get("data_source")
    if not isinstance(source, str) or not source.lower().endswith(".csv"):
        return None
    if not str(meta.get("split_source") or "").startswith("column"):
        return None
    path = Path(source)
    if not path.is_file():
        return None
    try:
        split = pd.read_csv(path, usecols=["split"], dtype=str, keep_default_na=False)["split"]
    except (ValueError, OSError):
        return None
    if not (split.str.strip().str.lower() == EVAL_SPLIT).any():
        return None
    return EvalData(path, EVAL_SPLIT)


def default_eval_data(checkpoints: Sequence[Any]) -> EvalData:
    """The one test set all ``checkpoints`` (loaded, with ``.meta`` and ``.path``) record.

    Raises:
        UserInputError: a checkpoint records none, or they record different ones; the message
            names ``--data``.
    """
    found: dict[Path, EvalData] = {}
    for ck in checkpoints:
        ev = recorded_eval_data(dict(getattr(ck, "meta", None) or {}))
        if ev is None:
            source = (getattr(ck, "meta", None) or {}).get("data_source")
            why = (
                f"its training data {source} is not here or has no '{EVAL_SPLIT}' split"
                if source
                else "it records no evaluation data"
            )
            raise UserInputError(
                f"--data is needed for {ck.path}: {why}; pass --data PATH (image folder, CSV "
                "manifest or .npz)"
            )
        found[Path(ck.path)] = ev
    distinct = sorted({str(ev) for ev in found.values()})
    if len(distinct) > 1:
        raise UserInputError(
            f"the checkpoints record different evaluation data ({'; '.join(distinct[:2])}); "
            "pass --data PATH"
        )
    return next(iter(found.values()))


def open_eval_data(
    data: EvalData, *, limit: int | None = None, strict: bool = False, image_size: int | None = None
) -> Any:
    """Open the ``split`` rows of ``data.path`` as a test set (same rows, order and columns).

    ``limit`` keeps the first ``limit`` rows of the split. The data set's fingerprint equals that
    of a CSV holding exactly these rows (e.g. the bundled ``test.csv``), so runs on either are
    comparable.
    """
    import numpy as np

    from shiftbench.data import FileDataset, open_dataset

    full = open_dataset(data.path, strict=strict, image_size=image_size)
    split = full.extras["split"].astype(str).str.strip().str.lower().to_numpy()
    rows = np.flatnonzero(split == data.split)
    if limit is not None:
        if isinstance(limit, bool) or int(limit) < 1:
            raise UserInputError(f"--limit must be a positive integer; got {limit!r}")
        rows = rows[: int(limit)]
    subset = FileDataset(
        root=full.root,
        fmt=full.format,
        source=full.source,
        paths=[full.paths[i] for i in rows],
        labels=full.labels[rows],
        class_names=list(full.class_names),
        labels_are_names=full.labels_are_names,
        extras=full.extras.iloc[rows].reset_index(drop=True),
        image_size=image_size,
        strict=strict,
    )
    subset.native_size = full.native_size
    return subset


@dataclass
class RunInputs:
    """Arguments for :func:`shiftbench.run` with the defaults filled in.

    Attributes:
        checkpoints: the paths as given, or loaded checkpoints when their meta was needed.
        data: the data as given, or the opened recorded test set.
        out: the run folder.
        limit, image_size: what :func:`shiftbench.run` still has to apply (``None`` once
            applied when opening the recorded test set).
        notes: one line per default that was used (for the user).
    """

    checkpoints: list[Any]
    data: Any
    out: Path
    limit: int | None
    image_size: int | None
    notes: list[str] = field(default_factory=list)


def resolve_run_inputs(
    checkpoints: Sequence[str | os.PathLike[str]],
    data: Any = None,
    out: str | os.PathLike[str] | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    limit: int | None = None,
    strict: bool = False,
    image_size: int | None = None,
    arch: str | None = None,
    num_classes: int | None = None,
    trust_checkpoint: bool = False,
) -> RunInputs:
    """Fill in ``data`` and ``out`` for a run of ``checkpoints`` (see the module docstring).

    Usage (what ``shiftbench run --ckpt model.pt --shift eosin`` does)::

        inputs = resolve_run_inputs(["model.pt"])
        shiftbench.run(inputs.checkpoints, inputs.data, "eosin", out=inputs.out)

    Raises:
        UserInputError: ``resume``/``overwrite`` without ``out``; no recorded test set (the
            message names ``--data``).
    """
    from shiftbench.checkpoint import load_checkpoint

    if out is None and (resume or overwrite):
        flag, verb = ("--resume", "resume") if resume else ("--overwrite", "replace")
        raise UserInputError(f"{flag} needs --out DIR (the run to {verb})")
    paths = list(checkpoints)
    inputs = RunInputs(
        list(paths), data, Path(out) if out is not None else Path(), limit, image_size
    )
    if data is None:
        loaded = [
            load_checkpoint(
                p, arch=arch, num_classes=num_classes, trust_checkpoint=trust_checkpoint
            )
            for p in paths
        ]
        recorded = default_eval_data(loaded)
        inputs.checkpoints = loaded
        inputs.data = open_eval_data(recorded, limit=limit, strict=strict, image_size=image_size)
        inputs.limit = inputs.image_size = None  # applied when opening
        inputs.notes.append(
            f"evaluating on {recorded}, recorded in the checkpoint (--data to choose)"
        )
    if out is None:
        inputs.out = default_run_dir(paths)
        inputs.notes.append(f"writing the run to {inputs.out} (--out to choose)")
    return inputs
