"""ROC curves of seed ensembles with bootstrap AUROC CIs and DeLong's test (the paper's Figure 7).

Reads one cell (shift × magnitude) of the study, nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shiftbench.errors import UserInputError
from shiftbench.report.align import Aligned, align, fmt_list
from shiftbench.report.cells import Cell, read_cell
from shiftbench.report.curves import LINESTYLES, palette
from shiftbench.report.format import p_text
from shiftbench.report.replicates import check_baseline, check_common
from shiftbench.report.study import Study, load_runs
from shiftbench.report.write import figure_paths, save_figure, write_csv
from shiftbench.stats import delong_test, ensemble_probs


@dataclass
class RocResult:
    """What :func:`roc` computed and wrote.

    Attributes:
        summary: per method: seeds, AUROC of the seed ensemble with bootstrap CI, and DeLong's
            test against the baseline (``<out>_auroc.csv``).
        curves: the ROC points per method (``<out>.csv``).
        paths: png, pdf, csv, summary.
        notes: warnings.
    """

    summary: pd.DataFrame
    curves: pd.DataFrame
    paths: dict[str, Path]
    notes: list[str]


def _set_text(study: Study) -> str:
    """``"data set NAME, "`` for a study restricted to one of several sets, else empty."""
    return f"data set {study.datasets[0]}, " if study.sample_ids is not None else ""


def match_magnitude(aligned: Aligned, shift: str, magnitude: float | str) -> float:
    mags = aligned.magnitudes[shift]
    if isinstance(magnitude, str):
        if magnitude == "strongest":
            ident = aligned.identity[shift]
            if ident is None:
                raise UserInputError(
                    f"shift {shift!r}: identity unknown, cannot pick the strongest magnitude; "
                    "give a number"
                )
            return max(mags, key=lambda m: (abs(m - ident), m))
        try:
            magnitude = float(magnitude)
        except ValueError:
            raise UserInputError(
                f"magnitude {magnitude!r} is not a number or 'strongest'"
            ) from None
    hits = [m for m in mags if math.isclose(m, float(magnitude), rel_tol=1e-9, abs_tol=1e-12)]
    if not hits:
        raise UserInputError(
            f"shift {shift!r} has no magnitude {magnitude:g}; available: {fmt_list(mags)}"
        )
    return hits[0]


def roc(
    runs: str | Path | Sequence[str | Path] | Study,
    *,
    shift: str,
    magnitude: float | str,
    out: str | Path,
    by: str = "method",
    baseline: str | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    plugins: Sequence[str] = (),
    title: str | None = None,
    dataset: str | None = None,
) -> RocResult:
    """ROC curves of seed ensembles at one shift magnitude (the paper's Figure 7).

    Per method (value of ``by``), the ensemble is the mean positive-class probability over its
    seeds. The legend gives its AUROC with a ``ci`` percentile bootstrap interval over test
    samples, and for every method but the baseline DeLong's two-sided test of its AUROC against
    the baseline's (same samples). The positive class is the second class.

    With C > 2 classes, per method the ensemble's mean class probabilities give one one-vs-rest
    curve per class plus the macro-average curve (drawn thick; its AUROC = the mean of the class
    AUROCs = scikit-learn's ``roc_auc_score(multi_class="ovr", average="macro")``), each AUROC
    with a percentile bootstrap CI (:func:`shiftbench.multiclass_roc.multiclass_roc`). DeLong's
    test is binary and is not computed (noted in the title and in ``notes``).

    Args:
        runs: run directories (or a loaded :class:`Study`).
        shift: shift name; magnitude: a magnitude of its sweep, or ``"strongest"`` (farthest
            from the identity).
        out: figure path ending in ``.png`` or ``.pdf``.
        by: per-checkpoint column naming the method.
        baseline: reference method for DeLong's test (default: the first method in sorted order).
        n_boot, seed, ci: bootstrap of the AUROC interval.
        plugins: modules defining extra shifts.
        title: figure title.
        dataset: the evaluation set; required when the runs hold several sets.

    Returns:
        :class:`RocResult`.
    """
    paths = figure_paths(out)
    paths["summary"] = paths["csv"].with_name(paths["csv"].stem + "_auroc.csv")
    study = runs if isinstance(runs, Study) else load_runs(runs, plugins=plugins)
    study = study.select(dataset)
    aligned, mag, cell = _roc_cell(study, shift, magnitude, by, baseline, n_boot, ci)
    notes: list[str] = []
    if study.num_classes > 2:
        summary, curves, notes = compute_multiclass_roc(
            cell, aligned, mag, study.class_names, n_boot, seed, ci
        )
        if title is None:
            title = _multiclass_title(study, aligned, shift, mag, cell, n_boot, ci)
        fig = draw_multiclass_roc(summary, curves, aligned, title)
    else:
        ref = baseline if baseline is not None else aligned.group_names[0]
        summary, curves = compute_roc(cell, aligned, mag, ref, n_boot, seed, ci)
        if title is None:
            title = _binary_title(study, aligned, shift, mag, cell, n_boot, ci, ref)
        fig = _draw_roc(summary, curves, aligned, ref, study.class_names[1], title)
    _write_roc(paths, fig, summary, curves)
    return RocResult(summary, curves, paths, notes)


def _roc_cell(
    study: Study,
    shift: str,
    magnitude: float | str,
    by: str,
    baseline: str | None,
    n_boot: int,
    ci: float,
) -> tuple[Aligned, float, Cell]:
    """Check the options against ``study`` and read the cell: ``(aligned, magnitude, cell)``."""
    check_common("auroc", n_boot, ci, study.num_classes)
    if n_boot < 1:
        raise UserInputError("roc needs n_boot ≥ 1 for the AUROC interval")
    aligned = align(study, by, [shift])
    check_baseline(aligned, baseline)
    mag = match_magnitude(aligned, shift, magnitude)
    cell = read_cell(study, aligned, shift, mag)
    if len(np.unique(cell.labels)) < 2:
        raise UserInputError(f"{shift} {mag:g}: the test set has one class only; AUROC undefined")
    return aligned, mag, cell


def _multiclass_title(
    study: Study, aligned: Aligned, shift: str, mag: float, cell: Cell, n_boot: int, ci: float
) -> str:
    """The default title with more than two classes (no DeLong test)."""
    return (
        f"One-vs-rest ROC of seed ensembles: {_set_text(study)}{shift}, "
        f"{aligned.units[shift]} = {mag:g}, "
        f"n = {cell.ids.size}\nAUROC {100 * ci:g} % bootstrap CI (B = {n_boot}); "
        "macro = mean over classes; DeLong: binary only, not computed"
    )


def _binary_title(
    study: Study,
    aligned: Aligned,
    shift: str,
    mag: float,
    cell: Cell,
    n_boot: int,
    ci: float,
    ref: str,
) -> str:
    """The default title of a binary ROC figure (DeLong against ``ref``)."""
    return (
        f"ROC of seed ensembles: {_set_text(study)}{shift}, {aligned.units[shift]} = {mag:g}, "
        f"n = {cell.ids.size}\nAUROC {100 * ci:g} % bootstrap CI (B = {n_boot}); "
        f"DeLong two-sided vs {ref}"
    )


def _write_roc(
    paths: dict[str, Path], fig: Any, summary: pd.DataFrame, curves: pd.DataFrame
) -> None:
    """Write the ROC points, the AUROC summary and the figure (png, pdf)."""
    write_csv(paths["csv"], curves)
    write_csv(paths["summary"], summary)
    save_figure(fig, paths["png"])
    save_figure(fig, paths["pdf"])


def compute_roc(
    cell: Cell, aligned: Aligned, mag: float, ref: str, n_boot: int, seed: int, ci: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(summary, curves)``: per method the ensemble's AUROC, CI and DeLong test; ROC points."""
    from sklearn.metrics import roc_curve

    ens = {g: ensemble_probs(cell.probs[aligned.members(g)])[:, 1] for g in aligned.group_names}
    summary_rows, curve_rows = [], []
    for g in aligned.group_names:
        summary_rows.append(_summary_row(cell, aligned, mag, ref, g, ens, n_boot, seed, ci))
        fpr, tpr, thr = roc_curve(cell.labels, ens[g], pos_label=1)
        for f, t, th in zip(fpr, tpr, thr, strict=True):
            curve_rows.append({aligned.by: g, "fpr": f, "tpr": t, "threshold": th})
    summary = pd.DataFrame(summary_rows)
    for col in ("delong_diff", "delong_ci_low", "delong_ci_high", "delong_z", "delong_p"):
        if col not in summary:
            summary[col] = np.nan
    curves = pd.DataFrame(curve_rows)

    return summary, curves


def _summary_row(
    cell: Cell,
    aligned: Aligned,
    mag: float,
    ref: str,
    g: str,
    ens: dict[str, np.ndarray],
    n_boot: int,
    seed: int,
    ci: float,
) -> dict[str, Any]:
    """Method ``g``: its ensemble's AUROC with bootstrap CI, and DeLong's test against ``ref``.

    ``ens``: the positive-class probability of every method's seed ensemble.
    """
    from shiftbench.stats import bootstrap_ci, metric_values

    scores = ens[g]
    two = np.stack([1.0 - scores, scores], axis=1)
    res = bootstrap_ci(
        lambda w, y, p, pr: metric_values("auroc", w, y, p, pr),
        cell.labels,
        two.argmax(axis=1),
        two,
        n_boot=n_boot,
        ci=ci,
        seed=seed,
    )
    row: dict[str, Any] = {
        aligned.by: g,
        "shift": cell.shift,
        "units": aligned.units[cell.shift],
        "magnitude": mag,
        "n_seeds": aligned.n_seeds(g),
        "n_samples": cell.ids.size,
        "auroc": res.estimate,
        "auroc_ci_low": res.ci_low,
        "auroc_ci_high": res.ci_high,
        "baseline": ref,
    }
    if g != ref:
        dl = delong_test(cell.labels, scores, ens[ref])
        row.update(
            {
                "delong_diff": dl.difference,
                "delong_ci_low": dl.ci_low,
                "delong_ci_high": dl.ci_high,
                "delong_z": dl.z,
                "delong_p": dl.p_value,
            }
        )
    return row


def compute_multiclass_roc(
    cell: Cell,
    aligned: Aligned,
    mag: float,
    class_names: list[str],
    n_boot: int,
    seed: int,
    ci: float,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """``(summary, curves, notes)`` of the one-vs-rest ROC of every method's seed ensemble.

    ``summary``: one row per method × curve (each class and ``macro``) with ``n_positive``,
    ``n_negative``, ``auroc`` and its CI; ``curves``: the ROC points (``curve, fpr, tpr,
    threshold``) per method.
    """
    from shiftbench.multiclass_roc import multiclass_roc

    notes = [
        "DeLong's test compares two binary AUROCs; it is not computed for "
        f"{len(class_names)} classes (compare methods by their bootstrap CIs)."
    ]
    summaries, curve_tables = [], []
    for g in aligned.group_names:
        ens = ensemble_probs(cell.probs[aligned.members(g)])
        res = multiclass_roc(
            cell.labels, ens, class_names=list(class_names), n_boot=n_boot, seed=seed, ci=ci
        )
        head = {
            aligned.by: g,
            "shift": cell.shift,
            "units": aligned.units[cell.shift],
            "magnitude": mag,
            "n_seeds": aligned.n_seeds(g),
            "n_samples": cell.ids.size,
        }
        summaries.append(res.auroc.assign(**head)[[*head, *res.auroc.columns]])
        curve_tables.append(res.curves.assign(**{aligned.by: g})[[aligned.by, *res.curves]])
        if res.undefined and g == aligned.group_names[0]:
            notes.append(
                f"classes without a ROC curve (no positive or no negative sample): "
                f"{', '.join(res.undefined)}"
            )
    return (
        pd.concat(summaries, ignore_index=True),
        pd.concat(curve_tables, ignore_index=True),
        notes,
    )


def draw_multiclass_roc(
    summary: pd.DataFrame, curves: pd.DataFrame, aligned: Aligned, title: str
) -> Any:
    """One panel per method: a thin curve per class, the macro-average curve thick and black."""
    from matplotlib.figure import Figure

    from shiftbench.multiclass_roc import MACRO

    groups = aligned.group_names
    fig = Figure(figsize=(5.2 * len(groups), 5.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(groups), squeeze=False)[0])
    class_curves = [c for c in dict.fromkeys(curves["curve"]) if c != MACRO]
    colors = palette(len(class_curves))
    for ax, g in zip(axes, groups, strict=True):
        ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1)
        sg = summary[summary[aligned.by] == g].set_index("curve")
        cg = curves[curves[aligned.by] == g]
        for name in [*class_curves, MACRO]:
            pts = cg[cg["curve"] == name]
            if not pts.empty:
                _draw_class_curve(ax, pts, sg.loc[name], name, class_curves, colors)
        _style_multiclass_panel(ax, f"{g} (ensemble of {aligned.n_seeds(g)}): AUROC [CI]")
    fig.suptitle(title, fontsize=9)
    return fig


def _draw_class_curve(
    ax: Any, pts: pd.DataFrame, r: pd.Series, name: str, class_curves: list[str], colors: list[Any]
) -> None:
    """One one-vs-rest curve (the macro average thick and black), AUROC [CI] as its label."""
    from shiftbench.multiclass_roc import MACRO

    macro = name == MACRO
    ax.plot(
        pts["fpr"],
        pts["tpr"],
        color="black" if macro else colors[class_curves.index(name)],
        linewidth=2.6 if macro else 1.1,
        alpha=1.0 if macro else 0.8,
        zorder=3 if macro else 2,
        label=f"{name}: {r['auroc']:.3f} [{r['auroc_ci_low']:.3f}, {r['auroc_ci_high']:.3f}]",
    )


def _style_multiclass_panel(ax: Any, legend_title: str) -> None:
    """Unit square axes, one-vs-rest labels, grid and the legend."""
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (one-vs-rest)")
    ax.set_ylabel("true positive rate (one-vs-rest)")
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.legend(loc="lower right", fontsize=7, frameon=True, title=legend_title, title_fontsize=7.5)


def _draw_roc(
    summary: pd.DataFrame,
    curves: pd.DataFrame,
    aligned: Aligned,
    ref: str,
    positive: str,
    title: str,
) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 6.0), layout="constrained")
    ax = fig.subplots()
    colors = palette(len(aligned.group_names))
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1)
    for j, r in summary.iterrows():
        g = r[aligned.by]
        cg = curves[curves[aligned.by] == g]
        label = (
            f"{g} (ensemble of {r['n_seeds']}): AUROC {r['auroc']:.3f} "
            f"[{r['auroc_ci_low']:.3f}, {r['auroc_ci_high']:.3f}]"
        )
        if g != ref:
            label += (
                f"\n  vs {ref}: Δ {r['delong_diff']:+.3f}, DeLong Z = {r['delong_z']:.2f}, "
                f"{p_text(r['delong_p'])}"
            )
        ax.plot(
            cg["fpr"],
            cg["tpr"],
            color=colors[j],
            linestyle=LINESTYLES[j % len(LINESTYLES)],
            linewidth=1.8,
            label=label,
        )
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (1 − specificity)")
    ax.set_ylabel(f"true positive rate (sensitivity, positive = {positive})")
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.legend(loc="lower right", fontsize=7.5, frameon=True)
    ax.set_title(title, fontsize=9)
    return fig
