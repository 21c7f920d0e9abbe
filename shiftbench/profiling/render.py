"""Figures of ``shiftbench profile``: where data sets sit on the sharpness and stain axes.

Pure rendering: takes the tables computed by :mod:`shiftbench.profiling.api` and returns
matplotlib ``Figure`` objects (no pyplot state, nothing written).

* ``sharpness``: one kernel density estimate (KDE) per data set of the variance of the
  Laplacian on a log axis, the medians dashed (the layout of the SD paper's Fig. 2); with a
  reference, two more panels: the reference's median sharpness along the blur and the sharpen
  sweeps, every other data set's median as a horizontal line and its equivalent magnitude marked.
* ``stain``: the same for the 99th-percentile haematoxylin and eosin concentrations (KDE row;
  with a reference, a second row with the haematoxylin and eosin sweeps).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shiftbench.profiling.equivalent import OUTSIDE

__all__ = ["sharpness_figure", "stain_figure"]

_LABELS = {
    "sharpness": "sharpness: variance of the Laplacian (grey levels²)",
    "h_p99": "haematoxylin: 99th-percentile concentration (OD units)",
    "e_p99": "eosin: 99th-percentile concentration (OD units)",
}


# seaborn's "colorblind" palette (Okabe–Ito based), without importing seaborn
_COLORS = (
    "#0173b2",
    "#de8f05",
    "#029e73",
    "#d55e00",
    "#cc78bc",
    "#ca9161",
    "#fbafe4",
    "#949494",
    "#ece133",
    "#56b4e9",
)


def _palette(names: list[str]) -> dict[str, Any]:
    return {name: _COLORS[i % len(_COLORS)] for i, name in enumerate(names)}


def _kde_panel(ax: Any, profiles: pd.DataFrame, column: str, colors: dict, log: bool) -> None:
    """Density of ``column`` per data set (KDE on log10 values when ``log``), medians dashed."""
    from scipy.stats import gaussian_kde

    for name, color in colors.items():
        v = profiles.loc[profiles["dataset"] == name, column].to_numpy(dtype=np.float64)
        v = v[np.isfinite(v) & ((v > 0) if log else True)]
        if v.size == 0:
            continue
        t = np.log10(v) if log else v
        med = float(np.median(v))
        label = f"{name} (n = {v.size}, median {med:.3g})"
        if v.size >= 2 and np.ptp(t) > 0:
            grid = np.linspace(t.min() - 0.5 * np.ptp(t), t.max() + 0.5 * np.ptp(t), 400)
            density = gaussian_kde(t)(grid)
            x = 10**grid if log else grid
            ax.plot(x, density, color=color, linewidth=1.8, label=label)
            ax.fill_between(x, density, color=color, alpha=0.12, linewidth=0)
        else:  # one value (or all equal): no density to estimate
            ax.plot([], [], color=color, label=label)
        ax.axvline(med, color=color, linestyle="--", linewidth=1)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(_LABELS.get(column, column))
    ax.set_ylabel("density (per log10 unit)" if log else "density")
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.legend(fontsize=7.5, frameon=True)


def _curve_panel(
    ax: Any, curves: pd.DataFrame, table: pd.DataFrame, shift: str, colors: dict, log: bool
) -> None:
    """Reference's median statistic along ``shift``'s sweep; other sets' medians and crossings."""
    c = curves[curves["shift"] == shift]
    t = table[table["shift"] == shift]
    if c.empty:
        return
    ref = str(t["reference"].iloc[0]) if len(t) else ""
    ax.plot(c["magnitude"], c["median"], color=colors.get(ref, "black"), marker="o", ms=3)
    for _, row in t.iterrows():
        color = colors[row["dataset"]]
        ax.axhline(row["dataset_median"], color=color, linestyle="--", linewidth=1)
        if row["magnitude"] == OUTSIDE:
            text = f"{row['dataset']}: {OUTSIDE}"
            ax.annotate(
                text,
                (0.02, row["dataset_median"]),
                xycoords=("axes fraction", "data"),
                fontsize=7,
                color=color,
                va="bottom",
            )
        else:
            m = float(row["magnitude"])
            ax.plot([m], [row["dataset_median"]], marker="X", ms=9, color=color)
            ax.annotate(
                f"{row['dataset']} ≈ {m:.3g}",
                (m, row["dataset_median"]),
                fontsize=7,
                color=color,
                xytext=(4, 4),
                textcoords="offset points",
            )
    units = str(t["units"].iloc[0]) if len(t) else ""
    ax.set_xlabel(f"{shift}: {units}")
    ax.set_ylabel(f"median {c['statistic'].iloc[0]} of {ref}")
    if log:
        ax.set_yscale("log")
    ax.set_title(f"equivalent {shift} (approximation)", fontsize=9)
    ax.grid(True, color="#dddddd", linewidth=0.6)


def sharpness_figure(
    profiles: pd.DataFrame,
    table: pd.DataFrame | None = None,
    curves: pd.DataFrame | None = None,
) -> Any:
    """KDE of sharpness per data set (+ blur and sharpen sweep panels with a reference)."""
    from matplotlib.figure import Figure

    names = list(pd.unique(profiles["dataset"]))
    colors = _palette(names)
    with_ref = table is not None and curves is not None and len(table) > 0
    fig = Figure(figsize=(15.0 if with_ref else 6.4, 4.6), layout="constrained")
    axes = fig.subplots(1, 3 if with_ref else 1, squeeze=False)[0]
    _kde_panel(axes[0], profiles, "sharpness", colors, log=True)
    axes[0].set_title("sharpness per data set (median dashed)", fontsize=9)
    if with_ref:
        for ax, shift in zip(axes[1:], ("blur", "sharpen"), strict=True):
            _curve_panel(ax, curves, table, shift, colors, log=True)
    return fig


def stain_figure(
    profiles: pd.DataFrame,
    table: pd.DataFrame | None = None,
    curves: pd.DataFrame | None = None,
) -> Any:
    """KDE of the H and E 99th-percentile concentrations (+ H and E sweep panels with a reference)."""
    from matplotlib.figure import Figure

    names = list(pd.unique(profiles["dataset"]))
    colors = _palette(names)
    with_ref = table is not None and curves is not None and len(table) > 0
    fig = Figure(figsize=(11.0, 8.6 if with_ref else 4.4), layout="constrained")
    axes = fig.subplots(2 if with_ref else 1, 2, squeeze=False)
    for ax, column in zip(axes[0], ("h_p99", "e_p99"), strict=True):
        _kde_panel(ax, profiles, column, colors, log=False)
    axes[0][0].set_title("Macenko stain amount per data set (median dashed)", fontsize=9)
    if with_ref:
        for ax, shift in zip(axes[1], ("haematoxylin", "eosin"), strict=True):
            _curve_panel(ax, curves, table, shift, colors, log=False)
    return fig
