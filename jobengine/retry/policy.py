"""The retry policy: the exception's class picks the strategy (the most specific mapped class in its MRO).

Mapping keys are exception classes or dotted names ("pkg.mod.Error", "pkg.mod:Error"). Names are
imported lazily, on the first lookup, so a process that cannot import the application's modules
(the console) can still build the policy and match stored failures by name.

Strategies are built from `[retry.<name>]` tables as `cls(**params)`: the class is the table's
`class` key or else `<name>`, either a name in `STRATEGIES`, a dotted path or a class (resolved
the way RQ resolves serializers).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jobengine.errors import ConfigError
from jobengine.retry.strategies import STRATEGIES, NoRetry, RetryDecision, RetryStrategy

if TYPE_CHECKING:
    from jobengine.config import Settings

Key = type[BaseException] | str
StrategyRef = RetryStrategy | str

_EXPECTED = "expected 'package.module.ExceptionClass'"
_NAME_CACHE_SIZE = 1024


def dotted_name(cls: type) -> str:
    """'module.QualName', without the 'builtins.' prefix (as failure records store it)."""
    return f"{cls.__module__}.{cls.__qualname__}".removeprefix("builtins.")


def _normalise(name: str) -> str:
    return name.strip().replace(":", ".").removeprefix("builtins.")


def _check_syntax(name: str) -> str:
    """A configured name must at least look like 'package.module.Class' (checked without importing)."""
    module, sep, rest = name.partition(":")
    parts = module.split(".") + (rest.split(".") if sep else [])
    if not (all(p.isidentifier() for p in parts) and (len(parts) > 1 or not sep)):
        raise ConfigError(f"retry mapping: {name!r} is not a dotted class name; {_EXPECTED}")
    return name


def _candidates(dotted: str) -> list[tuple[str, str]]:
    """(module, qualname) splits to try, longest module first; a bare name is a builtin."""
    if ":" in dotted:
        module, _, qualname = dotted.partition(":")
        return [(module, qualname)]
    parts = dotted.split(".")
    if len(parts) == 1:
        return [("builtins", dotted)]
    return [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)]


def _missing(exc: ModuleNotFoundError, module: str) -> bool:
    """True when `exc` says `module` itself (or a parent package) does not exist."""
    return exc.name is not None and (module == exc.name or module.startswith(exc.name + "."))


def _import(dotted: str) -> tuple[object, str]:
    """(the object, "") for 'pkg.mod.Name', 'pkg.mod:Name' or a builtin's name, else (None, why not)."""
    reason = "no such module or attribute"
    for module_name, qualname in _candidates(dotted.strip()):
        try:
            target: object = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if _missing(exc, module_name):
                continue
            return None, str(exc)
        except Exception as exc:  # the module exists but raises on import
            return None, f"{type(exc).__name__}: {exc}".splitlines()[0]
        try:
            for attr in qualname.split("."):
                target = getattr(target, attr)
        except AttributeError:
            return None, f"module {module_name!r} has no attribute {qualname!r}"
        return target, ""
    return None, reason


def import_exception(dotted: str) -> type[BaseException]:
    """'pkg.mod.Error', 'pkg.mod:Error', 'pkg.mod.Outer.Error' or 'KeyError' -> the class.

    Raises ConfigError (one line, naming `dotted`) if it does not import or is not an exception class.
    """
    target, reason = _import(dotted)
    if target is None:
        raise ConfigError(f"retry mapping: {dotted!r} does not import ({reason}); {_EXPECTED}")
    if not (isinstance(target, type) and issubclass(target, BaseException)):
        raise ConfigError(f"retry mapping: {dotted!r} is not an exception class; {_EXPECTED}")
    return target


# ---- the strategy registry -----------------------------------------------------------------
def looks_dotted(name: str) -> bool:
    return ("." in name or ":" in name) and all(p.isidentifier() for p in name.replace(":", ".").split("."))


def strategy_class(ref: str | type, where: str = "retry") -> type:
    """A registered name ('exponential'), a dotted path ('myapp.retry.Backoff', 'myapp.retry:Backoff')
    or a class -> the strategy class. Raises a one-line ConfigError naming `where`."""
    if isinstance(ref, type):
        return ref
    if not isinstance(ref, str):
        raise ConfigError(f"{where}: class must be a strategy name or a dotted class path, got {ref!r}")
    if ref in STRATEGIES:
        return STRATEGIES[ref]
    known = ", ".join(sorted(STRATEGIES))
    if not looks_dotted(ref):
        raise ConfigError(f"{where}: unknown strategy {ref!r}; expected one of {known} or 'package.module.Class'")
    target, reason = _import(ref)
    if target is None:
        raise ConfigError(f"{where}: strategy class {ref!r} does not import ({reason})")
    if not isinstance(target, type):
        raise ConfigError(f"{where}: {ref!r} is not a class")
    return target


def _config_keys(cls: type) -> tuple[list[str], list[str]] | None:
    """(accepted keys, required keys) of `cls(**params)`, or None if it takes any keyword."""
    if dataclasses.is_dataclass(cls):
        init = [f for f in dataclasses.fields(cls) if f.init and f.metadata.get("config", True)]
        required = [f.name for f in init
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        return [f.name for f in init], required
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return [p.name for p in named], [p.name for p in named if p.default is p.empty]


def build_strategy(name: str, params: Mapping[str, Any] | None = None) -> RetryStrategy:
    """The strategy of table `[retry.<name>]`: `cls(**params)`, the class being `params["class"]`
    if given, else `name`. Bad keys or values raise one ConfigError line naming the table and key."""
    where = f"[retry.{name}]"
    if params is not None and not isinstance(params, Mapping):
        raise ConfigError(f"{where}: expected a table of parameters, got {params!r}")
    kwargs = dict(params or {})
    cls = strategy_class(kwargs.pop("class", name), where)
    keys = _config_keys(cls)
    if keys is not None:
        accepted, required = keys
        expected = f"expected one of {', '.join(accepted)}" if accepted else "it takes no parameters"
        for key in kwargs:
            if key not in accepted:
                raise ConfigError(f"{where} unknown key {key!r}; {expected}")
        for key in required:
            if key not in kwargs:
                raise ConfigError(f"{where} missing key {key!r}; {expected}")
    try:
        strategy = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where} {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not isinstance(strategy, RetryStrategy):
        raise ConfigError(f"{where}: {cls.__qualname__} is not a strategy (needs `name` and `decide(attempt)`)")
    return strategy


def build_strategies(tables: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, RetryStrategy]:
    """Every registered strategy (its table's parameters, else its defaults) and every other table."""
    tables = tables or {}
    built = {name: build_strategy(name, tables.get(name)) for name in STRATEGIES}
    built.update({name: build_strategy(name, params) for name, params in tables.items() if name not in STRATEGIES})
    return built


class RetryPolicy:
    """Maps exception classes to strategies; an exception with no mapped class in its MRO gets `default`.

    `mapping` values and `default` are strategy objects, names looked up in `strategies`
    (default: every registered strategy with its default parameters), or dotted class paths.
    """

    def __init__(self, mapping: Mapping[Key, StrategyRef] | None = None, default: StrategyRef = "none", *,
                 strategies: Mapping[str, RetryStrategy] | None = None) -> None:
        self._named = dict(build_strategies() if strategies is None else strategies)
        self._named.setdefault("none", NoRetry())
        self.default = self._strategy(default, "default")
        self._mapping: dict[Key, RetryStrategy] = {}
        for key, ref in (mapping or {}).items():
            self._mapping[self._key(key)] = self._strategy(ref, f"{key!r}")
        # filled on first use: imported classes, and the error of every name that did not import
        self._classes: dict[type[BaseException], RetryStrategy] | None = None
        self._unresolved: dict[str, tuple[RetryStrategy, ConfigError]] = {}
        self._by_class: weakref.WeakKeyDictionary[type, RetryStrategy] = weakref.WeakKeyDictionary()
        self._by_name: dict[str, RetryStrategy] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """Strategies built from the `[retry.<name>]` tables (`retry_params`), mapping from `retry_map`.

        Exception names are not imported here (see `validate`); bad parameters or strategy names
        raise ConfigError.
        """
        mapping: dict[Key, StrategyRef] = {name: strategy for name, strategy in settings.retry_map.items()}
        return cls(mapping, strategies=build_strategies(settings.retry_params))

    # ---- construction helpers --------------------------------------------------------------
    def _strategy(self, ref: StrategyRef, where: str) -> RetryStrategy:
        if isinstance(ref, str):
            if ref not in self._named and looks_dotted(ref):
                self._named[ref] = build_strategy(ref)
            if ref not in self._named:
                raise ConfigError(f"retry mapping {where}: unknown strategy {ref!r}; "
                                  f"expected one of {', '.join(sorted(self._named))} or 'package.module.Class'")
            return self._named[ref]
        if not isinstance(ref, RetryStrategy):
            raise TypeError(f"retry mapping {where}: {ref!r} is not a strategy (needs `name` and `decide`)")
        return ref

    @staticmethod
    def _key(key: Key) -> Key:
        if isinstance(key, str):
            return _check_syntax(key)
        if isinstance(key, type) and issubclass(key, BaseException):
            return key
        raise ConfigError(f"retry mapping: {key!r} is not an exception class; {_EXPECTED}")

    def _resolve(self) -> dict[type[BaseException], RetryStrategy]:
        """Import every named key once; names that fail are kept, with their error, in `_unresolved`."""
        if self._classes is None:
            classes: dict[type[BaseException], RetryStrategy] = {}
            unresolved: dict[str, tuple[RetryStrategy, ConfigError]] = {}
            for key, strategy in self._mapping.items():
                try:
                    classes[import_exception(key) if isinstance(key, str) else key] = strategy
                except ConfigError as exc:
                    unresolved[_normalise(str(key))] = (strategy, exc)
            self._unresolved = unresolved
            self._classes = classes
        return self._classes

    # ---- lookups ---------------------------------------------------------------------------
    def validate(self) -> None:
        """Import every named key now; raise ConfigError for the first that does not import."""
        self._resolve()
        for _, error in self._unresolved.values():
            raise error

    def strategy_for(self, exc: BaseException | type[BaseException]) -> RetryStrategy:
        """The strategy of the most specific mapped class in the exception's MRO, else `default`.

        Raises ConfigError if a mapped name does not import or is not an exception class.
        """
        cls = exc if isinstance(exc, type) else type(exc)
        cached = self._by_class.get(cls)
        if cached is not None:
            return cached
        self.validate()
        classes = self._resolve()
        strategy = next((classes[k] for k in cls.__mro__ if k in classes), self.default)
        self._by_class[cls] = strategy
        return strategy

    def strategy_for_name(self, dotted_class_name: str) -> RetryStrategy:
        """The strategy for a stored failure's class name, e.g. 'myapp.errors.Timeout' or 'KeyError'.

        Imports the class if it can and walks its MRO; otherwise compares the name with the mapped
        names exactly. Never raises for names that do not import (mapped or given): they match by name.
        """
        name = _normalise(dotted_class_name)
        cached = self._by_name.get(name)
        if cached is not None:
            return cached
        classes = self._resolve()
        try:
            mro: tuple[type, ...] = import_exception(name).__mro__
        except ConfigError:
            mro = ()
        if mro:
            strategy = next((classes[k] for k in mro if k in classes), self.default)
        else:
            names = {dotted_name(k): s for k, s in classes.items()}
            names.update({n: s for n, (s, _) in self._unresolved.items()})
            strategy = names.get(name, self.default)
        if len(self._by_name) >= _NAME_CACHE_SIZE:
            self._by_name.clear()
        self._by_name[name] = strategy
        return strategy

    def decide(self, exc: BaseException | type[BaseException], attempt: int) -> RetryDecision:
        """The decision for failed attempt `attempt` (1 for the first run) that raised `exc`."""
        return self.strategy_for(exc).decide(attempt)

    def abandoned(self, abandonments: int) -> RetryDecision:
        """The decision for a job whose worker died while running it, for the `abandonments`-th
        time (1 for the first): the `abandoned` strategy (`[retry.abandoned]`)."""
        strategy = self._named.get("abandoned")
        if strategy is None:
            from jobengine.retry.strategies import AbandonedRetry

            strategy = self._named["abandoned"] = AbandonedRetry()
        return strategy.decide(abandonments)

    def __repr__(self) -> str:
        rules = ", ".join(f"{k if isinstance(k, str) else dotted_name(k)}={s.name}" for k, s in self._mapping.items())
        return f"RetryPolicy({rules}; default={self.default.name})"
