"""The typer application object; command modules attach their commands to it."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="shiftbench",
    help="Benchmark medical-imaging classifiers under distribution shift.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """Benchmark medical-imaging classifiers under distribution shift."""


@app.command()
def version() -> None:
    """Print the versions of shiftbench, python, torch and timm."""
    import platform

    import timm
    import torch

    import shiftbench

    typer.echo(
        f"shiftbench {shiftbench.__version__}, python {platform.python_version()}, "
        f"torch {torch.__version__}, timm {timm.__version__}"
    )
