"""Job history: the event format (Redis only, `events`) and the writer to PostgreSQL (`writer`).

This package exports the event API only, so workers and dispatchers import no psycopg; import
`HistoryWriter` from `jobengine.history.writer`.
"""

from jobengine.history.events import add_event, event_fields, parse_event, parse_events

__all__ = ["add_event", "event_fields", "parse_event", "parse_events"]
