"""The workers table: host, pid, state, current job (id and type) and for how long, or since when
the worker is idle, queues, last heartbeat. `busy` always comes with a job (the engine shows a
worker that holds none as idle); a job running past `thresholds.long_running` is marked.

A worker that stopped heartbeating is shown as `stale` (the whole row dimmed): a SIGKILLed
worker cannot unregister, so its RQ key, and its row here, stays until the key's TTL expires.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from rich.cells import cell_len
from rich.text import Text

from jobengine.models import WorkerInfo
from jobtui.format import clock_time, duration, relative, short_id
from jobtui.widgets.colors import Palette
from jobtui.widgets.table import Column, Fill, KeyedTable, Row, shorten

COLUMNS = (
    Column("name", "Worker", min_width=16, cut="middle"),
    Column("host", "Host", priority=4, min_width=8, cut="middle"),
    Column("pid", "PID", priority=5),
    Column("state", "State"),
    Column("job", "Current job", short_label="Job", priority=1, min_width=26, flex=True),
    Column("queues", "Queues", priority=2, min_width=9),
    Column("beat", "Heartbeat", short_label="Beat"),
)
"""Long worker names (RQ's are host-pid-uuid) shorten in the middle; PID, host and queues give
way first; the current job (drawn for the room it gets: id, type shortened in the middle, for how
long) takes what is left."""
WIDE_QUEUES = 140
"""Tables narrower than this abbreviate queue names (crit,high,defa,low)."""
STALE_AFTER = 60.0
"""Seconds without a heartbeat after which a worker is `stale`.

When do RQ workers heartbeat? An idle RQ worker blocks on its queues for `worker_ttl - 15` s
(rq/worker/base.py `dequeue_timeout`) and heartbeats after each wait. Ours set `worker_ttl` to
60 s (jobengine/runtime/worker.py `WORKER_TTL`), so an idle one beats every 45 s; the fast worker
every 15 s; a forking worker every `DEFAULT_JOB_MONITORING_INTERVAL` = 30 s while its work horse
runs. So 60 s is the slowest regular beat plus 15 s of slack. RQ lets the key live `worker_ttl +
60` s after a beat, so a SIGKILLed idle worker shows `stale` for about a minute before it goes.

Two cases the age alone cannot judge, so they are not called stale:
- a busy worker: an in-process worker (ours by default) cannot beat while its job runs; RQ gives
  its key the job's timeout + 60 s instead. The heartbeat age still shows in the warning colour,
  and a job that runs too long shows up on the Stuck screen.
- a plain `rq worker` with RQ's default `DEFAULT_WORKER_TTL` = 420 s idles 405 s between beats;
  it does show as stale here after a minute of quiet. The engine's health check judges workers
  by their key's TTL instead, which is exact for both (see jobengine/health.py).
"""


def is_stale(worker: WorkerInfo, now: datetime) -> bool:
    """True for a worker not running a job whose last heartbeat is older than STALE_AFTER."""
    if worker.state == "busy":
        return False
    beat = worker.last_heartbeat
    return beat is None or (now - beat).total_seconds() > STALE_AFTER


def shown_state(worker: WorkerInfo, now: datetime) -> str:
    """The state text the table shows: RQ's state, or `stale`."""
    return "stale" if is_stale(worker, now) else worker.state


def job_cell(worker: WorkerInfo, now: datetime, *, stale: bool, slow: bool, style: str) -> Fill:
    """The current-job cell, drawn for its column's width: '▲ 170d7fcf reports.…ledger 2h 15m' for a
    busy worker (▲: running past the long-running threshold; the type gives way first, then the
    time), 'since 14:01' for an idle one (with the day when not today), '—' when unknown or stale."""
    if worker.current_job is not None:
        head = short_id(worker.current_job)
        took = duration((now - worker.current_job_started).total_seconds()) if worker.current_job_started else ""
        kind = worker.current_job_type or "?"
    else:
        head, took, kind = "—", "", ""
        if not stale and worker.idle_since is not None:
            local = worker.idle_since.astimezone(now.tzinfo) if now.tzinfo else worker.idle_since
            day = "" if local.date() == now.date() else f"{local:%b %d} "
            head = f"since {day}{clock_time(worker.idle_since, now.tzinfo)[:5]}"

    def draw(width: int) -> Text:
        room = width - cell_len(head) - (len(took) + 1 if took else 0)
        mark = "▲ " if slow and room >= 8 else ""  # the colour (and the box title) say it too
        if kind and room - len(mark) >= 6:
            text = Text(mark + head, style=style)
            text.append(" ")
            text.append_text(shorten(Text(kind), room - len(mark) - 1, "middle"))
            return text.append(f" {took}" if took else "")
        parts = head + (f" {took}" if took and width >= cell_len(head) + len(took) + 1 else "")
        return shorten(Text(parts, style=style), width)

    return draw


def worker_rows(
    workers: Sequence[WorkerInfo], now: datetime, colors: Palette, *, narrow: bool, slow: frozenset[str] = frozenset()
) -> list[Row]:
    rows: list[Row] = []
    for w in workers:
        stale = is_stale(w, now)
        late = w.last_heartbeat is None or (now - w.last_heartbeat).total_seconds() > STALE_AFTER
        dim = colors.muted if stale else ""
        if stale:
            state_style = f"italic {colors.muted}"
        else:
            state_style = colors.success if w.state == "busy" else colors.muted if w.state == "idle" else colors.warning
        queues = ",".join(q[:4] for q in w.queues) if narrow else ", ".join(w.queues)
        hot = w.current_job is not None and w.current_job in slow
        cells: dict[str, Text | Fill] = {
            "name": Text(w.name, style=dim),
            "host": Text(w.host, style=dim),
            "pid": Text(str(w.pid), justify="right", style=dim),
            "state": Text(shown_state(w, now), style=state_style),
            "job": job_cell(w, now, stale=stale, slow=hot, style=f"bold {colors.warning}" if hot else dim),
            "queues": Text(queues, style=dim),
            "beat": Text(relative(w.last_heartbeat, now, compact=True), style=f"bold {colors.warning}" if late else ""),
        }
        rows.append((w.name, [cells[c.key] for c in COLUMNS]))
    return rows


class WorkersTable(KeyedTable):
    """Render only: `show(workers, now, colors, narrow=..., needle=..., slow=...)` (narrow: queue
    names abbreviated; slow: ids of the long-running jobs); the table fits the columns to its width."""

    def show(
        self, workers: Sequence[WorkerInfo], now: datetime, colors: Palette, *, narrow: bool, needle: str = "",
        slow: Collection[str] = (),
    ) -> None:
        self.set_columns(COLUMNS)
        shown = [
            w for w in workers
            if not needle or any(needle in v.lower() for v in (w.name, w.host, shown_state(w, now), *w.queues))
        ]
        shown.sort(key=lambda w: is_stale(w, now))  # live workers first; the engine's order otherwise
        narrow = narrow or 0 < self.size.width < WIDE_QUEUES
        self.sync(worker_rows(shown, now, colors, narrow=narrow, slow=frozenset(slow)))
