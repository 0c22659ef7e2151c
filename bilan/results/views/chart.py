"""A trend as an SVG chart, drawn on the server: the reference range as a band, the results as
a line, out-of-range results marked with another colour and shape (colour is never the only
sign), each point focusable with its date and value shown on hover and focus. Deterministic and
self-contained: no script, no font or file to fetch, so it swaps into an htmx block as is.

The page shows the same values in a table beside the chart: the chart is its illustration,
the table is what a screen reader reads."""

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from html import escape

from bilan import french
from bilan.results.desk import typed
from bilan.results.views.trends import Point, Series

WIDTH, HEIGHT = 480, 260
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 16, 36
_FLAGS = {"H": "élevé", "HH": "très élevé", "L": "bas", "LL": "très bas", "A": "anormal", "AA": "très anormal"}


def trend_svg(series: Series) -> str:
    points = series.points
    if not points:
        return ""
    values = [p.value for p in points] + [v for v in (series.low, series.high) if v is not None]
    bottom, top = _padded(min(values), max(values))
    start, end = points[0].when.timestamp(), points[-1].when.timestamp()

    def x(moment: datetime) -> float:
        inner = WIDTH - LEFT - RIGHT
        return LEFT + (inner / 2 if end == start else (moment.timestamp() - start) / (end - start) * inner)

    def y(value: Decimal) -> float:
        inner = HEIGHT - TOP - BOTTOM
        return TOP + float((top - value) / (top - bottom)) * inner

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" class="trend" '
             f'role="img" aria-labelledby="chart-title chart-desc">',
             f'<title id="chart-title">{escape(french.label_with_unit(series.label, series.unit))}</title>',
             f'<desc id="chart-desc">{escape(_description(series))}</desc>',
             '<style>.tip{display:none;font:14px sans-serif}.point:hover .tip,.point:focus .tip{display:inline}'
             '.point:focus{outline:none}.point:focus circle,.point:focus rect{stroke:#000;stroke-width:3}</style>']
    if series.low is not None or series.high is not None:
        upper = y(series.high) if series.high is not None else TOP
        lower = y(series.low) if series.low is not None else HEIGHT - BOTTOM
        parts.append(f'<rect class="band" x="{LEFT}" y="{upper:.1f}" width="{WIDTH - LEFT - RIGHT}" '
                     f'height="{max(lower - upper, 1):.1f}" fill="#dff3e4"><title>Valeurs de référence : '
                     f'{escape(_range(series))}</title></rect>')
    parts += _axes(bottom, top, points, y)
    line = " ".join(f"{x(p.when):.1f},{y(p.value):.1f}" for p in points)
    parts.append(f'<polyline points="{line}" fill="none" stroke="#000091" stroke-width="2"/>')
    for point in points:
        parts.append(_point(point, x(point.when), y(point.value)))
    parts.append("</svg>")
    return "".join(parts)


def point_label(point: Point) -> str:
    """"12/03/2026 : 7,2 mmol/L, élevé" (the original value too when it was converted)."""
    text = f"{french.date(point.when)} : {typed.comparator_text(point.comparator)}{french.quantity(point.value, point.unit)}"
    if point.original_unit != point.unit:
        text += f" (rendu {french.quantity(point.original_value, point.original_unit)})"
    flag = _FLAGS.get(point.flag or "") or ("hors des valeurs de référence" if point.out_of_range else "")
    return f"{text}, {flag}" if flag else text


def _point(point: Point, cx: float, cy: float) -> str:
    label = escape(point_label(point))
    if point.out_of_range:  # a red square: shape and colour
        mark = f'<rect x="{cx - 6:.1f}" y="{cy - 6:.1f}" width="12" height="12" fill="#ce0500"/>'
    else:
        mark = f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="#000091"/>'
    anchor = "end" if cx > WIDTH / 2 else "start"
    tip_x = cx - 8 if anchor == "end" else cx + 8
    return (f'<g class="point{" out" if point.out_of_range else ""}" tabindex="0" role="img" aria-label="{label}">'
            f'{mark}<title>{label}</title>'
            f'<text class="tip" x="{tip_x:.1f}" y="{max(cy - 10, 12):.1f}" text-anchor="{anchor}" '
            f'paint-order="stroke" stroke="#fff" stroke-width="4">{label}</text></g>')


def _axes(bottom: Decimal, top: Decimal, points: tuple[Point, ...], y: Callable[[Decimal], float]) -> list[str]:
    parts = [f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="#666"/>',
             f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" stroke="#666"/>']
    for n in range(5):
        value = bottom + (top - bottom) * n / 4
        parts.append(f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end" font-size="13" '
                     f'font-family="sans-serif">{french.number(_tick(value))}</text>')
    first, last = french.date(points[0].when), french.date(points[-1].when)
    parts.append(f'<text x="{LEFT}" y="{HEIGHT - 16}" font-size="13" font-family="sans-serif">{first}</text>')
    if last != first:
        parts.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 16}" text-anchor="end" font-size="13" '
                     f'font-family="sans-serif">{last}</text>')
    return parts


def _padded(low: Decimal, high: Decimal) -> tuple[Decimal, Decimal]:
    span = (high - low) or abs(high) or Decimal(1)
    return low - span / 10, high + span / 10


def _tick(value: Decimal) -> Decimal:
    """An axis graduation (not a result: rounding it hides nothing), without useless zeros."""
    rounded = value.quantize(Decimal("0.01")) if abs(value) < 10 else value.quantize(Decimal("0.1"))
    return rounded.to_integral() if rounded == rounded.to_integral() else rounded


def _range(series: Series) -> str:
    low, high, shown = french.number(series.low), french.number(series.high), french.unit(series.unit)
    if low and high:
        text = f"{low} à {high}"
    else:
        text = f"au moins {low}" if low else f"au plus {high}"
    return f"{text} {shown}" if shown else text


def _description(series: Series) -> str:
    out = sum(1 for p in series.points if p.out_of_range)
    text = f"{len(series.points)} résultats du {french.date(series.points[0].when)} au " \
           f"{french.date(series.points[-1].when)}"
    if series.low is not None or series.high is not None:
        text += f", valeurs de référence {_range(series)}"
    return text + (f", dont {out} hors des valeurs de référence." if out else ".") + \
        " Le tableau à côté du graphique donne chaque valeur."
