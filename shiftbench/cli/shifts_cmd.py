"""``shiftbench shifts`` (list registered shifts) and ``shiftbench preview`` (a labelled strip)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Annotated

import typer

from shiftbench.cli.app import app
from shiftbench.cli.options import (
    MagnitudesOption,
    ParamOption,
    PluginOption,
    configured_shifts,
    parse_magnitude_options,
    parse_param_options,
)

__all__ = ["format_sweep", "preview_command", "shifts_command"]


def format_sweep(magnitudes: tuple[float, ...] | list[float], max_items: int = 6) -> str:
    """``"1, 2, 3, …, 20"`` for long evenly spaced sweeps, the full list otherwise."""
    vals = [format(float(m), "g") for m in magnitudes]
    if len(vals) <= max_items:
        return ", ".join(vals)
    steps = {round(float(b) - float(a), 9) for a, b in itertools.pairwise(magnitudes)}
    if len(steps) == 1:
        return f"{', '.join(vals[:3])}, …, {vals[-1]} ({len(vals)})"
    return ", ".join(vals)


@app.command("shifts")
def shifts_command(plugin: PluginOption = None) -> None:
    """List the registered shifts: name, default sweep, identity, units, description."""
    from rich.console import Console
    from rich.table import Table

    from shiftbench.registry import get_shift_class, list_shifts, load_plugins

    load_plugins(plugin or [])
    table = Table(title="Registered shifts")
    for col in ("name", "default sweep", "identity", "units", "description"):
        table.add_column(col, overflow="fold")
    for name in list_shifts():
        cls = get_shift_class(name)
        table.add_row(
            name,
            format_sweep(cls.magnitudes),
            format(float(cls.identity), "g"),
            cls.units,
            cls.description,
        )
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=160)  # piped or captured: do not squeeze the table into 80 columns
    console.print(table)


@app.command("preview")
def preview_command(
    shift: Annotated[
        str, typer.Option("--shift", metavar="NAME", help="Registered shift (see `shifts`).")
    ],
    image: Annotated[
        Path, typer.Option("--image", metavar="FILE", help="Input image (PNG, JPEG, TIFF, …).")
    ],
    out: Annotated[
        Path, typer.Option("--out", metavar="FILE", help="Output strip (.png, .jpg, …); atomic.")
    ],
    magnitudes: MagnitudesOption = None,
    param: ParamOption = None,
    seed: Annotated[
        int, typer.Option("--seed", metavar="S", help="Seed for stochastic shifts.")
    ] = 0,
    panel_size: Annotated[
        int | None,
        typer.Option(
            "--panel-size",
            metavar="N",
            help="Resize each shifted panel so its longer side is N pixels (after shifting).",
        ),
    ] = None,
    plugin: PluginOption = None,
) -> None:
    """Write the image under every magnitude of a shift side by side, labelled with magnitude
    and units."""
    from shiftbench.preview import preview
    from shiftbench.registry import get_shift_class, load_plugins

    load_plugins(plugin or [])
    get_shift_class(shift)  # unknown name: one-line error before reading anything
    spec = parse_magnitude_options(magnitudes)
    params = parse_param_options(param)
    configured_shifts([shift], spec, params)  # settings for another shift: one-line error
    path = preview(
        shift,
        image,
        out,
        spec.for_shift(shift),
        seed=seed,
        params=params.get(shift),
        panel_size=panel_size,
    )
    typer.echo(f"wrote {path}")
