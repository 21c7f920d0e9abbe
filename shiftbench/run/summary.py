"""The console summary of a run: accuracy per magnitude per checkpoint, one block per shift."""

from __future__ import annotations

from typing import Any

import pandas as pd


def summary_table(metrics: pd.DataFrame, manifest: dict[str, Any]) -> Any:
    """Rich table: accuracy per magnitude per checkpoint, one block per shift."""
    from rich.table import Table

    group_by = manifest.get("group_by")
    names = list(dict.fromkeys(metrics["checkpoint"]))
    table = Table(title="accuracy (shift × magnitude × checkpoint)", show_lines=False)
    table.add_column("shift")
    table.add_column("magnitude", justify="right")
    for n in names:
        table.add_column(n, justify="right")
    df = metrics
    if group_by:  # overall accuracy = n-weighted mean of the group accuracies
        df = (
            metrics.assign(_c=metrics["accuracy"] * metrics["n"])
            .groupby(["checkpoint", "shift", "magnitude"], sort=False, as_index=False)[["_c", "n"]]
            .sum()
            .assign(accuracy=lambda d: d["_c"] / d["n"])
        )
    shifts = list(dict.fromkeys(df["shift"]))
    for s in shifts:
        block = df[df["shift"] == s]
        for i, mag in enumerate(dict.fromkeys(block["magnitude"])):
            row = [s if i == 0 else "", f"{mag:g}"]
            for n in names:
                v = block[(block["checkpoint"] == n) & (block["magnitude"] == mag)]["accuracy"]
                row.append(f"{float(v.iloc[0]):.3f}" if len(v) and pd.notna(v.iloc[0]) else "–")
            table.add_row(*row, end_section=i == block["magnitude"].nunique() - 1)
    return table
