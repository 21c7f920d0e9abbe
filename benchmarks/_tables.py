"""Small output helpers shared by the benchmark scripts (CSV/Markdown text, atomic writes)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from shiftbench.run.rundir import atomic_write_text


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (parents created; the project's one helper)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def to_csv(rows: list[dict]) -> str:
    """Rows (dicts with the same keys) as CSV text with a header, ``\\n`` line ends."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def to_markdown(rows: list[dict]) -> str:
    """Rows as a Markdown table."""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
