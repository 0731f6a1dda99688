"""Rendering details found on real data: the footer fits, a theme change recolours the tables,
library frames of a traceback are dimmed, the log does not repeat what its messages say."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from rich.console import Console
from rich.text import Text
from textual.widgets._footer import FooterKey

from jobengine.models import LogEntry
from jobtui import JobTUI
from jobtui.widgets.colors import palette
from jobtui.widgets.detail import render_detail, traceback_text
from jobtui.widgets.footer import JobFooter
from jobtui.widgets.table import KeyedTable, same_cell
from tests.tui.conftest import settle
from tests.tui.doubles import NOW, FakeEngine
from tests.tui.test_workers_and_retries import COLORS

AppFactory = Callable[..., JobTUI]


async def test_the_footer_fits_every_screen_at_80_and_120_columns(make_app: AppFactory) -> None:
    for size in ((80, 24), (120, 40)):
        app = make_app()
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            for key in ("1", "2", "3", "4"):
                await pilot.press(key)
                await settle(pilot)
                footer = app.screen.query_one(JobFooter)
                keys = list(footer.query(FooterKey))
                assert footer.virtual_size.width <= footer.region.width, (size, key)
                palette_key = [k for k in keys if k.has_class("-command-palette")]
                others = [k for k in keys if not k.has_class("-command-palette")]
                if palette_key:  # docked right: it must not cover the last key
                    assert max(k.region.right for k in others) <= palette_key[0].region.x, (size, key)
                shown = {k.key for k in others}
                assert {"escape", "question_mark", "q"} <= shown
                if key == "2":
                    assert {"r", "R", "space", "g", "slash"} <= shown
                # wide enough: the optional keys are there too (at 80 columns they give way first)
                if size == (120, 40):
                    assert "j" in shown, (size, key, shown)


def test_same_cell_sees_a_style_change() -> None:
    assert same_cell(Text("4", style="#ff0000"), Text("4", style="#ff0000"))
    assert not same_cell(Text("4", style="#ff0000"), Text("4", style="#00ff00"))
    assert Text("4", style="#ff0000") == Text("4", style="#00ff00")  # why same_cell exists


async def test_switching_the_theme_recolours_table_cells(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        lanes = app.screen.query_one("#lanes", KeyedTable)
        failed_cell = lanes.get_row("high")[lanes.column_keys.index("failed")]
        dark_error = palette(app).error
        assert dark_error in str(failed_cell.style)
        app.theme = "textual-light"
        await settle(pilot)
        light_error = palette(app).error
        assert light_error != dark_error
        assert light_error in str(lanes.get_row("high")[lanes.column_keys.index("failed")].style)


TRACEBACK = """Traceback (most recent call last):
  File "/srv/venv/lib/python3.11/site-packages/rq/job.py", line 1539, in _execute
    result = self.func(*self.args, **self.kwargs)
  File "/srv/app/billing.py", line 42, in send_invoice
    client.call(payload)
  File "/usr/lib/python3.11/socket.py", line 7, in create_connection
    raise err
TimeoutError: timed out"""


def test_library_frames_of_a_traceback_are_dimmed() -> None:
    text = traceback_text(TRACEBACK)
    assert text.plain == TRACEBACK
    dim = {text.plain[s.start:s.end].strip() for s in text.spans if "dim" in str(s.style)}
    assert dim == {
        'File "/srv/venv/lib/python3.11/site-packages/rq/job.py", line 1539, in _execute',
        "result = self.func(*self.args, **self.kwargs)",
        'File "/usr/lib/python3.11/socket.py", line 7, in create_connection',
        "raise err",
    }


def test_the_log_gives_attempts_a_column_and_delays_once() -> None:
    engine = FakeEngine()
    detail = engine.job_detail(engine.failures[5].job_id)
    assert detail is not None
    at = NOW - timedelta(minutes=1)
    logs = (
        LogEntry(at, "retry", "warning", "retry 2 in 4.0s (exponential) after TemporaryError: x", attempt=1, delay=4.0),
        LogEntry(at, "retry", "warning", "lock busy", attempt=2, delay=60.0),
    )
    console_text = plain(render_detail(replace(detail, logs=logs), NOW, None, COLORS))
    assert "#1 retry 2 in 4.0s (exponential) after TemporaryError: x\n" in console_text
    assert "retry in 4s" not in console_text  # the message says it already
    assert "#2 lock busy (retry in 1m)\n" in console_text
    # the log comes before the traceback
    assert console_text.index("Log (2)") < console_text.index("Traceback (most recent call last)")


def test_a_retried_failure_stays_in_the_detail_marked_retried() -> None:
    engine = FakeEngine()
    detail = engine.job_detail(engine.failures[5].job_id)
    assert detail is not None and detail.failure is not None
    assert "\nFailure\n" in plain(render_detail(detail, NOW, None, COLORS))
    retried = replace(detail, failure=replace(detail.failure, retried_at=NOW))
    text = plain(render_detail(retried, NOW, None, COLORS))
    assert "\nLast failure (retried)\n" in text
    assert f"· retried {NOW:%Y-%m-%d %H:%M:%S}" in text and detail.failure.error_message in text

def plain(renderable: object) -> str:
    """The text a renderable prints, runs of spaces squeezed to one."""
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(renderable)
    return "\n".join(re.sub(" +", " ", line.rstrip()) for line in console.export_text().splitlines()) + "\n"

