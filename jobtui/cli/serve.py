"""`jobtui serve`: the console in a browser, through textual-serve.

Every browser session runs its own `jobtui console` process (textual-serve starts one per
websocket, over xterm.js). The server binds 127.0.0.1 unless `--host` says otherwise (a non-loopback
address is bound only when given, with a warning: the console has no authentication); reach it over
an SSH tunnel. Sessions are read-only unless `--allow-actions`. The global options reach the
spawned consoles through their JOBENGINE_* variables (so a password in a URL is neither on a
command line nor in the startup banner), the embedded servers are started once here, and a request
whose Host or Origin names another host is refused (a web page elsewhere cannot drive the console,
nor reach it through DNS rebinding).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import os
import shlex
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from jobtui.cli.context import Context, checked, fail, friendly, pass_ctx

if TYPE_CHECKING:
    from aiohttp import web

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
SHUTDOWN_GRACE = 10.0
"""Seconds the consoles get to quit when the server stops."""
SESSION_ENTRY = "from jobtui.cli.serve import session; session()"
SERVER_PID = "JOBTUI_SERVE_PID"
PR_SET_PDEATHSIG = 1
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
NO_AUTH_WARNING = ("jobtui: warning: serving on {host}, which is not a loopback address: the console has "
                   "no authentication, so anyone who reaches {url} can watch{act} your queues")


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback one (an unknown name fails, exit 2)."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError as exc:
        fail(f"--host: cannot resolve {name!r} ({exc.strerror or exc})")
    return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def is_unspecified(host: str) -> bool:
    """0.0.0.0 or :: (every interface): browsers cannot connect back to such an address."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def console_command(ctx: Context, *, allow_actions: bool, refresh: float | None) -> list[str]:
    """The argv each browser session runs: the console, `--read-only` unless actions are allowed."""
    argv = [sys.executable, "-c", SESSION_ENTRY]
    if ctx.verbose:
        argv.append("--verbose")
    argv.append("console")
    if refresh is not None:
        argv += ["--refresh", f"{refresh:g}"]
    if not allow_actions or ctx.overrides.get("read_only"):
        argv.append("--read-only")
    return argv


def session() -> None:
    """A spawned console's entry: it gets SIGTERM when the server dies, even by SIGKILL (Linux), then
    runs `jobtui` with the given arguments."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.environ.get(SERVER_PID) not in (None, str(os.getppid())):
        sys.exit(0)  # the server died before prctl took effect
    from jobtui.cli.main import main

    sys.argv = ["jobtui", *sys.argv[1:]]
    main()


def console_environment(ctx: Context, redis_url: str, database_url: str) -> dict[str, str]:
    """The JOBENGINE_* variables that carry this command's global options to the spawned consoles.

    They rank above the file and below flags, as the options do here; the URLs are the resolved
    ones (the embedded servers this command started or attached to, when none was configured)."""
    env = {"JOBENGINE_REDIS_URL": redis_url, "JOBENGINE_DATABASE_URL": database_url, SERVER_PID: str(os.getpid())}
    if ctx.config is not None:
        env["JOBENGINE_CONFIG"] = os.path.abspath(ctx.config)
    if ctx.overrides.get("data_dir") is not None:
        env["JOBENGINE_DATA_DIR"] = os.path.abspath(str(ctx.overrides["data_dir"]))
    return env


def allowed_hosts(host: str, public_url: str, loopback: bool) -> frozenset[str]:
    """Host names a request's Host and Origin headers may carry."""
    names = {host.strip("[]").lower(), (urlsplit(public_url).hostname or "").lower()}
    if loopback:
        names |= {n.strip("[]") for n in LOOPBACK_NAMES}
    return frozenset(names - {""})


def request_allowed(headers: Any, allowed: frozenset[str]) -> bool:
    """The Host header, and the Origin header when a browser sends one, name an allowed host."""
    host = urlsplit(f"//{headers.get('Host', '')}").hostname
    if host is None or host.lower() not in allowed:
        return False
    origin = headers.get("Origin")
    if origin is None:
        return True
    origin_host = urlsplit(origin).hostname
    return origin_host is not None and origin_host.lower() in allowed


def make_server(command: list[str], *, host: str, port: int, public_url: str, loopback: bool) -> Any:
    """A textual-serve Server that runs `command` per session, refuses foreign Host/Origin headers and
    ends every session (each console quits) when it stops."""
    from aiohttp import web
    from textual_serve.server import Server

    class ConsoleServer(Server):
        sessions: set[asyncio.Task[Any]]

        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            self.sessions = set()
            allowed = allowed_hosts(self.host, self.public_url, loopback)

            @web.middleware
            async def guard(request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
                if not request_allowed(request.headers, allowed):
                    raise web.HTTPForbidden(text="jobtui serve: this Host or Origin is not allowed\n")
                task = asyncio.current_task()
                if request.path != "/ws" or task is None:
                    return await handler(request)
                self.sessions.add(task)
                try:
                    return await handler(request)
                finally:
                    self.sessions.discard(task)

            app.middlewares.append(guard)
            return app

        async def on_shutdown(self, app: web.Application) -> None:
            """Before aiohttp waits for open connections: end each session, its console quits."""
            sessions = list(self.sessions)
            for task in sessions:
                task.cancel()
            if sessions:
                await asyncio.wait(sessions, timeout=SHUTDOWN_GRACE)

    return ConsoleServer("exec " + shlex.join(command), host=host, port=port, title="jobtui console",
                         public_url=public_url)


@click.command()
@click.option("--port", default=DEFAULT_PORT, show_default=True, callback=checked("int", 1, 65535),
              help="TCP port to listen on.")
@click.option("--host", default=None,
              help=f"Address to bind (default {DEFAULT_HOST}; anything else is reachable without a password).")
@click.option("--allow-actions", is_flag=True,
              help="Let browser sessions retry and cancel jobs (default: every session is read-only).")
@click.option("--public-url", callback=checked("text", max_len=2048),
              help="The URL browsers use to reach this server, when it differs from http://HOST:PORT "
                   "(a tunnel on another local port, a proxy).")
@click.option("--refresh", callback=checked("number", 0.1, 3600),
              help="Seconds between the consoles' refreshes (0.1 to 3600, default 1).")
@pass_ctx
@friendly
def serve(ctx: Context, port: int, host: str | None, allow_actions: bool, public_url: str | None,
          refresh: float | None) -> None:
    """Serve the console to web browsers (textual-serve), on 127.0.0.1 by default.

    Reach it over an SSH tunnel: `ssh -L 8000:127.0.0.1:8000 HOST`, then open http://localhost:8000.
    Each browser tab runs its own console; read-only unless --allow-actions.
    """
    bind = DEFAULT_HOST if host is None else host.strip()
    if not bind:
        fail("--host: expected an address or a host name, got ''")
    if public_url is not None and urlsplit(public_url).scheme not in ("http", "https"):
        fail(f"--public-url: expected an http:// or https:// URL, got {public_url!r}")
    loopback = is_loopback(bind)
    if is_unspecified(bind) and public_url is None:
        fail(f"--host {bind} binds every interface: add --public-url with the address browsers use "
             "(e.g. http://myhost:8000)")
    if public_url is None:
        public_url = f"http://{f'[{bind}]' if ':' in bind else bind}:{port}"
    with ctx.engine() as engine:  # checks the settings and the servers once; embedded ones live while serving
        settings = engine.settings
        os.environ.update(console_environment(ctx, str(settings.redis_url), str(settings.database_url)))
        server = make_server(console_command(ctx, allow_actions=allow_actions, refresh=refresh),
                             host=bind, port=port, public_url=public_url, loopback=loopback)
        url = public_url
        if not loopback:
            click.echo(NO_AUTH_WARNING.format(host=bind, url=url, act=" and steer" if allow_actions and
                                              not engine.read_only else ""), err=True)
        if allow_actions and engine.read_only:
            click.echo("jobtui: read-only is set (--read-only, JOBENGINE_READ_ONLY or the config): "
                       "sessions stay read-only despite --allow-actions", err=True)
        mode = "actions allowed" if allow_actions and not engine.read_only else "read-only"
        click.echo(f"jobtui: serving the console on {url} ({mode}); Ctrl+C stops", err=True)
        try:
            server.serve()
        except OSError as exc:
            fail(f"cannot listen on {bind}:{port}: {exc.strerror or exc}")


COMMANDS = (serve,)
