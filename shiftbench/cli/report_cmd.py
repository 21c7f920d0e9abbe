"""``shiftbench leaderboard | plot | roc | figures``: reports from stored run directories.

A thin layer over :mod:`shiftbench.report`; every option maps to a keyword argument there.
Warnings (e.g. a method with a single seed, whose SD is undefined) are printed as one
``warning: ...`` line each on stderr; the outputs are still written and the exit code is 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from shiftbench.cli.app import app
from shiftbench.cli.options import PluginOption
from shiftbench.lists import split_list

_RUNS_HELP = "Run directories written by `shiftbench run` (several are concatenated)."

RunDirs = Annotated[list[Path], typer.Argument(help=_RUNS_HELP, show_default=False)]
By = Annotated[
    str, typer.Option("--by", metavar="COLUMN", help="Per-checkpoint column naming the method.")
]
Metric = Annotated[
    str,
    typer.Option(
        "--metric",
        metavar="NAME",
        help="accuracy, balanced_accuracy, auroc, recall, or (lower is better) ece, brier, nll.",
    ),
]
Shifts = Annotated[
    list[str] | None,
    typer.Option(
        "--shifts",
        metavar="LIST",
        help="Shifts to include, comma-separated or repeated (default: all).",
    ),
]
NBoot = Annotated[
    int, typer.Option("--n-boot", metavar="N", help="Bootstrap resamples over test samples.")
]
Seed = Annotated[int, typer.Option("--seed", metavar="S", help="Bootstrap seed.")]
Ci = Annotated[float, typer.Option("--ci", metavar="X", help="Interval coverage.")]
Dataset = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        metavar="NAME",
        help="Evaluation set (run --data NAME=PATH); required when the runs hold several.",
    ),
]


def _split(values: list[str] | None) -> list[str] | None:
    return split_list(values, option="--shifts", example="blur,eosin") if values else None


@contextmanager
def _echo_warnings() -> Iterator[None]:
    from shiftbench.report import ReportWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReportWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, ReportWarning):
                    typer.echo(f"warning: {w.message}", err=True)


def _run(fn: Callable[..., Any], **kwargs: Any) -> Any:
    with _echo_warnings():
        return fn(**kwargs)


@app.command("leaderboard")
def leaderboard_cmd(
    run_dirs: RunDirs,
    out: Annotated[
        Path,
        typer.Option("--out", metavar="DIR", help="Output folder for leaderboard.{md,csv,html}."),
    ],
    by: By = "method",
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", metavar="NAME", help="Method to compare against (e.g. wd)."),
    ] = None,
    metric: Metric = "balanced_accuracy",
    shifts: Shifts = None,
    n_boot: NBoot = 2000,
    seed: Seed = 0,
    ci: Ci = 0.95,
    plugin: PluginOption = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            metavar="NAME",
            help="Rank one evaluation set only (default: one section per set).",
        ),
    ] = None,
) -> None:
    """Leaderboard: one row per method, robustness per shift, differences to a baseline."""
    from shiftbench.report import leaderboard

    res = _run(
        leaderboard,
        runs=run_dirs,
        out=out,
        by=by,
        baseline=baseline,
        metric=metric,
        shifts=_split(shifts),
        n_boot=n_boot,
        seed=seed,
        ci=ci,
        plugins=plugin or [],
        dataset=dataset,
    )
    typer.echo(res.markdown.split("\n## Notes")[0].rstrip())
    typer.echo("wrote " + ", ".join(str(p) for p in res.paths.values()))


@app.command("plot")
def plot_cmd(
    run_dirs: RunDirs,
    out: Annotated[
        Path,
        typer.Option(
            "--out", metavar="FILE", help="Figure path (.png or .pdf; both and a .csv are written)."
        ),
    ],
    metric: Metric = "accuracy",
    hue: Annotated[
        str,
        typer.Option("--hue", metavar="COLUMN", help="Per-checkpoint column: one line per value."),
    ] = "method",
    shifts: Shifts = None,
    band: Annotated[
        str,
        typer.Option(
            "--band", metavar="NAME", help="sd: ±1 SD over seeds; ci: bootstrap CI over samples."
        ),
    ] = "sd",
    n_boot: NBoot = 2000,
    seed: Seed = 0,
    ci: Ci = 0.95,
    plugin: PluginOption = None,
    dataset: Dataset = None,
    x: Annotated[
        str,
        typer.Option(
            "--x",
            metavar="AXIS",
            help="magnitude: metric vs magnitude per shift; dataset: clean metric per "
            "evaluation set (the ladder).",
        ),
    ] = "magnitude",
) -> None:
    """Metric vs shift magnitude per shift, or the clean metric per evaluation set (--x dataset)."""
    from shiftbench.report import plot

    res = _run(
        plot,
        runs=run_dirs,
        out=out,
        metric=metric,
        hue=hue,
        shifts=_split(shifts),
        band=band,
        n_boot=n_boot,
        seed=seed,
        ci=ci,
        plugins=plugin or [],
        dataset=dataset,
        x=x,
    )
    typer.echo("wrote " + ", ".join(str(p) for p in res.paths.values()))


@app.command("roc")
def roc_cmd(
    run_dirs: RunDirs,
    shift: Annotated[str, typer.Option("--shift", metavar="NAME", help="Shift name.")],
    magnitude: Annotated[
        str,
        typer.Option("--magnitude", metavar="X", help="A magnitude of the sweep, or 'strongest'."),
    ],
    out: Annotated[Path, typer.Option("--out", metavar="FILE", help="Figure path (.png or .pdf).")],
    by: By = "method",
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", metavar="NAME", help="Reference method for DeLong's test."),
    ] = None,
    n_boot: NBoot = 2000,
    seed: Seed = 0,
    ci: Ci = 0.95,
    plugin: PluginOption = None,
    dataset: Dataset = None,
) -> None:
    """ROC of seed ensembles per method, bootstrap AUROC CIs and DeLong's test."""
    from shiftbench.report import roc

    res = _run(
        roc,
        runs=run_dirs,
        shift=shift,
        magnitude=magnitude,
        out=out,
        by=by,
        baseline=baseline,
        n_boot=n_boot,
        seed=seed,
        ci=ci,
        plugins=plugin or [],
        dataset=dataset,
    )
    typer.echo("wrote " + ", ".join(str(p) for p in res.paths.values()))


@app.command("figures")
def figures_cmd(
    spec: Annotated[Path, typer.Argument(help="Figures spec, e.g. benchmarks/demo.toml.")],
    root: Annotated[
        Path | None,
        typer.Option(
            "--root", metavar="DIR", help="Resolve the spec's relative paths against this folder."
        ),
    ] = None,
) -> None:
    """Regenerate every table and figure listed in a TOML spec from stored runs."""
    from shiftbench.report import figures

    res = _run(figures, spec=spec, root=root)
    n = sum(len(p) for p in res.outputs.values())
    typer.echo(f"wrote {n} files for {len(res.outputs)} entries; index: {res.index}")
