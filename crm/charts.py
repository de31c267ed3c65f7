"""
Charts for staff pages, drawn on the server as SVG: no script, no CDN.

A chart is data in, geometry out; templates/admin/charts/chart.html draws it
with its axes, ticks, labels and key, and writes the same figures as a table
beside it for screen readers (the SVG itself is hidden from them):

    chart = charts.bars(
        ["7 Sep", "14 Sep", ...],
        [charts.Series("Joined", [12, 30, ...]), charts.Series("Left", [-3, -1, ...])],
        title="Supporters joined and left per week",
        stacked=True,
    )
    {% include "admin/charts/chart.html" with chart=chart %}

Series are bars, or a line drawn over them (`Series(..., line=True)`).
Values may be negative (people leaving, drawn below the axis).
"""

import math
from dataclasses import dataclass, field

# Colours that stay apart for the common kinds of colour blindness (Okabe-Ito).
PALETTE = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#555555"]


@dataclass
class Series:
    name: str
    values: list
    line: bool = False
    colour: str = ""


@dataclass
class Chart:
    title: str
    labels: list
    series: list
    width: int
    height: int
    plot: dict  # left, top, right, bottom of the plotting area
    y_ticks: list = field(default_factory=list)  # {"y", "label"}
    x_ticks: list = field(default_factory=list)  # {"x", "label"}
    rects: list = field(default_factory=list)  # {"x", "y", "w", "h", "colour", "tip"}
    lines: list = field(default_factory=list)  # {"points", "colour", "name"}
    zero_y: float = 0
    unit: str = ""
    x_name: str = "Period"  # heads the first column of the table beside the chart

    @property
    def empty(self):
        return not self.labels or not any(any(s.values) for s in self.series)

    def rows(self):
        """The chart's figures, one row per label, for the table beside it."""
        return [
            (label, [series.values[index] for series in self.series])
            for index, label in enumerate(self.labels)
        ]


def nice_step(span, ticks=4):
    """Return a round step (1, 2, 2.5 or 5 times a power of ten) cutting span in about `ticks`."""
    if span <= 0:
        return 1
    rough = span / ticks
    power = 10 ** math.floor(math.log10(rough))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= rough:
            step = factor * power
            return int(step) if step >= 1 else step
    return 10 * power  # pragma: no cover (the loop always returns)


def _tick_label(value, unit):
    if isinstance(value, float) and not value.is_integer():
        text = f"{value:,.1f}"
    else:
        text = f"{int(value):,}"
    return f"{text}{unit}"


def bars(
    labels,
    series,
    *,
    title,
    stacked=False,
    width=720,
    height=240,
    unit="",
    x_name="Period",
    max_x_labels=9,
):
    """Lay out a bar chart (grouped, or stacked with `stacked`) with lines drawn over it."""
    series = [
        Series(s.name, list(s.values), s.line, s.colour or PALETTE[index % len(PALETTE)])
        for index, s in enumerate(series)
    ]
    plot = {"left": 56, "top": 12, "right": width - 12, "bottom": height - 28}
    chart = Chart(title, list(labels), series, width, height, plot, unit=unit, x_name=x_name)
    if not labels:
        return chart

    bar_series = [s for s in series if not s.line]
    top, bottom = 0, 0
    for index in range(len(labels)):
        if stacked:
            ups = sum(s.values[index] for s in bar_series if s.values[index] > 0)
            downs = sum(s.values[index] for s in bar_series if s.values[index] < 0)
        else:
            ups = max((s.values[index] for s in bar_series), default=0)
            downs = min((s.values[index] for s in bar_series), default=0)
        top, bottom = max(top, ups), min(bottom, downs)
    for s in series:
        if s.line:
            top, bottom = max(top, *s.values), min(bottom, *s.values)

    step = nice_step((top - bottom) or 1)
    high = math.ceil(top / step) * step if top > 0 else 0
    low = math.floor(bottom / step) * step if bottom < 0 else 0
    if high == low:
        high = step
    plot_height = plot["bottom"] - plot["top"]

    def y_of(value):
        return round(plot["bottom"] - (value - low) / (high - low) * plot_height, 1)

    chart.zero_y = y_of(0)
    tick = low
    while tick <= high + step / 1000:
        chart.y_ticks.append({"y": y_of(tick), "label": _tick_label(tick, unit)})
        tick += step

    slot = (plot["right"] - plot["left"]) / len(labels)
    groups = 1 if stacked else max(1, len(bar_series))
    bar_width = max(1.0, (slot * 0.8) / groups)
    every = max(1, math.ceil(len(labels) / max_x_labels))
    for index, label in enumerate(labels):
        left = plot["left"] + index * slot
        if index % every == 0:
            chart.x_ticks.append({"x": round(left + slot / 2, 1), "label": label})
        up, down = 0, 0
        for position, s in enumerate(bar_series):
            value = s.values[index]
            if not value:
                continue
            if stacked:
                start = up if value > 0 else down
                end = start + value
                if value > 0:
                    up = end
                else:
                    down = end
                x = left + slot * 0.1
            else:
                start, end = 0, value
                x = left + slot * 0.1 + position * bar_width
            y1, y2 = y_of(max(start, end)), y_of(min(start, end))
            chart.rects.append(
                {
                    "x": round(x, 1),
                    "y": y1,
                    "w": round(max(1.0, bar_width - 1), 1),
                    "h": round(max(0.5, y2 - y1), 1),
                    "colour": s.colour,
                    "tip": f"{label}: {s.name} {_tick_label(abs(value), unit)}",
                }
            )
    for s in series:
        if s.line:
            points = " ".join(
                f"{round(plot['left'] + (index + 0.5) * slot, 1)},{y_of(value)}"
                for index, value in enumerate(s.values)
            )
            chart.lines.append({"points": points, "colour": s.colour, "name": s.name})
    return chart
