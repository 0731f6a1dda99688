"""Act on all N matching: count, ask with N, run in batches with a progress bar, stop on esc.

One modal for the whole action: it counts what the typed filter matches (a thread worker), asks
"Retry all 1,234 matching failures?" (y), then runs `engine.bulk` in a thread worker in batches
of 1,000 (the bar follows each batch); esc stops it after the batch in hand. It dismisses with the
`BulkResult` (None when the operator said no or nothing matched).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Literal

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, ProgressBar, Static

from jobengine.bulk import BulkResult
from jobtui.actions import bindings_for
from jobtui.format import count
from jobtui.poller import describe_error

if TYPE_CHECKING:
    from jobtui.app import JobTUI

Phase = Literal["counting", "ask", "running", "stopping", "done"]
BATCH = 1000


class BulkScreen(ModalScreen[BulkResult | None]):
    """`kind` "retry" (open failures) or "cancel" (in-flight jobs) of everything `search` matches."""

    CSS_PATH = "bulk.tcss"
    BINDINGS = bindings_for("confirm")

    def __init__(self, kind: Literal["retry", "cancel"], search: str, what: str, one: str = "", *,
                 cap: int = 10_000) -> None:
        super().__init__()
        self.kind = kind
        self.search = search
        self.what = what  # "failures", "jobs of lane low"
        self.one = one or what  # "failure", "job of lane low"
        self.cap = cap
        self.phase: Phase = "counting"
        self.matched = 0
        self.error: str | None = None
        self._stop = threading.Event()

    @property
    def jobapp(self) -> JobTUI:
        return self.app  # type: ignore[return-value]

    @property
    def verb(self) -> str:
        return "Retry" if self.kind == "retry" else "Cancel"

    def compose(self) -> ComposeResult:
        with Vertical(id="bulk-dialog"):
            yield Label(f"Counting the {self.what} matching…", id="bulk-question")
            yield Static(f"filter “{self.search or 'everything'}”", id="bulk-detail", markup=False)
            yield ProgressBar(id="bulk-progress", show_eta=False, classes="-hidden")
            with Horizontal(id="bulk-buttons"):
                yield Button(f"{self.verb} all (y)", id="bulk-yes", variant="warning", disabled=True)
                yield Button("Keep (n)", id="bulk-no")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#bulk-no", Button).focus()
        self._count()

    # ---- counting --------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="bulk-count", exit_on_error=False)
    def _count(self) -> None:
        try:
            n = self.jobapp.engine.count_filtered(self.kind, self.search or None)
        except Exception as exc:
            self.app.call_from_thread(self._failed, describe_error(exc))
            return
        self.app.call_from_thread(self._counted, n)

    def _counted(self, n: int) -> None:
        self.matched = n
        question = self.query_one("#bulk-question", Label)
        detail = self.query_one("#bulk-detail", Static)
        if not n:
            self.phase = "done"
            question.update(f"No {self.what} match.")
            detail.update(f"filter “{self.search or 'everything'}”")
            self.query_one("#bulk-no", Button).label = "Close (esc)"
            return
        self.phase = "ask"
        acted = min(n, self.cap)
        question.update(f"{self.verb} the 1 matching {self.one}?" if n == 1 else
                        f"{self.verb} all {count(n)} matching {self.what}?")
        capped = f" The first {acted:,} only: [console] bulk_cap is {self.cap:,}." if n > self.cap else ""
        detail.update(f"filter “{self.search or 'everything'}” · {acted:,} in batches of {BATCH:,}, "
                      f"audited as one action; esc stops it between batches.{capped}")
        self.query_one("#bulk-yes", Button).disabled = False

    def _failed(self, error: str) -> None:
        self.phase = "done"
        self.error = error
        self.query_one("#bulk-question", Label).update(f"{self.verb} failed")
        self.query_one("#bulk-detail", Static).update(error)
        self.query_one("#bulk-no", Button).label = "Close (esc)"

    # ---- running ---------------------------------------------------------------------------
    def action_confirm(self) -> None:
        if self.phase != "ask":
            return
        self.phase = "running"
        self.query_one("#bulk-yes", Button).disabled = True
        self.query_one("#bulk-no", Button).label = "Stop (esc)"
        bar = self.query_one("#bulk-progress", ProgressBar)
        bar.remove_class("-hidden")
        bar.update(total=min(self.matched, self.cap), progress=0)
        self.query_one("#bulk-question", Label).update(f"{self.verb}ing {count(min(self.matched, self.cap))} "
                                                       f"{self.what}…")
        self._run()

    @work(thread=True, exclusive=True, group="bulk-run", exit_on_error=False)
    def _run(self) -> None:
        def progress(done: int, total: int) -> None:
            self.app.call_from_thread(self._advance, done, total)

        try:
            result = self.jobapp.engine.bulk(self.kind, self.search or None, progress=progress,
                                             stop=self._stop.is_set)
        except Exception as exc:
            self.app.call_from_thread(self._failed, describe_error(exc))
            return
        self.app.call_from_thread(self.dismiss, result)

    def _advance(self, done: int, total: int) -> None:
        self.query_one("#bulk-progress", ProgressBar).update(total=total, progress=done)

    def action_dismiss_dialog(self) -> None:
        if self.phase == "running":
            self.phase = "stopping"
            self._stop.set()
            self.query_one("#bulk-question", Label).update("Stopping after the batch in hand…")
        elif self.phase in ("counting", "ask", "done"):
            self._stop.set()
            self.dismiss(None)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "bulk-yes":
            self.action_confirm()
        else:
            self.action_dismiss_dialog()


def describe_result(result: BulkResult) -> tuple[str, str]:
    """(message, severity) of a finished bulk action's notification."""
    verb = "retried" if result.kind == "retry" else "canceled"
    text = f"{result.done:,} of {result.matched:,} matching jobs {verb}"
    if result.stopped:
        text += f" (stopped after {result.attempted:,})"
    elif result.capped:
        text += f" (capped at {result.cap:,})"
    if result.skipped:
        text += f"; {result.skipped:,} skipped (gone or done already)"
    return text + ".", "warning" if result.stopped or result.skipped else "information"


def run_bulk(app: Any, kind: Literal["retry", "cancel"], search: str, what: str, one: str = "",
             after: Any = None) -> None:
    """Push the bulk dialog; when it ends, notify, start a new read epoch, poll, then `after()`."""

    def finished(result: BulkResult | None) -> None:
        if result is None:
            return
        text, severity = describe_result(result)
        app.notify(text, title="Done", severity=severity, markup=False)
        app.new_read_epoch()
        if after is not None:
            after()
        app.poll_now()

    if app.read_only:
        app.notify("Read-only mode: bulk actions are disabled.", severity="warning")
        return
    app.push_screen(BulkScreen(kind, search, what, one, cap=app.bulk_cap), finished)
