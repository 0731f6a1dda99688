"""Pure formatting helpers: compact numbers, relative and absolute times, durations, sparklines.

Nothing here reads the wall clock: every time is formatted against a `now` the caller passes
(the app's injected clock), so snapshots of the console are identical run to run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo

DASH = "—"
_BARS = "▁▂▃▄▅▆▇█"
_UNITS = ((1_000_000_000_000, "T"), (1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k"))


def counted(n: int, noun: str) -> str:
    """`count(n)` and the noun, plural unless n is 1: "1 failure", "1.2k failures"."""
    return f"{count(n)} {noun}{'' if n == 1 else 's'}"


def count(n: int | None) -> str:
    """A count an operator can read at a glance: 999, 1.2k, 12.4k, 124k, 3.4M."""
    if n is None:
        return DASH
    sign = "-" if n < 0 else ""
    value = abs(n)
    for size, unit in _UNITS:
        if value >= size:
            scaled = value / size
            text = f"{scaled:.0f}" if scaled >= 100 else f"{scaled:.1f}".removesuffix(".0")
            if text == "1000" and unit != "T":  # 999.6k rounds up: say 1M, not 1000k
                index = [u for _, u in _UNITS].index(unit)
                return f"{sign}1{_UNITS[index - 1][1]}"
            return f"{sign}{text}{unit}"
    return f"{sign}{value}"


def duration(seconds: float | None) -> str:
    """A compact duration: 850ms, 12s, 3m 20s, 2h 15m, 3d 4h."""
    if seconds is None:
        return DASH
    if seconds < 0:
        seconds = 0.0
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.1f}s".replace(".0s", "s")
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def relative(when: datetime | None, now: datetime, *, compact: bool = False) -> str:
    """'just now', '12 s ago', '3 min ago', '2 h 5 min ago', '4 d ago' (or 'in 3 min' for the future).

    `compact` gives the table form: '12s ago', '3m ago', '2h 5m ago' (at most 11 cells).
    """
    if when is None:
        return DASH
    delta = (now - when).total_seconds()
    future = delta < 0
    seconds = abs(delta)
    if seconds < 5:
        return "just now"
    s, m, h, d = ("s", "m", "h", "d") if compact else (" s", " min", " h", " d")
    if seconds < 60:
        text = f"{int(seconds)}{s}"
    elif seconds < 3600:
        text = f"{int(seconds // 60)}{m}"
    elif seconds < 36000:
        hours, minutes = divmod(int(seconds // 60), 60)
        text = f"{hours}{h} {minutes}{m}" if minutes else f"{hours}{h}"
    elif seconds < 86400:
        text = f"{int(seconds // 3600)}{h}"
    else:
        text = f"{int(seconds // 86400)}{d}"
    return f"in {text}" if future else f"{text} ago"


def absolute(when: datetime | None, tz: tzinfo | None) -> str:
    """'2025-03-14 14:03:12 UTC', in the timezone of the console's clock."""
    if when is None:
        return DASH
    local = when.astimezone(tz) if when.tzinfo is not None and tz is not None else when
    zone = local.strftime("%Z")
    return local.strftime("%Y-%m-%d %H:%M:%S") + (f" {zone}" if zone else "")


def clock_time(when: datetime | None, tz: tzinfo | None) -> str:
    """'14:03:12' in the timezone of the console's clock."""
    if when is None:
        return DASH
    local = when.astimezone(tz) if when.tzinfo is not None and tz is not None else when
    return local.strftime("%H:%M:%S")


def rate_use(used: int, limit: int | None) -> str:
    """'212/600' per minute, or an em dash for an unlimited queue."""
    if limit is None:
        return DASH
    return f"{count(used)}/{count(limit)}"


def short_id(job_id: str | None, width: int = 8) -> str:
    """The first characters of a job id, enough to tell jobs apart on screen."""
    if not job_id:
        return DASH
    return job_id[:width]


def sparkline(values: Sequence[int | float], width: int) -> str:
    """A unicode sparkline of `values` squeezed into `width` cells (each cell is a bucket's max).

    Bars scale between the smallest and the largest bucket, so a busy but steady lane still
    shows its shape; an all-zero series is a flat baseline, a constant one a flat middle.
    """
    if width <= 0 or not values:
        return ""
    buckets: list[float] = []
    n = len(values)
    cells = min(width, n)
    for i in range(cells):
        start = i * n // cells
        end = max(start + 1, (i + 1) * n // cells)
        buckets.append(max(values[start:end]))
    top, bottom = max(buckets), min(buckets)
    if top <= 0:
        return _BARS[0] * cells
    if top == bottom:
        return _BARS[3] * cells
    last = len(_BARS) - 1
    return "".join(_BARS[round((v - bottom) / (top - bottom) * last)] for v in buckets)


def ellipsize(text: str, width: int) -> str:
    """Cut `text` to `width` cells with a trailing ellipsis."""
    text = " ".join(text.split())
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"

