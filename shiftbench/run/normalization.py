"""Stain normalisation as an evaluation condition of a run (``run --normalize macenko``).

The run normalises every image the models see — the clean images and each shifted batch — after
the shift and before each model's preprocessing, once per (batch, shift, magnitude) step, shared
by all checkpoints. The normaliser is :class:`shiftbench.normalize.StainNormalizer` fitted once on
the target image. Images without a usable stain estimate (tissue-free, degenerate stains) pass
through unchanged; part files record which, so the manifest's counts survive ``--resume``.

Identity: a normalised run records ``{method, target_sha256}`` under ``normalize`` in its config
(absent without normalisation, so runs of earlier versions stay resumable).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from shiftbench.errors import UserInputError
from shiftbench.normalize import StainNormalizer
from shiftbench.run.plan import CLEAN, ShiftPlan

__all__ = [
    "NONE",
    "NORMALIZE_METHODS",
    "Passthrough",
    "RunNormalizer",
    "check_normalize_options",
    "normalization_record",
    "open_normalizer",
]

NONE = "none"
#: Values of ``--normalize``.
NORMALIZE_METHODS = (NONE, "macenko")

#: Images passed through in one part file: ``[shift key, magnitude, [sample ids]]`` entries.
Passthrough = list[list[Any]]


@dataclass
class RunNormalizer:
    """The fitted normaliser of a run and what identifies it.

    Attributes:
        method: ``"macenko"``.
        target: the target image path as given.
        target_sha256: SHA-256 of the target file's bytes (part of the run's identity).
        normalizer: fitted on the target.
    """

    method: str
    target: str
    target_sha256: str
    normalizer: StainNormalizer

    def identity(self) -> dict[str, str]:
        """The manifest ``config`` entry a resumed run must match."""
        return {"method": self.method, "target_sha256": self.target_sha256}

    def __call__(
        self,
        images: torch.Tensor,
        sample_ids: torch.Tensor,
        key: str,
        magnitude: float,
        passthrough: Passthrough,
        timers: dict[str, float],
    ) -> torch.Tensor:
        """Normalise one step's uint8 batch (on its device); note the pass-through ids.

        Args:
            images: uint8 ``[B, 3, H, W]`` (clean or shifted).
            sample_ids: ids of the rows of ``images``.
            key, magnitude: the step (shift key, ``""``/0 for the clean images).
            passthrough: appended to when images pass through unchanged.
            timers: ``timers["normalize"]`` gets the seconds spent.

        Returns:
            The normalised batch (a new tensor; ``images`` is not modified).
        """
        t0 = time.perf_counter()
        result = self.normalizer(images)
        if result.n_passthrough:
            ids = sample_ids[result.passthrough.cpu()].tolist()
            passthrough.append([key, float(magnitude), [int(i) for i in ids]])
        timers["normalize"] = timers.get("normalize", 0.0) + time.perf_counter() - t0
        return result.images


def check_normalize_options(method: str, target: str | os.PathLike[str] | None) -> None:
    """Cheap checks of ``--normalize`` / ``--normalize-target`` (nothing read).

    Raises:
        UserInputError: unknown method; ``macenko`` without a target; a target without it.
    """
    if method not in NORMALIZE_METHODS:
        raise UserInputError(f"--normalize {method!r} is not one of {', '.join(NORMALIZE_METHODS)}")
    if method == NONE and target is not None:
        raise UserInputError(
            f"--normalize-target {target} is given but --normalize is none; add --normalize "
            "macenko, or drop the target"
        )
    if method != NONE and target is None:
        raise UserInputError(
            f"--normalize {method} needs --normalize-target IMG: an H&E image whose stains "
            "every test image is mapped to"
        )


def open_normalizer(method: str, target: str | os.PathLike[str] | None) -> RunNormalizer | None:
    """The run's normaliser fitted on ``target`` (None for ``"none"``).

    Raises:
        UserInputError: bad options (:func:`check_normalize_options`), a target that is missing,
            unreadable or has no usable tissue.
    """
    check_normalize_options(method, target)
    if method == NONE:
        return None
    assert target is not None
    path = Path(target)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise UserInputError(
            f"normalisation target {path} {what}; give an H&E image file (PNG, JPEG, TIFF)"
        )
    normalizer = StainNormalizer.from_file(path)
    return RunNormalizer(method, str(path), _sha256(path), normalizer)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def normalization_record(
    norm: RunNormalizer, passthrough: set[tuple[str, float, int]], plans: list[ShiftPlan]
) -> dict[str, Any]:
    """The manifest's ``normalize`` entry: settings, fitted target, pass-through counts.

    Args:
        norm: the run's normaliser.
        passthrough: ``(shift key, magnitude, sample id)`` of every image passed through, over
            all part files (duplicates from re-computed batches already merged).
        plans: the run's shifts; entries of other shifts (left by an earlier invocation) and of
            magnitudes not in the run are not counted.

    Returns:
        ``method, target, target_sha256, stain_matrix, max_concentrations, concentrations,
        regularizer, min_tissue_pixels, n_passthrough`` (images × (shift, magnitude) conditions
        passed through; the clean images count once) and ``passthrough_sample_ids`` (unique).
    """
    steps = {(p.key, float(m)) for p in plans for m in p.non_identity}
    if any(p.has_identity for p in plans):
        steps.add((CLEAN, 0.0))
    counted = [t for t in passthrough if (t[0], float(t[1])) in steps]
    described = norm.normalizer.describe()
    return {
        "method": norm.method,
        "target": norm.target,
        "target_sha256": norm.target_sha256,
        "stain_matrix": described["target_stain_matrix"],
        "max_concentrations": described["target_max_concentrations"],
        "concentrations": described["concentrations"],
        "regularizer": described["regularizer"],
        "min_tissue_pixels": described["min_tissue_pixels"],
        "n_passthrough": len(counted),
        "passthrough_sample_ids": sorted({int(t[2]) for t in counted}),
    }
