"""The lanes table: one row per queue with sizes, wait, rate-limit use and a sparkline; a State
column ("paused 4m by ada@web-01") appears while any lane is paused."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich.text import Text

from jobengine.models import QueueStats
from jobtui.format import count, duration, rate_use, sparkline
from jobtui.widgets.colors import Palette
from jobtui.widgets.table import Column, Fill, KeyedTable, Row

COLUMNS = (
    Column("name", "Queue", min_width=8, cut="middle"),
    Column("size", "Size"),
    Column("scheduled", "Scheduled", short_label="Sched", priority=3),
    Column("running", "Running", short_label="Run", priority=2),
    Column("failed", "Failed", short_label="Fail", priority=1),
    Column("wait", "Oldest wait", short_label="Wait", priority=2),
    Column("rate", "Rate limit/min", short_label="Rate", priority=4),
    Column("spark", "Processed/min, last hour", short_label="Processed/min", priority=5, min_width=10, flex=True),
)
"""Narrow terminals get the short labels first, then lose the sparkline, the rate limit, ..."""
STATE = Column("state", "State")
"""Shown only while a lane is paused, never hidden: "paused 4m by ada@web-01", "paused 4m" when narrow."""
PAUSED_COLUMNS = (COLUMNS[0], STATE, *COLUMNS[1:-1],
                  Column("spark", "Processed/min, last hour", short_label="Done/min", priority=5, min_width=10,
                         flex=True))
"""With the State column the sparkline's short label is shorter, so 80 columns still fit every name."""
PAUSED_MARK = "‖ "
SPARK_MAX = 40
"""The most minutes-buckets a sparkline gets (the column may be wider)."""


def _num(value: str, style: str = "") -> Text:
    return Text(value, style=style, justify="right")


def spark_cell(q: QueueStats, colors: Palette) -> Fill:
    """The sparkline cell, drawn for its column's width: bars, then the last minute's count."""
    last = q.processed_per_minute[-1] if q.processed_per_minute else 0
    suffix = f" {count(last)}"

    def draw(width: int) -> Text:
        bars = max(1, min(SPARK_MAX, width - len(suffix)))
        text = Text(sparkline(q.processed_per_minute, bars), style=colors.primary)
        text.append(suffix, style="")
        return text

    return draw


def pause_text(q: QueueStats, now: datetime, *, short: bool = False) -> str:
    """'paused 4m by ada@web-01' ('paused 4m' when `short`; empty for a running lane)."""
    if q.paused is None:
        return ""
    seconds = (now - q.paused.since).total_seconds()
    text = "paused just now" if seconds < 1 else f"paused {duration(seconds)}"
    return text if short else f"{text} by {q.paused.by}"


def lane_rows(queues: Sequence[QueueStats], colors: Palette, now: datetime, *, narrow: bool = False) -> list[Row]:
    """Rows for `KeyedTable.sync`, keyed by queue name (a State cell second while any is paused)."""
    rows: list[Row] = []
    paused = any(q.paused for q in queues)
    for q in queues:
        hot = f"bold {colors.error}" if q.over_threshold else ""
        mark = "▲ " if q.over_threshold else PAUSED_MARK if q.paused else "  "
        name = Text(mark + q.name, style=hot or (colors.warning if q.paused else ""))
        full = q.rate_limit is not None and q.rate_used >= q.rate_limit
        rows.append(
            (
                q.name,
                [
                    name,
                    *([Text(pause_text(q, now, short=narrow), style=f"bold {colors.warning}")] if paused else []),
                    _num(count(q.size), hot),
                    _num(count(q.scheduled)),
                    _num(count(q.running)),
                    _num(count(q.failed), colors.error if q.failed else colors.muted),
                    _num(duration(q.oldest_wait)),
                    _num(rate_use(q.rate_used, q.rate_limit), colors.warning if full else ""),
                    spark_cell(q, colors),
                ],
            )
        )
    return rows


class LanesTable(KeyedTable):
    """Render only: `show(queues, colors, now, needle=...)`; the table fits the columns to its width."""

    def show(self, queues: Sequence[QueueStats], colors: Palette, now: datetime, *, needle: str = "",
             narrow: bool = False) -> None:
        shown = [q for q in queues if not needle or needle in q.name.lower()]
        key = self.cursor_key
        changed = self.set_columns(PAUSED_COLUMNS if any(q.paused for q in shown) else COLUMNS)
        self.sync(lane_rows(shown, colors, now, narrow=narrow))
        if changed and key in self.row_keys:  # the State column came or went: stay on the same lane
            self.move_cursor(row=self.get_row_index(key), animate=False)
