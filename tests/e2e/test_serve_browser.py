"""`jobtui serve` in headless Chromium: the dashboard shows the lanes, key presses reach the app.

Debian's chromium and chromedriver drive the page through selenium (no browser is downloaded).
The page draws the terminal on a canvas (xterm.js), so its text is read from xterm.js's own
screen buffer: a script installed before the page's scripts run catches the page's Terminal
object as it is created. Without a browser the tests skip, or fail when JOBTUI_REQUIRE_BROWSER=1
(CI sets it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

try:
    from selenium.webdriver.common.keys import Keys
except ImportError:  # the browser fixture skips (or fails) with the reason
    Keys = None  # type: ignore[assignment,misc]

import psutil
import pytest

from jobengine import Engine, JobSpec
from jobengine.config import Settings
from tests.engine import jobs
from tests.engine.conftest import ZERO_DELAY_LANES
from tests.engine.helpers import run_until_idle

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("JOBTUI_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("JOBTUI_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,900")

CATCH_TERMINAL = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  get() { return undefined; },
  set(value) {
    Object.defineProperty(this, "terminal", {value: value, writable: true, configurable: true, enumerable: true});
    if (value && value.buffer && value.buffer.active) { window.__jobtuiTerminal = value; }
  },
});
"""
SCREEN_TEXT = """
const t = window.__jobtuiTerminal;
if (!t) { return null; }
const b = t.buffer.active, rows = [];
for (let y = 0; y < t.rows; y++) {
  const line = b.getLine(b.viewportY + y);
  rows.push(line ? line.translateToString(true) : "");
}
return rows.join("\\n");
"""


def _no_browser(reason: str) -> None:
    message = f"no browser for the serve test: {reason}; install it with `apt-get install -y chromium chromium-driver`"
    if os.environ.get("JOBTUI_REQUIRE_BROWSER") == "1":
        pytest.fail(message + " (JOBTUI_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (each test opens its own page)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            _no_browser(f"{path} is missing")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _no_browser("the selenium package is not installed (pip install -e '.[test]')")
    profile = tempfile.mkdtemp(prefix="jobtui-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    except Exception as exc:  # selenium's errors for a browser that will not start
        shutil.rmtree(profile, ignore_errors=True)
        _no_browser(f"chromium did not start ({type(exc).__name__}: {str(exc).splitlines()[0]})")
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """A `jobtui serve` process on a free loopback port."""

    def __init__(self, tmp_path: Path, redis_url: str, database_url: str, *extra: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = tmp_path / f"serve-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
        env["PYTHONPATH"] = str(ROOT)
        argv = [sys.executable, "-m", "jobtui.cli", "--redis-url", redis_url, "--database-url", database_url,
                "serve", "--port", str(self.port), *extra]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                                         start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(self.url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"jobtui serve did not come up:\n{self.log.read_text()}")
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM to the server's process group (the server and the consoles it spawned)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


@pytest.fixture
def serve(tmp_path: Path, redis_url: str, database_url: str) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(*extra: str) -> Served:
        started.append(Served(tmp_path, redis_url, database_url, *extra))
        return started[-1]

    yield start
    for served in started:
        served.stop()


@pytest.fixture
def jobs_dispatched(redis_url: str, database_url: str) -> dict[str, str]:
    """Jobs on three lanes: one finished, one failed (in history), two waiting."""
    settings = Settings.load(env={}, redis_url=redis_url, database_url=database_url, lanes=dict(ZERO_DELAY_LANES))
    with Engine(settings) as engine:
        done = engine.dispatch(jobs.add, 1, 2, priority="critical")
        failed = engine.dispatch(jobs.broken, 7, priority="high")
        run_until_idle(engine)
        engine.flush_history()
        waiting = engine.dispatch_many([JobSpec(jobs.noop, priority="normal"), JobSpec(jobs.noop, priority="low")])
    return {"done": done, "failed": failed, "waiting": ",".join(waiting)}


class Page:
    """The served console in a browser tab: its screen text, keys typed into it."""

    def __init__(self, driver: Any, url: str) -> None:
        self.driver = driver
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CATCH_TERMINAL})
        driver.get(url)

    def text(self) -> str:
        return str(self.driver.execute_script(SCREEN_TEXT) or "")

    def wait_for(self, *needles: str, timeout: float = 45.0) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if all(n in text for n in needles):
                return text
            time.sleep(0.25)
        raise AssertionError(f"the page never showed {needles!r}; the screen was:\n{text}")

    def wait_gone(self, needle: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while needle in (text := self.text()):
            if time.monotonic() > deadline:
                raise AssertionError(f"the page still shows {needle!r}:\n{text}")
            time.sleep(0.25)
        return text

    def press(self, keys: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By

        textarea = self.driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
        self.driver.execute_script("arguments[0].focus();", textarea)  # no click: that would hit the app
        ActionChains(self.driver).send_keys(keys).perform()

    def close(self) -> None:
        """Close this tab (the browser goes on in a new one)."""
        old = self.driver.current_window_handle
        self.driver.switch_to.new_window("tab")
        new = self.driver.current_window_handle
        self.driver.switch_to.window(old)
        self.driver.close()
        self.driver.switch_to.window(new)

    def screenshot(self, path: Path) -> None:
        self.driver.save_screenshot(str(path))


def _status(redis_url: str, job_id: str) -> str:
    from redis import Redis
    from rq.job import Job

    with Redis.from_url(redis_url) as conn:
        return str(Job.fetch(job_id, connection=conn).get_status().value)


def _lane_row(screen: str, queue: str) -> list[str]:
    """The Queues table's row of `queue`: [queue, size, scheduled, running, failed, ...]."""
    for line in screen.splitlines():
        cells = line.strip("│ ").split()
        if cells and cells[0] == queue:
            return cells
    raise AssertionError(f"no row for lane {queue!r} on the dashboard:\n{screen}")


def test_dashboard_in_a_browser_is_read_only_and_answers_keys(browser: Any, serve: Callable[..., Served],
                                                              jobs_dispatched: dict[str, str], redis_url: str,
                                                              tmp_path: Path) -> None:
    started = time.monotonic()
    served = serve()
    page = Page(browser, served.url)
    screen = page.wait_for("Queues", "critical", "default", "low")
    print(f"\ndashboard drawn {time.monotonic() - started:.1f}s after `jobtui serve` started")
    page.screenshot(tmp_path / "dashboard.png")
    assert "read-only" in screen.splitlines()[0]  # the header's mode
    assert [_lane_row(screen, q)[:2] for q in ("critical", "high", "default", "low")] == \
        [["critical", "0"], ["high", "0"], ["default", "1"], ["low", "1"]]
    assert _lane_row(screen, "high")[4] == "1"  # the failed job
    assert "Retry" not in screen

    page.press("?")  # a key press reaches the app: the help dialog, which knows the session is read-only
    help_screen = page.wait_for("Keys · read-only", "Show every key and what it does")
    assert "Retry" not in help_screen and "Cancel" not in help_screen
    page.press(Keys.ESCAPE)
    page.wait_gone("Keys · read-only")
    page.press("2")
    failed_screen = page.wait_for("Failed jobs", "ValueError", "bad value 7")
    assert "Keys · read-only" not in failed_screen
    page.press("r")  # retry is not bound in a read-only session: the job stays failed
    time.sleep(2)
    assert _status(redis_url, jobs_dispatched["failed"]) == "failed"
    print(f"read-only session checked in {time.monotonic() - started:.1f}s")
    consoles = [p for p in psutil.Process(served.proc.pid).children() if "console" in p.cmdline()]
    assert len(consoles) == 1 and consoles[0].cmdline()[-1] == "--read-only"
    page.close()  # the tab closes: its session ends, its console quits
    _, alive = psutil.wait_procs(consoles, timeout=15)
    assert not alive and served.proc.poll() is None


def test_allow_actions_lets_a_browser_retry(browser: Any, serve: Callable[..., Served],
                                            jobs_dispatched: dict[str, str], redis_url: str) -> None:
    started = time.monotonic()
    served = serve("--allow-actions")
    page = Page(browser, served.url)
    screen = page.wait_for("Queues", "critical", "default")
    assert "read-only" not in screen.splitlines()[0]
    page.press("2")
    page.wait_for("Failed jobs", "ValueError", "r Retry")
    assert _status(redis_url, jobs_dispatched["failed"]) == "failed"
    page.press("r")
    deadline = time.monotonic() + 20
    while _status(redis_url, jobs_dispatched["failed"]) == "failed" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _status(redis_url, jobs_dispatched["failed"]) != "failed", page.text()
    print(f"\nretried from the browser in {time.monotonic() - started:.1f}s")

    consoles = [p for p in psutil.Process(served.proc.pid).children(recursive=True) if "console" in p.cmdline()]
    assert consoles and all("--read-only" not in p.cmdline() for p in consoles)
    served.proc.send_signal(signal.SIGTERM)  # the server alone: it ends its sessions, their consoles quit
    assert served.proc.wait(timeout=20) == 0
    _, alive = psutil.wait_procs(consoles, timeout=10)
    assert not alive, f"consoles left running after the server stopped: {alive}"


# ---- without a browser: the server's guards ---------------------------------------------------

def _get(url: str, **headers: str) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_a_foreign_host_or_origin_is_refused(serve: Callable[..., Served]) -> None:
    """A page elsewhere cannot open a session (cross-site websocket), nor reach it by DNS rebinding."""
    served = serve()
    port = served.port
    assert _get(served.url) == 200
    assert _get(served.url, Origin=f"http://localhost:{port}") == 200  # the tunnel's usual address
    assert _get(served.url, Host=f"evil.example:{port}") == 403  # DNS rebinding
    assert _get(served.url, Origin="http://evil.example") == 403
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    assert _get(f"{served.url}ws", Origin="http://evil.example", **upgrade) == 403


def test_consoles_quit_when_the_server_is_killed(serve: Callable[..., Served]) -> None:
    """Each session's console gets SIGTERM when the server dies, even by SIGKILL."""
    import asyncio

    import aiohttp

    served = serve()
    consoles: list[psutil.Process] = []

    async def session() -> None:
        async with aiohttp.ClientSession() as client, \
                client.ws_connect(f"ws://127.0.0.1:{served.port}/ws?width=100&height=30"):
            for _ in range(100):
                consoles[:] = [p for p in psutil.Process(served.proc.pid).children() if "console" in p.cmdline()]
                if consoles:
                    break
                await asyncio.sleep(0.1)
            assert consoles and "--read-only" in consoles[0].cmdline()
            served.proc.kill()
            served.proc.wait(timeout=10)

    asyncio.run(session())
    _, alive = psutil.wait_procs(consoles, timeout=10)
    assert not alive, f"consoles outlived a killed server: {alive}"


def _jobtui(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "jobtui.cli", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_host_checks(redis_url: str, database_url: str) -> None:
    servers = ("--redis-url", redis_url, "--database-url", database_url)
    every = _jobtui(*servers, "serve", "--host", "0.0.0.0")
    assert every.returncode == 2 and "add --public-url" in every.stderr
    unknown = _jobtui(*servers, "serve", "--host", "no-such-host.invalid")
    assert unknown.returncode == 2 and "--host: cannot resolve 'no-such-host.invalid'" in unknown.stderr
    with socket.socket() as taken:  # the port is taken, so nothing listens beyond loopback here
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        wide = _jobtui(*servers, "serve", "--host", "0.0.0.0", "--public-url", f"http://127.0.0.1:{port}",
                       "--port", str(port))
        loopback = _jobtui(*servers, "serve", "--port", str(port))
    assert wide.returncode == 2, wide.stderr
    assert "which is not a loopback address: the console has no authentication" in wide.stderr
    assert f"cannot listen on 0.0.0.0:{port}" in wide.stderr
    assert loopback.returncode == 2 and "no authentication" not in loopback.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in loopback.stderr


def test_global_options_reach_the_consoles(tmp_path: Path) -> None:
    from jobtui.cli.context import Context
    from jobtui.cli.serve import SESSION_ENTRY, console_command, console_environment

    ctx = Context(config="jobtui.toml", overrides={"data_dir": "data", "read_only": None}, verbose=True)
    assert console_command(ctx, allow_actions=False, refresh=2.5) == \
        [sys.executable, "-c", SESSION_ENTRY, "--verbose", "console", "--refresh", "2.5", "--read-only"]
    assert "--read-only" not in console_command(ctx, allow_actions=True, refresh=None)
    ctx.overrides["read_only"] = True  # `jobtui --read-only serve --allow-actions`: read-only wins
    assert console_command(ctx, allow_actions=True, refresh=None)[-1] == "--read-only"
    env = console_environment(ctx, "redis://u:secret@h/1", "postgresql://p@h/db")
    assert env["JOBENGINE_REDIS_URL"] == "redis://u:secret@h/1"  # in the environment, not on a command line
    assert env["JOBENGINE_DATABASE_URL"] == "postgresql://p@h/db"
    assert env["JOBENGINE_CONFIG"] == os.path.abspath("jobtui.toml")
    assert env["JOBENGINE_DATA_DIR"] == os.path.abspath("data")
