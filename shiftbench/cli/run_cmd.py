"""``shiftbench run``: evaluate checkpoints under every magnitude of every shift (thin CLI layer
over :func:`shiftbench.runner.run`)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from shiftbench.cli._options import MagnitudesOption, PluginOption, parse_magnitudes
from shiftbench.cli.app import app


@app.command("run")
def run_command(
    ctx: typer.Context,
    ckpt: list[Path] = typer.Option(
        ..., "--ckpt", metavar="FILE", help="Checkpoint file; repeat for several (same classes)."
    ),
    data: Path = typer.Option(
        ...,
        "--data",
        metavar="PATH",
        help="Image folder (one subfolder per class), CSV manifest or .npz.",
    ),
    shift: list[str] = typer.Option(
        ...,
        "--shift",
        metavar="NAME",
        help="Shift name; repeat or comma-separate; 'all' for every shift.",
    ),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Run directory for the tables."),
    magnitudes: MagnitudesOption = None,
    resume: bool = typer.Option(
        False, "--resume", help="Reuse finished cells in --out; compute only the rest."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run in --out."),
    device: str = typer.Option(
        "auto", "--device", metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps."
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        metavar="N",
        help="Images per batch (default 64; with --resume: the run's).",
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        metavar="N",
        help="Image-decoding processes (default: half the cores, 1-4).",
    ),
    seed: int = typer.Option(
        0, "--seed", metavar="S", help="Seed of random shifts and the bootstrap."
    ),
    limit: int | None = typer.Option(
        None, "--limit", metavar="N", help="Use only the first N samples."
    ),
    group_by: str | None = typer.Option(
        None,
        "--group-by",
        metavar="COLUMN",
        help="CSV column: one metrics row per value (e.g. magnification).",
    ),
    n_boot: int = typer.Option(
        1000, "--n-boot", metavar="N", help="Bootstrap resamples for the CIs."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Fail on an unreadable image instead of skipping it."
    ),
    arch: str | None = typer.Option(
        None,
        "--arch",
        metavar="ARCH",
        help="timm architecture of a bare state_dict / .safetensors file.",
    ),
    num_classes: int | None = typer.Option(
        None, "--num-classes", metavar="C", help="Classes of a bare state_dict (default: inferred)."
    ),
    trust_checkpoint: bool = typer.Option(
        False,
        "--trust-checkpoint",
        help="Allow unpickling a whole nn.Module (runs arbitrary code from the file).",
    ),
    plugin: PluginOption = None,
    image_size: int | None = typer.Option(
        None,
        "--image-size",
        metavar="N",
        help="Resize every image to NxN on load (before the shift).",
    ),
    channels_last: bool | None = typer.Option(
        None,
        "--channels-last/--no-channels-last",
        help="Channels-last model memory format (default: on for CPU).",
    ),
    amp: str | None = typer.Option(
        None,
        "--amp",
        metavar="DTYPE",
        help="Mixed-precision model forward: bf16 or fp16 (default off: float32).",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress."),
) -> None:
    """Evaluate checkpoints on a test set at every magnitude of each shift.

    Writes predictions/, checkpoints.parquet, samples.parquet, metrics.csv and manifest.json
    to --out; see docs/reference/run-directory.md.
    """
    from rich.console import Console

    from shiftbench.run.api import run
    from shiftbench.run.rundir import open_predictions

    err = Console(stderr=True)
    result = run(
        list(ckpt),
        data,
        list(shift),
        out=out,
        magnitudes=parse_magnitudes(magnitudes) if magnitudes is not None else None,
        resume=resume,
        overwrite=overwrite,
        device=device,
        batch_size=batch_size,
        workers=workers,
        seed=seed,
        limit=limit,
        group_by=group_by,
        n_boot=n_boot,
        strict=strict,
        arch=arch,
        num_classes=num_classes,
        trust_checkpoint=trust_checkpoint,
        plugins=list(plugin or []),
        image_size=image_size,
        channels_last=channels_last,
        amp=amp,
        progress=progress,
        console=err,
        command=_command_line(ctx),
    )
    if not _is_main_rank():
        return  # under torchrun, rank 0 prints the summary
    Console().print(result.summary())
    n_rows = open_predictions(result.out_dir).count_rows()
    typer.echo(
        f"wrote {result.predictions_path}/ ({n_rows} rows), {result.metrics_path.name} "
        f"({len(result.metrics)} rows), {result.manifest_path.name}"
    )


def _is_main_rank() -> bool:
    """False on ranks other than 0 of a torchrun launch (``RANK`` set by torchrun)."""
    return os.environ.get("RANK", "0").strip() in ("", "0")


def _command_line(ctx: typer.Context) -> list[str]:
    """The command as given (options with non-default values), for the manifest."""
    words = ["shiftbench", "run"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value == param.default or not param.opts:
            continue
        if isinstance(value, bool):
            names = param.opts if value else (param.secondary_opts or param.opts)
            words.append(names[0])
        elif isinstance(value, list | tuple):
            for v in value:
                words += [param.opts[0], str(v)]
        else:
            words += [param.opts[0], str(value)]
    return words
