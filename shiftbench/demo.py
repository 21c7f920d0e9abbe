"""``shiftbench demo``: the whole SD-vs-WD study end to end on the bundled oral tiles.

Scenario ``shifts`` (default), in ``out`` (default ``shiftbench-demo/``):

1. train weight-decay (``wd``) and spectral-decoupling (``sd``) models, several seeds each, on
   the train split of the vendored oral OSCC-vs-normal tiles (``shiftbench/assets/oral_oscc``,
   see docs/reference/demo-data.md) → ``checkpoints/``;
2. evaluate every checkpoint on the test split under blur, sharpen, haematoxylin and eosin with
   :func:`shiftbench.runner.run` → ``run/`` (``predictions/``, ``metrics.csv``,
   ``manifest.json``);
3. :func:`shiftbench.report.leaderboard` (baseline ``wd``) → ``leaderboard/`` and
   :func:`shiftbench.report.plot` (accuracy vs magnitude, mean ± 1 SD over seeds) →
   ``accuracy_vs_magnitude.{png,pdf,csv}``;
4. print where everything is and a summary table (``summary.csv``).

Scenario ``cutout`` (default ``out``: ``shiftbench-demo-cutout/``): the paper's Table 2. Build
the cutout spurious-correlation set from the same tiles (:mod:`shiftbench.cutout_set`), train
``wd`` and ``sd`` (Eq. 2: λ = (0.01, 0.001), γ = (0, 1) for (Normal, OSCC)) on its train set and
``control_wd`` on the control train set (cutouts everywhere), evaluate all on its test set
(cutouts in every OSCC image, none in Normal) and report accuracy and recall (of OSCC) as
mean (SD) over seeds → ``table2.csv``.

Resumable: ``demo.json`` records the configuration; a rerun with the same configuration reuses
finished checkpoints and run cells. An ``out`` that holds anything else (another configuration,
or files the demo did not write) is refused unless ``overwrite=True``, which deletes only what
the demo writes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from shiftbench.errors import UserInputError

__all__ = ["DEMO_DATA", "DemoConfig", "DemoResult", "demo", "demo_config", "demo_data_dir"]

DEMO_DATA = "oral_oscc"
SCENARIOS = ("shifts", "cutout", "frequency")
HEADS = ("softmax", "binary-logit")
SHIFTS = ("blur", "sharpen", "haematoxylin", "eosin")
DEMO_FILE = "demo.json"
#: Full ``shifts`` demo: input side (px) and epochs (the cutout scenario keeps 64 px, 12 epochs).
#: Chosen by profiling (results/README-bench_demo.md): 48 px (0.6× the cost per image) or 8
#: epochs lowered the clean balanced accuracy below 0.70 (wd 0.66 and 0.67), so training is kept.
FULL_INPUT_SIZE = 64
FULL_EPOCHS = 12
#: Everything the demo writes in ``out`` (``overwrite`` deletes these and nothing else).
OWNED = (
    DEMO_FILE,
    "checkpoints",
    "run",
    "leaderboard",
    "cutout_set",
    "accuracy_vs_magnitude.png",
    "accuracy_vs_magnitude.pdf",
    "accuracy_vs_magnitude.csv",
    "summary.csv",
    "table2.csv",
)


def demo_data_dir() -> Path:
    """Folder of the vendored oral OSCC tiles (``manifest.csv``, ``test.csv``, images)."""
    path = Path(str(resources.files("shiftbench") / "assets" / DEMO_DATA))
    if not (path / "manifest.csv").is_file():
        raise UserInputError(
            f"the bundled demo data is missing ({path}); reinstall shiftbench "
            "(pip install --force-reinstall shiftbench)"
        )
    return path


@dataclass(frozen=True)
class DemoConfig:
    """Everything that defines a demo's results (stored in ``demo.json``)."""

    scenario: str
    quick: bool
    seeds: tuple[int, ...]
    epochs: int
    arch: str = "resnet10t"
    input_size: int = 64
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 2e-3
    augment: str = "basic"
    wd_weight_decay: float = 0.05
    sd_lambda: float = 0.1
    sd_lambdas: tuple[float, ...] = (0.01, 0.001)
    sd_gammas: tuple[float, ...] = (0.0, 1.0)
    train_limit: int | None = None
    test_limit: int | None = None
    magnitudes: dict[str, tuple[float, ...]] | None = None  # None: each shift's default sweep
    n_patches: int = 16
    patch_size: int = 8
    data_fingerprint: str = ""
    head: str = "softmax"  # "binary-logit": one logit, BCE, SD's γ on it (--head)

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        if self.head == "softmax":
            del d["head"]  # demo.json of demos from before --head existed stay resumable
        d["seeds"] = list(self.seeds)
        d["sd_lambdas"] = list(self.sd_lambdas)
        d["sd_gammas"] = list(self.sd_gammas)
        if self.magnitudes is not None:
            d["magnitudes"] = {k: list(v) for k, v in self.magnitudes.items()}
        return d


#: Full-demo sweeps: a subset of each shift's default magnitudes from the identity to the
#: strongest (blur kernels spaced roughly geometrically, stains and sharpening in steps of 0.2):
#: 26 cells instead of the 53 of the default sweeps, the same curves at half the evaluation cost.
FULL_MAGNITUDES = {
    "blur": (1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 14.0, 20.0),
    "sharpen": (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
    "haematoxylin": (1.0, 0.8, 0.6, 0.4, 0.2, 0.0),
    "eosin": (1.0, 0.8, 0.6, 0.4, 0.2, 0.0),
}

#: ``--quick`` sweeps (a subset of each shift's default magnitudes).
QUICK_MAGNITUDES = {
    "blur": (1.0, 3.0, 7.0),
    "sharpen": (0.0, 0.5, 1.0),
    "haematoxylin": (1.0, 0.5, 0.0),
    "eosin": (1.0, 0.5, 0.0),
}


def demo_config(
    scenario: str = "shifts",
    *,
    quick: bool = False,
    seeds: int | None = None,
    epochs: int | None = None,
    head: str = "softmax",
) -> DemoConfig:
    """The demo's settings (see docs/tutorials/demo.md for why these values).

    Full: 3 seeds per method, ``resnet10t`` at 64 px, 12 epochs, AdamW (lr 2e-3, cosine),
    basic (D4) augmentation; every test image, :data:`FULL_MAGNITUDES` (26 cells from the
    identity to each shift's strongest default magnitude). Quick: 2 seeds,
    2 epochs, 32 px, the first 200 rows of the manifest for training (111 train, 44 val) and
    the first 48 test images, three magnitudes per shift.
    """
    if scenario not in SCENARIOS:
        raise UserInputError(f"--scenario must be one of {', '.join(SCENARIOS)}; got {scenario!r}")
    if head not in HEADS:
        raise UserInputError(f"--head must be one of {', '.join(HEADS)}; got {head!r}")
    n_seeds = seeds if seeds is not None else (2 if quick else 3)
    if isinstance(n_seeds, bool) or int(n_seeds) < 1:
        raise UserInputError(f"--seeds must be a positive number of seeds; got {seeds!r}")
    default_epochs = 2 if quick else (FULL_EPOCHS if scenario == "shifts" else 12)
    n_epochs = epochs if epochs is not None else default_epochs
    if int(n_epochs) < 1:
        raise UserInputError(f"--epochs must be >= 1; got {epochs!r}")
    fingerprint = _data_fingerprint()
    if quick:
        return DemoConfig(
            scenario=scenario,
            quick=True,
            seeds=tuple(range(int(n_seeds))),
            epochs=int(n_epochs),
            input_size=32,
            train_limit=200,
            test_limit=48,
            magnitudes=QUICK_MAGNITUDES if scenario == "shifts" else None,
            data_fingerprint=fingerprint,
            head=head,
        )
    return DemoConfig(
        scenario=scenario,
        quick=False,
        seeds=tuple(range(int(n_seeds))),
        epochs=int(n_epochs),
        input_size=FULL_INPUT_SIZE if scenario == "shifts" else 64,
        magnitudes=FULL_MAGNITUDES if scenario == "shifts" else None,
        data_fingerprint=fingerprint,
        head=head,
    )


def _data_fingerprint() -> str:
    from shiftbench.data import open_dataset

    return open_dataset(demo_data_dir() / "manifest.csv").fingerprint()


@dataclass
class DemoResult:
    """What :func:`demo` wrote (paths are inside ``out``)."""

    out: Path
    config: DemoConfig
    checkpoints: list[Path]
    run_dir: Path
    summary: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    reused_checkpoints: int = 0


# ---------------------------------------------------------------------------------------------
# output folder
# ---------------------------------------------------------------------------------------------


def _prepare_out(out: Path, config: Any, overwrite: bool, owned: tuple[str, ...] = OWNED) -> bool:
    """Create or validate ``out`` (``owned``: what this demo writes there).

    Returns True when resuming an earlier demo with the same ``config.as_json()``.
    """
    if not out.exists():
        out.mkdir(parents=True)
        return False
    if not out.is_dir():
        raise UserInputError(f"--out {out} is a file; choose a folder")
    entries = [p.name for p in out.iterdir()]
    if not entries:
        return False
    previous = None
    if (out / DEMO_FILE).is_file():
        try:
            previous = json.loads((out / DEMO_FILE).read_text()).get("config")
        except ValueError:
            previous = None
    same = previous == config.as_json()
    foreign = [e for e in entries if e not in owned]
    if same and not overwrite:
        return True
    if not overwrite:
        what = (
            "a demo with other settings"
            if previous is not None
            else f"files the demo did not write ({', '.join(sorted(foreign)[:3])})"
            if foreign
            else "an unfinished demo without demo.json"
        )
        raise UserInputError(
            f"--out {out} already holds {what}; pass --overwrite to replace the demo's files or "
            "choose another --out"
        )
    if foreign and previous is None:
        raise UserInputError(
            f"--out {out} holds files the demo did not write ({', '.join(sorted(foreign)[:3])}); "
            "refusing to overwrite it: choose an empty or new --out"
        )
    for name in owned:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    return False


def _write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _write_csv_atomic(path: Path, df: pd.DataFrame) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# the demo
# ---------------------------------------------------------------------------------------------


def demo(
    out: str | os.PathLike[str] | None = None,
    *,
    quick: bool = False,
    scenario: str = "shifts",
    seeds: int | None = None,
    epochs: int | None = None,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    echo: Callable[[str], Any] | None = None,
    threads: int | None = None,
    head: str = "softmax",
) -> Any:
    """Run the demo (see the module docstring). Mirrors ``shiftbench demo``.

    Args:
        out: output folder (default ``shiftbench-demo`` or, for ``cutout``,
            ``shiftbench-demo-cutout``).
        quick: the ~1 minute smoke version (2 seeds, 2 epochs, 32 px, a subset of images and
            magnitudes). Its numbers only show that the pipeline works.
        scenario: ``shifts`` (SD vs WD under four shifts), ``cutout`` (Table 2) or
            ``frequency`` (ring frequency shortcut, :mod:`shiftbench.demo_frequency`).
        seeds: seeds per method (default 3; quick: 2).
        epochs: training epochs (default 12; quick: 2).
        device: ``auto``, ``cpu``, ``cuda[:i]`` or ``mps``.
        overwrite: replace an ``out`` holding another demo (deletes only the demo's files).
        progress: show progress bars (stderr).
        echo: where to print (default: ``print``).
        threads: torch CPU threads for this call (default: torch's setting). When other
            processes keep the cores busy, 1 thread can be several times faster than 2
            (OpenMP threads wait on each other when one is descheduled).
        head: ``softmax`` (default) or ``binary-logit`` (one logit, BCE, SD's γ acting on it;
            see docs/concepts/spectral-decoupling.md).

    Returns:
        :class:`DemoResult` with the file paths, the summary table and per-phase seconds
        (``frequency``: :class:`shiftbench.demo_frequency.FrequencyDemoResult`).
    """

    say = echo or print
    if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
        raise UserInputError(f"--threads must be a positive integer; got {threads!r}")
    if scenario == "frequency":
        from shiftbench.demo_frequency import frequency_demo

        return frequency_demo(
            out, quick=quick, seeds=seeds, epochs=epochs, device=device, overwrite=overwrite,
            progress=progress, echo=say, threads=threads, head=head,
        )  # fmt: skip
    config = demo_config(scenario, quick=quick, seeds=seeds, epochs=epochs, head=head)
    out_dir = (
        Path(out)
        if out is not None
        else Path("shiftbench-demo" if scenario == "shifts" else "shiftbench-demo-cutout")
    )
    resuming = _prepare_out(out_dir, config, overwrite)
    if resuming:
        say(f"resuming the demo in {out_dir} (finished checkpoints and cells are reused)")
    body = _shifts_demo if scenario == "shifts" else _cutout_demo
    result = run_recorded(
        out_dir, config, threads, lambda: body(out_dir, config, device, progress, say)
    )
    _print_report(result, say)
    return result


def run_recorded(out_dir: Path, config: Any, threads: int | None, body: Callable[[], Any]) -> Any:
    """Run a demo scenario's ``body`` with its status file and torch threads around it.

    Writes ``demo.json`` as ``running`` (config, threads) before and ``complete`` (phase times,
    files) after; ``threads`` (if given) sets torch's thread count for the call only and the
    previous count is restored even on failure. Shared by every scenario so that they record
    the same things the same way.
    """
    import torch

    t_all = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    state: dict[str, Any] = {
        "config": config.as_json(),
        "status": "running",
        "torch_threads": torch.get_num_threads(),
    }
    _write_json_atomic(out_dir / DEMO_FILE, state)
    try:
        result = body()
    finally:
        torch.set_num_threads(previous_threads)
    result.seconds["total"] = round(time.perf_counter() - t_all, 1)
    state.update(
        status="complete",
        seconds=result.seconds,
        files={k: str(v) for k, v in result.files.items()},
    )
    _write_json_atomic(out_dir / DEMO_FILE, state)
    return result


def _train_methods(
    jobs: list[tuple[str, Path, dict[str, Any]]],
    config: DemoConfig,
    ckpt_dir: Path,
    device: str,
    progress: bool,
) -> tuple[list[Path], int]:
    """Train each (name, data, method kwargs) for every seed; returns checkpoints, #reused."""
    from shiftbench.training import load_training_data, train

    paths: list[Path] = []
    reused = 0
    loaded: dict[Path, Any] = {}
    for name, data, kwargs in jobs:
        missing = [s for s in config.seeds if not (ckpt_dir / f"{name}_seed{s}.pt").exists()]
        td = None
        if missing:
            if data not in loaded:
                loaded[data] = load_training_data(
                    data, input_size=config.input_size, limit=config.train_limit
                )
            td = loaded[data]
        results = train(
            data,
            out=ckpt_dir,
            name=name,
            arch=config.arch,
            seeds=list(config.seeds),
            epochs=config.epochs,
            augment=config.augment,
            input_size=config.input_size,
            batch_size=config.batch_size,
            lr=config.lr,
            optimizer=config.optimizer,
            device=device,
            if_exists="skip",
            progress=progress,
            training_data=td,
            head=config.head,  # type: ignore[arg-type]
            **kwargs,
        )
        paths += [r.checkpoint for r in results]
        reused += sum(r.reused for r in results)
    return paths, reused


def _shifts_demo(
    out: Path, config: DemoConfig, device: str, progress: bool, say: Callable[[str], Any]
) -> DemoResult:
    from shiftbench import report
    from shiftbench.registry import get_shift
    from shiftbench.runner import run

    data_dir = demo_data_dir()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    say(
        f"training {len(config.seeds)} seeds × (wd, sd) {config.arch} at {config.input_size} px, "
        f"{config.epochs} epochs, on {data_dir / 'manifest.csv'} (split == train)"
    )
    ckpts, reused = _train_methods(
        [
            (
                "wd",
                data_dir / "manifest.csv",
                {"method": "wd", "weight_decay": config.wd_weight_decay},
            ),
            ("sd", data_dir / "manifest.csv", {"method": "sd", "sd_lambda": config.sd_lambda}),
        ],
        config,
        out / "checkpoints",
        device,
        progress,
    )
    seconds["train"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    shifts = []
    for name in SHIFTS:
        shift = get_shift(name)
        if config.magnitudes is not None:
            mags = tuple(shift.check_magnitude(m) for m in config.magnitudes[name])
            # A per-instance sweep (as `shiftbench run --magnitudes blur=...` builds): run() takes
            # one list for all shifts, but blur (kernel px) and the stains (fraction kept) differ.
            shift.magnitudes = mags  # type: ignore[misc]
        shifts.append(shift)
    run_dir = out / "run"
    say(f"evaluating {len(ckpts)} checkpoints under {', '.join(SHIFTS)} → {run_dir}")
    run(
        ckpts,
        data_dir / "test.csv",
        shifts,
        out=run_dir,
        resume=(run_dir / "manifest.json").exists(),
        device=device,
        seed=0,
        limit=config.test_limit,
        n_boot=200 if config.quick else 1000,
        workers=0,
        progress=progress,
    )
    seconds["evaluate"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    n_boot = 200 if config.quick else 2000
    board = report.leaderboard(
        run_dir,
        out=out / "leaderboard",
        by="method",
        baseline="wd",
        metric="balanced_accuracy",
        n_boot=n_boot,
        title="shiftbench demo: SD vs WD on oral OSCC tiles",
    )
    fig = report.plot(
        run_dir,
        out=out / "accuracy_vs_magnitude.png",
        metric="accuracy",
        hue="method",
        band="sd",
        title="accuracy vs shift magnitude (mean ± 1 SD over seeds)",
    )
    metrics = pd.read_csv(run_dir / "metrics.csv")
    summary = _shift_summary(metrics)
    _write_csv_atomic(out / "summary.csv", summary)
    seconds["report"] = round(time.perf_counter() - t0, 1)
    files = {
        "checkpoints": out / "checkpoints",
        "run": run_dir,
        "predictions": run_dir / "predictions",
        "metrics": run_dir / "metrics.csv",
        **{f"leaderboard_{k}": v for k, v in board.paths.items()},
        **{f"figure_{k}": v for k, v in fig.paths.items()},
        "summary": out / "summary.csv",
    }
    return DemoResult(out, config, ckpts, run_dir, summary, files, seconds, reused)


def _mean_sd(values: pd.Series) -> tuple[float, float]:
    v = values.astype(float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def _shift_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per method: clean accuracy and, per shift, the mean accuracy over the sweep.

    Each is a mean and SD (ddof=1) over seeds (one value per checkpoint first).
    """
    rows = []
    clean_mask = _identity_mask(metrics)
    for method, g in metrics.groupby("method", sort=True):
        row: dict[str, Any] = {"method": method, "n_seeds": g["checkpoint"].nunique()}
        clean = g[clean_mask.loc[g.index]].groupby("checkpoint")["accuracy"].first()
        row["clean_accuracy_mean"], row["clean_accuracy_sd"] = _mean_sd(clean)
        clean_bal = g[clean_mask.loc[g.index]].groupby("checkpoint")["balanced_accuracy"].first()
        row["clean_balanced_accuracy_mean"], row["clean_balanced_accuracy_sd"] = _mean_sd(clean_bal)
        for shift, gs in g.groupby("shift", sort=True):
            per_ck = gs.groupby("checkpoint")["accuracy"].mean()
            row[f"{shift}_sweep_accuracy_mean"], row[f"{shift}_sweep_accuracy_sd"] = _mean_sd(
                per_ck
            )
        rows.append(row)
    return pd.DataFrame(rows)


def _identity_mask(metrics: pd.DataFrame) -> pd.Series:
    from shiftbench.registry import get_shift_class

    ident = metrics["shift"].map(lambda s: float(get_shift_class(s).identity))
    return metrics["magnitude"].astype(float) == ident


def _cutout_demo(
    out: Path, config: DemoConfig, device: str, progress: bool, say: Callable[[str], Any]
) -> DemoResult:
    from shiftbench.cutout_set import make_cutout_set
    from shiftbench.runner import run

    data_dir = demo_data_dir()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    set_dir = out / "cutout_set"
    if not (set_dir / "cutout_set.json").is_file():
        say(f"building the cutout set from {data_dir / 'manifest.csv'} → {set_dir}")
        make_cutout_set(
            data_dir / "manifest.csv",
            set_dir,
            positive_class="OSCC",
            n_patches=config.n_patches,
            patch_size=config.patch_size,
            seed=0,
            overwrite=True,
        )
    seconds["cutout_set"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    train_csv = set_dir / "train" / "manifest.csv"
    control_csv = set_dir / "control_train" / "manifest.csv"
    say(
        f"training {len(config.seeds)} seeds × (wd, sd Eq. 2, control_wd) {config.arch} at "
        f"{config.input_size} px, {config.epochs} epochs"
    )
    ckpts, reused = _train_methods(
        [
            ("wd", train_csv, {"method": "wd", "weight_decay": config.wd_weight_decay}),
            (
                "sd",
                train_csv,
                {"method": "sd", "sd_lambdas": config.sd_lambdas, "sd_gammas": config.sd_gammas},
            ),
            (
                "control_wd",
                control_csv,
                {"method": "wd", "weight_decay": config.wd_weight_decay},
            ),
        ],
        config,
        out / "checkpoints",
        device,
        progress,
    )
    seconds["train"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    run_dir = out / "run"
    test_csv = set_dir / "test" / "manifest.csv"
    say(f"evaluating {len(ckpts)} checkpoints on the cutout test set → {run_dir}")
    # The test set itself is the shift; evaluate it as is (the cutout shift at its identity).
    run(
        ckpts,
        test_csv,
        ["cutout"],
        out=run_dir,
        magnitudes=[0],
        resume=(run_dir / "manifest.json").exists(),
        device=device,
        seed=0,
        limit=config.test_limit,
        n_boot=200 if config.quick else 1000,
        workers=0,
        progress=progress,
    )
    seconds["evaluate"] = round(time.perf_counter() - t0, 1)

    metrics = pd.read_csv(run_dir / "metrics.csv")
    names = {p.stem: p for p in ckpts}
    metrics = metrics[metrics["checkpoint"].isin(names)]
    metrics = metrics.assign(
        variant=metrics["checkpoint"].str.replace(r"_seed\d+$", "", regex=True)
    )
    rows = []
    for variant in ("wd", "sd", "control_wd"):
        g = metrics[metrics["variant"] == variant]
        acc_m, acc_s = _mean_sd(g["accuracy"])
        rec_m, rec_s = _mean_sd(g["recall"])
        rows.append(
            {
                "model": variant,
                "n_seeds": len(g),
                "accuracy_mean": acc_m,
                "accuracy_sd": acc_s,
                "recall_mean": rec_m,
                "recall_sd": rec_s,
            }
        )
    table = pd.DataFrame(rows)
    _write_csv_atomic(out / "table2.csv", table)
    files = {
        "cutout_set": set_dir,
        "checkpoints": out / "checkpoints",
        "run": run_dir,
        "metrics": run_dir / "metrics.csv",
        "table2": out / "table2.csv",
    }
    return DemoResult(out, config, ckpts, run_dir, table, files, seconds, reused)


# ---------------------------------------------------------------------------------------------
# printing
# ---------------------------------------------------------------------------------------------


def _fmt(mean: float, sd: float) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.3f}" if pd.isna(sd) else f"{mean:.3f} ± {sd:.3f}"


def _print_report(result: DemoResult, say: Callable[[str], Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    cfg = result.config
    summary = result.summary
    if cfg.scenario == "shifts":
        table = Table(title="accuracy, mean ± SD over seeds (sweep = mean over the magnitudes)")
        table.add_column("method")
        table.add_column("seeds", justify="right")
        table.add_column("clean", justify="right")
        table.add_column("clean bal. acc.", justify="right")
        for s in SHIFTS:
            table.add_column(f"{s} sweep", justify="right")
        for _, r in summary.iterrows():
            table.add_row(
                str(r["method"]),
                str(r["n_seeds"]),
                _fmt(r["clean_accuracy_mean"], r["clean_accuracy_sd"]),
                _fmt(r["clean_balanced_accuracy_mean"], r["clean_balanced_accuracy_sd"]),
                *[
                    _fmt(r.get(f"{s}_sweep_accuracy_mean"), r.get(f"{s}_sweep_accuracy_sd"))
                    for s in SHIFTS
                ],
            )
    else:
        table = Table(
            title=f"cutout test set (paper Table 2, {cfg.head} head): mean ± SD over seeds"
        )
        for c in ("model", "seeds", "accuracy", "recall (OSCC)"):
            table.add_column(c, justify="left" if c == "model" else "right")
        for _, r in summary.iterrows():
            table.add_row(
                str(r["model"]),
                str(r["n_seeds"]),
                _fmt(r["accuracy_mean"], r["accuracy_sd"]),
                _fmt(r["recall_mean"], r["recall_sd"]),
            )
    console = Console(file=sys.stdout, width=160)
    with console.capture() as cap:
        console.print(table)
    say(cap.get().rstrip("\n"))
    if cfg.quick:
        say(
            "note: --quick trains tiny models for 2 epochs on a subset; its numbers only show "
            "that the pipeline works. Run without --quick for the real comparison."
        )
    say("files:")
    for key, path in result.files.items():
        say(f"  {key:<22} {path}")
    secs = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    reused = (
        f" ({result.reused_checkpoints} checkpoints reused)" if result.reused_checkpoints else ""
    )
    say(f"done in {secs}{reused}")
