"""The runner, one idea per module (``shiftbench.run`` is also the :func:`run` function).

* :mod:`~shiftbench.run.rundir` — the run directory: names, schemas, manifest, lock, writes;
* :mod:`~shiftbench.run.plan` — which shifts, magnitudes and cells a run covers;
* :mod:`~shiftbench.run.models` — loading and probing checkpoints, class names;
* :mod:`~shiftbench.run.sweep` — evaluating batches under every shift;
* :mod:`~shiftbench.run.normalization` — stain normalisation as an evaluation condition;
* :mod:`~shiftbench.run.parts` — the per-batch part files and what they hold (resume);
* :mod:`~shiftbench.run.tables` — assembling the v2 tables from the parts, streamed;
* :mod:`~shiftbench.run.metrics_step` — metrics.csv, cell by cell;
* :mod:`~shiftbench.run.read` — :func:`shiftbench.read_predictions` and migration of format 1;
* :mod:`~shiftbench.run.api` — :func:`run`, the orchestration.

Import submodules with ``from shiftbench.run.rundir import X`` (``import shiftbench.run.rundir
as r`` does not work, because the attribute ``shiftbench.run`` is the callable below).
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    """``shiftbench.run`` is this package *and* the function: calling it runs :func:`api.run`.

    Importing a submodule sets the attribute ``shiftbench.run`` to this package, so the
    package itself must stay callable for ``shiftbench.run(...)`` to keep working.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from shiftbench.run.api import run

        return run(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule


_LAZY = {
    "compute_run_metrics": "shiftbench.run.metrics_step",
    "read_predictions": "shiftbench.run.read",
    "migrate": "shiftbench.run.read",
    "RunResult": "shiftbench.run.api",
}


def __getattr__(name: str) -> Any:
    """``shiftbench.run.compute_run_metrics`` etc., imported on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shiftbench.run' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
