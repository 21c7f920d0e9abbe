"""Speed of the report statistics vs straightforward references, measured in the same run.

* leaderboard (paired bootstrap of every checkpoint × cell, B resamples) vs a loop that
  materialises each resample and calls scikit-learn per checkpoint × cell (timed on a few
  resamples and scaled to B, since the loop is linear in B);
* DeLong's test, midrank algorithm (Sun & Xu) vs the O(m·n) kernel matrix (numpy broadcasting).

Usage (writes results/bench_report.csv):

    python benchmarks/bench_report.py [--samples 600] [--n-boot 2000]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from _synthetic import synthetic_predictions, write_run  # noqa: E402
from sklearn.metrics import balanced_accuracy_score, roc_auc_score  # noqa: E402

import shiftbench.report as report  # noqa: E402
from shiftbench.delong import delong_test  # noqa: E402


def naive_leaderboard_seconds(table, metric: str, n_resamples: int, seed: int = 0) -> float:
    """Seconds for n_resamples of the materialise-and-call-sklearn loop over every cell."""
    ids = np.sort(table["sample_id"].unique())
    draws = np.random.default_rng(seed).integers(0, ids.size, size=(n_resamples, ids.size))
    cells = {
        k: g.set_index("sample_id") for k, g in table.groupby(["checkpoint", "shift", "magnitude"])
    }
    t0 = time.perf_counter()
    for draw in draws:
        chosen = ids[draw]
        for g in cells.values():
            r = g.loc[chosen]
            if metric == "auroc":
                roc_auc_score(r["label"], r["prob_OSCC"])
            else:
                balanced_accuracy_score(r["label"], r["pred"])
    return time.perf_counter() - t0


def slow_delong_z(y, a, b) -> float:
    def comps(s):
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return psi.mean(axis=1), psi.mean(axis=0)

    (a10, a01), (b10, b01) = comps(a), comps(b)
    m, n = a10.size, a01.size
    s10, s01 = np.cov(np.stack([a10, b10])), np.cov(np.stack([a01, b01]))
    s = s10 / m + s01 / n
    return (a10.mean() - b10.mean()) / np.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=600)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--ref-resamples", type=int, default=10)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "bench_report.csv")
    args = ap.parse_args()

    shifts = {"blur": tuple(range(1, 12)), "haematoxylin": tuple(np.linspace(1, 0, 11))}
    table = synthetic_predictions(n_samples=args.samples, shifts=shifts)
    n_ck = table["checkpoint"].nunique()
    n_cells = table.groupby(["shift", "magnitude"]).ngroups
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run = write_run(Path(tmp) / "run", table, metrics=False)
        study = report.load_runs(run)
        for metric in ("balanced_accuracy", "auroc"):
            t0 = time.perf_counter()
            report.leaderboard(
                study, out=Path(tmp) / metric, baseline="wd", metric=metric, n_boot=args.n_boot
            )
            ours = time.perf_counter() - t0
            ref = naive_leaderboard_seconds(table, metric, args.ref_resamples)
            ref_scaled = ref * (args.n_boot + 1) / args.ref_resamples
            rows.append(
                {
                    "task": f"leaderboard {metric}",
                    "size": f"n={args.samples}, {n_ck} checkpoints x {n_cells} cells, B={args.n_boot}",
                    "seconds": round(ours, 3),
                    "reference": f"sklearn loop over materialised resamples ({args.ref_resamples} timed, scaled to B+1)",
                    "reference_seconds": round(ref_scaled, 3),
                    "speedup": round(ref_scaled / ours, 1),
                }
            )
    rng = np.random.default_rng(0)
    for n in (500, 4000):
        y = (rng.random(n) < 0.4).astype(int)
        a = np.round(rng.normal(size=n) + y, 2)
        b = np.round(rng.normal(size=n) + 0.6 * y, 2)
        t0 = time.perf_counter()
        fast = delong_test(y, a, b).z
        ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        slow = slow_delong_z(y, a, b)
        ref = time.perf_counter() - t0
        assert abs(fast - slow) < 1e-9 * max(1.0, abs(slow))
        rows.append(
            {
                "task": "delong_test",
                "size": f"n={n}",
                "seconds": round(ours, 5),
                "reference": "O(m*n) kernel matrix (numpy broadcasting)",
                "reference_seconds": round(ref, 5),
                "speedup": round(ref / ours, 1),
            }
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        print(
            f"{r['task']:<30} {r['size']:<50} {r['seconds']:>9}s  ref {r['reference_seconds']:>9}s  x{r['speedup']}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
