"""Server-side SVG charts (no chart JavaScript): bars, stacked bars and horizontal bars.

Each function returns markup for an inline <svg> with a <title>, scaled by its viewBox, using
presentation attributes and CSS classes only (the CSP forbids inline style attributes).
Every label passes through markupsafe.escape.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

PALETTE = ("#0a7d4f", "#0b4a8b", "#b45309", "#7c3aed", "#be123c", "#0e7490", "#4d7c0f", "#57606a")


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _nice_max(value: float) -> int:
    """A round axis maximum at or above `value` (1, 2, 5 × 10^n)."""
    if value <= 0:
        return 1
    step = 1
    while step * 10 <= value:
        step *= 10
    for factor in (1, 2, 5, 10):
        if value <= step * factor:
            return step * factor
    return step * 10


def _open(title: str, width: int, height: int, chart_id: str) -> list[str]:
    return [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{chart_id}-title" xmlns="http://www.w3.org/2000/svg" '
        f'preserveAspectRatio="xMidYMid meet">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
    ]


def _intervals(top_value: int) -> int:
    """How many grid intervals make whole-number ticks without repeats (0, 1, 2 … not 0, 0, 1)."""
    for n in (4, 5, 2, 1):
        if n <= top_value and top_value % n == 0:
            return n
    return 1


def _axis(
    parts: list[str], left: int, top: int, width: int, height: int, top_value: int, n: int = 0
) -> None:
    n = n or _intervals(top_value)
    for i in range(n + 1):
        y = top + height - height * i / n
        parts.append(
            f'<line class="chart-grid" x1="{left}" x2="{left + width}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="chart-tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{top_value * i // n:,}</text>"
        )


def _right_axis(parts, x: int, top: int, height: int, top_value: int, n: int, label: str):
    """The line's own scale on the right, with its name, so it is never read on the bar scale."""
    for i in range(n + 1):
        y = top + height - height * i / n
        parts.append(
            f'<text class="chart-tick" x="{x + 6}" y="{y + 4:.1f}" fill="{color(1)}">'
            f"{top_value * i // n:,}</text>"
        )
    middle = top + height / 2
    parts.append(
        f'<text class="chart-tick" x="{x + 44}" y="{middle:.1f}" text-anchor="middle" '
        f'fill="{color(1)}" transform="rotate(90 {x + 44} {middle:.1f})">{escape(label)}</text>'
    )


def bars_with_line(
    labels: Sequence[str],
    bars: Sequence[int],
    line: Sequence[int],
    *,
    title: str,
    bar_label: str,
    line_label: str,
    chart_id: str = "grants-chart",
) -> Markup:
    """Bars (e.g. new per month) on the left axis and a line (e.g. cumulative) on its own scale."""
    width, height, left, top, right, bottom = 640, 260, 56, 16, 64, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = _open(title, width, height, chart_id)
    top_bar = _nice_max(max(bars, default=0))
    n = _intervals(top_bar)
    # The line's scale shares the grid: a whole multiple of the interval count, at least n.
    top_line = max(n, -(-_nice_max(max(line, default=0)) // n) * n)
    _axis(parts, left, top, plot_w, plot_h, top_bar, n)
    _right_axis(parts, left + plot_w, top, plot_h, top_line, n, line_label)
    slot = plot_w / max(1, len(labels))
    points = []
    for i, (label, bar, total) in enumerate(zip(labels, bars, line, strict=True)):
        x = left + slot * i
        h = plot_h * bar / top_bar
        parts.append(
            f'<rect class="chart-bar" x="{x + slot * 0.15:.1f}" y="{top + plot_h - h:.1f}" '
            f'width="{slot * 0.7:.1f}" height="{h:.1f}" fill="{color(0)}">'
            f"<title>{escape(label)}: {bar:,} {escape(bar_label)}, {total:,} {escape(line_label)}"
            "</title></rect>"
        )
        points.append(f"{x + slot / 2:.1f},{top + plot_h - plot_h * total / top_line:.1f}")
        parts.append(
            f'<text class="chart-tick" x="{x + slot / 2:.1f}" y="{top + plot_h + 16}" '
            f'text-anchor="middle">{escape(label[2:] if len(label) == 7 else label)}</text>'
        )
    parts.append(
        f'<polyline class="chart-line" fill="none" stroke="{color(1)}" stroke-width="2.5" '
        f'points="{" ".join(points)}"/>'
    )
    _legend(parts, [(bar_label, color(0)), (line_label, color(1))], left, height - 14)
    parts.append("</svg>")
    return Markup("".join(parts))


def stacked_bars(
    labels: Sequence[str],
    series: dict[str, Sequence[int]],
    *,
    title: str,
    chart_id: str = "events-chart",
) -> Markup:
    """Stacked bars per label (e.g. events per day), one colour per series."""
    width, height, left, top, right = 640, 280, 56, 16, 16
    legend_rows = max(1, -(-len(series) // 3))
    bottom = 40 + 18 * legend_rows
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = _open(title, width, height, chart_id)
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    top_value = _nice_max(max(totals, default=0))
    _axis(parts, left, top, plot_w, plot_h, top_value)
    slot = plot_w / max(1, len(labels))
    for i, label in enumerate(labels):
        x, y = left + slot * i, top + plot_h
        for n, (name, values) in enumerate(series.items()):
            h = plot_h * values[i] / top_value
            if h <= 0:
                continue
            y -= h
            parts.append(
                f'<rect x="{x + slot * 0.15:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
                f'height="{h:.1f}" fill="{color(n)}"><title>{escape(label)} · {escape(name)}: '
                f"{values[i]:,}</title></rect>"
            )
        if len(labels) <= 16 or i % 2 == 0:
            parts.append(
                f'<text class="chart-tick" x="{x + slot / 2:.1f}" y="{top + plot_h + 16}" '
                f'text-anchor="middle">{escape(label[5:])}</text>'
            )
    items = [(name, color(n)) for n, name in enumerate(series)]
    for row in range(legend_rows):
        _legend(parts, items[row * 3 : row * 3 + 3], left, top + plot_h + 38 + 18 * row)
    parts.append("</svg>")
    return Markup("".join(parts))


def horizontal_bars(
    rows: Sequence[tuple[str, int, int]],
    *,
    title: str,
    of_label: str,
    chart_id: str = "coverage-chart",
) -> Markup:
    """One bar per row: (label, value, out of); the bar shows value / out of."""
    row_h, label_w, width = 20, 260, 640
    height = row_h * len(rows) + 8
    parts = _open(title, width, height, chart_id)
    bar_w = width - label_w - 90
    for i, (label, value, total) in enumerate(rows):
        y = 4 + i * row_h
        share = value / total if total else 0
        short = label if len(label) <= 30 else label[:29] + "…"
        parts.append(
            f'<text class="chart-label" x="{label_w - 8}" y="{y + 14}" text-anchor="end">'
            f"{escape(short)}</text>"
            f'<rect class="chart-track" x="{label_w}" y="{y + 3}" width="{bar_w}" height="13" '
            f'fill="#eef1f4"/>'
            f'<rect x="{label_w}" y="{y + 3}" width="{bar_w * share:.1f}" height="13" '
            f'fill="{color(0)}"><title>{escape(label)}: {value:,} {escape(of_label)} {total:,}'
            "</title></rect>"
            f'<text class="chart-tick" x="{label_w + bar_w + 6}" y="{y + 14}">{value:,} '
            f"({share:.0%})</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _legend(parts: list[str], items, x: int, y: int) -> None:
    for i, (name, fill) in enumerate(items):
        left = x + i * 190
        parts.append(
            f'<rect x="{left}" y="{y - 10}" width="12" height="12" fill="{fill}"/>'
            f'<text class="chart-legend" x="{left + 18}" y="{y}">{escape(name)}</text>'
        )
