"""pytest plugin for the RQ-suite run: exit as soon as the report is written. Some of RQ's tests
leave non-daemon threads or pool processes behind, which can keep the interpreter from exiting."""

from __future__ import annotations

import os
import sys

import pytest


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
