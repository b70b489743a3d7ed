"""Inline SVG charts rendered on the server: no JavaScript library, no CDN, works offline.

The SVG scales with its container (``viewBox`` + ``width: 100%``); every bar carries a
``<title>`` so hovering (or a screen reader) gives the exact value.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 600
HEIGHT = 180
PAD_LEFT = 44
PAD_BOTTOM = 22
PAD_TOP = 10


def _fmt(value) -> str:
    if isinstance(value, Decimal):
        return f"{value:,.2f}" if value < 1000 else f"{value:,.0f}"
    value = int(value)
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:,}"


def bar_chart_svg(
    points: Sequence[tuple[date, int | Decimal]],
    *,
    label: str,
    unit: str = "",
    css_class: str = "bars",
    tick_format: str = "%b %d",
    tip_format: str | None = None,
) -> SafeString:
    """A bar chart, one bar per point (a day, or an hour as a datetime), y-axis from 0 to the
    maximum. ``tick_format``/``tip_format``: ``strftime`` formats of the axis labels and the
    hover text (the hover text is the ISO date without one)."""
    count = len(points)
    peak = max((v for _, v in points), default=0) or 0
    plot_w = WIDTH - PAD_LEFT - 4
    plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = plot_w / max(count, 1)
    bar_w = max(slot * 0.7, 1)
    parts = [
        f'<svg class="chart {escape(css_class)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
        f'<line class="axis" x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{WIDTH}" y2="{PAD_TOP + plot_h}"/>',
        f'<text class="tick" x="{PAD_LEFT - 6}" y="{PAD_TOP + 8}" text-anchor="end">{_fmt(peak)}</text>',
        f'<text class="tick" x="{PAD_LEFT - 6}" y="{PAD_TOP + plot_h}" text-anchor="end">0</text>',
        f'<line class="grid" x1="{PAD_LEFT}" y1="{PAD_TOP}" x2="{WIDTH}" y2="{PAD_TOP}"/>',
    ]
    for i, (day, value) in enumerate(points):
        height = 0 if not peak else float(Decimal(value) / Decimal(peak)) * plot_h
        x = PAD_LEFT + i * slot + (slot - bar_w) / 2
        y = PAD_TOP + plot_h - height
        when = day.strftime(tip_format) if tip_format else day.isoformat()
        tip = f"{when}: {_fmt(value)}{(' ' + unit) if unit else ''}"
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(height, 0):.1f}" '
            f'data-day="{day.isoformat()}" data-value="{escape(str(value))}">'
            f"<title>{escape(tip)}</title></rect>"
        )
    if count:
        for i in sorted({0, count // 2, count - 1}):
            x = PAD_LEFT + i * slot + slot / 2
            anchor = "start" if i == 0 else "end" if i == count - 1 else "middle"
            parts.append(
                f'<text class="tick" x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
                f"{escape(points[i][0].strftime(tick_format))}</text>"
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 — every interpolated string is escaped above
