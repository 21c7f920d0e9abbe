"""Speed of Macenko stain normalisation: shiftbench (batched torch) vs staintools vs torchstain.

All three normalise the same clean 224×224 oral tiles to the same target image, once each
(after a short warm-up), on the CPU. Reported per tool: images/s, hours per million 224² images,
the ratio to staintools, and the agreement of the output with staintools' (share of pixels whose
largest channel difference is ≤ 1 and ≤ 2 grey levels, and the maximum).

    nice python benchmarks/perf_normalize.py [--n 256] [--threads 2]

Writes ``results/perf_normalize<tag>.csv`` and ``results/README-perf_normalize<tag>.md``
(atomically).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from _tables import to_csv, to_markdown, write_atomic

from shiftbench.normalize import StainNormalizer

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
ORAL = SHARED / "oral_oscc_224"
TARGET = SHARED / "he_images" / "histoqc_template1.png"


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def load_tiles(n: int) -> np.ndarray:
    with open(ORAL / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if not r["quality_flag"]]
    stride = max(1, len(rows) // n)
    return np.stack([read_rgb(ORAL / r["path"]) for r in rows[::stride][:n]])


def timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run_shiftbench(tiles: np.ndarray, target: np.ndarray, batch: int) -> Callable[[], np.ndarray]:
    norm = StainNormalizer().fit(target)
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).contiguous()
    norm(x[:batch])  # warm-up

    def go() -> np.ndarray:
        outs = [norm(x[i : i + batch]).images for i in range(0, len(x), batch)]
        return torch.cat(outs).permute(0, 2, 3, 1).numpy()

    return go


def run_staintools(tiles: np.ndarray, target: np.ndarray) -> Callable[[], np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import staintools
    norm = staintools.StainNormalizer("macenko")
    norm.fit(target.copy())
    norm.transform(tiles[0].copy())  # warm-up
    return lambda: np.stack([norm.transform(t.copy()) for t in tiles])


def run_torchstain(tiles: np.ndarray, target: np.ndarray) -> Callable[[], np.ndarray]:
    import torchstain

    norm = torchstain.normalizers.MacenkoNormalizer(backend="torch")
    norm.fit(torch.from_numpy(target).permute(2, 0, 1).contiguous())
    chw = [torch.from_numpy(t).permute(2, 0, 1).contiguous() for t in tiles]
    norm.normalize(chw[0], stains=False)  # warm-up

    def go() -> np.ndarray:
        return np.stack([norm.normalize(t, stains=False)[0].numpy() for t in chw])

    return go


def agreement(out: np.ndarray, ref: np.ndarray) -> dict[str, str]:
    d = np.abs(out.astype(np.int16) - ref.astype(np.int16)).max(axis=-1)
    return {
        "pct_pixels_le1_vs_staintools": f"{100 * (d <= 1).mean():.3f}",
        "pct_pixels_le2_vs_staintools": f"{100 * (d <= 2).mean():.3f}",
        "max_abs_diff_vs_staintools": str(int(d.max())),
    }


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=256, help="tiles")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--batch", type=int, default=32, help="shiftbench batch size")
    parser.add_argument("--out-dir", type=Path, default=REPO / "results")
    parser.add_argument("--tag", default="", help="suffix of the output names, e.g. _1thread")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    tiles = load_tiles(args.n)
    target = read_rgb(TARGET)
    load_before = uptime()
    runners = {
        "staintools 2.1.2 (spams lasso, per image)": run_staintools(tiles, target),
        "torchstain (torch backend, per image)": run_torchstain(tiles, target),
        f"shiftbench.normalize (batched torch, batch {args.batch})": run_shiftbench(
            tiles, target, args.batch
        ),
    }
    results = {}
    for name, fn in runners.items():
        results[name] = timed(fn)
        print(f"{name}: {results[name][1]:.2f} s", flush=True)
    load_after = uptime()

    ref_out, ref_s = next(iter(results.values()))
    rows = []
    for name, (out, seconds) in results.items():
        per_s = len(tiles) / seconds
        rows.append(
            {
                "tool": name,
                "n_images": len(tiles),
                "seconds": f"{seconds:.2f}",
                "images_per_s": f"{per_s:.1f}",
                "hours_per_million_224px": f"{1e6 / per_s / 3600:.2f}",
                "speed_vs_staintools": f"{ref_s / seconds:.2f}",
                **agreement(out, ref_out),
            }
        )
    name = f"perf_normalize{args.tag}"
    write_atomic(args.out_dir / f"{name}.csv", to_csv(rows))
    command = "nice python " + " ".join(
        shlex.quote(a) for a in [os.path.relpath(__file__, REPO), *sys.argv[1:]]
    )
    readme = f"""# {name}.csv

Produced by (from the repository root):

```
{command}
```

Macenko normalisation of {len(tiles)} clean 224×224 oral tiles (every
{max(1, 1187 // args.n)}th clean row of `shared/data/oral_oscc_224`) to
`shared/data/he_images/histoqc_template1.png`, one timed pass per tool after a one-image
warm-up, CPU only, torch threads {args.threads}, OpenCV threads {args.threads}.
{platform.processor() or platform.machine()}, torch {torch.__version__}, python
{platform.python_version()}.

Load (`uptime`) before: `{load_before}`; after: `{load_after}`. The machine is shared by
several agents, so absolute numbers are noisy; the ratio to staintools in the same run is the
result. The SD paper reports 38.5 h per million images for its Macenko baseline.

Agreement columns compare each tool's output pixels with staintools' (largest channel
difference per pixel, over all pixels of all tiles). torchstain differs by design (Io = 240,
OD threshold 0.15 instead of a Lab tissue mask, least-squares concentrations), so its
agreement is informative only.

{to_markdown(rows)}
"""
    write_atomic(args.out_dir / f"README-{name}.md", readme)
    print(readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
