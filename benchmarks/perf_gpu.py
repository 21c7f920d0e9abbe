"""GPU benchmark: shift sweeps in img·magnitudes/s, and the run's overhead over forward-only.

Part 1 — shifts. For every registered shift, ``shift.sweep(batch, magnitudes)`` over its default
sweep (identity excluded) on a batch of ``--batch-size`` real clean 224² oral tiles already on
the GPU; ``img_mag_per_s = batch × n_magnitudes / seconds`` (best of ``--repeats``, after a
warm-up, timed with ``torch.cuda.synchronize``). Goal: stain sweeps ≥ 20,000 img·mag/s.

Part 2 — overhead. ``shiftbench.run`` of a timm ``resnet50`` (``pretrained=False``, 2 classes) on
``--n-images`` tiles (CSV manifest, batch ``--batch-size``) under blur, sharpen, haematoxylin and
eosin with their default sweeps, without and with ``--amp`` (bf16, fp16). The reference is a
forward-only loop over the same tiles (decoded, on the GPU, same preprocessing and autocast)::

    ratio = T(sweep phase of the run) / (n_evaluations × T(forward loop))

with ``n_evaluations`` = 1 (clean) + the non-identity magnitudes. Goal: ratio ≤ 1.10.

Writes ``--out`` (default ``results/perf_gpu.csv``) with the GPU's name. On a machine without
CUDA it exits with a one-line message (exit code 2). ``--device cpu`` runs the same code on the
CPU for a smoke test of the script (its numbers say nothing about GPUs; do not store them).

    python benchmarks/perf_gpu.py --n-images 2048 --batch-size 256 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ORAL = REPO.parent / "shared" / "data" / "oral_oscc_224"
RUN_SHIFTS = ["blur", "sharpen", "haematoxylin", "eosin"]
AMP = {"off": None, "bf16": "bf16", "fp16": "fp16"}


def clean_rows() -> list[dict[str, str]]:
    with open(ORAL / "labels.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if not r["quality_flag"]]


def tiles(n: int):
    """``n`` real 224² tiles as uint8 [n, 3, 224, 224] (the clean rows, repeated if needed)."""
    import cv2
    import numpy as np
    import torch

    rows = clean_rows()
    rows = (rows * (n // len(rows) + 1))[:n]
    rgb = [cv2.cvtColor(cv2.imread(str(ORAL / r["path"])), cv2.COLOR_BGR2RGB) for r in rows]
    return torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).contiguous(), rows


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_of(fn, repeats: int, device) -> float:
    fn()  # warm-up (kernels, cuFFT plans, caches)
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def shift_speeds(args, device, gpu_name: str) -> list[dict[str, object]]:
    import shiftbench

    batch = tiles(args.batch_size)[0].to(device)
    ids = list(range(len(batch)))
    rows = []
    for name in shiftbench.list_shifts():
        shift = shiftbench.get_shift(name)
        mags = [m for m in shift.magnitudes if m != shift.identity]

        def one_sweep(shift=shift, mags=mags) -> None:
            for _mag, _shifted in shift.sweep(batch, mags, seed=0, sample_ids=ids):
                pass

        seconds = best_of(one_sweep, args.repeats, device)
        rows.append(
            {
                "part": "shift_sweep",
                "shift": name,
                "n_magnitudes": len(mags),
                "batch_size": len(batch),
                "seconds": round(seconds, 4),
                "img_mag_per_s": round(len(batch) * len(mags) / seconds, 1),
            }
        )
        print(f"{name}: {rows[-1]['img_mag_per_s']:,} img·mag/s", flush=True)
    return rows


def forward_loop(model, prep, images, batch_size: int, device, amp) -> float:
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    with torch.inference_mode():
        synchronize(device)
        t0 = time.perf_counter()
        for s in range(0, len(images), batch_size):
            x = prep(images[s : s + batch_size])
            ctx = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
            with ctx:
                model(x)
        synchronize(device)
    return time.perf_counter() - t0


def overhead(args, device, tmp: Path) -> list[dict[str, object]]:
    import timm
    import torch

    import shiftbench

    images, rows = tiles(args.n_images)
    csv_path = tmp / "tiles.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for r in rows:
            w.writerow([str(ORAL / r["path"]), r["label"]])
    torch.manual_seed(0)
    model = timm.create_model(args.arch, pretrained=False, num_classes=2).eval()
    ckpt = shiftbench.save_checkpoint(
        tmp / "model.pt", model, arch=args.arch, num_classes=2, input_size=224,
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
    )  # fmt: skip
    loaded = shiftbench.load_checkpoint(ckpt, device=device)
    prep = loaded.preprocess(channels_last=device.type == "cpu")
    gpu_images = images.to(device)
    n_evals = 1 + sum(
        len([m for m in g.magnitudes if m != g.identity])
        for g in (shiftbench.get_shift(s) for s in RUN_SHIFTS)
    )
    out = []
    for amp_name, amp in AMP.items():
        if amp_name not in args.amp:
            continue
        forward_loop(
            loaded.model, prep, gpu_images[: args.batch_size], args.batch_size, device, amp
        )
        t_before = forward_loop(loaded.model, prep, gpu_images, args.batch_size, device, amp)
        result = shiftbench.run(
            ckpt, csv_path, RUN_SHIFTS, out=tmp / f"run_{amp_name}", device=str(device),
            batch_size=args.batch_size, n_boot=0, amp=amp, workers=args.workers,
        )  # fmt: skip
        t_after = forward_loop(loaded.model, prep, gpu_images, args.batch_size, device, amp)
        t_fwd = min(t_before, t_after)
        timings = result.manifest["invocations"][-1]["timings_s"]
        out.append(
            {
                "part": "run_overhead",
                "arch": args.arch,
                "amp": amp_name,
                "n_images": len(images),
                "batch_size": args.batch_size,
                "n_evaluations": n_evals,
                "forward_img_per_s": round(len(images) / t_fwd, 1),
                "sweep_s": timings["sweep"],
                "run_total_s": timings["total"],
                "ratio_sweep": round(timings["sweep"] / (n_evals * t_fwd), 3),
                "ratio_run": round(timings["total"] / (n_evals * t_fwd), 3),
            }
        )
        print(f"{args.arch} amp={amp_name}: overhead ×{out[-1]['ratio_sweep']}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-images", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--amp", nargs="+", default=list(AMP), choices=list(AMP))
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (smoke test)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "perf_gpu.csv")
    args = parser.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "perf_gpu: no CUDA GPU found (torch.cuda.is_available() is False); "
            "run it on a machine with an NVIDIA GPU",
            file=sys.stderr,
        )
        sys.exit(2)
    if not ORAL.exists():
        sys.exit(f"perf_gpu: real tiles not found at {ORAL}")
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    rows = shift_speeds(args, device, name)
    with tempfile.TemporaryDirectory() as tmp:
        rows += overhead(args, device, Path(tmp))
    for row in rows:
        row.update(
            device=name or device.type, torch=torch.__version__, cuda=torch.version.cuda,
            load_1min=round(os.getloadavg()[0], 1),
        )  # fmt: skip
    columns = list(dict.fromkeys(k for r in rows for k in r))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    print(f"-> {args.out} ({name})")


if __name__ == "__main__":
    main()
