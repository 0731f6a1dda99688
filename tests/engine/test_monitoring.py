"""The shipped Prometheus rules and Grafana dashboard: promtool accepts the rules, their unit tests
pass, and every series they read is one a real scrape of the deployment exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobengine import Engine, JobSpec
from jobengine.config import Settings
from jobengine.monitoring import GRAFANA_PATH, RULES_PATH, grafana_json, rules_text
from tests.engine import jobs
from tests.engine.conftest import ZERO_DELAY_LANES
from tests.engine.helpers import run_until_idle

RULES_TESTS = Path(__file__).with_name("rules_test.yml")

# ---- reading the files ------------------------------------------------------------------------

_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset",
             "bool", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords, labels, durations left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w:$.])([A-Za-z_:][\w:]*)\s*(\()?", text):
        name, call = match.groups()
        if not call and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def rule_exprs(text: str) -> dict[str, str]:
    """alert name -> expression, from rules.yml's layout (`expr: ...` or an indented `expr: |` block)."""
    exprs: dict[str, str] = {}
    lines = text.splitlines()
    alert = None
    for i, line in enumerate(lines):
        if m := re.match(r"\s*- alert: (\S+)$", line):
            alert = f"{m.group(1)}#{len(exprs)}"
        elif (m := re.match(r"(\s*)expr: (.*)$", line)) and alert:
            indent, value = len(m.group(1)), m.group(2)
            if value == "|":
                block = []
                for follow in lines[i + 1:]:
                    if follow.strip() and len(follow) - len(follow.lstrip()) <= indent:
                        break
                    block.append(follow.strip())
                value = " ".join(block).strip()
            exprs[alert] = value
            alert = None
    return exprs


def dashboard_exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def dashboard_variable_metrics(dashboard: dict) -> set[str]:
    """Metrics named by `label_values(metric, label)` variable queries."""
    names = set()
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        query = query.get("query", "") if isinstance(query, dict) else str(query)
        if m := re.match(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?\s*,", query):
            names.add(m.group(1))
    return names


def test_metric_names_reads_only_series() -> None:
    expr = ('sum by (queue, le) (rate(jobs_duration_seconds_bucket{type=~"$type", le!="x"}[$__rate_interval]))'
            ' / on (queue) group_left() max(workers offset 5m) unless absent(history_backlog) > 0.5 * 60')
    assert metric_names(expr) == {"jobs_duration_seconds_bucket", "workers", "history_backlog"}
    assert metric_names("histogram_quantile(0.95, sum(rate(a_bucket[5m])) by (le)) > bool 1e3") == {"a_bucket"}


def test_every_rule_is_read() -> None:
    text = RULES_PATH.read_text(encoding="utf-8")
    exprs = rule_exprs(text)
    assert len(exprs) == text.count("- alert: ") == 12
    assert all(metric_names(e) for e in exprs.values())  # each rule reads at least one series
    blocks = [e for e in exprs.values() if "unless on (queue)" in e]
    assert len(blocks) == 2 and all(e.endswith("> 0") for e in blocks)  # `expr: |` blocks read whole


# ---- promtool ---------------------------------------------------------------------------------

def promtool() -> str:
    """promtool's path; without it the test skips, or fails when JOBTUI_REQUIRE_PROMTOOL=1 (CI)."""
    path = shutil.which("promtool")
    if path:
        return path
    if os.environ.get("JOBTUI_REQUIRE_PROMTOOL") == "1":
        pytest.fail("promtool is not installed but JOBTUI_REQUIRE_PROMTOOL=1 (Debian: apt-get install prometheus)")
    pytest.skip("promtool is not installed (Debian: apt-get install prometheus; JOBTUI_REQUIRE_PROMTOOL=1 fails)")


def test_promtool_missing_fails_when_required(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("JOBTUI_REQUIRE_PROMTOOL", "1")
    with pytest.raises(pytest.fail.Exception, match="JOBTUI_REQUIRE_PROMTOOL=1"):
        promtool()
    monkeypatch.delenv("JOBTUI_REQUIRE_PROMTOOL")
    with pytest.raises(pytest.skip.Exception):
        promtool()


def _promtool(*args: str) -> str:
    done = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_shipped_rules_pass_promtool_check() -> None:
    out = _promtool("check", "rules", str(RULES_PATH))
    assert f"SUCCESS: {len(rule_exprs(RULES_PATH.read_text()))} rules found" in out


def test_rules_fire_as_their_unit_tests_expect() -> None:
    """tests/engine/rules_test.yml: each alert fires on the series that should raise it, and not before."""
    assert "SUCCESS" in _promtool("test", "rules", str(RULES_TESTS))


def test_configured_rules_pass_promtool_check(tmp_path: Path) -> None:
    settings = Settings(failed_per_hour=7, stuck_after=600.0, long_running=12.5, history_batch=100,
                        queue_size={"default": 1000, "mail.out:eu-1": 5}, queues_extra=["mail.out:eu-1"],
                        queue_wait={"high": 30, "mail.out:eu-1": 900}, long_wait=120.0)
    path = tmp_path / "rules.yml"
    path.write_text(rules_text(settings), encoding="utf-8")
    assert "SUCCESS: 16 rules found" in _promtool("check", "rules", str(path))


# ---- the rules' thresholds ------------------------------------------------------------------

def test_rules_text_is_the_shipped_file_and_defaults_change_nothing() -> None:
    shipped = RULES_PATH.read_text(encoding="utf-8")
    assert rules_text() == shipped
    rendered = rules_text(Settings())  # the file holds the configuration defaults: only its header changes
    assert rendered != shipped
    assert rendered.replace("this configuration's values:",
                            "the configuration defaults (README, Configuration):") == shipped


def test_rules_text_uses_the_configured_thresholds() -> None:
    settings = Settings(failed_per_hour=7, stuck_after=600.0, long_running=12.5, history_batch=100,
                        queue_size={"default": 1000}, long_wait=45.0, queue_wait={"high": 10})
    exprs = rule_exprs(rules_text(settings))
    by_name = {k.split("#")[0]: v for k, v in exprs.items()}
    waits = sorted(v for k, v in exprs.items() if k.startswith("QueueWaitLong#"))
    assert waits == ['queue_oldest_wait_seconds{queue!="high"} > 45', 'queue_oldest_wait_seconds{queue="high"} > 10']
    assert by_name["JobStuck"] == "jobs_stuck > 0"
    assert by_name["JobFailuresHigh"].endswith("[1h])) > 7")
    assert by_name["JobFailuresHighByType"].endswith("[1h])) > 7")
    assert by_name["JobsSlow"].endswith(" > 12.5")
    assert by_name["HistoryBacklogHigh"] == "history_backlog > 1000"
    assert by_name["QueueSizeHigh"] == 'queue_size{queue="default"} > 1000'
    text = rules_text(settings)
    assert "for: 600s" in text and "7200" not in text and "> 50" not in text and "5000" not in text
    assert "> 300" not in text and "more than 45 s" in text


# ---- the names against a real scrape --------------------------------------------------------

@pytest.fixture
def scraped_engine(redis_url: str, database_url: str) -> Iterator[Engine]:
    """An engine whose jobs finished, failed, were retried and ran on a rate-limited queue."""
    settings = Settings.load(env={}, redis_url=redis_url, database_url=database_url, lanes=dict(ZERO_DELAY_LANES),
                             retry_params={"exponential": {"base": 0, "jitter": 0}}, limits={"default": 6000})
    engine = Engine(settings)
    specs = [JobSpec(jobs.add, (i, 1), type="sum") for i in range(3)]
    specs += [JobSpec(jobs.broken, type="sum"), JobSpec(jobs.flaky_temporary, type="call", priority="high")]
    engine.dispatch_many(specs)
    run_until_idle(engine)
    yield engine
    engine.close()


def exported_names(exposition: str) -> set[str]:
    """Every series name a scrape holds, and those its families would hold once they have samples."""
    names = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def test_rules_and_dashboard_read_only_exported_series(scraped_engine: Engine) -> None:
    scrape = scraped_engine.metrics_text()
    exported = exported_names(scrape)
    samples = {s.name for f in text_string_to_metric_families(scrape) for s in f.samples}
    assert {"jobs_processed_total", "jobs_failed_total", "jobs_duration_seconds_bucket", "queue_size",
            "queue_rate_limit", "workers", "history_backlog"} <= samples  # the scrape is a real one

    assert {"queue_oldest_wait_seconds", "jobs_stuck"} <= samples
    in_rules = set().union(*map(metric_names, rule_exprs(rules_text(Settings(queue_size={"low": 1}))).values()))
    dashboard = json.loads(grafana_json())
    in_dashboard = set().union(*map(metric_names, dashboard_exprs(dashboard))) | dashboard_variable_metrics(dashboard)
    assert len(in_rules) >= 7 and len(in_dashboard) >= 12  # the readers found the references
    assert in_rules - exported == set(), f"rules.yml reads series nobody exports: {sorted(in_rules - exported)}"
    assert in_dashboard - exported == set(), \
        f"grafana.json reads series nobody exports: {sorted(in_dashboard - exported)}"


def test_names_missing_from_a_scrape_are_caught(scraped_engine: Engine) -> None:
    exported = exported_names(scraped_engine.metrics_text())
    assert metric_names("queue_oldest_wait_second > 300 and jobs_stuck_total > 0") - exported == {
        "queue_oldest_wait_second", "jobs_stuck_total"}


def _samples(text: str, name: str) -> dict[str, float]:
    """queue label (or "") -> value of one exported gauge."""
    return {s.labels.get("queue", ""): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == name}


def test_stuck_jobs_and_oldest_waits_are_exported_from_redis(redis_url: str, database_url: str) -> None:
    """A job running longer than stuck_after counts in jobs_stuck while it runs (RQ's started registry
    and the job hash's started_at); a queue nobody takes shows its oldest wait."""
    import signal
    import sys
    import time

    settings = Settings.load(env={}, redis_url=redis_url, database_url=database_url, lanes=dict(ZERO_DELAY_LANES),
                             stuck_after=0.5)
    root = Path(__file__).resolve().parents[2]
    with Engine(settings) as engine:
        engine.dispatch_many([JobSpec(jobs.sleepy, (3.0,)), JobSpec(jobs.noop, priority="low")])
        before = engine.metrics_text()
        assert _samples(before, "jobs_stuck") == {"": 0.0}
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
        env["PYTHONPATH"] = str(root)
        worker = subprocess.Popen([sys.executable, "-m", "jobtui.cli", "--redis-url", redis_url, "--database-url",
                                   database_url, "worker", "--queues", "default"], env=env, cwd=root,
                                  stderr=subprocess.DEVNULL)
        try:
            deadline, stuck = time.monotonic() + 30, 0.0
            while stuck < 1:
                assert time.monotonic() < deadline and worker.poll() is None
                time.sleep(0.1)
                during = engine.metrics_text()
                stuck = _samples(during, "jobs_stuck")[""]
            waits = _samples(during, "queue_oldest_wait_seconds")
            assert waits["default"] == 0.0 and waits["low"] > 0.5  # nobody takes low
            while _samples(engine.metrics_text(), "queue_running")["default"]:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert _samples(engine.metrics_text(), "jobs_stuck") == {"": 0.0}  # it ended
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)


# ---- the dashboard --------------------------------------------------------------------------

def test_dashboard_is_a_grafana_model_on_a_datasource_variable() -> None:
    dashboard = json.loads(GRAFANA_PATH.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        own = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not own & cells, f"panel {panel['title']!r} overlaps another"
        cells |= own
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("queue size", "finished per minute", "failures", "run time", "workers", "history backlog"):
        assert topic in titles
