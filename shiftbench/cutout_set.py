"""The cutout spurious-correlation data set (Pohjonen et al. 2022, §2.3.1 and Table 2).

From a binary data set (negative vs positive class) three sets are built:

* ``train`` — cutouts in exactly ``round(0.25 · n_neg)`` of the negatives and
  ``round(0.025 · n_pos)`` of the positives: a cutout is a strong, *spurious* cue for "negative";
* ``test`` — cutouts in every positive and in no negative: a model that learned the cue calls the
  positives negative (recall collapses);
* ``control_train`` — the same training images with cutouts in every image (no correlation).

``round`` is round-half-up on the exact decimal product (0.25 · 34 = 8.5 → 9), so the counts are
exact and reproducible. Which
images get a cutout is a seeded random choice per class (a CPU ``torch.Generator`` seeded by
:func:`~shiftbench.rng.derive_seed`). The cutouts themselves are drawn by the registered
``cutout`` shift at magnitude ``n_patches`` with ``sample_ids`` = the source data-set indices and
the same ``seed``: an image's patches are exactly those ``shiftbench run --shift cutout --seed S``
draws for that sample at that magnitude, and the same image carries the same patches in
``train`` and ``control_train``.

Where the rows come from: if the source has a ``split`` column (CSV manifest), rows with
``split == "test"`` form the test pool and all other rows (``train``, ``val``) the training pool,
and the ``split`` column is kept so training still validates on the ``val`` rows; otherwise a
stratified ``test_fraction`` of the rows (seeded) is the test pool.

Output (``fmt="folder"``)::

    out/cutout_set.json                         parameters, counts, source fingerprint
    out/<set>/manifest.csv                      path,label,class_name,has_cutout,source_index,...
    out/<set>/images/<class>/<index>_<name>.png lossless PNG

With ``fmt="npz"``: ``out/<set>.npz`` (``images`` N×H×W×3 uint8, ``labels``, ``class_names``) plus
``out/<set>.csv`` (the same manifest; ``path`` is ``npz:<i>``). :func:`shiftbench.data.open_dataset`
reads both; note that an ``.npz`` carries no extra columns, so ``has_cutout`` reaches the run
tables only with the folder format.

This is the paper's preset of the general spurious-correlation set
(:mod:`shiftbench.spurious_set`, ``shiftbench make-spurious-set``): artifact ``cutout:16``, target
class = the negative class at degradation 0.25 with 2.5 % of the positives marked too, and its
``test`` set is that module's O.O.D. rule (artifact on every positive, none of the negatives). It
shares the pools, the exact rounding, the seeded selection and the artifact drawing with it and
keeps its own per-set layout (and the ``npz`` format).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from shiftbench.errors import DataError, UserInputError
from shiftbench.spurious_set import (
    Plan,
    PngStore,
    apply_artifact,
    check_out,
    make_artifact,
    mark_fractions,
    publish,
    round_half_up,
    source_pools,
    split_counts,
    split_table,
    temporary_folder,
    write_csv,
)

__all__ = ["CutoutSetResult", "apply_cutouts", "cutout_counts", "make_cutout_set", "round_half_up"]

SETS = ("train", "test", "control_train")
NEGATIVE_FRACTION = 0.25
POSITIVE_FRACTION = 0.025
FLAG = "has_cutout"


def cutout_counts(
    n_neg: int,
    n_pos: int,
    neg_fraction: float = NEGATIVE_FRACTION,
    pos_fraction: float = POSITIVE_FRACTION,
) -> tuple[int, int]:
    """How many negatives and positives of the training pool get a cutout (round half up)."""
    return round_half_up(neg_fraction, n_neg), round_half_up(pos_fraction, n_pos)


@dataclass
class CutoutSetResult:
    """What :func:`make_cutout_set` wrote.

    Attributes:
        out: the output folder.
        splits: per set (``train``, ``test``, ``control_train``): ``n``, ``negatives``,
            ``positives``, ``cutout_negatives``, ``cutout_positives``, ``manifest`` (path) and
            ``data`` (what to pass as ``--data``).
        params: the parameters, as written to ``cutout_set.json``.
    """

    out: Path
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


def apply_cutouts(
    images: torch.Tensor,
    sample_ids: list[int],
    *,
    n_patches: int,
    patch_size: int,
    seed: int,
) -> torch.Tensor:
    """Cut ``n_patches`` patches of ``patch_size`` px into each uint8 ``[B, 3, H, W]`` image.

    Delegates to the registered ``cutout`` shift (magnitude = number of patches), so the
    patches are the ones the shift draws for ``(seed, sample_id)``.
    """
    art = make_artifact(("cutout", n_patches), {"patch_size": patch_size})
    return art.shift(images, art.magnitude, seed=seed, sample_ids=sample_ids)


def _check_args(fmt: str, n_patches: Any, patch_size: Any, fractions: dict[str, float]) -> None:
    if fmt not in ("folder", "npz"):
        raise UserInputError(f"--format must be folder or npz; got {fmt!r}")
    for name, v in (("--n-patches", n_patches), ("--patch-size", patch_size)):
        if isinstance(v, bool) or int(v) != v or int(v) < 1:
            raise UserInputError(f"{name} must be a positive integer; got {v!r}")
    for name, v in fractions.items():
        if not 0.0 <= v <= 1.0:
            raise UserInputError(f"{name} must be in [0, 1]; got {v}")


def _binary_classes(names: list[str], labels: np.ndarray, positive: str | None, data: Any):
    if len(names) != 2 or len(np.unique(labels)) != 2:
        raise DataError(
            f"the cutout set needs a binary data set (2 classes); {data} has classes {names}"
        )
    if positive is None:
        return 1
    if positive in names:
        return names.index(positive)
    raise UserInputError(
        f"--positive-class {positive!r} is not a class of {data}; classes: {', '.join(names)}"
    )


def make_cutout_set(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    positive_class: str | None = None,
    n_patches: int = 16,
    patch_size: int = 8,
    seed: int = 0,
    fmt: Literal["folder", "npz"] = "folder",
    test_fraction: float = 0.2,
    neg_fraction: float = NEGATIVE_FRACTION,
    pos_fraction: float = POSITIVE_FRACTION,
    overwrite: bool = False,
    image_size: int | None = None,
) -> CutoutSetResult:
    """Build the train / test / control-train cutout sets from a binary data set.

    Args:
        data: image folder, CSV manifest or ``.npz`` with exactly two classes.
        out: output folder; must not exist unless ``overwrite``.
        positive_class: name of the positive class (default: the class with index 1).
        n_patches: cutouts per image (the cutout shift's magnitude).
        patch_size: side of each square cutout in pixels.
        seed: seed for the choice of images and for the cutout positions.
        fmt: ``"folder"`` (PNG files + CSV manifest) or ``"npz"``.
        test_fraction: test hold-out when the source has no ``split`` column.
        neg_fraction, pos_fraction: shares of training negatives / positives with a cutout
            (paper: 0.25 and 0.025).
        overwrite: replace an existing ``out``.
        image_size: resize source images to this size on load (default: keep).

    Returns:
        A :class:`CutoutSetResult` with the exact counts per set.

    Raises:
        UserInputError: bad arguments, or ``out`` exists without ``overwrite``.
        DataError: the source is not a binary data set.
    """
    from shiftbench.data import open_dataset

    out = Path(out)
    _check_args(
        fmt, n_patches, patch_size, {"neg_fraction": neg_fraction, "pos_fraction": pos_fraction}
    )
    art = make_artifact(("cutout", int(n_patches)), {"patch_size": int(patch_size)})
    check_out(out, overwrite)

    ds = open_dataset(data, image_size=image_size)
    names = list(ds.class_names)
    labels = np.asarray(ds.labels, dtype=np.int64)
    pos = _binary_classes(names, labels, positive_class, data)
    neg = 1 - pos
    pools = source_pools(ds.extras, labels, test_fraction, seed)
    # The tags are those of the first release, so a seed gives the same set as before.
    tags = {neg: "cutout-set-neg", pos: "cutout-set-pos"}
    fractions = {neg: neg_fraction, pos: pos_fraction}
    plan: Plan = {
        "train": (pools.train, mark_fractions(pools.train, labels, fractions, seed, tags)),
        "test": (pools.test, set(pools.test[labels[pools.test] == pos].tolist())),
        "control_train": (pools.train, set(pools.train.tolist())),
    }

    params = {
        "source": str(data),
        "source_fingerprint": ds.fingerprint(),
        "class_names": names,
        "positive_class": names[pos],
        "negative_class": names[neg],
        "n_patches": int(n_patches),
        "patch_size": int(patch_size),
        "seed": int(seed),
        "format": fmt,
        "neg_fraction": neg_fraction,
        "pos_fraction": pos_fraction,
        "rounding": "half up, exact decimal product",
        "pools": pools.how,
        "cutouts": "registered 'cutout' shift, magnitude n_patches, sample_ids = source indices",
    }

    tmp = temporary_folder(out)
    result = CutoutSetResult(out=out, params=params)
    try:
        # Read every needed source image once; cut each one at most once (same patches in
        # `train` and `control_train` by construction of the shift's generators).
        needed = np.union1d(pools.train, pools.test)
        cut_any = sorted(set().union(*(c for _, c in plan.values())))
        images = {int(i): ds[int(i)][0] for i in needed}
        cut_images = apply_artifact(images, cut_any, art, seed)
        for set_name, (pool, cut) in plan.items():
            info = _write_set(tmp, set_name, pool, cut, images, cut_images, ds, fmt)
            result.splits[set_name] = _legacy_counts(info, names, neg, pos)
        summary = {
            "params": params,
            "sets": {
                k: {kk: vv for kk, vv in v.items() if kk not in ("manifest", "data")}
                for k, v in result.splits.items()
            },
        }
        (tmp / "cutout_set.json").write_text(json.dumps(summary, indent=2) + "\n")
        publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # Paths in the result point at the final folder.
    for info in result.splits.values():
        for key in ("manifest", "data"):
            info[key] = out / Path(info[key]).relative_to(tmp)
    return result


def _legacy_counts(info: dict[str, Any], names: list[str], neg: int, pos: int) -> dict[str, Any]:
    """The general per-class counts in this preset's negative/positive vocabulary."""
    n, p = info["classes"][names[neg]], info["classes"][names[pos]]
    return {
        "n": info["n"],
        "negatives": n["n"],
        "positives": p["n"],
        "cutout_negatives": n["artifact"],
        "cutout_positives": p["artifact"],
        "manifest": info["manifest"],
        "data": info["data"],
    }


def _write_set(
    root: Path,
    set_name: str,
    pool: np.ndarray,
    cut: set[int],
    images: dict[int, torch.Tensor],
    cut_images: dict[int, torch.Tensor],
    ds: Any,
    fmt: str,
) -> dict[str, Any]:
    names = list(ds.class_names)
    ids = pool.tolist()
    pixels = [cut_images[i] if i in cut else images[i] for i in ids]
    if fmt == "folder":
        store = PngStore(
            root / set_name, lambda i, _m, cls, stem: f"images/{cls}/{i:06d}_{stem}.png"
        )
        paths = [
            store.path(i, i in cut, img, names[int(ds.labels[i])], str(ds.paths[i]))
            .relative_to(root / set_name)
            .as_posix()
            for i, img in zip(ids, pixels, strict=True)
        ]
    else:
        paths = [f"npz:{k}" for k in range(len(ids))]
    table = split_table(pool, cut, paths, ds, FLAG)
    if fmt == "folder":
        manifest = data_path = root / set_name / "manifest.csv"
        write_csv(table, manifest)
    else:
        manifest = root / f"{set_name}.csv"
        write_csv(table, manifest)
        data_path = root / f"{set_name}.npz"
        np.savez(
            data_path,
            images=np.stack([img.permute(1, 2, 0).numpy() for img in pixels]),
            labels=table["label"].to_numpy(np.int64),
            class_names=np.asarray(names),
        )
    return {**split_counts(table, FLAG, names), "manifest": manifest, "data": data_path}
