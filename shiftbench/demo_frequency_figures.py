"""Figures of the frequency scenario in the layout of Lu et al. 2025 (arXiv 2407.11379).

* Fig 2 layout: AUROC vs degradation, one panel per test set (I.I.D., O.O.D.), one line per
  method, mean ± 1 SD over seeds;
* Fig 3 layout: learning-priority curves, one panel per degradation, one line per method
  (mean ± 1 SD over seeds), the artifact's normalised radial power dashed.

Each ``write_*`` aggregates (pandas), draws (matplotlib) and writes ``.csv``, ``.png`` and
``.pdf`` atomically; it returns the paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shiftbench.spectrum import _atomic_savefig, _atomic_write_text, _csv
from shiftbench.spectrum_figures import curve_table

__all__ = ["auroc_table", "write_auroc_vs_degradation", "write_priority_by_degradation"]

_TESTS = {"iid": "I.I.D. test (correlation as in training)", "ood": "O.O.D. test (reversed)"}


def auroc_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per test set, method and degradation: AUROC mean, SD (ddof = 1) and seed count."""
    g = metrics.groupby(["test", "method", "degradation"], sort=True)["auroc"]
    out = g.agg(
        auroc_mean="mean",
        auroc_sd=lambda s: s.std(ddof=1) if len(s) > 1 else np.nan,
        n_seeds="count",
    )
    return out.reset_index()


def _write(fig: Any, table: pd.DataFrame, stem: Path) -> dict[str, Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = {ext: stem.with_suffix(f".{ext}") for ext in ("csv", "png", "pdf")}
    _atomic_write_text(paths["csv"], _csv(table))
    _atomic_savefig(fig, paths["png"])
    _atomic_savefig(fig, paths["pdf"])
    return paths


def write_auroc_vs_degradation(metrics: pd.DataFrame, stem: Path) -> dict[str, Path]:
    """Fig 2 layout from the per-checkpoint metrics (columns test, method, degradation, auroc)."""
    from matplotlib.figure import Figure

    table = auroc_table(metrics)
    fig = Figure(figsize=(9.0, 3.6))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (test, title) in zip(axes, _TESTS.items(), strict=True):
        for method, g in table[table["test"] == test].groupby("method", sort=True):
            g = g.sort_values("degradation")
            ax.errorbar(
                g["degradation"], g["auroc_mean"], yerr=g["auroc_sd"].fillna(0.0),
                marker="o", capsize=3, label=f"{method} (n={int(g['n_seeds'].max())})",
            )  # fmt: skip
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("degradation d")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("AUROC (mean ± 1 SD over seeds)")
    axes[0].set_ylim(0.0, 1.02)
    axes[1].legend(fontsize=8)
    fig.suptitle(
        "AUROC vs degradation d (share of target-class training images with the ring)",
        fontsize=10,
    )
    fig.tight_layout()
    return _write(fig, table, stem)


def write_priority_by_degradation(
    spectra: pd.DataFrame, stem: Path, ring_frequency: float
) -> dict[str, Path]:
    """Fig 3 layout from :func:`shiftbench.spectrum`'s table (column ``train_degradation``)."""
    from matplotlib.figure import Figure

    levels = sorted(spectra["train_degradation"].unique())
    frames = [
        curve_table(spectra[spectra["train_degradation"] == d], "method").assign(degradation=d)
        for d in levels
    ]
    table = pd.concat(frames, ignore_index=True)
    fig = Figure(figsize=(3.4 * len(levels) + 0.6, 3.4))
    axes = np.atleast_1d(fig.subplots(1, len(levels), sharey=True, squeeze=False)[0])
    for ax, d in zip(axes, levels, strict=True):
        sub = table[table["degradation"] == d]
        for method, g in sub.groupby("method", sort=True):
            g = g.sort_values("frequency")
            (line,) = ax.plot(g["frequency"], g["priority_mean"], label=str(method))
            if g["priority_sd"].notna().any():
                ax.fill_between(
                    g["frequency"], g["priority_mean"] - g["priority_sd"],
                    g["priority_mean"] + g["priority_sd"], color=line.get_color(), alpha=0.2,
                    lw=0,
                )  # fmt: skip
        if "artifact_power" in sub.columns:
            art = sub.groupby("frequency", sort=True)["artifact_power"].mean()
            ax.plot(art.index, art.to_numpy(), "k--", lw=1.0, label="ring artifact")
        ax.axvline(ring_frequency, color="grey", lw=0.8, ls=":")
        ax.set_title(f"degradation {d:g}", fontsize=10)
        ax.set_xlabel("radial frequency (cycles/pixel)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("learning priority (normalised)")
    axes[0].set_ylim(-0.02, 1.02)
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    return _write(fig, table, stem)
