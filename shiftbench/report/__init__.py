"""Leaderboards, figures and tables, derived only from stored run directories.

Nothing here loads a model: every number comes from the stored predictions of run directories
(format 2: ``predictions/`` joined with ``checkpoints.parquet``; format 1: ``predictions.parquet``;
see ``docs/reference/run-directory.md``). Several run directories are concatenated when they were
evaluated on the same test set. Reports stream: they read only the columns they need, one cell
(shift × magnitude) at a time, so memory does not grow with the number of prediction rows; each
shift's units and identity magnitude come from the run manifest.

* :func:`leaderboard` — one row per method: clean score and per-shift robustness summaries as
  mean ± SD over seeds, the corruption error and the paired-bootstrap difference to a baseline
  (95 % CI, p); ``leaderboard.{md,csv,html}`` and ``differences.csv`` (per-magnitude differences).
* :func:`plot` — the paper's Figure 4: one panel per shift, metric vs magnitude, mean over seeds
  with a ±1 SD band (or a bootstrap CI over samples); PNG, PDF and the plotted numbers as CSV.
  With ``x="dataset"``: the ladder of evaluation sets (Figure 5), the clean metric per set.
* :func:`roc` — ROC curves of seed ensembles with bootstrap AUROC CIs and DeLong's test against
  the baseline (paper Figure 7); PNG, PDF and CSVs.
* :func:`figures` — everything a report needs, from a TOML spec (``benchmarks/*.toml``).

Choices (also printed in the footnotes): the difference to the baseline is that of the
*seed-averaged* metric (mean over a method's checkpoints), bootstrapped by resampling test sample
ids jointly for all methods, seeds and magnitudes, with a percentile interval and the two-sided
p-value of :func:`shiftbench.stats.bootstrap_p_value`.

Several evaluation sets (``run --data NAME=PATH …``) are never pooled: the leaderboard has one
section per set, the other reports take ``dataset=NAME`` (:meth:`Study.for_dataset`).

Modules: :mod:`~shiftbench.report.study` (load), :mod:`~shiftbench.report.sets` (evaluation
sets), :mod:`~shiftbench.report.align` (group and check), :mod:`~shiftbench.report.cells` (read
one cell), :mod:`~shiftbench.report.replicates` (metrics and bootstrap replicates),
:mod:`~shiftbench.report.leaderboard`, :mod:`~shiftbench.report.curves`,
:mod:`~shiftbench.report.ladder`, :mod:`~shiftbench.report.roc`,
:mod:`~shiftbench.report.figures`, :mod:`~shiftbench.report.format` (strings) and
:mod:`~shiftbench.report.write` (atomic files).
"""

from __future__ import annotations

from shiftbench.report.curves import BANDS, PlotResult, plot
from shiftbench.report.figures import FiguresResult, figures
from shiftbench.report.leaderboard import LeaderboardResult, leaderboard
from shiftbench.report.notes import ReportWarning
from shiftbench.report.replicates import checkpoint_metrics
from shiftbench.report.roc import RocResult, roc
from shiftbench.report.study import Study, load_runs

__all__ = [
    "BANDS",
    "FiguresResult",
    "LeaderboardResult",
    "PlotResult",
    "ReportWarning",
    "RocResult",
    "Study",
    "checkpoint_metrics",
    "figures",
    "leaderboard",
    "load_runs",
    "plot",
    "roc",
]
