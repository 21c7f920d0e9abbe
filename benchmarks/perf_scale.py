"""Benchmark: reports and the runner's metrics step on synthetic studies of 1 M to 27.5 M rows.

For each size N (prediction rows) a synthetic format-2 run directory is written, streaming (one
cell in memory at a time): 2 classes, 10 checkpoints (methods ``sd``/``wd`` × seeds 0–4, each with
~30 demo-like meta keys), 4 shifts with 55 magnitudes in all (identity included in each sweep; its
rows repeated under every shift, as the runner stores them), ``N / 550`` test samples. The
probability of the positive class is a seeded logistic function of the label, the checkpoint's
signal, the shift severity and noise (sample difficulty shared by all checkpoints).

Then each of these runs as a *child process*, and its wall time, CPU time and peak RSS
(``ru_utime + ru_stime`` and ``ru_maxrss`` of ``os.wait4`` for that child alone) are recorded; on a
shared machine the CPU time is the steadier measure of work:

* ``leaderboard``: ``shiftbench leaderboard RUN --baseline wd --out …`` (CLI defaults:
  balanced accuracy, 2,000 paired bootstrap resamples);
* ``plot``: ``shiftbench plot RUN --out …`` (defaults: accuracy, ±1 SD band);
* ``figures``: ``shiftbench figures SPEC`` on a spec with that leaderboard and that plot;
* ``metrics``: ``shiftbench.run.metrics_step.compute_run_metrics(RUN)`` (the runner's final
  metrics step; default 1,000 resamples per cell).

With ``--before SIZE,...`` the same study is also written as a format-1 wide
``predictions.parquet`` (every meta key repeated on every row, as shiftbench 0.1 wrote it) and
``shiftbench leaderboard`` / ``plot`` of shiftbench 0.1 (``git archive`` of ``--before-commit``)
run on it, for the before/after comparison.

Goal (issue 8): peak RSS ≤ 3 GB at 27.5 M rows, < 2× growth from 3 M to 27.5 M rows, wall time no
worse than linear in N. Writes ``results/perf_scale.csv`` (rows of earlier invocations for other
sizes are kept) and prints the ratios. Usage::

    nice python benchmarks/perf_scale.py --sizes 1M,3M,10M,27.5M [--before 1M,3M]

The metrics step alone, before (another commit's tree) and after (this tree) on the same run::

    nice python benchmarks/perf_scale.py --sizes 1M,3M --steps metrics --metrics-before COMMIT \
        --out results/perf_scale_calibration.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shiftbench.run import rundir  # noqa: E402

CLASS_NAMES = ["Normal", "OSCC"]
# name -> (magnitudes in sweep order, identity first; units): 14 + 14 + 14 + 13 = 55 magnitudes
SHIFTS: dict[str, tuple[list[float], str]] = {
    "blur": ([float(k) for k in range(1, 28, 2)], "kernel size (px)"),
    "sharpen": ([round(0.2 * i, 1) for i in range(14)], "amount"),
    "haematoxylin": ([round(1.0 - i / 13, 4) for i in range(14)], "stain scale"),
    "eosin": ([round(1.0 - i / 12, 4) for i in range(13)], "stain scale"),
}
METHODS = {"wd": (2.0, 0.6), "sd": (1.9, 0.3)}  # signal, decay with severity
SEEDS = range(5)
N_MAGNITUDES = sum(len(m) for m, _ in SHIFTS.values())
N_CHECKPOINTS = len(METHODS) * len(SEEDS)
FIELDS = [
    "size",
    "rows",
    "n_samples",
    "format",
    "code",
    "step",
    "wall_s",
    "cpu_s",
    "peak_rss_mb",
    "exit_code",
    "load_1min",
    "commit",
    "command",
]


def parse_size(text: str) -> int:
    """``1M`` / ``27.5M`` / ``500k`` / ``1000000`` → rows."""
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return round(float(text.rstrip("km")) * scale)


def checkpoint_meta(method: str, seed: int) -> dict[str, object]:
    """~30 meta keys shaped like shiftbench train's (see shiftbench/training.py)."""
    sd = method == "sd"
    return {
        "method": method,
        "seed": seed,
        "sd_lambda": "0.1" if sd else None,
        "sd_gamma": "0.5" if sd else None,
        "sd_loss_convention": "pezeshki2021" if sd else None,
        "weight_decay": 0.0 if sd else 5e-4,
        "optimizer": "sgd",
        "lr": 0.01,
        "batch_size": 64,
        "epochs": 30,
        "augment": "flip",
        "drop_rate": 0.0,
        "drop_path_rate": 0.0,
        "train_input_size": 224,
        "data_fingerprint": "f" * 64,
        "data_source": "/data/oral_oscc_224/labels.csv",
        "split_source": "/data/oral_oscc_224/split.csv",
        "train_n": 40_000,
        "val_n": 5_000,
        "val_accuracy": 0.9 + 0.01 * seed,
        "val_balanced_accuracy": 0.89 + 0.01 * seed,
        "val_loss": 0.3 - 0.01 * seed,
        "train_seconds": 3600.0 + seed,
        "sd_grid": None,
        "selected_by": None,
        "model_arch": "resnet18",
        "pretrained": False,
        "mixed_precision": False,
        "git_commit": "0" * 40,
        "notes": f"synthetic {method} seed {seed}",
    }


def checkpoints() -> list[tuple[str, str, int]]:
    return [(f"{m}_seed{s}", m, s) for m in METHODS for s in SEEDS]


def cell_probs(
    labels: np.ndarray,
    difficulty: np.ndarray,
    ck: int,
    method: str,
    shift: int,
    pos: int,
    n_mag: int,
) -> np.ndarray:
    """P(positive) of checkpoint ``ck`` at position ``pos`` of a sweep (pos 0: clean), float32."""
    signal, decay = METHODS[method]
    ck_rng = np.random.default_rng([7, ck])
    own = ck_rng.standard_normal(labels.size, dtype=np.float32)
    signal = signal + 0.15 * float(ck_rng.standard_normal())
    severity = pos / max(n_mag - 1, 1)
    key = [7, ck, 0, 0] if pos == 0 else [7, ck, shift + 1, pos]  # clean cell shared by shifts
    noise = np.random.default_rng(key).standard_normal(labels.size, dtype=np.float32)
    sign = np.where(labels == 1, 1.0, -1.0).astype(np.float32)
    logit = sign * np.float32(signal * (1 - decay * severity)) + 0.9 * difficulty + 0.5 * own
    logit += np.float32(0.3 * severity) * noise
    return (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)


def cells(
    n: int,
) -> Iterator[tuple[str, int, str, float, np.ndarray, np.ndarray, np.ndarray]]:
    """``(shift, ck_index, ck_name, magnitude, labels, sample_ids, p1)`` one cell at a time."""
    rng = np.random.default_rng(0)
    labels = (rng.random(n) < 0.65).astype(np.int32)
    difficulty = rng.standard_normal(n, dtype=np.float32)
    ids = np.arange(n, dtype=np.int32)
    for si, (shift, (mags, _)) in enumerate(SHIFTS.items()):
        for k, (name, method, _) in enumerate(checkpoints()):
            for pos, mag in enumerate(mags):
                p1 = cell_probs(labels, difficulty, k, method, si, pos, len(mags))
                yield shift, k, name, mag, labels, ids, p1


def manifest(n: int, fmt: str) -> dict[str, object]:
    return {
        "format": fmt,
        "status": "complete",
        "command": f"benchmarks/perf_scale.py (synthetic, {n} samples)",
        "class_names": CLASS_NAMES,
        "checkpoints": [
            {
                "name": name,
                "path": f"{name}.pt",
                "sha256": f"{k:064d}",
                "meta": checkpoint_meta(m, s),
            }
            for k, (name, m, s) in enumerate(checkpoints())
        ],
        "shifts": [
            {
                "name": shift,
                "params": {},
                "magnitudes": mags,
                "identity": mags[0],
                "units": units,
                "stochastic": False,
            }
            for shift, (mags, units) in SHIFTS.items()
        ],
        "seed": 0,
        "n_boot": 1000,
    }


def write_v2(run: Path, n: int) -> None:
    """The synthetic study as a format-2 run directory, one cell in memory at a time."""
    run.mkdir(parents=True)
    cks = checkpoints()
    values = [  # the fixed columns, in rundir.CHECKPOINT_COLUMNS order
        [c[0] for c in cks],
        pa.array(range(len(cks)), pa.int32()),
        [f"{k:064d}" for k in range(len(cks))],
        [f"{c[0]}.pt" for c in cks],
        ["shiftbench/1"] * len(cks),
        ["resnet18"] * len(cks),
        pa.array([2] * len(cks), pa.int32()),
        pa.array([224] * len(cks), pa.int32()),
    ]
    table = dict(zip(rundir.CHECKPOINT_COLUMNS, values, strict=True))
    metas = [checkpoint_meta(m, s) for _, m, s in cks]
    for key in metas[0]:
        table[key] = [meta[key] for meta in metas]
    pq.write_table(pa.table(table), run / rundir.CHECKPOINTS)
    labels = (np.random.default_rng(0).random(n) < 0.65).astype(np.int32)
    samples = {
        "sample_id": pa.array(np.arange(n, dtype=np.int32)),
        "path": [f"tiles/{i:07d}.png" for i in range(n)],
        "label": pa.array(labels),
        "magnification": pa.array(np.where(np.arange(n) % 3 == 0, 40, 20).astype(np.int32)),
    }
    pq.write_table(pa.table(samples), run / rundir.SAMPLES)
    schema = rundir.prediction_schema(CLASS_NAMES)
    writer, current = None, None
    for shift, k, name, mag, labs, ids, p1 in cells(n):
        if (shift, k) != current:
            if writer is not None:
                writer.close()
            path = rundir.checkpoint_file(run, shift, k)
            path.parent.mkdir(parents=True, exist_ok=True)
            writer, current = pq.ParquetWriter(path, schema), (shift, k)
            ck_col = pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, dtype=np.int32)), pa.array([name])
            )
        batch = pa.table(
            [
                ck_col,
                pa.array(np.full(n, mag)),
                pa.array(ids),
                pa.array(labs),
                pa.array((p1 > 0.5).astype(np.int32)),
                pa.array(1.0 - p1),
                pa.array(p1),
            ],
            schema=schema,
        )
        writer.write_table(batch)
    if writer is not None:
        writer.close()
    (run / rundir.MANIFEST).write_text(json.dumps(manifest(n, rundir.FORMAT_V2), indent=2))


def write_v1(run: Path, n: int) -> None:
    """The same study as a shiftbench 0.1 run directory (wide predictions.parquet)."""
    run.mkdir(parents=True)
    schema = None
    metas = {name: checkpoint_meta(m, s) for name, m, s in checkpoints()}
    path_col = pa.array([f"tiles/{i:07d}.png" for i in range(n)])
    writer = None
    for shift, _, name, mag, labs, ids, p1 in cells(n):
        cols = {
            "checkpoint": pa.array([name] * n),
            "shift": pa.array([shift] * n),
            "magnitude": pa.array(np.full(n, mag)),
            "sample_id": pa.array(ids.astype(np.int64)),
            "path": path_col,
            "label": pa.array(labs.astype(np.int64)),
            "pred": pa.array((p1 > 0.5).astype(np.int64)),
            "prob_Normal": pa.array(1.0 - p1),
            "prob_OSCC": pa.array(p1),
        }
        for key, value in metas[name].items():
            cols[key] = pa.array([value] * n, type=pa.string() if value is None else None)
        batch = pa.table(cols)
        if writer is None:
            schema = batch.schema
            writer = pq.ParquetWriter(run / "predictions.parquet", schema)
        writer.write_table(batch.cast(schema))
    writer.close()
    (run / "manifest.json").write_text(json.dumps(manifest(n, rundir.FORMAT_V1), indent=2))


def measure(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds (user + system), peak RSS (MB) of that child alone, exit code.

    ``cwd`` is the measured code's tree: ``python -c`` puts the working directory first on
    ``sys.path``, so another checkout there would be imported instead.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        print(f"  exit {proc.returncode}: {err.strip()[-400:]}", file=sys.stderr)
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024.0, proc.returncode


def steps(run: Path, out: Path, code: str, metrics: bool) -> dict[str, list[str]]:
    # the `shiftbench` console script, run with this interpreter and the chosen code on the path
    py = [sys.executable, "-c", "import sys; from shiftbench.cli import main; sys.exit(main())"]
    spec = out / "spec.toml"
    spec.write_text(
        f'runs = ["{run.as_posix()}"]\nout = "{(out / "figures").as_posix()}"\nbaseline = "wd"\n\n'
        '[[leaderboard]]\nname = "leaderboard"\n\n[[plot]]\nname = "curves"\n'
    )
    out_steps = {
        "leaderboard": [*py, "leaderboard", str(run), "--baseline", "wd", "--out", str(out / "lb")],
        "plot": [*py, "plot", str(run), "--out", str(out / "curves.png")],
    }
    if code == "after":
        out_steps["figures"] = [*py, "figures", str(spec)]
    if code == "after" and metrics:
        out_steps["metrics"] = todo_metrics(run)
    return out_steps


def todo_metrics(run: Path) -> list[str]:
    """The runner's metrics step on ``run`` (default 1,000 resamples per cell) as a command."""
    return [
        sys.executable,
        "-c",
        "import sys; from shiftbench.run.metrics_step import compute_run_metrics; "
        "compute_run_metrics(sys.argv[1])",
        str(run),
    ]


def commit_of(src: Path) -> str:
    """The commit of the measured code (the ``--before-commit`` tree is not a git checkout)."""
    if src != REPO:
        return src.name.split("-")[-1]
    out = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "shiftbench"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def load() -> float:
    return os.getloadavg()[0]


def before_tree(commit: str, work: Path) -> Path:
    """shiftbench at ``commit`` (0.1) extracted with git archive."""
    tree = work / f"shiftbench-{commit[:8]}"
    if not tree.exists():
        tree.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", commit, "shiftbench"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def run_size(
    label: str,
    work: Path,
    before: bool,
    commit: str,
    keep: bool,
    metrics: bool,
    only: set[str] | None = None,
    metrics_before: str | None = None,
) -> list[dict]:
    """Write the study of size ``label`` and measure its steps (``only``: a subset of them).

    With ``metrics_before`` (a commit), the metrics step of that commit's tree runs first on the
    same format-2 run (row ``code=before``), then the current one: a same-session reference.
    """
    rows_wanted = parse_size(label)
    n = max(2, round(rows_wanted / (N_CHECKPOINTS * N_MAGNITUDES)))
    rows = n * N_CHECKPOINTS * N_MAGNITUDES
    base = work / label
    shutil.rmtree(base, ignore_errors=True)
    results = []
    variants = [("v2", "after")] + ([("v1", "before")] if before else [])
    for fmt, code in variants:
        run = base / f"run_{fmt}"
        t0 = time.perf_counter()
        (write_v2 if fmt == "v2" else write_v1)(run, n)
        print(
            f"{label}: wrote {rows:,} rows ({fmt}) in {time.perf_counter() - t0:.0f} s", flush=True
        )
        env = dict(os.environ)
        src = REPO if code == "after" else before_tree(commit, work)
        env["PYTHONPATH"] = str(src)
        env.setdefault("MPLBACKEND", "Agg")
        out = base / f"out_{code}"
        out.mkdir(parents=True, exist_ok=True)
        todo = [
            (step, cmd, src, env, code)
            for step, cmd in steps(run, out, code, metrics).items()
            if only is None or step in only
        ]
        if metrics_before and code == "after" and metrics:
            ref = before_tree(metrics_before, work)
            todo.insert(
                0, ("metrics", todo_metrics(run), ref, {**env, "PYTHONPATH": str(ref)}, "before")
            )
        for step, cmd, tree, step_env, step_code in todo:
            load_now = load()
            wall, cpu, rss, rc = measure(cmd, step_env, tree)
            print(
                f"  {step_code:6s} {step:11s} {wall:8.1f} s wall {cpu:8.1f} s cpu {rss:8.0f} MB  "
                f"exit {rc}",
                flush=True,
            )
            shown = " ".join(c if " " not in c else repr(c) for c in cmd)
            results.append(
                {
                    "size": label,
                    "rows": rows,
                    "n_samples": n,
                    "format": fmt,
                    "code": step_code,
                    "step": step,
                    "wall_s": round(wall, 2),
                    "cpu_s": round(cpu, 2),
                    "peak_rss_mb": round(rss, 1),
                    "exit_code": rc,
                    "load_1min": round(load_now, 2),
                    "commit": commit_of(tree),
                    "command": shown.replace(str(work), "$WORK").replace(sys.executable, "python"),
                }
            )
        if not keep:
            shutil.rmtree(run, ignore_errors=True)
    return results


def write_csv(path: Path, new: list[dict]) -> list[dict]:
    """Merge ``new`` into the CSV (replacing rows of the same size, code and step)."""
    old = []
    if path.exists():
        with open(path, newline="") as f:
            old = list(csv.DictReader(f))
    keys = {(r["size"], r["code"], r["step"]) for r in new}
    merged = [r for r in old if (r["size"], r["code"], r["step"]) not in keys] + new
    merged.sort(key=lambda r: (r["code"] != "after", int(r["rows"]), r["step"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n", restval="")
        w.writeheader()
        w.writerows(merged)
    return merged


def print_before_after(rows: list[dict]) -> None:
    """After / before of the metrics step per size (``--metrics-before``: one run, same study)."""
    metrics = {(r["size"], r["code"]): r for r in rows if r["step"] == "metrics"}
    for (size, code), after in metrics.items():
        before = metrics.get((size, "before"))
        if code != "after" or before is None or not before["cpu_s"]:
            continue
        cpu = float(after["cpu_s"]) / float(before["cpu_s"])
        rss = float(after["peak_rss_mb"]) / float(before["peak_rss_mb"])
        print(
            f"metrics {size}: CPU {before['cpu_s']} → {after['cpu_s']} s (× {cpu:.2f}), peak RSS "
            f"{before['peak_rss_mb']} → {after['peak_rss_mb']} MB (× {rss:.2f}), "
            f"{before['commit']} → {after['commit']}"
        )


def print_ratios(rows: list[dict]) -> None:
    after = [r for r in rows if r["code"] == "after"]
    by_step: dict[str, list[dict]] = {}
    for r in after:
        by_step.setdefault(r["step"], []).append(r)
    for step, rs in by_step.items():
        rs.sort(key=lambda r: int(r["rows"]))
        lo = next((r for r in rs if r["size"] == "3M"), rs[0])
        hi = rs[-1]
        growth = float(hi["peak_rss_mb"]) / float(lo["peak_rss_mb"])
        wall_ratio = float(hi["cpu_s"] or hi["wall_s"]) / float(lo["cpu_s"] or lo["wall_s"])
        rows_ratio = int(hi["rows"]) / int(lo["rows"])
        print(
            f"{step:11s} peak RSS {lo['size']} → {hi['size']}: {float(lo['peak_rss_mb']):.0f} → "
            f"{float(hi['peak_rss_mb']):.0f} MB (× {growth:.2f}); CPU time × {wall_ratio:.2f} "
            f"for rows × {rows_ratio:.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1M,3M,10M,27.5M", help="row counts, e.g. 1M,3M")
    ap.add_argument("--before", default="", help="sizes also measured with shiftbench 0.1")
    ap.add_argument(
        "--metrics-sizes", default=None, help="sizes with the metrics step (default: all)"
    )
    ap.add_argument("--before-commit", default="f5812e2", help="the 0.1 code (git commit)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "perf_scale")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "perf_scale.csv")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic run directories")
    ap.add_argument(
        "--steps", default=None, help="only these steps, e.g. metrics (default: all of them)"
    )
    ap.add_argument(
        "--metrics-before",
        default=None,
        help="also run the metrics step of this commit's tree first, same run (code=before)",
    )
    args = ap.parse_args()
    before = {s.strip() for s in args.before.split(",") if s.strip()}
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    with_metrics = set(sizes) if args.metrics_sizes is None else set(args.metrics_sizes.split(","))
    print(f"load {os.getloadavg()}", flush=True)
    for label in sizes:
        results = run_size(
            label,
            args.work,
            label in before,
            args.before_commit,
            args.keep,
            label in with_metrics,
            only=set(args.steps.split(",")) if args.steps else None,
            metrics_before=args.metrics_before,
        )
        merged = write_csv(args.out, results)  # after every size: a partial run is kept
    print_ratios(merged)
    if args.metrics_before:
        print_before_after(merged)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
