"""Part files: the raw results of one batch of one invocation, written as soon as it is done.

``RUN/parts/b<batch:06d>-<token>.parquet`` holds the rows of the cells it computed (columns
``ckpt`` (SHA-256), ``shift`` (shift key, ``""`` for the clean cell), ``magnitude``,
``sample_id``, ``label``, ``pred``, ``p0..p<C-1>``) and, in its schema metadata, which cells of
which batch it covers, skipped files, shift reports, seconds spent and (runs with
``--normalize``) the images the normaliser passed through (``normalize.passthrough``:
``[shift key, magnitude, [sample ids]]`` entries). They are the source of
truth for ``--resume``: the tables are rebuilt from them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from shiftbench.run.plan import Cell
from shiftbench.run.rundir import atomic_write

log = logging.getLogger("shiftbench.run")


@dataclass
class PartIndex:
    """What the part files of a run directory hold."""

    done: dict[int, set[Cell]] = field(default_factory=dict)  # batch → cells
    files: list[Path] = field(default_factory=list)
    skipped: dict[int, list[list[Any]]] = field(default_factory=dict)  # batch → [[sid, path, why]]
    unchanged: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    # (shift key, magnitude, sample id) the stain normaliser passed through, over all parts
    passthrough: set[tuple[str, float, int]] = field(default_factory=set)


def scan_parts(parts_dir: Path) -> PartIndex:
    """Read the metadata of every part file (unreadable ones are ignored with a warning)."""
    index = PartIndex()
    if not parts_dir.exists():
        return index
    for f in sorted(parts_dir.glob("b*.parquet")):
        try:
            meta = json.loads(pq.read_schema(f).metadata[b"shiftbench"])
        except Exception:
            log.warning("ignoring unreadable part file %s", f)
            continue
        b = int(meta["batch"])
        index.files.append(f)
        index.done.setdefault(b, set()).update(
            (str(c[0]), str(c[1]), float(c[2])) for c in meta["cells"]
        )
        index.skipped[b] = meta.get("skipped", [])
        for key, report in meta.get("reports", {}).items():
            index.unchanged[(b, key)] = report
        index.seconds += float(meta.get("seconds", 0.0))
        for key, mag, ids in meta.get("normalize", {}).get("passthrough", []):
            index.passthrough.update((str(key), float(mag), int(i)) for i in ids)
    return index


def write_part(path: Path, table: pa.Table, meta: dict[str, Any]) -> None:
    """Write one batch's results with their metadata, atomically."""
    table = table.replace_schema_metadata({"shiftbench": json.dumps(meta)})
    atomic_write(path, lambda p: pq.write_table(table, p))
