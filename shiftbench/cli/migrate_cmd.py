"""``shiftbench migrate``: convert a format-1 run directory (shiftbench 0.1) to format 2."""

from __future__ import annotations

from pathlib import Path

import typer

from shiftbench.cli.app import app


@app.command("migrate")
def migrate_command(
    run_dir: Path = typer.Argument(..., help="Run directory written by shiftbench 0.1."),
) -> None:
    """Convert a format-1 run directory to format 2, in place.

    Writes predictions/, checkpoints.parquet and samples.parquet from predictions.parquet,
    updates manifest.json, then deletes predictions.parquet (metrics.csv and parts/ stay).
    See docs/reference/run-directory.md.
    """
    from shiftbench.run.read import migrate

    migrate(run_dir)
    typer.echo(f"migrated {run_dir} to format 2")
