"""Prometheus alert rules and a Grafana dashboard over the series `jobtui metrics` exports.

    from jobengine.monitoring import rules_text, grafana_json
    print(rules_text())                 # rules.yml with the default thresholds
    print(rules_text(Settings.load()))  # ... with the configured ones (and queue size rules)
    print(grafana_json())               # the dashboard, for Grafana's "Import dashboard"

Both files ship in the package (`RULES_PATH`, `GRAFANA_PATH`); `rules.yml` holds the
configuration defaults and passes `promtool check rules` as it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobengine.config import Settings

HERE = Path(__file__).resolve().parent
RULES_PATH = HERE / "rules.yml"
GRAFANA_PATH = HERE / "grafana.json"

#: batches of history events that may wait in Redis before HistoryBacklogHigh fires
BACKLOG_BATCHES = 10


def _seconds(value: float) -> str:
    return f"{max(1, round(value))}"


def _number(value: float) -> str:
    return f"{value:g}"


def _substitutions(settings: Settings) -> list[tuple[str, str, int]]:
    """(text in rules.yml with the default value, the same text with the configured one, count)."""
    failed = str(settings.failed_per_hour)
    stuck = _seconds(settings.stuck_after)
    slow = _number(settings.long_running)
    backlog = str(BACKLOG_BATCHES * settings.history_batch)
    wait = _seconds(settings.long_wait)
    return [
        ("thresholds are the configuration defaults (README, Configuration):",
         "thresholds are this configuration's values:", 1),
        ("thresholds.failed_per_hour = 50,", f"thresholds.failed_per_hour = {failed},", 1),
        ('{status="failed"}[1h])) > 50', f'{{status="failed"}}[1h])) > {failed}', 2),
        ("More than 50 jobs failed", f"More than {failed} jobs failed", 1),
        ("thresholds.stuck_after = 7200 s,", f"thresholds.stuck_after = {stuck} s,", 1),
        ("for: 7200s", f"for: {stuck}s", 1),
        ("none has ended for 7200 s", f"none has ended for {stuck} s", 1),
        ("thresholds.long_running = 60 s,", f"thresholds.long_running = {slow} s,", 1),
        ("[15m]))) > 60", f"[15m]))) > {slow}", 1),
        ("take longer than 60 s", f"take longer than {slow} s", 1),
        ("worker.history_batch = 500", f"worker.history_batch = {settings.history_batch}", 1),
        ("history_backlog > 5000", f"history_backlog > {backlog}", 2),
        ("More than 5000 job events", f"More than {backlog} job events", 1),
        ("over 5000 and growing", f"over {backlog} and growing", 1),
        ("thresholds.long_wait = 300 s", f"thresholds.long_wait = {wait} s", 1),
        ("queue_oldest_wait_seconds > 300", f"queue_oldest_wait_seconds{_not_queues(settings)} > {wait}", 1),
        ("has waited more than 300 s", f"has waited more than {wait} s", 1),
    ]


def _not_queues(settings: Settings) -> str:
    """The label matchers leaving out the queues with their own `thresholds.queue_wait`."""
    if not settings.queue_wait:
        return ""
    return "{" + ",".join(f"queue!={json.dumps(q)}" for q in sorted(settings.queue_wait)) + "}"


def _queue_wait_rule(queue: str, threshold: int) -> str:
    label = json.dumps(queue)
    summary = json.dumps(f"The oldest job on queue {queue} has waited more than {threshold} s")
    description = json.dumps(f"The oldest waiting job on {queue} has waited {{{{ $value | humanizeDuration }}}} "
                             f"(thresholds.queue_wait.{queue} = {threshold} s).")
    return (f"\n      - alert: QueueWaitLong\n"
            f"        expr: queue_oldest_wait_seconds{{queue={label}}} > {threshold}\n"
            f"        for: 1m\n"
            f"        labels:\n"
            f"          severity: warning\n"
            f"          queue: {label}\n"
            f"        annotations:\n"
            f"          summary: {summary}\n"
            f"          description: {description}\n")


def _queue_size_rule(queue: str, threshold: int) -> str:
    label = json.dumps(queue)  # a PromQL string literal is a JSON string for any queue name
    summary = json.dumps(f"Queue {queue} holds more than {threshold} jobs")
    description = json.dumps(f"{{{{ $value }}}} jobs wait on {queue}, over thresholds.queue_size.{queue} "
                             f"= {threshold} (the same warning as `jobtui health`).")
    return (f"\n      - alert: QueueSizeHigh\n"
            f"        expr: queue_size{{queue={label}}} > {threshold}\n"
            f"        for: 5m\n"
            f"        labels:\n"
            f"          severity: warning\n"
            f"          queue: {label}\n"  # one rule per queue: distinct labels (promtool lints duplicates)
            f"        annotations:\n"
            f"          summary: {summary}\n"
            f"          description: {description}\n")


def rules_text(settings: Settings | None = None) -> str:
    """rules.yml; with `settings`, its thresholds replace the defaults and every
    `thresholds.queue_size.QUEUE` adds a QueueSizeHigh rule for that queue, every
    `thresholds.queue_wait.QUEUE` a QueueWaitLong rule (the general one leaves that queue out)."""
    text = RULES_PATH.read_text(encoding="utf-8")
    if settings is None:
        return text
    for old, new, count in _substitutions(settings):
        found = text.count(old)
        if found != count:  # rules.yml was edited without this table: fail loudly, never half-apply
            raise RuntimeError(f"rules.yml: expected {count} occurrence(s) of {old!r}, found {found}")
        text = text.replace(old, new)
    for queue, threshold in sorted(settings.queue_size.items()):
        text = text.rstrip("\n") + "\n" + _queue_size_rule(queue, threshold)
    for queue, threshold in sorted(settings.queue_wait.items()):
        text = text.rstrip("\n") + "\n" + _queue_wait_rule(queue, threshold)
    return text


def grafana_json() -> str:
    """The Grafana dashboard (JSON model with a `datasource` variable: import it as it is)."""
    return GRAFANA_PATH.read_text(encoding="utf-8")
