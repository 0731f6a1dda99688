"""Load the SQL shipped with the store: named query sections and numbered migrations."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import LiteralString

_NAME = re.compile(r"^--\s*name:\s*([A-Za-z_][A-Za-z0-9_]*)\s*$", re.MULTILINE)
_MIGRATION = re.compile(r"^\d{3,}_[A-Za-z0-9_]+\.sql$")


def parse_sections(text: str) -> dict[str, LiteralString]:
    """Split `text` at `-- name: x` lines into {name: statement}; text before the first name is ignored."""
    marks = list(_NAME.finditer(text))
    sections: dict[str, LiteralString] = {}
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        name = mark.group(1)
        if name in sections:
            raise ValueError(f"query {name!r} is defined twice")
        body = text[mark.end():following.start() if following else len(text)].strip().rstrip(";").strip()
        if not body:
            raise ValueError(f"query {name!r} is empty")
        sections[name] = body  # mypy treats LiteralString as str; the SQL comes from our package files
    return sections


@cache
def queries() -> dict[str, LiteralString]:
    """Every named query in `sql/queries.sql`."""
    text = resources.files("jobengine.store").joinpath("sql/queries.sql").read_text(encoding="utf-8")
    return parse_sections(text)


@cache
def migrations() -> tuple[tuple[str, LiteralString], ...]:
    """(name, script) of every `migrations/NNN_name.sql`, in order; name is the file stem."""
    folder = resources.files("jobengine.store").joinpath("migrations")
    found = sorted(entry.name for entry in folder.iterdir() if _MIGRATION.match(entry.name))
    return tuple((name.removesuffix(".sql"),
                  folder.joinpath(name).read_text(encoding="utf-8"))
                 for name in found)
