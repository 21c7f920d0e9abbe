"""Wall time of ``shiftbench demo`` (quick or full), next to a reference measured in the same run.

The machine's cores may be shared with other processes, so the absolute wall time alone says
little. Next to the demo's phase times this records:

* the 1-minute load average before and after;
* a reference throughput: resnet10t training steps (batch 32, 64 px, AdamW) in images/s,
  measured just before and just after the demo with the same thread count.

``ratio`` = demo seconds × reference images/s: the demo's cost in "reference images". It is
roughly stable across load levels, unlike the seconds.

Usage::

    python benchmarks/bench_demo.py --quick            # ~1 min
    python benchmarks/bench_demo.py                    # the full demo (minutes)

Appends one row to ``results/bench_demo.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def reference_images_per_s(steps: int = 10) -> float:
    import timm

    torch.manual_seed(0)
    model = timm.create_model("resnet10t", num_classes=2).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-3, fused=True)
    x = torch.randn(32, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (32,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * 32 / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--scenario", default="shifts")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "bench_demo.csv")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from shiftbench.demo import demo

    load_before = os.getloadavg()[0]
    ref_before = reference_images_per_s()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = demo(
            Path(tmp) / "demo",
            quick=args.quick,
            scenario=args.scenario,
            progress=False,
            threads=args.threads,
        )
        wall = time.perf_counter() - t0
    ref_after = reference_images_per_s()
    load_after = os.getloadavg()[0]
    ref = (ref_before + ref_after) / 2
    row = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "scenario": args.scenario,
        "quick": args.quick,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "wall_s": round(wall, 1),
        "phases_s": json.dumps(result.seconds),
        "load1_before": round(load_before, 2),
        "load1_after": round(load_after, 2),
        "ref_images_per_s_before": round(ref_before, 1),
        "ref_images_per_s_after": round(ref_after, 1),
        "ratio_reference_images": round(wall * ref, 0),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new = not args.out.exists()
    with open(args.out, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)
    for k, v in row.items():
        print(f"{k:>26}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
