"""jobtui: a Textual console to watch and steer a `jobengine` over SSH.

`JobTUI(engine)` takes anything implementing `jobengine.api.EngineAPI`.
"""

from __future__ import annotations

from jobtui.app import JobTUI

__all__ = ["JobTUI"]
