"""The command palette on every screen, and every registry text through Textual's markup parser.

Textual parses a palette hit's help text, plain-string titles and tooltips as content markup; a
key written `[/]` once read as a closing tag and crashed the console on ctrl+p.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.command import CommandList, CommandPalette
from textual.content import Content
from textual.pilot import Pilot

from jobtui import JobTUI
from jobtui.actions import ACTIONS, APP, key_label
from jobtui.commands import help_markup, title
from jobtui.screens.alerts import AlertsScreen
from jobtui.screens.confirm import ConfirmScreen
from jobtui.screens.dashboard import DashboardScreen
from jobtui.screens.failed import FailedScreen
from jobtui.screens.help import HelpScreen
from jobtui.screens.job import JobScreen
from jobtui.screens.lookup import LookupScreen
from jobtui.screens.stuck import StuckScreen
from tests.tui.conftest import settle, wait_until
from tests.tui.doubles import job_id

AppFactory = Callable[..., JobTUI]
SKIPPED = {"Quit", "Screenshot"}
"""Run separately (Quit ends the app) or not at all (Screenshot writes a file into the cwd)."""
OURS = {title(spec) for spec in ACTIONS}
APP_WIDE = {title(spec) for spec in ACTIONS if APP in spec.scopes}
"""App-wide commands (ours, and Textual's own such as Theme) do the same from every screen: they
run from the dashboard's palette; every screen's palette still opens, lists them and runs its own."""


@pytest.mark.parametrize("spec", ACTIONS, ids=lambda spec: spec.id)
def test_every_action_text_survives_the_markup_parser(spec: Any) -> None:
    for text in (spec.description, spec.tooltip, title(spec), key_label(spec)):
        assert Content.from_markup(text).plain == text
    assert Content.from_markup(help_markup(spec)).plain == f"{spec.tooltip}  [{key_label(spec)}]"


async def _open_palette(pilot: Pilot[Any]) -> CommandList:
    app = pilot.app
    await pilot.press("ctrl+p")
    await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
    commands = app.screen.query_one(CommandList)
    await wait_until(pilot, lambda: commands.option_count > 0)
    await pilot.pause(0.05)  # discovery hits arrive in batches: let the last one land
    return commands


def _prompts(commands: CommandList) -> list[str]:
    return [Content.from_markup(option.prompt).plain for option in commands.options]  # type: ignore[arg-type]


Setup = Callable[[Pilot[Any]], Awaitable[None]]


def _at(*presses: str) -> Setup:
    async def go(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        for key in presses:
            await pilot.press(key)
            await settle(pilot)

    return go


LOOKUP = tuple(job_id(7)[:6])
SCREENS: dict[str, tuple[Setup, type]] = {
    "dashboard": (_at(), DashboardScreen),
    "failed": (_at("2"), FailedScreen),
    "failed-grouped": (_at("2", "g"), FailedScreen),
    "stuck": (_at("3"), StuckScreen),
    "job": (_at("j", *LOOKUP, "enter"), JobScreen),
    "alerts": (_at("5"), AlertsScreen),
    "help": (_at("2", "question_mark"), HelpScreen),
    "lookup": (_at("j"), LookupScreen),
    "confirm": (_at("2", "space", "R"), ConfirmScreen),
}


async def _fresh_screens(app: JobTUI) -> None:
    """Back to a just-started app's screens: modals closed, every mode's screen new, on the dashboard."""
    while len(app.screen_stack) > 1:
        app.pop_screen()
    if app.polling_paused:
        app.action_resume()
    for mode, screen in JobTUI.MODES.items():
        await app.switch_mode("job" if mode == "dashboard" else "dashboard")
        await app.remove_mode(mode)
        app.add_mode(mode, screen)
    await app.switch_mode("dashboard")


@pytest.mark.slow
@pytest.mark.parametrize("where", SCREENS)
async def test_the_palette_opens_and_runs_each_command_on_every_screen(where: str, make_app: AppFactory) -> None:
    """Each command the palette lists there (app-wide ones from the dashboard only), chosen in the
    palette, on a fresh copy of the screen."""
    setup, screen_type = SCREENS[where]
    app = make_app()
    ran: list[str] = []
    async with app.run_test(size=(80, 24)) as pilot:
        await setup(pilot)
        listed = _prompts(await _open_palette(pilot))
        names = [prompt.split("\n", 1)[0] for prompt in listed]
        assert {"Help", "Find", "Theme"} <= set(names), listed
        to_run = [(prompt, name) for prompt, name in zip(listed, names, strict=True)
                  if name not in SKIPPED and (where == "dashboard" or (name in OURS and name not in APP_WIDE))]
        for prompt, name in to_run:
            await _fresh_screens(app)
            await setup(pilot)
            assert isinstance(app.screen, screen_type), (where, app.screen)
            commands = await _open_palette(pilot)
            commands.highlighted = _prompts(commands).index(prompt)
            await pilot.press("enter")
            await settle(pilot)
            assert app.is_running and app._exception is None, (where, prompt)
            await pilot.press("escape")  # whatever the command opened, the app still answers
            await settle(pilot)
            assert app._exception is None, (where, prompt)
            ran.append(name)
    assert ran == [name for _, name in to_run]
    # the modals (help, lookup, confirm) list only app-wide commands
    assert len(ran) > 5 if where == "dashboard" else ran or where in {"help", "lookup", "confirm"}, (where, names)


async def test_quit_from_the_palette_ends_the_app_cleanly(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await _at("2")(pilot)
        commands = await _open_palette(pilot)
        prompts = _prompts(commands)
        commands.highlighted = next(i for i, p in enumerate(prompts) if p.startswith("Quit\nQuit the console"))
        await pilot.press("enter")
        await wait_until(pilot, lambda: not app.is_running)
    assert app._exception is None
