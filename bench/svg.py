"""Two plots written by hand as SVG (no plotting dependency): throughput against worker
processes, and the CDF of pickup latency and delayed-job lateness (log time axis)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from pathlib import Path

W, H = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 80, 20, 40, 60
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def _frame(title: str, x_label: str, y_label: str) -> list[str]:
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">{escape(title)}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>',
        f'<text x="{LEFT + pw / 2}" y="{H - 15}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text transform="translate(18,{TOP + ph / 2}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>',
    ]


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * exp >= v:
            return m * exp
    return 10 * exp


def _legend(items: Sequence[tuple[str, str, bool]], *, bottom_right: bool = False) -> list[str]:
    out = []
    x0 = W - RIGHT - 250 if bottom_right else LEFT + 10
    y0 = H - BOTTOM - 10 - 16 * len(items) if bottom_right else TOP + 4
    if bottom_right:
        out.append(
            f'<rect x="{x0 - 6}" y="{y0}" width="250" height="{16 * len(items) + 6}" '
            'fill="white" fill-opacity="0.85" stroke="#ccc"/>'
        )
    for i, (label, colour, dashed) in enumerate(items):
        y = y0 + 12 + 16 * i
        dash = ' stroke-dasharray="5,4"' if dashed else ""
        out.append(
            f'<line x1="{x0}" y1="{y}" x2="{x0 + 24}" y2="{y}" stroke="{colour}" '
            f'stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{x0 + 30}" y="{y + 4}">{escape(label)}</text>')
    return out


def scaling(
    path: Path, points: Sequence[tuple[int, float]], ceiling: float | None, title: str
) -> Path:
    """Throughput (jobs/s) against worker processes; the bare ceiling as a dashed line."""
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    xs = [p for p, _ in points]
    top = _nice_max(max([v for _, v in points] + [ceiling or 0]) * 1.1)
    x_max = max([*xs, 1])

    def sx(x: float) -> float:
        return LEFT + pw * (x / (x_max * 1.1))

    def sy(y: float) -> float:
        return TOP + ph * (1 - y / top)

    out = _frame(title, "worker processes", "jobs/s")
    for i in range(6):
        v = top * i / 5
        out.append(
            f'<line x1="{LEFT}" y1="{sy(v):.1f}" x2="{LEFT + pw}" y2="{sy(v):.1f}" '
            f'stroke="#ddd"/><text x="{LEFT - 6}" y="{sy(v) + 4:.1f}" '
            f'text-anchor="end">{v:,.0f}</text>'
        )
    for x in sorted(set(xs)):
        out.append(f'<text x="{sx(x):.1f}" y="{TOP + ph + 18}" text-anchor="middle">{x}</text>')
    pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    out.append(f'<polyline points="{pts}" fill="none" stroke="{COLOURS[0]}" stroke-width="2"/>')
    for x, y in points:
        out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{COLOURS[0]}"/>')
        out.append(
            f'<text x="{sx(x):.1f}" y="{sy(y) - 9:.1f}" text-anchor="middle">{y:,.0f}</text>'
        )
    legend = [("streamq no-op drain", COLOURS[0], False)]
    if ceiling:
        out.append(
            f'<line x1="{LEFT}" y1="{sy(ceiling):.1f}" x2="{LEFT + pw}" y2="{sy(ceiling):.1f}" '
            f'stroke="{COLOURS[1]}" stroke-width="2" stroke-dasharray="5,4"/>'
        )
        legend.append((f"bare consume ceiling, 1 process ({ceiling:,.0f})", COLOURS[1], True))
    out += _legend(legend)
    out.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n", "utf-8")
    return path


def cdf(path: Path, series: Sequence[tuple[str, Sequence[float]]], title: str) -> Path:
    """Empirical CDFs of delays given in seconds, on a log millisecond axis."""
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    all_ms = [max(v * 1000, 1e-3) for _, vs in series for v in vs]
    lo = 10 ** math.floor(math.log10(min(all_ms))) if all_ms else 0.01
    hi = 10 ** math.ceil(math.log10(max(all_ms))) if all_ms else 100.0
    hi = max(hi, lo * 10)
    span = math.log10(hi) - math.log10(lo)

    def sx(ms: float) -> float:
        return LEFT + pw * (math.log10(max(ms, lo)) - math.log10(lo)) / span

    def sy(q: float) -> float:
        return TOP + ph * (1 - q)

    out = _frame(title, "milliseconds (log scale)", "fraction of jobs")
    decade = lo
    while decade <= hi * 1.0001:
        out.append(
            f'<line x1="{sx(decade):.1f}" y1="{TOP}" x2="{sx(decade):.1f}" y2="{TOP + ph}" '
            f'stroke="#ddd"/><text x="{sx(decade):.1f}" y="{TOP + ph + 18}" '
            f'text-anchor="middle">{decade:g}</text>'
        )
        decade *= 10
    for q in (0, 0.25, 0.5, 0.75, 0.9, 1.0):
        out.append(
            f'<line x1="{LEFT}" y1="{sy(q):.1f}" x2="{LEFT + pw}" y2="{sy(q):.1f}" '
            f'stroke="#eee"/><text x="{LEFT - 6}" y="{sy(q) + 4:.1f}" '
            f'text-anchor="end">{q:g}</text>'
        )
    legend = []
    for i, (label, values) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        ms = sorted(max(v * 1000, 1e-3) for v in values)
        if not ms:
            continue
        step = max(1, len(ms) // 400)  # at most ~400 points per curve
        pts = [(ms[k], (k + 1) / len(ms)) for k in range(0, len(ms), step)]
        pts.append((ms[-1], 1.0))
        poly = " ".join(f"{sx(x):.1f},{sy(q):.1f}" for x, q in pts)
        out.append(f'<polyline points="{poly}" fill="none" stroke="{colour}" stroke-width="2"/>')
        legend.append((f"{label} (n={len(ms):,})", colour, False))
    out += _legend(legend, bottom_right=True)
    out.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n", "utf-8")
    return path
