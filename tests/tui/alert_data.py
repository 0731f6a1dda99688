"""The FakeEngine's default alert notices (`FakeEngine.alerts`), on the doubles' fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobengine.alerts.state import AlertRecord

NOW = datetime(2025, 3, 14, 14, 3, 12, tzinfo=UTC)
"""The doubles' fixed clock (tests.tui.doubles takes it from here)."""

SLACK = "slack://…"
HOOK = "json://alerts.example.com"
ALERTS: tuple[AlertRecord, ...] = (
    AlertRecord(NOW - timedelta(seconds=40), "firing", "failures", "Burst of failures: 14 in 5 min",
                "Failure group 3f9c2a7e1b04 failed 14 times in the last 5 min (burst threshold 10): "
                "jobengine.errors.TemporaryError: upstream timed out after 30s. See the console's failure groups "
                "or `jobtui failed`.", "warning", ("burst:3f9c2a7e1b04",), (HOOK,), (SLACK,)),
    AlertRecord(NOW - timedelta(minutes=3, seconds=5), "firing", "health", "jobengine health is failing",
                "- PostgreSQL unreachable: connection refused\n- 2 jobs processing longer than 1h",
                "failure", ("health",), (HOOK, SLACK)),
    AlertRecord(NOW - timedelta(minutes=18), "resolved", "stuck", "Resolved: Job stuck: 6f1e0c2a",
                "Resolved after 1 h 12 min: Job stuck: 6f1e0c2a.", "success", ("stuck:6f1e0c2a",), (HOOK, SLACK)),
    AlertRecord(NOW - timedelta(minutes=52), "firing", "long_wait", "Long wait on queue low",
                "The oldest of 12,400 job(s) on queue low has waited 1 h 30 min, longer than 5 min "
                "(thresholds.long_wait / thresholds.queue_wait.low).", "warning", ("long_wait:low",), (),
                (HOOK, SLACK)),
    AlertRecord(NOW - timedelta(hours=1, minutes=30), "firing", "stuck", "Job stuck: 6f1e0c2a",
                "Job 6f1e0c2a (reports.export_ledger, queue low on w-batch-1, started 1 h ago) has been "
                "processing for more than 1 h (thresholds.stuck_after).", "failure", ("stuck:6f1e0c2a",),
                (HOOK, SLACK)),
    AlertRecord(NOW - timedelta(days=1, hours=2), "test", "test", "jobengine test notice",
                "A test notice from `jobtui alerts test` (Redis 127.0.0.1:6379): alerts reach this target.",
                "info", (), (HOOK, SLACK)),
)
"""The default notices, newest first: three alerts firing (burst, health, long wait), one resolved."""
