"""A tiny SVG chart kit for the HTML report.

The report must be one file that opens anywhere without script or fetched assets, so the charts
are plain SVG strings built here. Labels come from attackers (user names, country names, jail
names): every piece of text goes through :func:`text` and every attribute value through
:func:`attr`, so callers cannot forget to escape. Widths of text are estimated from character
counts because nothing can be measured without a browser.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

SVG_NS = "http://www.w3.org/2000/svg"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"  # local fonts only
CHAR_W = 6.6  # estimated advance of one character at FONT_SIZE, in px
FONT_SIZE = 11
AXIS = "#8a8f98"
GRID = "#e3e6ea"
INK = "#30343b"

Formatter = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    """One named data series; a chart with several stacks them or draws one line each.

    ``None`` marks a missing value (nothing was measured): line charts leave a gap there
    rather than drawing a misleading zero.
    """

    name: str
    values: Sequence[float | None]
    color: str


def visible(value: object) -> str:
    r"""Show characters that would act rather than print (ESC, CR, bidi overrides) as \xNN.

    Attackers choose user names and PTR names; a raw ESC or U+202E would repaint a terminal or
    reorder the text a reader sees.
    """
    out = []
    for ch in str(value):
        if ch.isprintable():
            out.append(ch)
            continue
        code = ord(ch)
        if code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def text(value: object) -> str:
    """Text content for HTML or SVG: control characters made visible, markup escaped."""
    return html.escape(visible(value), quote=True)


def attr(value: object) -> str:
    """An attribute value; quotes are escaped as well, so it cannot leave its attribute."""
    return html.escape(visible(value), quote=True)


def number(value: object) -> float:
    """A finite float for geometry: malformed or non-finite input draws as zero, never raises."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        result = float(value)
    else:
        try:
            result = float(str(value))
        except ValueError:
            return 0.0
    return result if math.isfinite(result) else 0.0


def fmt_number(value: float) -> str:
    """Thousands separators for counts, one decimal for the odd fraction (days, averages)."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def fmt_percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def truncate(value: str, limit: int) -> str:
    """Shorten to ``limit`` characters with an ellipsis; the full text stays in a tooltip."""
    if limit <= 0:
        return ""
    return value if len(value) <= limit else value[: max(limit - 1, 0)] + "\u2026"


def _f(value: float) -> str:
    """Coordinates with two decimals at most: smaller files, stable output."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _open(width: int, height: int, title: str) -> str:
    return (
        f'<svg xmlns="{SVG_NS}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{attr(title)}" '
        f'font-family="{attr(FONT)}" font-size="{FONT_SIZE}" fill="{INK}">'
        f"<title>{text(title)}</title>"
    )


def placeholder(width: int, height: int, title: str, message: str = "no data") -> str:
    """Same size as the real chart, so the page layout and the chart ids never depend on data."""
    return (
        _open(width, height, title)
        + f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#fafbfc" '
        f'stroke="{GRID}"/>'
        f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" '
        f'dominant-baseline="middle" fill="{AXIS}" font-size="14">{text(message)}</text></svg>'
    )


def nice_step(raw: float) -> float:
    """Round a tick step up to 1, 2, 2.5 or 5 times a power of ten, as people read axes."""
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= factor * power * (1 + 1e-9):
            return factor * power
    return 10.0 * power


def _scale(top: float, fixed_max: float | None, integer: bool) -> tuple[float, list[float]]:
    """Axis maximum and tick values: four or five gridlines, whole numbers for counts."""
    if fixed_max is not None and fixed_max > 0:
        step = fixed_max / 4
        return fixed_max, [step * i for i in range(5)]
    step = nice_step(top / 4 if top > 0 else 1.0)
    if integer:
        step = max(step, 1.0)
    count = max(1, math.ceil(top / step - 1e-9)) if top > 0 else 4
    return step * count, [step * i for i in range(count + 1)]


def _x_label_stride(labels: Sequence[str], slot: float) -> int:
    """Show every n-th category label so that neighbours never overlap."""
    longest = max((len(label) for label in labels), default=1)
    need = longest * CHAR_W + 8
    return max(1, math.ceil(need / slot)) if slot > 0 else 1


class _Frame:
    """Plot area geometry shared by the column and line charts."""

    def __init__(self, width: int, height: int, ticks: list[float], top: float,
                 tick_format: Formatter, legend: bool) -> None:
        self.tick_labels = [tick_format(t) for t in ticks]
        self.width = width
        longest = max((len(label) for label in self.tick_labels), default=1)
        self.left = 10 + longest * CHAR_W
        self.right = width - 12
        self.top_y = 26.0 if legend else 12.0
        self.bottom = height - 24.0
        self.ticks = ticks
        self.axis_max = top if top > 0 else 1.0

    @property
    def plot_w(self) -> float:
        return max(self.right - self.left, 1.0)

    @property
    def plot_h(self) -> float:
        return max(self.bottom - self.top_y, 1.0)

    def y(self, value: float) -> float:
        clamped = min(max(value, 0.0), self.axis_max)
        return self.bottom - clamped / self.axis_max * self.plot_h

    def grid(self) -> str:
        parts = []
        for tick, label in zip(self.ticks, self.tick_labels, strict=True):
            y = self.y(tick)
            parts.append(
                f'<line x1="{_f(self.left)}" y1="{_f(y)}" x2="{_f(self.right)}" y2="{_f(y)}" '
                f'stroke="{GRID if tick else AXIS}" stroke-width="1"/>'
                f'<text x="{_f(self.left - 5)}" y="{_f(y + 4)}" text-anchor="end" '
                f'fill="{AXIS}">{text(label)}</text>'
            )
        return "".join(parts)

    def x_labels(self, labels: Sequence[str], centres: Sequence[float], slot: float,
                 keep_last: bool) -> str:
        """Every n-th label, placed greedily so none overlaps.

        With ``keep_last`` (a time line) the last label always shows, displacing its
        neighbour: readers want to see where the period ends. Categories (hours) keep an even
        rhythm instead.
        """
        stride = _x_label_stride(labels, slot)
        last = len(labels) - 1
        placed: list[tuple[float, float, str, float, str]] = []  # left, right, anchor, x, text
        for index, (label, x) in enumerate(zip(labels, centres, strict=True)):
            if index % stride and not (keep_last and index == last):
                continue
            size = len(label) * CHAR_W
            anchor, left = "middle", x - size / 2
            if left < 2:
                anchor, x = "start", max(x - 4, 2.0)
                left = x
            elif left + size > self.width - 2:
                anchor, x = "end", min(x + 4, self.width - 2.0)
                left = x - size
            while placed and placed[-1][1] + 6 > left:
                if not keep_last or index != last:
                    break
                placed.pop()  # readers want the end of the period more than its neighbour
            if placed and placed[-1][1] + 6 > left:
                continue
            placed.append((left, left + size, anchor, x, label))
        return "".join(
            f'<text x="{_f(x)}" y="{_f(self.bottom + 15)}" text-anchor="{anchor}" '
            f'fill="{AXIS}">{text(label)}</text>'
            for _, _, anchor, x, label in placed
        )


def _legend(series: Sequence[Series], width: int) -> str:
    parts = []
    x = float(width - 12)
    for item in reversed(series):
        label = truncate(visible(item.name), 24)
        x -= len(label) * CHAR_W
        parts.append(f'<text x="{_f(x)}" y="14">{text(label)}</text>')
        x -= 14
        parts.append(
            f'<rect x="{_f(x)}" y="5" width="10" height="10" fill="{attr(item.color)}"/>'
        )
        x -= 12
    return "".join(parts)


def _clean(series: Sequence[Series], count: int) -> list[list[float]]:
    """Values per series, padded or cut to the label count, so odd input cannot misalign."""
    return [[0.0 if v is None else v for v in column] for column in _gappy(series, count)]


def _gappy(series: Sequence[Series], count: int) -> list[list[float | None]]:
    """Like :func:`_clean` but keeps ``None`` for missing values."""
    rows = []
    for item in series:
        values = [None if v is None else number(v) for v in list(item.values)[:count]]
        rows.append(values + [None] * (count - len(values)))
    return rows


def _runs(xs: Sequence[float], column: Sequence[float | None]) -> list[list[tuple[float, float]]]:
    """Unbroken stretches of present values, each drawn as its own line."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, value in zip(xs, column, strict=True):
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((x, value))
    return [run for run in runs if run]


def column_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    width: int = 560,
    height: int = 220,
    value_format: Formatter = fmt_number,
) -> str:
    """Vertical bars, one per label; several series are stacked (new on top of returning).

    Used for counts over discrete buckets (hours of the day, months), where a line between
    points would suggest values in between that do not exist.
    """
    count = len(labels)
    values = _clean(series, count)
    totals = [sum(column[i] for column in values) for i in range(count)]
    if not count or not series or max(totals, default=0.0) <= 0:
        return placeholder(width, height, title)
    axis_max, ticks = _scale(max(totals), None, integer=True)
    frame = _Frame(width, height, ticks, axis_max, value_format, legend=len(series) > 1)
    slot = frame.plot_w / count
    bar_w = max(slot * 0.78, 1.0)
    parts = [_open(width, height, title), frame.grid()]
    centres = []
    for index, label in enumerate(labels):
        centre = frame.left + slot * (index + 0.5)
        centres.append(centre)
        base = 0.0
        for item, column in zip(series, values, strict=True):
            value = column[index]
            if value <= 0:
                continue
            y_top, y_base = frame.y(base + value), frame.y(base)
            base += value
            tip = f"{label}: {value_format(value)}"
            if len(series) > 1:
                tip = f"{label} {item.name}: {value_format(value)}"
            parts.append(
                f'<rect x="{_f(centre - bar_w / 2)}" y="{_f(y_top)}" width="{_f(bar_w)}" '
                f'height="{_f(max(y_base - y_top, 0.5))}" fill="{attr(item.color)}">'
                f"<title>{text(tip)}</title></rect>"
            )
    parts.append(frame.x_labels([visible(label) for label in labels], centres, slot, False))
    if len(series) > 1:
        parts.append(_legend(series, width))
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    width: int = 560,
    height: int = 220,
    area: bool = True,
    y_max: float | None = None,
    value_format: Formatter = fmt_number,
) -> str:
    """A line per series over evenly spaced labels (days, months), optionally filled below.

    ``y_max`` pins the axis (1.0 for shares) so that a month at 40 % never looks full.
    """
    count = len(labels)
    values = _gappy(series, count)
    present = [v for column in values for v in column if v is not None]
    peak = max(present, default=0.0)
    if not count or not present or (peak <= 0 and y_max is None):
        return placeholder(width, height, title)
    axis_max, ticks = _scale(peak, y_max, integer=y_max is None)
    frame = _Frame(width, height, ticks, axis_max, value_format, legend=len(series) > 1)
    step = frame.plot_w / (count - 1) if count > 1 else 0.0
    xs = [frame.left + step * i if count > 1 else frame.left + frame.plot_w / 2
          for i in range(count)]
    parts = [_open(width, height, title), frame.grid()]
    index_of = {x: i for i, x in enumerate(xs)}
    for item, column in zip(series, values, strict=True):
        colour = attr(item.color)
        for run in _runs(xs, column):
            if len(run) == 1:
                x, v = run[0]
                label = labels[index_of[x]]
                parts.append(
                    f'<circle cx="{_f(x)}" cy="{_f(frame.y(v))}" r="3.5" fill="{colour}">'
                    f"<title>{text(label)}: {text(value_format(v))}</title></circle>"
                )
                continue
            points = " ".join(f"{_f(x)},{_f(frame.y(v))}" for x, v in run)
            if area:
                base = frame.y(0)
                parts.append(
                    f'<polygon points="{_f(run[0][0])},{_f(base)} {points} '
                    f'{_f(run[-1][0])},{_f(base)}" fill="{colour}" fill-opacity="0.18" '
                    f'stroke="none"/>'
                )
            parts.append(
                f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2" '
                f'stroke-linejoin="round" stroke-linecap="round">'
                f"<title>{text(item.name)}</title></polyline>"
            )
    slot = frame.plot_w / max(count, 1)
    parts.append(frame.x_labels([visible(label) for label in labels], xs, slot, True))
    if len(series) > 1:
        parts.append(_legend(series, width))
    parts.append("</svg>")
    return "".join(parts)


def hbar_height(rows: int, bar_height: int = 18, gap: int = 6) -> int:
    """Height of a horizontal bar chart, so a caller can size its placeholder the same way."""
    return 12 + max(rows, 1) * (bar_height + gap) + 6


def hbar_chart(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    color: str,
    width: int = 560,
    bar_height: int = 18,
    gap: int = 6,
    value_format: Formatter = fmt_number,
) -> str:
    """Ranked list as horizontal bars, largest first as given; long labels are cut, not wrapped.

    The label keeps at most a third of the width, so one absurd user name cannot push the bars
    off the chart; the untruncated name is in each bar's tooltip.
    """
    rows = [(visible(label), number(value)) for label, value in items]
    height = hbar_height(len(rows), bar_height, gap)
    if not rows or max(value for _, value in rows) <= 0:
        return placeholder(width, height, title)
    label_chars = min(max(len(label) for label, _ in rows), int(width / 3 / CHAR_W))
    value_chars = max(len(value_format(value)) for _, value in rows)
    left = 8 + label_chars * CHAR_W + 8
    right = width - 8 - value_chars * CHAR_W - 8
    span = max(right - left, 1.0)
    peak = max(value for _, value in rows)
    parts = [_open(width, height, title)]
    colour = attr(color)
    for index, (label, value) in enumerate(rows):
        y = 12 + index * (bar_height + gap)
        length = max(value, 0.0) / peak * span
        middle = y + bar_height / 2 + 4
        parts.append(
            f'<g><title>{text(label)}: {text(value_format(value))}</title>'
            f'<text x="{_f(left - 8)}" y="{_f(middle)}" text-anchor="end">'
            f"{text(truncate(label, label_chars))}</text>"
            f'<rect x="{_f(left)}" y="{y}" width="{_f(max(length, 1.0))}" height="{bar_height}" '
            f'fill="{colour}"/>'
            f'<text x="{_f(left + length + 6)}" y="{_f(middle)}">{text(value_format(value))}'
            f"</text></g>"
        )
    parts.append(
        f'<line x1="{_f(left)}" y1="8" x2="{_f(left)}" y2="{height - 4}" stroke="{AXIS}"/></svg>'
    )
    return "".join(parts)
