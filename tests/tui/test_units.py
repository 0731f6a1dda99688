"""Pure parts of the console: formatting, keyset paging, the action registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from jobtui.actions import ACTIONS, APP, bindings_for, help_sections, key_table_markdown, visible_actions
from jobtui.format import absolute, count, counted, duration, ellipsize, rate_use, relative, sparkline
from jobtui.paging import FailedPages
from tests.tui.doubles import NOW, FakeEngine


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0"), (999, "999"), (1000, "1k"), (1234, "1.2k"), (12_400, "12.4k"), (124_000, "124k"),
     (999_960, "1M"), (3_400_000, "3.4M"), (-1500, "-1.5k"), (None, "—")],
)
def test_count_is_short(n: int | None, text: str) -> None:
    assert count(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250ms"), (1.5, "1.5s"), (2.0, "2s"), (45, "45s"), (200, "3m 20s"), (3600, "1h"),
     (8100, "2h 15m"), (90_000, "1d 1h"), (None, "—")],
)
def test_duration_is_compact(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("delta", "text"),
    [(2, "just now"), (12, "12 s ago"), (190, "3 min ago"), (7500, "2 h 5 min ago"), (7200, "2 h ago"),
     (50_000, "13 h ago"), (3 * 86400 + 5, "3 d ago"), (-300, "in 5 min")],
)
def test_relative_uses_the_given_clock(delta: float, text: str) -> None:
    assert relative(NOW - timedelta(seconds=delta), NOW) == text


def test_relative_compact_fits_a_table_cell() -> None:
    assert relative(NOW - timedelta(seconds=7500), NOW, compact=True) == "2h 5m ago"
    assert relative(NOW - timedelta(seconds=35_999), NOW, compact=True) == "9h 59m ago"
    assert max(len(relative(NOW - timedelta(seconds=s), NOW, compact=True)) for s in range(0, 200_000, 7)) <= 11


def test_absolute_follows_the_clock_timezone() -> None:
    when = datetime(2025, 3, 14, 14, 3, 12, tzinfo=UTC)
    assert absolute(when, UTC) == "2025-03-14 14:03:12 UTC"
    assert absolute(when, timezone(timedelta(hours=1), "CET")) == "2025-03-14 15:03:12 CET"


def test_sparkline_scales_between_min_and_max() -> None:
    assert sparkline([0, 0, 0], 3) == "▁▁▁"
    assert sparkline([5, 5], 2) == "▄▄"
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8], 8) == "▁▂▃▄▅▆▇█"
    assert len(sparkline(list(range(60)), 12)) == 12
    assert sparkline(list(range(60)), 12)[-1] == "█"


def test_small_helpers() -> None:
    assert rate_use(212, 600) == "212/600" and rate_use(0, None) == "—"
    assert ellipsize("abcdef", 4) == "abc…" and ellipsize("a  b", 9) == "a b"


def test_pages_refresh_keeps_older_pages_and_appends_by_keyset() -> None:
    rows = FakeEngine().failed_jobs(500)
    pages = FailedPages(50)
    pages.refresh_first(rows[:50], total=120)
    assert not pages.exhausted and pages.next_before() == (rows[49].failed_at, rows[49].id)
    pages.append(rows[50:100])
    assert len(pages.rows) == 100 and not pages.exhausted
    pages.refresh_first(rows[1:51], total=119)  # the newest failure was retried elsewhere
    assert [r.id for r in pages.rows] == [r.id for r in rows[1:100]]
    pages.append(rows[100:120])
    assert pages.exhausted and pages.next_before() is None
    pages.drop_jobs([rows[5].job_id])
    assert rows[5] not in pages.rows
    pages.refresh_first([], total=0)
    assert pages.rows == [] and pages.exhausted


def test_registry_feeds_bindings_with_ids_and_tooltips() -> None:
    ids = [spec.id for spec in ACTIONS]
    assert len(ids) == len(set(ids))
    assert all(spec.tooltip for spec in ACTIONS)
    app_bindings = bindings_for(APP)
    assert {b.key for b in app_bindings} >= {"q", "question_mark", "p", "j", "1", "2", "3", "4", "5", "tab"}
    assert all(b.id and b.tooltip for b in app_bindings)
    assert {b.key for b in bindings_for("failed")} == {"r", "R", "space", "g", "slash"}
    assert "slash" not in {b.key for b in bindings_for("job")}  # nothing to filter on the job screen


def test_read_only_and_pause_state_filter_help_and_palette() -> None:
    names = {s.name for s in visible_actions("failed", read_only=True, paused=True)}
    assert "retry" not in names and "retry_bulk" not in names and "resume" in names and "pause" not in names
    titles = [title for title, _ in help_sections("stuck", read_only=False, paused=False)]
    assert titles[0] == "Stuck jobs"
    all_keys = {s.key for _, specs in help_sections(None, read_only=True, paused=False) for s in specs}
    assert not {"r", "R", "c", "C"} & all_keys


def test_the_readme_key_table_is_the_action_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### Keys\n", 1)[1].split("\n### ", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    assert table == key_table_markdown()
    assert len(table.splitlines()) == len(ACTIONS) + 2


def test_counted_nouns_agree_with_their_number() -> None:
    assert [counted(n, "failure") for n in (0, 1, 2, 1234)] == ["0 failures", "1 failure", "2 failures",
                                                                 "1.2k failures"]
