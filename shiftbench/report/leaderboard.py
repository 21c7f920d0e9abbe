"""The leaderboard: one row per method, robustness summaries and paired differences.

compute (:func:`compute_leaderboard`: numbers from streamed cells) → render
(:func:`render_leaderboard`: Markdown / HTML strings) → write (:func:`leaderboard`).
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
from shiftbench.report.format import (
    METRIC_TITLES,
    fmt_diff,
    fmt_mean_sd,
    fmt_value,
    html_page,
    html_sections,
    is_percent,
    markdown_table,
)
from shiftbench.report.notes import distinct_warnings, single_seed_notes, warn
from shiftbench.report.replicates import (
    check_baseline,
    check_common,
    group_mean,
    group_sd,
    higher_is_better,
    interval,
    study_replicates,
)
from shiftbench.report.study import Study, load_runs
from shiftbench.report.write import write_csv, write_text
from shiftbench.stats import corruption_error, robustness_summary


@dataclass
class LeaderboardResult:
    """What :func:`leaderboard` computed and wrote.

    Attributes:
        table: one row per method (the content of ``leaderboard.csv``).
        differences: per shift × magnitude × method, the paired difference to the baseline
            (``differences.csv``), or None without a baseline.
        markdown: the content of ``leaderboard.md``.
        paths: ``{"md", "csv", "html"[, "differences"]: path}``.
        notes: warnings that were also written as footnotes.
    """

    table: pd.DataFrame
    differences: pd.DataFrame | None
    markdown: str
    paths: dict[str, Path]
    notes: list[str]


def leaderboard(
    runs: str | Path | Sequence[str | Path] | Study,
    *,
    out: str | Path,
    by: str = "method",
    baseline: str | None = None,
    metric: str = "balanced_accuracy",
    shifts: Sequence[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    plugins: Sequence[str] = (),
    title: str | None = None,
    dataset: str | None = None,
) -> LeaderboardResult:
    """Leaderboard of methods under shift, written as Markdown, CSV and HTML.

    Per method (value of column ``by``): the clean score (metric at the identity magnitude) and,
    per shift, the sweep mean (normalised area under the metric–magnitude curve), the worst
    magnitude's score and the drop from clean, each as mean ± SD (ddof = 1) over seeds. With a
    ``baseline``: the corruption error relative to it (mean ± SD over seeds of
    ``Σ_{m≠id}(1 − metric) / Σ_{m≠id}(1 − baseline's seed-mean metric)``) and the difference
    of the seed-averaged clean score and sweep mean to the baseline with a percentile CI and
    p-value from a paired bootstrap over test samples (ids resampled jointly for all methods,
    seeds and magnitudes). Rows are sorted by ``overall`` (mean over shifts of the sweep mean),
    best first.

    Args:
        runs: run directories (or a loaded :class:`Study`).
        out: output directory (created).
        by: per-checkpoint column that names the method.
        baseline: a value of ``by`` to compare against (None: no CE / difference columns).
        metric: one of accuracy, balanced_accuracy, auroc, recall.
        shifts: shifts to include (default: all in the runs, sorted).
        n_boot: bootstrap resamples for the differences (0: none).
        seed: resampling seed.
        ci: interval coverage.
        plugins: modules defining extra shifts (for their units and identity).
        title: heading of the Markdown / HTML page.
        dataset: the one evaluation set to rank (default: every set of the runs).

    With several evaluation sets (``run --data NAME=PATH …``) the sets are never pooled: one
    section per set in the given order (Markdown / HTML heading ``Data set: NAME``), and the
    CSVs gain a leading ``dataset`` column. A study of one set gives the same files as before.

    Returns:
        :class:`LeaderboardResult`.

    Raises:
        UserInputError: missing runs or columns, unknown metric / baseline / shift, test sets
            that differ between runs.
    """
    study = runs if isinstance(runs, Study) else load_runs(runs, plugins=plugins)
    check_common(metric, n_boot, ci, study.num_classes)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out} is a file; give a directory for the leaderboard")
    title = title or f"Leaderboard: {METRIC_TITLES[metric]} under distribution shift"
    names = study.datasets if dataset is None else study.for_dataset(dataset).datasets
    with distinct_warnings():  # one warning per fact, not one per set
        sections = [
            _section(study.for_dataset(name), by, baseline, metric, shifts, n_boot, seed, ci)
            for name in names
        ]
    if len(study.datasets) == 1:
        section = sections[0]
        table, differences, notes = section.table, section.differences, section.notes
        markdown, page = render_leaderboard(
            table, section.aligned, metric, baseline, title, section.footnotes
        )
    else:
        table, differences, notes, markdown, page = _several_sets(
            names, sections, metric, baseline, title
        )
    paths = _write_leaderboard(out, table, differences, markdown, page)
    return LeaderboardResult(table, differences, markdown, paths, notes)


def _write_leaderboard(
    out: Path, table: pd.DataFrame, differences: pd.DataFrame | None, markdown: str, page: str
) -> dict[str, Path]:
    """Write ``leaderboard.{csv,md,html}`` (and ``differences.csv``) to ``out``; their paths."""
    paths = {
        "md": out / "leaderboard.md",
        "csv": out / "leaderboard.csv",
        "html": out / "leaderboard.html",
    }
    write_csv(paths["csv"], table)
    write_text(paths["md"], markdown)
    write_text(paths["html"], page)
    if differences is not None:
        paths["differences"] = out / "differences.csv"
        write_csv(paths["differences"], differences)
    return paths


@dataclass
class _Section:
    """The leaderboard of one evaluation set: numbers, footnotes and warnings."""

    aligned: Aligned
    table: pd.DataFrame
    differences: pd.DataFrame | None
    footnotes: list[str]
    notes: list[str]


def _section(
    study: Study,
    by: str,
    baseline: str | None,
    metric: str,
    shifts: Sequence[str] | None,
    n_boot: int,
    seed: int,
    ci: float,
) -> _Section:
    """Compute the leaderboard of a study of one evaluation set."""
    aligned = align(study, by, shifts)
    check_baseline(aligned, baseline)
    notes: list[str] = []
    single_seed_notes(aligned, notes)
    boot = n_boot if baseline is not None else 0
    reps = study_replicates(study, aligned, metric, boot, seed)
    table, differences, n_samples, clean_shift = compute_leaderboard(
        aligned, reps, metric, baseline, boot, ci, notes
    )
    footnotes = _leaderboard_notes(
        study, aligned, metric, baseline, boot, seed, ci, n_samples, clean_shift
    )
    return _Section(aligned, table, differences, footnotes + notes, notes)


def _several_sets(
    names: list[str], sections: list[_Section], metric: str, baseline: str | None, title: str
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[str], str, str]:
    """One section per evaluation set: ``(table, differences, notes, markdown, html)``.

    The tables gain a leading ``dataset`` column; footnotes shared by every set are written
    once, the others once per set, prefixed with the set's name.
    """
    tables = [s.table.assign(dataset=n) for n, s in zip(names, sections, strict=True)]
    table = pd.concat([_dataset_first(t) for t in tables], ignore_index=True)
    differences = None
    if baseline is not None:
        differences = pd.concat(
            [
                _dataset_first(s.differences.assign(dataset=n))
                for n, s in zip(names, sections, strict=True)
                if s.differences is not None
            ],
            ignore_index=True,
        )
    common = [f for f in sections[0].footnotes if all(f in s.footnotes for s in sections)]
    footnotes = list(common)
    for name, s in zip(names, sections, strict=True):
        footnotes += [f"Data set {name}: {f}" for f in s.footnotes if f not in common]
    notes = list(dict.fromkeys(n for s in sections for n in s.notes))
    parts = [
        (
            f"Data set: {name}",
            *_leaderboard_rows(s.table, s.aligned, metric, baseline, s.aligned.by),
        )
        for name, s in zip(names, sections, strict=True)
    ]
    markdown = (
        f"# {title}\n\n"
        + "\n\n".join(f"## {h}\n\n" + markdown_table(header, rows) for h, header, rows in parts)
        + "\n\n## Notes\n\n"
        + "\n".join(f"{i}. {n}" for i, n in enumerate(footnotes, 1))
        + "\n"
    )
    return table, differences, notes, markdown, html_sections(title, parts, footnotes)


def _dataset_first(table: pd.DataFrame) -> pd.DataFrame:
    return table[["dataset", *[c for c in table.columns if c != "dataset"]]]


def compute_leaderboard(
    aligned: Aligned,
    reps: dict[tuple[str, float], np.ndarray],
    metric: str,
    baseline: str | None,
    boot: int,
    ci: float,
    notes: list[str],
) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, set[int]], str | None]:
    """The leaderboard's numbers from per-cell replicates ``{cell: [1 + B, K]}``.

    Returns:
        ``(table, differences, n_samples per shift, clean shift)``; warnings go to ``notes``.
    """
    groups = aligned.group_names
    base = groups.index(baseline) if baseline is not None else None
    columns: dict[str, list[Any]] = {
        aligned.by: list(groups),
        "metric": [metric] * len(groups),
        "n_seeds": [aligned.n_seeds(g) for g in groups],
        "seeds": [" ".join(aligned.seeds[g]) for g in groups],
    }
    clean_shift = next((s for s in aligned.shifts if aligned.identity[s] is not None), None)
    if clean_shift is None:
        warn(
            notes,
            "no shift has a known identity magnitude: clean score and drop are not reported "
            "(the run manifests record no identity and the shifts are not registered; "
            "load their plugin with --plugin)",
        )
    else:
        cell = reps[(clean_shift, aligned.identity[clean_shift])]
        columns.update(_stat_columns("clean", cell, aligned, base, boot, ci))
    sweep_points: list[np.ndarray] = []
    diff_rows: list[dict[str, Any]] = []
    n_samples: dict[str, set[int]] = {}
    for shift in aligned.shifts:
        mags = aligned.magnitudes[shift]
        curves = np.stack([reps[(shift, m)] for m in mags], axis=-1)  # [1 + B, K, M]
        columns.update(
            _shift_columns(shift, curves, aligned, base, boot, ci, clean_shift, notes, metric)
        )
        sweep_points.append(np.asarray(columns[f"{shift}.sweep_mean_mean"]))
        if base is not None:
            diff_rows += _difference_rows(aligned, reps, shift, metric, base, boot, ci)
        n_samples[shift] = {aligned.cells[(shift, m)].n for m in mags}
    columns["overall_sweep_mean"] = list(np.mean(sweep_points, axis=0))
    differences = pd.DataFrame(diff_rows) if base is not None else None
    return (
        _ranked(pd.DataFrame(columns), aligned.by, higher_is_better(metric)),
        differences,
        n_samples,
        clean_shift,
    )


def _ranked(table: pd.DataFrame, by: str, higher_better: bool = True) -> pd.DataFrame:
    """Sorted by overall sweep mean, then clean score (best first), then name; ``rank`` added.

    Best = highest for the classification metrics, lowest for the calibration errors.
    """
    sort_cols = ["overall_sweep_mean"] + (["clean_mean"] if "clean_mean" in table else [])
    table = table.sort_values(
        [*sort_cols, by], ascending=[not higher_better] * len(sort_cols) + [True], kind="stable"
    ).reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table


def _stat_columns(
    name: str, per_ck: np.ndarray, aligned: Aligned, base: int | None, boot: int, ci: float
) -> dict[str, list[Any]]:
    """``per_ck [1 + B, K]`` → mean, SD over seeds (and paired difference to the baseline)."""
    point = per_ck[0]
    out: dict[str, list[Any]] = {
        f"{name}_mean": list(group_mean(point, aligned)),
        f"{name}_sd_ddof1": list(group_sd(point, aligned)),
    }
    if base is None:
        return out
    gm = group_mean(per_ck, aligned)  # [1 + B, G]
    diff = gm - gm[:, [base]]
    est, lo, hi, p = [], [], [], []
    for j in range(len(aligned.group_names)):
        if j == base:
            est.append(math.nan), lo.append(math.nan), hi.append(math.nan), p.append(math.nan)
            continue
        ival = interval(diff[1:, j], ci) if boot > 0 else (math.nan,) * 3
        est.append(float(diff[0, j]))
        lo.append(ival[0]), hi.append(ival[1]), p.append(ival[2])
    out[f"{name}_diff"] = est
    out[f"{name}_diff_ci_low"] = lo
    out[f"{name}_diff_ci_high"] = hi
    out[f"{name}_diff_p"] = p
    return out


def _shift_columns(
    shift: str,
    curves: np.ndarray,
    aligned: Aligned,
    base: int | None,
    boot: int,
    ci: float,
    clean_shift: str | None,
    notes: list[str],
    metric: str = "accuracy",
) -> dict[str, list[Any]]:
    """Sweep mean (with difference), worst, drop and CE of one shift from ``curves [1+B, K, M]``."""
    mags, ident = aligned.magnitudes[shift], aligned.identity[shift]
    better_up = higher_is_better(metric)
    summary = robustness_summary(mags, curves, ident, better_up)
    out = _stat_columns(f"{shift}.sweep_mean", summary["sweep_mean"], aligned, base, boot, ci)
    out[f"{shift}.worst_mean"] = list(group_mean(summary["worst"][0], aligned))
    out[f"{shift}.worst_sd_ddof1"] = list(group_sd(summary["worst"][0], aligned))
    if ident is not None and ident in mags:
        out[f"{shift}.drop_mean"] = list(group_mean(summary["drop"][0], aligned))
        out[f"{shift}.drop_sd_ddof1"] = list(group_sd(summary["drop"][0], aligned))
    elif clean_shift is not None:
        warn(notes, f"shift {shift!r}: identity magnitude unknown, drop not reported")
    if base is not None:
        baseline = aligned.group_names[base]
        base_curve = curves[0][aligned.members(baseline)].mean(axis=0)  # [M]
        ce = corruption_error(mags, curves[0], base_curve, ident, better_up)  # [K]
        out[f"{shift}.ce_mean"] = list(group_mean(ce, aligned))
        out[f"{shift}.ce_sd_ddof1"] = list(group_sd(ce, aligned))
    return out


def _difference_rows(
    aligned: Aligned,
    reps: dict[tuple[str, float], np.ndarray],
    shift: str,
    metric: str,
    base: int,
    boot: int,
    ci: float,
) -> list[dict[str, Any]]:
    """Per magnitude and non-baseline method: paired difference of the seed-mean metric."""
    baseline = aligned.group_names[base]
    rows = []
    for m in aligned.magnitudes[shift]:
        gm = group_mean(reps[(shift, m)], aligned)
        for j, g in enumerate(aligned.group_names):
            if j == base:
                continue
            d = gm[:, j] - gm[:, base]
            lo, hi, p = interval(d[1:], ci) if boot > 0 else (math.nan,) * 3
            rows.append(
                {
                    "shift": shift,
                    "units": aligned.units[shift],
                    "magnitude": m,
                    aligned.by: g,
                    "baseline": baseline,
                    "metric": metric,
                    f"{metric}_mean": gm[0, j],
                    f"baseline_{metric}_mean": gm[0, base],
                    "diff": d[0],
                    "diff_ci_low": lo,
                    "diff_ci_high": hi,
                    "diff_p": p,
                    "n_seeds": aligned.n_seeds(g),
                    "baseline_n_seeds": aligned.n_seeds(baseline),
                    "n_samples": aligned.cells[(shift, m)].n,
                }
            )
    return rows


def render_leaderboard(
    table: pd.DataFrame,
    aligned: Aligned,
    metric: str,
    baseline: str | None,
    title: str,
    footnotes: list[str],
) -> tuple[str, str]:
    """``(markdown, html)`` of a computed leaderboard."""
    header, rows = _leaderboard_rows(table, aligned, metric, baseline, aligned.by)
    markdown = (
        f"# {title}\n\n"
        + markdown_table(header, rows)
        + "\n\n## Notes\n\n"
        + "\n".join(f"{i}. {n}" for i, n in enumerate(footnotes, 1))
        + "\n"
    )
    return markdown, html_page(title, header, rows, footnotes)


def _leaderboard_rows(
    table: pd.DataFrame, aligned: Aligned, metric: str, baseline: str | None, by: str
) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)`` of the rendered table: one row of formatted cells per method."""
    has_clean = "clean_mean" in table
    header = ["rank", by, "seeds"]
    if has_clean:
        header.append("clean")
        if baseline is not None:
            header.append(f"Δ clean vs {baseline}")
    for s in aligned.shifts:
        header += [f"{s}: sweep mean", f"{s}: worst"]
        if baseline is not None:
            header += [f"{s}: CE vs {baseline}", f"{s}: Δ sweep mean vs {baseline}"]
    header.append("overall")
    rows = [
        _leaderboard_row(r, aligned, metric, baseline, by, has_clean) for _, r in table.iterrows()
    ]
    return header, rows


def _leaderboard_row(
    r: pd.Series, aligned: Aligned, metric: str, baseline: str | None, by: str, has_clean: bool
) -> list[str]:
    """The formatted cells of one method's row (``r``: a row of the computed table)."""
    is_base = baseline is not None and r[by] == baseline
    row = [str(r["rank"]), str(r[by]), str(r["n_seeds"])]
    if has_clean:
        row.append(fmt_mean_sd(r["clean_mean"], r["clean_sd_ddof1"], metric))
        if baseline is not None:
            row.append("(baseline)" if is_base else _fmt_row_diff(r, "clean", metric))
    for s in aligned.shifts:
        row.append(fmt_mean_sd(r[f"{s}.sweep_mean_mean"], r[f"{s}.sweep_mean_sd_ddof1"], metric))
        row.append(fmt_mean_sd(r[f"{s}.worst_mean"], r[f"{s}.worst_sd_ddof1"], metric))
        if baseline is not None:
            ce, ce_sd = r[f"{s}.ce_mean"], r[f"{s}.ce_sd_ddof1"]
            row.append(
                f"{ce:.2f} ± {ce_sd:.2f}"
                if math.isfinite(ce_sd)
                else (f"{ce:.2f} ± n/a" if math.isfinite(ce) else "n/a")
            )
            row.append("(baseline)" if is_base else _fmt_row_diff(r, f"{s}.sweep_mean", metric))
    row.append(fmt_value(r["overall_sweep_mean"], metric))
    return row


def _fmt_row_diff(r: pd.Series, name: str, metric: str) -> str:
    """The difference ``<name>_diff`` with its CI and p-value, formatted."""
    return fmt_diff(
        r[f"{name}_diff"],
        r[f"{name}_diff_ci_low"],
        r[f"{name}_diff_ci_high"],
        r[f"{name}_diff_p"],
        metric,
    )


def _leaderboard_notes(
    study: Study,
    aligned: Aligned,
    metric: str,
    baseline: str | None,
    n_boot: int,
    seed: int,
    ci: float,
    n_samples: dict[str, set[int]],
    clean_shift: str | None,
) -> list[str]:
    """The footnotes: definitions, the comparison to the baseline, the data, the sort order."""
    notes = _definition_notes(metric, clean_shift)
    if baseline is not None:
        notes += _baseline_notes(aligned.by, metric, baseline, n_boot, seed, ci)
    notes += _data_notes(study, aligned, n_samples)
    notes.append(
        "Sorted by overall = mean over shifts of the seed-mean sweep mean (best first: "
        f"{'highest' if higher_is_better(metric) else 'lowest'} first), then by clean score."
    )
    return notes


def _definition_notes(metric: str, clean_shift: str | None) -> list[str]:
    """What the metric, the entries, clean, worst and the sweep mean are."""
    name = METRIC_TITLES[metric]
    unit = "in % (points)" if is_percent(metric) else "as a number"
    up = higher_is_better(metric)
    direction = "higher is better" if up else "lower is better (a calibration error)"
    source = "predictions" if up else "class probabilities"
    notes = [
        f"Metric: {name} ({metric}), {unit}, {direction}, computed from the stored {source}. "
        "Every entry 'a ± b' is the mean ± SD (ddof = 1) over seeds (checkpoints) of a method; "
        "n/a = undefined (a single seed).",
    ]
    if clean_shift is not None:
        notes.append(
            f"clean = {name} at the identity magnitude (unshifted images; the same rows under "
            "every shift)."
        )
    worst_txt = (
        "worst = minimum over the sweep (identity included). leaderboard.csv adds drop = "
        "clean − worst."
        if up
        else "worst = maximum over the sweep (identity included). leaderboard.csv adds drop = "
        "worst − clean (≥ 0 = degradation)."
    )
    notes.append(
        "sweep mean = normalised area under the metric-magnitude curve: trapezoid rule over the "
        f"sorted magnitudes divided by the magnitude range. {worst_txt}"
    )
    return notes


def _baseline_notes(
    by: str, metric: str, baseline: str, n_boot: int, seed: int, ci: float
) -> list[str]:
    """What CE and Δ are, and how the bootstrap of Δ is done."""
    name = METRIC_TITLES[metric]
    up = higher_is_better(metric)
    pct = f"{100 * ci:g} %"
    summed = "(1 − metric)" if up else f"the {name} itself (already an error)"
    sign = "> 0" if up else "< 0"
    return [
        f"CE = corruption error relative to the baseline {by} {baseline!r}: "
        f"Σ over non-identity magnitudes of {summed} of a seed ÷ the same sum for the "
        f"baseline's seed-mean metric; < 1 is better than {baseline!r}, the baseline's "
        "mean is 1.",
        f"Δ = method − {baseline!r} (same sign convention for every metric); "
        f"Δ {sign} means better than {baseline!r} for {metric}.",
        f"Δ = difference of the seed-averaged score to {baseline!r} with a {pct} "
        f"percentile CI and a two-sided p-value from a paired bootstrap over test samples "
        f"(sample ids resampled jointly for all methods, seeds and magnitudes; "
        f"B = {n_boot} resamples, seed {seed}); p = min(1, 2·min tail fraction beyond 0), "
        f"smallest possible {2 / (n_boot + 1):.2g}. Between-seed variation is in the SDs, "
        "not in these intervals.",
    ]


def _data_notes(study: Study, aligned: Aligned, n_samples: dict[str, set[int]]) -> list[str]:
    """Seeds per method, test samples per cell, each shift's sweep, and the runs."""
    seeds = "; ".join(
        f"{g}: {aligned.n_seeds(g)} ({', '.join(aligned.seeds[g])})" for g in aligned.group_names
    )
    seed_word = "seed" if "seed" in study.columns else "checkpoint"
    notes = [f"Seeds per {aligned.by} ({seed_word} values): {seeds}."]
    counts = _class_counts(aligned, study.class_names)
    sizes = sorted({n for v in n_samples.values() for n in v})
    notes.append(
        f"Test samples per cell: n = {', '.join(map(str, sizes))} ({counts}); the same samples "
        "for every method and seed."
    )
    for s in aligned.shifts:
        ident = aligned.identity[s]
        ident_txt = "unknown" if ident is None else f"{ident:g}"
        notes.append(
            f"Shift {s}: magnitudes {fmt_list(aligned.magnitudes[s])} ({aligned.units[s]}); "
            f"identity {ident_txt}, {aligned.identity_source[s]}."
        )
    notes.append(f"Runs: {', '.join(study.run_dirs)}.")
    return notes


def _class_counts(aligned: Aligned, class_names: list[str]) -> str:
    counts = next(iter(aligned.cells.values())).class_counts
    return ", ".join(f"{c}: {int(k)}" for c, k in zip(class_names, counts, strict=False))


# =================================================================================================
# Figure 4: metric vs magnitude
