"""Run time per job type over the chart's window: runs, p50 and p95 (from histogram buckets)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from jobengine.models import DurationStats
from jobtui.format import count, duration
from jobtui.widgets.colors import Palette
from jobtui.widgets.table import Column, KeyedTable, Row

COLUMNS = (
    Column("type", "Job type", short_label="Type", min_width=8, cut="middle", flex=True),
    Column("runs", "Runs", priority=1),
    Column("p50", "p50"),
    Column("p95", "p95"),
)
"""The type name shortens in the middle first; the run count gives way before a percentile."""


def duration_rows(stats: Sequence[DurationStats], colors: Palette) -> list[Row]:
    """Rows keyed by type (850ms, 1.2s, 3m 20s)."""
    return [(d.type, [Text(d.type), Text(count(d.runs), justify="right"),
                      Text(duration(d.p50), justify="right"),
                      Text(duration(d.p95), justify="right", style=colors.accent)])
            for d in stats]


class DurationsTable(KeyedTable):
    """Render only: `show(stats, colors)`; the busiest types first, as many as fit."""

    def show(self, stats: Sequence[DurationStats], colors: Palette) -> None:
        self.set_columns(COLUMNS)
        self.sync(duration_rows(stats, colors))
