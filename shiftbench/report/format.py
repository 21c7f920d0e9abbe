"""Number, Markdown and HTML formatting of report tables (pure: strings in, strings out)."""

from __future__ import annotations

import html
import math

#: Printable name of each metric.
METRIC_TITLES = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "auroc": "AUROC",
    "recall": "recall",
    "ece": "ECE",
    "brier": "Brier score",
    "nll": "NLL",
}


def is_percent(metric: str) -> bool:
    """Metrics shown in % (the counting metrics; AUROC and the calibration errors as numbers)."""
    return metric not in ("auroc", "ece", "brier", "nll")


def fmt_value(x: float, metric: str) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{100 * x:.1f}" if is_percent(metric) else f"{x:.3f}"


def fmt_mean_sd(mean: float, sd: float, metric: str) -> str:
    return f"{fmt_value(mean, metric)} ± {fmt_value(sd, metric)}"


def fmt_signed(x: float, metric: str) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{100 * x:+.1f}" if is_percent(metric) else f"{x:+.3f}"


def fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def p_text(p: float) -> str:
    """``p = 0.012`` / ``p < 0.001`` / ``p = n/a``."""
    text = fmt_p(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def fmt_diff(d: float, lo: float, hi: float, p: float, metric: str) -> str:
    return (
        f"{fmt_signed(d, metric)} [{fmt_signed(lo, metric)}, {fmt_signed(hi, metric)}], {p_text(p)}"
    )


def md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(md_escape(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def html_page(title: str, header: list[str], rows: list[list[str]], notes: list[str]) -> str:
    return html_sections(title, [(None, header, rows)], notes)


def html_sections(
    title: str,
    sections: list[tuple[str | None, list[str], list[list[str]]]],
    notes: list[str],
) -> str:
    """An HTML page of one table per ``(heading or None, header, rows)`` section, then notes."""
    esc = html.escape
    tables = []
    for heading, header, rows in sections:
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = "\n".join(
            "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows
        )
        tables.append(
            (f"<h2>{esc(heading)}</h2>\n" if heading is not None else "")
            + f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n"
        )
    foot = "\n".join(f"<li>{esc(n)}</li>" for n in notes)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{esc(title)}</title>\n<style>\n"
        "body { font-family: sans-serif; margin: 2em; }\n"
        "table { border-collapse: collapse; }\n"
        "th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: right; }\n"
        "th { background: #eee; }\n"
        "td:nth-child(2), th:nth-child(2) { text-align: left; }\n"
        "</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n{''.join(tables)}"
        f"<h2>Notes</h2>\n<ol>\n{foot}\n</ol>\n</body>\n</html>\n"
    )
