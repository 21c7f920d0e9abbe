"""Agreement of ``--amp bf16|fp16`` with float32: the same run with and without autocast.

Runs :func:`shiftbench.run` twice on the same checkpoints, data and shifts (``--device``, default
CPU, where torch.autocast supports bfloat16), once in float32 and once with ``--amp``, and
compares the predictions row by row (same checkpoint, shift, magnitude, sample):

* ``argmax_agreement``: fraction of rows with the same predicted class;
* ``max_abs_prob_diff`` / ``mean_abs_prob_diff``: |p_amp − p_fp32| over all class probabilities;
* ``max_abs_accuracy_diff``: the largest change of a metrics.csv accuracy (any cell).

One row per shift and one for all rows. Writes ``--out`` (default
``results/amp_agreement.csv``).

    python benchmarks/amp_agreement.py --ckpt shiftbench-demo/checkpoints/sd_seed0.pt \\
        --ckpt shiftbench-demo/checkpoints/wd_seed0.pt --amp bf16
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "shiftbench" / "assets" / "oral_oscc" / "test.csv"
KEYS = ["checkpoint", "shift", "magnitude", "sample_id"]


def main() -> None:
    import shiftbench

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, action="append", required=True)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--shifts", default="blur,haematoxylin")
    parser.add_argument("--amp", default="bf16", choices=["bf16", "fp16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-boot", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "amp_agreement.csv")
    args = parser.parse_args()
    tables, metrics, seconds = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, amp in (("fp32", None), (args.amp, args.amp)):
            t0 = time.perf_counter()
            result = shiftbench.run(
                args.ckpt, args.data, args.shifts, out=Path(tmp) / label, device=args.device,
                amp=amp, n_boot=args.n_boot, workers=0,
            )  # fmt: skip
            seconds[label] = time.perf_counter() - t0
            tables[label] = result.predictions(with_meta=False).sort_values(KEYS)
            metrics[label] = result.metrics
    ref, amp = tables["fp32"], tables[args.amp]
    assert np.array_equal(ref[KEYS].to_numpy(), amp[KEYS].to_numpy())
    probs = [c for c in ref.columns if c.startswith("prob_")]
    acc_diff = np.abs(metrics["fp32"]["accuracy"] - metrics[args.amp]["accuracy"]).max()
    rows = []
    for shift in [*sorted(ref["shift"].unique()), "all"]:
        sel = np.ones(len(ref), bool) if shift == "all" else (ref["shift"] == shift).to_numpy()
        diff = np.abs(ref.loc[sel, probs].to_numpy() - amp.loc[sel, probs].to_numpy())
        same = ref.loc[sel, "pred"].to_numpy() == amp.loc[sel, "pred"].to_numpy()
        rows.append(
            {
                "amp": args.amp,
                "device": args.device,
                "shift": shift,
                "rows": int(sel.sum()),
                "argmax_agreement": round(float(same.mean()), 5),
                "rows_changed": int((~same).sum()),
                "max_abs_prob_diff": round(float(diff.max()), 5),
                "mean_abs_prob_diff": round(float(diff.mean()), 6),
                "max_abs_accuracy_diff": round(float(acc_diff), 5) if shift == "all" else "",
                "seconds_fp32": round(seconds["fp32"], 1),
                f"seconds_{args.amp}": round(seconds[args.amp], 1),
                "checkpoints": " ".join(p.name for p in args.ckpt),
                "load_1min": round(os.getloadavg()[0], 1),
            }
        )
        print({k: rows[-1][k] for k in ("shift", "rows", "argmax_agreement", "max_abs_prob_diff")})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
