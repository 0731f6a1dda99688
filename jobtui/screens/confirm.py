"""A yes/no modal for destructive and bulk actions ("Retry 12 jobs?")."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, Static

from jobengine.models import PauseInfo
from jobtui.actions import bindings_for
from jobtui.format import duration
from jobtui.messages import Operation

if TYPE_CHECKING:
    from jobtui.app import JobTUI


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with True on y/enter/the confirm button, False on n/escape."""

    CSS_PATH = "confirm.tcss"
    BINDINGS = bindings_for("confirm")

    def __init__(self, question: str, detail: str = "", *, confirm_label: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Label(self.question, id="confirm-question")
            if self.detail:
                yield Static(self.detail, id="confirm-detail", markup=False)
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.confirm_label} (y)", id="confirm-yes", variant="warning")
                yield Button("Keep (n)", id="confirm-no")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_dismiss_dialog(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")


def confirm_pause(app: JobTUI, queue: str, paused: PauseInfo | None, now: datetime) -> None:
    """Ask, then pause or resume `queue` on every worker (P on a lane row, y to confirm)."""
    if paused is None:
        question = f"Pause lane {queue}?"
        detail = ("Every worker on every host stops taking its jobs within a second. Jobs stay queued and "
                  "dispatch still accepts new ones; P again resumes.")
        op = Operation("pause", queue=queue, label=queue)
        label = "Pause"
    else:
        since = duration(max(0.0, (now - paused.since).total_seconds()))
        question = f"Resume lane {queue}?"
        detail = f"Paused {since} ago by {paused.by}" + (f": {paused.reason}" if paused.reason else "") + \
            ". Workers take its jobs again within a second."
        op = Operation("resume", queue=queue, label=queue)
        label = "Resume"

    def decided(yes: bool | None) -> None:
        if yes:
            app.run_operation(op)

    app.push_screen(ConfirmScreen(question, detail, confirm_label=label), decided)
