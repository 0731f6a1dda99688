"""The job lookup prompt: an id or a prefix, answered with the job's detail or a clear message."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static
from textual.worker import get_current_worker

from jobengine.errors import JobNotFound
from jobengine.models import JobDetail
from jobtui.actions import bindings_for
from jobtui.messages import DETAIL_TEXT, DetailLoaded
from jobtui.poller import describe_error

if TYPE_CHECKING:
    from jobtui.app import JobTUI


class LookupScreen(ModalScreen[JobDetail | None]):
    """Dismisses with the JobDetail found; not found / ambiguous keep the prompt open."""

    CSS_PATH = "lookup.tcss"
    BINDINGS = bindings_for("lookup")

    def compose(self) -> ComposeResult:
        with Vertical(id="lookup-dialog") as dialog:
            dialog.border_title = "Find a job"
            yield Label("Job id or the first characters of one:")
            yield Input(id="lookup-input", placeholder="e.g. 3f2a1b9c")
            yield Static("enter looks up · esc closes", id="lookup-message")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def _say(self, text: str, level: str = "") -> None:
        message = self.query_one("#lookup-message", Static)
        message.update(text)
        message.set_class(level == "error", "-error")

    @on(Input.Submitted, "#lookup-input")
    def _submitted(self, event: Input.Submitted) -> None:
        key = event.value.strip()
        if not key:
            self._say("Type a job id or a prefix of one.", "error")
            return
        self._say(f"Looking up {key}…")
        self._lookup(key)

    @work(thread=True, exclusive=True, group="lookup", exit_on_error=False)
    def _lookup(self, key: str) -> None:
        engine = cast("JobTUI", self.app).engine
        try:
            message = DetailLoaded(key, engine.job_detail(key, max_text=DETAIL_TEXT))
        except JobNotFound as exc:
            message = DetailLoaded(key, None, error=describe_error(exc))
        except Exception as exc:
            message = DetailLoaded(key, None, error=f"Lookup failed: {describe_error(exc)}")
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        message.stop()
        if message.key != self.query_one(Input).value.strip():
            return
        if message.error:
            self._say(message.error, "error")
        elif message.detail is None:
            self._say(f"No job matches {message.key!r}.", "error")
        else:
            self.dismiss(message.detail)

    def action_dismiss_dialog(self) -> None:
        self.dismiss(None)
