"""Atomic output files of ``shiftbench profile`` (temp file in the same folder, then rename)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["write_atomic", "write_csv", "write_figure", "write_parquet"]


def write_atomic(path: Path, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp)`` on a temp file beside ``path``, then rename it over ``path``.

    A reader never sees a half-written file, and an error leaves an existing ``path`` as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        writer(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_csv(path: Path, table: pd.DataFrame) -> Path:
    """``table`` as CSV (no index, ``\\n`` line ends), atomically."""
    return write_atomic(path, lambda p: table.to_csv(p, index=False, lineterminator="\n"))


def write_parquet(path: Path, table: pd.DataFrame) -> Path:
    """``table`` as Parquet (no index), atomically."""
    return write_atomic(path, lambda p: table.to_parquet(p, index=False))


def write_figure(fig: Any, path: Path) -> Path:
    """A matplotlib figure as PNG (150 dpi) or PDF, without date stamps, atomically."""
    metadata = {"CreationDate": None} if path.suffix == ".pdf" else {"Software": None}
    return write_atomic(
        path, lambda p: fig.savefig(p, dpi=150, bbox_inches="tight", metadata=metadata)
    )
