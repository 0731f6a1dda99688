"""The one action registry.

Every key the console answers to is an `ActionSpec` here. The App's and each screen's
`BINDINGS` are built from it (with `id=` and `tooltip=`), the command palette lists it and the
`?` help screen renders it, so the three can never disagree. `mutating` actions (and marks,
which only feed them) are hidden everywhere in read-only mode (the screens' `check_action` returns False for them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from textual.binding import Binding, BindingType

APP = "app"
"""Scope of actions on the App (work on every screen)."""
ALL = "*"
"""Scope of actions every base screen binds."""
SCREEN_GROUP = Binding.Group("Screens", compact=True)


@dataclass(frozen=True)
class ActionSpec:
    """One key binding: where it applies, what it does and how it is explained."""

    id: str
    key: str
    action: str
    description: str
    tooltip: str
    scopes: tuple[str, ...]
    mutating: bool = False
    show: bool = True
    key_display: str | None = None
    group: Binding.Group | None = None
    bound: bool = True
    """False for keys a widget already handles (enter on a table): listed, not bound."""
    write_only: bool = False
    """Changes nothing itself but only serves mutating actions (marks): hidden in read-only too."""
    footer_optional: bool = False
    """Left out of the footer when the line would overflow (still bound, in help and the palette)."""

    def binding(self) -> Binding:
        return Binding(
            self.key,
            self.action,
            self.description,
            show=self.show,
            key_display=self.key_display,
            tooltip=self.tooltip,
            id=self.id,
            group=self.group,
        )

    @property
    def name(self) -> str:
        """The action's method name without namespace or arguments ('app.show(1)' -> 'show')."""
        return self.action.split("(", 1)[0].rsplit(".", 1)[-1]

    @property
    def hidden_when_read_only(self) -> bool:
        return self.mutating or self.write_only

    def applies_to(self, screen: str | None) -> bool:
        return APP in self.scopes or (screen is not None and (ALL in self.scopes or screen in self.scopes))


ACTIONS: tuple[ActionSpec, ...] = (
    # ---- steering (screen scope, first so the footer shows them first) --------------------
    ActionSpec("jobtui.retry", "r", "retry", "Retry", "Retry the highlighted job (put it back on its lane)",
               ("failed", "job", "lane"), mutating=True),
    ActionSpec("jobtui.retry_bulk", "R", "retry_bulk", "Retry all",
               "Retry the marked jobs, the highlighted failure group, or all N failures matching the filter "
               "(shows N, asks first; in batches, cancellable)", ("failed",), mutating=True, key_display="R"),
    ActionSpec("jobtui.more_text", "m", "more_text", "More text",
               "Load more of a cut argument, error message or traceback (eight times more, up to 1 MB)",
               ("job",), footer_optional=True),
    ActionSpec("jobtui.cancel", "c", "cancel", "Cancel", "Cancel the highlighted job; a running job is stopped",
               ("stuck", "job", "lane"), mutating=True),
    ActionSpec("jobtui.run_now", "n", "run_now", "Run now",
               "Move the highlighted scheduled job to the front of its lane", ("lane",), mutating=True),
    ActionSpec("jobtui.lane.cancel_all", "C", "cancel_matching", "Cancel all",
               "Cancel every queued, scheduled or running job of this lane matching the filter (shows N, asks "
               "first; in batches, cancellable)", ("lane",), mutating=True, key_display="C", footer_optional=True),
    ActionSpec("jobtui.lane.pause", "P", "toggle_pause", "Pause/resume",
               "Pause the lane on every worker (its jobs stay queued), or resume it (asks first)",
               ("dashboard", "lane"), mutating=True, key_display="P"),
    ActionSpec("jobtui.lane.section", "s", "next_section", "Section",
               "Show the lane's next state: queued, scheduled, running, finished, failed, canceled", ("lane",),
               footer_optional=True),
    ActionSpec("jobtui.lane.open", "enter", "open_lane", "Open lane",
               "List the highlighted lane's queued, scheduled, running and finished jobs", ("dashboard",),
               show=False, bound=False),
    ActionSpec("jobtui.cancel_bulk", "C", "cancel_bulk", "Cancel marked",
               "Cancel or stop every marked job (asks first)", ("stuck",), mutating=True, key_display="C"),
    ActionSpec("jobtui.mark", "space", "mark", "Mark", "Mark or unmark the highlighted job for a bulk action",
               ("failed", "stuck"), write_only=True),
    ActionSpec("jobtui.group", "g", "group", "Group", "Toggle grouping failures by exception and fingerprint",
               ("failed",)),
    ActionSpec("jobtui.open", "enter", "open", "Open",
               "Show the highlighted job's detail (on a group: list that exception's failures)",
               ("failed", "stuck", "lane"), show=False, bound=False),
    ActionSpec("jobtui.alerts.read", "enter", "open", "Read",
               "Move into the highlighted notice's body and alert keys to scroll them (esc comes back)",
               ("alerts",), show=False, bound=False),
    ActionSpec("jobtui.filter", "slash", "filter", "Filter",
               "Filter: free text, or typed on the failed list (type:email queue:high error:Timeout since:1h "
               "args:ada@), server-side for failures", ("dashboard", "failed", "stuck", "lane", "alerts"),
               key_display="/"),
    ActionSpec("jobtui.window", "w", "cycle_window", "Window",
               "Cycle the throughput chart and run times through 1h, 6h, 24h and 7d", ("dashboard",),
               footer_optional=True),
    ActionSpec("jobtui.back", "escape", "back", "Back", "Clear the filter, leave the detail pane, go back",
               (ALL,), key_display="esc"),
    ActionSpec("jobtui.copy", "ctrl+c", "screen.copy_text", "Copy", "Copy the text selected with the mouse", (ALL,),
               show=False),
    # ---- everywhere (App scope) ------------------------------------------------------------
    ActionSpec("jobtui.help", "question_mark", "help", "Help", "Show every key and what it does", (APP,),
               key_display="?"),
    ActionSpec("jobtui.quit", "q", "quit", "Quit", "Quit the console", (APP,)),
    ActionSpec("jobtui.lookup", "j", "lookup", "Find", "Look a job up by its id or an id prefix", (APP,),
               footer_optional=True),
    ActionSpec("jobtui.lane.prompt", "colon", "prompt", "Command",
               "Open the command palette: ':lane low' opens a lane, or any action by name", (APP,),
               key_display=":", footer_optional=True),
    ActionSpec("jobtui.pause", "p", "pause", "Pause", "Pause the automatic refresh", (APP,), footer_optional=True),
    ActionSpec("jobtui.resume", "p", "resume", "Resume", "Resume the automatic refresh", (APP,),
               footer_optional=True),
    # The number keys and tab are not in the footer: the nav bar under the header shows them.
    ActionSpec("jobtui.screen.dashboard", "1", "show('dashboard')", "Dashboard", "Queues, throughput, health, workers",
               (APP,), group=SCREEN_GROUP, show=False),
    ActionSpec("jobtui.screen.failed", "2", "show('failed')", "Failed", "Failed jobs, newest first", (APP,),
               group=SCREEN_GROUP, show=False),
    ActionSpec("jobtui.screen.stuck", "3", "show('stuck')", "Stuck", "Jobs processing longer than the threshold",
               (APP,), group=SCREEN_GROUP, show=False),
    ActionSpec("jobtui.screen.job", "4", "show('job')", "Job", "The job last looked up", (APP,), group=SCREEN_GROUP,
               show=False),
    ActionSpec("jobtui.screen.alerts", "5", "show('alerts')", "Alerts",
               "The last alert notices sent, newest first, and whether they were delivered", (APP,),
               group=SCREEN_GROUP, show=False),
    ActionSpec("jobtui.next_screen", "tab", "next_screen", "Next", "Switch to the next screen", (APP,), show=False),
    # ---- dialogs ---------------------------------------------------------------------------
    ActionSpec("jobtui.confirm.yes", "y", "confirm", "Yes", "Go ahead with the action", ("confirm",)),
    ActionSpec("jobtui.confirm.no", "n,escape", "dismiss_dialog", "No", "Keep things as they are", ("confirm",),
               key_display="n/esc"),
    ActionSpec("jobtui.dialog.close", "escape", "dismiss_dialog", "Close", "Close this dialog", ("lookup", "help"),
               key_display="esc"),
)

SCOPE_TITLES = {
    "failed": "Failed jobs",
    "stuck": "Stuck jobs",
    "job": "Job detail",
    "dashboard": "Dashboard",
    "lane": "Lane view",
    "alerts": "Alerts",
    ALL: "Every screen",
    APP: "Everywhere",
    "confirm": "Confirmation dialogs",
    "lookup": "Find dialog",
    "help": "Help",
}
HELP_SCOPES = ("dashboard", "failed", "stuck", "job", "lane", "alerts", ALL, APP, "confirm")
"""The scopes the help screen lists, in this order (the current screen's first)."""


def bindings_for(scope: str) -> list[BindingType]:
    """The BINDINGS of the App (`APP`), of every base screen (`ALL`) or of one screen."""
    return [spec.binding() for spec in ACTIONS if spec.bound and scope in spec.scopes]


def spec_for(action: str, scopes: Iterable[str]) -> ActionSpec | None:
    """The registry entry for an action name (as `check_action` receives it) in those scopes."""
    wanted = set(scopes)
    for spec in ACTIONS:
        if spec.name == action.split("(", 1)[0] and wanted.intersection(spec.scopes):
            return spec
    return None


def visible_actions(screen: str | None, *, read_only: bool, paused: bool) -> list[ActionSpec]:
    """What the help screen and the palette list for a screen, in registry order."""
    out = []
    for spec in ACTIONS:
        if not spec.applies_to(screen) or (spec.hidden_when_read_only and read_only):
            continue
        if spec.name == ("pause" if paused else "resume"):
            continue
        out.append(spec)
    return out


def help_sections(current: str | None, *, read_only: bool, paused: bool) -> list[tuple[str, list[ActionSpec]]]:
    """The help screen's sections: the current screen's keys first, then the rest; each key once."""
    order = ([current] if current in HELP_SCOPES else []) + [s for s in HELP_SCOPES if s != current]
    sections = []
    listed: set[str] = set()
    for scope in order:
        specs = [
            spec for spec in ACTIONS
            if scope in spec.scopes
            and spec.id not in listed
            and not (spec.hidden_when_read_only and read_only)
            and spec.name != ("pause" if paused else "resume")
        ]
        listed.update(spec.id for spec in specs)
        if specs:
            sections.append((SCOPE_TITLES.get(scope, scope), specs))
    return sections


def key_label(spec: ActionSpec) -> str:
    """How a key is written in help and the palette: '?', '/', 'space', 'esc', 'R'."""
    if spec.key_display:
        return spec.key_display
    return {"question_mark": "?", "slash": "/", "escape": "esc"}.get(spec.key, spec.key)


def key_table_markdown() -> str:
    """The README's key table (README.md, "Console"), from the registry: a test keeps them equal."""
    lines = ["| key | does | where | read-only |", "|---|---|---|---|"]
    for spec in ACTIONS:
        where = ", ".join(SCOPE_TITLES.get(scope, scope) for scope in spec.scopes)
        hidden = "hidden" if spec.hidden_when_read_only else ""
        does = f"{spec.description} screen: {spec.tooltip}" if spec.action.startswith("show(") else spec.tooltip
        lines.append(f"| `{key_label(spec)}` | {does} | {where} | {hidden} |")
    return "\n".join(lines)
