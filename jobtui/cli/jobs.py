"""Job commands: `jobtui dispatch`."""

from __future__ import annotations

import json
from typing import Any

import click

from jobengine import validate as v
from jobtui.cli.context import Context, checked, fail, friendly, pass_ctx, settings_guard


# Unknown options reach ARGS untouched, so negative numbers (-3, -1.5e3) are job arguments.
@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("function")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--priority", default="normal", show_default=True, help="critical, high, normal or low.")
@click.option("--type", "job_type", callback=checked("text", max_len=v.MAX_TYPE),
              help="Job type (default: the function's name; at most 200 characters).")
@click.option("--kwargs", "kwargs_json", default="{}",
              help="Keyword arguments as a JSON object (any names, 'type' and 'priority' included).")
@pass_ctx
@friendly
def dispatch(ctx: Context, function: str, args: tuple[str, ...], priority: str, job_type: str | None,
             kwargs_json: str) -> None:
    """Dispatch FUNCTION (package.module:function) with ARGS, each a JSON value (negative numbers too)."""
    from jobengine.dispatch import JobSpec, check_specs

    values = [_json_arg(a, f"argument {i + 1}") for i, a in enumerate(args)]
    kwargs = _json_arg(kwargs_json, "--kwargs")
    if not isinstance(kwargs, dict):
        fail("--kwargs must be a JSON object, e.g. '{\"retries\": 3}'")
    spec = JobSpec(function, tuple(values), kwargs, type=job_type, priority=priority)
    settings = ctx.settings()
    settings_guard(settings, "dispatch")
    settings.lane(priority)  # validate before starting anything
    check_specs([spec], settings)
    with ctx.engine() as engine:
        click.echo(engine.dispatch_many([spec], audit=True)[0])


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json_arg(text: str, what: str) -> Any:
    v.text(text, what, max_len=16 * 1024 * 1024, empty=True)
    if text.startswith("--") and not text[2:3].isdigit():
        fail(f"no such option: {text} (job arguments are JSON values; see 'jobtui dispatch --help')")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        fail(f"{what} is not valid JSON ({exc.msg}): {v.show(text)}; quote strings as '\"text\"'")
    except RecursionError:
        fail(f"{what}: JSON nested too deeply (at most {v.MAX_DEPTH} levels)")
    except ValueError as exc:  # a number of more than 4,300 digits, NaN, Infinity
        reason = f"an integer of more than {v.MAX_INT_DIGITS:,} digits" if "digits" in str(exc) else str(exc)
        fail(f"{what}: {reason}: {v.show(text)}")


COMMANDS = (dispatch,)
