"""Spurious-correlation data sets with any registered shift as the artifact.

An *artifact* (a registered shift at one magnitude, e.g. ``ring:16`` or ``cutout:16``) is put on
a chosen share of the images of one class, the *target class* ``C``: a model trained on that
data can learn "artifact ⇒ C" instead of the tissue. For each *degradation* ``d`` (the share of
``C``'s training images carrying the artifact; Lu et al. 2025, after the "Source Matters"
protocol, arXiv:2403.04484) four splits are written:

* ``train``    — the artifact on exactly ``round(d · n_C)`` of ``C``'s training images and on
  ``round(other_fraction · n_k)`` of every other class ``k`` (default ``other_fraction = 0``);
* ``iid_test`` — the same rule on the test pool (the correlation holds at test time);
* ``ood_test`` — the artifact on **every** image of the other class(es) and on **none** of ``C``
  (the correlation reversed: a model that learned the shortcut fails here);
* ``control_train`` — the training pool with the artifact on every image (no correlation; the
  same for every ``d``, written once).

``round`` is round-half-up on the exact decimal product (0.25 · 34 = 8.5 → 9). Which images carry
the artifact is a seeded choice per split and class: the first ``k`` of one seeded permutation
(a CPU ``torch.Generator`` seeded by :func:`~shiftbench.shifts.base.derive_seed` from ``seed``
and a tag naming the split and class). The permutation does not depend on ``d``, so the marked
images at a lower degradation are a subset of those at a higher one (nested levels). The
artifact itself is drawn by the registered shift with ``sample_ids`` = the source data-set
indices and the same ``seed``: an image's artifact is exactly what ``shiftbench run --shift S
--seed S`` draws for that sample at that magnitude, and is the same in every split and level.

Pools: a source with a ``split`` column (CSV manifest) gives its ``test`` rows to the test pool
and all other rows (``train``, ``val``) to the training pool, keeping the ``split`` column so the
trainer still validates on ``val`` rows; otherwise a stratified, seeded ``test_fraction`` of the
rows is the test pool.

Output (every image written once, as lossless PNG; manifests are CSV files that
:func:`shiftbench.data.open_dataset`, ``shiftbench train`` and ``shiftbench run`` read)::

    out/spurious_set.json                               parameters, counts, source fingerprint
    out/images/clean/<class>/<index>_<name>.png         source images (training and test pools)
    out/images/artifact/<class>/<index>_<name>.png      the same images with the artifact
    out/train_d<d>.csv, iid_test_d<d>.csv, ood_test_d<d>.csv    one set per degradation d
    out/control_train.csv

Manifest columns: ``path,label,class_name,has_artifact,artifact,source_index,source_path``,
``degradation`` (level manifests) and the source's extra columns (e.g. ``split``,
``magnification``).
"""

from __future__ import annotations

import inspect
import json
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from shiftbench.errors import DataError, UserInputError
from shiftbench.lists import parse_value
from shiftbench.shifts.base import Shift, derive_seed

__all__ = [
    "DEFAULT_DEGRADATION",
    "Artifact",
    "Pools",
    "SpuriousSetResult",
    "apply_artifact",
    "choose",
    "make_artifact",
    "make_spurious_set",
    "mark_fractions",
    "parse_artifact",
    "parse_degradation",
    "parse_param",
    "round_half_up",
    "source_pools",
]

DEFAULT_DEGRADATION = (0.0, 0.1, 0.2, 0.5, 0.8)
LEVEL_SPLITS = ("train", "iid_test", "ood_test")

#: ``plan[split] = (pool of source indices, set of indices carrying the artifact)``
Plan = dict[str, tuple[np.ndarray, set[int]]]


# -- arguments ------------------------------------------------------------------------------------


def round_half_up(fraction: float, n: int) -> int:
    """``fraction · n`` rounded half up, computed exactly in decimal (no float error at .5).

    ``fraction`` is read through its shortest repr (``0.025`` is exactly 25/1000), so
    ``round_half_up(0.025, 20) == 1`` and ``round_half_up(0.25, 34) == 9``.
    """
    product = Decimal(repr(float(fraction))) * int(n)
    return int(product.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def parse_artifact(spec: str) -> tuple[str, float]:
    """``"ring:16"`` → ``("ring", 16.0)``. Whether the shift and magnitude exist is checked later.

    Raises:
        UserInputError: not of the form ``SHIFT:MAGNITUDE`` with a finite number.
    """
    name, sep, mag = str(spec).partition(":")
    name, mag = name.strip(), mag.strip()
    try:
        value = float(mag)
    except ValueError:
        value = math.nan
    if not sep or not name or not math.isfinite(value):
        raise UserInputError(
            f"--artifact {spec!r} must be SHIFT:MAGNITUDE with a number, e.g. ring:16 or cutout:16"
        )
    return name, value


def parse_param(text: str) -> tuple[str, Any]:
    """``"frequency=0.1"`` → ``("frequency", 0.1)``; numbers and comma lists are converted.

    Raises:
        UserInputError: no ``=`` or an empty name.
    """
    key, sep, value = str(text).partition("=")
    if not sep or not key.strip():
        raise UserInputError(f"--param {text!r} must be NAME=VALUE, e.g. frequency=0.1")
    return key.strip(), parse_value(value.strip(), option="--param")


def parse_degradation(values: str | Sequence[float]) -> list[float]:
    """Degradation levels from ``"0,0.1,0.5"`` or a sequence; each in ``[0, 1]``, no repeats.

    Raises:
        UserInputError: empty, not a number, outside ``[0, 1]`` or repeated.
    """
    items = [s.strip() for s in values.split(",")] if isinstance(values, str) else list(values)
    if not items:
        raise UserInputError("--degradation is empty; give e.g. 0,0.1,0.2,0.5,0.8")
    levels: list[float] = []
    for item in items:
        try:
            d = float(item)
        except (TypeError, ValueError):
            raise UserInputError(
                f"--degradation: {item!r} is not a number; give e.g. 0,0.1,0.2,0.5,0.8"
            ) from None
        if not 0.0 <= d <= 1.0:  # also rejects nan
            raise UserInputError(
                f"--degradation: {item!r} is outside [0, 1] (it is the share of the class's "
                "images that carry the artifact)"
            )
        if d in levels:
            raise UserInputError(f"--degradation: {item!r} is given twice; list each level once")
        levels.append(d)
    return levels


@dataclass(frozen=True)
class Artifact:
    """A registered shift at one magnitude, used as a spurious feature.

    Attributes:
        shift: the shift instance (with its parameters).
        magnitude: its magnitude (never the shift's identity).
    """

    shift: Shift
    magnitude: float

    @property
    def spec(self) -> str:
        """``"name:magnitude"``, as given on the command line."""
        return f"{self.shift.name}:{self.magnitude:g}"

    def describe(self) -> dict[str, Any]:
        return {"shift": self.shift.name, "magnitude": self.magnitude, "params": self.params()}

    def params(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.shift.params().items()}


def make_artifact(
    spec: str | tuple[str, float], params: Mapping[str, Any] | None = None
) -> Artifact:
    """Validate an artifact: a known shift, a magnitude in its range that is not the identity.

    Args:
        spec: ``"SHIFT:MAGNITUDE"`` or ``(name, magnitude)``.
        params: the shift's parameters (e.g. ``{"frequency": 0.1}`` for ``ring``).

    Raises:
        UserInputError: unknown shift or parameter, bad magnitude, or the identity magnitude.
    """
    from shiftbench.registry import get_shift, get_shift_class

    name, magnitude = parse_artifact(spec) if isinstance(spec, str) else spec
    cls = get_shift_class(name)  # unknown name → the list of valid names
    params = dict(params or {})
    signature = inspect.signature(cls.__init__).parameters
    accepted = [p for p, v in signature.items() if p != "self" and v.kind != v.VAR_KEYWORD]
    takes_any = any(v.kind == v.VAR_KEYWORD for v in signature.values())
    unknown = [k for k in params if k not in accepted]
    if unknown and not takes_any:
        valid = ", ".join(accepted) or "none"
        raise UserInputError(
            f"shift {name!r} has no parameter {unknown[0]!r}; its parameters: {valid}"
        )
    try:
        shift = get_shift(name, **params)
    except TypeError as e:  # e.g. a plugin shift with a required parameter not given
        raise UserInputError(f"shift {name!r} rejected its parameters: {e}") from None
    m = shift.check_magnitude(magnitude)
    if m == shift.identity:
        raise UserInputError(
            f"artifact magnitude {magnitude:g} is the identity of {name!r} (it leaves images "
            f"unchanged); pick another, e.g. {name}:{shift.magnitudes[-1]:g}"
        )
    return Artifact(shift, m)


# -- planning (pure) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pools:
    """Source indices of the training and test pools, and how they were formed."""

    train: np.ndarray
    test: np.ndarray
    how: str


def source_pools(
    extras: pd.DataFrame, labels: np.ndarray, test_fraction: float, seed: int
) -> Pools:
    """Training and test pools: the source's ``split`` column, else a stratified hold-out.

    Raises:
        DataError: a ``split`` column without ``test`` rows.
        UserInputError: ``test_fraction`` outside ``(0, 1)`` when it is needed.
    """
    idx = np.arange(len(labels))
    if "split" in extras.columns:
        split = extras["split"].astype(str).str.strip().str.lower().to_numpy()
        test, train = idx[split == "test"], idx[split != "test"]
        if len(test) == 0:
            raise DataError("the data has a 'split' column but no rows with split == 'test'")
        return Pools(train, test, "source split column")
    if not 0.0 < test_fraction < 1.0:
        raise UserInputError(f"--test-fraction must be in (0, 1); got {test_fraction}")
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
    return Pools(np.sort(train), np.sort(test), f"random {test_fraction}")


def choose(pool: np.ndarray, k: int, seed: int, tag: str) -> np.ndarray:
    """The first ``k`` entries of a seeded permutation of ``pool``, sorted.

    The permutation depends on ``(seed, tag, len(pool))`` only, so ``choose(pool, k)`` is a subset
    of ``choose(pool, k')`` for ``k ≤ k'``.
    """
    g = torch.Generator().manual_seed(derive_seed(seed, 0, tag))
    order = torch.randperm(len(pool), generator=g).numpy()
    return np.sort(pool[order[:k]])


def mark_fractions(
    pool: np.ndarray,
    labels: np.ndarray,
    fractions: Mapping[int, float],
    seed: int,
    tags: Mapping[int, str],
) -> set[int]:
    """Indices of ``pool`` that carry the artifact: ``round_half_up(f_c · n_c)`` of each class c.

    Args:
        pool: source indices.
        labels: label of every source index.
        fractions: share ``f_c`` per class index (classes not listed: none marked).
        seed: base seed.
        tags: selection tag per class (see :func:`choose`).
    """
    marked: set[int] = set()
    for c, f in fractions.items():
        members = pool[labels[pool] == c]
        marked |= set(choose(members, round_half_up(f, len(members)), seed, tags[c]).tolist())
    return marked


def level_plan(
    labels: np.ndarray,
    pools: Pools,
    target: int,
    degradation: float,
    other_fraction: float,
    seed: int,
    class_names: Sequence[str],
) -> Plan:
    """``train`` / ``iid_test`` / ``ood_test`` of one degradation level (module docstring)."""
    fractions = {c: other_fraction for c in range(len(class_names))} | {target: degradation}
    plan: Plan = {}
    for split, pool in (("train", pools.train), ("iid_test", pools.test)):
        tags = {c: f"spurious-set|{split}|{class_names[c]}" for c in fractions}
        plan[split] = (pool, mark_fractions(pool, labels, fractions, seed, tags))
    plan["ood_test"] = (pools.test, set(pools.test[labels[pools.test] != target].tolist()))
    return plan


# -- pixels ---------------------------------------------------------------------------------------


def apply_artifact(
    images: Mapping[int, torch.Tensor],
    ids: Sequence[int],
    artifact: Artifact,
    seed: int,
    chunk: int = 64,
) -> dict[int, torch.Tensor]:
    """The artifact on ``images[i]`` for each ``i`` in ``ids`` (``sample_ids`` = ``i``).

    Images are batched by shape, ``chunk`` at a time; the result does not depend on batching.

    Returns:
        ``{i: uint8 [3, H, W]}`` for every ``i`` in ``ids``.
    """
    out: dict[int, torch.Tensor] = {}
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i in ids:
        by_shape.setdefault(tuple(images[i].shape), []).append(int(i))
    for group in by_shape.values():
        for s in range(0, len(group), chunk):
            part = group[s : s + chunk]
            batch = torch.stack([images[i] for i in part])
            shifted = artifact.shift(batch, artifact.magnitude, seed=seed, sample_ids=part)
            out.update(zip(part, shifted, strict=True))
    return out


# -- writing --------------------------------------------------------------------------------------


class PngStore:
    """Writes each (image, variant) once as PNG under ``root``; returns its path.

    Args:
        root: folder the layout's relative paths start from.
        layout: ``(index, marked, class_name, stem) -> relative path``.
    """

    def __init__(self, root: Path, layout: Callable[[int, bool, str, str], str]) -> None:
        self.root = root
        self.layout = layout
        self._written: dict[tuple[int, bool], Path] = {}

    def path(
        self, index: int, marked: bool, image: torch.Tensor, class_name: str, src: str
    ) -> Path:
        key = (index, marked)
        if key not in self._written:
            import cv2

            stem = Path(src).stem if not src.startswith("npz:") else "img"
            dst = self.root / self.layout(index, marked, class_name, stem)
            dst.parent.mkdir(parents=True, exist_ok=True)
            rgb = image.permute(1, 2, 0).contiguous().numpy()
            if not cv2.imwrite(str(dst), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
                raise DataError(f"cannot write {dst}")
            self._written[key] = dst
        return self._written[key]


def split_table(
    pool: np.ndarray,
    marked: set[int],
    paths: Sequence[str],
    ds: Any,
    flag: str,
    columns: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Manifest rows of one split: ``path,label,class_name,<flag>,source_index,source_path``,
    then ``columns`` (constants) and the source's extra columns not named like ours."""
    labels = np.asarray(ds.labels, dtype=np.int64)
    names = list(ds.class_names)
    ids = pool.tolist()
    table = pd.DataFrame(
        {
            "path": list(paths),
            "label": labels[pool],
            "class_name": [names[labels[i]] for i in ids],
            flag: [i in marked for i in ids],
            **{k: [v] * len(ids) for k, v in (columns or {}).items()},
            "source_index": ids,
            "source_path": [str(ds.paths[i]) for i in ids],
        }
    )
    extra = ds.extras.iloc[pool].reset_index(drop=True)
    extra = extra[[c for c in extra.columns if c not in table.columns]]
    return pd.concat([table, extra], axis=1)


def split_counts(table: pd.DataFrame, flag: str, class_names: Sequence[str]) -> dict[str, Any]:
    """``{"n": N, "classes": {name: {"n": n_c, "artifact": marked_c}}}`` of a manifest table."""
    classes = {}
    for c, name in enumerate(class_names):
        rows = table["label"].to_numpy() == c
        classes[name] = {"n": int(rows.sum()), "artifact": int(table[flag].to_numpy()[rows].sum())}
    return {"n": len(table), "classes": classes}


def write_csv(table: pd.DataFrame, path: Path) -> None:
    table.to_csv(path, index=False, lineterminator="\n")


def publish(tmp: Path, out: Path) -> None:
    """Move a finished ``tmp`` folder to ``out`` (replacing it)."""
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    os.replace(tmp, out)


def temporary_folder(out: Path) -> Path:
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise UserInputError(f"{out} already exists; pass --overwrite to replace it")


# -- the data set ---------------------------------------------------------------------------------


@dataclass
class SpuriousSetResult:
    """What :func:`make_spurious_set` wrote.

    Attributes:
        out: the output folder.
        splits: per manifest stem (``train_d0.1``, ``iid_test_d0.1``, ``ood_test_d0.1``, …,
            ``control_train``): ``split``, ``degradation`` (``None`` for the control), ``n``,
            ``classes`` (per class name: ``n`` and ``artifact`` counts) and ``manifest`` (the CSV
            to pass as ``--data``).
        params: the parameters, as written to ``spurious_set.json``.
    """

    out: Path
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def manifest(self, split: str, degradation: float | None = None) -> Path:
        """Path of a split's manifest, e.g. ``result.manifest("ood_test", 0.5)``."""
        key = split if degradation is None else f"{split}_d{degradation:g}"
        if key not in self.splits:
            raise UserInputError(f"no split {key!r}; written: {', '.join(self.splits)}")
        return Path(self.splits[key]["manifest"])


def _target_class(
    names: list[str], labels: np.ndarray, pools: Pools, target: str, data: Any
) -> int:
    if target not in names:
        raise UserInputError(
            f"--class {target!r} is not a class of {data}; classes: {', '.join(names)}"
        )
    c = names.index(target)
    for pool_name, pool in (("training", pools.train), ("test", pools.test)):
        present = set(labels[pool].tolist())
        if c not in present:
            raise DataError(f"class {target!r} has no images in the {pool_name} pool of {data}")
        if not present - {c}:
            raise DataError(f"the {pool_name} pool of {data} has no class other than {target!r}")
    return c


def make_spurious_set(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    artifact: str | tuple[str, float],
    target_class: str,
    params: Mapping[str, Any] | None = None,
    degradation: str | Sequence[float] = DEFAULT_DEGRADATION,
    other_fraction: float = 0.0,
    seed: int = 0,
    test_fraction: float = 0.2,
    overwrite: bool = False,
    image_size: int | None = None,
) -> SpuriousSetResult:
    """Build train / I.I.D. test / O.O.D. test sets per degradation, and a control set.

    Args:
        data: image folder, CSV manifest or ``.npz`` with at least two classes.
        out: output folder; must not exist (or be empty) unless ``overwrite``.
        artifact: ``"SHIFT:MAGNITUDE"`` (e.g. ``"ring:16"``) or ``(name, magnitude)``.
        target_class: name of the class ``C`` whose images carry the artifact.
        params: parameters of the artifact's shift (e.g. ``{"frequency": 0.1}``).
        degradation: shares ``d`` of ``C``'s images with the artifact, each in ``[0, 1]``.
        other_fraction: share of every other class's training / I.I.D. images with the artifact.
        seed: seed of the choice of images and of the artifact's random draws.
        test_fraction: test hold-out when the source has no ``split`` column.
        overwrite: replace an existing ``out``.
        image_size: resize source images to this size on load (default: keep).

    Returns:
        A :class:`SpuriousSetResult` with the exact counts per split.

    Raises:
        UserInputError: bad arguments, or ``out`` exists without ``overwrite``.
        DataError: the source has fewer than two classes, or ``C`` is missing from a pool.
    """
    from shiftbench.data import open_dataset

    out = Path(out)
    art = make_artifact(artifact, params)
    levels = parse_degradation(degradation)
    if not 0.0 <= other_fraction <= 1.0:
        raise UserInputError(f"other_fraction must be in [0, 1]; got {other_fraction}")
    check_out(out, overwrite)

    ds = open_dataset(data, image_size=image_size)
    names = list(ds.class_names)
    labels = np.asarray(ds.labels, dtype=np.int64)
    pools = source_pools(ds.extras, labels, test_fraction, seed)
    target = _target_class(names, labels, pools, target_class, data)
    plans = {d: level_plan(labels, pools, target, d, other_fraction, seed, names) for d in levels}
    control: Plan = {"control_train": (pools.train, set(pools.train.tolist()))}

    result = SpuriousSetResult(out=out)
    result.params = {
        "source": str(data),
        "source_fingerprint": ds.fingerprint(),
        "class_names": names,
        "target_class": names[target],
        "artifact": art.describe(),
        "degradation": levels,
        "other_fraction": other_fraction,
        "seed": int(seed),
        "rounding": "half up, exact decimal product",
        "pools": pools.how,
        "selection": "first round(d·n) of a seeded permutation per split and class (nested in d)",
        "artifact_draws": "registered shift, sample_ids = source indices, seed = seed",
    }
    tmp = temporary_folder(out)
    try:
        _write_all(tmp, ds, art, seed, plans, control, result)
        summary = {"params": result.params, "splits": _without_paths(result.splits)}
        (tmp / "spurious_set.json").write_text(json.dumps(summary, indent=2) + "\n")
        publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for info in result.splits.values():
        info["manifest"] = out / Path(info["manifest"]).name
    return result


def _without_paths(splits: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {k: {kk: vv for kk, vv in v.items() if kk != "manifest"} for k, v in splits.items()}


def _write_all(
    tmp: Path,
    ds: Any,
    art: Artifact,
    seed: int,
    plans: Mapping[float, Plan],
    control: Plan,
    result: SpuriousSetResult,
) -> None:
    all_plans = [*plans.values(), control]
    needed = sorted({int(i) for plan in all_plans for pool, _ in plan.values() for i in pool})
    marked_any = sorted({i for plan in all_plans for _, marked in plan.values() for i in marked})
    images = {i: ds[i][0] for i in needed}
    with_artifact = apply_artifact(images, marked_any, art, seed)

    def layout(i: int, marked: bool, class_name: str, stem: str) -> str:
        return f"images/{'artifact' if marked else 'clean'}/{class_name}/{i:06d}_{stem}.png"

    store = PngStore(tmp, layout)
    names = list(ds.class_names)
    jobs = [(f"{s}_d{d:g}", s, d, plan[s]) for d, plan in plans.items() for s in LEVEL_SPLITS]
    jobs.append(("control_train", "control_train", None, control["control_train"]))
    for stem, split, d, (pool, marked) in jobs:
        paths = []
        for i in pool.tolist():
            img = with_artifact[i] if i in marked else images[i]
            p = store.path(i, i in marked, img, names[int(ds.labels[i])], str(ds.paths[i]))
            paths.append(p.relative_to(tmp).as_posix())
        columns = {"artifact": art.spec} | ({} if d is None else {"degradation": d})
        table = split_table(pool, marked, paths, ds, "has_artifact", columns)
        manifest = tmp / f"{stem}.csv"
        write_csv(table, manifest)
        counts = split_counts(table, "has_artifact", names)
        result.splits[stem] = {"split": split, "degradation": d, **counts, "manifest": manifest}
