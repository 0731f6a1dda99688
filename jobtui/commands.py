"""The command palette provider: the action registry, filtered like the footer and help.

Textual parses a hit's help text (and a plain-string title) as content markup, so registry text
goes in escaped (help) or as `Content` (titles): a key such as `/` written as `[/]` would
otherwise read as a closing tag and crash the palette.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Matcher, Provider
from textual.content import Content

from jobtui.actions import APP, ActionSpec, key_label, visible_actions


def literal_markup(text: str) -> str:
    """`text` as Textual markup that shows exactly `text`: every '[' escaped.

    (`textual.markup.escape` leaves '[R]' alone, and the parser then swallows it as a style tag.)
    """
    return text.replace("[", "\\[")


def help_markup(spec: ActionSpec) -> str:
    """The palette's help line for an action, as markup that shows literally: 'Filter …  [/]'."""
    return literal_markup(f"{spec.tooltip}  [{key_label(spec)}]")


def title(spec: ActionSpec) -> str:
    """The palette's title for an action (plain text)."""
    if spec.action.startswith("show("):
        return f"Go to {spec.description}"
    return spec.description


def highlighted(matcher: Matcher, text: str) -> Content:
    """`text` as plain Content with the query's fuzzy match highlighted (no markup parsing)."""
    content = Content(text)
    score, offsets = matcher.fuzzy_search.match(matcher.query, text)
    if not score:
        return content
    for offset in offsets:
        if not text[offset].isspace():
            content = content.stylize(matcher.match_style, offset, offset + 1)
    return content


class JobCommands(Provider):
    """Every action that applies to the screen the palette was opened from."""

    def _commands(self) -> Iterator[tuple[str, str, str, Callable[[], Any]]]:
        """(title, plain help, help markup, runner) for each action the screen allows."""
        app: Any = self.app
        screen = self.screen
        mode = getattr(screen, "MODE", None) or None
        read_only = bool(getattr(app, "read_only", False))
        paused = bool(getattr(app, "polling_paused", False))
        for spec in visible_actions(mode, read_only=read_only, paused=paused):
            plain = f"{spec.tooltip}  [{key_label(spec)}]"
            yield title(spec), plain, help_markup(spec), self._runner(spec)

    def _runner(self, spec: ActionSpec) -> Callable[[], Any]:
        target = self.app if APP in spec.scopes else self.screen
        return partial(self.app.run_action, spec.action, target)

    async def discover(self) -> Hits:
        for name, _plain, help_text, runner in self._commands():
            yield DiscoveryHit(Content(name), runner, text=name, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, plain, help_text, runner in self._commands():
            score = max(matcher.match(name), matcher.match(plain) * 0.5)
            if score > 0:
                yield Hit(score, highlighted(matcher, name), runner, text=name, help=help_text)


class LaneCommands(Provider):
    """`lane NAME` for every lane of the last snapshot: typed after `:` (or ctrl+p) it opens the
    lane view, as Enter on the dashboard's lane row does."""

    def _lanes(self) -> list[str]:
        app: Any = self.app
        snapshot = getattr(getattr(app, "view_state", None), "snapshot", None)
        return [q.name for q in snapshot.queues] if snapshot is not None else []

    def _runner(self, queue: str) -> Callable[[], Any]:
        app: Any = self.app
        return partial(app.open_lane, queue)

    async def discover(self) -> Hits:
        for queue in self._lanes():
            name = f"lane {queue}"
            yield DiscoveryHit(Content(name), self._runner(queue), text=name,
                               help=literal_markup(f"Open the {queue} lane's jobs"))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for queue in self._lanes():
            name = f"lane {queue}"
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, highlighted(matcher, name), self._runner(queue), text=name,
                          help=literal_markup(f"Open the {queue} lane's jobs"))
