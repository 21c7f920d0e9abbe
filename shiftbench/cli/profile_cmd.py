"""``shiftbench profile``: per-image statistics of data sets and their equivalent shift.

A thin layer over :func:`shiftbench.profiling.profile`; every option maps to a keyword argument.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shiftbench.cli.app import app

__all__ = ["profile_command"]


@app.command("profile")
def profile_command(
    data: Annotated[
        list[str],
        typer.Option(
            "--data",
            metavar="NAME=PATH",
            help="A data set (class folders, flat image folder, CSV manifest or .npz); "
            "repeatable. A bare PATH is named after its folder.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            metavar="DIR",
            help="Output folder: profile.parquet, summary.csv, sharpness/stain .png/.pdf.",
        ),
    ],
    reference: Annotated[
        str | None,
        typer.Option(
            "--reference",
            metavar="NAME",
            help="Data set whose blur/sharpen/H/E sweeps place the others "
            "(equivalent_shift.csv; an approximation).",
        ),
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option("--image-size", metavar="N", help="Resize every image to NxN first."),
    ] = None,
    shifts: Annotated[
        str,
        typer.Option(
            "--shifts",
            metavar="LIST",
            help="Shifts for the equivalent shift, comma-separated.",
        ),
    ] = "blur,sharpen,haematoxylin,eosin",
    limit: Annotated[
        int | None,
        typer.Option("--limit", metavar="N", help="Only the first N images of each data set."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", metavar="N", help="Images decoded per batch.")
    ] = 16,
    figures: Annotated[
        bool,
        typer.Option("--figures/--no-figures", help="Write sharpness and stain figures."),
    ] = True,
    workers: Annotated[
        int | None,
        typer.Option("--workers", metavar="N", help="Decoding processes (0: in this process)."),
    ] = None,
) -> None:
    """Profile data sets (sharpness, brightness, tissue, optical density, Macenko stains) and
    place them on a reference set's shift axes."""
    from shiftbench.profiling import profile

    result = profile(
        data,
        out,
        reference=reference,
        image_size=image_size,
        limit=limit,
        batch_size=batch_size,
        workers=workers,
        figures=figures,
        shifts=[s.strip() for s in shifts.split(",") if s.strip()],
    )
    for name, n in result.skipped.items():
        if n:
            typer.echo(f"warning: {name}: skipped {n} unreadable image(s)", err=True)
    counts = result.profiles.groupby("dataset", sort=False).size()
    typer.echo(", ".join(f"{name}: {n} images" for name, n in counts.items()))
    if result.equivalent is not None:
        for _, row in result.equivalent.iterrows():
            m = row["magnitude"]
            shown = m if isinstance(m, str) else f"{m:.3g} ({row['units']})"
            typer.echo(f"{row['dataset']} ≈ {row['shift']} {shown} of {row['reference']}")
    typer.echo(f"wrote {len(result.paths)} files to {out}")
