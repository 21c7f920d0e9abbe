"""Every table and figure of a report from one TOML spec (``benchmarks/*.toml``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shiftbench.errors import UserInputError
from shiftbench.report.curves import plot
from shiftbench.report.leaderboard import leaderboard
from shiftbench.report.notes import ReportWarning
from shiftbench.report.roc import roc
from shiftbench.report.study import Study, load_runs
from shiftbench.report.write import write_text


@dataclass
class FiguresResult:
    """Outputs of :func:`figures`: ``{name: {kind: path}}`` and the index file."""

    outputs: dict[str, dict[str, Path]]
    index: Path
    notes: list[str]


#: The set choice as a spec spells it, in messages.
_DATASET_KEY = "dataset = "

_TOP_KEYS = {
    "title",
    "root",
    "runs",
    "out",
    "by",
    "baseline",
    "n_boot",
    "seed",
    "ci",
    "plugins",
    "dataset",
    "leaderboard",
    "plot",
    "roc",
}
_ENTRY_KEYS = {
    "leaderboard": {
        "name",
        "runs",
        "metric",
        "by",
        "baseline",
        "shifts",
        "n_boot",
        "seed",
        "ci",
        "title",
        "dataset",
    },
    "plot": {
        "name",
        "runs",
        "metric",
        "hue",
        "shifts",
        "band",
        "n_boot",
        "seed",
        "ci",
        "title",
        "dataset",
        "x",
    },
    "roc": {
        "name",
        "runs",
        "shift",
        "magnitude",
        "by",
        "baseline",
        "n_boot",
        "seed",
        "ci",
        "title",
        "dataset",
    },
}


def _spec_error(spec: Path, message: str) -> UserInputError:
    return UserInputError(f"{spec}: {message}")


# Expected TOML types of spec values (a list: every element of that type).
_SPEC_TYPES: dict[str, Any] = {
    "title": str,
    "root": str,
    "out": str,
    "name": str,
    "by": str,
    "baseline": str,
    "metric": str,
    "hue": str,
    "band": str,
    "shift": str,
    "dataset": str,
    "x": str,
    "n_boot": int,
    "seed": int,
    "ci": (float, int),
    "runs": (str, list),
    "plugins": list,
    "shifts": list,
    "magnitude": (float, int, str),
}


def _check_spec_types(spec: Path, where: str, item: dict[str, Any]) -> None:
    for key, value in item.items():
        want = _SPEC_TYPES.get(key)
        if want is None:
            continue
        ok = isinstance(value, want) and not (isinstance(value, bool) and want is not bool)
        if ok and isinstance(value, list):
            ok = all(isinstance(v, str) for v in value)
        if not ok:
            label = where if where == "top level" else f"[[{where}]] {item.get('name', '?')!r}"
            raise _spec_error(spec, f"{label}: {key} = {value!r} has the wrong type")


def figures(spec: str | Path, *, root: str | Path | None = None) -> FiguresResult:
    """Regenerate every table and figure listed in a TOML spec, from stored run directories.

    The spec (see ``benchmarks/demo.toml`` and ``docs/reference/cli-report.md``) names the runs,
    the output folder, defaults (``by``, ``baseline``, ``n_boot``, ``seed``, ``ci``) and lists
    ``[[leaderboard]]``, ``[[plot]]`` and ``[[roc]]`` entries, each with a unique ``name``.
    Runs with several evaluation sets: ``dataset = "NAME"`` (top level or per entry) picks one
    set; ``x = "dataset"`` in a ``[[plot]]`` draws the ladder of sets (every set, whatever the
    top-level ``dataset``).
    Relative paths are resolved against ``root`` (argument, else the spec's ``root`` key relative
    to the spec file, else the spec's folder). Outputs: ``<out>/<name>/leaderboard.*``,
    ``<out>/<name>.{png,pdf,csv}`` and ``<out>/index.md``. Seeded throughout: running it twice
    gives byte-identical CSV and Markdown files.

    Raises:
        UserInputError: unreadable spec, unknown keys, duplicate names, or any error of the
            entries (prefixed with the entry's name).
    """
    spec = Path(spec)
    cfg = _read_spec(spec)
    base = Path(root) if root is not None else spec.parent / str(cfg.get("root", "."))
    out_dir = base / str(cfg["out"])
    keys = ("by", "baseline", "n_boot", "seed", "ci", "dataset")
    defaults = {k: cfg[k] for k in keys if k in cfg}
    plugins = list(cfg.get("plugins", []))
    studies: dict[tuple[str, ...], Study] = {}

    def study_for(item: dict[str, Any]) -> tuple[Study, list[str]]:
        runs = item.get("runs", cfg.get("runs"))
        if not runs:
            raise _spec_error(spec, f"{item['name']!r}: no 'runs' (top level or in the entry)")
        runs = [runs] if isinstance(runs, str) else list(runs)
        key = tuple(runs)
        if key not in studies:  # a study is an index (no predictions): cheap to keep
            study = load_runs([base / r for r in runs], plugins=plugins)
            study.run_dirs = list(runs)  # as written in the spec: stable across machines
            studies[key] = study
        return studies[key], runs

    outputs: dict[str, dict[str, Path]] = {}
    notes: list[str] = []
    index = [
        f"# {cfg.get('title', 'Figures and tables')}",
        "",
        f"Generated by `shiftbench figures {spec.name}` from stored predictions.",
        "",
    ]
    for kind, item in _entries(spec, cfg):
        name = item["name"]
        opts = {**defaults, **{k: v for k, v in item.items() if k not in ("name", "runs")}}
        if kind == "plot" and item.get("x") == "dataset" and "dataset" not in item:
            opts.pop("dataset", None)  # the ladder draws every set, whatever the default
        try:
            study, runs = study_for(item)
            _check_dataset(kind, study, opts)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ReportWarning)
                outputs[name] = _make(kind, study, out_dir, name, opts)
            notes += [
                f"{name}: {w.message}" for w in caught if issubclass(w.category, ReportWarning)
            ]
        except UserInputError as e:
            raise _spec_error(spec, f"[[{kind}]] {name!r}: {e}") from e
        index += [f"## {name} ({kind})", "", f"runs: {', '.join(runs)}", ""]
        for fkind, p in outputs[name].items():
            index.append(f"- {fkind}: [{p.relative_to(out_dir)}]({p.relative_to(out_dir)})")
        index.append("")
    for n in notes:
        warnings.warn(n, ReportWarning, stacklevel=2)
    if notes:
        index += ["## Warnings", "", *[f"- {n}" for n in notes], ""]
    index_path = out_dir / "index.md"
    write_text(index_path, "\n".join(index))
    return FiguresResult(outputs, index_path, notes)


def _check_dataset(kind: str, study: Study, opts: dict[str, Any]) -> None:
    """Refuse a set choice the study cannot honour, in the spec's words (``dataset = …``).

    The report functions would say the same in the CLI's words (``--dataset NAME``), which a
    spec's author cannot type.
    """
    name = opts.get("dataset")
    ladder = kind == "plot" and opts.get("x") == "dataset"
    if ladder and name is not None:
        raise UserInputError(
            'dataset and x = "dataset" exclude each other: the ladder draws every set'
        )
    if name is not None:
        study.for_dataset(name, option=_DATASET_KEY)
    elif kind == "roc" or (kind == "plot" and not ladder):
        hint = ', or draw the ladder of sets with x = "dataset"' if kind == "plot" else ""
        study.select(None, option=_DATASET_KEY, hint=hint)


def _make(kind: str, study: Study, out_dir: Path, name: str, opts: dict[str, Any]) -> dict:
    """Run one entry; returns its output paths."""
    if kind == "leaderboard":
        opts.pop("hue", None)
        return leaderboard(study, out=out_dir / name, **opts).paths
    if kind == "plot":
        by_default = opts.pop("by", "method")
        opts.setdefault("hue", by_default)
        opts.pop("baseline", None)
        return plot(study, out=out_dir / f"{name}.png", **opts).paths
    if "shift" not in opts or "magnitude" not in opts:
        raise UserInputError("[[roc]] needs 'shift' and 'magnitude'")
    return roc(study, out=out_dir / f"{name}.png", **opts).paths


def _read_spec(spec: Path) -> dict[str, Any]:
    """The parsed spec, with its top-level keys checked."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise UserInputError("shiftbench figures needs Python ≥ 3.11 (tomllib)") from None

    if not spec.is_file():
        raise UserInputError(f"figures spec {spec} does not exist")
    try:
        cfg = tomllib.loads(spec.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise _spec_error(spec, f"not valid TOML ({e})") from e
    unknown = set(cfg) - _TOP_KEYS
    if unknown:
        raise _spec_error(
            spec,
            f"unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(_TOP_KEYS))}",
        )
    if "out" not in cfg:
        raise _spec_error(spec, "missing key 'out' (output folder)")
    return cfg


def _entries(spec: Path, cfg: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(kind, entry)`` of every [[leaderboard]], [[plot]], [[roc]], checked."""
    entries: list[tuple[str, dict[str, Any]]] = []
    for kind in ("leaderboard", "plot", "roc"):
        items = cfg.get(kind, [])
        if not isinstance(items, list):
            raise _spec_error(spec, f"{kind} must be an array of tables ([[{kind}]])")
        for item in items:
            bad = set(item) - _ENTRY_KEYS[kind]
            if bad:
                raise _spec_error(
                    spec,
                    f"[[{kind}]] {item.get('name', '?')!r}: unknown key(s) "
                    f"{', '.join(sorted(bad))}; valid: {', '.join(sorted(_ENTRY_KEYS[kind]))}",
                )
            if "name" not in item:
                raise _spec_error(spec, f"a [[{kind}]] entry has no 'name'")
            entries.append((kind, item))
    if not entries:
        raise _spec_error(spec, "lists no [[leaderboard]], [[plot]] or [[roc]] entries")
    names = [item["name"] for _, item in entries]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise _spec_error(spec, f"duplicate entry name(s): {', '.join(dup)}")
    for kind, item in entries:
        _check_spec_types(spec, kind, item)
    _check_spec_types(spec, "top level", {k: v for k, v in cfg.items() if k not in _ENTRY_KEYS})
    return entries
