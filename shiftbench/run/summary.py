"""The console summary of a run: accuracy per magnitude per checkpoint, one block per shift."""

from __future__ import annotations

from typing import Any

import pandas as pd


def summary_table(metrics: pd.DataFrame, manifest: dict[str, Any]) -> Any:
    """Rich table: accuracy per magnitude per checkpoint (× evaluation set), one block per shift.

    With several evaluation sets (``dataset`` column) every checkpoint has one column per set,
    headed ``checkpoint [set]``.
    """
    from rich.table import Table

    group_by = manifest.get("group_by")
    df = metrics if "dataset" in metrics.columns else metrics.assign(dataset="")
    several = df["dataset"].nunique() > 1
    columns = list(dict.fromkeys(zip(df["checkpoint"], df["dataset"], strict=True)))
    table = Table(title="accuracy (shift × magnitude × checkpoint)", show_lines=False)
    table.add_column("shift")
    table.add_column("magnitude", justify="right")
    for ck, ds in columns:
        table.add_column(f"{ck} [{ds}]" if several else ck, justify="right")
    if group_by:  # overall accuracy = n-weighted mean of the group accuracies
        keys = ["checkpoint", "shift", "magnitude", "dataset"]
        df = (
            df.assign(_c=df["accuracy"] * df["n"])
            .groupby(keys, sort=False, as_index=False)[["_c", "n"]]
            .sum()
            .assign(accuracy=lambda d: d["_c"] / d["n"])
        )
    shifts = list(dict.fromkeys(df["shift"]))
    for s in shifts:
        block = df[df["shift"] == s]
        for i, mag in enumerate(dict.fromkeys(block["magnitude"])):
            row = [s if i == 0 else "", f"{mag:g}"]
            at = block[block["magnitude"] == mag]
            for ck, ds in columns:
                v = at[(at["checkpoint"] == ck) & (at["dataset"] == ds)]["accuracy"]
                row.append(f"{float(v.iloc[0]):.3f}" if len(v) and pd.notna(v.iloc[0]) else "–")
            table.add_row(*row, end_section=i == block["magnitude"].nunique() - 1)
    return table
