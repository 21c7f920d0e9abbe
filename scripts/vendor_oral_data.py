"""Build the vendored demo data set ``shiftbench/assets/oral_oscc/`` from the shared oral tiles.

Reproducible: the same source folder and the same OpenCV build give byte-identical files
(``SHA256SUMS`` in the output folder lets you check). Steps:

1. read ``labels.csv`` of ``oral_oscc_224`` and drop every row with a ``quality_flag``
   (both members of each cross-class ``label_conflict`` pair, and the flagged member of each
   ``near_duplicate_of`` pair; the referenced original is kept);
2. resize each 224×224 JPEG to ``--size`` (default 96) with ``cv2.INTER_AREA`` (area averaging,
   the anti-aliased choice for downsizing) and re-encode as JPEG quality ``--quality``
   (default 90) with 4:4:4 chroma (no colour subsampling: stain shifts act on colour);
3. split stratified by class × magnification into train/val/test (default 60/20/20) with
   scikit-learn's ``train_test_split`` and a fixed ``random_state``;
4. write ``manifest.csv`` (``path,label,class_name,magnification,split,source_path,
   source_index,source_repo_split``), ``test.csv`` (the test rows only, same columns, for
   evaluation), ``LICENSE.md`` (licence + attribution), ``SHA256SUMS``. Rows are in a seeded
   random order (numpy ``default_rng(0)``), so a prefix (``--limit N``) holds both classes.

Usage::

    python scripts/vendor_oral_data.py                      # writes shiftbench/assets/oral_oscc
    python scripts/vendor_oral_data.py --check              # rebuild in a temp dir, compare bytes
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "oral_oscc_224"
DEFAULT_OUT = REPO / "shiftbench" / "assets" / "oral_oscc"

LICENSE_TEXT = """\
# Licence and attribution: vendored oral OSCC demo tiles

These {n} images are a downsized copy ({size}×{size} px JPEG, quality {quality}, 4:4:4 chroma)
of the clean rows of `oral_oscc_224` (shiftbench shared data), built by
`scripts/vendor_oral_data.py`. Rows with a `quality_flag` were dropped (16 cross-class
duplicate pairs = 32 files, and 5 within-class near duplicates).

## Original data set (please cite)

Rahman T.Y., Mahanta L.B., Das A.K., Sarma J.D. "Histopathological imaging database for oral
cancer analysis." *Data in Brief* 29 (2020) 105114. doi:10.1016/j.dib.2020.105114.
1,224 H&E images (normal oral epithelium and oral squamous cell carcinoma, 100x and 400x) from
230 patients, Leica ICC50 HD microscope; published on Mendeley Data. The Mendeley licence is
believed to be CC BY 4.0 but was not verified; cite the paper above when you use these images.

## Copy these files were derived from

* Kaggle data set "Histopathologic Oral Cancer Detection using CNNs"
  (`ashenafifasilkebede/dataset`), licence **CC0 1.0 (Public Domain)**.
* Taken from the GitHub repository `atlan-antillia/EfficientNet-Histopathologic-Oral-Cancer`,
  commit `91e63ad9737a08dd7277d2ee3ff0d677c986f27a`,
  `projects/Oral-Cancer/Oral_Cancer_Images/{{train,test}}/{{Normal,OSCC}}/` (files not starting
  with `aug_`). That repository's author resized the 2048×1536 originals to 224×224 (aspect
  ratio squashed from 4:3 to 1:1) and re-encoded them as JPEG. Repository code licence:
  Apache-2.0.

## Caveats

* No patient IDs exist, so the train/val/test split in `manifest.csv` is **not
  patient-disjoint**: images of one patient can fall in different splits. Scores on the test
  split are optimistic for new patients. Use the data for demonstrations and relative
  comparisons (e.g. SD vs WD under the same split), not as a clinical benchmark.
* Each image is a whole microscope field, not a tile at a fixed microns-per-pixel; 100x and
  400x fields differ in scale and stain (the `magnification` column).
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(
    source: Path,
    out: Path,
    *,
    size: int = 96,
    quality: int = 90,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    random_state: int = 0,
) -> pd.DataFrame:
    """Write the vendored copy into ``out`` (which must not exist) and return its manifest."""
    labels = pd.read_csv(source / "labels.csv", keep_default_na=False)
    clean = labels[labels["quality_flag"] == ""].reset_index(drop=True)
    strata = clean["class_name"] + "_" + clean["magnification"]

    # Two stratified cuts: test first, then val out of the rest (fractions of the whole set).
    idx = clean.index.to_numpy()
    rest, test = train_test_split(
        idx, test_size=test_fraction, stratify=strata, random_state=random_state
    )
    train, val = train_test_split(
        rest,
        test_size=val_fraction / (1.0 - test_fraction),
        stratify=strata.iloc[rest],
        random_state=random_state,
    )
    split = pd.Series("", index=clean.index, dtype=object)
    split.iloc[train], split.iloc[val], split.iloc[test] = "train", "val", "test"

    out.mkdir(parents=True)
    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        quality,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    ]
    for rel in clean["path"]:
        bgr = cv2.imread(str(source / rel), cv2.IMREAD_COLOR)  # BGR in, BGR out: no swap needed
        if bgr is None:
            raise SystemExit(f"cannot read {source / rel}")
        small = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", small, params)
        if not ok:
            raise SystemExit(f"cannot encode {rel}")
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(buf.tobytes())

    manifest = pd.DataFrame(
        {
            "path": clean["path"],
            "label": clean["label"].astype(int),
            "class_name": clean["class_name"],
            "magnification": clean["magnification"],
            "split": split,
            "source_path": "oral_oscc_224/" + clean["path"],
            "source_index": clean["source_index"].astype(int),
            "source_repo_split": clean["source_repo_split"],
        }
    )
    # Rows in a seeded random order, so that any prefix (`--limit N`) mixes classes,
    # magnifications and splits instead of starting with one class.
    order = np.random.default_rng(random_state).permutation(len(manifest))
    manifest = manifest.iloc[order].reset_index(drop=True)
    manifest.to_csv(out / "manifest.csv", index=False, lineterminator="\n")
    # The held-out test rows alone, for `shiftbench run --data .../test.csv`.
    test_rows = manifest[manifest["split"] == "test"]
    test_rows.to_csv(out / "test.csv", index=False, lineterminator="\n")
    (out / "LICENSE.md").write_text(
        LICENSE_TEXT.format(n=len(manifest), size=size, quality=quality)
    )
    files = sorted(p for p in out.rglob("*") if p.is_file())
    sums = "".join(f"{sha256(p)}  {p.relative_to(out).as_posix()}\n" for p in files)
    (out / "SHA256SUMS").write_text(sums)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--check", action="store_true", help="rebuild in a temp dir and compare")
    args = ap.parse_args(argv)

    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / "oral_oscc"
            build(args.source, fresh, size=args.size, quality=args.quality)
            want = (fresh / "SHA256SUMS").read_text()
            have = (args.out / "SHA256SUMS").read_text() if args.out.exists() else ""
            if want != have:
                print(f"{args.out} differs from a fresh build", file=sys.stderr)
                return 1
        print(f"{args.out} matches a fresh build")
        return 0

    # Build next to the target, then swap in, so an interrupted run never leaves half a copy.
    tmp = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    manifest = build(args.source, tmp, size=args.size, quality=args.quality)
    if args.out.exists():
        shutil.rmtree(args.out)
    os.replace(tmp, args.out)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    counts = manifest.groupby(["split", "class_name", "magnification"]).size()
    print(counts.to_string())
    print(f"wrote {len(manifest)} images to {args.out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
