"""Metric vs shift magnitude (the paper's Figure 4): compute the curves, draw them, write them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shiftbench.errors import UserInputError
from shiftbench.report.align import Aligned, align
from shiftbench.report.format import METRIC_TITLES, is_percent
from shiftbench.report.notes import single_seed_notes
from shiftbench.report.replicates import check_common, group_mean, interval, study_replicates
from shiftbench.report.study import Study, load_runs
from shiftbench.report.write import figure_paths, save_figure, write_csv
from shiftbench.stats import seed_bands

#: Band kinds of :func:`plot`: ±1 SD over seeds, or a bootstrap CI over test samples.
BANDS = ("sd", "ci")
#: x axes of :func:`plot`: the shift magnitude (one panel per shift) or the evaluation sets.
X_AXES = ("magnitude", "dataset")


@dataclass
class PlotResult:
    """What :func:`plot` computed and wrote: the plotted numbers and the file paths."""

    data: pd.DataFrame
    paths: dict[str, Path]
    notes: list[str]


def palette(n: int) -> list[Any]:
    import seaborn as sns

    return list(sns.color_palette("colorblind", n))


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
LINESTYLES = ("-", "--", "-.", ":")


def plot(
    runs: str | Path | Sequence[str | Path] | Study,
    *,
    out: str | Path,
    metric: str = "accuracy",
    hue: str = "method",
    shifts: Sequence[str] | None = None,
    band: str = "sd",
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    plugins: Sequence[str] = (),
    title: str | None = None,
    dataset: str | None = None,
    x: str = "magnitude",
) -> PlotResult:
    """Metric vs shift magnitude, one panel per shift (the paper's Figure 4).

    Lines are the mean over seeds of each ``hue`` group; the band is ±1 SD (ddof = 1) over seeds
    (``band="sd"``; none for a single seed) or the ``ci`` percentile interval of the
    seed-averaged metric from a bootstrap over test samples (``band="ci"``). The x axis is the
    magnitude in the shift's units. Writes ``<out>.png``, ``<out>.pdf`` and the plotted numbers
    as ``<out>.csv``.

    Args:
        runs: run directories (or a loaded :class:`Study`).
        out: figure path ending in ``.png`` or ``.pdf``.
        metric: one of accuracy, balanced_accuracy, auroc, recall.
        hue: per-checkpoint column with one line per value.
        shifts: shifts to draw, in panel order (default: all, sorted).
        band: ``sd`` or ``ci``.
        n_boot, seed, ci: bootstrap for ``band="ci"``.
        plugins: modules defining extra shifts.
        title: figure title (default names metric and band).
        dataset: the evaluation set to draw; required when the runs hold several sets
            (``run --data NAME=PATH …``), which are never pooled.
        x: ``magnitude`` (the curves above) or ``dataset``: the ladder of evaluation sets (the
            SD paper's Figure 5; :mod:`shiftbench.report.ladder`): x = the sets in the order
            given to ``run``, y = the clean metric (identity magnitude), one line per ``hue``
            group, mean over seeds with the same band; the CSV holds its numbers.

    Returns:
        :class:`PlotResult` with the plotted numbers (``data``) and ``paths`` (png, pdf, csv).
    """
    if band not in BANDS:
        raise UserInputError(f"unknown band {band!r}; valid: {', '.join(BANDS)}")
    if x not in X_AXES:
        raise UserInputError(f"unknown x axis {x!r}; valid: {', '.join(X_AXES)}")
    paths = figure_paths(out)
    study = runs if isinstance(runs, Study) else load_runs(runs, plugins=plugins)
    check_common(metric, n_boot, ci, study.num_classes)
    boot = n_boot if band == "ci" else 0
    if band == "ci" and boot == 0:
        raise UserInputError("band 'ci' needs n_boot > 0")
    if x == "dataset":
        if dataset is not None:
            raise UserInputError(
                "--dataset and --x dataset exclude each other: the ladder draws every set"
            )
        return _plot_ladder(study, paths, metric, hue, shifts, band, boot, seed, ci, title)
    study = study.select(dataset, hint=", or draw the ladder of sets with --x dataset")
    return _plot_magnitude(study, paths, metric, hue, shifts, band, boot, seed, ci, title)


def _plot_magnitude(
    study: Study,
    paths: dict[str, Path],
    metric: str,
    hue: str,
    shifts: Sequence[str] | None,
    band: str,
    boot: int,
    seed: int,
    ci: float,
    title: str | None,
) -> PlotResult:
    """``plot(x="magnitude")`` of a study of one set: compute, render and write the curves."""
    aligned = align(study, hue, shifts, option="--hue")
    notes: list[str] = []
    if band == "sd":
        single_seed_notes(aligned, notes)
    reps = study_replicates(study, aligned, metric, boot, seed)

    data = compute_curves(aligned, reps, metric, band, ci)

    band_txt = _band_text(band, ci, boot)
    on_set = f" on data set {study.datasets[0]}" if study.sample_ids is not None else ""
    title = title or (
        f"{METRIC_TITLES[metric]} vs shift magnitude{on_set} (mean over seeds, {band_txt})"
    )
    fig = _draw_curves(data, aligned, metric, hue, title)
    write_csv(paths["csv"], data)
    save_figure(fig, paths["png"])
    save_figure(fig, paths["pdf"])
    return PlotResult(data, paths, notes)


def _band_text(band: str, ci: float, boot: int) -> str:
    if band == "sd":
        return "±1 SD over seeds"
    return f"{100 * ci:g} % bootstrap CI over test samples (B = {boot})"


def _plot_ladder(
    study: Study,
    paths: dict[str, Path],
    metric: str,
    hue: str,
    shifts: Sequence[str] | None,
    band: str,
    boot: int,
    seed: int,
    ci: float,
    title: str | None,
) -> PlotResult:
    """``plot(x="dataset")``: compute, render and write the ladder of evaluation sets."""
    from shiftbench.report.ladder import compute_ladder, render_ladder

    notes: list[str] = []
    data = compute_ladder(
        study,
        metric=metric,
        hue=hue,
        shifts=shifts,
        band=band,
        n_boot=boot,
        seed=seed,
        ci=ci,
        notes=notes,
    )
    title = title or (
        f"Clean {METRIC_TITLES[metric]} per evaluation set "
        f"(mean over seeds, {_band_text(band, ci, boot)})"
    )
    fig = render_ladder(data, metric, hue, title)
    write_csv(paths["csv"], data)
    save_figure(fig, paths["png"])
    save_figure(fig, paths["pdf"])
    return PlotResult(data, paths, notes)


def compute_curves(
    aligned: Aligned,
    reps: dict[tuple[str, float], np.ndarray],
    metric: str,
    band: str,
    ci: float,
) -> pd.DataFrame:
    """The plotted numbers: per shift × group × magnitude, mean, SD and SE over seeds and band.

    Rows in panel order (shifts as given), then group order, then magnitude.
    """
    per_ck = _per_checkpoint(aligned, reps, metric)
    bands = seed_bands(per_ck, metric, by="_hue")
    rows = [_curve_row(r, aligned, reps, metric, band, ci) for _, r in bands.iterrows()]
    return _in_panel_order(pd.DataFrame(rows), aligned)


def _per_checkpoint(
    aligned: Aligned, reps: dict[tuple[str, float], np.ndarray], metric: str
) -> pd.DataFrame:
    """One row per cell × checkpoint: its group (``_hue``) and its metric on the cell."""
    per_ck = []
    for (shift, mag), values in reps.items():
        for k, ck in enumerate(aligned.checkpoints):
            per_ck.append(
                {
                    "_hue": aligned.groups[k],
                    "checkpoint": ck,
                    "shift": shift,
                    "magnitude": mag,
                    metric: values[0, k],
                }
            )
    return pd.DataFrame(per_ck)


def _curve_row(
    r: pd.Series,
    aligned: Aligned,
    reps: dict[tuple[str, float], np.ndarray],
    metric: str,
    band: str,
    ci: float,
) -> dict[str, Any]:
    """One plotted point (``r``: a row of :func:`seed_bands`) with its band."""
    shift, mag, g = r["shift"], float(r["magnitude"]), r["_hue"]
    mean, sd = r[f"{metric}_mean"], r[f"{metric}_sd_ddof1"]
    if band == "sd":
        lo, hi = mean - sd, mean + sd
    else:
        gm = group_mean(reps[(shift, mag)], aligned)[:, aligned.group_names.index(g)]
        lo, hi, _ = interval(gm[1:], ci)
    return {
        "shift": shift,
        "units": aligned.units[shift],
        "magnitude": mag,
        aligned.by: g,
        "n_seeds": int(r["n_seeds"]),
        "n_samples": aligned.cells[(shift, mag)].n,
        f"{metric}_mean": mean,
        f"{metric}_sd_ddof1": sd,
        f"{metric}_se": r[f"{metric}_se"],
        "band": "sd" if band == "sd" else f"ci{100 * ci:g}_bootstrap_samples",
        "band_low": lo,
        "band_high": hi,
    }


def _in_panel_order(data: pd.DataFrame, aligned: Aligned) -> pd.DataFrame:
    """Rows sorted by shift (as given), group (as aligned), then magnitude."""
    order = {s: i for i, s in enumerate(aligned.shifts)}
    gorder = {g: i for i, g in enumerate(aligned.group_names)}
    return data.sort_values(
        ["shift", aligned.by, "magnitude"],
        key=lambda c: (
            c.map(order) if c.name == "shift" else (c.map(gorder) if c.name == aligned.by else c)
        ),
        ignore_index=True,
    )


def _draw_curves(data: pd.DataFrame, aligned: Aligned, metric: str, hue: str, title: str) -> Any:
    """One panel per shift: the mean curve of every group with its band; shared legend."""
    from matplotlib.figure import Figure

    shifts = aligned.shifts
    n = len(shifts)
    ncols = n if n <= 3 else (2 if n == 4 else 3)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    colors = palette(len(aligned.group_names))
    for i, shift in enumerate(shifts):
        ax = axes[i // ncols][i % ncols]
        _draw_panel(ax, data[data["shift"] == shift], aligned, metric, hue, colors, i == 0)
        _style_panel(ax, aligned, shift, metric, i % ncols == 0)
    for i in range(n, nrows * ncols):
        axes[i // ncols][i % ncols].set_visible(False)
    fig.legend(loc="outside lower center", ncols=min(len(aligned.group_names), 5), frameon=False)
    fig.suptitle(title, fontsize=11)
    return fig


def _draw_panel(
    ax: Any,
    d: pd.DataFrame,
    aligned: Aligned,
    metric: str,
    hue: str,
    colors: list[Any],
    labelled: bool,
) -> None:
    """The curves of one shift (``d``: its rows of the plotted data); legend labels if asked."""
    scale = 100.0 if is_percent(metric) else 1.0
    for j, g in enumerate(aligned.group_names):
        dg = d[d[hue] == g].sort_values("magnitude")
        x = dg["magnitude"].to_numpy()
        y = dg[f"{metric}_mean"].to_numpy() * scale
        lo = dg["band_low"].to_numpy() * scale
        hi = dg["band_high"].to_numpy() * scale
        label = f"{g} ({aligned.n_seeds(g)} seed{'s' if aligned.n_seeds(g) != 1 else ''})"
        ax.plot(
            x,
            y,
            color=colors[j],
            marker=MARKERS[j % len(MARKERS)],
            linestyle=LINESTYLES[j % len(LINESTYLES)],
            markersize=4,
            linewidth=1.6,
            label=label if labelled else None,
        )
        if np.isfinite(lo).any():
            ax.fill_between(x, lo, hi, color=colors[j], alpha=0.2, linewidth=0)


def _style_panel(ax: Any, aligned: Aligned, shift: str, metric: str, left: bool) -> None:
    """Ticks at the magnitudes, title, axis labels (y only on the ``left`` column), grid."""
    from matplotlib.ticker import MaxNLocator

    mags = aligned.magnitudes[shift]
    if len(mags) <= 12:
        ax.set_xticks(mags)
        ax.set_xticklabels([f"{m:g}" for m in mags], fontsize=8)
    elif all(float(m).is_integer() for m in mags):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(shift, fontsize=11)
    ax.set_xlabel(aligned.units[shift])
    if left:
        ax.set_ylabel(METRIC_TITLES[metric] + (" (%)" if is_percent(metric) else ""))
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)


# =================================================================================================
# Figure 7: ROC of seed ensembles
