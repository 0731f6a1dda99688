"""What every base screen shares: header, nav bar, outage banner, filter input, footer.

A base screen renders from the app's `ViewState` only (`render_state`), which the app calls
when a poll lands (for the screens of the current mode) and which the screen calls itself when
it is resumed. Screens never poll; they may run on-demand reads (a page, a detail) in workers.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, ClassVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Header, Input
from textual.worker import get_current_worker

from jobtui.actions import ALL, spec_for
from jobtui.format import clock_time
from jobtui.messages import DETAIL_TEXT, DetailLoaded, Outcome, PollPlan, ViewState
from jobtui.poller import describe_error
from jobtui.widgets.banner import Banner
from jobtui.widgets.colors import Palette, palette
from jobtui.widgets.footer import JobFooter
from jobtui.widgets.navbar import NavBar

if TYPE_CHECKING:
    from jobtui.app import JobTUI

NARROW_BELOW = 100
"""Terminal width under which tables drop and abbreviate columns."""
FILTER_DEBOUNCE = 0.3


def banner_text(state: ViewState, tz: tzinfo | None) -> tuple[str | None, str]:
    """The banner line and its level ('down' or 'partial') for a view state."""
    snap = state.snapshot
    if state.outage is not None:
        if snap is None:
            return f"{state.outage} — no data yet, retrying…", "down"
        return f"{state.outage} — showing data from {clock_time(snap.taken_at, tz)}, retrying…", "down"
    errors = tuple(o.message for o in snap.outages) if snap else ()
    errors += state.extras.errors
    if errors:
        return "; ".join(dict.fromkeys(errors)) + " — some data may be missing or stale", "partial"
    return None, "down"


class BaseScreen(Screen[None], inherit_bindings=False):
    """A mode's base screen. Subclasses set MODE, compose `compose_body` and implement `render_body`."""

    MODE: ClassVar[str] = ""
    BINDINGS: ClassVar[list[BindingType]] = []
    """Subclasses bind `bindings_for(MODE) + bindings_for(ALL)`: their own keys first in the footer."""
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_BELOW, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]
    FILTER_PLACEHOLDER: ClassVar[str] = "filter: type, queue, exception or id — enter applies, esc clears"

    def __init__(self, screen_id: str | None = None) -> None:
        super().__init__(id=screen_id or f"{self.MODE}-screen")
        self.needle = ""
        self._state: ViewState | None = None
        self._filter_timer: Timer | None = None

    # ---- composition ---------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        yield NavBar(id="nav")
        yield Banner(id="banner")
        yield Input(id="filter", placeholder=self.FILTER_PLACEHOLDER, classes="-hidden")
        yield from self.compose_body()
        yield JobFooter(narrow=self.narrow)

    def compose_body(self) -> ComposeResult:
        yield from ()

    # ---- accessors -----------------------------------------------------------------------
    @property
    def jobapp(self) -> JobTUI:
        return cast("JobTUI", self.app)

    @property
    def now(self) -> datetime:
        return self.jobapp.clock()

    @property
    def tz(self) -> tzinfo | None:
        return self.now.tzinfo

    @property
    def theme_palette(self) -> Palette:
        """Our palette for the current theme (DOMNode.colors is Textual's own)."""
        return palette(self.app)

    @property
    def narrow(self) -> bool:
        return self.app.size.width < NARROW_BELOW

    @property
    def state(self) -> ViewState:
        return self._state or self.jobapp.view_state

    # ---- rendering -----------------------------------------------------------------------
    def render_state(self, state: ViewState) -> None:
        """Show `state`: banner, stale look, nav counts, then the screen's own widgets."""
        self._state = state
        text, level = banner_text(state, self.tz)
        self.query_one(Banner).show_message(text, level)
        self.set_class(state.stale, "-stale")
        snap = state.snapshot
        note = f"filter: {self.needle}" if self.needle else ""
        failed = snap.failed_total if snap else None
        self.query_one(NavBar).show(self.MODE, failed, len(snap.stuck) if snap else None, note,
                                    firing=state.extras.firing)
        self.render_body(state)

    def render_body(self, state: ViewState) -> None:
        """Update the screen's widgets from `state` (no I/O)."""

    def rerender(self) -> None:
        if self.is_mounted:
            self.render_state(self.state)

    def poll_plan(self) -> PollPlan:
        """What this screen needs from each poll besides the snapshot."""
        return PollPlan()

    def on_outcome(self, outcome: Outcome) -> None:
        """A retry/cancel finished: drop what left, before the refresh lands."""

    def on_screen_resume(self) -> None:
        self.render_state(self.jobapp.view_state)
        if self.poll_plan() != self.jobapp.view_state.extras.plan:
            self.jobapp.poll_now()

    def on_resize(self) -> None:
        self.query_one(JobFooter).set_narrow(self.narrow)
        self.rerender()

    # ---- actions -------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        spec = spec_for(action, (self.MODE, ALL))
        return not (spec is not None and spec.hidden_when_read_only and self.jobapp.read_only)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("-hidden")
        box.focus()

    def action_back(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_focus or self.needle or box.value:
            box.value = ""
            box.add_class("-hidden")
            self._apply_filter("")
            self.focus_main()
            return
        self.back()

    def back(self) -> None:
        """Escape with no filter to clear: subclasses leave panes; default does nothing."""

    def focus_main(self) -> None:
        """Give focus to the screen's main table."""

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        value = event.value
        self._filter_timer = self.set_timer(FILTER_DEBOUNCE, lambda: self._apply_filter(value))

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._apply_filter(event.value)
        if not event.value.strip():
            event.input.add_class("-hidden")
        self.focus_main()

    def _apply_filter(self, value: str) -> None:
        needle = value.strip()
        if needle == self.needle:
            return
        self.needle = needle
        self.filter_changed()

    @work(thread=True, exclusive=True, group="detail", exit_on_error=False)
    def fetch_detail(self, key: str, job_id: str) -> None:
        """Read one job's detail off the UI thread; the answer arrives as DetailLoaded(key)."""
        try:
            message = DetailLoaded(key, self.jobapp.engine.job_detail(job_id, max_text=DETAIL_TEXT))
        except Exception as exc:
            message = DetailLoaded(key, None, error=describe_error(exc))
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    def filter_changed(self) -> None:
        """The filter text changed: local tables re-render; the failed list re-queries."""
        self.rerender()
