"""Pick the torch device a run uses (``--device auto|cpu|cuda|cuda:1|mps``)."""

from __future__ import annotations

import os
import platform

import torch

from shiftbench.errors import UserInputError

__all__ = ["describe_device", "resolve_device"]


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn a device spec into a :class:`torch.device` that exists on this machine.

    ``"auto"`` picks the first available of CUDA, Apple MPS, CPU. An explicit device that is not
    available is an error rather than a silent fall back to the CPU.

    Raises:
        UserInputError: the spec is not a device name, or names a device this machine lacks.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = str(spec).strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UserInputError(
            f"unknown device {spec!r}; use auto, cpu, cuda, cuda:<index> or mps"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserInputError(
                f"device {spec!r} asked for, but CUDA is not available here; use --device cpu"
            )
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise UserInputError(
                f"device {spec!r} asked for, but only {torch.cuda.device_count()} CUDA "
                "device(s) exist"
            )
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UserInputError(f"device {spec!r} asked for, but MPS is not available here")
    elif device.type != "cpu":
        raise UserInputError(f"unsupported device {spec!r}; use auto, cpu, cuda[:i] or mps")
    return device


def describe_device(device: torch.device) -> dict[str, object]:
    """What the manifest records about the device (name, threads)."""
    info: dict[str, object] = {"device": str(device), "type": device.type}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        info["name"] = torch.cuda.get_device_name(index)
    else:
        info["name"] = platform.processor() or platform.machine()
    info["torch_threads"] = torch.get_num_threads()
    info["cpu_count"] = os.cpu_count()
    return info
