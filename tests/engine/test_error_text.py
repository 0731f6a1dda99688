"""Exception text of any content (lone surrogate, NUL, 5 MB) is stored safely and never kills a worker."""

from __future__ import annotations

import pytest

from jobengine import Engine
from jobengine.runtime.jobinfo import MAX_ERROR_MESSAGE, MAX_TRACEBACK, error_details, safe_text
from tests.engine import jobs
from tests.engine.helpers import rows, run_until_idle


def test_safe_text_escapes_and_truncates_with_a_marker() -> None:
    assert safe_text("plain", 10) == "plain"
    assert safe_text("a\x00b", 10) == "a\\x00b"
    assert safe_text("a\udc80b", 10) == "a\\udc80b"
    assert safe_text("é ok", 10) == "é ok"
    assert safe_text("x" * 25, 10) == "x" * 10 + "… [truncated 15 chars]"
    head_tail = safe_text("a" * 10 + "b" * 5_000_000 + "c" * 10, 20, keep_tail=True)
    assert head_tail == "a" * 10 + "\n… [truncated 5,000,000 chars]\n" + "c" * 10
    safe_text("\udc80" * 100, 100).encode("utf-8")  # always encodable


def test_error_details_of_a_broken_str_keep_the_failure() -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    details = error_details(Weird())
    assert details["error_message"] == "<Weird: str() failed>"
    assert details["error_class"].endswith("Weird")


@pytest.mark.parametrize("classic", [False, True], ids=["fast", "classic"])
def test_a_job_raising_any_text_fails_cleanly_and_the_worker_goes_on(fast_engine: Engine, database_url: str,
                                                                    classic: bool) -> None:
    bad = {kind: fast_engine.dispatch(jobs.raise_message, kind, priority="critical")
           for kind in ("surrogate", "nul", "huge")}
    good = fast_engine.dispatch(jobs.add, 2, 3, priority="critical")
    worker = fast_engine.worker(classic=classic)
    worker.work(burst=True, logging_level="ERROR")  # raises if the worker dies on a job's text
    run_until_idle(fast_engine)
    fast_engine.flush_history()
    got = {r[0]: r[1:] for r in rows(database_url, "SELECT job_id, error_message, traceback FROM failed_jobs")}
    assert set(got) == set(bad.values())
    assert got[bad["surrogate"]][0] == "bad \\udc80 surrogate"
    assert got[bad["nul"]][0] == "bad \\x00 nul"
    message, trace = got[bad["huge"]]
    assert message == "x" * MAX_ERROR_MESSAGE + f"… [truncated {5_000_000 - MAX_ERROR_MESSAGE:,} chars]"
    assert "… [truncated " in trace and len(trace) < MAX_TRACEBACK + 100
    assert rows(database_url, "SELECT status FROM jobs WHERE id=%s", good) == [("finished",)]
    assert fast_engine.job_detail(bad["surrogate"]).failure is not None  # RQ's own failure result stored too


def test_the_workers_log_line_of_such_a_failure_is_encodable(fast_engine: Engine,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    fast_engine.dispatch(jobs.raise_message, "surrogate", priority="critical")
    with caplog.at_level("ERROR", logger="rq.worker"):
        fast_engine.worker().work(burst=True, logging_level="ERROR")
    lines = [r.getMessage() for r in caplog.records if "exception raised while executing" in r.getMessage()]
    assert len(lines) == 1 and "bad \\udc80 surrogate" in lines[0]
    lines[0].encode("utf-8")  # a UTF-8 log file (or pytest-xdist's report channel) takes it
