"""What every `jobtui` command shares: the typed context object, the global options and one way to fail.

Expected failures (bad input, bad config, unreachable server) are one line on stderr and exit
code 2, never a traceback: commands raise `JobEngineError` (turned into that line by `friendly`)
or call `fail()`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from jobengine.config import Settings
from jobengine.errors import JobEngineError

if TYPE_CHECKING:
    from jobengine.engine import Engine

EXIT_BAD_INPUT = 2
F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> NoReturn:
    """One line on stderr, exit code 2."""
    click.echo(f"jobtui: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def friendly(fn: F) -> F:
    """Our errors become one line and exit code 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except JobEngineError as exc:
            fail(str(exc))

    return wrapper  # type: ignore[return-value]


def duration(text: str | None, option: str) -> float | None:
    """'90s', '15m', '12h', '7d', '2w' -> seconds; a bad value fails naming `option`."""
    from jobengine.prune import parse_duration

    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        fail(f"{option}: {exc}")


@dataclass
class Context:
    """The global options, merged from before and after the subcommand (the later one wins)."""

    config: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    verbose: bool = False

    def settings(self, **more: Any) -> Settings:
        """Defaults < file < environment < global options < `more` (None means "not given")."""
        return Settings.load(self.config, **{**self.overrides, **more})

    def engine(self, *, migrate: bool = True, **more: Any) -> Engine:
        """An Engine on these settings; use it as `with ctx.engine() as engine:` (closing it)."""
        from jobengine.engine import Engine

        return Engine.from_settings(self.settings(**more), migrate=migrate)


pass_ctx = click.make_pass_decorator(Context, ensure=True)


def configure_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    for noisy in ("rq", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.NOTSET if verbose else logging.WARNING)


def _store(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Option callback: a given global option goes into the shared Context (a later one wins)."""
    obj = ctx.ensure_object(Context)
    if value is None or param.name is None:
        return
    if param.name == "config":
        obj.config = value
    elif param.name == "verbose":
        obj.verbose = obj.verbose or value
        if obj.verbose and ctx.parent is not None:  # after the subcommand: the group already set INFO
            configure_logging(True)
    else:
        obj.overrides[param.name] = value


_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--config",), {"type": click.Path(dir_okay=False), "help": "TOML config file."}),
    (("--redis-url",), {"help": "Redis URL (default: embedded Redis)."}),
    (("--database-url",), {"help": "PostgreSQL URL (default: embedded PostgreSQL)."}),
    (("--data-dir",), {"type": click.Path(file_okay=False), "help": "Folder of the embedded servers."}),
    (("--read-only",), {"is_flag": True, "default": None, "help": "Refuse retry and cancel."}),
    (("-v", "--verbose"), {"is_flag": True, "default": None, "help": "Log at DEBUG level."}),
]


def global_params() -> list[click.Parameter]:
    """Fresh instances of the global options (each command gets its own)."""
    return [click.Option(list(decls), expose_value=False, callback=_store, **kw) for decls, kw in _OPTIONS]


def global_options(fn: F) -> F:
    """Decorator: the global options on a command or group (they fill the shared Context)."""
    for decls, kw in reversed(_OPTIONS):
        fn = click.option(*decls, expose_value=False, callback=_store, **kw)(fn)
    return fn


class Group(click.Group):
    """A group whose every subcommand also accepts the global options, so
    `jobtui --redis-url U health` and `jobtui health --redis-url U` are the same."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not any(p.name == "redis_url" for p in cmd.params):
            cmd.params.extend(global_params())
        super().add_command(cmd, name)
