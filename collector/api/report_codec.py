"""The report codec: a Report (collector/reports/model.py) to ReportService messages
(proto/certfleet/v1/report.proto) and back -- both halves of the wire's report format.

The collector encodes with :func:`to_parts` (collector/api/reports.py); the admin CLI decodes
with :func:`from_parts` (collector/cli/reports.py), the one thing it takes from this room.

The collector streams: one header part (title, generated_at, summary, params), then per
section a section part (title, columns, note) followed by row parts of at most
``ROWS_PER_PART`` rows. :func:`from_parts` rebuilds the Report on the client.
"""
from __future__ import annotations

import datetime as dt
from typing import Iterable, Iterator

from certfleet.v1 import report_pb2 as pb
from collector.errors import CollectorError
from collector.reports.model import Report, Section, Value

ROWS_PER_PART = 500
UTC = dt.timezone.utc


def value_out(v: Value) -> pb.ReportValue:
    t = type(v)                     # exact types first: most cells are text (bool is an int subclass)
    if t is str:
        return pb.ReportValue(text=v)
    if v is None:
        return pb.ReportValue()
    if t is bool or isinstance(v, bool):
        return pb.ReportValue(flag=v)
    if t is int or isinstance(v, int):
        return pb.ReportValue(integer=v)
    if t is float or isinstance(v, float):
        return pb.ReportValue(number=v)
    return pb.ReportValue(text=str(v))


def value_in(m: pb.ReportValue) -> Value:
    kind = m.WhichOneof("kind")
    return None if kind is None else getattr(m, kind)


def _row_in(cells: Iterable[pb.ReportValue]) -> tuple[Value, ...]:
    return tuple(None if (k := c.WhichOneof("kind")) is None else getattr(c, k) for c in cells)


def to_parts(report: Report, rows_per_part: int = ROWS_PER_PART) -> Iterator[pb.ReportPart]:
    header = pb.ReportPart.Header(
        name=report.name, title=report.title,
        summary=[pb.ReportSummaryItem(label=label, value=value_out(v)) for label, v in report.summary],
        params=dict(report.params),
    )
    header.generated_at.FromDatetime(report.generated_at.astimezone(UTC))
    yield pb.ReportPart(header=header)
    for s in report.sections:
        yield pb.ReportPart(section=pb.ReportPart.SectionStart(title=s.title, columns=list(s.columns), note=s.note))
        for i in range(0, len(s.rows), rows_per_part):
            yield pb.ReportPart(rows=pb.ReportPart.Rows(rows=[
                pb.ReportRow(cells=[value_out(v) for v in r]) for r in s.rows[i:i + rows_per_part]]))


def from_parts(parts: Iterable[pb.ReportPart]) -> Report:
    report: Report | None = None
    section: Section | None = None
    for part in parts:
        kind = part.WhichOneof("part")
        if kind == "header":
            h = part.header
            report = Report(name=h.name, title=h.title, generated_at=h.generated_at.ToDatetime(tzinfo=UTC),
                            summary=[(i.label, value_in(i.value)) for i in h.summary], params=dict(h.params))
        elif report is None:
            raise CollectorError("the collector sent report data before the report's header")
        elif kind == "section":
            s = part.section
            section = Section(title=s.title, columns=tuple(s.columns), rows=[], note=s.note)
            report.sections.append(section)
        elif kind == "rows":
            if section is None:
                raise CollectorError("the collector sent report rows before a section")
            section.rows.extend(_row_in(r.cells) for r in part.rows.rows)
    if report is None:
        raise CollectorError("the collector sent no report")
    return report
