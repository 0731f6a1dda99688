"""Job commands: `jobtui dispatch`, `jobtui job`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from jobengine import validate as v
from jobtui.cli.context import Context, checked, fail, friendly, pass_ctx, settings_guard

if TYPE_CHECKING:
    from jobengine.models import JobDetail


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


@click.command("job")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the detail as JSON.")
@click.option("--max-text", default=4000, show_default=True, callback=checked("int", 1, 2**31),
              help="Characters of the arguments, error message and traceback shown (each; the rest is cut "
                   "with a marker).")
@pass_ctx
@friendly
def job(ctx: Context, job_id: str, as_json: bool, max_text: int) -> None:
    """A job's detail by id or unique id prefix: status, lane, attempts, times, arguments, last error, log."""
    v.text(job_id, "JOB_ID", max_len=v.MAX_JOB_ID)
    with ctx.engine() as engine:
        detail = engine.job_detail(job_id, max_text=max_text)
    if detail is None:
        fail(f"no job with id or id prefix {job_id!r}")
    data = job_data(detail)
    if as_json:
        click.echo(json.dumps(data))
        return
    for line in job_lines(data):
        click.echo(line)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds") if value is not None else None


def job_data(detail: JobDetail) -> dict[str, Any]:
    """The detail as plain data (the JSON `jobtui job --json` prints)."""
    r, f = detail.record, detail.failure
    return {
        "id": r.id, "type": r.type, "status": r.status.value, "rq_status": detail.rq_status, "queue": r.queue,
        "priority": r.priority.value if r.priority is not None else None, "attempts": r.attempts,
        "func": r.func, "args": r.args, "worker": r.worker, "duration": r.duration,
        "created_at": _iso(r.created_at), "started_at": _iso(r.started_at), "finished_at": _iso(r.finished_at),
        "failed_at": _iso(r.failed_at),
        "last_error": None if f is None else {
            "class": f.error_class, "message": f.error_message, "traceback": f.traceback, "at": _iso(f.failed_at),
            "attempts": f.attempts, "retried_at": _iso(f.retried_at)},
        "retry_strategy": detail.retry_strategy, "next_delay": detail.next_delay,
        "log": [{"at": _iso(e.at), "kind": e.kind, "level": e.level, "attempt": e.attempt, "message": e.message}
                for e in detail.logs],
        "truncated": list(detail.truncated),
    }


def job_lines(data: dict[str, Any]) -> list[str]:
    """The detail as text lines."""
    lane = f"{data['priority']} lane, queue {data['queue']}" if data["priority"] else f"queue {data['queue']}"
    status = data["status"] + (f" (RQ: {data['rq_status']})" if data["rq_status"] else "")
    lines = [f"job {data['id']}  {data['type']}", f"  status     {status}", f"  lane       {lane}",
             f"  attempts   {data['attempts']}", f"  function   {data['func'] or '-'}",
             f"  arguments  {data['args'] or '-'}"]
    if data["worker"]:
        lines.append(f"  worker     {data['worker']}")
    for name in ("created_at", "started_at", "finished_at", "failed_at"):
        if data[name]:
            lines.append(f"  {name.replace('_at', ''):<10} {data[name]}")
    if data["duration"] is not None:
        lines.append(f"  ran        {data['duration']:.3f}s")
    error = data["last_error"]
    if error:
        lines += ["", f"last error ({error['at']}, attempt {error['attempts']}"
                  + (f", retried {error['retried_at']}" if error["retried_at"] else "") + "):",
                  f"  {error['class']}: {error['message']}"]
        if data["retry_strategy"]:
            nxt = f", next delay {data['next_delay']:g}s" if data["next_delay"] is not None else ", no retry left"
            lines.append(f"  retry strategy {data['retry_strategy']}{nxt}")
        lines += ["  " + line for line in (error["traceback"] or "").splitlines()]
    if data["log"]:
        lines += ["", "log:"]
        lines += [f"  {e['at']}  {e['level']:<7} {e['kind']:<12} {e['message']}" for e in data["log"]]
    if data["truncated"]:
        lines += ["", f"cut to --max-text: {', '.join(data['truncated'])} (--max-text N shows more)"]
    return lines


COMMANDS = (dispatch, job)
