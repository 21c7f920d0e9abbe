"""Benchmark of ``shiftbench run``: sweep overhead vs a plain forward loop, and peak memory.

Part 1 — overhead. A timm resnet18 (random weights, 224², 2 classes) is evaluated on N real clean
oral tiles (CSV manifest) under blur, sharpen, haematoxylin and eosin with their default sweeps.
The reference is a plain forward-only loop over the same tiles (already decoded, same batch
size, same preprocessing and memory format) timed right before and right after the run::

    ratio = T(run) / (n_evaluations × T(forward loop))

with ``n_evaluations`` = 1 (clean, shared) + the non-identity magnitudes of all four shifts.
``T(run)`` is the whole ``shiftbench.runner.run`` call (decode, shifts, model, part files,
tables, bootstrap metrics); ``ratio_sweep`` uses only the sweep phase. Goal: ratio ≤ 1.10.
When other processes share the CPU, the forward loop timed before and after the run can differ a
lot; ``ratio_in_run`` = sweep time / model time *inside* the run (preprocessing + forward,
interleaved with the shifts) estimates the same overhead without that drift.

Part 2 — memory layout. Forward-only throughput of the same model in contiguous and
channels-last format (the runner's CPU default is channels-last).

Part 3 — memory. ``shiftbench run`` in a subprocess on 500 and on 5,000 tiles (the same 500 real
tiles listed 10×), with a small model (timm ``test_resnet`` at 64 px) and one shift; peak RSS of
the run process (``VmHWM``, its own high-water mark) and the private memory of the decoding
worker (its pages shared with the parent are not counted), with and without the bootstrap.

Writes ``results/perf_run.csv``; see ``results/README-perf_run.md`` for the command.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
ORAL = REPO.parent / "shared" / "data" / "oral_oscc_224"
SHIFTS = ["blur", "sharpen", "haematoxylin", "eosin"]


def clean_rows() -> list[dict[str, str]]:
    with open(ORAL / "labels.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if not r["quality_flag"]]


def write_manifest(path: Path, rows: list[dict[str, str]], repeat: int = 1) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "magnification"])
        for _ in range(repeat):
            for r in rows:
                w.writerow([str(ORAL / r["path"]), r["label"], r["magnification"]])
    return path


def forward_loop(model, prep, images: torch.Tensor, batch_size: int) -> float:
    """Seconds for one forward pass over ``images`` (uint8, already decoded)."""
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(images), batch_size):
            model(prep(images[s : s + batch_size]))
    return time.perf_counter() - t0


def overhead(args: argparse.Namespace, tmp: Path) -> list[dict[str, object]]:
    import timm

    from shiftbench import get_shift, open_dataset, save_checkpoint
    from shiftbench.checkpoint import load_checkpoint
    from shiftbench.runner import run

    rows = clean_rows()[: args.n_tiles]
    data = write_manifest(tmp / "tiles.csv", rows)
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=2)
    ckpt = save_checkpoint(
        tmp / "resnet18.pt",
        model,
        arch="resnet18",
        num_classes=2,
        input_size=224,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        meta={"method": "bench"},
    )
    n_evals = 1 + sum(
        sum(m != get_shift(s).identity for m in get_shift(s).magnitudes) for s in SHIFTS
    )
    ds = open_dataset(data)
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    results = []
    for channels_last in args.channels_last:
        loaded = load_checkpoint(ckpt)
        m = loaded.model
        if channels_last:
            m = m.to(memory_format=torch.channels_last)
        prep = loaded.preprocess(channels_last=channels_last)
        forward_loop(m, prep, images[: args.batch_size], args.batch_size)  # warm-up
        t_before = forward_loop(m, prep, images, args.batch_size)
        out = tmp / f"run_cl{int(channels_last)}"
        t0 = time.perf_counter()
        res = run(
            [ckpt],
            data,
            SHIFTS,
            out=out,
            batch_size=args.batch_size,
            workers=args.workers,
            n_boot=args.n_boot,
            seed=0,
            channels_last=channels_last,
            overwrite=True,
        )
        t_run = time.perf_counter() - t0
        t_after = forward_loop(m, prep, images, args.batch_size)
        t_fwd = (t_before + t_after) / 2
        timings = res.manifest["invocations"][-1]["timings_s"]
        row = {
            "part": "overhead",
            "model": "resnet18@224",
            "threads": torch.get_num_threads(),
            "channels_last": channels_last,
            "n_tiles": len(images),
            "batch_size": args.batch_size,
            "workers": args.workers,
            "n_boot": args.n_boot,
            "n_evaluations": n_evals,
            "forward_loop_s_before": round(t_before, 2),
            "forward_loop_s_after": round(t_after, 2),
            "forward_img_per_s": round(len(images) / t_fwd, 2),
            "run_s": round(t_run, 2),
            "sweep_s": timings["sweep"],
            "shift_s": timings["shift"],
            "model_s": timings["model"],
            "data_wait_s": timings["data_wait"],
            "write_s": timings["write"],
            "tables_metrics_s": round(timings["predictions"] + timings["metrics"], 2),
            "ratio": round(t_run / (n_evals * t_fwd), 4),
            "ratio_sweep": round(timings["sweep"] / (n_evals * t_fwd), 4),
            # measured inside the run, interleaved: insensitive to load that changes over time
            "ratio_in_run": round(timings["sweep"] / timings["model"], 4),
        }
        print(json.dumps(row), flush=True)
        results.append(row)
    return results


def layout(args: argparse.Namespace, tmp: Path) -> list[dict[str, object]]:
    """Forward-only throughput of resnet18 in contiguous vs channels-last memory format."""
    import timm

    from shiftbench import open_dataset
    from shiftbench.preprocess import Preprocess

    data = write_manifest(tmp / "layout.csv", clean_rows()[: args.layout_tiles])
    ds = open_dataset(data)
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=2).eval()
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.layout_reps):  # interleaved, so load from other processes hits both
        for channels_last in (False, True):
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            m = model.to(memory_format=fmt)
            prep = Preprocess(224, channels_last=channels_last)
            forward_loop(m, prep, images[: args.batch_size], args.batch_size)  # warm-up
            seconds[channels_last].append(forward_loop(m, prep, images, args.batch_size))
    rows = []
    for channels_last, times in seconds.items():
        row = {
            "part": "layout",
            "model": "resnet18@224",
            "threads": torch.get_num_threads(),
            "channels_last": channels_last,
            "n_tiles": len(images),
            "batch_size": args.batch_size,
            "forward_img_per_s": round(len(images) / min(times), 2),
            "forward_loop_s_all": " ".join(f"{t:.2f}" for t in times),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


RSS_CHILD = r"""
import glob, json, os, sys, threading, time
from shiftbench.cli import main

def kb(path, keys):
    try:
        with open(path) as f:
            return sum(int(l.split()[1]) for l in f if l.split(":")[0] in keys)
    except OSError:
        return 0

peak = {"workers_private_kb": 0}
def sample():  # decoding workers: private memory (their shared pages belong to the parent)
    while True:
        kids = [k for f in glob.glob(f"/proc/{os.getpid()}/task/*/children") for k in open(f).read().split()]
        private = [kb(f"/proc/{k}/smaps_rollup", ("Private_Clean", "Private_Dirty")) for k in kids]
        peak["workers_private_kb"] = max([peak["workers_private_kb"], *private])
        time.sleep(0.1)
threading.Thread(target=sample, daemon=True).start()
code = main(sys.argv[1:])
print(json.dumps({
    "code": code,
    "main_peak_rss_mb": kb("/proc/self/status", ("VmHWM",)) / 1024,  # per-exec high-water mark
    "worker_peak_private_mb": peak["workers_private_kb"] / 1024,
}))
"""


def memory(args: argparse.Namespace, tmp: Path) -> list[dict[str, object]]:
    from shiftbench import save_checkpoint

    sys.path.insert(0, str(REPO / "tests"))
    from _models import tiny_model

    rows = clean_rows()[:500]
    ckpt = save_checkpoint(
        tmp / "tiny.pt",
        tiny_model(2, 0),
        arch="test_resnet",
        num_classes=2,
        input_size=64,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
    results = []
    for n_boot in (0, 1000):
        for repeat in (1, 10):
            data = write_manifest(tmp / f"rss_{repeat}.csv", rows, repeat)
            out = tmp / f"rss_{repeat}_{n_boot}"
            cmd = [
                sys.executable,
                "-c",
                RSS_CHILD,
                "run",
                "--ckpt",
                str(ckpt),
                "--data",
                str(data),
                "--shift",
                "sharpen",
                "--magnitudes",
                "0,1",
                "--out",
                str(out),
                "--overwrite",
                "--workers",
                "1",
                "--batch-size",
                "64",
                "--n-boot",
                str(n_boot),
                "--no-progress",
            ]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - t0
            last = proc.stdout.strip().splitlines()[-1]
            info = json.loads(last)
            assert info["code"] == 0, proc.stderr
            row = {
                "part": "memory",
                "model": "test_resnet@64",
                "n_tiles": len(rows) * repeat,
                "batch_size": 64,
                "workers": 1,
                "n_boot": n_boot,
                "n_evaluations": 2,
                "run_s": round(wall, 2),
                "main_peak_rss_mb": round(info["main_peak_rss_mb"], 1),
                "worker_peak_private_mb": round(info["worker_peak_private_mb"], 1),
            }
            print(json.dumps(row), flush=True)
            results.append(row)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-tiles", type=int, default=512)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument(
        "--channels-last", type=int, nargs="+", default=[1], help="1, 0 or both (e.g. 1 0)"
    )
    parser.add_argument("--layout-tiles", type=int, default=256)
    parser.add_argument("--layout-reps", type=int, default=2)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-layout", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "perf_run.csv")
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the rows of --out except those of the parts (and threads) run now",
    )
    args = parser.parse_args()
    args.channels_last = [bool(c) for c in args.channels_last]
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, cpus {os.cpu_count()}",
        flush=True,
    )
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="perf_run_") as tmp:
        if not args.skip_overhead:
            rows += overhead(args, Path(tmp))
        if not args.skip_layout:
            rows += layout(args, Path(tmp))
        if not args.skip_memory:
            rows += memory(args, Path(tmp))
    if args.append and args.out.exists():  # replace only rows of the same part and threads

        def key(r: dict[str, object]) -> tuple[str, str]:
            return str(r["part"]), str(r.get("threads") or "")

        ran = {key(r) for r in rows}
        with open(args.out, newline="") as f:
            rows = [r for r in csv.DictReader(f) if key(r) not in ran] + rows
    columns = [
        c
        for c in dict.fromkeys(k for r in rows for k in r)
        if any(r.get(c) not in (None, "") for r in rows)
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.out}")
    for r in rows:
        if r["part"] == "overhead" and "ratio" in r:
            print(f"ratio {r['ratio']} (sweep only {r['ratio_sweep']}), goal <= 1.10")
    mem = [r for r in rows if r["part"] == "memory"]
    if mem:
        print([(r["n_tiles"], r["n_boot"], r["main_peak_rss_mb"]) for r in mem])


if __name__ == "__main__":
    main()
