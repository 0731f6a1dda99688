"""What every `jobtui` command shares: the typed context object, the global options and one way to fail.

Expected failures (bad input, bad config, unreachable server) are one line on stderr and exit
code 2, never a traceback: commands raise `JobEngineError` (turned into that line by `friendly`)
or call `fail()`; click's own usage errors become one line too (`Group.main`). Option values are
checked by `jobengine.validate` (`checked` callbacks), naming the option.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from jobengine import validate as v
from jobengine.config import Settings, check_value
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


def one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def duration(text: str | None, option: str) -> float | None:
    """'90s', '15m', '12h', '7d', '2w' -> seconds (at most 100 years); a bad value fails naming `option`."""
    if text is None:
        return None
    try:
        return v.parse_duration(text, option)
    except JobEngineError as exc:
        fail(str(exc))


def checked(kind: str, lo: float = 0, hi: float = v.MAX_COUNT, *, lo_open: bool = False,
            max_len: int = v.MAX_TEXT) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """An option callback: "number" (finite, in [lo, hi]), "int" or "text"; a bad value fails
    (one line naming the option, exit 2). None (not given) passes."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        what = param.opts[0] if param.opts else str(param.name)
        try:
            if kind == "number":
                return v.number(value, what, lo, hi, lo_open=lo_open, parse=True)
            if kind == "int":
                return v.integer(value, what, int(lo), int(hi), parse=True)
            return v.text(value, what, max_len=max_len)
        except JobEngineError as exc:
            fail(str(exc))

    return callback


def settings_guard(settings: Settings, action: str) -> None:
    """Refuse `action` before any server starts when the settings forbid it (the engine would too)."""
    from jobengine.operations import check_permitted

    check_permitted(action, settings.read_only, settings.permissions)


@dataclass
class Context:
    """The global options, merged from before and after the subcommand (the later one wins)."""

    config: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    verbose: bool = False

    def settings(self, **more: Any) -> Settings:
        """Defaults < file < environment < global options < `more` (None means "not given")."""
        for name, value in self.overrides.items():
            if value is not None and name in ("redis_url", "database_url", "data_dir"):
                check_value(name, value, f"--{name.replace('_', '-')}")
        if self.config is not None:
            v.text(self.config, "--config", max_len=v.MAX_PATH)
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
    (("--read-only",), {"is_flag": True, "default": None,
                        "help": "Refuse every operator action (dispatch, retry, cancel, limit, prune, ...)."}),
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

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """As click's, but a usage error (missing argument, unknown option, bad value) is one line."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else (prog_name or "jobtui")
            click.echo(f"jobtui: {one_line(exc.format_message())} (see '{where} --help')", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except click.ClickException as exc:
            click.echo(f"jobtui: {one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)
