"""Writing report outputs atomically (via the run directory's helper): a file that exists is whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from shiftbench.errors import UserInputError
from shiftbench.run.rundir import atomic_write, atomic_write_text

_CSV_FLOAT = "%.6g"


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def write_csv(path: Path, df: pd.DataFrame) -> None:
    """Write a table as CSV (6 significant digits, ``\\n`` line ends) atomically."""
    write_text(path, df.to_csv(index=False, float_format=_CSV_FLOAT, lineterminator="\n"))


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure (format from the suffix, 150 dpi) atomically and reproducibly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # No creation date / software stamp: the same numbers give the same file.
    metadata = {"CreationDate": None} if path.suffix == ".pdf" else {"Software": None}
    atomic_write(
        path,
        lambda tmp: fig.savefig(
            tmp, format=path.suffix[1:], dpi=150, bbox_inches="tight", metadata=metadata
        ),
    )


def figure_paths(out: str | Path) -> dict[str, Path]:
    """``{png, pdf, csv}`` paths of a figure given as ``<stem>.png`` or ``<stem>.pdf``."""
    out = Path(out)
    if out.suffix.lower() not in (".png", ".pdf"):
        raise UserInputError(f"--out must end in .png or .pdf (both are written); got {out}")
    stem = out.with_suffix("")
    return {
        "png": stem.with_suffix(".png"),
        "pdf": stem.with_suffix(".pdf"),
        "csv": stem.with_suffix(".csv"),
    }
