"""Engine fixtures: an Engine on the test's own Redis db and PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from jobengine.config import Settings

if TYPE_CHECKING:
    from jobengine.engine import Engine

ZERO_DELAY_LANES = {"critical": ("critical", 0.0), "high": ("high", 0.0), "normal": ("default", 0.0),
                    "low": ("low", 0.0)}


@pytest.fixture
def settings(redis_url: str, database_url: str) -> Settings:
    return Settings.load(env={}, redis_url=redis_url, database_url=database_url)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    from jobengine.engine import Engine

    eng = Engine(settings)
    yield eng
    eng.close()


@pytest.fixture
def fast_engine(redis_url: str, database_url: str) -> Iterator[Engine]:
    """Lanes without dispatch delays and retries without backoff, for worker tests."""
    from jobengine.engine import Engine

    settings = Settings.load(env={}, redis_url=redis_url, database_url=database_url,
                             lanes=dict(ZERO_DELAY_LANES),
                             retry_params={"exponential": {"base": 0, "jitter": 0}, "linear": {"step": 0}})
    eng = Engine(settings)
    yield eng
    eng.close()
