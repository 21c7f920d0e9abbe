"""Benchmark of ``torchrun -m shiftbench run``: 1 rank vs 2 ranks on this machine's CPU.

A demo-sized model (timm ``resnet10t``, random init, 64 px input, saved with
:func:`shiftbench.save_checkpoint`) is evaluated on the vendored oral test split
(``shiftbench/assets/oral_oscc/test.csv``, 96² tiles) under the default sweeps of the given
shifts. Each configuration is one ``python -m torch.distributed.run --nproc-per-node N -m``
launch with one torch thread per rank (``OMP_NUM_THREADS=1``) and in-process image decoding
(``--workers 0``), so N ranks use N cores. Measured:

* ``wall_s``: the whole torchrun command (start-up, checkpoint loading, sweep, rank 0's tables
  and bootstrap metrics); ``speedup`` = wall(1 rank) / wall(N ranks);
* ``sweep_s``: the sweep phase as rank 0 timed it (manifest ``timings_s.sweep``, which ends at
  the barrier after every rank finished), and its speed-up;
* ``peak_rss_mb_rank<r>``: each rank's own high-water mark (``VmHWM``), written by the rank.

The 2-rank tables are checked to be identical to the 1-rank ones (metrics.csv bytes).

Usage::

    nice python benchmarks/perf_distributed.py            # writes results/perf_distributed.csv
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

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "shiftbench" / "assets" / "oral_oscc" / "test.csv"
RSS_ENV = "PERF_DISTRIBUTED_RSS_DIR"


def save_model(path: Path) -> Path:
    """resnet10t, random init (seed 0), 2 classes, 64 px input."""
    import timm
    import torch

    import shiftbench

    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=2).eval()
    return shiftbench.save_checkpoint(
        path,
        model,
        arch="resnet10t",
        num_classes=2,
        input_size=64,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        meta={"method": "bench"},
    )


def launch(n: int, ckpt: Path, out: Path, shifts: str, n_boot: int, rss_dir: Path) -> float:
    """One torchrun launch of ``shiftbench run`` with ``n`` ranks; returns its wall time (s)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), RSS_ENV: str(rss_dir)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc-per-node", str(n), str(Path(__file__).resolve()), "--rank-worker"]
    cmd += ["run", "--ckpt", str(ckpt), "--data", str(DATA), "--shift", shifts]
    cmd += ["--out", str(out), "--workers", "0", "--n-boot", str(n_boot), "--no-progress"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"torchrun with {n} rank(s) failed:\n{done.stderr[-3000:]}")
    return wall


def rank_worker(args: list[str]) -> int:
    """Inside torchrun: run the CLI, then record this rank's peak RSS (VmHWM, MB)."""
    from shiftbench.cli import main

    code = main(args)
    status = Path("/proc/self/status").read_text()
    hwm_kb = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmHWM"))
    rss_dir = Path(os.environ[RSS_ENV])
    (rss_dir / f"rank{os.environ.get('RANK', '0')}.txt").write_text(str(hwm_kb / 1024))
    return code


def measure(n: int, ckpt: Path, work: Path, shifts: str, n_boot: int) -> dict[str, object]:
    rss_dir = work / f"rss{n}"
    rss_dir.mkdir()
    out = work / f"run{n}"
    wall = launch(n, ckpt, out, shifts, n_boot, rss_dir)
    manifest = json.loads((out / "manifest.json").read_text())
    timings = manifest["invocations"][-1]["timings_s"]
    row: dict[str, object] = {
        "ranks": n,
        "wall_s": round(wall, 2),
        "sweep_s": timings["sweep"],
        "load_s": timings["load"],
        "tables_and_metrics_s": round(timings["predictions"] + timings["metrics"], 3),
        "n_images": manifest["config"]["n_samples"],
        "evaluations": 1  # the clean image once, then every shift's other magnitudes
        + sum(
            sum(1 for m in s["magnitudes"] if float(m) != float(s["identity"]))
            for s in manifest["shifts"]
        ),
    }
    for r in range(n):
        row[f"peak_rss_mb_rank{r}"] = round(float((rss_dir / f"rank{r}.txt").read_text()), 1)
    return row


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--rank-worker":
        sys.exit(rank_worker(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shifts", default="blur,haematoxylin")
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "perf_distributed.csv")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ckpt = save_model(work / "resnet10t.pt")
        rows = [measure(n, ckpt, work, args.shifts, args.n_boot) for n in (1, args.ranks)]
        same = (work / "run1" / "metrics.csv").read_bytes() == (
            work / f"run{args.ranks}" / "metrics.csv"
        ).read_bytes()
    load_after = os.getloadavg()
    base = rows[0]
    for row in rows:
        row["speedup_wall"] = round(float(base["wall_s"]) / float(row["wall_s"]), 3)
        row["speedup_sweep"] = round(float(base["sweep_s"]) / float(row["sweep_s"]), 3)
        row["tables_identical_to_1_rank"] = same
        row["shifts"] = args.shifts
        row["load_1min_before_after"] = f"{load_before[0]:.1f}/{load_after[0]:.1f}"
        row["cpu_count"] = os.cpu_count()
        row["machine"] = platform.processor() or platform.machine()
    columns = sorted({k for r in rows for k in r}, key=lambda k: list(rows[-1]).index(k))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    for row in rows:
        print(
            f"{row['ranks']} rank(s): wall {row['wall_s']} s (×{row['speedup_wall']}), sweep "
            f"{row['sweep_s']} s (×{row['speedup_sweep']}), peak RSS "
            + ", ".join(f"{row[k]} MB" for k in row if str(k).startswith("peak_rss"))
        )
    print(f"tables identical: {same}; load {rows[0]['load_1min_before_after']}; -> {args.out}")


if __name__ == "__main__":
    main()
