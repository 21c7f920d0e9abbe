"""shiftbench: how well do medical-imaging classifiers hold up under distribution shift?

The Python API mirrors the CLI (``shiftbench --help``). Heavy submodules load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (loaded lazily so `import shiftbench` stays fast)
_EXPORTS = {
    "list_shifts": "shiftbench.registry",
    "get_shift": "shiftbench.registry",
    "load_plugins": "shiftbench.registry",
    "Shift": "shiftbench.shifts.base",
    "ShiftbenchError": "shiftbench.errors",
    "UserInputError": "shiftbench.errors",
    "save_checkpoint": "shiftbench.checkpoint",
    "load_checkpoint": "shiftbench.checkpoint",
    "open_dataset": "shiftbench.data",
    "run": "shiftbench.run.api",
    "read_predictions": "shiftbench.run.read",
    "migrate": "shiftbench.run.read",
    "train": "shiftbench.training",
    "make_cutout_set": "shiftbench.cutout_set",
    "make_spurious_set": "shiftbench.spurious_set",
    "demo": "shiftbench.demo",
    "leaderboard": "shiftbench.report",
    "plot": "shiftbench.report",
    "roc": "shiftbench.report",
    "figures": "shiftbench.report",
    "profile": "shiftbench.profiling",
    "StainNormalizer": "shiftbench.normalize",
    "macenko_normalize": "shiftbench.normalize",
    "spectrum": "shiftbench.spectrum",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shiftbench' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
