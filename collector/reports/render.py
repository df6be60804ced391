"""Rendering a :class:`~collector.reports.model.Report`: table, CSV, JSON and HTML. Pure functions.

- ``table``: the summary, then each section as a table fitted to the terminal width
  (the widest columns give way and are cut with "…").
- ``csv``: one block per section, blocks separated by an empty line. Each block has its
  own header row, and every row -- header included -- starts with a ``section`` column
  naming the section (``summary`` for the first block, whose columns are ``label,value``),
  so rows stay identifiable after ``grep`` or a spreadsheet filter. Empty cells are empty;
  booleans are ``true``/``false``. A text cell starting with ``=``, ``+``, ``-``, ``@``, tab or
  carriage return gets a leading ``'`` so that a spreadsheet does not run it as a formula
  (certificate subjects are untrusted input); numbers are written as they are.
- ``json``: one object: name, title, generated_at, params, summary (a list of
  ``{"label", "value"}`` in order) and sections (``{"title", "note", "columns", "rows"}``
  with each row an object keyed by column).
- ``html``: one self-contained document (inline CSS, no scripts, no external resources)
  with the summary at the top and the sections below; printable (no backgrounds, each
  section on a new page, table headers repeated on every page). Every value is escaped:
  certificate subjects and paths are untrusted input.
"""
from __future__ import annotations

import csv
import html
import io
import json
from typing import Any, Callable

from collector.reports.model import Report, Section, Value
from collector.reports.text import SafeCsv, csv_safe, fit, fit_left

FORMATS = ("table", "csv", "json", "html")
MIN_COLUMN = 12          # columns are cut to this (or their header) first to fit the terminal,
HARD_MIN = 5             # then down to this, headers too
CUT_AT_START = {"path"}  # these keep their end (the file name) when cut
SHORT_IN_TABLE = {"fingerprint": 12, "not_after": 10}   # shown shortened in the table (in full elsewhere)


def render(report: Report, fmt: str, width: int = 120) -> str:
    renderers: dict[str, Callable[[Report], str]] = {
        "table": lambda r: to_table(r, width), "csv": to_csv, "json": to_json, "html": to_html,
    }
    try:
        return renderers[fmt](report)
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}") from None


def _label(column: str) -> str:
    return column.replace("_", " ")


def _text(v: Value, empty: str = "") -> str:
    if v is None:
        return empty
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _numeric(v: Value) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# -- table ----------------------------------------------------------------------------------


def _fit_widths(widths: list[int], floors: list[int], width: int) -> list[int]:
    """Shrink the widest columns (never below their floor) until the row fits ``width``."""
    widths = list(widths)
    over = sum(widths) + 2 * (len(widths) - 1) - width
    while over > 0:
        i = max(range(len(widths)), key=lambda k: widths[k] - floors[k])
        if widths[i] <= floors[i]:
            break
        widths[i] -= 1
        over -= 1
    return widths


def table_text(columns: tuple[str, ...] | list[str], rows: list[tuple[Value, ...]], width: int) -> str:
    headers = [_label(c).upper() for c in columns]
    short = [SHORT_IN_TABLE.get(c) for c in columns]
    cells = [[" ".join(_text(v, "-").split())[:short[i]] for i, v in enumerate(r)] for r in rows]
    numeric = [bool(rows) and all(_numeric(r[i]) or r[i] is None for r in rows) for i in range(len(columns))]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    floors = [min(w, max(len(h), MIN_COLUMN)) for w, h in zip(widths, headers)]
    widths = _fit_widths(widths, floors, width)
    widths = _fit_widths(widths, [min(w, HARD_MIN) for w in widths], width)   # then headers give way too
    lines = []
    for r in [headers, *cells]:
        out = []
        for i, (v, w) in enumerate(zip(r, widths)):
            v = (fit_left if columns[i] in CUT_AT_START and r is not headers else fit)(v, w)
            out.append(v.rjust(w) if numeric[i] and r is not headers else v.ljust(w))
        lines.append("  ".join(out).rstrip())
    return "\n".join(lines) + "\n"


def to_table(report: Report, width: int = 120) -> str:
    out = io.StringIO()
    out.write(f"{report.title}\n")
    out.write(f"generated {_text(_iso(report))}" + (f"  ({_params(report)})" if report.params else "") + "\n\n")
    if report.summary:
        lw = max(len(label) for label, _ in report.summary)
        for label, value in report.summary:
            out.write(f"  {label.ljust(lw)}  {_text(value, '-')}\n")
    for s in report.sections:
        out.write(f"\n== {s.title} ({len(s.rows)}) ==\n")
        if s.note:
            out.write(f"   {s.note}\n")
        if s.rows:
            out.write(table_text(s.columns, s.rows, width))
        else:
            out.write("   none\n")
    return out.getvalue()


def _iso(report: Report) -> str:
    return report.generated_at.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _params(report: Report) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(report.params.items()))


# -- CSV ---------------------------------------------------------------------------------------


def _csv_cell(v: Value) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return csv_safe(v)


def to_csv(report: Report) -> str:
    out = io.StringIO()
    w = SafeCsv(csv.writer(out, lineterminator="\n"))    # every cell through the one formula guard
    w.writerow(["section", "label", "value"])
    w.writerow(["summary", "report", report.name])
    w.writerow(["summary", "generated_at", _iso(report)])
    for k, v in sorted(report.params.items()):
        w.writerow(["summary", f"param {k}", v])
    for label, value in report.summary:
        w.writerow(["summary", label, _csv_cell(value)])
    for s in report.sections:
        out.write("\n")
        w.writerow(["section", *s.columns])
        for r in s.rows:
            w.writerow([s.title, *(_csv_cell(v) for v in r)])
    return out.getvalue()


# -- JSON --------------------------------------------------------------------------------------


def as_dict(report: Report) -> dict[str, Any]:
    return {
        "report": report.name,
        "title": report.title,
        "generated_at": _iso(report),
        "params": dict(report.params),
        "summary": [{"label": label, "value": value} for label, value in report.summary],
        "sections": [
            {"title": s.title, "note": s.note, "columns": list(s.columns),
             "rows": [dict(zip(s.columns, r)) for r in s.rows]}
            for s in report.sections
        ],
    }


def to_json(report: Report) -> str:
    return json.dumps(as_dict(report), indent=2, ensure_ascii=False) + "\n"


# -- HTML --------------------------------------------------------------------------------------

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1a1a1a;
       margin: 2em auto; max-width: 1400px; padding: 0 1.5em; }
h1 { font-size: 1.6em; margin: 0 0 .2em; }
h2 { font-size: 1.2em; margin: 2em 0 .3em; border-bottom: 2px solid #3a6ea5; padding-bottom: .2em; }
.meta, .note { color: #555; margin: 0 0 1em; }
.summary { border-collapse: collapse; margin: 1em 0 1.5em; }
.summary th { text-align: left; font-weight: normal; color: #333; padding: .25em 1.5em .25em 0; }
.summary td { font-weight: 600; padding: .25em 0; text-align: right; }
.summary tr + tr th, .summary tr + tr td { border-top: 1px solid #e3e3e3; }
nav ol { margin: .3em 0 0; padding-left: 1.5em; }
table.detail { border-collapse: collapse; width: 100%; margin: .5em 0 1em; }
table.detail th, table.detail td { border: 1px solid #d0d7de; padding: .3em .5em; text-align: left;
       vertical-align: top; overflow-wrap: anywhere; }
table.detail thead th { background: #eef3f8; font-weight: 600; white-space: nowrap; }
table.detail tbody tr:nth-child(even) { background: #f8f9fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.neg { color: #b00020; font-weight: 600; }
.empty { color: #666; font-style: italic; }
.count { color: #666; font-weight: normal; }
@media print {
  body { margin: 0; max-width: none; padding: 0; font-size: 10pt; color: #000; }
  * { background: none !important; box-shadow: none !important; }
  nav { display: none; }
  section.report-section { break-before: page; page-break-before: always; }
  table.detail thead { display: table-header-group; }
  table.detail tr { break-inside: avoid; page-break-inside: avoid; }
  table.detail th, table.detail td { border-color: #000; }
  h2 { border-bottom-color: #000; break-after: avoid; page-break-after: avoid; }
}
"""


def _h(v: Value) -> str:
    return html.escape(_text(v), quote=True)


def _section_html(i: int, s: Section) -> str:
    numeric = [bool(s.rows) and all(_numeric(r[k]) or r[k] is None for r in s.rows) for k in range(len(s.columns))]
    parts = [f'<section class="report-section" id="s{i}">',
             f'<h2>{_h(s.title)} <span class="count">({len(s.rows)})</span></h2>']
    if s.note:
        parts.append(f'<p class="note">{_h(s.note)}</p>')
    if not s.rows:
        parts.append('<p class="empty">none</p></section>')
        return "\n".join(parts)
    parts.append('<table class="detail"><thead><tr>'
                 + "".join(f'<th scope="col">{_h(_label(c))}</th>' for c in s.columns) + "</tr></thead><tbody>")
    for r in s.rows:
        cells = []
        for k, v in enumerate(r):
            cls = []
            if numeric[k]:
                cls.append("num")
                if _numeric(v) and v < 0:  # type: ignore[operator]
                    cls.append("neg")
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{_h(v)}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table></section>")
    return "\n".join(parts)


def to_html(report: Report) -> str:
    generated = _iso(report)
    params = f" &middot; {_h(_params(report))}" if report.params else ""
    summary = "".join(f"<tr><th scope=\"row\">{_h(label)}</th><td>{_h(_text(value, '-'))}</td></tr>"
                      for label, value in report.summary)
    toc = "".join(f'<li><a href="#s{i}">{_h(s.title)}</a> <span class="count">({len(s.rows)})</span></li>'
                  for i, s in enumerate(report.sections, 1))
    body = "\n".join(_section_html(i, s) for i, s in enumerate(report.sections, 1))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_h(report.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f'<header><h1>{_h(report.title)}</h1>\n'
        f'<p class="meta">certfleet report {_h(report.name)} &middot; generated {_h(generated)}{params}</p></header>\n'
        f'<main>\n<section class="summary-block" id="summary"><table class="summary"><tbody>{summary}</tbody></table>\n'
        f"<nav><strong>Sections</strong><ol>{toc}</ol></nav></section>\n"
        f"{body}\n</main>\n</body>\n</html>\n"
    )
