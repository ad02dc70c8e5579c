"""Charts as server-side SVG: no build step, no script, no CDN; readable without colour and without sight.

:func:`bars` draws bars per category (a day), stacked when there are several series. The
SVG carries a ``<title>`` and a ``<desc>`` that says what the figures are (the largest, the
total), ``role="img"`` names it for screen readers, each bar has its own ``<title>`` (a
tooltip), and the page puts the same numbers in a table next to it (:func:`table_rows`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from flask_babel import gettext as _
from markupsafe import Markup, escape

WIDTH, HEIGHT = 600, 180
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 22
_ids = itertools.count(1)


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]
    colour: str  # AA contrast against white (admin/vestnik.css's shades)


def _nice_top(peak: float) -> float:
    """A round number at or above ``peak`` for the axis (1, 2, 5 × 10^n)."""
    if peak <= 0:
        return 1.0
    step = 10 ** (len(str(int(peak))) - 1)
    for m in (1, 2, 5, 10):
        if m * step >= peak:
            return float(m * step)
    return float(10 * step)


def _fmt(v: float, unit: str) -> str:
    text = f"{v:,.0f}" if v >= 10 or float(v).is_integer() else f"{v:,.1f}"
    return f"{text} {unit}".strip()


def bars(title: str, categories: Sequence[str], series: Sequence[Series], *, unit: str = "",
         stacked: bool = True, summary: str = "") -> Markup:
    """An SVG bar chart: one group per category, series stacked (or side by side)."""
    uid = next(_ids)
    n = max(1, len(categories))
    totals = [sum(s.values[i] for s in series) for i in range(len(categories))]
    peak = max((totals if stacked else [v for s in series for v in s.values]) or [0])
    top = _nice_top(peak)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / n
    bar_w = slot * 0.7 / (1 if stacked else max(1, len(series)))
    y = lambda v: TOP + plot_h - (v / top) * plot_h  # noqa: E731
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart{uid}-t chart{uid}-d" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart{uid}-t">{escape(title)}</title>',
        f'<desc id="chart{uid}-d">{escape(summary or describe(categories, series, unit))}</desc>',
    ]
    for frac in (0.0, 0.5, 1.0):
        gy = y(top * frac)
        parts.append(f'<line class="{"axis" if frac == 0 else "grid"}" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
                     f'y1="{gy:.1f}" y2="{gy:.1f}"/>')
        parts.append(f'<text x="{LEFT - 4}" y="{gy + 4:.1f}" text-anchor="end">{escape(_fmt(top * frac, ""))}</text>')
    label_every = max(1, round(n / 7))
    for i, cat in enumerate(categories):
        x0 = LEFT + i * slot + (slot - bar_w * (1 if stacked else len(series))) / 2
        base = 0.0
        for k, s in enumerate(series):
            v = float(s.values[i])
            if v > 0:
                lo, hi = (base, base + v) if stacked else (0.0, v)
                x = x0 if stacked else x0 + k * bar_w
                h = max(1.0, y(lo) - y(hi))
                parts.append(f'<rect x="{x:.1f}" y="{y(hi):.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                             f'fill="{s.colour}"><title>{escape(cat)}: {escape(_fmt(v, unit))} '
                             f'{escape(s.name)}</title></rect>')
            if stacked:
                base += v
        if i % label_every == 0 or i == n - 1:
            parts.append(f'<text x="{LEFT + i * slot + slot / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
                         f'{escape(cat[5:] if len(cat) == 10 else cat)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text and attribute above went through escape()


def describe(categories: Sequence[str], series: Sequence[Series], unit: str = "") -> str:
    """One sentence with what matters: each series' total and its largest value (and when)."""
    if not categories:
        return _("No data.")
    bits = []
    for s in series:
        total = sum(s.values)
        if total:
            i = max(range(len(s.values)), key=lambda j: s.values[j])
            bits.append(_("%(name)s: %(total)s in all, most on %(day)s (%(most)s)", name=s.name,
                          total=_fmt(total, unit), day=categories[i], most=_fmt(s.values[i], unit)))
        else:
            bits.append(_("%(name)s: none", name=s.name))
    return _("%(first)s to %(last)s.", first=categories[0], last=categories[-1]) + " " + "; ".join(bits) + "."


