"""`python -m jobtui.screenshots`: the README's screenshot command, end to end on real servers."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import psutil
import redis
from rq import Worker

from jobtui.screenshots import SHOTS


def svg_text(path: Path) -> str:
    """The characters an SVG screenshot shows, spaces as spaces."""
    raw = re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8"))
    return html.unescape(raw).replace("\xa0", " ")


def run(out: Path, redis_url: str, database_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobtui.screenshots", "--out", str(out), "--redis-url", redis_url,
         "--database-url", database_url, *extra],
        capture_output=True, text=True, timeout=240,
    )


def test_it_shoots_every_screen_from_the_real_app_and_cleans_up(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    done = run(tmp_path, redis_url, database_url, "--jobs", "60", "--min-failures", "3")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{s.name}.svg" for s in SHOTS)
    dashboard = svg_text(tmp_path / "dashboard.svg")
    assert "FAILING" in dashboard and "stale" in dashboard and "busy" in dashboard
    assert "Retry 3 jobs?" in svg_text(tmp_path / "confirm-retry.svg")
    assert "1 job processing longer than the threshold" in svg_text(tmp_path / "stuck.svg")
    assert "groups" in svg_text(tmp_path / "failed-grouped.svg")
    assert "Traceback" in svg_text(tmp_path / "job-detail.svg")
    assert "Keys" in svg_text(tmp_path / "help.svg")
    alerts = svg_text(tmp_path / "alerts.svg")  # a real round's notices, and the refused test notice
    assert "firing" in alerts and "jobengine test notice" in alerts and "✗ failed" in alerts
    # nothing left running or registered: worker processes stopped, their keys gone
    conn = redis.Redis.from_url(redis_url)
    assert Worker.all(connection=conn) == []
    leftovers = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "jobtui.cli" in " ".join(proc.info["cmdline"] or []) and \
                    proc.environ().get("JOBENGINE_REDIS_URL") == redis_url:
                leftovers.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    assert leftovers == []


def test_it_refuses_servers_that_hold_data(tmp_path: Path, redis_url: str, database_url: str) -> None:
    redis.Redis.from_url(redis_url).set("somebody:else", "1")
    done = run(tmp_path, redis_url, database_url)
    assert done.returncode == 2
    assert "must be empty" in done.stderr
    assert list(tmp_path.iterdir()) == []
