"""A DataTable that fits its width, updates in place by row key and keeps the cursor on a row.

Columns declare how they give way when the table is narrow (`Column`): first every column
switches to its short label, then shortenable columns (`min_width`) lose cells (widest first, with an
ellipsis at the end or in the middle: "worker-api-…-0001"), and only then are the columns of
the lowest priority hidden, one at a time, behind a trailing "+N…" header. `fit_columns`
is the pure part; `KeyedTable.sync` applies it to the rows it is given, again on every resize.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

ELLIPSIS = "…"
MARKER_KEY = "+hidden"
PADDING = 2
"""Cells DataTable adds around every column (cell_padding 1 on each side)."""


@dataclass(frozen=True)
class Column:
    """One column and how it gives way when room is short."""

    key: str
    label: str
    width: int | None = None
    """Fixed width; None: as wide as its widest cell (or label)."""
    priority: int = 0
    """0: never hidden; otherwise the highest number is hidden first when the row does not fit."""
    min_width: int | None = None
    """Shortened (with an ellipsis) down to this width before any column is hidden; None: never."""
    short_label: str | None = None
    """The label used when the long labels do not all fit."""
    flex: bool = False
    """Takes the room the other columns leave (at least its natural width, or `min_width`)."""
    cut: Literal["end", "middle"] = "end"
    """Where shortened text loses characters: names keep both ends ("worker-ap…-0001")."""


Fill = Callable[[int], Text]
"""A cell drawn for the width its column gets (a sparkline)."""
Cell = Text | Fill
Row = tuple[str, Sequence[Cell]]


@dataclass(frozen=True)
class Layout:
    """What `fit_columns` decided: the columns shown with their widths, and the ones hidden."""

    shown: tuple[tuple[Column, int], ...]
    hidden: tuple[Column, ...] = ()
    short_labels: bool = False

    def label(self, column: Column) -> str:
        return (column.short_label or column.label) if self.short_labels else column.label



def marker_label(hidden: int) -> str:
    """The header of the trailing column that says how many columns are hidden: '+2…'."""
    return f"+{hidden}…"


def _label_width(column: Column, short: bool) -> int:
    return cell_len((column.short_label or column.label) if short else column.label)


def _try_fit(
    columns: Sequence[Column],
    natural: Mapping[str, int],
    room: int,
    short: bool,
    shrink: bool = True,
    floors_only: bool = False,
) -> dict[str, int] | None:
    """Widths that fit `room` (padding included), shortening the widest first (if `shrink`);
    None if impossible. `floors_only`: the narrowest widths, whatever the room."""
    widths: dict[str, int] = {}
    floors: dict[str, int] = {}
    for c in columns:
        label = _label_width(c, short)
        if c.width is not None:
            widths[c.key] = floors[c.key] = max(c.width, label)
            continue
        widths[c.key] = max(natural.get(c.key, 0), label, 1)
        floor = widths[c.key] if c.min_width is None or not shrink else min(widths[c.key], max(c.min_width, label))
        floors[c.key] = floor
    if floors_only:
        return floors
    used = sum(widths.values()) + PADDING * len(columns)
    while used > room:
        shrinkable = [c.key for c in columns if widths[c.key] > floors[c.key]]
        if not shrinkable:
            return None
        widest = max(shrinkable, key=lambda key: widths[key])
        widths[widest] -= 1
        used -= 1
    flex = next((c.key for c in columns if c.flex), None)
    if flex is not None:
        widths[flex] += room - used
    return widths


def fit_columns(columns: Sequence[Column], natural: Mapping[str, int], available: int) -> Layout:
    """Fit `columns` (cells as wide as `natural`) into `available` cells, hiding as few as possible."""
    shown = list(columns)
    hidden: list[Column] = []
    while True:
        marker = cell_len(marker_label(len(hidden))) + PADDING if hidden else 0
        for short, shrink in ((False, False), (True, False), (True, True)):
            widths = _try_fit(shown, natural, available - marker, short, shrink)
            if widths is not None:
                return Layout(tuple((c, widths[c.key]) for c in shown), tuple(hidden), short)
        optional = [c for c in shown if c.priority > 0]
        if not optional:  # nothing left to hide: the narrowest it gets (the table scrolls)
            floors = _try_fit(shown, natural, 0, True, floors_only=True) or {}
            return Layout(tuple((c, floors.get(c.key, 1)) for c in shown), tuple(hidden), True)
        victim = max(reversed(optional), key=lambda c: c.priority)  # among equals the rightmost
        shown.remove(victim)
        hidden = [c for c in columns if c is victim or c in hidden]  # in column order


def shorten(text: Text, width: int, cut: str = "end") -> Text:
    """`text` in at most `width` cells: cut at the end or in the middle, marked with an ellipsis."""
    length = cell_len(text.plain)
    if length <= width:
        return text
    if width <= 1:
        return Text(ELLIPSIS[:width], style=text.style, justify=text.justify)
    if cut == "middle" and width >= 5:
        keep = width - 1
        head, tail = (keep + 1) // 2, keep // 2
        out = text[:head]
        out.append(ELLIPSIS)
        out.append_text(text[len(text.plain) - tail :])
    else:
        out = text[: width - 1]
        out.append(ELLIPSIS)
    out.style = text.style
    out.justify = text.justify
    return out


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
    """`set_columns(columns)` declares the columns; `sync(rows)` fits them to the width, updates
    cells by row key, removes/appends rows without a full refill when it can, and restores the
    cursor to the row key it was on (or the row that took its place)."""

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
        self._layout: Layout | None = None
        self._rows: list[Row] = []

    # ---- columns -------------------------------------------------------------------------
    def set_columns(self, columns: Sequence[Column]) -> bool:
        """Declare the columns; True when they changed (the rows are dropped until the next sync)."""
        spec = tuple(columns)
        if spec == self._columns_spec:
            return False
        self._columns_spec = spec
        self._layout = None
        self._rows = []
        self.clear(columns=True)
        return True

    @property
    def column_keys(self) -> list[str]:
        """The keys of the columns shown, left to right."""
        return [c.key for c, _ in self._layout.shown] if self._layout else []

    @property
    def hidden_keys(self) -> list[str]:
        """The keys of the columns hidden for want of room."""
        return [c.key for c in self._layout.hidden] if self._layout else []

    def available_width(self, rows: int) -> int:
        """The cells the columns can use: the table's width less a vertical scrollbar if needed."""
        width = self.size.width or max(20, self.app.size.width - 4)
        visible = self.size.height - 1 if self.size.height else 0  # less the header
        if rows > visible and self.styles.overflow_y != "hidden":
            width -= self.styles.scrollbar_size_vertical
        return width

    def _fit(self, rows: Sequence[Row]) -> Layout:
        natural: dict[str, int] = {}
        for index, column in enumerate(self._columns_spec):
            cells = [cells[index] for _, cells in rows if index < len(cells)]
            texts = [cell_len(cell.plain) for cell in cells if isinstance(cell, Text)]
            natural[column.key] = max(texts, default=column.min_width or 0)
        return fit_columns(self._columns_spec, natural, self.available_width(len(rows)))

    def _apply_layout(self, layout: Layout) -> bool:
        """Rebuild the columns if the layout changed; True when it did (rows dropped)."""
        if layout == self._layout:
            return False
        self._layout = layout
        self.clear(columns=True)
        for column, width in layout.shown:
            self.add_column(Text(layout.label(column)), key=column.key, width=width)
        if layout.hidden:
            label = marker_label(len(layout.hidden))
            self.add_column(Text(label, style="italic"), key=MARKER_KEY, width=cell_len(label))
        return True

    def _cells(self, layout: Layout, cells: Sequence[Cell]) -> list[Text]:
        by_key = dict(zip((c.key for c in self._columns_spec), cells, strict=False))
        out: list[Text] = []
        for column, width in layout.shown:
            cell = by_key.get(column.key, Text())
            text = cell if isinstance(cell, Text) else cell(width)
            out.append(shorten(text, width, column.cut))
        if layout.hidden:
            out.append(Text())
        return out

    def on_resize(self, event: events.Resize) -> None:
        if self._rows and self._columns_spec:
            self.sync(self._rows)

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
        """Show exactly `rows` (cells in declared column order), touching only what changed."""
        self._rows = list(rows)
        cursor_key = self.cursor_key
        cursor_index = self.cursor_row
        with self.app.batch_update():
            layout = self._fit(rows)
            self._apply_layout(layout)
            shown = [(key, self._cells(layout, cells)) for key, cells in rows]
            old_keys = self.row_keys
            new_keys = [key for key, _ in shown]
            if new_keys == old_keys:
                self._update_cells(shown)
            elif self._is_subsequence(old_keys, new_keys):
                # rows were removed and/or appended at the end: no refill needed
                kept, before = set(new_keys), set(old_keys)
                for key in old_keys:
                    if key not in kept:
                        self.remove_row(key)
                self._update_cells([(key, cells) for key, cells in shown if key in before])
                for key, cells in shown:
                    if key not in before:
                        self.add_row(*cells, key=key)
            else:
                self._refill(shown)
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

    def _update_cells(self, rows: Sequence[tuple[str, Sequence[Text]]]) -> None:
        keys = [str(key.value) for key in self.columns]
        for key, cells in rows:
            current = self.get_row(key)
            for column, old, value in zip(keys, current, cells, strict=False):
                if not same_cell(old, value):
                    self.update_cell(key, column, value)

    def _refill(self, rows: Sequence[tuple[str, Sequence[Text]]]) -> None:
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
