"""Equivalent shift: how strong a synthetic shift of data set A matches data set B (approximation).

For a shift ``s`` with statistic ``T`` (blur and sharpen: ``sharpness``; haematoxylin: ``h_p99``;
eosin: ``e_p99``), the reference set A is shifted at every magnitude ``m`` of the shift's default
sweep and profiled again; ``y(m)`` = the median of ``T`` over A's shifted images. The equivalent
magnitude of B is where ``y(m)`` first reaches B's median ``T_B`` walking the sweep from the
identity, by linear interpolation between the two sweep magnitudes that bracket it:

    ``m* = m_k + (T_B − y_k) / (y_{k+1} − y_k) · (m_{k+1} − m_k)``

If ``T_B`` lies outside the values the sweep reaches, the result is "outside the sweep".

This is an approximation: it matches one summary statistic (a median), not the distribution of
images, and a real scanner or lab difference is not a pure blur or stain change. It answers "which
synthetic magnitude gives A the same median sharpness (or stain amount) as B", a rough position of
B on the shift axes that the benchmark sweeps.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from shiftbench.registry import get_shift
from shiftbench.shifts.base import Shift

__all__ = [
    "EQUIVALENT_SHIFTS",
    "OUTSIDE",
    "Crossing",
    "equivalent_magnitude",
    "equivalent_shift_table",
    "shifted_statistics",
]

#: Shift → the statistic it is matched on.
EQUIVALENT_SHIFTS = {
    "blur": "sharpness",
    "sharpen": "sharpness",
    "haematoxylin": "h_p99",
    "eosin": "e_p99",
}

#: ``magnitude`` value of ``equivalent_shift.csv`` when B's median is not reached by the sweep.
OUTSIDE = "outside the sweep"


@dataclass(frozen=True)
class Crossing:
    """Where a sweep curve reaches a target value.

    Attributes:
        magnitude: interpolated magnitude, or ``None`` if the target is outside the sweep.
        low, high: the two sweep magnitudes that bracket it (``None`` if outside).
    """

    magnitude: float | None
    low: float | None
    high: float | None


def equivalent_magnitude(
    magnitudes: Sequence[float], values: Sequence[float], target: float
) -> Crossing:
    """First crossing of ``target`` by the piecewise-linear curve ``(magnitudes, values)``.

    Args:
        magnitudes: sweep in order from the identity (e.g. blur 1, 2, …, 20).
        values: the median statistic at each magnitude (NaN entries are skipped).
        target: the value to reach.

    Returns:
        :class:`Crossing`; a target equal to a sweep value gives that magnitude exactly.
    """
    pts = [(float(m), float(v)) for m, v in zip(magnitudes, values, strict=True)]
    pts = [(m, v) for m, v in pts if math.isfinite(v)]
    if not math.isfinite(target) or not pts:
        return Crossing(None, None, None)
    for (m0, v0), (m1, v1) in itertools.pairwise(pts):
        for m, v in ((m0, v0), (m1, v1)):
            if v == target:  # exactly on a sweep magnitude
                return Crossing(m, m, m)
        if min(v0, v1) < target < max(v0, v1):
            return Crossing(m0 + (target - v0) / (v1 - v0) * (m1 - m0), m0, m1)
    if len(pts) == 1 and pts[0][1] == target:
        return Crossing(pts[0][0], pts[0][0], pts[0][0])
    return Crossing(None, None, None)


def shifted_statistics(
    images: torch.Tensor,
    sample_ids: Sequence[int],
    statistic: Callable[[torch.Tensor, str], torch.Tensor],
    shifts: Sequence[str] = tuple(EQUIVALENT_SHIFTS),
    *,
    seed: int = 0,
) -> pd.DataFrame:
    """The matched statistic of every image under every magnitude of each shift's default sweep.

    Args:
        images: uint8 ``[B, 3, H, W]``.
        sample_ids: data-set index of each image.
        statistic: ``(images, name) → tensor [B]``: statistic ``name`` of every image (e.g.
            :func:`shiftbench.profiling.statistics.one_statistic`).
        shifts: registered shift names, keys of :data:`EQUIVALENT_SHIFTS`.
        seed: base seed (the four default shifts are deterministic).

    Returns:
        Long table ``shift, magnitude, sample_id, statistic, value``.
    """
    frames = []
    for name in shifts:
        stat = EQUIVALENT_SHIFTS[name]
        shift: Shift = get_shift(name)
        for m, shifted in shift.sweep(images, seed=seed, sample_ids=list(sample_ids)):
            value = statistic(shifted, stat)
            frames.append(
                pd.DataFrame(
                    {
                        "shift": name,
                        "magnitude": float(m),
                        "sample_id": np.asarray(sample_ids, dtype=np.int64),
                        "statistic": stat,
                        "value": value.double().cpu().numpy(),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def equivalent_shift_table(
    sweep_values: pd.DataFrame, profiles: pd.DataFrame, reference: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Equivalent magnitude of every non-reference data set for every shift.

    Args:
        sweep_values: :func:`shifted_statistics` rows of the reference set's images.
        profiles: one row per image with ``dataset`` and the statistics columns.
        reference: name of the reference data set A.

    Returns:
        ``(table, curves)``: ``table`` has one row per (dataset, shift): ``reference, dataset,
        shift, statistic, units, reference_median, dataset_median, magnitude`` (a number or
        :data:`OUTSIDE`), ``bracket_low, bracket_high, sweep_min, sweep_max, note`` (why a set is
        outside); ``curves`` has the
        reference's median statistic per (shift, magnitude): ``shift, magnitude, statistic,
        median``.
    """
    from shiftbench.registry import get_shift_class

    curves = (
        sweep_values.groupby(["shift", "magnitude", "statistic"], sort=False)["value"]
        .median()
        .rename("median")
        .reset_index()
    )
    rows = []
    others = [d for d in pd.unique(profiles["dataset"]) if d != reference]
    ref_rows = profiles[profiles["dataset"] == reference]
    for name in pd.unique(curves["shift"]):
        c = curves[curves["shift"] == name]
        stat = str(c["statistic"].iloc[0])
        cls = get_shift_class(name)
        for d in others:
            target = float(profiles.loc[profiles["dataset"] == d, stat].median())
            hit = equivalent_magnitude(c["magnitude"].tolist(), c["median"].tolist(), target)
            reached = c["median"].dropna()
            note = ""
            if hit.magnitude is None and len(reached) and np.isfinite(target):
                side = "above" if target > reached.max() else "below"
                note = (
                    f"{d}'s median {stat} {target:.4g} is {side} every value the sweep reaches "
                    f"({reached.min():.4g}..{reached.max():.4g})"
                )
            rows.append(
                {
                    "reference": reference,
                    "dataset": d,
                    "shift": name,
                    "statistic": stat,
                    "units": cls.units,
                    "reference_median": float(ref_rows[stat].median()),
                    "dataset_median": target,
                    "magnitude": OUTSIDE if hit.magnitude is None else hit.magnitude,
                    "bracket_low": hit.low,
                    "bracket_high": hit.high,
                    "sweep_min": float(c["magnitude"].min()),
                    "sweep_max": float(c["magnitude"].max()),
                    "note": note,
                }
            )
    return pd.DataFrame(rows), curves
