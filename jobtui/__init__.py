"""jobtui: a Textual console to watch and steer a `jobengine` over SSH, and the `jobtui` command line.

`JobTUI(engine)` takes anything implementing `jobengine.api.EngineAPI`. It is imported on first
use, so `jobtui worker` and other commands without the console load no Textual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobtui.app import JobTUI

__all__ = ["JobTUI"]


def __getattr__(name: str) -> Any:
    if name == "JobTUI":
        from jobtui.app import JobTUI

        return JobTUI
    raise AttributeError(f"module 'jobtui' has no attribute {name!r}")
