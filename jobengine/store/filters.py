"""Search parameters of the store's named queries, from free text or a typed `JobQuery`.

Every filtering query in sql/queries.sql takes the same parameters: a NULL one does not filter
(PostgreSQL folds `NULL IS NULL OR ...` away when it plans with the values, so each query keeps
the index of the filters given: see tests/engine/test_typed_search.py).
"""

from __future__ import annotations

from typing import Any

from jobengine.query import JobQuery, parse_query

Row = dict[str, Any]


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_params(search: str | None) -> Row:
    """Parameters of the free-text clause (all None when there is no search)."""
    term = (search or "").strip()
    if not term:
        return {"search": None, "contains": None, "prefix": None}
    escaped = like_escape(term)
    return {"search": term, "contains": f"%{escaped}%", "prefix": f"{escaped}%"}


def as_query(search: str | JobQuery | None) -> JobQuery:
    return search if isinstance(search, JobQuery) else parse_query(search)


def query_params(search: str | JobQuery | None) -> Row:
    """Parameters of the typed-search clauses plus the free-text one."""
    q = as_query(search)
    return {  # one value: an equality, which walks its index in page order (ANY would need a sort)
        "type1": q.types[0] if len(q.types) == 1 else None,
        "types": list(q.types) if len(q.types) > 1 else None,
        "queue1": q.queues[0] if len(q.queues) == 1 else None,
        "queues": list(q.queues) if len(q.queues) > 1 else None,
        "since": q.since,
        "error": f"%{like_escape(q.error)}%" if q.error else None,
        "args": f"%{like_escape(q.args)}%" if q.args else None,
        "id_like": f"{like_escape(q.id_prefix)}%" if q.id_prefix else None,
        **search_params(q.text),
    }


def is_plain(search: str | JobQuery | None) -> bool:
    """True when nothing filters (the O(1) counter answers the count)."""
    return not as_query(search)
