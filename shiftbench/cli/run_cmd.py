"""``shiftbench run``: evaluate checkpoints under every magnitude of every shift (thin CLI layer
over :func:`shiftbench.runner.run`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from shiftbench.cli.app import app
from shiftbench.cli.options import (
    DeviceOption,
    MagnitudesOption,
    NormalizeOption,
    NormalizeTargetOption,
    ParamOption,
    PluginOption,
    ProgressOption,
    configured_shifts,
    parse_magnitude_options,
    parse_param_options,
    shift_names,
)


@app.command("run")
def run_command(
    ctx: typer.Context,
    ckpt: list[Path] = typer.Option(
        ..., "--ckpt", metavar="FILE", help="Checkpoint file; repeat for several (same classes)."
    ),
    data: list[str] | None = typer.Option(
        None,
        "--data",
        metavar="[NAME=]PATH",
        help="Image folder (one subfolder per class), CSV manifest or .npz (default: the test "
        "split recorded in the checkpoints). Repeat for several evaluation sets, e.g. --data "
        "internal=a/ --data external=b.csv: one study, a dataset column in every table; a bare "
        "PATH is named after its folder.",
    ),
    shift: list[str] = typer.Option(
        ...,
        "--shift",
        metavar="NAME",
        help="Shift name; repeat or comma-separate; 'all' for every shift.",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        metavar="DIR",
        help="Run directory for the tables (default: runs/<checkpoint stem>, or the next free "
        "runs/<stem>-2, -3, ...).",
    ),
    magnitudes: MagnitudesOption = None,
    param: ParamOption = None,
    resume: bool = typer.Option(
        False, "--resume", help="Reuse finished cells in --out; compute only the rest."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run in --out."),
    device: DeviceOption = "auto",
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
        None, "--limit", metavar="N", help="Use only the first N samples of each --data set."
    ),
    group_by: str | None = typer.Option(
        None,
        "--group-by",
        metavar="COLUMN",
        help="CSV column (of every --data set): one metrics row per value (e.g. magnification).",
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
    normalize: NormalizeOption = "none",
    normalize_target: NormalizeTargetOption = None,
    progress: ProgressOption = True,
) -> None:
    """Evaluate checkpoints on a test set at every magnitude of each shift.

    Writes predictions/, checkpoints.parquet, samples.parquet, metrics.csv and manifest.json
    to --out; see docs/reference/run-directory.md.
    """
    from rich.console import Console

    from shiftbench.defaults import resolve_run_inputs
    from shiftbench.errors import UserInputError
    from shiftbench.run.api import run
    from shiftbench.run.normalization import check_normalize_options
    from shiftbench.run.rundir import open_predictions

    err = Console(stderr=True)
    if out is None and _world_size() > 1:
        # Each rank would pick its own free runs/<stem>-N folder: the ranks must agree.
        raise UserInputError("under torchrun, give --out explicitly (the same on every rank)")
    check_normalize_options(normalize, normalize_target)  # before any work (fitted in run)
    shifts, common_magnitudes = _shifts(list(shift), magnitudes, param, plugin)
    inputs = resolve_run_inputs(
        list(ckpt),
        list(data) if data else None,
        out,
        resume=resume,
        overwrite=overwrite,
        limit=limit,
        strict=strict,
        image_size=image_size,
        arch=arch,
        num_classes=num_classes,
        trust_checkpoint=trust_checkpoint,
    )
    for note in inputs.notes:
        typer.echo(note, err=True)
    result = run(
        inputs.checkpoints,
        inputs.data,
        shifts,
        out=inputs.out,
        magnitudes=common_magnitudes,
        resume=resume,
        overwrite=overwrite,
        device=device,
        batch_size=batch_size,
        workers=workers,
        seed=seed,
        limit=inputs.limit,
        group_by=group_by,
        n_boot=n_boot,
        strict=strict,
        arch=arch,
        num_classes=num_classes,
        trust_checkpoint=trust_checkpoint,
        plugins=list(plugin or []),
        image_size=inputs.image_size,
        channels_last=channels_last,
        amp=amp,
        normalize=normalize,
        normalize_target=normalize_target,
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


def _world_size() -> int:
    """Number of ranks of a torchrun launch (``WORLD_SIZE``; 1 outside torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _shifts(
    shift: list[str],
    magnitudes: list[str] | None,
    param: list[str] | None,
    plugin: list[str] | None,
) -> tuple[list[Any], list[float] | None]:
    """``--shift`` names, or configured instances when per-shift settings are given.

    Returns ``(shifts, magnitudes for every shift)``. With ``--param`` or ``--magnitudes
    SHIFT=LIST``, each shift is an instance carrying its parameters and its own sweep (so the
    runner needs no per-shift argument); otherwise the names and the common list go to the
    runner as they are.
    """
    from shiftbench.registry import load_plugins

    load_plugins(list(plugin or []))
    spec = parse_magnitude_options(magnitudes)
    params = parse_param_options(param)
    if not spec.per_shift and not params:
        return list(shift), spec.common
    return configured_shifts(shift_names(shift), spec, params), None


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
