"""``shiftbench spectrum``: learning priority (radial power spectrum of input gradients) of
checkpoints (thin CLI layer over :func:`shiftbench.spectrum.spectrum`)."""

from __future__ import annotations

from pathlib import Path

import typer

from shiftbench.cli.app import app
from shiftbench.errors import UserInputError


@app.command("spectrum")
def spectrum_command(
    ckpt: list[Path] = typer.Option(
        ..., "--ckpt", metavar="FILE", help="Checkpoint file; repeat for several."
    ),
    data: Path = typer.Option(
        ..., "--data", metavar="PATH", help="Labelled images: folder, CSV manifest or .npz."
    ),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Output folder."),
    limit: int | None = typer.Option(
        None, "--limit", metavar="N", help="Use only the first N images."
    ),
    amplitude: bool = typer.Option(
        False, "--amplitude", help="|FFT| instead of |FFT|² (FreqBias's choice)."
    ),
    artifact: str | None = typer.Option(
        None,
        "--artifact",
        metavar="SHIFT:MAG",
        help="Overlay the radial power of (shifted − clean) images, e.g. ring:8.",
    ),
    param: list[str] | None = typer.Option(
        None,
        "--param",
        metavar="NAME=VALUE",
        help="Parameter of the artifact's shift, e.g. frequency=0.1 (repeatable).",
    ),
    heatmap_by: str | None = typer.Option(
        None,
        "--heatmap-by",
        metavar="COLUMN",
        help="Meta column for a heat map (rows), e.g. epoch or degradation.",
    ),
    hue: str = typer.Option(
        "method", "--hue", metavar="COLUMN", help="Meta column: one curve (mean ± SD) per value."
    ),
    device: str = typer.Option(
        "auto", "--device", metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps."
    ),
    batch_size: int = typer.Option(32, "--batch-size", metavar="N", help="Images per batch."),
    seed: int = typer.Option(0, "--seed", metavar="S", help="Seed of a random artifact."),
    arch: str | None = typer.Option(
        None, "--arch", metavar="ARCH", help="timm architecture of a bare state_dict."
    ),
    num_classes: int | None = typer.Option(
        None, "--num-classes", metavar="C", help="Classes of a bare state_dict."
    ),
    trust_checkpoint: bool = typer.Option(
        False, "--trust-checkpoint", help="Allow unpickling a whole nn.Module (runs code)."
    ),
) -> None:
    """Learning priority: normalised radial power spectrum of ∂CE/∂input, per checkpoint."""
    from shiftbench.spectrum import spectrum
    from shiftbench.spurious_set import parse_param

    params = dict(parse_param(p) for p in param or [])
    if params and artifact is None:
        raise UserInputError("--param sets a parameter of the --artifact shift; give --artifact")
    result = spectrum(
        ckpt,
        data,
        out=out,
        limit=limit,
        amplitude=amplitude,
        artifact=artifact,
        artifact_params=params or None,
        heatmap_by=heatmap_by,
        hue=hue,
        device=device,
        batch_size=batch_size,
        seed=seed,
        arch=arch,
        num_classes=num_classes,
        trust_checkpoint=trust_checkpoint,
    )
    n_ck = result.table["checkpoint"].nunique()
    typer.echo(f"spectra of {n_ck} checkpoint(s):")
    for key, path in result.paths.items():
        typer.echo(f"  {key:<12} {path}")
