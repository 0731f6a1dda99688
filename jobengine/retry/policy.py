"""The retry policy: the exception's class picks the strategy (most specific class in the MRO wins)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from jobengine.config import Settings
from jobengine.errors import ConfigError
from jobengine.retry.strategies import ExponentialBackoff, LinearBackoff, NoRetry, RetryDecision, RetryStrategy

Key = type[BaseException] | str


def import_exception(dotted: str) -> type[BaseException]:
    """'pkg.mod.Error' or 'pkg.mod:Error' -> the class; ConfigError if it is not an exception class."""
    module_name, _, attr = dotted.replace(":", ".").rpartition(".")
    try:
        target = getattr(importlib.import_module(module_name or "builtins"), attr)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"retry mapping: {dotted!r} does not import; expected 'package.module.ExceptionClass'") \
            from None
    if not (isinstance(target, type) and issubclass(target, BaseException)):
        raise ConfigError(f"retry mapping: {dotted!r} is not an exception class")
    return target


def dotted_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class RetryPolicy:
    """Maps exception classes to strategies; unmapped exceptions get `default`."""

    def __init__(self, mapping: Mapping[Key, RetryStrategy], default: RetryStrategy | None = None) -> None:
        self._mapping = dict(mapping)
        self.default = default or NoRetry()
        self._resolved: dict[type[BaseException], RetryStrategy] | None = None
        self._cache: dict[type, RetryStrategy] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        strategies: dict[str, RetryStrategy] = {
            "exponential": ExponentialBackoff(settings.exponential_base, settings.exponential_factor,
                                              settings.exponential_max_delay, settings.exponential_jitter,
                                              settings.exponential_max_attempts),
            "linear": LinearBackoff(settings.linear_step, settings.linear_max_attempts),
            "none": NoRetry(),
        }
        policy = cls({name: strategies[kind] for name, kind in settings.retry_map.items()})
        policy._classes()  # a bad exception name in the config fails at start, not at the first failure
        return policy

    def _classes(self) -> dict[type[BaseException], RetryStrategy]:
        if self._resolved is None:
            self._resolved = {(import_exception(k) if isinstance(k, str) else k): v
                              for k, v in self._mapping.items()}
        return self._resolved

    def strategy_for(self, exc: BaseException | type[BaseException]) -> RetryStrategy:
        cls = exc if isinstance(exc, type) else type(exc)
        if cls not in self._cache:
            classes = self._classes()
            self._cache[cls] = next((classes[k] for k in cls.__mro__ if k in classes), self.default)
        return self._cache[cls]

    def strategy_for_name(self, dotted: str) -> RetryStrategy:
        """The strategy for a stored failure's class name (imports it if it can)."""
        try:
            return self.strategy_for(import_exception(dotted if "." in dotted else f"builtins.{dotted}"))
        except ConfigError:
            names = {(k if isinstance(k, str) else dotted_name(k)): v for k, v in self._mapping.items()}
            return names.get(dotted, self.default)

    def decide(self, exc: BaseException, attempt: int) -> RetryDecision:
        return self.strategy_for(exc).decide(attempt)
