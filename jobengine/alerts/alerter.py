"""The alerter: read the deployment, decide what changed, send it through apprise.

    alerter = engine.alerter()
    alerter.run_once()          # under the deployment's alerts lock; None when another process has it
    AlertTimer(alerter).start() # `jobtui worker`: every [alerts] check_every seconds

One round (`run_once`): take `keys.ALERTS_LOCK` (non-blocking; the loser skips) and the
`ALERTS_DUE` gate (one round per `check_every` for the whole deployment), read (the health
check, a queue probe, the failure groups of the burst window, stuck jobs, the Redis epoch),
turn the reads into conditions (`checks.conditions`) and compare them with the state in Redis:

- a key that became active is sent unless a notice for it went out less than `[alerts] interval`
  ago (then it is sent when the interval has passed, if still active);
- a key that cleared after its notice went out gets a "resolved" notice;
- notices of one round and one event go out together (three stuck jobs: one notice);
- a delivery that failed everywhere is tried again `RETRY_AFTER` seconds later.

Every notice sent or tried is recorded (`state.record`) for `jobtui alerts recent` and the console.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import redis

from jobengine import keys
from jobengine.alerts.checks import Condition, Readings, conditions, event_of
from jobengine.alerts.notify import Delivery, Notifier
from jobengine.alerts.state import AlertRecord, KeyState, load_states, now_utc, recent, record, save_states
from jobengine.config import ALERT_EVENTS, Settings
from jobengine.errors import StoreUnavailable
from jobengine.health import ago
from jobengine.monitor import Monitor, deployment_queues

if TYPE_CHECKING:
    from jobengine.store.postgres import PostgresStore

log = logging.getLogger("jobengine.alerts")

RETRY_AFTER = 60.0  # seconds before a notice no target accepted is tried again
MAX_LISTED = 20  # conditions spelled out in one notice; the rest are counted


@dataclass(frozen=True)
class RoundReport:
    """What one round did."""

    active: tuple[str, ...]  # alert keys active after the round
    sent: tuple[AlertRecord, ...]  # notices sent (or tried) in it
    suppressed: tuple[str, ...] = ()  # keys active whose notice waits for the interval


class Alerter:
    """Evaluates the alert conditions and sends their notices (see the module docstring)."""

    def __init__(self, connection: redis.Redis, store: PostgresStore, settings: Settings, *,
                 monitor: Monitor | None = None, notifier: Notifier | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.connection = connection
        self.store = store
        self.settings = settings
        self.monitor = monitor or Monitor(settings, connection, store)
        self._notifier = notifier
        self._env = env

    @property
    def notifier(self) -> Notifier:
        """The apprise targets (built once; a `${VAR}` not set raises ConfigError)."""
        if self._notifier is None:
            self._notifier = Notifier.from_settings(self.settings, self._env)
        return self._notifier

    @property
    def configured(self) -> bool:
        return bool(self.settings.alert_urls)

    # ---- one round ----------------------------------------------------------------------
    def run_once(self, *, force: bool = False) -> RoundReport | None:
        """One round, unless another process holds the lock or (without `force`) the deployment
        already ran one in the last `check_every` seconds: then None."""
        lock = self.connection.lock(keys.ALERTS_LOCK, timeout=max(120.0, 4 * self.settings.alert_check_every),
                                    blocking=False)
        if not lock.acquire():
            log.debug("alerts skipped: another process is evaluating")
            return None
        try:
            due = self.connection.set(keys.ALERTS_DUE, "1", nx=not force,
                                      px=max(1, int(self.settings.alert_check_every * 1000)))
            if not due:
                return None
            return self.evaluate(self.read())
        finally:
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()

    def read(self, now: datetime | None = None) -> Readings:
        """The reads one round needs; a part that cannot be read is left out (its state kept)."""
        now = now or now_utc()
        wanted = set(self.settings.alert_events or ALERT_EVENTS)
        health = self.monitor.health(now)
        if not health.redis_ok:
            return Readings(now, health=None)
        read = {"health", "dead_letters"}
        probes = None
        if "long_wait" in wanted:
            probes = self.monitor.probe(deployment_queues(self.connection, self.settings), now.timestamp())
            read.add("long_wait")
        groups, stuck, reset = None, None, None
        if health.postgres_ok:
            try:
                if "failures" in wanted:
                    since = now - timedelta(minutes=self.settings.alert_burst_minutes)
                    groups = self.store.recent_failure_groups(since)
                    read.add("failures")
                if "stuck" in wanted:
                    stuck = self.store.stuck_jobs(self.settings.stuck_after) if health.stuck_jobs else []
                    read.add("stuck")
                if "redis_reset" in wanted:
                    reset = self.monitor.redis_reset()
                    read.add("redis_reset")
            except StoreUnavailable as exc:
                log.info("alerts: PostgreSQL reads skipped this round: %s", exc)
        return Readings(now, health=health, probes=probes, groups=groups, stuck=stuck, redis_reset=reset,
                        dead_letters=health.dead_letters, read=frozenset(read))

    def evaluate(self, readings: Readings) -> RoundReport:
        """Compare the conditions in `readings` with the state in Redis; send what changed."""
        now = readings.now.timestamp()
        interval = self.settings.alert_interval
        wanted = set(self.settings.alert_events or ALERT_EVENTS)
        active = {c.key: c for c in conditions(self.settings, readings)}
        states = load_states(self.connection)
        changed: dict[str, KeyState] = {}
        dropped: set[str] = set()
        fire: list[Condition] = []
        suppressed: list[str] = []
        for key, cond in active.items():
            st = states.get(key)
            if st is None or not st.active:
                st = KeyState(cond.event, cond.title, since=now, sent_at=st.sent_at if st else None,
                              resolves=cond.resolves)
            else:
                st = replace(st, title=cond.title, resolves=cond.resolves)
            changed[key] = st
            if st.notified:
                continue
            if st.sent_at is not None and now - st.sent_at < interval:
                suppressed.append(key)
            elif st.attempt_at is None or now - st.attempt_at >= RETRY_AFTER:
                fire.append(cond)
        resolve: list[str] = []
        for key, st in states.items():
            if key in active:
                continue
            if event_of(key) not in wanted:
                dropped.add(key)
            elif event_of(key) not in readings.read:
                continue
            elif st.active and st.notified and st.resolves:
                if st.attempt_at is None or now - st.attempt_at >= RETRY_AFTER:
                    resolve.append(key)
            elif st.active:
                changed[key] = replace(st, active=False, notified=False)
            elif st.sent_at is None or now - st.sent_at >= interval:
                dropped.add(key)
        sent = self._fire(fire, changed, now) + self._resolve(resolve, states, changed, readings, now)
        save_states(self.connection, changed, dropped - set(changed))
        still = sorted(k for k, s in {**states, **changed}.items() if s.active and k not in dropped)
        return RoundReport(tuple(still), tuple(sent), tuple(suppressed))

    # ---- sending ------------------------------------------------------------------------
    def _fire(self, fire: list[Condition], changed: dict[str, KeyState], now: float) -> list[AlertRecord]:
        covered = {k for c in fire for k in c.covers}
        out = []
        for event, group in _by_event([c for c in fire if c.key not in covered]):
            title = group[0].title if len(group) == 1 else f"{group[0].title} (and {len(group) - 1} more)"
            level = "failure" if any(c.level == "failure" for c in group) else "warning"
            rec = self._send("firing", event, title, _join([c.body for c in group]), level,
                             [c.key for c in group])
            out.append(rec)
            keys_told = [c.key for c in group] + [k for c in group for k in c.covers if k in changed]
            for key in keys_told:
                st = changed[key]
                changed[key] = replace(st, notified=True, sent_at=now, attempt_at=None) if rec.delivered \
                    else replace(st, attempt_at=now)
        return out

    def _resolve(self, resolve: list[str], states: dict[str, KeyState], changed: dict[str, KeyState],
                 readings: Readings, now: float) -> list[AlertRecord]:
        out = []
        for event, group in _by_event([states[k] for k in resolve], resolve):
            lines = [f"Resolved after {ago(now - st.since)}: {st.title}." for st, _ in group]
            if event == "health" and readings.health is not None:
                lines.append(f"Health is {readings.health.verdict} now: " + " ".join(readings.health.reasons))
            first = group[0][0].title
            title = f"Resolved: {first}" if len(group) == 1 else f"Resolved: {first} (and {len(group) - 1} more)"
            rec = self._send("resolved", event, title, _join(lines), "success", [k for _, k in group])
            out.append(rec)
            for st, key in group:
                changed[key] = replace(st, active=False, notified=False, attempt_at=None) if rec.delivered \
                    else replace(st, attempt_at=now)
        return out

    def _send(self, status: str, event: str, title: str, body: str, level: str,
              alert_keys: Sequence[str]) -> AlertRecord:
        delivery: Delivery = self.notifier.send(title, body, level)
        rec = AlertRecord(now_utc(), status, event, title, body, level, tuple(alert_keys),
                          delivery.delivered, delivery.failed)
        record(self.connection, rec)
        where = ", ".join(delivery.delivered) or "no target"
        log.log(logging.INFO if delivery.delivered else logging.WARNING, "alert %s %r sent to %s",
                status, title, where)
        return rec

    def send_test(self) -> AlertRecord:
        """One test notice to every target (recorded like the others)."""
        host = self.monitor.redis_where()
        return self._send("test", "test", "jobengine test notice",
                          f"A test notice from `jobtui alerts test` (Redis {host}): alerts reach this target.",
                          "info", ())

    # ---- reads --------------------------------------------------------------------------
    def recent(self, limit: int = 20) -> list[AlertRecord]:
        return recent(self.connection, limit)

    def active(self) -> dict[str, KeyState]:
        """The alert keys active now, as the last round left them."""
        return {k: s for k, s in load_states(self.connection).items() if s.active}


def _by_event(items: list, keys_of: list[str] | None = None) -> list[tuple[str, list]]:
    """Items grouped by event in first-seen order; with `keys_of`, items are (item, key) pairs."""
    groups: dict[str, list] = {}
    for i, item in enumerate(items):
        event = item.event
        groups.setdefault(event, []).append(item if keys_of is None else (item, keys_of[i]))
    return list(groups.items())


def _join(parts: list[str]) -> str:
    shown = parts[:MAX_LISTED]
    more = f"\n\n… and {len(parts) - MAX_LISTED} more" if len(parts) > MAX_LISTED else ""
    return "\n\n".join(shown) + more


class AlertTimer:
    """`jobtui worker`: a daemon thread running `Alerter.run_once` every `[alerts] check_every`
    seconds; the lock and the due gate make it one round per interval for the whole deployment."""

    def __init__(self, alerter: Alerter, every: float | None = None) -> None:
        self.alerter = alerter
        self.every = every or alerter.settings.alert_check_every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="alert-timer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:  # a round at start too: what is already wrong is told without waiting
            try:
                self.alerter.run_once()
            except Exception:  # Redis away, a plugin's bug: the next round tries again
                log.exception("alert round failed")
            if self._stop.wait(self.every):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
