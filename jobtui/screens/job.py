"""The Job screen: the detail of the job last looked up (or opened), refreshed by each poll."""

from __future__ import annotations

from textual.app import ComposeResult

from jobengine.types import JobStatus
from jobtui.actions import ALL, bindings_for
from jobtui.format import short_id
from jobtui.messages import DETAIL_TEXT, DETAIL_TEXT_MAX, Operation, PollPlan, ViewState
from jobtui.screens.base import BaseScreen
from jobtui.widgets.detail import JobDetailView


class JobScreen(BaseScreen):
    """`r` retries and `c` cancels (or stops) the job shown; `j` looks up another one."""

    MODE = "job"
    TITLE = "Job"
    AUTO_FOCUS = "#job-detail"
    CSS_PATH = "job.tcss"
    BINDINGS = bindings_for(MODE) + bindings_for(ALL)

    def compose_body(self) -> ComposeResult:
        yield JobDetailView(id="job-detail")

    def focus_main(self) -> None:
        self.query_one(JobDetailView).focus()

    text_limit = DETAIL_TEXT
    """How much of each long text the detail asks for (`m` raises it for the job shown)."""
    _limit_for: str | None = None

    def poll_plan(self) -> PollPlan:
        job = self.jobapp.current_job
        if job is None:
            return PollPlan()
        if job.record.id != self._limit_for:  # another job: back to the first DETAIL_TEXT characters
            self.text_limit, self._limit_for = DETAIL_TEXT, job.record.id
        return PollPlan(job_id=job.record.id, text_limit=self.text_limit)

    def action_more_text(self) -> None:
        """Load more of the cut texts, off the UI thread (the next poll, asked for now)."""
        job = self.jobapp.current_job
        if job is None or not job.truncated:
            self.notify("Nothing is cut on this job.", severity="information")
            return
        if self.text_limit >= DETAIL_TEXT_MAX:
            self.notify(f"Showing the first {DETAIL_TEXT_MAX // 1024:,} KB of each text; "
                        f"`jobtui job {job.record.id} --json` prints it whole.", severity="warning")
            return
        self.text_limit = min(self.text_limit * 8, DETAIL_TEXT_MAX)
        self.notify(f"Loading up to {self.text_limit // 1024:,} KB of {', '.join(job.truncated)}…")
        self.jobapp.poll_now()

    def render_body(self, state: ViewState) -> None:
        view = self.query_one(JobDetailView)
        job = self.jobapp.current_job
        if job is None:
            view.show_text("No job yet. Press j to look one up by its id or a prefix of it.")
            return
        view.show_detail(job, self.now, self.tz, self.theme_palette)

    def _act(self, verb: str) -> None:
        job = self.jobapp.current_job
        if job is None:
            self.notify("Look a job up first (j).", severity="warning")
            return
        label = f"{short_id(job.record.id)} ({job.record.type})"
        past = "Stopped" if verb == "cancel" and job.record.status is JobStatus.PROCESSING else ""
        self.jobapp.run_operation(Operation(verb, (job.record.id,), label=label, past=past))

    def action_retry(self) -> None:
        self._act("retry")

    def action_cancel(self) -> None:
        self._act("cancel")

    def back(self) -> None:
        self.jobapp.action_show(self.jobapp.previous_mode)
