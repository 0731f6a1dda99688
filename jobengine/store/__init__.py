"""PostgreSQL history: the schema, every query, and `PostgresStore` (the only psycopg user).

Importing this package loads no psycopg: it exports the `HistoryStore` Protocol; `PostgresStore`
comes from `jobengine.store.postgres` (or, lazily, from here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobengine.store.protocol import HistoryStore

if TYPE_CHECKING:
    from jobengine.store.postgres import PostgresStore

__all__ = ["HistoryStore", "PostgresStore"]


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":
        from jobengine.store.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module 'jobengine.store' has no attribute {name!r}")
