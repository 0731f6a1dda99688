"""Job commands: `jobtui dispatch`."""

from __future__ import annotations

import json
from typing import Any

import click

from jobtui.cli.context import Context, fail, friendly, pass_ctx


@click.command()
@click.argument("function")
@click.argument("args", nargs=-1)
@click.option("--priority", default="normal", show_default=True, help="critical, high, normal or low.")
@click.option("--type", "job_type", help="Job type (default: the function's name).")
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments as a JSON object.")
@pass_ctx
@friendly
def dispatch(ctx: Context, function: str, args: tuple[str, ...], priority: str, job_type: str | None,
             kwargs_json: str) -> None:
    """Dispatch FUNCTION (package.module:function) with ARGS, each a JSON value."""
    values = [_json_arg(a, f"argument {i + 1}") for i, a in enumerate(args)]
    kwargs = _json_arg(kwargs_json, "--kwargs")
    if not isinstance(kwargs, dict):
        fail("--kwargs must be a JSON object, e.g. '{\"retries\": 3}'")
    ctx.settings().lane(priority)  # validate before starting anything
    with ctx.engine() as engine:
        click.echo(engine.dispatch(function, *values, type=job_type, priority=priority, **kwargs))


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{what} is not valid JSON ({exc.msg}): {text!r}; quote strings as '\"text\"'")


COMMANDS = (dispatch,)
