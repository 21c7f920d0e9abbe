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
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from shiftbench.errors import DataError, UserInputError
from shiftbench.rng import derive_seed

__all__ = ["CutoutSetResult", "apply_cutouts", "cutout_counts", "make_cutout_set"]

SETS = ("train", "test", "control_train")
NEGATIVE_FRACTION = 0.25
POSITIVE_FRACTION = 0.025


def round_half_up(fraction: float, n: int) -> int:
    """``fraction · n`` rounded half up, computed exactly in decimal (no float error at .5).

    ``fraction`` is read through its shortest repr (``0.025`` is exactly 25/1000), so
    ``round_half_up(0.025, 20) == 1`` and ``round_half_up(0.25, 34) == 9``.
    """
    product = Decimal(repr(float(fraction))) * int(n)
    return int(product.quantize(Decimal(1), rounding=ROUND_HALF_UP))


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
    from shiftbench.registry import get_shift

    shift = get_shift("cutout", patch_size=patch_size)
    return shift(images, n_patches, seed=seed, sample_ids=sample_ids)


def _select(pool: np.ndarray, k: int, seed: int, tag: str) -> np.ndarray:
    """``k`` entries of ``pool`` chosen by a seeded permutation (sorted)."""
    g = torch.Generator().manual_seed(derive_seed(seed, 0, tag))
    order = torch.randperm(len(pool), generator=g).numpy()
    return np.sort(pool[order[:k]])


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
    if fmt not in ("folder", "npz"):
        raise UserInputError(f"--format must be folder or npz; got {fmt!r}")
    for name, v in (("--n-patches", n_patches), ("--patch-size", patch_size)):
        if isinstance(v, bool) or int(v) != v or int(v) < 1:
            raise UserInputError(f"{name} must be a positive integer; got {v!r}")
    for name, v in (("neg_fraction", neg_fraction), ("pos_fraction", pos_fraction)):
        if not 0.0 <= v <= 1.0:
            raise UserInputError(f"{name} must be in [0, 1]; got {v}")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserInputError(f"{out} already exists; pass --overwrite to replace it")

    ds = open_dataset(data, image_size=image_size)
    names = list(ds.class_names)
    labels = np.asarray(ds.labels, dtype=np.int64)
    present = np.unique(labels)
    if len(names) != 2 or len(present) != 2:
        raise DataError(
            f"the cutout set needs a binary data set (2 classes); {data} has classes {names}"
        )
    if positive_class is None:
        pos = 1
    elif positive_class in names:
        pos = names.index(positive_class)
    else:
        raise UserInputError(
            f"--positive-class {positive_class!r} is not a class of {data}; classes: "
            f"{', '.join(names)}"
        )
    neg = 1 - pos

    # Pools: the source's own split when it has one, else a seeded stratified hold-out.
    n = len(ds)
    idx = np.arange(n)
    extras = ds.extras
    if "split" in extras.columns:
        split = extras["split"].astype(str).str.strip().str.lower().to_numpy()
        test_pool, train_pool = idx[split == "test"], idx[split != "test"]
        if len(test_pool) == 0:
            raise DataError(f"{data} has a 'split' column but no rows with split == 'test'")
    else:
        if not 0.0 < test_fraction < 1.0:
            raise UserInputError(f"--test-fraction must be in (0, 1); got {test_fraction}")
        from sklearn.model_selection import train_test_split

        train_pool, test_pool = train_test_split(
            idx, test_size=test_fraction, stratify=labels, random_state=seed
        )
        train_pool, test_pool = np.sort(train_pool), np.sort(test_pool)

    train_neg = train_pool[labels[train_pool] == neg]
    train_pos = train_pool[labels[train_pool] == pos]
    k_neg, k_pos = cutout_counts(len(train_neg), len(train_pos), neg_fraction, pos_fraction)
    cut_train = set(_select(train_neg, k_neg, seed, "cutout-set-neg").tolist())
    cut_train |= set(_select(train_pos, k_pos, seed, "cutout-set-pos").tolist())
    plan = {
        "train": (train_pool, cut_train),
        "test": (test_pool, set(test_pool[labels[test_pool] == pos].tolist())),
        "control_train": (train_pool, set(train_pool.tolist())),
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
        "pools": "source split column" if "split" in extras.columns else f"random {test_fraction}",
        "cutouts": "registered 'cutout' shift, magnitude n_patches, sample_ids = source indices",
    }

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    result = CutoutSetResult(out=out, params=params)
    try:
        # Read every needed source image once; cut each one at most once (same patches in
        # `train` and `control_train` by construction of the shift's generators).
        needed = np.union1d(train_pool, test_pool)
        cut_any = sorted(set().union(*(c for _, c in plan.values())))
        images = {int(i): ds[int(i)][0] for i in needed}
        cut_images = _cut_many(images, cut_any, n_patches, patch_size, seed)
        for set_name, (pool, cut) in plan.items():
            info = _write_set(
                tmp, set_name, pool, cut, images, cut_images, ds, labels, names, neg, pos, fmt
            )
            result.splits[set_name] = info
        summary = {
            "params": params,
            "sets": {
                k: {kk: vv for kk, vv in v.items() if kk not in ("manifest", "data")}
                for k, v in result.splits.items()
            },
        }
        (tmp / "cutout_set.json").write_text(json.dumps(summary, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # Paths in the result point at the final folder.
    for info in result.splits.values():
        for key in ("manifest", "data"):
            info[key] = out / Path(info[key]).relative_to(tmp)
    return result


def _cut_many(
    images: dict[int, torch.Tensor],
    ids: list[int],
    n_patches: int,
    patch_size: int,
    seed: int,
    chunk: int = 64,
) -> dict[int, torch.Tensor]:
    out: dict[int, torch.Tensor] = {}
    # Group by image shape so each call gets one batch tensor.
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i in ids:
        by_shape.setdefault(tuple(images[i].shape), []).append(i)
    for group in by_shape.values():
        for s in range(0, len(group), chunk):
            part = group[s : s + chunk]
            batch = torch.stack([images[i] for i in part])
            cut = apply_cutouts(batch, part, n_patches=n_patches, patch_size=patch_size, seed=seed)
            for j, i in enumerate(part):
                out[i] = cut[j]
    return out


def _write_set(
    root: Path,
    set_name: str,
    pool: np.ndarray,
    cut: set[int],
    images: dict[int, torch.Tensor],
    cut_images: dict[int, torch.Tensor],
    ds: Any,
    labels: np.ndarray,
    names: list[str],
    neg: int,
    pos: int,
    fmt: str,
) -> dict[str, Any]:
    import cv2

    rows = []
    arrays = []
    for k, i in enumerate(pool.tolist()):
        has = i in cut
        img = cut_images[i] if has else images[i]
        label = int(labels[i])
        src = str(ds.paths[i])
        if fmt == "folder":
            stem = Path(src).stem if not src.startswith("npz:") else "img"
            rel = f"images/{names[label]}/{i:06d}_{stem}.png"
            dst = root / set_name / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            rgb = img.permute(1, 2, 0).contiguous().numpy()
            if not cv2.imwrite(str(dst), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
                raise DataError(f"cannot write {dst}")
            path = rel
        else:
            arrays.append(img.permute(1, 2, 0).numpy())
            path = f"npz:{k}"
        row = {
            "path": path,
            "label": label,
            "class_name": names[label],
            "has_cutout": bool(has),
            "source_index": i,
            "source_path": src,
        }
        rows.append(row)
    table = pd.DataFrame(rows)
    # Carry the source's extra columns (e.g. magnification, split) unless named like ours.
    extra = ds.extras.iloc[pool].reset_index(drop=True)
    extra = extra[[c for c in extra.columns if c not in table.columns]]
    table = pd.concat([table, extra], axis=1)
    if fmt == "folder":
        manifest = root / set_name / "manifest.csv"
        table.to_csv(manifest, index=False, lineterminator="\n")
        data_path = manifest
    else:
        manifest = root / f"{set_name}.csv"
        table.to_csv(manifest, index=False, lineterminator="\n")
        data_path = root / f"{set_name}.npz"
        np.savez(
            data_path,
            images=np.stack(arrays),
            labels=table["label"].to_numpy(np.int64),
            class_names=np.asarray(names),
        )
    lab = table["label"].to_numpy()
    has = table["has_cutout"].to_numpy()
    return {
        "n": len(table),
        "negatives": int((lab == neg).sum()),
        "positives": int((lab == pos).sum()),
        "cutout_negatives": int((has & (lab == neg)).sum()),
        "cutout_positives": int((has & (lab == pos)).sum()),
        "manifest": manifest,
        "data": data_path,
    }
