"""Report renderers: the numbers arrive in every format, attacker strings stay inert, and a real
browser draws the HTML without fetching anything."""

from __future__ import annotations

import copy
import csv
import io
import os
import re
import shutil
import signal
import struct
import subprocess
import threading
import zlib
from collections.abc import Iterator
from datetime import datetime
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conftest import require
from png_reader import read_png
from report_sample import empty_report, sample_report
from tailban.reports import svg
from tailban.reports.render import (
    BLUE,
    CHART_KINDS,
    CSP,
    CSV_HEADER,
    ORANGE,
    RED,
    chart_ids,
    render_csv,
    render_html,
    render_text,
)

AMS = ZoneInfo("Europe/Amsterdam")
PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "\x1b[2J",
    "=cmd|' /C calc'!A0",
    "\r\nBcc:",
    "+SUM(1)",
    "@import",
    "evil\u202etxt.exe",
    "nul\x00byte",
]
EVIL_JAIL = "<script>alert(1)</script>"
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "main", "section", "h1", "h2",
    "h3", "p", "dl", "dt", "dd", "div", "figure", "figcaption", "details", "summary", "table",
    "caption", "thead", "tbody", "tr", "th", "td", "svg", "g", "rect", "line", "polyline",
    "polygon", "circle", "text",
}
SVG_NS = "http://www.w3.org/2000/svg"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, AMS).strftime("%Y-%m-%d %H:%M")


def sections(report: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "", report["overall"]
    yield from report["per_jail"].items()


def hostile_report() -> dict[str, Any]:
    """The sample with attacker-chosen strings in every place one can reach."""
    report = sample_report()
    report["host"] = PAYLOADS[1] + ".example.org"
    report["jails"].append(EVIL_JAIL)
    report["per_jail"][EVIL_JAIL] = copy.deepcopy(report["per_jail"]["sshd"])
    for _, section in sections(report):
        evil = [[p, 5000 - i] for i, p in enumerate(PAYLOADS)]
        section["top_accounts"] = evil + section["top_accounts"]
        section["privileged_attempts"] = evil + section["privileged_attempts"]
        section["top_countries"] = [[p[:2], p, 900 - i, 3] for i, p in enumerate(PAYLOADS)] + \
            section["top_countries"]
        section["dnsbl"]["by_zone"] += [[p, 1] for p in PAYLOADS]
        section["until_country"] = {"country": PAYLOADS[3], "rank": 3, "attempts": 4}
        section["longest_running"] += [{"ip": p, "first": 1.7e9, "last": 1.71e9, "days": 1,
                                        "attempts": 9} for p in PAYLOADS]
        section["most_persistent"] += [{"ip": p, "attempts": 9, "active_days": 1,
                                        "first": 1.7e9, "last": 1.71e9} for p in PAYLOADS]
    report["top_accounts_by_service"][PAYLOADS[0]] = [[p, 7] for p in PAYLOADS]
    return report


class Collector(HTMLParser):
    """Every element, attribute and text node the browser's parser would also see."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.data: list[str] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data
        self.data.append(data)


def parse(document: str) -> Collector:
    parser = Collector()
    parser.feed(document)
    parser.close()
    return parser


def charts(parsed: Collector) -> dict[str, dict[str, str | None]]:
    """Chart id -> attributes of the first <svg> inside that chart element."""
    found: dict[str, dict[str, str | None]] = {}
    current: str | None = None
    for tag, attrs in parsed.tags:
        if "chart" in (attrs.get("class") or "").split() and attrs.get("id"):
            current = attrs["id"]
        elif tag == "svg" and current is not None:
            found[current] = attrs
            current = None
    return found


def csv_rows(document: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(document, newline="")))
    assert rows[0] == list(CSV_HEADER)
    assert all(len(row) == len(CSV_HEADER) for row in rows), "a row was split or widened"
    return rows[1:]


# --------------------------------------------------------------------------------------------
# Text


def test_text_carries_the_numbers() -> None:
    report = sample_report()
    out = render_text(report)
    overall = report["overall"]
    assert "mail.example.org" in out and "Europe/Amsterdam (UTC+01:00)" in out
    assert f"Period     {when(report['since'])} \u2013 {when(report['until'])}" in out
    for month, count in overall["attempts_per_month"]:
        assert re.search(rf"^  {month} [\u2588\u2589-\u258f ]+ {count:,}$", out, re.M), month
    assert f"Attempts             {overall['attempts_total']:,}" in out
    code, name, attempts, addresses = overall["top_countries"][0]
    assert re.search(rf"{code} {name} +\u2588+ +{attempts:,}  +{addresses:,} addr", out)
    assert "JP first appears at rank 14 with 30 attempts" in out
    first = overall["longest_running"][0]
    assert f"{first['ip']}" in out and when(first["first"]) in out and when(first["last"]) in out
    for hour, count in enumerate(overall["attempts_per_hour_of_day"]):
        assert re.search(rf"^  {hour:02d} .* {count:,}$", out, re.M)
    assert "Jail sshd" in out and "Jail postfix-sasl" in out
    assert "\u2588" in out and "no data" not in out


@pytest.mark.parametrize("width", [40, 60, 80, 132])
def test_text_respects_width(width: int) -> None:
    for report in (sample_report(), hostile_report(), empty_report()):
        lines = render_text(report, width=width).splitlines()
        assert max(len(line) for line in lines) <= width


def test_text_of_an_empty_report() -> None:
    out = render_text(empty_report())
    assert "quiet.example.org" in out
    assert out.count("no data") >= 20
    assert "Jail sshd" in out


def test_text_times_use_the_stated_zone_even_if_unknown_by_name() -> None:
    report = empty_report()
    report["since"] = 0.0
    report["timezone"] = "Nowhere/Atlantis (UTC+05:30)"
    assert "Period     1970-01-01 05:30" in render_text(report)
    report["timezone"] = "America/New_York (UTC-05:00)"
    assert "Period     1969-12-31 19:00" in render_text(report)
    report["since"] = float("nan")
    assert "Period     ? \u2013" in render_text(report)


def test_zone_abbreviations_from_compute_report() -> None:
    """compute.py states tzname() and the offset at the end: "CET (UTC+01:00)"."""
    report = empty_report()
    report["since"] = datetime(2026, 7, 1, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    report["until"] = datetime(2026, 12, 1, tzinfo=ZoneInfo("UTC")).timestamp()
    report["timezone"] = "CET (UTC+01:00)"  # resolves, and matches at the end: DST-aware
    assert "Period     2026-07-01 14:00" in render_text(report)
    report["timezone"] = "CEST (UTC+02:00)"  # no such zone: the stated offset, fixed
    assert "Period     2026-07-01 14:00 \u2013 2026-12-01 02:00" in render_text(report)


def test_unmeasured_rdns_share_is_a_gap_not_zero() -> None:
    report = sample_report()
    rdns = report["overall"]["rdns_share_per_month"]
    rdns[1] = [rdns[1][0], None, 0, 0]  # compute.py: no address of that month was looked up
    text = render_text(report)
    assert re.search(rf"^  {rdns[1][0]} +\u2013 +0/0$", text, re.M)
    document = render_html(report)
    chart = document[document.index('id="chart-overall-rdns-share"'):]
    chart = chart[:chart.index("</svg>")]
    assert chart.count("<circle") == 2 and "<polyline" not in chart  # two lone points
    rows = csv_rows(render_csv(report))
    assert [r[3] for r in rows if r[0] == "rdns_share_per_month" and r[1] == ""][1] == ""


def test_country_list_reaches_the_until_country() -> None:
    report = sample_report()
    section = report["overall"]
    section["top_countries"] = [[f"C{i}", f"Land {i}", 1000 - i, 1] for i in range(30)]
    section["until_country"] = {"country": "C24", "rank": 25, "attempts": 976}
    text = render_text(report)
    assert "C24 Land 24" in text
    document = render_html(report)
    chart = document[document.index('id="chart-overall-top-countries"'):]
    chart = chart[:chart.index("</svg>")]
    assert chart.count("<rect") == 25


def test_text_makes_attacker_strings_inert() -> None:
    out = render_text(hostile_report())
    assert all(ch.isprintable() or ch == "\n" for ch in out)
    assert "\\x1b[2J" in out
    assert "\\x0d\\x0aBcc:" in out
    assert "evil\\u202etxt.exe" in out
    assert "nul\\x00byte" in out


# --------------------------------------------------------------------------------------------
# CSV


def test_csv_has_one_row_per_data_point() -> None:
    report = sample_report()
    rows = csv_rows(render_csv(report))
    by = {}
    for row in rows:
        by.setdefault((row[0], row[1]), []).append(row)
    for jail, section in sections(report):
        for field in ("attempts_per_month", "attempts_per_day", "bans_per_month",
                      "ban_table_size", "privileged_attempts", "top_accounts"):
            got = [[r[2], int(r[3])] for r in by[(field, jail)]]
            assert got == section[field], (field, jail)
        hours = [int(r[3]) for r in by[("attempts_per_hour_of_day", jail)]]
        assert hours == section["attempts_per_hour_of_day"]
        countries = [[r[2], r[3], int(r[4]), int(r[5])] for r in by[("top_countries", jail)]]
        assert countries == section["top_countries"]
        rdns = [[r[2], float(r[3]), int(r[4]), int(r[5])]
                for r in by[("rdns_share_per_month", jail)]]
        assert rdns == section["rdns_share_per_month"]
        nvr = [[r[2], int(r[3]), int(r[4])] for r in by[("new_vs_returning_per_month", jail)]]
        assert nvr == section["new_vs_returning_per_month"]
        longest = [{"ip": r[2], "first": float(r[3]), "last": float(r[4]), "days": float(r[5]),
                    "attempts": int(r[6])} for r in by[("longest_running", jail)]]
        assert longest == section["longest_running"]
        persistent = [{"ip": r[2], "attempts": int(r[3]), "active_days": int(r[4]),
                       "first": float(r[5]), "last": float(r[6])}
                      for r in by[("most_persistent", jail)]]
        assert persistent == section["most_persistent"]
        totals = {r[2]: int(r[3]) for r in by[("totals", jail)]}
        assert totals["attempts_total"] == section["attempts_total"]
        assert totals["privileged_total"] == section["privileged_total"]
        assert [r[2:5] for r in by[("until_country", jail)]] == [["JP", "14", "30"]]
        dnsbl = {r[2]: int(r[3]) for r in by[("dnsbl", jail)]}
        assert dnsbl == {k: section["dnsbl"][k] for k in ("banned", "checked", "listed")}
        assert [[r[2], int(r[3])] for r in by[("dnsbl_by_zone", jail)]] == \
            section["dnsbl"]["by_zone"]
    services = [(r[2], r[3], int(r[4])) for r in by[("top_accounts_by_service", "")]]
    assert services == [(s, a, n) for s, accounts in report["top_accounts_by_service"].items()
                        for a, n in accounts]
    meta = {r[2]: r[3] for r in by[("report", "")]}
    assert meta["host"] == "mail.example.org"
    assert float(meta["since"]) == report["since"]


def test_csv_of_an_empty_report() -> None:
    rows = csv_rows(render_csv(empty_report()))
    assert {r[0] for r in rows} == {"report", "totals", "attempts_per_hour_of_day", "dnsbl"}


def test_csv_neutralises_formulas_and_keeps_rows_whole() -> None:
    report = hostile_report()
    rows = csv_rows(render_csv(report))
    cells = [cell for row in rows for cell in row]
    for cell in cells:
        assert not cell.startswith(FORMULA_START), repr(cell)
    accounts = [r[2] for r in rows if r[0] == "top_accounts" and r[1] == ""]
    assert "'=cmd|' /C calc'!A0" in accounts
    assert "'\r\nBcc:" in accounts
    assert "'+SUM(1)" in accounts and "'@import" in accounts
    assert "<script>alert(1)</script>" in accounts  # CSV is data: kept verbatim, quoted
    assert any(r[1] == EVIL_JAIL for r in rows)
    expected = sum(len(section["top_accounts"]) for _, section in sections(report))
    assert sum(1 for r in rows if r[0] == "top_accounts") == expected


# --------------------------------------------------------------------------------------------
# HTML


def expected_chart_ids(jails: list[str]) -> list[str]:
    scopes = ["overall", *(f"jail-{j}" for j in jails)]
    return [f"chart-{scope}-{kind}" for scope in scopes for kind in CHART_KINDS]


def test_html_has_every_chart_with_a_size() -> None:
    report = sample_report()
    document = render_html(report)
    found = charts(parse(document))
    wanted = expected_chart_ids(["sshd", "postfix-sasl"]) + [
        "chart-service-ssh", "chart-service-postfix", "chart-service-dovecot"]
    assert "chart-overall-attempts-per-month" in wanted
    assert set(wanted) <= set(found)
    assert chart_ids(report) == wanted
    for chart_id, attrs in found.items():
        assert int(attrs["width"] or 0) > 100 and int(attrs["height"] or 0) > 50, chart_id
        assert attrs["xmlns"] == SVG_NS
    assert document.count('class="chart"') == len(wanted)


def test_html_carries_the_numbers() -> None:
    report = sample_report()
    document = render_html(report)
    text = " ".join(parse(document).data)
    overall = report["overall"]
    for month, count in overall["attempts_per_month"]:
        assert f"{month}: {count:,}" in text  # bar tooltip
    assert f"{overall['attempts_total']:,}" in text
    code, name, attempts, _ = overall["top_countries"][0]
    assert f"{code} {name}: {attempts:,}" in text
    assert "JP first appears at rank 14 with 30 attempts." in text
    assert when(overall["most_persistent"][0]["first"]) in text
    assert "mail.example.org" in text


def test_html_is_self_contained() -> None:
    for report in (sample_report(), empty_report(), hostile_report()):
        document = render_html(report)
        assert document.startswith("<!DOCTYPE html>")
        csp = CSP.replace("'", "&#x27;")
        assert f'<meta http-equiv="Content-Security-Policy" content="{csp}">' in document
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg\")", document, re.I)
        assert "<script" not in document.lower()
        parsed = parse(document)
        for tag, attrs in parsed.tags:
            assert tag in ALLOWED_TAGS, tag
            for name in attrs:
                assert not name.startswith("on"), (tag, name)
                assert name not in {"src", "href", "xlink:href", "srcset", "action", "style",
                                    "background", "poster", "data"}, (tag, name)
        assert "url(" not in parsed.style and "@import" not in parsed.style
        assert "@font-face" not in parsed.style


def test_html_of_an_empty_report() -> None:
    document = render_html(empty_report())
    found = charts(parse(document))
    assert set(expected_chart_ids(["sshd"])) <= set(found)
    assert document.count("no data") >= 2 * len(CHART_KINDS)


def test_html_makes_attacker_strings_inert() -> None:
    report = hostile_report()
    document = render_html(report)
    lowered = document.lower()
    assert "<script" not in lowered and "<img" not in lowered
    assert "\x1b" not in document and "\r" not in document and "\x00" not in document
    assert "\u202e" not in document
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in document
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in document
    # "onerror=" occurs only inside the escaped payload (possibly cut short in a chart label).
    occurrences = [m.start() for m in re.finditer("onerror=", document)]
    assert occurrences
    prefix = "&lt;img src=x "
    assert all(document[i - len(prefix):i] == prefix for i in occurrences)
    parsed = parse(document)
    data = "".join(parsed.data)
    assert "<script>alert(1)</script>" in data  # shown to the reader, as text
    assert "\\x1b[2J" in data and "\\x0d\\x0aBcc:" in data
    for tag, attrs in parsed.tags:
        assert tag in ALLOWED_TAGS, tag
        assert not any(name.startswith("on") for name in attrs)
    ids = [attrs["id"] for _, attrs in parsed.tags if attrs.get("id")]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z0-9_-]+", i or "") for i in ids)
    assert "chart-jail-script-alert-1-script-attempts-per-month" in ids


# --------------------------------------------------------------------------------------------
# SVG kit


def test_svg_charts_escape_and_keep_their_size() -> None:
    chart = svg.hbar_chart([("<b>", 3.0), ('"x', 1.0)], title="a<b", color='red" onload="x')
    assert "<b>" not in chart and "&lt;b&gt;" in chart
    assert 'onload="' not in chart
    empty = svg.hbar_chart([], title="t", color="red")
    assert "no data" in empty and f'height="{svg.hbar_height(0)}"' in empty
    col = svg.column_chart(["a", "b"], [svg.Series("s", [1, float("nan")], "#123456")],
                           title="t", width=300, height=150)
    assert 'width="300" height="150"' in col and col.count("<rect") == 1
    line = svg.line_chart(["only"], [svg.Series("s", [4], "#123456")], title="t")
    assert "<circle" in line
    assert svg.nice_step(0.7) == 1.0 and svg.nice_step(130) == 200 and svg.nice_step(2.2) == 2.5


def test_svg_axis_labels_do_not_overlap_and_show_the_end() -> None:
    labels = [f"2026-01-{d:02d}" if d <= 31 else f"2026-02-{d - 31:02d}" for d in range(1, 60)]
    chart = svg.line_chart(labels, [svg.Series("s", list(range(59)), "#123456")], title="t",
                           width=540)
    shown = re.findall(r'<text x="([\d.]+)" y="[\d.]+" text-anchor="(\w+)" [^>]*>(2026-[^<]+)<',
                       chart)
    assert shown[0][2] == labels[0] and shown[-1][2] == labels[-1]
    spans = []
    for x, anchor, label in shown:
        size = len(label) * svg.CHAR_W
        left = {"start": float(x), "middle": float(x) - size / 2, "end": float(x) - size}[anchor]
        assert left >= 0 and left + size <= 540
        spans.append((left, left + size))
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))


# --------------------------------------------------------------------------------------------
# PNG reader (checked against an encoder written here, with every filter type)


def encode_png(width: int, height: int, pixels: list[bytes], filters: list[int]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    def paeth(a: int, b: int, c: int) -> int:
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        return a if pa <= pb and pa <= pc else b if pb <= pc else c

    bpp, raw, prev = 4, bytearray(), bytes(width * 4)
    for row, kind in zip(pixels, filters, strict=True):
        out = bytearray([kind])
        for i, value in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            predictor = [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]
            out.append((value - predictor) & 0xFF)
        raw += out
        prev = row
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def test_png_reader_round_trip(tmp_path: Path) -> None:
    width, height = 7, 10
    pixels = [bytes((x * 37 + y * 11 + c * 101) % 256 for x in range(width) for c in range(4))
              for y in range(height)]
    path = tmp_path / "t.png"
    path.write_bytes(encode_png(width, height, pixels, [y % 5 for y in range(height)]))
    image = read_png(path)
    assert image.rows == pixels
    assert image.rgb(3, 4) == tuple(pixels[4][12:15])
    assert read_png(path, max_rows=3).rows == pixels[:3]


# --------------------------------------------------------------------------------------------
# A real browser


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless chromium once; on a hang kill it (and its helpers) by its own pid."""
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    argv = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-proxy-server", f"--user-data-dir={profile}",
            "--window-size=1200,3000", *args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group chromium leads: its pid, its helpers
        proc.communicate()
        pytest.fail("chromium did not finish within 60 s")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.fixture
def browser() -> None:
    require(shutil.which("chromium") is not None,
            "chromium is not installed (scripts/test.sh installs it)")


def hexrgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def test_browser_draws_the_charts(browser: None, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(sample_report()), encoding="utf-8")
    shot = tmp_path / "shot.png"
    result = chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), result.stderr[-2000:]
    image = read_png(shot, max_rows=1500)
    assert image.width == 1200 and image.height == 1500
    colours = {name: hexrgb(c) for name, c in (("blue", BLUE), ("orange", ORANGE),
                                                ("red", RED))}
    counts = dict.fromkeys(colours, 0)
    non_white = 0
    for y in range(image.height):
        row, step = image.rows[y], image.channels
        for x in range(image.width):
            r, g, b = row[x * step], row[x * step + 1], row[x * step + 2]
            if r < 245 or g < 245 or b < 245:
                non_white += 1
            for name, (cr, cg, cb) in colours.items():
                if abs(r - cr) <= 8 and abs(g - cg) <= 8 and abs(b - cb) <= 8:
                    counts[name] += 1
    print(f"screenshot top 1500 px: {non_white} non-white pixels, chart colours {counts}")
    assert non_white > 60_000, non_white
    # The first row of charts: blue month columns next to orange hour columns.
    assert counts["blue"] > 5_000 and counts["orange"] > 5_000, counts
    assert sum(1 for n in counts.values() if n > 2_000) >= 2, counts


class _Recorder(SimpleHTTPRequestHandler):
    paths: list[str]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        self.paths.append(self.path)


def serve(directory: Path) -> tuple[ThreadingHTTPServer, list[str]]:
    paths: list[str] = []
    handler = type("Handler", (_Recorder,), {"paths": paths})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, paths


def load(tmp_path: Path, name: str, document: str) -> tuple[str, list[str]]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / name).write_text(document, encoding="utf-8")
    server, paths = serve(site)
    try:
        port = server.server_address[1]
        result = chromium(tmp_path, "--dump-dom", f"http://127.0.0.1:{port}/{name}")
    finally:
        server.shutdown()
        server.server_close()
    return result.stdout, [p for p in paths if p != "/favicon.ico"]


def test_browser_fetches_nothing_but_the_page(browser: None, tmp_path: Path) -> None:
    # The hostile report: if any escaping failed, "<img src=x" would fetch /x from this server.
    dom, paths = load(tmp_path, "report.html", render_html(hostile_report()))
    assert 'id="chart-overall-attempts-per-month"' in dom
    assert paths == ["/report.html"]


def test_browser_request_log_would_see_a_fetch(browser: None, tmp_path: Path) -> None:
    """Control: the recorder does notice sub-resources, so an empty log above means something."""
    page = '<!DOCTYPE html><html><body><img src="/probe.png"><p>probe</p></body></html>'
    dom, paths = load(tmp_path, "probe.html", page)
    assert "probe" in dom
    assert "/probe.png" in paths
