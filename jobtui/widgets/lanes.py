"""The lanes table: one row per queue with sizes, wait, rate-limit use and a sparkline."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from jobengine.models import QueueStats
from jobtui.format import count, duration, rate_use, sparkline
from jobtui.widgets.colors import Palette
from jobtui.widgets.table import Column, KeyedTable, Row

WIDE = (
    Column("name", "Queue"),
    Column("size", "Size"),
    Column("scheduled", "Scheduled"),
    Column("running", "Running"),
    Column("failed", "Failed"),
    Column("wait", "Oldest wait"),
    Column("rate", "Rate limit/min"),
    Column("spark", "Processed/min, last hour"),
)
NARROW = (
    Column("name", "Queue"),
    Column("size", "Size"),
    Column("scheduled", "Sched"),
    Column("running", "Run"),
    Column("failed", "Fail"),
    Column("wait", "Wait"),
    Column("rate", "Rate"),
    Column("spark", "Processed/min"),
)


def _num(value: str, style: str = "") -> Text:
    return Text(value, style=style, justify="right")


def spark_width(width: int, narrow: bool) -> int:
    """Cells left for the sparkline once the other columns have their share of `width`."""
    return max(6, min(40, width - (64 if narrow else 92)))


def lane_rows(queues: Sequence[QueueStats], colors: Palette, *, narrow: bool, width: int) -> list[Row]:
    """Rows for `KeyedTable.sync`, keyed by queue name."""
    spark_cells = spark_width(width, narrow)
    rows: list[Row] = []
    for q in queues:
        hot = f"bold {colors.error}" if q.over_threshold else ""
        name = Text(("▲ " if q.over_threshold else "  ") + q.name, style=hot)
        full = q.rate_limit is not None and q.rate_used >= q.rate_limit
        last = q.processed_per_minute[-1] if q.processed_per_minute else 0
        spark = Text(sparkline(q.processed_per_minute, spark_cells), style=colors.primary)
        spark.append(f" {count(last)}", style="")
        rows.append(
            (
                q.name,
                [
                    name,
                    _num(count(q.size), hot),
                    _num(count(q.scheduled)),
                    _num(count(q.running)),
                    _num(count(q.failed), colors.error if q.failed else colors.muted),
                    _num(duration(q.oldest_wait)),
                    _num(rate_use(q.rate_used, q.rate_limit), colors.warning if full else ""),
                    spark,
                ],
            )
        )
    return rows


class LanesTable(KeyedTable):
    """Render only: `show(queues, colors, narrow=..., width=..., needle=...)`."""

    def show(
        self, queues: Sequence[QueueStats], colors: Palette, *, narrow: bool, width: int, needle: str = ""
    ) -> None:
        self.set_columns(NARROW if narrow else WIDE)
        shown = [q for q in queues if not needle or needle in q.name.lower()]
        self.sync(lane_rows(shown, colors, narrow=narrow, width=width))
