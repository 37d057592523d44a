"""The report's plots as inline SVG strings, drawn by hand (no plotting library is a dependency):
a dot plot with confidence whiskers (a metric by method, one colour per series), a line plot
(a metric by LM size, one line per method) and a scatter plot of labelled points (quality against
cost, one point per method). Text is escaped; sizes are in CSS pixels."""
from __future__ import annotations

import math
from html import escape

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac"]
WIDTH = 480
ROW = 22
LABEL_W = 130
LEGEND_W = 115
MARGIN = 14
TOP = 30
BOTTOM = 34
SCATTER_W = 340
SCATTER_H = 250
LABEL_CHAR = 5.5
LABEL_LINE = 11
"""A point label's width per character and its line height (10 px text)."""
LOG_SPAN = 10.0
"""A scatter's x axis is logarithmic when its values are positive and span more than this factor."""


def ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About `n` round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else [0.0]
    raw = (hi - lo) / n
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start = math.floor(lo / step + 1e-9) * step
    return [round(start + i * step, 10) for i in range(math.ceil((hi - start) / step - 1e-9) + 1)]


def dot_plot(labels: list[str], series: dict[str, list[tuple | None]], title: str, x_label: str) -> str:
    """One row per label; per series a dot at the value (entry[0]) and, when the entry has three
    values, a whisker from entry[1] to entry[2]. None entries are not drawn."""
    values = [v for entries in series.values() for e in entries if e for v in e if _finite(v)]
    axis = ticks(min(values, default=0.0), max(values, default=1.0))
    x = _scale(axis[0], axis[-1], LABEL_W, WIDTH - LEGEND_W - 2 * MARGIN)
    height = TOP + ROW * len(labels) + BOTTOM
    parts = [_title(title), *_x_axis(axis, x, TOP, TOP + ROW * len(labels), x_label)]
    offset = ROW * 0.5 / max(len(series), 1)
    for i, label in enumerate(labels):
        y0 = TOP + ROW * i
        parts.append(f'<text x="{LABEL_W - 6}" y="{y0 + ROW / 2 + 4:.1f}" text-anchor="end">{escape(label)}</text>')
        for j, (name, entries) in enumerate(series.items()):
            entry = entries[i]
            if not entry or not _finite(entry[0]):
                continue
            y = y0 + ROW / 4 + offset * (j + 0.5)
            colour = PALETTE[j % len(PALETTE)]
            tip = f"{name}: {_fmt(entry[0])}" + (f" [{_fmt(entry[1])}, {_fmt(entry[2])}]" if len(entry) == 3 else "")
            if len(entry) == 3 and _finite(entry[1]) and _finite(entry[2]):
                parts.append(f'<line x1="{x(entry[1]):.1f}" x2="{x(entry[2]):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                             f'stroke="{colour}" stroke-width="2"/>')
            parts.append(f'<circle cx="{x(entry[0]):.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">'
                         f'<title>{escape(label)} · {escape(tip)}</title></circle>')
    parts += _legend(list(series), TOP)
    return _svg(height, parts, title)


def line_plot(x_labels: list[str], series: dict[str, list[float]], title: str, y_label: str) -> str:
    """One line per series over the categorical x positions; NaN values break the line."""
    values = [v for vs in series.values() for v in vs if _finite(v)]
    axis = ticks(min(values, default=0.0), max(values, default=1.0))
    height = 240
    plot_top, plot_bottom = TOP, height - BOTTOM
    y = _scale(axis[0], axis[-1], plot_bottom, plot_top)
    left, right = 60, WIDTH - LEGEND_W - 2 * MARGIN
    step = (right - left) / max(len(x_labels) - 1, 1)
    x = {i: left + step * i if len(x_labels) > 1 else (left + right) / 2 for i in range(len(x_labels))}
    parts = [_title(title)]
    for t in axis:
        parts.append(f'<line class="grid" x1="{left}" x2="{right}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>'
                     f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for i, label in x.items():
        parts.append(f'<text x="{label:.1f}" y="{plot_bottom + 16}" text-anchor="middle">{escape(x_labels[i])}</text>')
    parts.append(f'<text x="14" y="{(plot_top + plot_bottom) / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {(plot_top + plot_bottom) / 2:.1f})">{escape(y_label)}</text>')
    for j, (name, vs) in enumerate(series.items()):
        colour = PALETTE[j % len(PALETTE)]
        points = [(x[i], y(v)) for i, v in enumerate(vs) if _finite(v)]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for (px, py), v in zip(points, [v for v in vs if _finite(v)]):
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}">'
                         f'<title>{escape(name)}: {_fmt(v)}</title></circle>')
    parts += _legend(list(series), TOP)
    return _svg(height, parts, title)


def scatter_plot(points: list[tuple[str, float, float]], title: str, x_label: str, y_label: str) -> str:
    """One labelled dot per (label, x, y) of finite values. The x axis is logarithmic (ticks at powers
    of ten) when every x is positive and the largest is more than `LOG_SPAN` times the smallest, else
    linear from 0; its label ends in "(log scale)" or "(linear scale)"."""
    xs, ys = [x for _, x, _ in points], [y for _, _, y in points]
    log = bool(xs) and min(xs) > 0 and max(xs) > LOG_SPAN * min(xs)
    if log:
        low, high = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
        step = math.ceil((high - low) / 6)
        x_axis = [10.0 ** e for e in range(low, high + step, step)]
        to_x = math.log10
    else:
        x_axis = _span_ticks(min([0.0, *xs]), max(xs, default=1.0))
        to_x = float
    y_axis = _span_ticks(min(ys, default=0.0), max(ys, default=1.0))
    left, right, bottom = 52, SCATTER_W - MARGIN, SCATTER_H - BOTTOM
    x = _scale(to_x(x_axis[0]), to_x(x_axis[-1]), left, right)
    y = _scale(y_axis[0], y_axis[-1], bottom, TOP)
    parts = [_title(title)]
    for t in x_axis:
        parts.append(f'<line class="grid" x1="{x(to_x(t)):.1f}" x2="{x(to_x(t)):.1f}" y1="{TOP}" y2="{bottom}"/>'
                     f'<text x="{x(to_x(t)):.1f}" y="{bottom + 14}" text-anchor="middle">{_fmt(t)}</text>')
    for t in y_axis:
        parts.append(f'<line class="grid" x1="{left}" x2="{right}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>'
                     f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    scale = "log scale" if log else "linear scale"
    parts.append(f'<text x="{(left + right) / 2:.1f}" y="{bottom + 28}" text-anchor="middle">'
                 f'{escape(x_label)} ({scale})</text>')
    parts.append(f'<text x="14" y="{(TOP + bottom) / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {(TOP + bottom) / 2:.1f})">{escape(y_label)}</text>')
    placed: list[tuple[float, float, float]] = []
    for j, (label, vx, vy) in enumerate(points):
        px, py = x(to_x(vx)), y(vy)
        anchor, dx = ("end", -6) if px > right - 70 else ("start", 6)
        ly = _free_line(placed, px + dx if dx > 0 else px + dx - LABEL_CHAR * len(label), len(label), py + 3)
        parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{PALETTE[j % len(PALETTE)]}">'
                     f'<title>{escape(label)}: {_fmt(vy)} at {_fmt(vx)}</title></circle>'
                     f'<text class="label" x="{px + dx:.1f}" y="{ly:.1f}" text-anchor="{anchor}">'
                     f'{escape(label)}</text>')
    return _svg(SCATTER_H, parts, title, SCATTER_W, "plot scatter")


def _free_line(placed: list[tuple[float, float, float]], left: float, chars: int, y: float) -> float:
    """The baseline nearest `y` (a line up or down at a time) where a label of `chars` characters
    starting at `left` overlaps none of `placed` (left, right, baseline); it is added to `placed`."""
    right = left + LABEL_CHAR * chars
    for shift in (0, 1, -1, 2, -2, 3, -3):
        line = y + shift * LABEL_LINE
        if not any(abs(line - base) < LABEL_LINE and left < end and start < right for start, end, base in placed):
            break
    else:
        line = y
    placed.append((left, right, line))
    return line


def _span_ticks(lo: float, hi: float) -> list[float]:
    """`ticks` over [lo, hi], widened around a single value so that the axis has a length."""
    if hi <= lo:
        pad = abs(lo) * 0.1 or 0.1
        lo, hi = lo - pad, hi + pad
    return ticks(lo, hi)


def _x_axis(axis: list[float], x, top: float, bottom: float, label: str) -> list[str]:
    out = []
    for t in axis:
        out.append(f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{bottom}"/>'
                   f'<text x="{x(t):.1f}" y="{bottom + 14}" text-anchor="middle">{_fmt(t)}</text>')
    mid = (x(axis[0]) + x(axis[-1])) / 2
    out.append(f'<text x="{mid:.1f}" y="{bottom + 28}" text-anchor="middle">{escape(label)}</text>')
    return out


def _legend(names: list[str], top: float) -> list[str]:
    left = WIDTH - LEGEND_W
    out = []
    for j, name in enumerate(names):
        y = top + 6 + 16 * j
        out.append(f'<circle cx="{left + 5}" cy="{y}" r="4" fill="{PALETTE[j % len(PALETTE)]}"/>'
                   f'<text x="{left + 13}" y="{y + 4}">{escape(name)}</text>')
    return out


def _scale(lo: float, hi: float, a: float, b: float):
    span = hi - lo or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _title(title: str) -> str:
    return f'<text class="title" x="{MARGIN}" y="18">{escape(title)}</text>'


def _svg(height: float, parts: list[str], title: str, width: int = WIDTH, css: str = "plot") -> str:
    return (f'<svg class="{css}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0f}" '
            f'viewBox="0 0 {width} {height:.0f}" role="img" aria-label="{escape(title)}">' + "".join(parts) + "</svg>")


def _finite(v) -> bool:
    return v is not None and isinstance(v, int | float) and math.isfinite(v)


def _fmt(v: float) -> str:
    return f"{v:.3g}" if _finite(v) else "–"
