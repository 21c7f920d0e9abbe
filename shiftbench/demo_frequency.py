"""``shiftbench demo --scenario frequency``: an artificial frequency shortcut (Lu et al. 2025).

In ``out`` (default ``shiftbench-demo-frequency/``):

1. ``spurious_set/``: :func:`shiftbench.spurious_set.make_spurious_set` on the vendored oral
   tiles, resized to the training size, with the ``ring`` artifact (band-limited noise at
   ``ring_frequency`` cycles/pixel, ``ring_amplitude`` grey levels RMS) on a share d (the
   *degradation*) of the ``target_class`` training images, for each d in ``degradation``;
2. ``checkpoints/``: ``wd`` and ``sd`` (Eq. 1) models per degradation and seed, with meta
   ``train_degradation``; seed 0 at the highest degradation also keeps a checkpoint every
   ``save_every`` epochs (meta ``epoch``);
3. ``run/{iid,ood}_d<d>/``: :func:`shiftbench.run` of each level's models on its I.I.D. test set
   (the training correlation holds) and O.O.D. test set (the artifact on every image of the
   other class and none of the target class);
4. ``spectra/``: :func:`shiftbench.spectrum` (learning priority) of the final models on the
   clean test images, with the artifact's radial power overlaid and a heat map over
   degradation; ``spectra_epochs/``: the same over training epochs;
5. ``auroc_vs_degradation.{png,pdf,csv}`` (layout of Lu et al. Fig 2: AUROC vs degradation,
   mean ± SD over seeds, I.I.D. and O.O.D.), ``priority_by_degradation.{png,pdf,csv}`` (Fig 3:
   priority curves per degradation with the artifact) and ``summary.csv``.

Resumable like the other scenarios (``demo.json``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from shiftbench.errors import UserInputError

__all__ = ["FrequencyConfig", "FrequencyDemoResult", "frequency_config", "frequency_demo"]

OWNED = (
    "demo.json",
    "source.csv",
    "spurious_set",
    "checkpoints",
    "run",
    "spectra",
    "spectra_epochs",
    "auroc_vs_degradation.png",
    "auroc_vs_degradation.pdf",
    "auroc_vs_degradation.csv",
    "priority_by_degradation.png",
    "priority_by_degradation.pdf",
    "priority_by_degradation.csv",
    "summary.csv",
)
METHODS = ("wd", "sd")


@dataclass(frozen=True)
class FrequencyConfig:
    """Everything that defines the frequency scenario's results (stored in ``demo.json``)."""

    quick: bool
    seeds: tuple[int, ...]
    epochs: int
    scenario: str = "frequency"
    arch: str = "resnet10t"
    input_size: int = 48
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 2e-3
    augment: str = "basic"
    wd_weight_decay: float = 0.05
    sd_lambda: float = 0.1
    head: str = "softmax"
    ring_frequency: float = 0.25
    ring_amplitude: float = 16.0
    target_class: str = "Normal"
    degradation: tuple[float, ...] = (0.0, 0.5, 1.0)
    source_rows: int | None = None  # quick: the first N rows of the vendored manifest
    test_limit: int | None = None
    spectrum_limit: int | None = 96
    save_every: int = 2
    data_fingerprint: str = ""

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["seeds"] = list(self.seeds)
        d["degradation"] = list(self.degradation)
        return d


def frequency_config(
    *,
    quick: bool = False,
    seeds: int | None = None,
    epochs: int | None = None,
    head: str = "softmax",
) -> FrequencyConfig:
    """The scenario's settings (see docs/tutorials/demo.md).

    Full: 2 seeds per method and degradation, ``resnet10t`` at 48 px, 6 epochs, d ∈ {0, 0.5, 1},
    ring at 0.25 cycles/pixel with 16 grey levels RMS on Normal, spectra of 96 test images
    (12 models: sized to stay well inside 10 minutes on 2 quiet cores).
    Quick (CI): 1 seed, 2 epochs, 32 px, the first 160 manifest rows, 32 test images, spectra of
    16 images.
    """
    from shiftbench.demo import HEADS, _data_fingerprint

    if head not in HEADS:
        raise UserInputError(f"--head must be one of {', '.join(HEADS)}; got {head!r}")
    n_seeds = seeds if seeds is not None else (1 if quick else 2)
    if isinstance(n_seeds, bool) or int(n_seeds) < 1:
        raise UserInputError(f"--seeds must be a positive number of seeds; got {seeds!r}")
    n_epochs = epochs if epochs is not None else (2 if quick else 6)
    if int(n_epochs) < 1:
        raise UserInputError(f"--epochs must be >= 1; got {epochs!r}")
    common = {
        "seeds": tuple(range(int(n_seeds))),
        "epochs": int(n_epochs),
        "head": head,
        "data_fingerprint": _data_fingerprint(),
    }
    if quick:
        return FrequencyConfig(
            quick=True,
            input_size=32,
            source_rows=160,
            test_limit=32,
            spectrum_limit=16,
            save_every=1,
            **common,
        )
    return FrequencyConfig(quick=False, **common)


@dataclass
class FrequencyDemoResult:
    """What :func:`frequency_demo` wrote (paths inside ``out``)."""

    out: Path
    config: FrequencyConfig
    checkpoints: list[Path]
    summary: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def frequency_demo(
    out: Any = None,
    *,
    quick: bool = False,
    seeds: int | None = None,
    epochs: int | None = None,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    echo: Callable[[str], Any] | None = None,
    threads: int | None = None,
    head: str = "softmax",
) -> FrequencyDemoResult:
    """Run the frequency-shortcut scenario (see the module docstring); mirrors
    ``shiftbench demo --scenario frequency``."""

    from shiftbench.demo import _prepare_out, run_recorded

    say = echo or print
    config = frequency_config(quick=quick, seeds=seeds, epochs=epochs, head=head)
    out_dir = Path(out) if out is not None else Path("shiftbench-demo-frequency")
    resuming = _prepare_out(out_dir, config, overwrite, owned=OWNED)
    if resuming:
        say(f"resuming the demo in {out_dir} (finished checkpoints and cells are reused)")
    result = run_recorded(
        out_dir, config, threads, lambda: _run(out_dir, config, device, progress, say)
    )
    _print_report(result, say)
    return result


# ---------------------------------------------------------------------------------------------
# steps
# ---------------------------------------------------------------------------------------------


def _ring(config: FrequencyConfig) -> Any:
    from shiftbench.registry import get_shift

    return get_shift("ring", frequency=config.ring_frequency)


def _source(out: Path, config: FrequencyConfig) -> Path:
    """The vendored manifest, or (quick) a CSV of its first rows with absolute image paths."""
    from shiftbench.demo import _write_csv_atomic, demo_data_dir

    manifest = demo_data_dir() / "manifest.csv"
    if config.source_rows is None:
        return manifest
    table = pd.read_csv(manifest).iloc[: config.source_rows]
    table["path"] = [str(manifest.parent / p) for p in table["path"]]
    path = out / "source.csv"
    if not path.is_file():
        _write_csv_atomic(path, table)
    return path


def _build_set(out: Path, config: FrequencyConfig, say: Callable[[str], Any]) -> Path:
    from shiftbench.spurious_set import make_spurious_set

    set_dir = out / "spurious_set"
    if not (set_dir / "spurious_set.json").is_file():
        source = _source(out, config)
        say(
            f"building the ring-artifact set (f = {config.ring_frequency:g} cycles/px, "
            f"{config.ring_amplitude:g} grey levels RMS, on {config.target_class}, d = "
            f"{', '.join(f'{d:g}' for d in config.degradation)}) from {source} → {set_dir}"
        )
        make_spurious_set(
            source,
            set_dir,
            artifact=("ring", config.ring_amplitude),
            params={"frequency": config.ring_frequency},
            target_class=config.target_class,
            degradation=list(config.degradation),
            seed=0,
            overwrite=True,
            image_size=config.input_size,
        )
    return set_dir


def _train_all(
    set_dir: Path, config: FrequencyConfig, ckpt_dir: Path, device: str, progress: bool
) -> tuple[dict[tuple[str, float], list[Path]], list[Path]]:
    """Train every (method, degradation, seed); returns final and per-epoch checkpoints."""
    from shiftbench.training import load_training_data, train

    finals: dict[tuple[str, float], list[Path]] = {}
    epochs: list[Path] = []
    top = max(config.degradation)
    method_kwargs = {
        "wd": {"method": "wd", "weight_decay": config.wd_weight_decay},
        "sd": {"method": "sd", "sd_lambda": config.sd_lambda},
    }
    for d in config.degradation:
        data = set_dir / f"train_d{d:g}.csv"
        td = None
        for method in METHODS:
            name = f"{method}_d{d:g}"
            seeds = list(config.seeds)
            if any(not (ckpt_dir / f"{name}_seed{s}.pt").exists() for s in seeds) and td is None:
                td = load_training_data(data, input_size=config.input_size)
            # seed 0 at the highest degradation also keeps per-epoch checkpoints
            groups = (
                [([seeds[0]], config.save_every), (seeds[1:], None)]
                if d == top
                else [(seeds, None)]
            )
            paths: list[Path] = []
            for group, save_every in groups:
                if not group:
                    continue
                results = train(
                    data,
                    out=ckpt_dir,
                    name=name,
                    arch=config.arch,
                    seeds=group,
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
                    save_every=save_every,
                    extra_meta={"train_degradation": d},
                    **method_kwargs[method],
                )
                paths += [r.checkpoint for r in results]
                if save_every:
                    epochs += sorted(
                        ckpt_dir.glob(f"{name}_seed{group[0]}_epoch*.pt"),
                        key=lambda p: int(p.stem.rsplit("epoch", 1)[1]),
                    )
            finals[(method, d)] = paths
    return finals, epochs


def _evaluate(
    set_dir: Path,
    finals: dict[tuple[str, float], list[Path]],
    config: FrequencyConfig,
    out: Path,
    device: str,
    progress: bool,
) -> pd.DataFrame:
    """AUROC (and accuracy) of every final checkpoint on its level's I.I.D. and O.O.D. tests."""
    from shiftbench.runner import run

    frames = []
    for d in config.degradation:
        ckpts = [p for (m, dd), ps in finals.items() if dd == d for p in ps]
        for split in ("iid", "ood"):
            run_dir = out / "run" / f"{split}_d{d:g}"
            run(
                ckpts,
                set_dir / f"{split}_test_d{d:g}.csv",
                [_ring(config)],
                out=run_dir,
                magnitudes=[0],  # the test set carries the artifact itself: evaluate as is
                resume=(run_dir / "manifest.json").exists(),
                device=device,
                seed=0,
                limit=config.test_limit,
                n_boot=0,
                workers=0,
                progress=progress,
            )
            m = pd.read_csv(run_dir / "metrics.csv")
            frames.append(m.assign(test=split, degradation=d))
    metrics = pd.concat(frames, ignore_index=True)
    keep = ["checkpoint", "method", "seed", "degradation", "test", "auroc", "accuracy"]
    return metrics[keep]


def _spectra(
    set_dir: Path,
    finals: dict[tuple[str, float], list[Path]],
    epochs: list[Path],
    config: FrequencyConfig,
    out: Path,
    device: str,
) -> tuple[Any, Any]:
    from shiftbench.spectrum import spectrum

    clean = set_dir / f"iid_test_d{min(config.degradation):g}.csv"
    artifact = (_ring(config), config.ring_amplitude)
    common = {"limit": config.spectrum_limit, "artifact": artifact, "device": device}
    final_paths = [p for ps in finals.values() for p in ps]
    by_degradation = spectrum(
        final_paths, clean, out=out / "spectra", heatmap_by="train_degradation", **common
    )
    by_epoch = (
        spectrum(epochs, clean, out=out / "spectra_epochs", heatmap_by="epoch", **common)
        if epochs
        else None
    )
    return by_degradation, by_epoch


def _summary(
    metrics: pd.DataFrame, spec_table: pd.DataFrame, config: FrequencyConfig
) -> pd.DataFrame:
    """Per method × degradation: AUROC mean/SD over seeds (I.I.D., O.O.D.) and the priority
    at the ring's frequency (the ring nearest ``ring_frequency``)."""
    import numpy as np

    freqs = np.sort(spec_table["frequency"].unique())
    f_ring = float(freqs[np.argmin(np.abs(freqs - config.ring_frequency))])
    at_ring = spec_table[np.isclose(spec_table["frequency"], f_ring)]
    rows = []
    for (method, d), g in metrics.groupby(["method", "degradation"], sort=True):
        row: dict[str, Any] = {"method": method, "degradation": d}
        for split in ("iid", "ood"):
            v = g[g["test"] == split]["auroc"].astype(float)
            row[f"{split}_auroc_mean"] = v.mean()
            row[f"{split}_auroc_sd"] = v.std(ddof=1) if len(v) > 1 else float("nan")
            row["n_seeds"] = len(v)
        p = at_ring[(at_ring["method"] == method) & (at_ring["train_degradation"] == d)]
        row["priority_at_ring_mean"] = p["priority"].mean()
        row["priority_at_ring_sd"] = p["priority"].std(ddof=1) if len(p) > 1 else float("nan")
        row["ring_bin_frequency"] = f_ring
        rows.append(row)
    return pd.DataFrame(rows)


def _run(
    out: Path, config: FrequencyConfig, device: str, progress: bool, say: Callable[[str], Any]
) -> FrequencyDemoResult:
    from shiftbench import demo_frequency_figures as figs
    from shiftbench.demo import _write_csv_atomic

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    set_dir = _build_set(out, config, say)
    seconds["spurious_set"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    n_models = len(METHODS) * len(config.degradation) * len(config.seeds)
    say(
        f"training {n_models} models ((wd, sd) × {len(config.degradation)} degradations × "
        f"{len(config.seeds)} seeds) {config.arch} at {config.input_size} px, {config.epochs} "
        "epochs"
    )
    finals, epochs = _train_all(set_dir, config, out / "checkpoints", device, progress)
    seconds["train"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    say("evaluating on the I.I.D. and O.O.D. test sets of every degradation → run/")
    metrics = _evaluate(set_dir, finals, config, out, device, progress)
    seconds["evaluate"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    say("learning priority (input-gradient spectra) → spectra/, spectra_epochs/")
    by_degradation, _by_epoch = _spectra(set_dir, finals, epochs, config, out, device)
    seconds["spectra"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    summary = _summary(metrics, by_degradation.table, config)
    _write_csv_atomic(out / "summary.csv", summary)
    fig2 = figs.write_auroc_vs_degradation(metrics, out / "auroc_vs_degradation")
    fig3 = figs.write_priority_by_degradation(
        by_degradation.table, out / "priority_by_degradation", config.ring_frequency
    )
    seconds["report"] = round(time.perf_counter() - t0, 1)
    files = {
        "spurious_set": set_dir,
        "checkpoints": out / "checkpoints",
        "run": out / "run",
        "summary": out / "summary.csv",
        **{f"fig2_{k}": v for k, v in fig2.items()},
        **{f"fig3_{k}": v for k, v in fig3.items()},
        **{f"spectra_{k}": v for k, v in by_degradation.paths.items()},
    }
    if _by_epoch is not None:
        files.update({f"spectra_epochs_{k}": v for k, v in _by_epoch.paths.items()})
    ckpts = [p for ps in finals.values() for p in ps]
    return FrequencyDemoResult(out, config, ckpts, summary, files, seconds)


def _print_report(result: FrequencyDemoResult, say: Callable[[str], Any]) -> None:
    from shiftbench.demo import _fmt

    say("AUROC (mean ± SD over seeds) and learning priority at the ring's frequency:")
    say(f"{'method':<7}{'d':>5}  {'I.I.D. AUROC':>15}  {'O.O.D. AUROC':>15}  {'priority@ring':>15}")
    for _, r in result.summary.iterrows():
        say(
            f"{r['method']:<7}{r['degradation']:>5g}  "
            f"{_fmt(r['iid_auroc_mean'], r['iid_auroc_sd']):>15}  "
            f"{_fmt(r['ood_auroc_mean'], r['ood_auroc_sd']):>15}  "
            f"{_fmt(r['priority_at_ring_mean'], r['priority_at_ring_sd']):>15}"
        )
    if result.config.quick:
        say("note: --quick only shows that the pipeline works; its numbers mean nothing.")
    say("files:")
    for key, path in result.files.items():
        say(f"  {key:<28} {path}")
    say("done in " + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items()))
