"""Alerts through apprise, received by a local HTTP server (apprise's `json://127.0.0.1:PORT` URL):
one notice per change, none repeated within the interval, the resolved notice when it clears, a
burst of one failure group as one notice, one sender among concurrent evaluators."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from jobengine import Engine, JobSpec
from jobengine.alerts import Notifier, mask, resolve_urls
from jobengine.alerts.checks import Readings, conditions
from jobengine.config import Settings
from jobengine.errors import ConfigError
from jobengine.keys import ALERTS_STATE, REDIS_EPOCH
from jobengine.models import HealthReport, JobEvent
from jobengine.types import EventKind
from tests.engine import jobs
from tests.engine.conftest import ZERO_DELAY_LANES

ROOT = Path(__file__).resolve().parents[2]
_ids = iter(range(1, 1_000_000))


class Receiver:
    """A tiny webhook: collects the JSON bodies POSTed to it (apprise's json:// plugin)."""

    def __init__(self, delay: float = 0.0, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.delay = delay
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                time.sleep(receiver.delay)
                receiver.bodies.append({"path": self.path, **body})
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_port}/hook"

    def titles(self) -> list[str]:
        return [b["title"] for b in self.bodies]

    def wait_for(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.bodies) < n:
            assert time.monotonic() < deadline, f"expected {n} notices, got {self.titles()}"
            time.sleep(0.05)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def make_engine(redis_url: str, database_url: str, receiver: Receiver | None, **settings: Any) -> Engine:
    base: dict[str, Any] = {"lanes": dict(ZERO_DELAY_LANES)}
    if receiver is not None:
        base["alert_urls"] = (receiver.url,)
    return Engine(Settings.load(env={}, redis_url=redis_url, database_url=database_url, **{**base, **settings}))


@pytest.fixture
def alerting(redis_url: str, database_url: str, receiver: Receiver) -> Iterator[Any]:
    made: list[Engine] = []

    def make(**settings: Any) -> Engine:
        engine = make_engine(redis_url, database_url, receiver, **settings)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


def event(kind: EventKind, job_id: str, at: datetime, **details: Any) -> JobEvent:
    return JobEvent(event_id=f"1-{next(_ids)}", kind=kind, job_id=job_id, at=at, queue="default",
                    type="report", **details)


def fail_jobs(engine: Engine, n: int, message: str = "upstream said 502", prefix: str = "f") -> None:
    now = datetime.now(UTC)
    engine.store.apply_events([event(EventKind.FAILED, f"{prefix}{i}", now - timedelta(seconds=i), attempt=1,
                                     error_class="ConnectionError", error_message=message) for i in range(n)])


# ---- health: one notice, none within the interval, the resolved notice ------------------------

def test_health_change_sends_one_notice_then_the_resolved_notice(alerting: Any, receiver: Receiver) -> None:
    engine = alerting(alert_events=("health",))
    alerter = engine.alerter()
    assert alerter.run_once(force=True).sent == ()  # healthy: nothing to tell
    now = datetime.now(UTC)
    engine.store.apply_events([event(EventKind.STARTED, "stuck-1", now - timedelta(hours=3), attempt=1)])

    report = alerter.run_once(force=True)
    assert report.active == ("health",) and len(report.sent) == 1
    receiver.wait_for(1)
    first = receiver.bodies[0]
    assert (first["path"], first["type"], first["title"]) == ("/hook", "failure", "jobengine health is failing")
    assert "stuck-1" in first["message"] and "processing for more than 2 h" in first["message"]

    assert alerter.run_once(force=True).sent == ()  # still failing: told once
    assert engine.alerter().run_once(force=True).sent == ()  # a restarted process reads the state
    assert len(receiver.bodies) == 1

    engine.store.apply_events([event(EventKind.FINISHED, "stuck-1", datetime.now(UTC), attempt=1)])
    report = alerter.run_once(force=True)
    assert report.active == () and [r.status for r in report.sent] == ["resolved"]
    receiver.wait_for(2)
    resolved = receiver.bodies[1]
    assert (resolved["type"], resolved["title"]) == ("success", "Resolved: jobengine health is failing")
    assert "Health is healthy now" in resolved["message"]

    # failing again within the interval: no notice (at most one per key per interval) ...
    engine.store.apply_events([event(EventKind.STARTED, "stuck-2", now - timedelta(hours=3), attempt=1)])
    report = alerter.run_once(force=True)
    assert report.sent == () and report.suppressed == ("health",) and report.active == ("health",)
    # ... and clearing again sends no resolved notice for a change nobody was told of
    engine.store.apply_events([event(EventKind.FINISHED, "stuck-2", datetime.now(UTC), attempt=1)])
    assert alerter.run_once(force=True).sent == ()
    time.sleep(0.3)
    assert len(receiver.bodies) == 2

    recent = engine.recent_alerts(10)
    assert [(r.status, r.event) for r in recent] == [("resolved", "health"), ("firing", "health")]
    assert recent[0].delivered == ("json://127.0.0.1",) and recent[0].failed == ()


def test_a_key_still_active_after_the_interval_is_sent_then(alerting: Any, receiver: Receiver) -> None:
    engine = alerting(alert_events=("health",), alert_interval=1.0)
    alerter = engine.alerter()
    now = datetime.now(UTC)
    engine.store.apply_events([event(EventKind.STARTED, "s1", now - timedelta(hours=3), attempt=1)])
    assert len(alerter.run_once(force=True).sent) == 1
    engine.store.apply_events([event(EventKind.FINISHED, "s1", datetime.now(UTC), attempt=1)])
    assert [r.status for r in alerter.run_once(force=True).sent] == ["resolved"]
    engine.store.apply_events([event(EventKind.STARTED, "s2", now - timedelta(hours=3), attempt=1)])
    assert alerter.run_once(force=True).suppressed == ("health",)
    time.sleep(1.1)
    assert [r.status for r in alerter.run_once(force=True).sent] == ["firing"]
    assert [b["type"] for b in receiver.bodies] == ["failure", "success", "failure"]


# ---- failure groups: a burst is one notice, a new group is told --------------------------------

def test_a_burst_of_one_failure_group_sends_one_notice(alerting: Any, receiver: Receiver) -> None:
    engine = alerting(alert_events=("failures",), alert_burst_count=5, alert_burst_minutes=5.0)
    alerter = engine.alerter()
    fail_jobs(engine, 6)
    report = alerter.run_once(force=True)
    assert len(report.sent) == 1
    receiver.wait_for(1)
    body = receiver.bodies[0]
    assert body["title"] == "Burst of failures: 6 in 5 min"
    assert body["message"].startswith("A new failure group ")
    assert "ConnectionError: upstream said 502" in body["message"] and "burst threshold 5" in body["message"]
    assert sorted(report.active) == sorted(k for k in report.active if k.split(":")[0] in ("burst", "group"))
    assert len(report.active) == 2  # the burst and its new group, told in one notice

    fail_jobs(engine, 3, prefix="g")  # the same group keeps failing: still one burst
    assert alerter.run_once(force=True).sent == ()

    fail_jobs(engine, 1, message="disk full", prefix="h")  # another group, new and not a burst
    sent = alerter.run_once(force=True).sent
    assert [r.title for r in sent] == ["New failure group"]
    receiver.wait_for(2)
    assert receiver.bodies[1]["type"] == "warning" and "disk full" in receiver.bodies[1]["message"]
    time.sleep(0.3)
    assert len(receiver.bodies) == 2


def test_burst_below_the_count_is_only_a_new_group(alerting: Any, receiver: Receiver) -> None:
    engine = alerting(alert_events=("failures",), alert_burst_count=10)
    fail_jobs(engine, 9)
    assert [r.title for r in engine.alerter().run_once(force=True).sent] == ["New failure group"]


# ---- stuck jobs, long waits --------------------------------------------------------------------

def test_stuck_jobs_of_one_round_are_one_notice(alerting: Any, receiver: Receiver) -> None:
    engine = alerting(alert_events=("stuck",))
    now = datetime.now(UTC)
    engine.store.apply_events([event(EventKind.STARTED, f"stuck-{i}", now - timedelta(hours=3 + i), attempt=1,
                                     worker="w-east") for i in range(3)])
    sent = engine.alerter().run_once(force=True).sent
    assert len(sent) == 1 and sent[0].title.startswith("Job stuck: ") and sent[0].title.endswith("(and 2 more)")
    assert sorted(sent[0].keys) == ["stuck:stuck-0", "stuck:stuck-1", "stuck:stuck-2"]
    receiver.wait_for(1)
    assert "on w-east" in receiver.bodies[0]["message"]


def test_a_queue_waiting_longer_than_its_threshold_alerts(alerting: Any, receiver: Receiver) -> None:
    engine = alerting(alert_events=("long_wait",), long_wait=0.5, queue_wait={"high": 3600})
    engine.dispatch_many([JobSpec(jobs.noop), JobSpec(jobs.noop, priority="high")])
    time.sleep(0.7)
    report = engine.alerter().run_once(force=True)
    assert report.active == ("long_wait:default",)  # high's own threshold is an hour
    receiver.wait_for(1)
    assert receiver.bodies[0]["title"] == "Long wait on queue default"


def test_an_unreconciled_redis_reset_alerts(alerting: Any, receiver: Receiver) -> None:
    engine = alerting(alert_events=("redis_reset",))
    engine.reconciler().ensure_epoch()
    assert engine.alerter().run_once(force=True).sent == ()
    engine.connection.delete(REDIS_EPOCH)  # as if Redis had lost its data
    sent = engine.alerter().run_once(force=True).sent
    assert [r.title for r in sent] == ["Redis lost its data (not reconciled)"]


def test_dead_letters_and_disabled_events_are_pure_conditions() -> None:
    now = datetime.now(UTC)
    report = HealthReport("warning", ("x",), now, dead_letters=2)
    readings = Readings(now, health=report, dead_letters=2, redis_reset=True,
                        read=frozenset({"health", "dead_letters", "redis_reset"}))
    keys = [c.key for c in conditions(Settings(), readings)]
    assert keys == ["dead_letters", "redis_reset"]
    assert [c.key for c in conditions(Settings(alert_events=("redis_reset",)), readings)] == ["redis_reset"]


# ---- one sender in the deployment --------------------------------------------------------------

def test_only_one_of_two_concurrent_evaluators_sends(redis_url: str, database_url: str) -> None:
    slow = Receiver(delay=0.5)  # the first round is still sending when the second starts
    engines = [make_engine(redis_url, database_url, slow, alert_events=("health",)) for _ in range(2)]
    try:
        now = datetime.now(UTC)
        engines[0].store.apply_events([event(EventKind.STARTED, "stuck-1", now - timedelta(hours=3), attempt=1)])
        alerters = [e.alerter() for e in engines]
        barrier = threading.Barrier(2)
        results: list[Any] = [None, None]

        def run(i: int) -> None:
            barrier.wait()
            results[i] = alerters[i].run_once()

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(r is None for r in results) == [False, True]  # one ran, the other skipped
        assert alerters[0].run_once() is None and alerters[1].run_once() is None  # the round is fresh
        time.sleep(0.8)
        assert slow.titles() == ["jobengine health is failing"]
    finally:
        for e in engines:
            e.close()
        slow.close()


def test_worker_processes_send_alerts_once(redis_url: str, database_url: str, receiver: Receiver,
                                           tmp_path: Path) -> None:
    """Two `jobtui worker` processes with [alerts]: the health change arrives once."""
    with make_engine(redis_url, database_url, None) as engine:
        now = datetime.now(UTC)
        engine.store.apply_events([event(EventKind.STARTED, "stuck-1", now - timedelta(hours=3), attempt=1)])
    config = tmp_path / "jobtui.toml"
    config.write_text('[alerts]\nurls = ["${HOOK}"]\ncheck_every = 1\nevents = ["health"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env.update(PYTHONPATH=str(ROOT), HOOK=receiver.url)
    argv = [sys.executable, "-m", "jobtui.cli", "--config", str(config), "--redis-url", redis_url,
            "--database-url", database_url, "worker"]
    workers = [subprocess.Popen(argv, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 60
        while not receiver.bodies:
            assert time.monotonic() < deadline and all(w.poll() is None for w in workers)
            time.sleep(0.1)
        time.sleep(3)  # several more rounds in both processes
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        errors = [w.communicate(timeout=30)[1] for w in workers]
    assert receiver.titles() == ["jobengine health is failing"]
    assert all(receiver.url.split("//")[1] not in e and "Traceback" not in e for e in errors), errors


# ---- URLs: secrets from the environment, masked -----------------------------------------------

def test_urls_come_from_the_environment_and_are_masked() -> None:
    settings = Settings.load(env={"JOBENGINE_ALERT_URLS": "slack://T1ABC/B2DEF/secret3, json://h.example/x"})
    assert settings.alert_urls == ("slack://T1ABC/B2DEF/secret3", "json://h.example/x")
    assert "secret3" not in repr(settings)
    assert [mask(u) for u in settings.alert_urls] == ["slack://…", "json://h.example"]
    assert mask("mailto://me:pa55@mail.example.com?to=a@b.c") == "mailto://mail.example.com"
    assert mask("jsons://user:pw@10.1.2.3:8443/hook?token=t") == "jsons://10.1.2.3"
    templated = Settings(alert_urls=("json://${HOOK_HOST}/x/${HOOK_TOKEN}",))
    assert resolve_urls(templated, {"HOOK_HOST": "hooks.example", "HOOK_TOKEN": "t0k"}) == \
        ["json://hooks.example/x/t0k"]
    with pytest.raises(ConfigError, match=r"\$\{HOOK_TOKEN\} is not set") as caught:
        resolve_urls(templated, {"HOOK_HOST": "hooks.example"})
    assert "t0k" not in str(caught.value)


def test_a_bad_alert_url_is_refused_without_showing_it(tmp_path: Path) -> None:
    cfg = tmp_path / "jobtui.toml"
    cfg.write_text('[alerts]\nurls = ["json://ok/x", "not-a-url-s3cr3t"]\n')
    with pytest.raises(ConfigError, match="alerts.urls: entry 2 is not an apprise URL") as caught:
        Settings.load(cfg, env={})
    assert "s3cr3t" not in str(caught.value)
    cfg.write_text('[alerts]\nburst = {count = 0, minutes = 5}\n')
    with pytest.raises(ConfigError, match="alerts.burst.count"):
        Settings.load(cfg, env={})
    cfg.write_text('[alerts]\nevents = ["health", "weather"]\n')
    with pytest.raises(ConfigError, match="unknown event 'weather'"):
        Settings.load(cfg, env={})
    cfg.write_text('[alerts]\nurls = ["json://a/b"]\ninterval = 60\nburst = {count = 3, minutes = 2}\n'
                   'check_every = 5\nenabled = false\n[thresholds]\nlong_wait = 30\n'
                   '[thresholds.queue_wait]\nhigh = 5\n')
    s = Settings.load(cfg, env={})
    assert (s.alert_interval, s.alert_burst_count, s.alert_burst_minutes, s.alert_check_every, s.alerts_enabled) \
        == (60.0, 3, 2.0, 5.0, False)
    assert (s.wait_threshold("high"), s.wait_threshold("default")) == (5.0, 30.0)


def test_an_undelivered_notice_is_recorded_and_tried_again(alerting: Any, receiver: Receiver) -> None:
    receiver.status = 500
    engine = alerting(alert_events=("health",))
    now = datetime.now(UTC)
    engine.store.apply_events([event(EventKind.STARTED, "stuck-1", now - timedelta(hours=3), attempt=1)])
    alerter = engine.alerter()
    sent = alerter.run_once(force=True).sent
    assert len(sent) == 1 and sent[0].delivered == () and sent[0].failed == ("json://127.0.0.1",)
    assert alerter.run_once(force=True).sent == ()  # tried again RETRY_AFTER later, not every round
    state = json.loads(engine.connection.hget(ALERTS_STATE, "health"))
    assert state["notified"] is False and state["attempt_at"] is not None


def test_notifier_reports_each_target(receiver: Receiver) -> None:
    notifier = Notifier([receiver.url, "json://127.0.0.1:1/closed", "nonsense://x"])
    delivery = notifier.send("t", "b", "warning")
    assert delivery.delivered == ("json://127.0.0.1",)
    assert sorted(delivery.failed) == ["json://127.0.0.1", "nonsense://…"] and not delivery.ok
    assert receiver.bodies[0]["type"] == "warning"


# ---- jobtui alerts ----------------------------------------------------------------------------

def cli(redis_url: str, database_url: str, *args: str, env: dict[str, str] | None = None,
        config: str = "") -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    full.update(PYTHONPATH=str(ROOT), **(env or {}))
    argv = [sys.executable, "-m", "jobtui.cli", "--redis-url", redis_url, "--database-url", database_url]
    if config:
        argv[3:3] = ["--config", config]
    result = subprocess.run([*argv, "alerts", *args], capture_output=True, text=True, env=full, cwd=ROOT,
                            timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_jobtui_alerts_test_delivers(redis_url: str, database_url: str, receiver: Receiver) -> None:
    secret = f"{receiver.url}?token=s3cret"
    done = cli(redis_url, database_url, "test", env={"JOBENGINE_ALERT_URLS": secret})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "sent to json://127.0.0.1\n" and "s3cret" not in done.stdout + done.stderr
    assert receiver.titles() == ["jobengine test notice"]

    done = cli(redis_url, database_url, "test", env={"JOBENGINE_ALERT_URLS": f"{secret},json://127.0.0.1:1/x"})
    assert done.returncode == 1 and "NOT delivered to json://127.0.0.1" in done.stderr

    done = cli(redis_url, database_url, "test")
    assert done.returncode == 2 and "no alert URL is configured" in done.stderr

    done = cli(redis_url, database_url, "test", env={"JOBENGINE_ALERT_URLS": "json://${HOOK_HOST}/s3cret"})
    assert done.returncode == 2 and "${HOOK_HOST} is not set in the environment" in done.stderr
    assert "s3cret" not in done.stderr

    done = cli(redis_url, database_url, "recent", "--json")
    data = json.loads(done.stdout)
    assert [r["status"] for r in data["recent"]] == ["test", "test"]
    assert data["recent"][0]["failed"] == ["json://127.0.0.1"] and "s3cret" not in done.stdout


def test_jobtui_alerts_run_once(redis_url: str, database_url: str, receiver: Receiver, tmp_path: Path) -> None:
    with make_engine(redis_url, database_url, None) as engine:
        fail_jobs(engine, 12)
    cfg = tmp_path / "jobtui.toml"
    cfg.write_text('[alerts]\nevents = ["failures"]\n')
    env = {"JOBENGINE_ALERT_URLS": receiver.url}
    done = cli(redis_url, database_url, "run-once", env=env, config=str(cfg))
    assert done.returncode == 0, done.stderr
    assert "firing    Burst of failures: 12 in 5 min  -> json://127.0.0.1" in done.stdout
    assert done.stdout.rstrip().endswith("1 notice(s) sent; 2 alert(s) active")
    done = cli(redis_url, database_url, "run-once", "--json", env=env, config=str(cfg))
    assert json.loads(done.stdout)["sent"] == []
    done = cli(redis_url, database_url, "recent", env=env, config=str(cfg))
    assert "Burst of failures" in done.stdout and "active now: burst:" in done.stdout
    assert len(receiver.bodies) == 1
