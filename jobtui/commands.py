"""The command palette provider: the action registry, filtered like the footer and help."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

from jobtui.actions import APP, ActionSpec, key_label, visible_actions


class JobCommands(Provider):
    """Every action that applies to the screen the palette was opened from."""

    def _commands(self) -> Iterator[tuple[str, str, Callable[[], Any]]]:
        app: Any = self.app
        screen = self.screen
        mode = getattr(screen, "MODE", None) or None
        read_only = bool(getattr(app, "read_only", False))
        paused = bool(getattr(app, "polling_paused", False))
        for spec in visible_actions(mode, read_only=read_only, paused=paused):
            yield self._title(spec), f"{spec.tooltip}  [{key_label(spec)}]", self._runner(spec)

    @staticmethod
    def _title(spec: ActionSpec) -> str:
        if spec.action.startswith("show("):
            return f"Go to {spec.description}"
        return spec.description

    def _runner(self, spec: ActionSpec) -> Callable[[], Any]:
        target = self.app if APP in spec.scopes else self.screen
        return partial(self.app.run_action, spec.action, target)

    async def discover(self) -> Hits:
        for title, help_text, runner in self._commands():
            yield DiscoveryHit(title, runner, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, runner in self._commands():
            score = max(matcher.match(title), matcher.match(help_text) * 0.5)
            if score > 0:
                yield Hit(score, matcher.highlight(title), runner, text=title, help=help_text)
