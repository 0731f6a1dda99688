"""The health bar: the engine's verdict, coloured, and its reasons."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from jobengine.models import HealthReport

VERDICT_STYLE = {
    "healthy": "bold $text-success",
    "warning": "bold $text-warning",
    "failing": "bold $text-error",
    "unknown": "bold $text-muted",
}


class HealthBar(Static):
    """Render only: `show(report)` with the snapshot's HealthReport (None before the first poll)."""

    DEFAULT_CSS = """
    HealthBar {
        height: auto;
        padding: 0 1;
        border-left: outer $foreground-muted;
        background: $boost;
        &.-healthy { border-left: outer $success; }
        &.-warning { border-left: outer $warning; }
        &.-failing { border-left: outer $error; }
    }
    """

    def show(self, report: HealthReport | None, *, stale: bool = False) -> None:
        """`stale` (the engine is unreachable): the verdict is unknown; the last one stays, dimmed."""
        if stale and report is not None:
            self._show_stale(report)
            return
        verdict = report.verdict if report else "unknown"
        for name in VERDICT_STYLE:
            self.set_class(name == verdict, f"-{name}")
        parts: list[tuple[str, str] | str] = [(f"● {verdict.upper()}", VERDICT_STYLE[verdict])]
        if report is None:
            parts.append(("  no data yet", "$text-muted"))
        elif report.reasons:
            parts.append("  ")
            for i, reason in enumerate(report.reasons):
                if i:
                    parts.append((" · ", "$text-muted"))
                parts.append(reason)
        else:
            parts.append(("  all checks pass", "$text-muted"))
        self.update(Content.assemble(*parts))

    def _show_stale(self, report: HealthReport) -> None:
        for name in VERDICT_STYLE:
            self.set_class(name == "unknown", f"-{name}")
        self.update(
            Content.assemble(
                ("● UNKNOWN", VERDICT_STYLE["unknown"]),
                (f"  cannot check now; last verdict {report.verdict}: ", "$text-muted"),
                (" · ".join(report.reasons) or "all checks passed", "$text-muted"),
            )
        )
