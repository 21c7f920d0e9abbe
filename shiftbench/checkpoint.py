"""Save and load classifier checkpoints: one loader, explicit formats, no silent fallback.

The canonical format (written by :func:`save_checkpoint`) is a ``torch.save``'d dict::

    {"format": "shiftbench/1", "arch": <timm model name>, "num_classes": int,
     "state_dict": {...}, "input_size": int, "mean": [3 floats], "std": [3 floats],
     "meta": {...}, "class_names": [...],   # class_names optional
     "head": "binary-logit"}                # optional; default "softmax"

``head == "binary-logit"`` (2 classes, one logit z: ``shiftbench train --head binary-logit``):
the timm model has one output and is loaded inside :class:`BinaryLogitHead`, which returns the
two-class logits (0, z), so softmax gives (1 − σ(z), σ(z)) and every evaluator sees an ordinary
2-class classifier. ``meta["head"]`` records it for the tables.

It is read with ``torch.load(..., weights_only=True)`` (no code runs) and the model is built with
``timm.create_model(arch, pretrained=False, num_classes=...)``.

:func:`load_checkpoint` also reads, each detected explicitly (anything else is an error that says
what was found):

* a TorchScript archive (zip holding ``code/`` and ``constants.pkl``); an optional extra file
  ``shiftbench.json`` may carry ``input_size``/``mean``/``std``/``meta``/``class_names``;
* a bare ``state_dict`` (``.pt``/``.pth`` dict of tensors) or a ``.safetensors`` file, with
  ``arch=`` (``--arch``); ``num_classes`` is inferred from the classifier weight when not given;
* a whole pickled ``nn.Module``, only with ``trust_checkpoint=True``: unpickling it runs
  arbitrary code.

Fields a format does not carry fall back to documented defaults, listed in
``LoadedCheckpoint.defaults_used``: ImageNet mean/std, and the data's own image size.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import pickle
import struct
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shiftbench.errors import CheckpointError
from shiftbench.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from shiftbench.run.rundir import RESERVED, atomic_write, check_reserved

__all__ = [
    "FORMAT",
    "HEADS",
    "RESERVED_COLUMNS",
    "BinaryLogitHead",
    "LoadedCheckpoint",
    "detect_format",
    "load_checkpoint",
    "save_checkpoint",
    "sha256_file",
]

FORMAT = "shiftbench/1"
#: Names ``meta`` keys may not take (run-directory, metric and report columns; also any
#: ``prob_*``): see :data:`shiftbench.run.rundir.RESERVED`.
RESERVED_COLUMNS = RESERVED
_SCALAR = (str, int, float, bool, type(None))
_TS_EXTRA = "shiftbench.json"
#: Output heads of canonical checkpoints: C logits, or one logit for 2 classes.
HEADS = ("softmax", "binary-logit")


class BinaryLogitHead(nn.Module):
    """Two-class logits (0, z) from a model with one output z.

    softmax((0, z)) = (1 − σ(z), σ(z)): the probability of class 1 is the sigmoid of the single
    logit, and argmax is the 0.5 cut-off. :func:`save_checkpoint` stores the wrapped model's
    weights (without the ``model.`` prefix).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)
        if z.ndim != 2 or z.shape[1] != 1:
            raise CheckpointError(
                f"a binary-logit model must output [batch, 1]; got {tuple(z.shape)}"
            )
        return torch.cat([torch.zeros_like(z), z], 1)


def _head_outputs(head: str, num_classes: int, where: str) -> int:
    """Outputs of the timm model behind ``head`` (1 for a binary logit)."""
    if head not in HEADS:
        raise CheckpointError(f"{where}: head must be one of {', '.join(HEADS)}; got {head!r}")
    if head == "binary-logit":
        if num_classes != 2:
            raise CheckpointError(
                f"{where}: a binary-logit head needs 2 classes; got num_classes={num_classes}"
            )
        return 1
    return num_classes


@dataclass
class LoadedCheckpoint:
    """A checkpoint ready to evaluate.

    Attributes:
        model: the classifier, in eval mode, on the requested device.
        arch: timm model name (``None`` for TorchScript / pickled modules unless given).
        num_classes: number of output classes (``None`` if the format does not say; the runner
            then checks the first forward pass).
        input_size: side of the square model input in pixels (``None``: the data's size).
        mean, std: per-channel normalisation of ``[0, 1]`` RGB input.
        meta: free labels (e.g. ``{"method": "sd", "seed": 0}``), carried as table columns.
        class_names: class names in index order, if the checkpoint has them.
        format: ``"shiftbench/1"``, ``"state_dict"``, ``"safetensors"``, ``"torchscript"`` or
            ``"pickled-module"``.
        sha256: hex digest of the file.
        path: the file.
        name: display name (file stem; the runner makes names unique within a run).
        defaults_used: fields that fell back to defaults (``input_size``, ``mean``, ``std``).
        notes: what the loader inferred or changed, e.g. ``num_classes`` from a weight shape.
    """

    model: nn.Module
    arch: str | None
    num_classes: int | None
    input_size: int | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    meta: dict[str, Any]
    class_names: list[str] | None
    format: str
    sha256: str
    path: Path
    name: str
    defaults_used: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def preprocess(self, *, channels_last: bool = False) -> Preprocess:
        """The :class:`~shiftbench.preprocess.Preprocess` this checkpoint expects."""
        return Preprocess(self.input_size, self.mean, self.std, channels_last)

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for the run manifest."""
        return {
            "name": self.name,
            "path": str(self.path),
            "sha256": self.sha256,
            "format": self.format,
            "arch": self.arch,
            "num_classes": self.num_classes,
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "meta": dict(self.meta),
            "class_names": self.class_names,
            "defaults_used": list(self.defaults_used),
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------------------------
# saving
# ---------------------------------------------------------------------------------------------


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    arch: str,
    num_classes: int,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    meta: Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    head: str = "softmax",
) -> Path:
    """Write ``model`` in the canonical ``shiftbench/1`` format (atomically).

    Args:
        path: destination file (parent folders are created).
        model: a timm model built as ``timm.create_model(arch, num_classes=num_classes)``
            (a ``torch.compile``'d wrapper is unwrapped).
        arch: timm model name; the weights are checked against it before writing.
        num_classes: number of output classes.
        input_size: side of the square input the model was trained on, in pixels.
        mean, std: per-channel normalisation of ``[0, 1]`` RGB input (3 floats each).
        meta: free labels carried into every table row, e.g.
            ``{"method": "sd", "seed": 0, "sd_lambda": 0.01}``. Values must be str, int, float,
            bool or None; keys may not reuse table column names.
        class_names: optional names in class-index order (``len == num_classes``).
        head: ``"softmax"`` (``num_classes`` logits) or ``"binary-logit"`` (2 classes, a model
            with one output, optionally wrapped in :class:`BinaryLogitHead`); recorded as
            ``head`` and ``meta["head"]``.

    Returns:
        The path written.

    Raises:
        CheckpointError: invalid fields, or weights that do not fit ``arch``/``num_classes``.
    """
    path = Path(path)
    inner = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    if isinstance(inner, BinaryLogitHead):
        inner = inner.model
    if not isinstance(inner, nn.Module):
        raise CheckpointError(f"model must be a torch nn.Module; got {type(model).__name__}")
    if not isinstance(arch, str) or not arch:
        raise CheckpointError(f"arch must be a timm model name; got {arch!r}")
    num_classes = _positive_int(num_classes, "num_classes")
    input_size = _positive_int(input_size, "input_size")
    mean_t = _rgb(mean, "mean")
    std_t = _rgb(std, "std", positive=True)
    meta_d = _check_meta(meta or {}, where="meta")
    outputs = _head_outputs(head, num_classes, str(path))
    if head != "softmax":
        if meta_d.get("head", head) != head:
            raise CheckpointError(f"meta['head'] is {meta_d['head']!r} but head is {head!r}")
        meta_d["head"] = head
    names = _check_class_names(class_names, num_classes)
    state = {k: v.detach().to("cpu") for k, v in inner.state_dict().items()}
    _check_state_dict_fits(state, arch, outputs, source=str(path))
    payload = {
        "format": FORMAT,
        "arch": arch,
        "num_classes": num_classes,
        "state_dict": state,
        "input_size": input_size,
        "mean": list(mean_t),
        "std": list(std_t),
        "meta": meta_d,
    }
    if names is not None:
        payload["class_names"] = names
    if head != "softmax":
        payload["head"] = head
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: _save(payload, tmp))
    return path


def _save(payload: dict[str, Any], path: Path) -> None:
    # Through a file object: torch.save names the zip's folder after a path's stem, which for
    # the temp file would make the bytes (and the SHA-256 that identifies cells) random.
    with open(path, "wb") as f:
        torch.save(payload, f)


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------


def detect_format(path: str | os.PathLike[str]) -> str:
    """Container format of a checkpoint file, from its bytes (not its name).

    Returns:
        ``"torchscript"``, ``"torch-zip"`` (``torch.save``), ``"torch-legacy"`` (old
        ``torch.save`` pickle stream) or ``"safetensors"``.

    Raises:
        CheckpointError: the file is missing or none of these.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; pass the checkpoint file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        raise CheckpointError(f"checkpoint {path} is empty or truncated ({size} bytes)")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile as e:
            raise CheckpointError(f"checkpoint {path} is a damaged zip file ({e})") from None
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            return "torch-zip"
        raise CheckpointError(
            f"checkpoint {path} is a zip file but neither a torch.save archive nor TorchScript "
            f"(entries: {', '.join(names[:3])}...)"
        )
    (header_len,) = struct.unpack("<Q", head[:8])
    if 2 <= header_len <= size - 8 and head[8:9] == b"{":
        with open(path, "rb") as f:
            f.seek(8)
            try:
                json.loads(f.read(header_len))
                return "safetensors"
            except ValueError:
                pass
    if head[:1] == b"\x80":  # pickle protocol >= 2: the legacy torch.save stream
        return "torch-legacy"
    raise CheckpointError(
        f"cannot tell the format of checkpoint {path}: not a torch.save file, a TorchScript "
        "archive or a .safetensors file"
    )


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    trust_checkpoint: bool = False,
    device: str | torch.device = "cpu",
) -> LoadedCheckpoint:
    """Load a classifier from any supported checkpoint format (see the module docstring).

    Args:
        path: checkpoint file.
        arch: timm model name; required for a bare state_dict / ``.safetensors`` file. For a
            canonical checkpoint it must agree with the stored one.
        num_classes: number of classes; inferred from the classifier weight when not given.
        trust_checkpoint: allow unpickling a whole ``nn.Module`` (runs arbitrary code).
        device: where to put the model.

    Returns:
        A :class:`LoadedCheckpoint` with the model in eval mode.

    Raises:
        CheckpointError: unknown format, missing ``arch``, weights that do not match the
            architecture (the message names missing/unexpected keys), an untrusted pickle.
    """
    path = Path(path)
    kind = detect_format(path)
    digest = sha256_file(path)
    if num_classes is not None:
        num_classes = _positive_int(num_classes, "num_classes")
    common = {"sha256": digest, "path": path, "name": path.stem}

    if kind == "torchscript":
        return _load_torchscript(path, arch, num_classes, device, common)
    if kind == "safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except Exception as e:
            raise CheckpointError(
                f"cannot read safetensors file {path}: {_first_line(e)}"
            ) from None
        return _from_state_dict(state, "safetensors", path, arch, num_classes, device, common)

    obj = _torch_load(path, trust_checkpoint)
    if isinstance(obj, nn.Module):
        return _from_module(obj, arch, num_classes, device, common)
    if isinstance(obj, Mapping) and "format" in obj:
        return _from_canonical(obj, path, arch, num_classes, device, common)
    if isinstance(obj, Mapping) and obj and all(torch.is_tensor(v) for v in obj.values()):
        return _from_state_dict(dict(obj), "state_dict", path, arch, num_classes, device, common)
    what = (
        f"a dict with keys {', '.join(map(str, list(obj)[:6]))}"
        if isinstance(obj, Mapping)
        else f"a {type(obj).__name__}"
    )
    raise CheckpointError(
        f"checkpoint {path} holds {what}; expected a shiftbench checkpoint (save_checkpoint), a "
        "state_dict of tensors, TorchScript, .safetensors or (with --trust-checkpoint) an nn.Module"
    )


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file (streamed by :func:`hashlib.file_digest`)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# ---------------------------------------------------------------------------------------------
# format-specific loaders
# ---------------------------------------------------------------------------------------------


def _torch_load(path: Path, trust: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" not in str(e).lower():
            raise CheckpointError(
                f"cannot read checkpoint {path} (corrupt?): {_first_line(e)}"
            ) from None
        reason = e
    except Exception as e:  # corrupt archive, truncated file, ...
        raise CheckpointError(
            f"cannot read checkpoint {path} (corrupt?): {_first_line(e)}"
        ) from None
    if not trust:
        globals_ = _unsafe_globals(path, reason)
        raise CheckpointError(
            f"checkpoint {path} holds pickled Python objects ({globals_}), e.g. a whole "
            "nn.Module; loading it runs arbitrary code. Pass --trust-checkpoint "
            "(trust_checkpoint=True) only if you trust its source, or re-save it with "
            "shiftbench.save_checkpoint"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(
            f"cannot unpickle checkpoint {path} even with --trust-checkpoint: {_first_line(e)} "
            "(is the module that defines the model importable?)"
        ) from None


def _unsafe_globals(path: Path, error: Exception) -> str:
    """Names of the Python objects the pickle needs, the outermost (from torch's error) first."""
    msg = str(error)
    first = msg.split("GLOBAL ", 1)[1].split(" ", 1)[0] if "GLOBAL " in msg else None
    names: list[str] = []
    with contextlib.suppress(Exception):  # zip format only
        names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    if first:
        names = [first, *[n for n in names if n != first]]
    if not names:
        return "non-tensor objects"
    more = f" +{len(names) - 1} more" if len(names) > 1 else ""
    return names[0] + more


def _from_canonical(
    obj: Mapping[str, Any],
    path: Path,
    arch: str | None,
    num_classes: int | None,
    device: str | torch.device,
    common: dict[str, Any],
) -> LoadedCheckpoint:
    fmt = obj.get("format")
    if fmt != FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {fmt!r}; this shiftbench reads {FORMAT!r}"
        )
    missing = [k for k in ("arch", "num_classes", "state_dict") if k not in obj]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks required field(s): {', '.join(missing)}")
    stored_arch = obj["arch"]
    stored_nc = _positive_int(obj["num_classes"], f"{path}: num_classes")
    if arch is not None and arch != stored_arch:
        raise CheckpointError(
            f"checkpoint {path} is a {stored_arch}, but --arch {arch} was given; drop --arch"
        )
    if num_classes is not None and num_classes != stored_nc:
        raise CheckpointError(
            f"checkpoint {path} has {stored_nc} classes, but --num-classes {num_classes} was "
            "given; drop --num-classes"
        )
    defaults: list[str] = []
    input_size = obj.get("input_size")
    if input_size is None:
        defaults.append("input_size")
    else:
        input_size = _positive_int(input_size, f"{path}: input_size")
    mean = obj.get("mean")
    std = obj.get("std")
    if mean is None:
        defaults.append("mean")
    if std is None:
        defaults.append("std")
    mean_t = _rgb(mean if mean is not None else IMAGENET_MEAN, f"{path}: mean")
    std_t = _rgb(std if std is not None else IMAGENET_STD, f"{path}: std", positive=True)
    meta = _check_meta(obj.get("meta") or {}, where=f"{path}: meta")
    names = _check_class_names(obj.get("class_names"), stored_nc)
    head = obj.get("head", "softmax")
    model = _build_timm(stored_arch, _head_outputs(head, stored_nc, str(path)))
    _load_weights(model, dict(obj["state_dict"]), stored_arch, path)
    if head == "binary-logit":
        model = BinaryLogitHead(model)
    return LoadedCheckpoint(
        model=_ready(model, device),
        arch=stored_arch,
        num_classes=stored_nc,
        input_size=input_size,
        mean=mean_t,
        std=std_t,
        meta=meta,
        class_names=names,
        format=FORMAT,
        defaults_used=defaults,
        **common,
    )


def _from_state_dict(
    state: dict[str, torch.Tensor],
    fmt: str,
    path: Path,
    arch: str | None,
    num_classes: int | None,
    device: str | torch.device,
    common: dict[str, Any],
) -> LoadedCheckpoint:
    if arch is None:
        raise CheckpointError(
            f"checkpoint {path} is a bare state_dict ({len(state)} tensors) without its "
            "architecture; pass --arch <timm model name> (and --num-classes C)"
        )
    notes: list[str] = []
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
        notes.append("stripped the 'module.' prefix (DataParallel) from every key")
    if num_classes is None:
        num_classes, note = _infer_num_classes(state, arch, path)
        notes.append(note)
    model = _build_timm(arch, num_classes)
    _load_weights(model, state, arch, path)
    return _without_preprocessing(model, arch, num_classes, device, fmt, common, notes)


def _from_module(
    model: nn.Module,
    arch: str | None,
    num_classes: int | None,
    device: str | torch.device,
    common: dict[str, Any],
) -> LoadedCheckpoint:
    return _without_preprocessing(model, arch, num_classes, device, "pickled-module", common)


def _without_preprocessing(
    model: nn.Module,
    arch: str | None,
    num_classes: int | None,
    device: str | torch.device,
    fmt: str,
    common: dict[str, Any],
    notes: list[str] | None = None,
) -> LoadedCheckpoint:
    """A checkpoint format that stores weights only: preprocessing falls back to the defaults."""
    return LoadedCheckpoint(
        model=_ready(model, device),
        arch=arch,
        num_classes=num_classes,
        input_size=None,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        meta={},
        class_names=None,
        format=fmt,
        defaults_used=["input_size", "mean", "std"],
        **({"notes": notes} if notes is not None else {}),
        **common,
    )


def _load_torchscript(
    path: Path,
    arch: str | None,
    num_classes: int | None,
    device: str | torch.device,
    common: dict[str, Any],
) -> LoadedCheckpoint:
    extra = {_TS_EXTRA: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice
            model = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as e:
        raise CheckpointError(f"cannot load TorchScript archive {path}: {_first_line(e)}") from None
    info: dict[str, Any] = {}
    raw = extra.get(_TS_EXTRA) or b""
    if raw:
        try:
            info = json.loads(raw)
        except ValueError:
            raise CheckpointError(
                f"TorchScript archive {path}: extra file {_TS_EXTRA} is not valid JSON"
            ) from None
    defaults = [k for k in ("input_size", "mean", "std") if info.get(k) is None]
    stored_nc = info.get("num_classes")
    if stored_nc is not None:
        stored_nc = _positive_int(stored_nc, f"{path}: num_classes")
        if num_classes is not None and num_classes != stored_nc:
            raise CheckpointError(
                f"checkpoint {path} has {stored_nc} classes, but --num-classes {num_classes} "
                "was given"
            )
    nc = num_classes if num_classes is not None else stored_nc
    input_size = info.get("input_size")
    return LoadedCheckpoint(
        model=_ready(model, device),
        arch=arch or info.get("arch"),
        num_classes=nc,
        input_size=None if input_size is None else _positive_int(input_size, "input_size"),
        mean=_rgb(info.get("mean") or IMAGENET_MEAN, f"{path}: mean"),
        std=_rgb(info.get("std") or IMAGENET_STD, f"{path}: std", positive=True),
        meta=_check_meta(info.get("meta") or {}, where=f"{path}: meta"),
        class_names=_check_class_names(info.get("class_names"), nc)
        if info.get("class_names")
        else None,
        format="torchscript",
        defaults_used=defaults,
        **common,
    )


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _ready(model: nn.Module, device: str | torch.device) -> nn.Module:
    model = model.to(device)
    model.eval()
    return model


def _build_timm(arch: str, num_classes: int) -> nn.Module:
    import timm

    if not timm.is_model(arch):
        raise CheckpointError(
            f"unknown timm architecture {arch!r}; see timm.list_models() for valid names"
        )
    return timm.create_model(arch, pretrained=False, num_classes=num_classes)


def _classifier_key(arch: str) -> str:
    """State-dict key of the classifier weight of a timm ``arch`` (e.g. ``fc.weight``)."""
    import timm

    if not timm.is_model(arch):
        raise CheckpointError(
            f"unknown timm architecture {arch!r}; see timm.list_models() for valid names"
        )
    try:
        with torch.device("meta"):  # no memory, no init cost
            model = timm.create_model(arch, pretrained=False)
    except Exception:
        model = timm.create_model(arch, pretrained=False)
    clf = model.get_classifier()
    for name, module in model.named_modules():
        if module is clf and name:
            return f"{name}.weight"
    return f"{model.pretrained_cfg.get('classifier', 'fc')}.weight"


def _infer_num_classes(state: Mapping[str, torch.Tensor], arch: str, path: Path) -> tuple[int, str]:
    key = _classifier_key(arch)
    weight = state.get(key)
    if weight is None or weight.ndim < 1:
        raise CheckpointError(
            f"cannot infer the number of classes of {path}: no {key} in its state_dict; pass "
            "--num-classes C"
        )
    n = int(weight.shape[0])
    return n, f"num_classes={n} inferred from {key} of shape {list(weight.shape)}"


def _check_state_dict_fits(
    state: Mapping[str, torch.Tensor], arch: str, num_classes: int, source: str
) -> None:
    import timm

    if not timm.is_model(arch):
        raise CheckpointError(
            f"unknown timm architecture {arch!r}; see timm.list_models() for valid names"
        )
    try:
        with torch.device("meta"):
            ref = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    except Exception:
        ref = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    problem = _mismatch(ref.state_dict(), state)
    if problem:
        raise CheckpointError(
            f"{source}: weights do not fit {arch} ({num_classes} classes): {problem}"
        )


def _load_weights(model: nn.Module, state: dict[str, torch.Tensor], arch: str, path: Path) -> None:
    problem = _mismatch(model.state_dict(), state)
    if problem:
        raise CheckpointError(f"checkpoint {path} does not match arch {arch}: {problem}")
    model.load_state_dict(state, strict=True)


def _mismatch(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> str:
    """'' if ``given`` fits ``expected``; else one line naming missing/unexpected/misshapen keys."""

    def listing(keys: list[str]) -> str:
        more = f" (+{len(keys) - 4} more)" if len(keys) > 4 else ""
        return ", ".join(keys[:4]) + more

    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k} {list(given[k].shape)} vs model {list(expected[k].shape)}"
        for k in expected
        if k in given and tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"missing keys: {listing(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {listing(unexpected)}")
    if shapes:
        parts.append(f"shape mismatch: {listing(shapes)}")
    return "; ".join(parts)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise CheckpointError(f"{name} must be a positive integer; got {value!r}")
    if int(value) < 1:
        raise CheckpointError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def _rgb(values: Any, name: str, *, positive: bool = False) -> tuple[float, float, float]:
    try:
        vals = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise CheckpointError(f"{name} must be 3 numbers (RGB); got {values!r}") from None
    if len(vals) != 3 or not all(math.isfinite(v) for v in vals):
        raise CheckpointError(f"{name} must be 3 finite numbers (RGB); got {values!r}")
    if positive and any(v <= 0 for v in vals):
        raise CheckpointError(f"{name} values must be > 0; got {values!r}")
    return vals  # type: ignore[return-value]


def _check_meta(meta: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    if not isinstance(meta, Mapping):
        raise CheckpointError(f"{where} must be a dict; got {type(meta).__name__}")
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if not isinstance(key, str) or not key:
            raise CheckpointError(f"{where}: keys must be non-empty strings; got {key!r}")
        check_reserved([key], f"{where}: key", CheckpointError)
        if not isinstance(value, _SCALAR):
            raise CheckpointError(
                f"{where}[{key!r}] must be a str, int, float, bool or None (a table cell); got "
                f"{type(value).__name__}"
            )
        out[key] = value
    return out


def _check_class_names(names: Sequence[str] | None, num_classes: int | None) -> list[str] | None:
    if names is None:
        return None
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
        raise CheckpointError(f"class_names must be a list of non-empty strings; got {names!r}")
    names = list(names)
    if num_classes is not None and len(names) != num_classes:
        raise CheckpointError(
            f"class_names has {len(names)} entries but num_classes is {num_classes}"
        )
    if len(set(names)) != len(names):
        raise CheckpointError(f"class_names must be unique; got {names}")
    return names


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
