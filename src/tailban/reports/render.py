"""Turn a computed attack-statistics report (a JSON-able dict) into text, HTML or CSV.

Most strings in a report were chosen by attackers: user names they tried, PTR names of their
addresses, country names from databases fed by whois, even jail names are worth distrusting.
So every string is treated as hostile here:

* text output shows non-printable characters as ``\\xNN`` (no terminal escapes, no CR tricks);
* HTML output escapes all text and attributes, carries a CSP that forbids script and fetches,
  and has no script, link, image or font of its own;
* CSV output goes through :mod:`csv` and prefixes cells that a spreadsheet would run as a
  formula with a single quote.

Chart ids in the HTML are stable so tests and users can link to them:
``chart-overall-<kind>`` and ``chart-jail-<slug>-<kind>`` with ``kind`` from
:data:`CHART_KINDS`; :func:`chart_ids` lists them for a report.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tailban.reports import svg
from tailban.reports.svg import Series, fmt_number, fmt_percent, number, visible

Report = Mapping[str, Any]

CHART_KINDS: tuple[str, ...] = (
    "attempts-per-month",
    "attempts-per-hour",
    "attempts-per-day",
    "bans-per-month",
    "ban-table-size",
    "new-vs-returning",
    "rdns-share",
    "top-countries",
    "top-accounts",
    "privileged-accounts",
    "dnsbl-zones",
)

BLUE = "#3b6fc2"
ORANGE = "#e8833a"
RED = "#c8474a"
GREEN = "#3f9b6b"
PURPLE = "#8a5cc2"
TEAL = "#2a9d9b"
SLATE = "#8fa3bf"
CHART_W = 540
CHART_H = 220
TOP_N = 20  # compute.py keeps 20 of each ranked list
MAX_COUNTRIES = 250  # enough for the "until country X" extension of the list

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

# --------------------------------------------------------------------------------------------
# Reading the report defensively: a missing or malformed field renders as "no data".


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _rows(value: object, width: int) -> list[list[Any]]:
    """Entries of a list-of-lists field with at least ``width`` items; others are skipped."""
    return [list(item) for item in _list(value)
            if isinstance(item, list | tuple) and len(item) >= width]


def _pairs(value: object) -> list[tuple[str, float]]:
    return [(str(item[0]), number(item[1])) for item in _rows(value, 2)]


def _records(value: object) -> list[Mapping[str, Any]]:
    return [item for item in _list(value) if isinstance(item, Mapping)]


def _share(value: object) -> float | None:
    """A share in 0..1, or None where nothing was looked up (shown as a gap, not as 0 %)."""
    return None if value is None else min(max(number(value), 0.0), 1.0)


def _hours(value: object) -> list[float]:
    hours = [number(v) for v in _list(value)[:24]]
    return hours + [0.0] * (24 - len(hours))


def _sections(report: Report) -> list[tuple[str, str | None, Mapping[str, Any]]]:
    """(title, jail name or None for overall, section) in display order."""
    per_jail = _map(report.get("per_jail"))
    names = [str(name) for name in _list(report.get("jails"))]
    names += [str(name) for name in per_jail if str(name) not in names]
    result: list[tuple[str, str | None, Mapping[str, Any]]] = [
        ("Overall", None, _map(report.get("overall")))
    ]
    for name in names:
        result.append((f"Jail {name}", name, _map(per_jail.get(name))))
    return result


def _zone(label: object, at: object = None) -> tzinfo:
    """The zone of "Area/City (UTC+hh:mm)" or "CET (UTC+01:00)", as exact as the label allows.

    An IANA key ("Europe/Amsterdam") gives correct times on both sides of a DST change. An
    abbreviation is trusted only if it resolves to a zone whose offset at ``at`` (the report's
    end, where the offset was taken) matches the stated one; otherwise ("CEST") the fixed
    stated offset is used, which is right for that end of the period at least.
    """
    raw = str(label or "")
    name = raw.split(" (", 1)[0].strip()
    named: tzinfo | None = None
    if name:
        try:
            named = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            named = None
    stated: timezone | None = None
    match = re.search(r"UTC\s*([+-])(\d{1,2}):?(\d{2})?", raw)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        delta = timedelta(hours=int(match.group(2)), minutes=int(match.group(3) or 0))
        if delta < timedelta(hours=24):
            stated = timezone(sign * delta)
    if named is not None and stated is not None and "/" not in name \
            and isinstance(at, int | float):
        try:
            moment = datetime.fromtimestamp(float(at), named)
        except (OverflowError, OSError, ValueError):
            moment = None
        if moment is not None and moment.utcoffset() != stated.utcoffset(None):
            return stated
    return named or stated or UTC


def _when(value: object, zone: tzinfo) -> str:
    """Epoch seconds as "YYYY-MM-DD HH:MM" in the server's zone; "?" for nonsense."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "?"
    try:
        return datetime.fromtimestamp(float(value), zone).strftime("%Y-%m-%d %H:%M")
    except (OverflowError, OSError, ValueError):
        return "?"


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-")
    return slug[:40] or "x"


def _scopes(report: Report) -> list[tuple[str, str | None, Mapping[str, Any], str]]:
    """Sections with a unique id fragment each; clashing slugs get a counter, in order."""
    seen: set[str] = {"overall"}
    result: list[tuple[str, str | None, Mapping[str, Any], str]] = []
    for title, jail, section in _sections(report):
        if jail is None:
            result.append((title, jail, section, "overall"))
            continue
        base = "jail-" + _slug(jail)
        scope, counter = base, 2
        while scope in seen:
            scope, counter = f"{base}-{counter}", counter + 1
        seen.add(scope)
        result.append((title, jail, section, scope))
    return result


def chart_ids(report: Report) -> list[str]:
    """Every chart id :func:`render_html` emits for this report, in page order."""
    ids = [f"chart-{scope}-{kind}" for _, _, _, scope in _scopes(report) for kind in CHART_KINDS]
    services = _map(report.get("top_accounts_by_service"))
    ids += [f"chart-service-{slug}" for slug in _service_slugs(list(services))]
    return ids


def _service_slugs(names: Sequence[object]) -> list[str]:
    seen: set[str] = set()
    result = []
    for name in names:
        base = _slug(str(name))
        slug, counter = base, 2
        while slug in seen:
            slug, counter = f"{base}-{counter}", counter + 1
        seen.add(slug)
        result.append(slug)
    return result


# --------------------------------------------------------------------------------------------
# Text


_EIGHTHS = " \u258f\u258e\u258d\u258c\u258b\u258a\u2589"
_FULL = "\u2588"
_SPARK = "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"


def _cell_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _dw(value: str) -> int:
    """Columns a string takes in a terminal: CJK names are two columns a character."""
    return sum(_cell_width(ch) for ch in value)


def _cut(value: str, width: int) -> str:
    if _dw(value) <= width:
        return value
    out, used = [], 0
    for ch in value:
        w = _cell_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "\u2026" if width >= 1 else ""


def _ljust(value: str, width: int) -> str:
    value = _cut(value, width)
    return value + " " * (width - _dw(value))


def _rjust(value: str, width: int) -> str:
    value = _cut(value, width)
    return " " * (width - _dw(value)) + value


def _bar(value: float, peak: float, width: int) -> str:
    """A bar in eighths of a column; anything above zero shows at least a sliver."""
    if peak <= 0 or value <= 0 or width <= 0:
        return " " * max(width, 0)
    eighths = min(round(value / peak * width * 8), width * 8)
    eighths = max(eighths, 1)
    full, part = divmod(eighths, 8)
    bar = _FULL * full + (_EIGHTHS[part] if part else "")
    return bar + " " * (width - len(bar))


def _bar_rows(rows: Sequence[tuple[str, float | None, str]], width: int,
              fmt: Callable[[float], str] = fmt_number, peak: float | None = None) -> list[str]:
    """label  bar  value  [extra]: labels cut to a third of the width, values right-aligned.

    A ``None`` value (not measured) gets no bar and a dash, unlike a measured zero.
    """
    if not rows:
        return ["  no data"]
    labels = [visible(label) for label, _, _ in rows]
    values = ["\u2013" if value is None else fmt(value) for _, value, _ in rows]
    extras = [visible(extra) for _, _, extra in rows]
    label_w = min(max(_dw(label) for label in labels), max(width // 3, 4))
    value_w = max(len(v) for v in values)
    extra_w = min(max(_dw(e) for e in extras), max(width // 4, 0))
    extra_gap = 2 if extra_w else 0
    bar_w = max(width - 2 - label_w - 1 - 1 - value_w - extra_gap - extra_w, 4)
    measured = [value for _, value, _ in rows if value is not None]
    top = peak if peak is not None else max(measured, default=0.0)
    lines = []
    for label, (_, value, _), shown, extra in zip(labels, rows, values, extras, strict=True):
        bar = _bar(value if value is not None else 0.0, top, bar_w)
        line = f"  {_ljust(label, label_w)} {bar} {shown.rjust(value_w)}"
        if extra_w:
            line += "  " + _rjust(extra, extra_w)
        lines.append(line.rstrip())
    return lines


def _sparkline(values: Sequence[float], width: int) -> str:
    """Daily values squeezed into ``width`` cells by averaging neighbours."""
    if not values:
        return ""
    cells = min(len(values), max(width, 1))
    buckets = []
    for index in range(cells):
        start = index * len(values) // cells
        end = max((index + 1) * len(values) // cells, start + 1)
        chunk = values[start:end]
        buckets.append(sum(chunk) / len(chunk))
    peak = max(buckets)
    if peak <= 0:
        return _SPARK[0] * cells
    return "".join(_SPARK[min(int(v / peak * 7 + 0.5), 7)] if v > 0 else " " for v in buckets)


def _series_text(title: str, points: list[tuple[str, float]], width: int) -> list[str]:
    lines = [f" {title}"]
    if not points or max(v for _, v in points) <= 0:
        return lines + ["  no data"]
    peak_key, peak = max(points, key=lambda p: p[1])
    lines.append("  " + _sparkline([v for _, v in points], width - 4))
    lines.append(
        f"  {visible(points[0][0])} \u2026 {visible(points[-1][0])}: peak {fmt_number(peak)} "
        f"on {visible(peak_key)}, last {fmt_number(points[-1][1])}"
    )
    return lines


def _table_text(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int],
                width: int) -> list[str]:
    """Columns padded to their widest cell; a first cell too long for the line gets its own.

    Only the first column (an address) can be long; IPv6 addresses must stay whole, so the
    row breaks after it instead of cutting it.
    """
    if not rows:
        return ["  no data"]
    cols = len(headers)
    widths = [max(_dw(headers[i]), *(_dw(row[i]) for row in rows)) for i in range(cols)]
    room = width - 2 - sum(widths[1:]) - 2 * (cols - 1)
    widths[0] = max(min(widths[0], room), _dw(headers[0]))

    def fmt(cells: Sequence[str]) -> str:
        parts = [_rjust(c, widths[i]) if i in numeric else _ljust(c, widths[i])
                 for i, c in enumerate(cells)]
        return ("  " + "  ".join(parts)).rstrip()

    lines = [fmt(headers)]
    for row in rows:
        if _dw(row[0]) > widths[0]:
            lines += ["  " + row[0], fmt(["", *row[1:]])]
        else:
            lines.append(fmt(row))
    return lines


def _section_text(title: str, section: Mapping[str, Any], zone: tzinfo,
                  width: int) -> list[str]:
    lines = ["", visible(title), "\u2500" * min(_dw(visible(title)), width)]
    attempts = number(section.get("attempts_total"))
    privileged = number(section.get("privileged_total"))
    share = f"  ({privileged / attempts:.1%})" if attempts > 0 else ""
    totals = [
        ("Attempts", attempts, ""),
        ("Addresses", number(section.get("addresses_total")), ""),
        ("Bans", number(section.get("bans_total")), ""),
        ("Privileged attempts", privileged, share),
    ]
    value_w = max(len(fmt_number(v)) for _, v, _ in totals)
    lines += [f"  {name:<20} {fmt_number(v).rjust(value_w)}{extra}" for name, v, extra in totals]

    def block(heading: str, body: list[str]) -> None:
        lines.extend(["", f" {heading}", *body])

    months = _pairs(section.get("attempts_per_month"))
    block("Attempts per month", _bar_rows([(k, v, "") for k, v in months], width))
    lines.append("")
    lines += _series_text("Attempts per day", _pairs(section.get("attempts_per_day")), width)
    hours = _hours(section.get("attempts_per_hour_of_day"))
    block("Attempts per hour of day",
          _bar_rows([(f"{h:02d}", v, "") for h, v in enumerate(hours)], width)
          if any(hours) else ["  no data"])
    bans = _pairs(section.get("bans_per_month"))
    block("Bans per month", _bar_rows([(k, v, "") for k, v in bans], width))
    lines.append("")
    lines += _series_text("Active bans at the end of each day",
                          _pairs(section.get("ban_table_size")), width)

    countries = _rows(section.get("top_countries"), 4)
    block("Top countries (attempts, addresses)", _bar_rows(
        [(f"{c[0]} {c[1]}", number(c[2]), f"{fmt_number(number(c[3]))} addr")
         for c in countries[:MAX_COUNTRIES]], width))
    until = _map(section.get("until_country"))
    if until:
        lines.append(
            f"  {visible(until.get('country'))} first appears at rank "
            f"{fmt_number(number(until.get('rank')))} with "
            f"{fmt_number(number(until.get('attempts')))} attempts"
        )

    block("Top accounts", _bar_rows(
        [(k, v, "") for k, v in _pairs(section.get("top_accounts"))[:TOP_N]], width))
    block("Privileged accounts", _bar_rows(
        [(k, v, "") for k, v in _pairs(section.get("privileged_attempts"))[:TOP_N]], width))

    rdns = _rows(section.get("rdns_share_per_month"), 4)
    block("Addresses with a reverse name, per month", _bar_rows(
        [(str(r[0]), _share(r[1]), f"{fmt_number(number(r[2]))}/{fmt_number(number(r[3]))}")
         for r in rdns], width, fmt=lambda v: f"{v:.0%}", peak=1.0))

    dnsbl = _map(section.get("dnsbl"))
    body = ["  no data"]
    if dnsbl:
        checked = number(dnsbl.get("checked"))
        listed = number(dnsbl.get("listed"))
        ratio = f" ({listed / checked:.0%} of checked)" if checked > 0 else ""
        body = [
            f"  banned {fmt_number(number(dnsbl.get('banned')))}, checked "
            f"{fmt_number(checked)}, listed {fmt_number(listed)}{ratio}",
        ]
        zones = _pairs(dnsbl.get("by_zone"))
        if zones:
            body += _bar_rows([(k, v, "") for k, v in zones[:TOP_N]], width)
    block("DNS blocklists", body)

    block("New and returning addresses per month (\u2588 new, \u2592 returning)",
          _new_returning_text(_rows(section.get("new_vs_returning_per_month"), 3), width))

    longest = _records(section.get("longest_running"))
    block("Longest-running attackers", _table_text(
        ["Address", "First seen", "Last seen", "Days", "Attempts"],
        [[visible(r.get("ip")), _when(r.get("first"), zone), _when(r.get("last"), zone),
          fmt_number(number(r.get("days"))), fmt_number(number(r.get("attempts")))]
         for r in longest], {3, 4}, width))
    persistent = _records(section.get("most_persistent"))
    block("Most persistent attackers", _table_text(
        ["Address", "Attempts", "Active days", "First seen", "Last seen"],
        [[visible(r.get("ip")), fmt_number(number(r.get("attempts"))),
          fmt_number(number(r.get("active_days"))), _when(r.get("first"), zone),
          _when(r.get("last"), zone)] for r in persistent], {1, 2}, width))
    return lines


def _new_returning_text(rows: list[list[Any]], width: int) -> list[str]:
    if not rows:
        return ["  no data"]
    labels = [visible(r[0]) for r in rows]
    new = [number(r[1]) for r in rows]
    old = [number(r[2]) for r in rows]
    shown = [f"{fmt_number(n)} / {fmt_number(o)}" for n, o in zip(new, old, strict=True)]
    label_w = min(max(_dw(label) for label in labels), max(width // 3, 4))
    value_w = max(len(s) for s in shown)
    bar_w = max(width - 2 - label_w - 2 - value_w, 4)
    peak = max((n + o for n, o in zip(new, old, strict=True)), default=0.0)
    lines = []
    for label, n, o, text in zip(labels, new, old, shown, strict=True):
        n_cells = round(n / peak * bar_w) if peak > 0 else 0
        o_cells = min(round((n + o) / peak * bar_w) - n_cells, bar_w - n_cells) if peak else 0
        bar = _FULL * n_cells + "\u2592" * max(o_cells, 0)
        lines.append(f"  {_ljust(label, label_w)} {bar.ljust(bar_w)} {text.rjust(value_w)}")
    return lines


def render_text(report: Report, width: int = 80) -> str:
    """The report for a terminal or a plain-text mail; no line is wider than ``width``."""
    width = max(int(width), 40)
    zone = _zone(report.get("timezone"), report.get("until"))
    jails = ", ".join(visible(j) for j in _list(report.get("jails"))) or "none"
    lines = [
        f"tailban attack statistics: {visible(report.get('host', '?'))}",
        f"Period     {_when(report.get('since'), zone)} \u2013 {_when(report.get('until'), zone)}",
        f"Time zone  {visible(report.get('timezone', 'UTC'))}",
        f"Generated  {_when(report.get('generated_at'), zone)}",
        f"Jails      {jails}",
    ]
    for title, _, section in _sections(report):
        lines += _section_text(title, section, zone, width)
    services = _map(report.get("top_accounts_by_service"))
    lines += ["", "Top accounts by service", "\u2500" * 23]
    if not services:
        lines.append("  no data")
    for service, accounts in services.items():
        lines += ["", f" {visible(service)}"]
        lines += _bar_rows([(k, v, "") for k, v in _pairs(accounts)[:TOP_N]], width)
    alerts = _map(report.get("alerts"))
    if alerts:
        lines += ["", "Anomaly alerts", "\u2500" * 14]
        totals = _map(alerts.get("totals"))
        lines.append("  " + (", ".join(f"{visible(k)} {int(v)}" for k, v in totals.items())
                             or "none"))
        for row in _records(alerts.get("latest")):
            lines.append(f"  #{row.get('id')} {_when(row.get('time'), zone)} "
                         f"{visible(row.get('kind', ''))} {visible(row.get('subject', ''))}: "
                         f"{visible(row.get('reason', ''))}")
    return "\n".join(_cut(line, width) for line in lines) + "\n"


# --------------------------------------------------------------------------------------------
# HTML

_STYLE = """
*{box-sizing:border-box}
body{margin:0;background:#fff;color:#30343b;
 font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header{padding:18px 24px 12px;border-bottom:1px solid #e3e6ea}
h1{font-size:22px;margin:0 0 6px}
h2{font-size:19px;margin:28px 0 10px;padding-top:8px;border-top:2px solid #30343b}
h3{font-size:15px;margin:18px 0 8px}
main{padding:0 24px 32px;max-width:1200px}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0}
.meta dt{color:#6b717b}.meta dd{margin:0}
.totals{display:flex;flex-wrap:wrap;gap:12px;margin:0 0 14px;padding:0}
.totals div{border:1px solid #e3e6ea;border-radius:6px;padding:6px 14px;min-width:150px}
.totals dt{color:#6b717b;font-size:12px}.totals dd{margin:0;font-size:20px;
 font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:14px}
figure.chart{margin:0;border:1px solid #e3e6ea;border-radius:6px;padding:8px 9px}
figure.chart figcaption{font-weight:600;margin:0 0 4px}
figure.chart svg{display:block;max-width:100%;height:auto}
details{margin-top:4px;font-size:12px}summary{color:#6b717b;cursor:pointer}
table{border-collapse:collapse;font-size:13px;margin:4px 0 10px}
th,td{padding:3px 10px;border-bottom:1px solid #eef0f2;text-align:left;vertical-align:top}
th{color:#6b717b;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td.w{word-break:break-all;max-width:420px}
.nodata{color:#8a8f98;font-style:italic}
p.note{margin:4px 0 10px}
"""


def _fmt_share(value: object) -> str:
    share = _share(value)
    return "\u2013" if share is None else f"{share:.1%}"


def _e(value: object) -> str:
    return svg.text(value)


def _table_html(headers: Sequence[str], rows: Sequence[Sequence[str]],
                numeric: set[int], caption: str = "") -> str:
    """A table of already-formatted cells; escaping happens here, once."""
    if not rows:
        return '<p class="nodata">no data</p>'
    head = "".join(f'<th class="n">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>"
                   for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = "".join(f'<td class="n">{_e(c)}</td>' if i in numeric
                        else f'<td class="w">{_e(c)}</td>' for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(chart_id: str, caption: str, chart: str, data: str = "") -> str:
    extra = f"<details><summary>Data</summary>{data}</details>" if data else ""
    return (f'<figure class="chart" id="{svg.attr(chart_id)}">'
            f"<figcaption>{_e(caption)}</figcaption>{chart}{extra}</figure>")


def _pairs_table(points: list[tuple[str, float]], key: str, value: str) -> str:
    return _table_html([key, value], [[k, fmt_number(v)] for k, v in points], {1})


def _ranked(title: str, points: list[tuple[str, float]], colour: str,
            limit: int = TOP_N) -> str:
    shown = points[:limit]
    if not shown:
        return svg.placeholder(CHART_W, svg.hbar_height(5), title)
    return svg.hbar_chart(shown, title=title, color=colour, width=CHART_W)


def _section_html(title: str, scope: str, section: Mapping[str, Any], zone: tzinfo) -> str:
    def cid(kind: str) -> str:
        return f"chart-{scope}-{kind}"

    attempts = number(section.get("attempts_total"))
    privileged = number(section.get("privileged_total"))
    totals = [
        ("Attempts", fmt_number(attempts)),
        ("Addresses", fmt_number(number(section.get("addresses_total")))),
        ("Bans", fmt_number(number(section.get("bans_total")))),
        ("Privileged attempts", fmt_number(privileged)
         + (f" ({privileged / attempts:.1%})" if attempts > 0 else "")),
    ]
    parts = [f'<section id="section-{svg.attr(scope)}"><h2>{_e(title)}</h2><dl class="totals">']
    parts += [f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in totals]
    parts.append('</dl><div class="grid">')

    months = _pairs(section.get("attempts_per_month"))
    parts.append(_figure(cid("attempts-per-month"), "Attempts per month", svg.column_chart(
        [k for k, _ in months], [Series("attempts", [v for _, v in months], BLUE)],
        title="Attempts per month", width=CHART_W, height=CHART_H),
        _pairs_table(months, "Month", "Attempts")))

    hours = _hours(section.get("attempts_per_hour_of_day"))
    hour_labels = [f"{h:02d}" for h in range(24)]
    parts.append(_figure(cid("attempts-per-hour"), "Attempts per hour of day", svg.column_chart(
        hour_labels, [Series("attempts", hours, ORANGE)],
        title="Attempts per hour of day", width=CHART_W, height=CHART_H),
        _pairs_table(list(zip(hour_labels, hours, strict=True)) if any(hours) else [],
                     "Hour", "Attempts")))

    days = _pairs(section.get("attempts_per_day"))
    parts.append(_figure(cid("attempts-per-day"), "Attempts per day", svg.line_chart(
        [k for k, _ in days], [Series("attempts", [v for _, v in days], BLUE)],
        title="Attempts per day", width=CHART_W, height=CHART_H),
        _pairs_table(days, "Day", "Attempts")))

    bans = _pairs(section.get("bans_per_month"))
    parts.append(_figure(cid("bans-per-month"), "Bans per month", svg.column_chart(
        [k for k, _ in bans], [Series("bans", [v for _, v in bans], RED)],
        title="Bans per month", width=CHART_W, height=CHART_H),
        _pairs_table(bans, "Month", "Bans")))

    table = _pairs(section.get("ban_table_size"))
    parts.append(_figure(cid("ban-table-size"), "Active bans at the end of each day",
                         svg.line_chart(
        [k for k, _ in table], [Series("active bans", [v for _, v in table], RED)],
        title="Active bans at the end of each day", width=CHART_W, height=CHART_H),
        _pairs_table(table, "Day", "Active bans")))

    nvr = _rows(section.get("new_vs_returning_per_month"), 3)
    parts.append(_figure(cid("new-vs-returning"), "New and returning addresses per month",
                         svg.column_chart(
        [str(r[0]) for r in nvr],
        [Series("returning", [number(r[2]) for r in nvr], SLATE),
         Series("new", [number(r[1]) for r in nvr], GREEN)],
        title="New and returning addresses per month", width=CHART_W, height=CHART_H),
        _table_html(["Month", "New", "Returning"],
                    [[str(r[0]), fmt_number(number(r[1])), fmt_number(number(r[2]))]
                     for r in nvr], {1, 2})))

    rdns = _rows(section.get("rdns_share_per_month"), 4)
    parts.append(_figure(cid("rdns-share"), "Share of addresses with a reverse name",
                         svg.line_chart(
        [str(r[0]) for r in rdns], [Series("share", [_share(r[1]) for r in rdns], PURPLE)],
        title="Share of addresses with a reverse name", width=CHART_W, height=CHART_H,
        y_max=1.0, value_format=fmt_percent, area=False) if rdns else
        svg.placeholder(CHART_W, CHART_H, "Share of addresses with a reverse name"),
        _table_html(["Month", "Share", "Named", "Total"],
                    [[str(r[0]), _fmt_share(r[1]), fmt_number(number(r[2])),
                      fmt_number(number(r[3]))] for r in rdns], {1, 2, 3})))

    countries = _rows(section.get("top_countries"), 4)
    until = _map(section.get("until_country"))
    note = ""
    if until:
        note = (f'<p class="note">{_e(until.get("country"))} first appears at rank '
                f'{_e(fmt_number(number(until.get("rank"))))} with '
                f'{_e(fmt_number(number(until.get("attempts"))))} attempts.</p>')
    parts.append(_figure(cid("top-countries"), "Top countries by attempts", _ranked(
        "Top countries by attempts",
        [(f"{c[0]} {c[1]}", number(c[2])) for c in countries], TEAL,
        limit=min(max(TOP_N, int(number(until.get("rank")))), 60)),
        note + _table_html(["Code", "Country", "Attempts", "Addresses"],
                           [[str(c[0]), str(c[1]), fmt_number(number(c[2])),
                             fmt_number(number(c[3]))] for c in countries], {2, 3})))

    accounts = _pairs(section.get("top_accounts"))
    parts.append(_figure(cid("top-accounts"), "Top accounts tried",
                         _ranked("Top accounts tried", accounts, BLUE),
                         _pairs_table(accounts, "Account", "Attempts")))
    privileged_rows = _pairs(section.get("privileged_attempts"))
    parts.append(_figure(cid("privileged-accounts"), "Privileged accounts tried",
                         _ranked("Privileged accounts tried", privileged_rows, RED),
                         _pairs_table(privileged_rows, "Account", "Attempts")))

    dnsbl = _map(section.get("dnsbl"))
    zones = _pairs(dnsbl.get("by_zone"))
    summary = '<p class="nodata">no data</p>'
    if dnsbl:
        checked = number(dnsbl.get("checked"))
        listed = number(dnsbl.get("listed"))
        ratio = f" ({listed / checked:.0%} of checked)" if checked > 0 else ""
        summary = (f'<p class="note">Banned {_e(fmt_number(number(dnsbl.get("banned"))))}, '
                   f"checked {_e(fmt_number(checked))}, listed {_e(fmt_number(listed))}"
                   f"{_e(ratio)}.</p>")
    parts.append(_figure(cid("dnsbl-zones"), "DNS blocklist listings by zone",
                         _ranked("DNS blocklist listings by zone", zones, PURPLE),
                         summary + _pairs_table(zones, "Zone", "Listed")))
    parts.append("</div>")

    longest = _records(section.get("longest_running"))
    parts.append("<h3>Longest-running attackers</h3>" + _table_html(
        ["Address", "First seen", "Last seen", "Days", "Attempts"],
        [[str(r.get("ip")), _when(r.get("first"), zone), _when(r.get("last"), zone),
          fmt_number(number(r.get("days"))), fmt_number(number(r.get("attempts")))]
         for r in longest], {3, 4}))
    persistent = _records(section.get("most_persistent"))
    parts.append("<h3>Most persistent attackers</h3>" + _table_html(
        ["Address", "Attempts", "Active days", "First seen", "Last seen"],
        [[str(r.get("ip")), fmt_number(number(r.get("attempts"))),
          fmt_number(number(r.get("active_days"))), _when(r.get("first"), zone),
          _when(r.get("last"), zone)] for r in persistent], {1, 2}))
    parts.append("</section>")
    return "".join(parts)


def render_html(report: Report) -> str:
    """One HTML5 file that works offline, e-mailed or archived: no script, nothing fetched."""
    zone = _zone(report.get("timezone"), report.get("until"))
    host = report.get("host", "?")
    jails = ", ".join(str(j) for j in _list(report.get("jails"))) or "none"
    meta = [
        ("Period", f"{_when(report.get('since'), zone)} \u2013 {_when(report.get('until'), zone)}"),
        ("Time zone", str(report.get("timezone", "UTC"))),
        ("Generated", _when(report.get("generated_at"), zone)),
        ("Jails", jails),
    ]
    parts = [
        "<!DOCTYPE html>\n",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{svg.attr(CSP)}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Attack statistics \u2013 {_e(host)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<header><h1>Attack statistics for {_e(host)}</h1><dl class=\"meta\">",
        "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in meta),
        "</dl></header><main>",
    ]
    for title, _, section, scope in _scopes(report):
        parts.append(_section_html(title, scope, section, zone))
    services = _map(report.get("top_accounts_by_service"))
    parts.append('<section id="section-services"><h2>Top accounts by service</h2>')
    if not services:
        parts.append('<p class="nodata">no data</p>')
    parts.append('<div class="grid">')
    for (service, accounts), slug in zip(services.items(), _service_slugs(list(services)),
                                         strict=True):
        points = _pairs(accounts)
        caption = f"Top accounts: {service}"
        parts.append(_figure(f"chart-service-{slug}", caption,
                             _ranked(caption, points, BLUE),
                             _pairs_table(points, "Account", "Attempts")))
    parts.append("</div></section>")
    alerts = _map(report.get("alerts"))
    if alerts:
        totals = _map(alerts.get("totals"))
        parts.append('<section id="section-alerts"><h2>Anomaly alerts</h2>')
        parts.append(_table_html(["Kind", "Alerts"], [[str(k), str(v)]
                                                       for k, v in totals.items()], {1}))
        rows = [[str(r.get("id")), _when(r.get("time"), zone), str(r.get("kind", "")),
                 str(r.get("subject", "")), str(r.get("reason", ""))]
                for r in _records(alerts.get("latest"))]
        parts.append(_table_html(["#", "Time", "Kind", "Subject", "Reason"], rows, {0},
                                 "Latest alerts"))
        parts.append("</section>")
    parts.append("</main></body></html>\n")
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# CSV

CSV_HEADER = ("section", "jail", "key", "value1", "value2", "value3", "value4")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def _csv_cell(value: object) -> str:
    """Numbers as in the JSON; text that a spreadsheet would evaluate gets a leading quote."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    cell = value if isinstance(value, str) else json.dumps(value, default=str)
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def _csv_rows(report: Report) -> Iterator[list[object]]:
    for key in ("host", "timezone", "generated_at", "since", "until"):
        yield ["report", "", key, report.get(key)]
    for jail in _list(report.get("jails")):
        yield ["report", "", "jail", jail]
    for _, jail, section in _sections(report):
        name = "" if jail is None else jail
        for key in ("attempts_total", "addresses_total", "bans_total", "privileged_total"):
            yield ["totals", name, key, section.get(key)]
        for field in ("attempts_per_month", "attempts_per_day", "bans_per_month",
                      "ban_table_size", "privileged_attempts", "top_accounts"):
            for row in _rows(section.get(field), 2):
                yield [field, name, row[0], row[1]]
        for hour, count in enumerate(_list(section.get("attempts_per_hour_of_day"))):
            yield ["attempts_per_hour_of_day", name, hour, count]
        for field, width in (("top_countries", 4), ("rdns_share_per_month", 4),
                             ("new_vs_returning_per_month", 3)):
            for row in _rows(section.get(field), width):
                yield [field, name, *row[:width]]
        until = _map(section.get("until_country"))
        if until:
            yield ["until_country", name, until.get("country"), until.get("rank"),
                   until.get("attempts")]
        dnsbl = _map(section.get("dnsbl"))
        for key in ("banned", "checked", "listed"):
            if key in dnsbl:
                yield ["dnsbl", name, key, dnsbl.get(key)]
        for row in _rows(dnsbl.get("by_zone"), 2):
            yield ["dnsbl_by_zone", name, row[0], row[1]]
        for record in _records(section.get("longest_running")):
            yield ["longest_running", name, record.get("ip"), record.get("first"),
                   record.get("last"), record.get("days"), record.get("attempts")]
        for record in _records(section.get("most_persistent")):
            yield ["most_persistent", name, record.get("ip"), record.get("attempts"),
                   record.get("active_days"), record.get("first"), record.get("last")]
    for service, accounts in _map(report.get("top_accounts_by_service")).items():
        for row in _rows(accounts, 2):
            yield ["top_accounts_by_service", "", service, row[0], row[1]]


def render_csv(report: Report) -> str:
    """Long format, one data point a row, for spreadsheets and scripts.

    Columns are ``section,jail,key,value1..value4``; ``jail`` is empty for the overall numbers
    and for report-wide rows. The value columns follow the order of the JSON fields: for
    ``top_countries`` key=code, value1=name, value2=attempts, value3=addresses; for
    ``longest_running`` key=ip, then first, last, days, attempts; for ``most_persistent``
    key=ip, then attempts, active_days, first, last; for ``top_accounts_by_service`` key is
    the service, value1 the account and value2 the count.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for row in _csv_rows(report):
        cells = [_csv_cell(cell) for cell in row]
        writer.writerow(cells + [""] * (len(CSV_HEADER) - len(cells)))
    return out.getvalue()
