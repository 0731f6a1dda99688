"""One error hierarchy. Every message is one line that says what is wrong and how to fix it."""

from __future__ import annotations


class JobEngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigError(JobEngineError):
    """The configuration file, environment or flags hold something invalid."""


class ValidationError(JobEngineError):
    """A dispatch was refused before anything was written."""


class UnknownPriorityError(ValidationError):
    pass


class JobFunctionError(ValidationError):
    """The job function does not import or is not callable."""


class SerializationError(ValidationError):
    """The job's arguments cannot be serialised."""


class UnavailableError(JobEngineError):
    """Redis or PostgreSQL cannot be reached."""


class StoreUnavailable(UnavailableError):
    """PostgreSQL cannot be reached or refused the statement."""


class HistoryDataError(StoreUnavailable):
    """PostgreSQL rejected a batch of history events as data (a NUL byte in text, a value out of
    range): the same batch fails the same way, so split it to isolate the event. A StoreUnavailable,
    so callers that know only that keep waiting; catch this one first."""


class RedisUnavailable(UnavailableError):
    """Redis cannot be reached."""


class JobNotFound(JobEngineError):
    pass


class OperationRefused(JobEngineError):
    """The operation is not allowed in this state or mode (for example read-only)."""


# Exceptions job functions raise to choose a retry strategy (see jobengine.retry).
class TemporaryError(Exception):
    """A transient failure (timeouts, 503s): retried with exponential backoff by default."""


class ResourceError(Exception):
    """A busy or exhausted resource (locks, quotas): retried with linear backoff by default."""
