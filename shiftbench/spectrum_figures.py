"""Tables and figures of learning-priority spectra (:mod:`shiftbench.spectrum`).

``curve_table``/``heatmap_table`` aggregate the per-checkpoint table (pure pandas);
``draw_curves``/``draw_heatmap`` turn them into matplotlib figures (no files written here).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["curve_table", "draw_curves", "draw_heatmap", "heatmap_table"]


def _groups(table: pd.DataFrame, hue: str) -> pd.Series:
    """The curve each row belongs to: its ``hue`` value, else its checkpoint name."""
    if hue in table.columns:
        return table[hue].where(table[hue].notna(), table["checkpoint"]).astype(str)
    return table["checkpoint"].astype(str)


def _sort_key(values: pd.Series) -> pd.Series:
    numeric = pd.to_numeric(values, errors="coerce")
    return numeric if numeric.notna().all() else values.astype(str)


def curve_table(table: pd.DataFrame, hue: str = "method") -> pd.DataFrame:
    """Per ``hue`` value and frequency: mean and SD (ddof = 1) over checkpoints of the priority.

    Returns columns ``hue, frequency, priority_mean, priority_sd, n_checkpoints`` (and
    ``artifact_power`` when the table has it). With one checkpoint the SD is NaN.
    """
    df = table.assign(_group=_groups(table, hue))
    agg: dict[str, Any] = {
        "priority_mean": ("priority", "mean"),
        "priority_sd": ("priority", lambda s: s.std(ddof=1) if len(s) > 1 else np.nan),
        "n_checkpoints": ("checkpoint", "nunique"),
    }
    if "artifact_power" in df.columns:
        agg["artifact_power"] = ("artifact_power", "mean")
    out = df.groupby(["_group", "frequency"], sort=True).agg(**agg).reset_index()
    return out.rename(columns={"_group": hue})


def heatmap_table(table: pd.DataFrame, by: str, hue: str = "method") -> pd.DataFrame:
    """Long-form heat map: per ``hue`` value, ``by`` value and frequency, the mean priority."""
    df = table.assign(_group=_groups(table, hue))
    out = (
        df.groupby(["_group", by, "frequency"], sort=False, dropna=False)
        .agg(priority_mean=("priority", "mean"), n_checkpoints=("checkpoint", "nunique"))
        .reset_index()
        .rename(columns={"_group": hue})
    )
    order = out.assign(_k=_sort_key(out[by])).sort_values([hue, "_k", "frequency"])
    return order.drop(columns="_k").reset_index(drop=True)


def _ylabel(amplitude: bool) -> str:
    what = "amplitude" if amplitude else "power"
    return f"learning priority (normalised gradient {what})"


def draw_curves(curves: pd.DataFrame, hue: str, amplitude: bool = False) -> Any:
    """Priority vs frequency, one line per ``hue`` value with a ±1 SD band over checkpoints."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    for name, g in curves.groupby(hue, sort=True):
        g = g.sort_values("frequency")
        n = int(g["n_checkpoints"].max())
        (line,) = ax.plot(g["frequency"], g["priority_mean"], label=f"{name} (n={n})")
        if g["priority_sd"].notna().any():
            lo = g["priority_mean"] - g["priority_sd"]
            hi = g["priority_mean"] + g["priority_sd"]
            ax.fill_between(g["frequency"], lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    if "artifact_power" in curves.columns:
        art = curves.groupby("frequency", sort=True)["artifact_power"].mean()
        ax.plot(art.index, art.to_numpy(), "k--", lw=1.2, label="artifact (shifted − clean)")
    ax.set_xlabel("radial frequency (cycles/pixel)")
    ax.set_ylabel(_ylabel(amplitude))
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("learning priority: mean ± 1 SD over checkpoints")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def draw_heatmap(heat: pd.DataFrame, by: str, hue: str, amplitude: bool = False) -> Any:
    """One panel per ``hue`` value: rows = values of ``by`` (bottom: smallest), columns = f."""
    from matplotlib.figure import Figure

    groups = list(dict.fromkeys(heat[hue]))
    fig = Figure(figsize=(4.2 * len(groups) + 1.0, 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(groups), squeeze=False)[0])
    image = None
    for ax, name in zip(axes, groups, strict=True):
        g = heat[heat[hue] == name]
        rows = list(dict.fromkeys(g[by]))
        freqs = np.sort(g["frequency"].unique())
        mat = g.pivot_table(index=by, columns="frequency", values="priority_mean", sort=False)
        mat = mat.reindex(index=rows, columns=freqs)
        half = (freqs[1] - freqs[0]) / 2 if len(freqs) > 1 else 0.5
        image = ax.imshow(
            mat.to_numpy(dtype=float),
            aspect="auto",
            origin="lower",
            vmin=0.0,
            vmax=1.0,
            cmap="viridis",
            extent=(freqs[0] - half, freqs[-1] + half, -0.5, len(rows) - 0.5),
            interpolation="nearest",
        )
        ax.set_yticks(
            range(len(rows)), [f"{r:g}" if isinstance(r, float) else str(r) for r in rows]
        )
        ax.set_xlabel("radial frequency (cycles/pixel)")
        ax.set_ylabel(by)
        ax.set_title(str(name))
    if image is not None:
        fig.colorbar(image, ax=list(axes), label=_ylabel(amplitude))
    return fig
