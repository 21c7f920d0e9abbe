"""Learning priority: the radial power spectrum of a classifier's input gradients.

Reconstruction of Lu et al. 2025 (arXiv 2407.11379) Eq. 1 after Lin et al. 2022 ("FreqBias",
``grad.py``) and Juodelyte et al. 2024 ("Source Matters", arXiv 2403.04484); every choice and its
source is listed in docs/reference/spectrum.md. For one image with label y:

* x = the model input after the checkpoint's preprocessing (resize, scale, normalise);
* g = Σ_c ∂CE(model(x), y)/∂x_c, the input gradient summed over the 3 channels, model in eval
  mode (so the gradient of one image does not depend on the rest of the batch);
* P = |fftshift(fft2(g))|² (``amplitude=True``: |fftshift(fft2(g))|, as FreqBias does);
* radial profile p_k = mean of P over the pixels of ring k = round(r·S) of the DC-centred S×S
  grid, r in cycles/pixel, k = 1…⌊S/√2⌋ (the DC term k = 0 is dropped); f_k = k/S cycles/pixel;
* each image's profile is min-max normalised to [0, 1]; the priority is the mean over images and
  ``priority_sd`` the SD over images (ddof = 0, as FreqBias's ``np.std``).

Compute (this module) → render (:mod:`shiftbench.spectrum_figures`) → write are kept apart. Images
are streamed batch by batch; only running sums of the profiles are kept.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from shiftbench.errors import DataError, UserInputError

__all__ = [
    "ProfileStats",
    "SpectrumResult",
    "artifact_profiles",
    "input_gradients",
    "normalise_profiles",
    "parse_artifact",
    "priority_profiles",
    "radial_bins",
    "radial_profile",
    "spectrum",
    "spectrum_of",
]


# ---------------------------------------------------------------------------------------------
# pure math on tensors
# ---------------------------------------------------------------------------------------------


def radial_bins(size: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, int]:
    """Ring index of every pixel of a DC-centred (``fftshift``-ed) ``size × size`` spectrum.

    Pixel (i, j) has frequency ((i − ⌊S/2⌋)/S, (j − ⌊S/2⌋)/S) cycles/pixel, radius r, and ring
    k = round(r·S) (round half to even, as ``torch.round``). Rings 1…⌊S/√2⌋ are kept; the DC
    ring 0 and the corner rings beyond ⌊S/√2⌋ (only partly on the grid) get index −1.

    Returns:
        ``(index, n_rings)``: ``index`` is an int64 ``[S·S]`` tensor holding k − 1 (0-based ring)
        or −1; ``n_rings`` = ⌊S/√2⌋.
    """
    if size < 2:
        raise UserInputError(f"the spectrum needs images of at least 2×2 pixels; got {size}")
    centre = size // 2
    offsets = torch.arange(size, device=device, dtype=torch.float64) - centre
    radius = torch.sqrt(offsets[:, None].square() + offsets[None, :].square())  # = r·S
    ring = torch.round(radius).to(torch.int64)
    n_rings = math.floor(size / math.sqrt(2))
    index = torch.where((ring >= 1) & (ring <= n_rings), ring - 1, torch.full_like(ring, -1))
    return index.reshape(-1), n_rings


def radial_profile(spectra: torch.Tensor) -> torch.Tensor:
    """Mean of each ring of DC-centred square spectra.

    Args:
        spectra: ``[B, S, S]`` real tensor (after ``fftshift``).

    Returns:
        ``[B, ⌊S/√2⌋]`` float64: column k − 1 is the mean over ring k (see :func:`radial_bins`).
    """
    b, h, w = spectra.shape
    if h != w:
        raise UserInputError(f"the radial profile needs square spectra; got {h}×{w}")
    index, n_rings = radial_bins(h, spectra.device)
    keep = index >= 0
    idx = index[keep]
    values = spectra.reshape(b, -1)[:, keep].to(torch.float64)
    sums = torch.zeros((b, n_rings), dtype=torch.float64, device=spectra.device)
    sums.index_add_(1, idx, values)
    counts = torch.bincount(idx, minlength=n_rings).to(torch.float64)
    return sums / counts


def gradient_spectrum(gradients: torch.Tensor, *, amplitude: bool = False) -> torch.Tensor:
    """|fftshift(fft2(Σ_c g_c))|² per image (``amplitude``: without the square).

    Args:
        gradients: ``[B, C, S, S]`` (summed over C) or ``[B, S, S]``.
        amplitude: return |·| instead of |·|².

    Returns:
        ``[B, S, S]`` float64 DC-centred power (or amplitude) spectra.
    """
    g = gradients.sum(1) if gradients.ndim == 4 else gradients
    spec = torch.fft.fftshift(torch.fft.fft2(g.to(torch.float64)), dim=(-2, -1))
    mag = spec.abs()
    return mag if amplitude else mag.square()


def normalise_profiles(profiles: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each row to [0, 1]: (p − min p)/(max p − min p).

    A constant row (zero gradient, e.g. a saturated prediction) becomes all zeros rather than
    NaN, and still counts as an image.
    """
    lo = profiles.amin(1, keepdim=True)
    span = profiles.amax(1, keepdim=True) - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (profiles - lo) / safe, torch.zeros_like(profiles))


def input_gradients(
    model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """∂CE(model(x_b), y_b)/∂x_b for every image b of the batch.

    The loss is summed over the batch (not averaged), so each image's gradient is that of its
    own cross-entropy and does not depend on the batch size (the model must be in eval mode so
    that images do not interact through batch statistics). Gradients are taken with
    :func:`torch.autograd.grad` with respect to the input only: the parameters' ``.grad`` and
    ``requires_grad`` are left as they are.

    Args:
        model: classifier returning ``[B, C]`` logits.
        inputs: ``[B, 3, S, S]`` preprocessed float input.
        labels: ``[B]`` int64 class indices.

    Returns:
        ``[B, 3, S, S]`` gradients (same dtype and device as ``inputs``).
    """
    with torch.enable_grad():
        x = inputs.detach().clone().requires_grad_(True)
        logits = model(x)
        if logits.ndim != 2:
            raise UserInputError(
                f"the model must return [batch, classes] logits; got shape {tuple(logits.shape)}"
            )
        loss = F.cross_entropy(logits.float(), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad.detach()


def priority_profiles(
    model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, amplitude: bool = False
) -> torch.Tensor:
    """Normalised radial gradient spectra, one row per image: ``[B, ⌊S/√2⌋]`` float64."""
    grads = input_gradients(model, inputs, labels)
    return normalise_profiles(radial_profile(gradient_spectrum(grads, amplitude=amplitude)))


def artifact_profiles(
    clean: torch.Tensor, shifted: torch.Tensor, *, amplitude: bool = False
) -> torch.Tensor:
    """Normalised radial spectra of ``shifted − clean`` (both ``[B, 3, S, S]`` model inputs)."""
    diff = shifted.to(torch.float64) - clean.to(torch.float64)
    return normalise_profiles(radial_profile(gradient_spectrum(diff, amplitude=amplitude)))


def frequencies(size: int) -> np.ndarray:
    """f_k = k/S cycles/pixel for the rings k = 1…⌊S/√2⌋."""
    return np.arange(1, math.floor(size / math.sqrt(2)) + 1, dtype=np.float64) / size


@dataclass
class ProfileStats:
    """Running mean and SD (ddof = 0) of profiles, fed batch by batch (float64 sums)."""

    n: int = 0
    total: torch.Tensor | None = None
    total_sq: torch.Tensor | None = None

    def add(self, profiles: torch.Tensor) -> None:
        p = profiles.detach().to("cpu", torch.float64)
        if self.total is None:
            self.total = torch.zeros(p.shape[1], dtype=torch.float64)
            self.total_sq = torch.zeros(p.shape[1], dtype=torch.float64)
        self.total += p.sum(0)
        self.total_sq += p.square().sum(0)
        self.n += p.shape[0]

    def mean(self) -> np.ndarray:
        return (self.total / self.n).numpy()

    def sd(self) -> np.ndarray:
        m = self.total / self.n
        return (self.total_sq / self.n - m.square()).clamp_min(0).sqrt().numpy()


# ---------------------------------------------------------------------------------------------
# streaming over a data set
# ---------------------------------------------------------------------------------------------


def parse_artifact(text: str, params: Mapping[str, Any] | None = None) -> tuple[Any, float]:
    """``"ring:8"`` (+ ``{"frequency": 0.1}``) → (the ``ring`` shift instance, 8.0).

    Validated as in ``make-spurious-set`` (:func:`shiftbench.spurious_set.make_artifact`): a
    known shift and parameters, a magnitude in range that is not the identity.
    """
    from shiftbench.spurious_set import make_artifact

    art = make_artifact(text, params)
    return art.shift, art.magnitude


def _label_map(dataset: Any, ckpt: Any) -> np.ndarray:
    """Data-set label → model class index (by name when both sides have names)."""
    data_names = list(dataset.class_names)
    names = ckpt.class_names
    if dataset.labels_are_names and names:
        lookup = {n: i for i, n in enumerate(names)}
        unknown = [n for n in data_names if n not in lookup]
        if unknown:
            raise DataError(
                f"data class(es) {', '.join(unknown)} are not among the classes of {ckpt.name} "
                f"({', '.join(names)}); rename the folders/labels to match"
            )
        return np.array([lookup[n] for n in data_names], dtype=np.int64)
    n_cls = ckpt.num_classes
    mapping = np.arange(max(len(data_names), int(dataset.labels.max()) + 1), dtype=np.int64)
    if n_cls is not None and int(dataset.labels.max()) >= n_cls:
        raise DataError(
            f"the data has labels up to {int(dataset.labels.max())} but {ckpt.name} has "
            f"{n_cls} classes (0..{n_cls - 1})"
        )
    return mapping


def _batches(dataset: Any, batch_size: int) -> Iterable[Any]:
    from shiftbench.data import make_loader

    return make_loader(dataset, batch_size, workers=0)


def spectrum_of(
    ckpt: Any,
    dataset: Any,
    *,
    device: torch.device,
    batch_size: int = 32,
    amplitude: bool = False,
    artifact: tuple[Any, float] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Learning priority of one loaded checkpoint on a data set (and the artifact's spectrum).

    Returns:
        ``{"frequency", "priority", "priority_sd", "n_images", "artifact_power"?}`` (numpy).
    """
    model = ckpt.model
    was_training = model.training
    model.eval()
    prep = ckpt.preprocess()
    mapping = torch.from_numpy(_label_map(dataset, ckpt))
    stats, art = ProfileStats(), ProfileStats()
    size = None
    try:
        for batch in _batches(dataset, batch_size):
            images = batch.images.to(device)
            x = prep(images)
            if x.shape[-1] != x.shape[-2]:
                raise DataError(
                    f"the spectrum needs square model inputs; {ckpt.name} gets "
                    f"{x.shape[-2]}×{x.shape[-1]} (use a checkpoint with an input_size or "
                    "square images)"
                )
            size = int(x.shape[-1])
            y = mapping[batch.labels].to(device)
            stats.add(priority_profiles(model, x, y, amplitude=amplitude))
            if artifact is not None:
                shift, mag = artifact
                shifted = shift(images, mag, seed=seed, sample_ids=batch.sample_ids)
                art.add(artifact_profiles(x, prep(shifted), amplitude=amplitude))
    finally:
        model.train(was_training)
    if size is None or stats.n == 0:
        raise DataError("no image could be read for the spectrum")
    out = {
        "frequency": frequencies(size),
        "priority": stats.mean(),
        "priority_sd": stats.sd(),
        "n_images": stats.n,
    }
    if artifact is not None:
        out["artifact_power"] = art.mean()
    return out


@dataclass
class SpectrumResult:
    """What :func:`spectrum` computed and wrote.

    Attributes:
        table: one row per checkpoint × frequency (``spectrum.csv``).
        figure: the per-method curve data (``spectrum.csv`` of the figure), or ``None``.
        heatmap: the heat-map matrix in long form, or ``None``.
        paths: files written (empty when ``out`` is ``None``).
    """

    table: pd.DataFrame
    figure: pd.DataFrame | None = None
    heatmap: pd.DataFrame | None = None
    paths: dict[str, Path] = field(default_factory=dict)


def spectrum(
    checkpoints: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    data: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    amplitude: bool = False,
    artifact: str | tuple[Any, float] | None = None,
    artifact_params: Mapping[str, Any] | None = None,
    heatmap_by: str | None = None,
    hue: str = "method",
    device: str | torch.device = "auto",
    batch_size: int = 32,
    seed: int = 0,
    arch: str | None = None,
    num_classes: int | None = None,
    trust_checkpoint: bool = False,
) -> SpectrumResult:
    """Learning priority of one or more checkpoints (mirrors ``shiftbench spectrum``).

    Args:
        checkpoints: checkpoint file(s), any format :func:`shiftbench.load_checkpoint` reads.
        data: data set (folder, CSV manifest or ``.npz``) with labels.
        out: output folder; ``None`` computes without writing.
        limit: use the first ``limit`` images.
        amplitude: |FFT| instead of |FFT|² (FreqBias's choice).
        artifact: ``"SHIFT:MAG"`` or ``(shift, magnitude)``: also the normalised radial power of
            (shifted − clean) model inputs, drawn over the priority curves.
        artifact_params: parameters of the artifact's shift (e.g. ``{"frequency": 0.1}``).
        heatmap_by: a meta column (e.g. ``epoch``, ``degradation``): also a heat map with one row
            per value of that column (mean over the checkpoints sharing it), one column per
            frequency; one panel per ``hue`` value.
        hue: meta column whose values get one curve each (mean ± SD over checkpoints, e.g.
            seeds); checkpoints without it are drawn one curve each.
        device: ``auto``, ``cpu``, ``cuda[:i]`` or ``mps``.
        batch_size: images per gradient batch (the result does not depend on it).
        seed: base seed of a stochastic artifact (per-sample generators, as in runs).
        arch, num_classes, trust_checkpoint: passed to :func:`shiftbench.load_checkpoint`.

    Returns:
        :class:`SpectrumResult`.
    """
    from shiftbench.checkpoint import load_checkpoint
    from shiftbench.data import open_dataset
    from shiftbench.devices import resolve_device

    paths = [checkpoints] if isinstance(checkpoints, (str, os.PathLike)) else list(checkpoints)
    if not paths:
        raise UserInputError("no checkpoint given; pass --ckpt FILE")
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise UserInputError(f"--batch-size must be a positive integer; got {batch_size!r}")
    if artifact_params and not isinstance(artifact, str):
        raise UserInputError("artifact_params need artifact given as 'SHIFT:MAG'")
    art = parse_artifact(artifact, artifact_params) if isinstance(artifact, str) else artifact
    dev = resolve_device(device)
    dataset = open_dataset(data, limit=limit)
    frames = []
    names: list[str] = []
    # Building a timm model and starting a DataLoader draw from torch's global RNG; fork it so
    # the caller's random stream is unchanged.
    with torch.random.fork_rng(devices=[]):
        for p in paths:
            ck = load_checkpoint(
                p, arch=arch, num_classes=num_classes, trust_checkpoint=trust_checkpoint,
                device=dev,
            )  # fmt: skip
            name = ck.name if ck.name not in names else str(Path(p))
            names.append(name)
            res = spectrum_of(
                ck, dataset, device=dev, batch_size=int(batch_size), amplitude=amplitude,
                artifact=art, seed=seed,
            )  # fmt: skip
            frames.append(_rows(name, ck.meta, res))
            del ck
    table = pd.concat(frames, ignore_index=True)
    if heatmap_by is not None and heatmap_by not in table.columns:
        raise UserInputError(
            f"--heatmap-by {heatmap_by!r} is not a meta key of these checkpoints; "
            f"available: {', '.join(c for c in table.columns if c not in _VALUE_COLUMNS)}"
        )
    from shiftbench import spectrum_figures as figs

    curves = figs.curve_table(table, hue)
    heat = figs.heatmap_table(table, heatmap_by, hue) if heatmap_by else None
    result = SpectrumResult(table, curves, heat)
    if out is not None:
        result.paths = _write(Path(out), result, heatmap_by, hue, amplitude)
    return result


_VALUE_COLUMNS = (
    "checkpoint",
    "frequency",
    "priority",
    "priority_sd",
    "n_images",
    "artifact_power",
)


def _rows(name: str, meta: dict[str, Any], res: dict[str, Any]) -> pd.DataFrame:
    n = len(res["frequency"])
    cols: dict[str, Any] = {"checkpoint": [name] * n}
    for k, v in meta.items():
        if k not in _VALUE_COLUMNS:
            cols[k] = [v] * n
    cols["frequency"] = res["frequency"]
    cols["priority"] = res["priority"]
    cols["priority_sd"] = res["priority_sd"]
    cols["n_images"] = [res["n_images"]] * n
    if "artifact_power" in res:
        cols["artifact_power"] = res["artifact_power"]
    return pd.DataFrame(cols)


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_savefig(fig: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        metadata = {"CreationDate": None} if path.suffix == ".pdf" else {"Software": None}
        fig.savefig(tmp, dpi=150, bbox_inches="tight", metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, float_format="%.6g", lineterminator="\n")


def _write(
    out: Path, result: SpectrumResult, heatmap_by: str | None, hue: str, amplitude: bool
) -> dict[str, Path]:
    from shiftbench import spectrum_figures as figs

    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out} is a file; choose a folder")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"table": out / "spectrum.csv"}
    _atomic_write_text(paths["table"], _csv(result.table))
    fig = figs.draw_curves(result.figure, hue, amplitude)
    paths["figure_csv"] = out / "spectrum_figure.csv"
    _atomic_write_text(paths["figure_csv"], _csv(result.figure))
    for ext in ("png", "pdf"):
        paths[f"figure_{ext}"] = out / f"spectrum.{ext}"
        _atomic_savefig(fig, paths[f"figure_{ext}"])
    if result.heatmap is not None and heatmap_by is not None:
        fig = figs.draw_heatmap(result.heatmap, heatmap_by, hue, amplitude)
        stem = f"heatmap_{heatmap_by}"
        paths["heatmap_csv"] = out / f"{stem}.csv"
        _atomic_write_text(paths["heatmap_csv"], _csv(result.heatmap))
        for ext in ("png", "pdf"):
            paths[f"heatmap_{ext}"] = out / f"{stem}.{ext}"
            _atomic_savefig(fig, paths[f"heatmap_{ext}"])
    return paths


class _CallableModule(types.ModuleType):
    """``shiftbench.spectrum`` is both this module and the function :func:`spectrum`.

    Importing a submodule sets the package attribute of the same name to the module, which
    would hide the lazily exported function; making the module callable keeps
    ``shiftbench.spectrum(...)`` working either way.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> SpectrumResult:
        return spectrum(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
