"""The workers table: host, pid, state, current job, queues, last heartbeat."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich.text import Text

from jobengine.models import WorkerInfo
from jobtui.format import relative, short_id
from jobtui.widgets.colors import Palette
from jobtui.widgets.table import Column, KeyedTable, Row

WIDE = (
    Column("name", "Worker"),
    Column("host", "Host"),
    Column("pid", "PID"),
    Column("state", "State"),
    Column("job", "Current job"),
    Column("queues", "Queues"),
    Column("beat", "Heartbeat"),
)
NARROW = (
    Column("name", "Worker"),
    Column("host", "Host"),
    Column("state", "State"),
    Column("job", "Job"),
    Column("queues", "Queues"),
    Column("beat", "Beat"),
)
STALE_AFTER = 60.0
"""Seconds without a heartbeat after which a worker's heartbeat shows in the warning colour."""


def worker_rows(
    workers: Sequence[WorkerInfo], now: datetime, colors: Palette, *, narrow: bool
) -> list[Row]:
    rows: list[Row] = []
    for w in workers:
        stale = w.last_heartbeat is None or (now - w.last_heartbeat).total_seconds() > STALE_AFTER
        state_style = colors.success if w.state == "busy" else colors.muted if w.state == "idle" else colors.warning
        queues = ",".join(q[:4] for q in w.queues) if narrow else ", ".join(w.queues)
        cells = {
            "name": Text(w.name),
            "host": Text(w.host),
            "pid": Text(str(w.pid), justify="right"),
            "state": Text(w.state, style=state_style),
            "job": Text(short_id(w.current_job)),
            "queues": Text(queues),
            "beat": Text(
                relative(w.last_heartbeat, now, compact=True), style=f"bold {colors.warning}" if stale else ""
            ),
        }
        columns = NARROW if narrow else WIDE
        rows.append((w.name, [cells[c.key] for c in columns]))
    return rows


class WorkersTable(KeyedTable):
    """Render only: `show(workers, now, colors, narrow=..., needle=...)`."""

    def show(
        self, workers: Sequence[WorkerInfo], now: datetime, colors: Palette, *, narrow: bool, needle: str = ""
    ) -> None:
        self.set_columns(NARROW if narrow else WIDE)
        shown = [
            w for w in workers
            if not needle or any(needle in v.lower() for v in (w.name, w.host, w.state, *w.queues))
        ]
        self.sync(worker_rows(shown, now, colors, narrow=narrow))
