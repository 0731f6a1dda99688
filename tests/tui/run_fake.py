"""Run the console against the FakeEngine, for a look in a real terminal (tmux).

    /work/venv/bin/python tests/tui/run_fake.py [--read-only] [--light] [--outage]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jobtui import JobTUI  # noqa: E402
from tests.tui.doubles import NOW, FakeEngine  # noqa: E402


def main(argv: list[str]) -> None:
    engine = FakeEngine()
    engine.outage = "--outage" in argv
    app = JobTUI(engine, refresh=1.0, read_only="--read-only" in argv, clock=lambda: NOW)
    if "--light" in argv:
        app.theme = "textual-light"
    app.run()


if __name__ == "__main__":
    main(sys.argv[1:])
