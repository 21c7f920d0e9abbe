"""``shiftbench make-spurious-set``: a thin wrapper over
:func:`shiftbench.spurious_set.make_spurious_set`."""

from __future__ import annotations

from pathlib import Path

import typer

from shiftbench.cli.app import app
from shiftbench.cli.options import PluginOption

_EPILOG = (
    "Output (all CSV manifests readable by train/run --data): OUT/train_d<d>.csv, "
    "OUT/iid_test_d<d>.csv, OUT/ood_test_d<d>.csv per degradation d, OUT/control_train.csv, "
    "OUT/images/{clean,artifact}/<class>/*.png, OUT/spurious_set.json. "
    "Example: shiftbench make-spurious-set --data manifest.csv --artifact ring:16 "
    "--param frequency=0.25 --class Normal --out ring_set"
)


@app.command("make-spurious-set", epilog=_EPILOG)
def make_spurious_set_command(
    data: Path = typer.Option(
        ..., "--data", metavar="PATH", help="Data set (folder, CSV manifest or .npz), ≥ 2 classes."
    ),
    artifact: str = typer.Option(
        ...,
        "--artifact",
        metavar="SHIFT:MAG",
        help="Registered shift and magnitude used as the artifact, e.g. ring:16 or cutout:16.",
    ),
    target_class: str = typer.Option(
        ..., "--class", metavar="NAME", help="Class whose images carry the artifact."
    ),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Output folder."),
    param: list[str] | None = typer.Option(
        None,
        "--param",
        metavar="NAME=VALUE",
        help="Parameter of the artifact's shift, e.g. frequency=0.1 (repeatable).",
    ),
    degradation: str = typer.Option(
        "0,0.1,0.2,0.5,0.8",
        "--degradation",
        metavar="LIST",
        help="Shares of the class's images with the artifact, each in [0, 1].",
    ),
    other_fraction: float = typer.Option(
        0.0,
        "--other-fraction",
        metavar="F",
        help="Share of every other class's train/I.I.D. images with the artifact.",
    ),
    seed: int = typer.Option(0, "--seed", metavar="S", help="Seed of the choice and the artifact."),
    test_fraction: float = typer.Option(
        0.2,
        "--test-fraction",
        metavar="F",
        help="Test hold-out when the data has no 'split' column.",
    ),
    image_size: int | None = typer.Option(
        None, "--image-size", metavar="N", help="Resize source images to N×N on load."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    plugin: PluginOption = None,
) -> None:
    """Build spurious-correlation sets: an artifact on a share of one class's images.

    Per degradation d: train (artifact on d of the class), iid_test (same rule), ood_test
    (artifact on every other-class image, none of the class); plus control_train (artifact on
    every training image).
    """
    from shiftbench.registry import load_plugins
    from shiftbench.spurious_set import make_spurious_set, parse_param

    load_plugins(plugin or [])
    result = make_spurious_set(
        data,
        out,
        artifact=artifact,
        target_class=target_class,
        params=dict(parse_param(p) for p in param or []),
        degradation=degradation,
        other_fraction=other_fraction,
        seed=seed,
        test_fraction=test_fraction,
        overwrite=overwrite,
        image_size=image_size,
    )
    for stem, info in result.splits.items():
        marks = ", ".join(f"{c} {v['artifact']}/{v['n']}" for c, v in info["classes"].items())
        typer.echo(f"{stem}: {info['n']} images; artifact on {marks} -> {info['manifest']}")
