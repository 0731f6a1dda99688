"""PostgreSQL history: the schema, every query, and `PostgresStore` (the only psycopg user)."""

from jobengine.store.postgres import PostgresStore

__all__ = ["PostgresStore"]
