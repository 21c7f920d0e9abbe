"""The ladder of evaluation sets (the SD paper's Figure 5): the clean metric of each set.

x = the evaluation sets in the order given to ``run --data`` (moving away from the training
data), y = the metric at the identity magnitude (unshifted images), one line per group with a
band over seeds. compute (:func:`compute_ladder`) → render (:func:`render_ladder`); written by
:func:`shiftbench.report.curves.plot` with ``x="dataset"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from shiftbench.bootstrap import ResampleWeights
from shiftbench.errors import UserInputError
from shiftbench.report.align import align, shift_axes
from shiftbench.report.cells import read_cell
from shiftbench.report.format import METRIC_TITLES, is_percent
from shiftbench.report.notes import single_seed_notes
from shiftbench.report.replicates import (
    cell_replicates,
    group_mean,
    group_sd,
    higher_is_better,
    interval,
)
from shiftbench.report.study import Study


def clean_shift(study: Study, shifts: Sequence[str] | None) -> str:
    """A shift whose identity magnitude is known: its identity cell holds the clean rows.

    The identity rows are the same under every shift, so any such shift gives the clean score;
    the first of ``shifts`` (default: all shifts, sorted) is taken.

    Raises:
        UserInputError: an unknown shift, or no shift with a known identity.
    """
    available = sorted(pd.unique(study.grid["shift"]))
    candidates = list(shifts) if shifts else available
    unknown = [s for s in candidates if s not in available]
    if unknown:
        raise UserInputError(
            f"shift(s) {', '.join(unknown)} not in the runs; available: {', '.join(available)}"
        )
    identity, _, _ = shift_axes(study, candidates)
    mags = study.grid.groupby("shift")["magnitude"].unique()
    for s in candidates:
        if identity[s] is not None and identity[s] in set(map(float, mags[s])):
            return s
    raise UserInputError(
        "no shift has a known identity magnitude, so the clean score of each set is unknown; "
        "load the shifts' plugin with --plugin"
    )


def compute_ladder(
    study: Study,
    *,
    metric: str,
    hue: str,
    shifts: Sequence[str] | None,
    band: str,
    n_boot: int,
    seed: int,
    ci: float,
    notes: list[str],
) -> pd.DataFrame:
    """The ladder's numbers: per set (given order) × group, the clean metric over seeds.

    Per set, one cell is read: the identity magnitude of :func:`clean_shift`. For each group
    (value of ``hue``): mean, SD (ddof = 1) and SE (= SD / √seeds) over its checkpoints of the
    metric; the band is mean ± SD (``band="sd"``) or the ``ci`` percentile interval of the
    seed-averaged metric from ``n_boot`` resamples of the set's test samples (``band="ci"``).

    Returns:
        One row per set × group: ``dataset``, ``hue``, n_seeds, n_samples, shift, magnitude,
        ``<metric>_mean``, ``<metric>_sd_ddof1``, ``<metric>_se``, band, band_low, band_high.
    """
    rows = []
    for name in study.datasets:
        sub = study.for_dataset(name)
        shift = clean_shift(sub, shifts)
        aligned = align(sub, hue, [shift], option="--hue")
        if band == "sd":
            single_seed_notes(aligned, notes)
        ident = aligned.identity[shift]
        assert ident is not None  # clean_shift picks a shift with a known identity
        cell = read_cell(sub, aligned, shift, ident)
        boot = n_boot if band == "ci" else 0
        weights = ResampleWeights(aligned.universe.size, boot, seed, with_point=True)
        reps = cell_replicates(cell, weights, metric)  # [1 + B, K]
        mean, sd = group_mean(reps[0], aligned), group_sd(reps[0], aligned)
        seed_means = group_mean(reps, aligned)  # [1 + B, G]
        for j, g in enumerate(aligned.group_names):
            n_seeds = aligned.n_seeds(g)
            if band == "sd":
                lo, hi = mean[j] - sd[j], mean[j] + sd[j]
            else:
                lo, hi, _ = interval(seed_means[1:, j], ci)
            rows.append(
                {
                    "dataset": name,
                    hue: g,
                    "n_seeds": n_seeds,
                    "n_samples": cell.ids.size,
                    "shift": shift,
                    "magnitude": ident,
                    f"{metric}_mean": mean[j],
                    f"{metric}_sd_ddof1": sd[j],
                    f"{metric}_se": sd[j] / math.sqrt(n_seeds),
                    "band": "sd" if band == "sd" else f"ci{100 * ci:g}_bootstrap_samples",
                    "band_low": lo,
                    "band_high": hi,
                }
            )
    return pd.DataFrame(rows)


def ladder_groups(data: pd.DataFrame, hue: str) -> list[str]:
    """The groups of a ladder in first-seen order (each set lists them sorted)."""
    return list(dict.fromkeys(data[hue]))


def render_ladder(data: pd.DataFrame, metric: str, hue: str, title: str) -> Any:
    """The ladder figure: x = sets (categorical, given order), one line per group with a band."""
    from matplotlib.figure import Figure

    from shiftbench.report.curves import LINESTYLES, MARKERS, palette

    sets = list(dict.fromkeys(data["dataset"]))
    groups = ladder_groups(data, hue)
    position = {s: i for i, s in enumerate(sets)}
    fig = Figure(figsize=(max(4.2, 1.3 * len(sets) + 2.0), 3.8), layout="constrained")
    ax = fig.subplots()
    colors = palette(len(groups))
    scale = 100.0 if is_percent(metric) else 1.0
    for j, g in enumerate(groups):
        d = data[data[hue] == g]
        x = d["dataset"].map(position).to_numpy(dtype=float)
        y = d[f"{metric}_mean"].to_numpy() * scale
        lo = d["band_low"].to_numpy(dtype=float) * scale
        hi = d["band_high"].to_numpy(dtype=float) * scale
        seeds = sorted(set(d["n_seeds"]))
        n_txt = "–".join(map(str, (seeds[0], seeds[-1]) if len(seeds) > 1 else seeds))
        ax.plot(
            x,
            y,
            color=colors[j],
            marker=MARKERS[j % len(MARKERS)],
            linestyle=LINESTYLES[j % len(LINESTYLES)],
            markersize=5,
            linewidth=1.6,
            label=f"{g} ({n_txt} seed{'s' if seeds != [1] else ''})",
        )
        if np.isfinite(lo).any():
            ax.fill_between(x, lo, hi, color=colors[j], alpha=0.2, linewidth=0)
    _style_ladder_axes(ax, sets, metric)
    fig.legend(loc="outside lower center", ncols=min(len(groups), 5), frameon=False)
    fig.suptitle(title, fontsize=11)
    return fig


def _style_ladder_axes(ax: Any, sets: list[str], metric: str) -> None:
    """One x tick per set (given order), the y label with the metric's direction, grid."""
    ax.set_xticks(range(len(sets)))
    ax.set_xticklabels(sets, fontsize=9)
    ax.set_xlim(-0.3, len(sets) - 0.7)
    ax.set_xlabel("evaluation set (order given to run)")
    direction = "higher is better" if higher_is_better(metric) else "lower is better"
    unit = " (%)" if is_percent(metric) else ""
    ax.set_ylabel(f"clean {METRIC_TITLES[metric]}{unit}, {direction}")
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
