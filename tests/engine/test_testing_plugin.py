"""jobengine.testing, the fake users' tests dispatch into: capture, assertions, validation parity
with the real engine, eager runs through the retry policy, and the plugin as pytest loads it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from jobengine import Engine, JobSpec
from jobengine.config import Settings
from jobengine.errors import JobFunctionError, JobNotFound, SerializationError, TemporaryError, UnknownPriorityError
from jobengine.types import JobStatus, Priority
from tests.engine import jobs as tasks
from tests.engine.helpers import run_until_idle, scalar

if TYPE_CHECKING:
    from jobengine.testing import JobsFake

pytest_plugins = ["pytester", "jobengine.testing"]  # also an entry point once installed (same name)

ROOT = Path(__file__).resolve().parents[2]


def flaky_once(marker: str) -> str:
    """Raises TemporaryError on its first run (no `marker` file yet), then succeeds."""
    path = Path(marker)
    if not path.exists():
        path.write_text("ran")
        raise TemporaryError("partner API timed out")
    return "synced"


def append(items: list[int]) -> list[int]:
    items.append(99)
    return items


# ---- capture --------------------------------------------------------------------------------

def test_dispatches_are_captured_with_their_lane_and_arguments(jobs: JobsFake) -> None:
    first = jobs.engine.dispatch("tests.engine.jobs:add", 1, 2, priority="high")
    second = jobs.engine.dispatch(tasks.noop, type="ping", priority="normal")
    jobs.engine.dispatch_many([JobSpec(tasks.add, (3, 4), priority="critical"),
                               JobSpec(tasks.add, (5, 6), priority="low", delay=0)])

    job = jobs.assert_dispatched("tests.engine.jobs:add", lane="high", args=(1, 2))
    assert job.id == first and job.queue == "high" and job.delay == 5.0 and job.type == "add"
    assert job.status is JobStatus.SCHEDULED and job.attempts == 0 and job.result is None  # nothing ran
    jobs.assert_dispatched(tasks.noop, lane="normal", queue="default", type="ping", kwargs={})
    jobs.assert_dispatched("tests.engine.jobs.add", times=3)
    low = jobs.assert_dispatched(tasks.add, lane="low")
    assert low.delay == 0.0 and low.status is JobStatus.QUEUED  # a spec's delay overrides the lane's
    assert [j.func for j in jobs.dispatched] == ["tests.engine.jobs.add", "tests.engine.jobs.noop",
                                                 "tests.engine.jobs.add", "tests.engine.jobs.add"]
    assert jobs.get(second).priority is Priority.NORMAL and len(jobs) == 4
    assert jobs.engine.job_status(second) == "scheduled" and jobs.engine.job_status("nope") is None  # 30 s delay


def test_assertions_fail_with_what_was_dispatched(jobs: JobsFake) -> None:
    jobs.assert_nothing_dispatched()
    jobs.assert_not_dispatched(tasks.add)
    jobs.engine.dispatch(tasks.add, 1, 2, priority="normal")

    with pytest.raises(AssertionError, match=r"(?s)expected a dispatch of tests\.engine\.jobs\.add, lane='high' "
                                             r"at least once, matched 0; dispatched:\n  - tests\.engine\.jobs\.add"
                                             r"\(1, 2\) lane=normal queue=default"):
        jobs.assert_dispatched(tasks.add, lane="high")
    with pytest.raises(AssertionError, match="2 times, matched 1"):
        jobs.assert_dispatched(tasks.add, times=2)
    with pytest.raises(AssertionError, match=r"args=\(2, 1\)"):
        jobs.assert_dispatched(tasks.add, args=(2, 1))
    with pytest.raises(AssertionError, match="expected no dispatch, got 1"):
        jobs.assert_nothing_dispatched()
    with pytest.raises(AssertionError, match="expected no dispatch of tests.engine.jobs.add, got 1"):
        jobs.assert_not_dispatched("tests.engine.jobs:add", lane="normal")
    jobs.assert_not_dispatched(tasks.add, lane="low")
    assert jobs.assert_dispatched(tasks.add, where=lambda j: sum(j.args) == 3).args == (1, 2)
    with pytest.raises(JobNotFound):
        jobs.get("missing")


def test_arguments_are_copied_at_dispatch_as_pickle_does(jobs: JobsFake) -> None:
    items = [1]
    jobs.engine.dispatch(append, items)
    items.append(2)
    assert jobs.dispatched[0].args == ([1],)  # the worker would get what was dispatched


# ---- validation, the same as the real engine's -----------------------------------------------

BAD_DISPATCHES = [
    pytest.param(lambda d: d("tests.engine.jobs:add", 1, priority="urgent"), UnknownPriorityError, id="priority"),
    pytest.param(lambda d: d("tests.engine.nowhere:add"), JobFunctionError, id="module"),
    pytest.param(lambda d: d("tests.engine.jobs:missing"), JobFunctionError, id="function"),
    pytest.param(lambda d: d(lambda: None), JobFunctionError, id="lambda"),
    pytest.param(lambda d: d(tasks.add, threading.Lock()), SerializationError, id="unpicklable"),
]


@pytest.mark.parametrize(("call", "error"), BAD_DISPATCHES)
def test_invalid_dispatches_raise_what_the_engine_raises(engine: Engine, call, error) -> None:
    with pytest.raises(error) as real:
        call(engine.dispatch)
    from jobengine.testing import JobsFake

    fake = JobsFake(engine.settings)
    with pytest.raises(error) as faked:
        call(fake.engine.dispatch)
    assert str(faked.value) == str(real.value)
    assert fake.dispatched == []


def test_a_batch_with_one_bad_job_records_none(jobs: JobsFake) -> None:
    with pytest.raises(SerializationError):
        jobs.engine.dispatch_many([JobSpec(tasks.add, (1, 2)), JobSpec(tasks.add, (threading.Lock(), 1))])
    with pytest.raises(ValueError):  # RQ's job id check, as dispatch_many applies it
        jobs.engine.dispatch_many([JobSpec(tasks.noop, job_id="no spaces allowed")])
    jobs.assert_nothing_dispatched()


# ---- the seam: every Engine's dispatch methods ------------------------------------------------

def test_a_real_engine_dispatches_into_the_fake_and_writes_nothing(fast_engine: Engine, jobs: JobsFake,
                                                                   database_url: str) -> None:
    job_id = fast_engine.dispatch(tasks.add, 2, 3, type="sum", priority="high")
    ids = fast_engine.dispatch_many([JobSpec(tasks.noop, priority="low")])
    job = jobs.assert_dispatched(tasks.add, lane="high", args=(2, 3), type="sum")
    assert job.id == job_id and job.delay == 0.0 and job.status is JobStatus.QUEUED  # that engine's lanes
    jobs.assert_dispatched(tasks.noop, lane="low")
    assert jobs.get(ids[0]).queue == "low"
    conn = fast_engine.connection
    assert conn.dbsize() == 0  # no job hash, no queue, no event
    assert scalar(database_url, "SELECT count(*) FROM jobs") == 0
    with pytest.raises(UnknownPriorityError):
        fast_engine.dispatch(tasks.add, 1, 1, priority="urgent")


def test_the_patch_ends_with_the_test(fast_engine: Engine) -> None:
    job_id = fast_engine.dispatch(tasks.add, 2, 3)  # no fake here: the real engine writes
    assert fast_engine.connection.exists(f"rq:job:{job_id}")


# ---- eager runs -----------------------------------------------------------------------------

def test_eager_runs_finish_and_fail_as_the_policy_decides(eager_jobs: JobsFake) -> None:
    done = eager_jobs.get(eager_jobs.engine.dispatch(tasks.add, 2, 3))
    assert (done.status, done.attempts, done.result, done.failure) == (JobStatus.FINISHED, 1, 5, None)
    assert [e.kind for e in done.logs] == ["started", "finished"]

    broken = eager_jobs.get(eager_jobs.engine.dispatch(tasks.broken, 7, priority="high"))
    assert (broken.status, broken.attempts) == (JobStatus.FAILED, 1)  # not mapped: no retry
    assert broken.failure is not None and broken.failure.error_class == "ValueError"
    assert broken.failure.error_message == "bad value 7" and "raise ValueError" in broken.failure.traceback
    assert broken.logs[-1].message == "failed after 1 attempt: ValueError: bad value 7"
    assert isinstance(broken.exception, ValueError)

    busy = eager_jobs.get(eager_jobs.engine.dispatch(tasks.busy_resource))
    assert (busy.status, busy.attempts) == (JobStatus.FAILED, 5)  # linear, max_attempts 5
    assert [e.delay for e in busy.logs if e.kind == "retry"] == [30.0, 60.0, 90.0, 120.0]
    assert busy.logs[1].message == ("retry 2 in 30.0s (linear) after ResourceError: connection pool exhausted")

    flaky = eager_jobs.get(eager_jobs.engine.dispatch(tasks.flaky_temporary))
    delays = [e.delay for e in flaky.logs if e.kind == "retry"]
    assert flaky.attempts == 5 and len(delays) == 4
    assert all(0.9 * 2 ** n <= d <= 1.1 * 2 ** n for n, d in enumerate(delays, start=1))  # 2, 4, 8, 16 ± 10 %
    assert eager_jobs.failed == [broken, busy, flaky] and eager_jobs.finished == [done]

    detail = eager_jobs.engine.job_detail(flaky.id)
    assert detail is not None and detail.retry_strategy == "exponential"
    assert detail.record.status is JobStatus.FAILED and detail.record.attempts == 5
    assert detail.failure is not None and detail.failure.attempts == 5
    assert eager_jobs.engine.job_status(flaky.id) == "failed"


def test_eager_retries_until_the_job_succeeds(eager_jobs: JobsFake, tmp_path: Path) -> None:
    job = eager_jobs.get(eager_jobs.engine.dispatch(flaky_once, str(tmp_path / "ran")))
    assert (job.status, job.attempts, job.result) == (JobStatus.FINISHED, 2, "synced")
    assert [(e.kind, e.attempt) for e in job.logs] == [("started", 1), ("retry", 1), ("started", 2),
                                                       ("finished", 2)]
    assert job.failure is None and isinstance(job.exception, TemporaryError)


def test_eager_uses_the_configured_policy_and_copies_arguments() -> None:
    from jobengine.testing import JobsFake

    settings = Settings(retry_map={"ValueError": "linear"}, retry_params={"linear": {"step": 1.0, "max_attempts": 2}})
    fake = JobsFake(settings, eager=True)
    job = fake.get(fake.engine.dispatch(tasks.broken))
    assert job.attempts == 2 and [e.delay for e in job.logs if e.kind == "retry"] == [1.0]
    items = [1]
    ran = fake.get(fake.engine.dispatch(append, items))
    assert ran.result == [1, 99] and items == [1]  # the job got a copy


def test_captured_jobs_run_later_or_eagerly_when_switched_on(jobs: JobsFake) -> None:
    queued = jobs.engine.dispatch(tasks.add, 1, 1, priority="critical")
    assert jobs.get(queued).status is JobStatus.QUEUED
    jobs.eager = True
    now = jobs.get(jobs.engine.dispatch(tasks.add, 2, 2))
    assert now.status is JobStatus.FINISHED and now.result == 4
    assert jobs.run_pending() == 1 and jobs.get(queued).result == 2
    assert jobs.run_pending() == 0


def test_eager_history_matches_the_engines(fast_engine: Engine, tmp_path: Path) -> None:
    """The same jobs through real workers and PostgreSQL, and through the fake: the same history."""
    marker = tmp_path / "ran"
    calls = [(tasks.add, (1, 2), "normal"), (tasks.broken, (3,), "high"), (tasks.busy_resource, (), "low"),
             (flaky_once, (str(marker),), "critical")]
    real_ids = [fast_engine.dispatch(f, *a, priority=p) for f, a, p in calls]
    run_until_idle(fast_engine)
    fast_engine.flush_history()
    marker.unlink()  # flaky_once fails once again
    from jobengine.testing import JobsFake

    fake = JobsFake(fast_engine.settings, eager=True)
    fake_ids = [fake.engine.dispatch(f, *a, priority=p) for f, a, p in calls]

    def view(detail) -> tuple:
        def line(e) -> tuple:
            message = re.sub(r" started on \S+$", " started", e.message)
            return e.kind, e.level, e.attempt, e.delay, re.sub(r"finished in [\d.]+s", "finished", message)

        failure = detail.failure and (detail.failure.error_class, detail.failure.error_message,
                                      detail.failure.attempts, detail.failure.fingerprint)
        r = detail.record
        return (r.status, r.attempts, r.type, r.queue, r.priority, r.func, r.args, failure, detail.retry_strategy,
                [line(e) for e in detail.logs if e.kind not in ("queued", "scheduled")])

    for real_id, fake_id in zip(real_ids, fake_ids, strict=True):
        assert view(fake.engine.job_detail(fake_id)) == view(fast_engine.job_detail(real_id))


# ---- as pytest loads it -----------------------------------------------------------------------

USER_TESTS = """
from jobengine import Engine

def test_capture(jobs):
    jobs.engine.dispatch("tests.engine.jobs:add", 1, 2, priority="high")
    jobs.assert_dispatched("tests.engine.jobs:add", lane="high", args=(1, 2))

def test_eager(eager_jobs):
    job = eager_jobs.get(eager_jobs.engine.dispatch("tests.engine.jobs:busy_resource"))
    assert job.attempts == 5 and job.status == "failed"

def test_engine_is_patched(jobs):
    assert Engine.dispatch.__qualname__.endswith("_install.<locals>.dispatch")

def test_wrong_lane(jobs):
    jobs.engine.dispatch("tests.engine.jobs:add", 1, 2)
    jobs.assert_dispatched("tests.engine.jobs:add", lane="critical")
"""


def test_the_plugin_works_as_pytest_loads_it(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "jobengine.testing")  # inline runs upset textual-snapshot
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*expected a dispatch of tests.engine.jobs.add, lane='critical' at least once*",
                                 "*- tests.engine.jobs.add(1, 2) lane=normal queue=default*"])


def test_the_entry_point_makes_pytest_load_it(tmp_path: Path) -> None:
    """pyproject's pytest11 entry point, installed as a distribution would install it, loads the plugin
    in a pytest run that names no plugin."""
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    assert entry == {"jobengine.testing": "jobengine.testing"}
    site = tmp_path / "site"
    dist = site / "jobtui_entry_probe-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: jobtui-entry-probe\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[pytest11]\n" + "".join(f"{k} = {v}\n" for k, v in entry.items()))
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    env = {"PYTHONPATH": f"{site}:{ROOT}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "1 failed, 3 passed" in done.stdout, done.stdout + done.stderr


def test_the_readme_example_passes(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """README's "Testing code that dispatches jobs" example, each block written to the file its first
    line names, passes as a user's suite (the specification's ProcessJobTest and RetryTest)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Testing code that dispatches jobs\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n# (\S+)\n(.*?)```", section, re.S)
    assert [name for name, _ in blocks] == ["myapp/tasks.py", "myapp/actions.py", "tests/test_jobs.py"]
    (pytester.path / "myapp").mkdir()
    (pytester.path / "myapp" / "__init__.py").write_text("")
    (pytester.path / "tests").mkdir()
    for name, code in blocks:
        (pytester.path / name).write_text(code)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(pytester.path), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    result = pytester.runpytest_subprocess("-p", "jobengine.testing", "tests/test_jobs.py")
    result.assert_outcomes(passed=2)
