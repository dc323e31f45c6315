"""The report's charts as inline SVG: horizontal bars for the verdicts, a small bar for a
table row, and the hourly timeline against the usage limit. Standard library only; every
text is HTML-escaped here, so a domain or a verdict name can never become markup.

    >>> svg = verdict_chart([("deliverable", "deliverable", 60, "#2e7d32")], total=100)
    >>> svg.startswith("<svg") and "<title>deliverable: 60</title>" in svg
    True
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime

from .report_data import HourCount

BAR_LEFT = 150
"""Where the verdict bars start: their labels fit to the left of it."""
BAR_SPAN = 380
WIDTH = 720


def e(value: object) -> str:
    """Text or an attribute value, escaped for HTML (quotes too)."""
    return html.escape(str(value), quote=True)


def number(value: int) -> str:
    return f"{value:,}"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0.0%"


def verdict_chart(bars: Sequence[tuple[str, str, int, str]], *, total: int) -> str:
    """One labelled bar per (key, label, count, colour), its length relative to the largest,
    with the count and its share of `total`."""
    row = 30
    height = row * max(1, len(bars)) + 8
    top = max((count for _, _, count, _ in bars), default=0) or 1
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="verdicts">']
    for i, (key, label, count, colour) in enumerate(bars):
        y = 4 + i * row
        length = max(1.0, BAR_SPAN * count / top) if count else 0.0
        parts.append(
            f'<g><text x="{BAR_LEFT - 10}" y="{y + 19}" text-anchor="end">{e(label)}</text>'
            f'<rect x="{BAR_LEFT}" y="{y + 4}" width="{length:.1f}" height="{row - 8}" '
            f'rx="3" fill="{e(colour)}"><title>{e(label)}: {number(count)}</title></rect>'
            f'<text x="{BAR_LEFT + length + 8:.1f}" y="{y + 19}">'
            f'<tspan class="value" data-verdict="{e(key)}">{number(count)}</tspan>'
            f'<tspan class="muted"> · {percent(count, total)}</tspan></text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def row_bar(value: int, top: int, colour: str) -> str:
    """A bar for a table row, its length relative to `top`."""
    length = 160 * value / top if top else 0.0
    return (
        f'<svg class="rowbar" viewBox="0 0 160 12" aria-hidden="true">'
        f'<rect width="{max(length, 1.0 if value else 0.0):.1f}" height="12" rx="2" '
        f'fill="{e(colour)}"/></svg>'
    )


def hour_label(start: float, *, with_date: bool = True) -> str:
    """A clock hour in the local time zone of the machine writing the report."""
    when = datetime.fromtimestamp(start).astimezone()
    return when.strftime("%Y-%m-%d %H:%M %Z" if with_date else "%H:%M")


def timeline_chart(hours: Sequence[HourCount], limit_per_hour: int | None, limit: str) -> str:
    """Emails submitted per clock hour as bars, and the usage limit as a dashed line."""
    left, right, top_pad, bottom = 70, 16, 18, 44
    height = 260
    plot_w, plot_h = WIDTH - left - right, height - top_pad - bottom
    peak = max((h.emails for h in hours), default=0)
    # A limit far above what was sent (a simulation's) would flatten every bar to nothing:
    # then the axis follows the bars and the limit is named above them instead.
    on_chart = limit_per_hour is not None and limit_per_hour <= 3 * max(peak, 1)
    scale_top = max(peak, limit_per_hour if on_chart and limit_per_hour else 0, 1) * 1.1
    slot = plot_w / max(1, len(hours))
    gap = min(2.0, slot * 0.2)
    base = top_pad + plot_h

    def y_of(value: float) -> float:
        return base - plot_h * value / scale_top

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="emails submitted per hour">',
        f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{base}" class="axis"/>',
        f'<line x1="{left}" y1="{base}" x2="{WIDTH - right}" y2="{base}" class="axis"/>',
        f'<text x="{left - 8}" y="{base + 4}" text-anchor="end" class="muted">0</text>',
        f'<text x="{left - 8}" y="{y_of(peak) + 4:.1f}" text-anchor="end" class="muted">'
        f"{number(peak)}</text>",
    ]
    for i, hour in enumerate(hours):
        # A short job's few bars stay bars, not slabs.
        width = min(max(slot - gap, 0.5), 48.0)
        x = left + (i + 0.5) * slot - width / 2
        y = y_of(hour.emails)
        label = hour_label(hour.start)
        parts.append(
            f'<rect class="hour" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
            f'height="{base - y:.1f}" data-hour="{hour.start:.0f}" data-emails="{hour.emails}">'
            f"<title>{e(label)}: {number(hour.emails)} emails</title></rect>"
        )
    # At most a dozen hour labels, evenly spread, so long multi-night jobs stay legible.
    every = max(1, -(-len(hours) // 12))
    last_day = ""
    for i in range(0, len(hours), every):
        x = left + (i + 0.5) * slot
        start = hours[i].start
        text = hour_label(start, with_date=False)
        # The date under the first label of each day only.
        day = datetime.fromtimestamp(start).strftime("%b %d")
        day, last_day = ("" if day == last_day else day), day
        parts.append(
            f'<text x="{x:.1f}" y="{base + 16}" text-anchor="middle" class="muted">{e(text)}'
            f'</text><text x="{x:.1f}" y="{base + 32}" text-anchor="middle" class="muted">'
            f"{e(day)}</text>"
        )
    if limit_per_hour:
        y = y_of(limit_per_hour) if on_chart else top_pad - 4.0
        if on_chart:
            parts.append(
                f'<line x1="{left}" y1="{y:.1f}" x2="{WIDTH - right}" y2="{y:.1f}" class="limit"/>'
            )
        parts.append(
            f'<text x="{WIDTH - right}" y="{y - 5 if on_chart else y:.1f}" text-anchor="end" '
            f'class="limit-text">usage limit {e(limit)} · <tspan data-figure="limit_per_hour">'
            f"{number(limit_per_hour)}</tspan> per hour{'' if on_chart else ' (far above)'}"
            "</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
