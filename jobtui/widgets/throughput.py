"""The throughput chart: processed vs failed per point (a minute, 5 minutes or an hour) over the
chosen window (plotext)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Any

from textual_plotext import PlotextPlot

from jobengine.models import ThroughputPoint
from jobtui.format import clock_time, count


def tick_label(at: datetime, tz: tzinfo | None, span: float) -> str:
    """An x tick: the clock time (14:05) within a day, the day and hour (Fri 14h) beyond."""
    if span <= 86400:
        return clock_time(at, tz)[:5]
    local = at.astimezone(tz) if tz is not None else at
    return f"{local:%a %H}h"


Y_LABELS = 14
"""Columns the two y axes' labels take from the chart's width."""


def spaced_ticks(points: int, width: int, label: int) -> list[int]:
    """Up to five x ticks, first and last included, at least three columns apart between labels
    (labels that would touch are shifted by plotext in an order that varies between runs)."""
    room = max(2, min(5, (width + 3) // (label + 3)))
    if points <= room:
        return list(range(points))
    step = (points - 1) / (room - 1)
    return sorted({round(i * step) for i in range(room)})


def _ticks(top: int) -> tuple[list[int], list[str]]:
    """Three round y ticks (0, middle, top) labelled 1.2k-style."""
    top = max(top, 1)
    return [0, top // 2, top], [count(0), count(top // 2), count(top)]


class ThroughputChart(PlotextPlot):
    """Render only: `show(points, tz, dark=...)` replots from the snapshot's throughput series.

    Processed jobs use the left axis, failures the right one, so a few failures a minute stay
    visible next to thousands of processed jobs.
    """

    DEFAULT_CSS = """
    ThroughputChart { height: 1fr; min-height: 5; }
    """

    _key: tuple[object, ...] | None = None
    _drawn: tuple[object, ...] | None = None
    """The data key and size the figure was last built for (plotext keeps layout state across
    resizes, textual-plotext#5: a figure is rebuilt from scratch whenever either changes)."""

    def show(self, points: Sequence[ThroughputPoint], tz: tzinfo | None, *, dark: bool = True,
             loading: bool = False) -> None:
        key = (tuple(points), tz, dark, loading)
        if key == self._key:
            return
        self._key = key
        self.refresh()

    def render(self) -> Any:
        if self._key is not None and (self._key, self.size) != self._drawn:
            self._drawn = (self._key, self.size)
            self._plot_figure(*self._key)  # type: ignore[arg-type]
        return super().render()

    def _plot_figure(self, points: tuple[ThroughputPoint, ...], tz: tzinfo | None, dark: bool,
                     loading: bool) -> None:
        plt: Any = self.plt  # plotext's annotations are narrower than what it accepts (yside, tick labels)
        plt.clear_figure()
        if not points:
            plt.title("loading…" if loading else "no data yet")
            return
        xs = list(range(len(points)))
        processed = [p.processed for p in points]
        failed = [p.failed for p in points]
        # No legend: the box title names the series and their axes (plotext's legend marks the
        # sides with "L" and "⅃", and takes two of the few rows an 80x24 terminal leaves the chart).
        plt.plot(xs, processed, color="cyan" if dark else "blue", marker="braille")
        plt.plot(xs, failed, color="red", marker="braille", yside="right")
        span = (points[-1].minute - points[0].minute).total_seconds()
        ticks = spaced_ticks(len(points), self.size.width - Y_LABELS, len(tick_label(points[0].minute, tz, span)))
        plt.xticks(ticks, [tick_label(points[i].minute, tz, span) for i in ticks])
        # The failed axis goes to twice the busiest minute: a few failures stay visible next to
        # many processed jobs, in the lower half, so they do not read as a flood.
        top_processed, top_failed = max(processed), max(2 * max(failed), 4)
        plt.ylim(0, max(top_processed, 1), yside="left")
        plt.ylim(0, top_failed, yside="right")
        plt.yticks(*_ticks(top_processed), yside="left")
        plt.yticks(*_ticks(top_failed), yside="right")
