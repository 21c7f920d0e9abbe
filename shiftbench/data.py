"""Test sets for ``--data``: an image folder, a CSV manifest or an ``.npz`` file, streamed.

Layouts (see docs/reference/run-directory.md and docs/how-to/evaluate-your-checkpoint.md):

* **folder** — one subfolder per class (ImageFolder layout). Classes are the subfolder names
  sorted by name; label index = position in that order. Image files (``.jpg .jpeg .png .tif
  .tiff .bmp .webp``) are listed per class in name order; hidden files are ignored.
* **CSV manifest** — columns ``path,label`` plus any extra columns (e.g. ``magnification``), which
  are carried into the tables. Paths are relative to the CSV's folder (absolute paths are kept).
  ``label`` is either an integer class index (class names then come from a ``class_name`` column
  when it maps each index to one name, else ``"0"``, ``"1"``, ...) or a class name (classes are
  the sorted unique names).
* **npz** — arrays ``images`` (``uint8`` ``N×H×W×3``; ``N×H×W`` grey or ``N×H×W×4`` RGBA are
  converted) and ``labels`` (integers), optional ``class_names``. An uncompressed ``.npz``
  (``np.savez``) is memory-mapped; a compressed one is read into memory.

Each item is ``(uint8 tensor [3, H, W] RGB, label, sample_id)``; ``sample_id`` is the item's index
in the data set, stable across runs. Images are decoded with Pillow (grey, palette, RGBA and
16-bit images are converted to 8-bit RGB; alpha is dropped, not composited); files Pillow cannot
identify are tried with OpenCV. A truncated or unreadable file is skipped with a warning and
reported by the loader (``strict=True`` makes it an error instead).

All images must have one size, checked from the file headers when the data set is opened; with
``image_size=N`` every image is instead resized to ``N×N`` on load (area interpolation when
shrinking, bilinear when enlarging; the aspect ratio is not kept).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from shiftbench.errors import DataError
from shiftbench.run.rundir import check_reserved

__all__ = [
    "IMAGE_EXTENSIONS",
    "Batch",
    "ImageDataset",
    "SkippedFile",
    "default_workers",
    "make_loader",
    "open_dataset",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


class UnreadableImage(DataError):
    """One image file cannot be decoded (the loader skips it unless ``strict``)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class SkippedFile:
    """An image the loader could not read."""

    sample_id: int
    path: str
    reason: str


@dataclass
class Batch:
    """One batch from :func:`make_loader`.

    Attributes:
        images: ``uint8 [B, 3, H, W]`` RGB (CPU; move it to the device yourself).
        labels: ``int64 [B]`` class indices as stored in the data set.
        sample_ids: ``int64 [B]`` data-set indices.
        skipped: files of this batch that could not be read (not in ``images``).
        index: position of the batch in the loader's batch list.
    """

    images: torch.Tensor
    labels: torch.Tensor
    sample_ids: torch.Tensor
    skipped: list[SkippedFile] = field(default_factory=list)
    index: int = -1
    error: str | None = None

    def pin_memory(self) -> Batch:
        """Called by ``DataLoader(pin_memory=True)``: page-locked tensors for fast GPU copies."""
        self.images = self.images.pin_memory()
        self.labels = self.labels.pin_memory()
        self.sample_ids = self.sample_ids.pin_memory()
        return self


class ImageDataset(Dataset):
    """A labelled image test set (see the module docstring for layouts).

    Attributes:
        format: ``"folder"``, ``"csv"`` or ``"npz"``.
        source: the path given to :func:`open_dataset`.
        paths: per sample, the image path relative to the data root (``npz:<i>`` for npz).
        labels: ``int64`` class index per sample.
        class_names: class names in label-index order.
        labels_are_names: labels were derived from names (folder names or CSV string labels), so
            they can be matched to a checkpoint's class names by name.
        extras: extra CSV columns (one row per sample, index = sample id); no columns otherwise.
        image_size: resize-on-load side in pixels, or ``None``.
        native_size: ``(H, W)`` of the images when they all share one size and
            ``image_size`` is ``None``.
        strict: unreadable files are errors instead of skipped.
    """

    format: str

    def __init__(
        self,
        *,
        source: Path,
        paths: list[str],
        labels: np.ndarray,
        class_names: list[str],
        labels_are_names: bool,
        extras: pd.DataFrame,
        image_size: int | None,
        strict: bool,
    ) -> None:
        self.source = source
        self.paths = paths
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = class_names
        self.labels_are_names = labels_are_names
        self.extras = extras.reset_index(drop=True)
        self.image_size = image_size
        self.native_size: tuple[int, int] | None = None
        self.strict = strict
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        """``(uint8 [3, H, W] RGB, label, sample_id)``; raises ``UnreadableImage`` if unreadable."""
        hwc = self.read(index)
        return torch.from_numpy(hwc).permute(2, 0, 1).contiguous(), int(self.labels[index]), index

    def read(self, index: int) -> np.ndarray:
        """Image ``index`` as ``uint8 [H, W, 3]`` RGB, resized when ``image_size`` is set."""
        hwc = self._read_rgb(index)
        if self.image_size is not None:
            hwc = _resize(hwc, self.image_size)
        return hwc

    def _read_rgb(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """SHA-256 identifying the data (paths, labels, file sizes, extras; npz: file bytes)."""
        if self._fingerprint is None:
            self._fingerprint = self._compute_fingerprint()
        return self._fingerprint

    def _compute_fingerprint(self) -> str:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for the run manifest."""
        return {
            "format": self.format,
            "path": str(self.source),
            "n_samples": len(self),
            "class_names": list(self.class_names),
            "labels_are_names": self.labels_are_names,
            "extra_columns": list(self.extras.columns),
            "image_size": self.image_size,
            "native_size": list(self.native_size) if self.native_size else None,
            "fingerprint": self.fingerprint(),
        }


class FileDataset(ImageDataset):
    """Images stored as files (folder or CSV layout)."""

    def __init__(self, *, root: Path, fmt: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.format = fmt
        self._packed_paths = _PackedStrings(self.paths)

    def absolute(self, index: int) -> Path:
        # Read from the packed copy: touching the list's str objects in a loader worker would
        # copy their memory pages (copy-on-write via refcounts), O(data-set size) per worker.
        p = Path(self._packed_paths[index])
        return p if p.is_absolute() else self.root / p

    def _read_rgb(self, index: int) -> np.ndarray:
        return decode_image(self.absolute(index))

    def _compute_fingerprint(self) -> str:
        h = hashlib.sha256(f"{self.format}\n".encode())
        for i, (p, label) in enumerate(zip(self.paths, self.labels.tolist(), strict=True)):
            try:
                size = self.absolute(i).stat().st_size
            except OSError:
                size = -1
            h.update(f"{p}\t{label}\t{size}\n".encode())
        h.update(json.dumps(self.class_names).encode())
        if len(self.extras.columns):
            h.update(self.extras.to_csv(index=False).encode())
        return h.hexdigest()

    def check_sizes(self) -> None:
        """Read every image header; error if sizes differ (unless resizing on load)."""
        if self.image_size is not None or not len(self):
            return

        def size_of(i: int) -> tuple[int, int] | None:
            from PIL import Image

            try:
                with Image.open(self.absolute(i)) as im:
                    w, h = im.size
                return h, w
            except Exception:
                return None  # unreadable: reported when decoded

        with ThreadPoolExecutor(max_workers=8) as pool:
            sizes = list(pool.map(size_of, range(len(self)), chunksize=64))
        first: dict[tuple[int, int], int] = {}
        for i, s in enumerate(sizes):
            if s is not None and s not in first:
                first[s] = i
                if len(first) > 1:
                    break
        if len(first) > 1:
            (s1, i1), (s2, i2) = list(first.items())[:2]
            raise DataError(
                f"images differ in size: {s1[1]}x{s1[0]} ({self.paths[i1]}) vs {s2[1]}x{s2[0]} "
                f"({self.paths[i2]}); pass --image-size N (image_size=N) to resize every image "
                "to NxN on load"
            )
        self.native_size = next(iter(first), None)


class _PackedStrings:
    """Strings in one ``uint8`` buffer + offsets: no per-string Python objects to refcount."""

    def __init__(self, strings: Sequence[str]) -> None:
        encoded = [s.encode("utf-8") for s in strings]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self.offsets[1:])
        self.buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> str:
        start, stop = self.offsets[index], self.offsets[index + 1]
        return self.buffer[start:stop].tobytes().decode("utf-8")


class NpzDataset(ImageDataset):
    """Images from an ``.npz`` array (memory-mapped when stored uncompressed)."""

    format = "npz"

    def __init__(self, *, images: np.ndarray, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.images = images
        if self.image_size is None:
            self.native_size = (int(images.shape[1]), int(images.shape[2]))

    def _read_rgb(self, index: int) -> np.ndarray:
        return _to_rgb(np.array(self.images[index]))  # copy: memmaps are read-only

    def _compute_fingerprint(self) -> str:
        from shiftbench.checkpoint import sha256_file

        h = hashlib.sha256(sha256_file(self.source).encode())
        h.update(f"limit={len(self)}".encode())
        return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# opening
# ---------------------------------------------------------------------------------------------


def open_dataset(
    path: str | os.PathLike[str],
    *,
    limit: int | None = None,
    strict: bool = False,
    image_size: int | None = None,
) -> ImageDataset:
    """Open a test set: a class-subfolder tree, a CSV manifest or an ``.npz`` file.

    Args:
        path: folder, ``.csv`` file or ``.npz`` file.
        limit: keep only the first ``limit`` samples (in data-set order).
        strict: make unreadable images an error instead of skipping them.
        image_size: resize every image to ``image_size × image_size`` on load (before any shift).

    Returns:
        An :class:`ImageDataset` (``len``, indexing, ``class_names``, ``extras``,
        ``fingerprint()``); stream it with :func:`make_loader`.

    Raises:
        DataError: missing or empty data, a malformed manifest, images of different sizes.
    """
    path = Path(path)
    if limit is not None and (isinstance(limit, bool) or int(limit) < 1):
        raise DataError(f"limit must be a positive integer; got {limit!r}")
    if image_size is not None and (isinstance(image_size, bool) or int(image_size) < 1):
        raise DataError(f"image_size must be a positive integer; got {image_size!r}")
    if not path.exists():
        raise DataError(f"data not found: {path}")
    if path.is_dir():
        ds: ImageDataset = _open_folder(path, limit, strict, image_size)
    elif path.suffix.lower() == ".csv":
        ds = _open_csv(path, limit, strict, image_size)
    elif path.suffix.lower() == ".npz":
        ds = _open_npz(path, limit, strict, image_size)
    else:
        raise DataError(
            f"--data must be a folder of class subfolders, a .csv manifest or an .npz file; "
            f"got {path}"
        )
    if isinstance(ds, FileDataset):
        ds.check_sizes()
    return ds


def _open_folder(root: Path, limit: int | None, strict: bool, size: int | None) -> FileDataset:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths: list[str] = []
    labels: list[int] = []
    for index, cls in enumerate(classes):
        files = sorted(
            f
            for f in (root / cls).rglob("*")
            if f.is_file()
            and f.suffix.lower() in IMAGE_EXTENSIONS
            and not any(part.startswith(".") for part in f.relative_to(root).parts)
        )
        paths += [f.relative_to(root).as_posix() for f in files]
        labels += [index] * len(files)
    if not paths:
        loose = [f.name for f in root.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS][:1]
        hint = (
            f" (found images such as {loose[0]} directly in it: put them in one subfolder per "
            "class, or list them in a CSV manifest)"
            if loose
            else ""
        )
        raise DataError(
            f"no images found in {root}: expected one subfolder per class holding "
            f"{'/'.join(IMAGE_EXTENSIONS)} files{hint}"
        )
    if limit is not None:
        paths, labels = paths[:limit], labels[:limit]
    return FileDataset(
        root=root,
        fmt="folder",
        source=root,
        paths=paths,
        labels=np.asarray(labels),
        class_names=classes,
        labels_are_names=True,
        extras=pd.DataFrame(index=range(len(paths))),
        image_size=size,
        strict=strict,
    )


def _open_csv(csv: Path, limit: int | None, strict: bool, size: int | None) -> FileDataset:
    try:
        table = pd.read_csv(csv, dtype={"path": str}, keep_default_na=False, na_values=[""])
    except Exception as e:
        raise DataError(f"cannot read CSV manifest {csv}: {e}") from None
    missing = [c for c in ("path", "label") if c not in table.columns]
    if missing:
        raise DataError(
            f"CSV manifest {csv} needs columns path,label; missing {', '.join(missing)} "
            f"(found: {', '.join(map(str, table.columns))})"
        )
    if table.empty:
        raise DataError(f"CSV manifest {csv} has no rows")
    if limit is not None:
        table = table.iloc[:limit].reset_index(drop=True)
    for col in ("path", "label"):
        bad = table.index[table[col].isna()]
        if len(bad):
            raise DataError(f"CSV manifest {csv}: row {int(bad[0]) + 2} has an empty {col}")
    extra = [str(c) for c in table.columns if c not in ("path", "label")]
    check_reserved(extra, f"CSV manifest {csv}: column", DataError)
    labels, class_names, from_names = _csv_labels(table, csv)
    extras = table.drop(columns=["path", "label"])
    return FileDataset(
        root=csv.parent,
        fmt="csv",
        source=csv,
        paths=[str(p) for p in table["path"]],
        labels=labels,
        class_names=class_names,
        labels_are_names=from_names,
        extras=extras,
        image_size=size,
        strict=strict,
    )


def _csv_labels(table: pd.DataFrame, csv: Path) -> tuple[np.ndarray, list[str], bool]:
    raw = table["label"]
    as_num = pd.to_numeric(raw, errors="coerce")
    if as_num.notna().all():
        if not (as_num == as_num.round()).all() or (as_num < 0).any():
            row = int(np.flatnonzero(~((as_num == as_num.round()) & (as_num >= 0)))[0])
            raise DataError(
                f"CSV manifest {csv}: row {row + 2} label {raw.iloc[row]!r} is not a class index "
                "(a whole number >= 0) or a class name"
            )
        labels = as_num.astype(np.int64).to_numpy()
        names = [str(i) for i in range(int(labels.max()) + 1)]
        if "class_name" in table.columns:
            pairs = table[["label", "class_name"]].assign(label=labels).drop_duplicates()
            if pairs["label"].is_unique and pairs["class_name"].is_unique:
                for lab, name in zip(pairs["label"], pairs["class_name"], strict=True):
                    names[int(lab)] = str(name)
        return labels, names, False
    if as_num.notna().any():
        raise DataError(
            f"CSV manifest {csv}: the label column mixes numbers and names; use class indices "
            "everywhere or class names everywhere"
        )
    names = sorted(raw.astype(str).unique())
    lookup = {n: i for i, n in enumerate(names)}
    return raw.astype(str).map(lookup).to_numpy(np.int64), names, True


def _open_npz(path: Path, limit: int | None, strict: bool, size: int | None) -> NpzDataset:
    try:
        archive = np.load(path, allow_pickle=False)
        keys = set(archive.files)
    except Exception as e:
        raise DataError(f"cannot read {path} as .npz: {e}") from None
    for key in ("images", "labels"):
        if key not in keys:
            raise DataError(
                f"{path} needs arrays 'images' (uint8 N×H×W×3) and 'labels'; missing {key!r} "
                f"(found: {', '.join(sorted(keys))})"
            )
    images = _npz_memmap(path, "images")
    if images is None:
        images = archive["images"]
    labels = np.asarray(archive["labels"])
    if images.dtype != np.uint8:
        raise DataError(f"{path}: images must be uint8 (0..255); got {images.dtype}")
    if images.ndim == 4 and images.shape[-1] in (1, 3, 4):
        pass
    elif images.ndim == 3:
        pass  # N×H×W grey
    else:
        hint = "; channels-first? use images.transpose(0, 2, 3, 1)" if images.ndim == 4 else ""
        raise DataError(f"{path}: images must be N×H×W×3 (RGB); got shape {images.shape}{hint}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{path}: labels must be 1-D with one entry per image; got shape {labels.shape} for "
            f"{len(images)} images"
        )
    if labels.dtype.kind not in "iu":
        raise DataError(f"{path}: labels must be integers; got dtype {labels.dtype}")
    if len(labels) == 0:
        raise DataError(f"{path} holds no images")
    if labels.min() < 0:
        raise DataError(f"{path}: labels must be >= 0; got {int(labels.min())}")
    if "class_names" in keys:
        names = [str(n) for n in np.asarray(archive["class_names"]).tolist()]
    else:
        names = [str(i) for i in range(int(labels.max()) + 1)]
    n = len(labels) if limit is None else min(limit, len(labels))
    return NpzDataset(
        images=images[:n],
        source=path,
        paths=[f"npz:{i}" for i in range(n)],
        labels=labels[:n].astype(np.int64),
        class_names=names,
        labels_are_names=False,
        extras=pd.DataFrame(index=range(n)),
        image_size=size,
        strict=strict,
    )


def _npz_memmap(path: Path, name: str) -> np.ndarray | None:
    """Memory-map array ``name`` of an uncompressed ``.npz``; ``None`` if it is compressed."""
    with zipfile.ZipFile(path) as zf:
        try:
            info = zf.getinfo(f"{name}.npy")
        except KeyError:
            return None
        if info.compress_type != zipfile.ZIP_STORED:
            return None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        if dtype.hasobject:
            return None
        offset = f.tell()
    return np.memmap(
        path, dtype=dtype, mode="r", shape=shape, offset=offset, order="F" if fortran else "C"
    )


# ---------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------


def decode_image(path: Path) -> np.ndarray:
    """Decode an image file to ``uint8 [H, W, 3]`` RGB.

    Pillow first (it reports truncated files, which OpenCV would silently fill); a file Pillow
    cannot identify is tried with OpenCV.

    Raises:
        UnreadableImage: missing, truncated or undecodable file.
    """
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise UnreadableImage(path, "file not found")
    try:
        with Image.open(path) as im:
            im.load()
            return _pil_to_rgb(im)
    except UnidentifiedImageError:
        pass
    except Exception as e:
        raise UnreadableImage(path, f"cannot decode ({e})") from None
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if arr is None:
        raise UnreadableImage(path, "cannot decode (not an image file Pillow or OpenCV reads)")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def _pil_to_rgb(im: Any) -> np.ndarray:
    if im.mode == "RGB":
        return np.asarray(im).copy()
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im).astype(np.int64)
        arr = (arr >> 8) if arr.max() > 255 else arr  # 16-bit grey → 8-bit
        arr = np.clip(arr, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB")).copy()


def _to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[-1] == 1:
        return np.repeat(arr, 3, axis=2)
    if arr.shape[-1] == 4:
        return np.ascontiguousarray(arr[..., :3])
    return np.ascontiguousarray(arr)


def _resize(hwc: np.ndarray, size: int) -> np.ndarray:
    import cv2

    h, w = hwc.shape[:2]
    if (h, w) == (size, size):
        return hwc
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(hwc, (size, size), interpolation=interp)


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------


class _SafeItems(Dataset):
    """Wraps a data set so an unreadable file becomes a marker instead of a worker crash."""

    def __init__(self, dataset: ImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except UnreadableImage as e:
            return SkippedFile(int(index), self.dataset.paths[index], e.reason)


class _Collate:
    def __init__(self, batches: Sequence[Sequence[int]] | None) -> None:
        self.batch_ids = (
            {next(iter(b)): k for k, b in enumerate(batches) if len(b)} if batches else None
        )

    def __call__(self, items: list[Any]) -> Batch:
        good = [it for it in items if not isinstance(it, SkippedFile)]
        skipped = [it for it in items if isinstance(it, SkippedFile)]
        first_id = items[0].sample_id if isinstance(items[0], SkippedFile) else items[0][2]
        index = self.batch_ids.get(first_id, -1) if self.batch_ids else -1
        if not good:
            return Batch(
                images=torch.empty(0, 3, 0, 0, dtype=torch.uint8),
                labels=torch.empty(0, dtype=torch.int64),
                sample_ids=torch.empty(0, dtype=torch.int64),
                skipped=skipped,
                index=index,
            )
        shapes = {tuple(it[0].shape) for it in good}
        if len(shapes) > 1:
            a, b = sorted(shapes)[:2]
            return Batch(
                images=torch.empty(0, 3, 0, 0, dtype=torch.uint8),
                labels=torch.empty(0, dtype=torch.int64),
                sample_ids=torch.tensor([it[2] for it in good], dtype=torch.int64),
                skipped=skipped,
                index=index,
                error=(
                    f"images differ in size ({a[2]}x{a[1]} vs {b[2]}x{b[1]}); pass "
                    "--image-size N to resize every image to NxN on load"
                ),
            )
        return Batch(
            images=_stack([it[0] for it in good]),
            labels=torch.tensor([it[1] for it in good], dtype=torch.int64),
            sample_ids=torch.tensor([it[2] for it in good], dtype=torch.int64),
            skipped=skipped,
            index=index,
        )


def _stack(images: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack``; in a loader worker straight into shared memory.

    :func:`torch.utils.data.default_collate` does exactly that for a list of tensors (public
    API). Without it the worker stacks into private memory and torch copies the batch into
    shared memory to send it, and the worker's resident memory grows with the number of batches.
    """
    from torch.utils.data import default_collate

    return default_collate(images)


def _worker_init(_: int) -> None:
    # No cv2.setNumThreads() here: in a worker forked after OpenCV's thread pool started (e.g. a
    # blur sweep ran before this loader), it waits forever for pool threads that fork did not
    # copy. Decoding in a worker is single-image work anyway.
    torch.set_num_threads(1)


class Loader:
    """Iterable of :class:`Batch`; raises :class:`DataError` in the main process on bad data."""

    def __init__(
        self, dataset: ImageDataset, loader: DataLoader, n_batches: int, warn_skipped: bool = True
    ) -> None:
        self.dataset = dataset
        self.loader = loader
        self.n_batches = n_batches
        self.warn_skipped = warn_skipped

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.loader:
            if batch.error:
                raise DataError(batch.error)
            if batch.skipped:
                if self.dataset.strict:
                    first = batch.skipped[0]
                    raise DataError(
                        f"cannot read image {first.path}: {first.reason} (strict mode: fix or "
                        "remove the file, or drop --strict to skip it)"
                    )
                for s in batch.skipped if self.warn_skipped else ():
                    warnings.warn(f"skipping unreadable image {s.path}: {s.reason}", stacklevel=2)
            yield batch


def default_workers() -> int:
    """Decoding workers when not given: half the CPU cores, at least 1, at most 4."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def make_loader(
    dataset: ImageDataset,
    batch_size: int,
    workers: int | None = None,
    *,
    batches: Sequence[Sequence[int]] | None = None,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
    warn_skipped: bool = True,
) -> Loader:
    """Stream ``dataset`` in batches, decoding images in background worker processes.

    Memory stays flat in the data-set size: only ``~2 × workers`` batches are in flight.

    Args:
        dataset: from :func:`open_dataset`.
        batch_size: images per batch.
        workers: decoding processes (``0`` decodes in the calling process); default
            :func:`default_workers`.
        batches: explicit list of index lists (overrides ``batch_size``/``shuffle``); the runner
            uses it to skip finished batches.
        shuffle: reshuffle each epoch with a generator seeded by ``seed`` (training).
        seed: shuffle seed.
        drop_last: drop a final short batch (training).
        pin_memory: pin batches for faster host→GPU copies.
        warn_skipped: emit a ``UserWarning`` per unreadable file (the runner reports them itself).

    Returns:
        An iterable of :class:`Batch`. Unreadable files are left out of ``images`` and listed in
        ``Batch.skipped`` (with a warning); with ``strict`` they raise :class:`DataError`.
    """
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise DataError(f"batch size must be a positive integer; got {batch_size!r}")
    workers = default_workers() if workers is None else int(workers)
    if workers < 0:
        raise DataError(f"workers must be >= 0; got {workers}")
    kwargs: dict[str, Any] = {
        "num_workers": workers,
        "collate_fn": _Collate(batches),
        "pin_memory": pin_memory,
    }
    if workers > 0:
        kwargs["worker_init_fn"] = _worker_init
        kwargs["prefetch_factor"] = 2
    safe = _SafeItems(dataset)
    if batches is not None:
        batch_lists = [list(b) for b in batches if len(b)]
        loader = DataLoader(safe, batch_sampler=batch_lists, **kwargs)
        return Loader(dataset, loader, len(batch_lists), warn_skipped)
    generator = torch.Generator().manual_seed(int(seed)) if shuffle else None
    loader = DataLoader(
        safe,
        batch_size=int(batch_size),
        shuffle=shuffle,
        generator=generator,
        drop_last=drop_last,
        **kwargs,
    )
    return Loader(dataset, loader, len(loader), warn_skipped)
