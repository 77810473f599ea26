"""Plots of a stored leaderboard as inline SVG: built on the server, no charting library.

Pure functions: plain values in, an SVG string out; no Django, no I/O. Every text that comes from
data (model names) is escaped. Colours are colour-blind safe: a purple-orange diverging scale for
probabilities, a single-hue blue scale for counts, the Okabe-Ito palette for lines. Each mark has
a `<title>`, so hovering shows the exact figure and screen readers can read it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

FONT = "system-ui, -apple-system, 'Segoe UI', sans-serif"
INK, MUTED, GRID, ACCENT = "#1b1f24", "#57606a", "#e4e8ec", "#0b5cad"
# Okabe & Ito (2008): distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
# PuOr: orange for "row loses", purple for "row wins", near-white for even.
DIVERGING = ((179, 88, 6), (247, 247, 247), (84, 39, 136))
SEQUENTIAL = ((247, 251, 255), (8, 69, 148))


@dataclass(frozen=True)
class RatingPoint:
    label: str
    rating: float
    lower: float
    upper: float


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[dt.datetime, float]]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def diverging_colour(value: float) -> str:
    """0 -> orange, 0.5 -> near-white, 1 -> purple (values are clipped to [0, 1])."""
    t = min(1.0, max(0.0, value))
    low, mid, high = DIVERGING
    return _hex(_mix(low, mid, t * 2) if t < 0.5 else _mix(mid, high, (t - 0.5) * 2))


def sequential_colour(value: float, top: float) -> str:
    """0 -> near-white, `top` -> dark blue, on a square-root scale (counts are skewed)."""
    t = 0.0 if top <= 0 else math.sqrt(min(1.0, max(0.0, value / top)))
    return _hex(_mix(*SEQUENTIAL, t))


def text_colour(fill: str) -> str:
    """Black or white, whichever reads better on `fill` (relative luminance)."""
    r, g, b = (int(fill[k : k + 2], 16) / 255 for k in (1, 3, 5))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return "#ffffff" if luminance < 0.5 else INK


def _svg(width: float, height: float, body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" role="img" aria-label="{escape(label)}" '
        f'font-family="{FONT}" font-size="12" class="plot">' + "".join(body) + "</svg>"
    )


def _clip(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def ratings_svg(points: Sequence[RatingPoint], *, label_width: int = 190) -> str:
    """Each model's rating (dot) and interval (bar), best first, on a shared axis."""
    if not points:
        return ""
    row, top, plot_w = 22, 28, 520
    width, height = label_width + plot_w + 20, top + row * len(points) + 10
    low = min(p.lower for p in points)
    high = max(p.upper for p in points)
    pad = max((high - low) * 0.05, 5.0)
    low, high = low - pad, high + pad

    def x(value: float) -> float:
        return label_width + (value - low) / (high - low) * plot_w

    body: list[str] = []
    for tick in nice_ticks(low, high, 6):
        body.append(
            f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top - 6}" y2="{height - 8}" '
            f'stroke="{GRID}"/><text x="{x(tick):.1f}" y="{top - 12}" text-anchor="middle" '
            f'fill="{MUTED}">{tick:g}</text>'
        )
    for k, p in enumerate(points):
        y = top + row * k + row / 2
        tip = escape(f"{p.label}: {p.rating:.0f} (95% CI {p.lower:.0f} to {p.upper:.0f})")
        body.append(
            f"<g><title>{tip}</title>"
            f'<text x="{label_width - 10}" y="{y + 4:.1f}" text-anchor="end" fill="{INK}">'
            f"{escape(_clip(p.label))}</text>"
            f'<line x1="{x(p.lower):.1f}" x2="{x(p.upper):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{ACCENT}" stroke-width="3" stroke-linecap="round" opacity="0.45"/>'
            f'<circle cx="{x(p.rating):.1f}" cy="{y:.1f}" r="4.5" fill="{ACCENT}"/></g>'
        )
    return _svg(width, height, body, "Ratings with 95% confidence intervals")


def _cell_text(value: float, kind: str) -> str:
    if kind == "count":
        return f"{value / 1000:.1f}k" if value >= 10_000 else f"{value:.0f}"
    return f"{value:.2f}".lstrip("0") if value < 1 else "1"


def heatmap_svg(
    labels: Sequence[str],
    values: Sequence[Sequence[float | None]],
    *,
    kind: str,
    title: str,
    label_width: int = 170,
) -> str:
    """A square matrix, row against column, with the value written in each cell.

    `kind` is "probability" (diverging scale around 0.5) or "count" (sequential scale). Missing
    values (None, NaN) and the diagonal are left blank.
    """
    if kind not in ("probability", "count"):
        raise ValueError(f"unknown heatmap kind {kind!r}")
    n = len(labels)
    if n == 0:
        return ""
    cell, top = 38, 120
    width, height = label_width + cell * n + 10, top + cell * n + 10
    finite = [v for r in values for v in r if v is not None and math.isfinite(v)]
    peak = max(finite, default=0.0)
    body: list[str] = []
    for j, name in enumerate(labels):
        cx = label_width + cell * j + cell / 2
        body.append(
            f'<text transform="translate({cx + 4:.1f},{top - 8}) rotate(-50)" fill="{INK}">'
            f"{escape(_clip(name, 20))}</text>"
        )
    for i, name in enumerate(labels):
        y = top + cell * i
        body.append(
            f'<text x="{label_width - 8}" y="{y + cell / 2 + 4:.1f}" text-anchor="end" '
            f'fill="{INK}">{escape(_clip(name, 22))}</text>'
        )
        for j in range(n):
            value = values[i][j]
            x = label_width + cell * j
            if i == j or value is None or not math.isfinite(value):
                body.append(
                    f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" rx="3" '
                    f'fill="#f3f4f6"/>'
                )
                continue
            fill = (
                diverging_colour(value) if kind == "probability" else sequential_colour(value, peak)
            )
            shown = _cell_text(value, kind)
            tip = escape(f"{name} vs {labels[j]}: {value:.3f}" if kind == "probability"
                         else f"{name} vs {labels[j]}: {value:.0f} battles")  # fmt: skip
            body.append(
                f'<g><title>{tip}</title><rect x="{x}" y="{y}" width="{cell - 2}" '
                f'height="{cell - 2}" rx="3" fill="{fill}"/><text x="{x + (cell - 2) / 2:.1f}" '
                f'y="{y + cell / 2 + 3:.1f}" text-anchor="middle" font-size="11" '
                f'fill="{text_colour(fill)}">{shown}</text></g>'
            )
    return _svg(width, height, body, title)


def _time_ticks(start: dt.datetime, end: dt.datetime, count: int = 5) -> list[dt.datetime]:
    if end <= start:
        return [start]
    step = (end - start) / (count - 1)
    return [start + step * k for k in range(count)]


def history_svg(series: Sequence[Series], *, title: str = "Rating history") -> str:
    """Ratings over time, one line per model, labelled at the right in the order they end."""
    drawn = [s for s in series if len(s.points) >= 1]
    times = [t for s in drawn for t, _ in s.points]
    if not drawn or len(set(times)) < 2:
        return ""
    left, top, plot_w, plot_h = 52, 16, 560, 260
    legend_w = 200 if len(drawn) > 1 else 20
    width, height = left + plot_w + legend_w, top + plot_h + 40
    start, end = min(times), max(times)
    ratings = [r for s in drawn for _, r in s.points]
    low, high = min(ratings), max(ratings)
    pad = max((high - low) * 0.08, 5.0)
    low, high = low - pad, high + pad
    span = (end - start).total_seconds()

    def x(t: dt.datetime) -> float:
        return left + (t - start).total_seconds() / span * plot_w

    def y(r: float) -> float:
        return top + (high - r) / (high - low) * plot_h

    body: list[str] = []
    for tick in nice_ticks(low, high, 5):
        body.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="{GRID}"/><text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" '
            f'fill="{MUTED}">{tick:g}</text>'
        )
    fmt = "%H:%M" if span < 86400 else ("%b %d %H:%M" if span < 7 * 86400 else "%Y-%m-%d")
    for k, tick in enumerate(_time_ticks(start, end)):
        anchor = "start" if k == 0 else ("end" if k == 4 else "middle")
        body.append(
            f'<text x="{x(tick):.1f}" y="{top + plot_h + 18}" text-anchor="{anchor}" '
            f'fill="{MUTED}">{tick.strftime(fmt)}</text>'
        )
    body.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" '
        f'stroke="{MUTED}"/>'
    )
    ordered = sorted(drawn, key=lambda s: -max(s.points)[1])
    for k, s in enumerate(ordered):
        colour = PALETTE[k % len(PALETTE)]
        dash = "" if k < len(PALETTE) else ' stroke-dasharray="5 3"'
        points = sorted(s.points)
        path = " ".join(f"{x(t):.1f},{y(r):.1f}" for t, r in points)
        last_t, last_r = points[-1]
        body.append(
            f"<g><title>{escape(s.label)}: {last_r:.0f} now</title>"
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.2"'
            f'{dash}/><circle cx="{x(last_t):.1f}" cy="{y(last_r):.1f}" r="3.5" '
            f'fill="{colour}"/></g>'
        )
        ly = top + 10 + k * 20
        if len(drawn) == 1:
            continue  # the title names the one model
        body.append(
            f'<line x1="{left + plot_w + 16}" x2="{left + plot_w + 36}" y1="{ly}" y2="{ly}" '
            f'stroke="{colour}" stroke-width="3"{dash}/><text x="{left + plot_w + 42}" '
            f'y="{ly + 4}" fill="{INK}">{escape(_clip(s.label, 22))}</text>'
        )
    return _svg(width, height, body, title)
