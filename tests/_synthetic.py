"""A fixed, seeded synthetic predictions table in the schema of ``predictions.parquet``.

For tests of anything downstream of the runner (statistics, leaderboards, figures) without
training or evaluating a model. The numbers are simple enough to reason about by hand:

* labels: ``n_samples`` samples, class ``c`` with probability ``class_probs[c]`` (default 35 %
  class 0, 65 % class 1, like the oral OSCC data).
* logits of checkpoint k (method, seed) on sample i at shift severity ``s`` in [0, 1]
  (``s = position of the magnitude in the sweep / (len(sweep) − 1)``, identity first):
  ``signal_k · (1 − decay_method · s) · onehot(y_i) + 0.9 · Z_i + 0.5 · E_ik + 0.3 · s · U_iks``
  with ``Z`` shared by all checkpoints (sample difficulty: what makes paired tests paired),
  ``E`` per checkpoint, ``U`` per checkpoint and magnitude, all standard normal, and
  ``signal_k = signal_method + 0.15 · N(0, 1)`` (seed-to-seed spread).
* probabilities: softmax of the logits (float32); ``pred`` = argmax.
* The identity magnitude (first of each sweep, ``s = 0``) is computed once per checkpoint and its
  rows are repeated under every shift, as the runner does.

Defaults: methods ``wd`` (signal 2.0, decay 0.6: better clean, less robust) and ``sd`` (signal
1.9, decay 0.3), 5 seeds, shifts ``synth_blur`` (1, 3, 7, 11, 15, 19; identity 1) and
``synth_stain`` (1.0, 0.8, 0.6, 0.4, 0.2, 0.0; identity 1.0). The shift names are deliberately
not registered, so results do not depend on which real shifts exist.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_SHIFTS: dict[str, tuple[float, ...]] = {
    "synth_blur": (1.0, 3.0, 7.0, 11.0, 15.0, 19.0),
    "synth_stain": (1.0, 0.8, 0.6, 0.4, 0.2, 0.0),
}
DEFAULT_METHODS: dict[str, tuple[float, float]] = {"wd": (2.0, 0.6), "sd": (1.9, 0.3)}


def synthetic_predictions(
    *,
    n_samples: int = 150,
    methods: Mapping[str, tuple[float, float]] | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    shifts: Mapping[str, Sequence[float]] | None = None,
    class_names: Sequence[str] = ("Normal", "OSCC"),
    class_probs: Sequence[float] | None = None,
    seed: int = 0,
    sample_id_offset: int = 1000,
) -> pd.DataFrame:
    """The predictions table of a synthetic run (see the module docstring).

    Args:
        n_samples: test samples.
        methods: ``{method: (signal, decay)}``.
        seeds: training seeds per method (one checkpoint each, named ``<method>_seed<seed>``).
        shifts: ``{shift: magnitudes}``, identity first.
        class_names: names of the classes (``prob_<name>`` columns).
        class_probs: label distribution (default 35/65 for 2 classes, uniform otherwise).
        seed: seed of everything random.
        sample_id_offset: sample ids are ``offset + i`` (not 0..n-1, to catch index mix-ups).

    Returns:
        A DataFrame with the columns of ``predictions.parquet``: checkpoint, shift, magnitude,
        sample_id, path, label, pred, prob_<class>..., method, seed.
    """
    methods = dict(DEFAULT_METHODS if methods is None else methods)
    shifts = {k: tuple(map(float, v)) for k, v in (shifts or DEFAULT_SHIFTS).items()}
    n_classes = len(class_names)
    if class_probs is None:
        class_probs = (0.35, 0.65) if n_classes == 2 else (1.0 / n_classes,) * n_classes
    rng = np.random.default_rng(seed)
    labels = rng.choice(n_classes, size=n_samples, p=np.asarray(class_probs))
    onehot = np.eye(n_classes)[labels]
    difficulty = rng.normal(size=(n_samples, n_classes))
    sample_ids = sample_id_offset + np.arange(n_samples)

    frames = []
    for method, (signal, decay) in methods.items():
        for s in seeds:
            ck_rng = np.random.default_rng([seed, s, sum(map(ord, method))])
            ck_signal = signal + 0.15 * ck_rng.normal()
            own_noise = ck_rng.normal(size=(n_samples, n_classes))
            name = f"{method}_seed{s}"
            identity_probs = None
            for shift, mags in shifts.items():
                for pos, mag in enumerate(mags):
                    severity = pos / max(len(mags) - 1, 1)
                    if pos == 0 and identity_probs is not None:
                        probs = identity_probs  # identity evaluated once, repeated per shift
                    else:
                        cell_noise = ck_rng.normal(size=(n_samples, n_classes))
                        logits = (
                            ck_signal * (1.0 - decay * severity) * onehot
                            + 0.9 * difficulty
                            + 0.5 * own_noise
                            + 0.3 * severity * cell_noise
                        )
                        e = np.exp(logits - logits.max(axis=1, keepdims=True))
                        probs = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
                        if pos == 0:
                            identity_probs = probs
                    frame = {
                        "checkpoint": name,
                        "shift": shift,
                        "magnitude": np.full(n_samples, mag, dtype=np.float64),
                        "sample_id": sample_ids.astype(np.int64),
                        "path": [f"npz:{i}" for i in range(n_samples)],
                        "label": labels.astype(np.int64),
                        "pred": probs.argmax(axis=1).astype(np.int64),
                    }
                    for c, cname in enumerate(class_names):
                        frame[f"prob_{cname}"] = probs[:, c]
                    frame["method"] = method
                    frame["seed"] = np.int64(s)
                    frames.append(pd.DataFrame(frame))
    return pd.concat(frames, ignore_index=True)


def write_run(
    run_dir: str | Path,
    table: pd.DataFrame,
    class_names: Sequence[str] | None = None,
    *,
    metrics: bool = True,
    metrics_n_boot: int = 0,
) -> Path:
    """Write ``table`` as a run directory: predictions.parquet, metrics.csv, manifest.json.

    ``metrics.csv`` comes from :func:`shiftbench.metrics.cell_metrics` (``metrics_n_boot``
    resamples; 0 = no CIs, fast); ``metrics=False`` skips it (reports read only predictions).
    """
    from shiftbench.metrics import cell_metrics

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    prob_cols = [c for c in table.columns if c.startswith("prob_")]
    if class_names is None:
        class_names = [c[len("prob_") :] for c in prob_cols]
    table.to_parquet(run_dir / "predictions.parquet", index=False)
    base = ["checkpoint", "shift", "magnitude", "sample_id", "path", "label", "pred", *prob_cols]
    meta = [c for c in table.columns if c not in base]
    if metrics:
        rows = []
        for (ck, shift, mag), g in table.groupby(["checkpoint", "shift", "magnitude"], sort=False):
            m = cell_metrics(g["label"].to_numpy(), g[prob_cols].to_numpy(), n_boot=metrics_n_boot)
            rows.append(
                {"checkpoint": ck, "shift": shift, "magnitude": mag, **m, **g[meta].iloc[0]}
            )
        pd.DataFrame(rows).to_csv(run_dir / "metrics.csv", index=False)
    manifest = {"command": "tests/_synthetic.py", "class_names": list(class_names)}
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return run_dir
