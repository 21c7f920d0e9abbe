"""Wall and CPU time of ``shiftbench demo`` (quick or full), with the load it ran under.

The machine's cores may be shared with other processes, so the wall time alone says little.
Next to the demo's wall time and phase times this records:

* user + system CPU seconds of this process and its children (``resource.getrusage``): the work
  the demo did, which other processes on the machine do not inflate (much);
* the load averages (1, 5, 15 min, as ``uptime`` prints them) before and after;
* a reference throughput: resnet10t training steps (batch 32, 64 px, AdamW) in images/s,
  measured just before and just after the demo with the same thread count.

``ratio_reference_images`` = demo seconds × reference images/s: the demo's cost in "reference
images", roughly stable across load levels, unlike the seconds.

Usage::

    python benchmarks/bench_demo.py --quick            # seconds
    python benchmarks/bench_demo.py                    # the full demo (minutes)

Appends one row to ``results/bench_demo.csv`` and ends with a one-line summary, e.g.::

    bench_demo: full demo 251 s wall (4.2 min; train 180, evaluate 60, report 5), 470 s CPU, ...
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
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
    ap.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="write the demo here and keep it (default: a temporary folder, deleted)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from shiftbench.demo import demo

    load_before = os.getloadavg()
    ref_before = reference_images_per_s()
    with tempfile.TemporaryDirectory() as tmp:
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        result = demo(
            args.keep if args.keep is not None else Path(tmp) / "demo",
            quick=args.quick,
            scenario=args.scenario,
            progress=False,
            threads=args.threads,
        )
        wall = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu0
        summary = result.summary
    ref_after = reference_images_per_s()
    load_after = os.getloadavg()
    ref = (ref_before + ref_after) / 2
    clean = _clean_balanced_accuracy(summary)
    row = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "scenario": args.scenario,
        "quick": args.quick,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "wall_s": round(wall, 1),
        "cpu_user_sys_s": round(cpu, 1),
        "phases_s": json.dumps(result.seconds),
        "load_before": " ".join(f"{v:.2f}" for v in load_before),
        "load_after": " ".join(f"{v:.2f}" for v in load_after),
        "ref_images_per_s_before": round(ref_before, 1),
        "ref_images_per_s_after": round(ref_after, 1),
        "ratio_reference_images": round(wall * ref, 0),
        "clean_balanced_accuracy": json.dumps(clean),
    }
    for k, v in row.items():
        print(f"{k:>26}: {v}")
    phases = ", ".join(f"{k} {v:.0f}" for k, v in result.seconds.items() if k != "total")
    scores = ", ".join(f"{k} {v}" for k, v in clean.items())
    _append(args.out, row)
    print(
        f"bench_demo: {'quick' if args.quick else 'full'} {args.scenario} demo {wall:.0f} s wall "
        f"({wall / 60:.1f} min; {phases}), {cpu:.0f} s user+sys CPU, {args.threads} threads, "
        f"load {row['load_before']} -> {row['load_after']}; clean balanced accuracy {scores}"
    )
    return 0


def _append(path: Path, row: dict[str, object]) -> None:
    """Append ``row`` to the CSV at ``path`` (header first if new; same columns required)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    if not new:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if header != list(row):
            sys.exit(f"{path} has other columns ({', '.join(header)}); pass another --out")
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its (waited-for) children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _clean_balanced_accuracy(summary: object) -> dict[str, str]:
    """``{method: "mean ± sd"}`` from the demo's summary table (shifts scenario only)."""
    cols = getattr(summary, "columns", ())
    if "clean_balanced_accuracy_mean" not in cols:
        return {}
    return {
        str(r["method"]): (
            f"{r['clean_balanced_accuracy_mean']:.3f} ± {r['clean_balanced_accuracy_sd']:.3f}"
        )
        for _, r in summary.iterrows()  # type: ignore[attr-defined]
    }


if __name__ == "__main__":
    sys.exit(main())
