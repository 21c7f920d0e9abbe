"""``shiftbench train``, ``shiftbench make-cutout-set`` and ``shiftbench demo``.

Thin wrappers over :func:`shiftbench.training.train`, :func:`shiftbench.cutout_set.make_cutout_set`
and :func:`shiftbench.demo.demo`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from shiftbench.cli.app import app
from shiftbench.cli.options import DeviceOption, ProgressOption
from shiftbench.errors import UserInputError
from shiftbench.lists import parse_numbers


def _seeds(seed: int, seeds: list[str] | None) -> list[int]:
    if not seeds:
        return [seed]
    return parse_numbers(seeds, option="--seeds", integer=True, unique=True, example="0,1,2")


def _image_size(image_size: int | None, input_size: int | None) -> int | None:
    if input_size is None:
        return image_size
    if image_size is not None and image_size != input_size:
        raise UserInputError("give --image-size only (--input-size is its old name)")
    typer.echo("warning: --input-size is deprecated; use --image-size", err=True)
    return input_size


@app.command()
def train(
    data: Path = typer.Option(
        ..., "--data", metavar="PATH", help="Image folder, CSV manifest or .npz."
    ),
    arch: str = typer.Option(
        "resnet10t", "--arch", metavar="ARCH", help="timm architecture (pretrained=False)."
    ),
    method: str = typer.Option(
        ..., "--method", metavar="NAME", help="sd (spectral decoupling) or wd."
    ),
    out: Path = typer.Option(
        ..., "--out", metavar="DIR", help="Output folder for checkpoints and logs."
    ),
    sd_lambda: float | None = typer.Option(
        None,
        "--sd-lambda",
        metavar="X",
        help="λ of Eq. 1 (default 0.01): CE + λ/2·mean(logits²).",
    ),
    sd_lambdas: list[str] | None = typer.Option(
        None,
        "--sd-lambdas",
        metavar="LIST",
        help="Per-class λ (Eq. 2), class-index order, e.g. 0.01,0.001.",
    ),
    sd_gammas: list[str] | None = typer.Option(
        None, "--sd-gammas", metavar="LIST", help="Per-class γ (Eq. 2), e.g. 0,1 (default all 0)."
    ),
    sd_lambda_grid: list[str] | None = typer.Option(
        None,
        "--sd-lambda-grid",
        metavar="LIST",
        help="λ values to try; keeps the best on validation.",
    ),
    sd_gamma_grid: list[str] | None = typer.Option(
        None, "--sd-gamma-grid", metavar="LIST", help="γ values to try (grid)."
    ),
    weight_decay: float | None = typer.Option(
        None, "--weight-decay", metavar="X", help="Weight decay (default 1e-4 for wd, 0 for sd)."
    ),
    seed: int = typer.Option(0, "--seed", metavar="S", help="Seed (one checkpoint)."),
    seeds: list[str] | None = typer.Option(
        None, "--seeds", metavar="LIST", help="Several seeds, e.g. 0,1,2,3,4."
    ),
    epochs: int = typer.Option(10, "--epochs", metavar="N", help="Training epochs."),
    augment: str = typer.Option(
        "basic", "--augment", metavar="NAME", help="none, basic or uniform."
    ),
    image_size: int | None = typer.Option(
        None,
        "--image-size",
        metavar="N",
        help="Train on NxN images (resized once; default: the images' own size).",
    ),
    input_size: int | None = typer.Option(None, "--input-size", metavar="N", hidden=True),
    val_fraction: float = typer.Option(
        0.2,
        "--val-fraction",
        metavar="X",
        help="Validation hold-out when the data has no 'val' split.",
    ),
    batch_size: int = typer.Option(32, "--batch-size", metavar="N", help="Images per step."),
    lr: float | None = typer.Option(
        None, "--lr", metavar="X", help="Peak learning rate (1e-3 adamw, 0.05 sgd)."
    ),
    optimizer: str = typer.Option("adamw", "--optimizer", metavar="NAME", help="adamw or sgd."),
    drop_rate: float = typer.Option(0.0, "--drop-rate", metavar="X", help="Classifier dropout."),
    drop_path_rate: float = typer.Option(
        0.0, "--drop-path-rate", metavar="X", help="Stochastic depth."
    ),
    device: DeviceOption = "auto",
    name: str | None = typer.Option(
        None, "--name", metavar="NAME", help="Checkpoint prefix (default: the method)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Retrain existing checkpoints."),
    resume: bool = typer.Option(False, "--resume", help="Keep existing checkpoints."),
    limit: int | None = typer.Option(
        None, "--limit", metavar="N", help="Read at most N images (quick checks)."
    ),
    progress: ProgressOption = True,
    head: str = typer.Option(
        "softmax",
        "--head",
        metavar="NAME",
        help="softmax (one logit per class) or binary-logit (2 classes: one logit, BCE, SD γ on it).",
    ),
    save_every: int | None = typer.Option(
        None,
        "--save-every",
        metavar="K",
        help="Also keep a checkpoint every K epochs (meta 'epoch').",
    ),
) -> None:
    """Train checkpoints with spectral decoupling (sd) or weight decay (wd), one per seed."""
    from shiftbench.training import train as train_api

    if overwrite and resume:
        raise UserInputError("give --overwrite or --resume, not both")
    results = train_api(
        data,
        out=out,
        arch=arch,
        method=method,  # type: ignore[arg-type]
        sd_lambda=sd_lambda,
        sd_lambdas=sd_lambdas,
        sd_gammas=sd_gammas,
        sd_lambda_grid=sd_lambda_grid,
        sd_gamma_grid=sd_gamma_grid,
        weight_decay=weight_decay,
        seeds=_seeds(seed, seeds),
        epochs=epochs,
        augment=augment,
        input_size=_image_size(image_size, input_size),
        val_fraction=val_fraction,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
        device=device,
        name=name,
        if_exists="overwrite" if overwrite else ("skip" if resume else "error"),
        progress=progress,
        limit=limit,
        head=head,  # type: ignore[arg-type]
        save_every=save_every,
    )
    for r in results:
        acc = r.meta.get("val_accuracy")
        acc_s = "n/a" if acc is None else f"{acc:.3f}"
        state = "kept" if r.reused else "wrote"
        typer.echo(f"{state} {r.checkpoint} (val accuracy {acc_s}; log {r.log})")


@app.command("make-cutout-set")
def make_cutout_set(
    data: Path = typer.Option(
        ..., "--data", metavar="PATH", help="Binary data set (folder, CSV or .npz)."
    ),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Output folder."),
    positive_class: str | None = typer.Option(
        None,
        "--positive-class",
        metavar="NAME",
        help="Name of the positive class (default: class index 1).",
    ),
    n_patches: int = typer.Option(16, "--n-patches", metavar="N", help="Cutouts per image."),
    patch_size: int = typer.Option(8, "--patch-size", metavar="N", help="Cutout side in pixels."),
    seed: int = typer.Option(0, "--seed", metavar="S", help="Seed of the cutout positions."),
    fmt: str = typer.Option(
        "folder", "--format", metavar="NAME", help="folder (PNG files) or npz."
    ),
    test_fraction: float = typer.Option(
        0.2,
        "--test-fraction",
        metavar="X",
        help="Test hold-out when the data has no 'split' column.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
) -> None:
    """Build the cutout spurious-correlation data set (paper §2.3.1, Table 2)."""
    from shiftbench.cutout_set import make_cutout_set as api

    result = api(
        data,
        out,
        positive_class=positive_class,
        n_patches=n_patches,
        patch_size=patch_size,
        seed=seed,
        fmt=fmt,  # type: ignore[arg-type]
        test_fraction=test_fraction,
        overwrite=overwrite,
    )
    for split, info in result.splits.items():
        typer.echo(
            f"{split}: {info['n']} images, cutouts in {info['cutout_negatives']}/"
            f"{info['negatives']} negatives and {info['cutout_positives']}/{info['positives']} "
            f"positives -> {info['manifest']}"
        )


@app.command()
def demo(
    out: Path | None = typer.Option(
        None,
        "--out",
        metavar="DIR",
        help="Output folder (default: shiftbench-demo[-cutout|-frequency]).",
    ),
    quick: bool = typer.Option(False, "--quick", help="~1 minute smoke version (CI)."),
    scenario: str = typer.Option(
        "shifts",
        "--scenario",
        metavar="NAME",
        help="shifts (SD vs WD under 4 shifts), cutout (Table 2) or frequency (ring shortcut).",
    ),
    seeds: int | None = typer.Option(
        None,
        "--seeds",
        metavar="N",
        help="Seeds per method (default 3; quick: 2; frequency: 2, quick 1).",
    ),
    epochs: int | None = typer.Option(
        None,
        "--epochs",
        metavar="N",
        help="Training epochs (default: the demo's; frequency: 6; see docs).",
    ),
    device: DeviceOption = "auto",
    threads: int | None = typer.Option(
        None,
        "--threads",
        metavar="N",
        help="torch CPU threads (try 1 when other programs load the CPU).",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an --out that holds a different demo."
    ),
    head: str = typer.Option(
        "softmax",
        "--head",
        metavar="NAME",
        help="softmax or binary-logit (one logit, BCE, SD γ on it).",
    ),
    progress: ProgressOption = True,
) -> None:
    """Train SD and WD models on the bundled oral tiles and benchmark them end to end."""
    from shiftbench.demo import demo as demo_api

    demo_api(
        out=out,
        quick=quick,
        scenario=scenario,
        seeds=seeds,
        epochs=epochs,
        device=device,
        overwrite=overwrite,
        echo=typer.echo,
        threads=threads,
        head=head,
        progress=progress,
    )
