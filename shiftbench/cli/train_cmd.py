"""``shiftbench train``, ``shiftbench make-cutout-set`` and ``shiftbench demo``.

Thin wrappers over :func:`shiftbench.training.train`, :func:`shiftbench.cutout_set.make_cutout_set`
and :func:`shiftbench.demo.demo`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from shiftbench.cli.app import app
from shiftbench.errors import UserInputError


def _seeds(seed: int, seeds: str | None) -> list[int]:
    if seeds is None:
        return [seed]
    try:
        out = [int(s) for s in seeds.replace(" ", "").split(",") if s]
    except ValueError:
        raise UserInputError(f"--seeds must be comma-separated integers; got {seeds!r}") from None
    if not out:
        raise UserInputError("--seeds is empty; e.g. --seeds 0,1,2")
    return out


@app.command()
def train(
    data: Path = typer.Option(..., "--data", help="Image folder, CSV manifest or .npz."),
    arch: str = typer.Option("resnet10t", "--arch", help="timm architecture (pretrained=False)."),
    method: str = typer.Option(..., "--method", help="sd (spectral decoupling) or wd."),
    out: Path = typer.Option(..., "--out", help="Output folder for checkpoints and logs."),
    sd_lambda: float | None = typer.Option(
        None, "--sd-lambda", help="λ of Eq. 1 (default 0.01): CE + λ/2·mean(logits²)."
    ),
    sd_lambdas: str | None = typer.Option(
        None, "--sd-lambdas", help="Per-class λ (Eq. 2), class-index order, e.g. 0.01,0.001."
    ),
    sd_gammas: str | None = typer.Option(
        None, "--sd-gammas", help="Per-class γ (Eq. 2), e.g. 0,1 (default all 0)."
    ),
    sd_lambda_grid: str | None = typer.Option(
        None, "--sd-lambda-grid", help="λ values to try; keeps the best on validation."
    ),
    sd_gamma_grid: str | None = typer.Option(
        None, "--sd-gamma-grid", help="γ values to try (grid)."
    ),
    weight_decay: float | None = typer.Option(
        None, "--weight-decay", help="Weight decay (default 1e-4 for wd, 0 for sd)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed (one checkpoint)."),
    seeds: str | None = typer.Option(None, "--seeds", help="Several seeds, e.g. 0,1,2,3,4."),
    epochs: int = typer.Option(10, "--epochs"),
    augment: str = typer.Option("basic", "--augment", help="none, basic or uniform."),
    input_size: int | None = typer.Option(
        None, "--input-size", help="Training input side in pixels."
    ),
    val_fraction: float = typer.Option(
        0.2, "--val-fraction", help="Validation hold-out when the data has no 'val' split."
    ),
    batch_size: int = typer.Option(32, "--batch-size"),
    lr: float | None = typer.Option(
        None, "--lr", help="Peak learning rate (1e-3 adamw, 0.05 sgd)."
    ),
    optimizer: str = typer.Option("adamw", "--optimizer", help="adamw or sgd."),
    drop_rate: float = typer.Option(0.0, "--drop-rate", help="Classifier dropout."),
    drop_path_rate: float = typer.Option(0.0, "--drop-path-rate", help="Stochastic depth."),
    device: str = typer.Option("auto", "--device"),
    name: str | None = typer.Option(
        None, "--name", help="Checkpoint prefix (default: the method)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Retrain existing checkpoints."),
    resume: bool = typer.Option(False, "--resume", help="Keep existing checkpoints."),
    limit: int | None = typer.Option(None, "--limit", help="Read at most N images (quick checks)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
    head: str = typer.Option(
        "softmax",
        "--head",
        help="softmax (one logit per class) or binary-logit (2 classes: one logit, BCE, SD γ on it).",
    ),
    save_every: int | None = typer.Option(
        None, "--save-every", help="Also keep a checkpoint every K epochs (meta 'epoch')."
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
        input_size=input_size,
        val_fraction=val_fraction,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
        device=device,
        name=name,
        if_exists="overwrite" if overwrite else ("skip" if resume else "error"),
        progress=not no_progress,
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
    data: Path = typer.Option(..., "--data", help="Binary data set (folder, CSV or .npz)."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    positive_class: str | None = typer.Option(
        None, "--positive-class", help="Name of the positive class (default: class index 1)."
    ),
    n_patches: int = typer.Option(16, "--n-patches", help="Cutouts per image."),
    patch_size: int = typer.Option(8, "--patch-size", help="Cutout side in pixels."),
    seed: int = typer.Option(0, "--seed"),
    fmt: str = typer.Option("folder", "--format", help="folder (PNG files) or npz."),
    test_fraction: float = typer.Option(
        0.2, "--test-fraction", help="Test hold-out when the data has no 'split' column."
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
        help="Output folder (default: shiftbench-demo[-cutout|-frequency]).",
    ),
    quick: bool = typer.Option(False, "--quick", help="~1 minute smoke version (CI)."),
    scenario: str = typer.Option(
        "shifts",
        "--scenario",
        help="shifts (SD vs WD under 4 shifts), cutout (Table 2) or frequency (ring shortcut).",
    ),
    seeds: int | None = typer.Option(
        None, "--seeds", help="Seeds per method (default 3; quick: 2; frequency: 2, quick 1)."
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Training epochs (default 12; quick: 2; frequency: 6)."
    ),
    device: str = typer.Option("auto", "--device"),
    threads: int | None = typer.Option(
        None, "--threads", help="torch CPU threads (try 1 when other programs load the CPU)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an --out that holds a different demo."
    ),
    head: str = typer.Option(
        "softmax", "--head", help="softmax or binary-logit (one logit, BCE, SD γ on it)."
    ),
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
    )
