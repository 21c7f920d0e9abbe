"""Compatibility module: the runner now lives in the :mod:`shiftbench.run` package.

``from shiftbench.runner import run, RunResult`` keeps working; new code imports from
``shiftbench.run.api`` (or calls ``shiftbench.run``).
"""

from __future__ import annotations

from shiftbench.run.api import DEFAULT_BATCH_SIZE, RunResult, run
from shiftbench.run.rundir import FORMAT_V2 as MANIFEST_FORMAT
from shiftbench.run.summary import summary_table

__all__ = ["DEFAULT_BATCH_SIZE", "MANIFEST_FORMAT", "RunResult", "run", "summary_table"]
