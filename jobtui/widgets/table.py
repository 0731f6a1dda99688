"""A DataTable that updates in place by row key and keeps the cursor on the same row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int | None = None


Row = tuple[str, Sequence[Text]]


def same_cell(old: object, new: Text) -> bool:
    """Equal text AND looks: Rich's `Text ==` ignores the base style, which a theme change alters."""
    return (
        isinstance(old, Text)
        and old.plain == new.plain
        and old.style == new.style
        and old.spans == new.spans
        and old.justify == new.justify
    )


class KeyedTable(DataTable[Text]):
    """`sync(rows)` updates cells by row key, removes/appends rows without a full refill when it
    can, and restores the cursor to the row key it was on (or the row that took its place)."""

    DEFAULT_CSS = """
    KeyedTable { height: auto; max-height: 100%; }
    """
    BINDINGS = [
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
    ]

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self._columns_spec: tuple[Column, ...] = ()

    # ---- columns -------------------------------------------------------------------------
    def set_columns(self, columns: Sequence[Column]) -> bool:
        """Replace the columns if they differ; True when the table was rebuilt (rows dropped)."""
        spec = tuple(columns)
        if spec == self._columns_spec:
            return False
        self._columns_spec = spec
        self.clear(columns=True)
        for column in spec:
            self.add_column(Text(column.label), key=column.key, width=column.width)
        return True

    @property
    def column_keys(self) -> list[str]:
        return [c.key for c in self._columns_spec]

    # ---- rows ----------------------------------------------------------------------------
    @property
    def cursor_key(self) -> str | None:
        """The row key under the cursor, or None for an empty table."""
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except (CellDoesNotExist, RowDoesNotExist):
            return None

    @property
    def row_keys(self) -> list[str]:
        return [row.key.value for row in self.ordered_rows if row.key.value is not None]

    def sync(self, rows: Sequence[Row]) -> None:
        """Show exactly `rows`, in order, touching only what changed."""
        old_keys = self.row_keys
        new_keys = [key for key, _ in rows]
        cursor_key = self.cursor_key
        cursor_index = self.cursor_row
        with self.app.batch_update():
            if new_keys == old_keys:
                self._update_cells(rows)
            elif self._is_subsequence(old_keys, new_keys):
                # rows were removed and/or appended at the end: no refill needed
                kept, before = set(new_keys), set(old_keys)
                for key in old_keys:
                    if key not in kept:
                        self.remove_row(key)
                self._update_cells([(key, cells) for key, cells in rows if key in before])
                for key, cells in rows:
                    if key not in before:
                        self.add_row(*cells, key=key)
            else:
                self._refill(rows)
            self._restore_cursor(cursor_key, cursor_index)

    @staticmethod
    def _is_subsequence(old: list[str], new: list[str]) -> bool:
        """True when `new` keeps old rows in their order and only appends unseen keys after them."""
        old_set = set(old)
        seen_new = False
        for key in new:
            if key in old_set:
                if seen_new:
                    return False
            else:
                seen_new = True
        survivors = [k for k in new if k in old_set]
        return survivors == [k for k in old if k in set(survivors)]

    def _update_cells(self, rows: Sequence[Row]) -> None:
        keys = self.column_keys
        for key, cells in rows:
            current = self.get_row(key)
            for column, old, value in zip(keys, current, cells, strict=False):
                if not same_cell(old, value):
                    self.update_cell(key, column, value, update_width=True)

    def _refill(self, rows: Sequence[Row]) -> None:
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)

    def _restore_cursor(self, key: str | None, index: int) -> None:
        if not self.row_count:
            return
        if key is not None:
            try:
                target = self.get_row_index(key)
            except RowDoesNotExist:
                target = min(index, self.row_count - 1)
        else:
            target = min(index, self.row_count - 1)
        if target != self.cursor_row:
            self.move_cursor(row=target, animate=False, scroll=True)
