"""Rendering a Report (collector/reports/render.py) and carrying it over the wire: pure, no collector."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
from html.parser import HTMLParser

import pytest

from collector.reports.model import Report, Section, cn_or_dn
from collector.reports.render import render, table_text
from collector.api.report_codec import from_parts, to_parts

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
EVIL = "<script>alert('x')</script>&\"quoted\""


def sample() -> Report:
    return Report(
        name="expiring", title="Certificates expiring within 90 days", generated_at=NOW,
        summary=[("Within 7 days: certificates", 1), ("Horizon", "90 days"), ("Nothing", None)],
        sections=[
            Section("Within 7 days", ("days_left", "subject", "host", "path", "owner", "ok"),
                    [(-2, EVIL, "web1.example.com", "/etc/nginx/a very long path/" + "x" * 80 + ".pem", None, True),
                     (5, "=cmd|' /C calc'!A0", "db1.example.com", "/var/lib/pg/b.pem", "dba", False)],
                    note="soonest first"),
            Section("Within 30 days", ("days_left", "subject"), []),
        ],
        params={"within": "90d"},
    )


class Checker(HTMLParser):
    """Checks that every non-void element is closed in order; collects tags, text and attributes."""

    VOID = {"meta", "br", "hr", "img", "link", "input", "col", "wbr", "source"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        self.tags.append(tag)
        self.attrs.extend(attrs)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):  # type: ignore[no-untyped-def]
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        self.text.append(data)


def test_html_is_well_formed_self_contained_and_escaped() -> None:
    out = render(sample(), "html")
    assert out.startswith("<!DOCTYPE html>")
    p = Checker()
    p.feed(out)
    p.close()
    assert p.stack == [], f"unclosed: {p.stack}"
    # untrusted text arrives as text, never as markup
    assert "script" not in p.tags and EVIL in "".join(p.text)
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;quoted&quot;" in out
    # self-contained: no scripts, no external resources, no URLs at all
    assert not {"script", "link", "img", "iframe", "object"} & set(p.tags)
    assert "http://" not in out and "https://" not in out and "url(" not in out and "@import" not in out
    assert all(v is None or v.startswith("#") or "://" not in v for k, v in p.attrs)
    # summary before the detail; printable
    text = "".join(p.text)
    assert text.index("Within 7 days: certificates") < text.index("soonest first") < text.index(EVIL)
    assert out.index('class="summary"') < out.index('class="report-section"')
    assert "@media print" in out and "page-break-before: always" in out and "table-header-group" in out
    assert "<thead>" in out and out.count('class="report-section"') == 2
    assert "none" in text                                              # the empty section says so
    assert '<td class="num neg">-2</td>' in out


def test_table_fits_the_width() -> None:
    out = render(sample(), "table", width=80)
    assert out.splitlines()[0] == "Certificates expiring within 90 days"
    assert "== Within 7 days (2) ==" in out and "== Within 30 days (0) ==" in out
    table = out.split("== Within 7 days (2) ==\n")[1].split("\n\n")[0].splitlines()[1:]
    assert all(len(line) <= 80 for line in table), table
    assert table[0].startswith("DAYS LEFT") and "…" in out
    assert "Horizon" in out.split("==")[0]                              # the summary first
    t = table_text(("a", "b"), [(1, None), (22, "x")], 40)
    assert t.splitlines() == ["A   B", " 1  -", "22  x"]


def test_csv_blocks_with_a_section_column() -> None:
    out = render(sample(), "csv")
    blocks = out.split("\n\n")
    assert len(blocks) == 3                                             # summary + two sections
    summary = list(csv.reader(io.StringIO(blocks[0])))
    assert summary[0] == ["section", "label", "value"]
    assert ["summary", "report", "expiring"] in summary and ["summary", "Nothing", ""] in summary
    assert ["summary", "param within", "90d"] in summary
    detail = list(csv.DictReader(io.StringIO(blocks[1])))
    assert [r["section"] for r in detail] == ["Within 7 days"] * 2
    assert detail[0]["subject"] == EVIL and detail[0]["days_left"] == "-2" and detail[0]["ok"] == "true"
    assert detail[0]["owner"] == ""
    assert detail[1]["subject"].startswith("'=cmd")                   # no spreadsheet formula
    assert list(csv.reader(io.StringIO(blocks[2]))) == [["section", "days_left", "subject"]]


def test_json_keeps_types_and_order() -> None:
    d = json.loads(render(sample(), "json"))
    assert d["report"] == "expiring" and d["generated_at"] == "2026-01-01T12:00:00Z"
    assert d["params"] == {"within": "90d"}
    assert d["summary"][0] == {"label": "Within 7 days: certificates", "value": 1}
    assert d["summary"][2]["value"] is None
    first = d["sections"][0]
    assert first["columns"][0] == "days_left" and first["note"] == "soonest first"
    assert first["rows"][0]["days_left"] == -2 and first["rows"][0]["subject"] == EVIL
    assert first["rows"][0]["owner"] is None and first["rows"][0]["ok"] is True
    assert d["sections"][1]["rows"] == []


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format 'pdf'"):
        render(sample(), "pdf")


def test_wire_round_trip_in_pages() -> None:
    r = sample()
    big = Section("Big", ("n", "x"), [(i, f"row {i}") for i in range(1203)])
    r.sections.append(big)
    parts = list(to_parts(r, rows_per_part=500))
    kinds = [p.WhichOneof("part") for p in parts]
    assert kinds[0] == "header" and kinds.count("section") == 3 and kinds[-3:] == ["rows"] * 3
    back = from_parts(parts)
    assert back == r


def test_subject_cn_unescaped() -> None:
    assert cn_or_dn("CN=\\<script\\>.example.com,O=x") == "<script>.example.com"
    assert cn_or_dn("O=only org") == "O=only org" and cn_or_dn("") == "(empty subject)"


def test_cli_asks_for_a_cut_table_and_full_files() -> None:
    """``certfleet report expiring`` in a table asks for the soonest 100 rows per window; --all,
    CSV, JSON and HTML ask for every row; --limit N for N; reports without a limit get none."""
    from collector.cli import main as admin_cli
    from collector.cli.reports import TABLE_LIMIT, request_params

    def params(*argv: str) -> dict[str, str]:
        return request_params(admin_cli.build_parser().parse_args(["report", *argv]))

    assert TABLE_LIMIT == 100
    assert params("expiring") == {"limit": "100"}
    assert params("expiring", "--all") == {}
    assert params("expiring", "--format", "csv") == {} and params("expiring", "--format", "html") == {}
    assert params("expiring", "--format", "json", "--limit", "5", "--within", "30d") == {"limit": "5", "within": "30d"}
    assert params("coverage") == {} and params("owners") == {}
    with pytest.raises(SystemExit):                         # one or the other
        params("expiring", "--all", "--limit", "5")
