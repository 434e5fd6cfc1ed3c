"""The user's own catalog: products, users and interactions from CSV, TSV, JSONL or Parquet.

Column names are ours (`schema.PRODUCT_COLUMNS` ...) unless a column-mapping YAML says otherwise:

    products:     {id: sku, title: name, price: unit_price, category: [dept, aisle]}
    interactions: {user_id: customer, product_id: sku, timestamp: ordered_at}
    users:        {id: customer}

Every value is validated. A problem is reported with the file, the line as a human sees it (the CSV
header is line 1, so the first data row is line 2; JSONL counts every line; Parquet has rows), the
field, what was found and what was expected. Nothing is dropped silently: a strict load raises a
`CatalogError` listing every bad row; `skip_invalid=True` skips those rows and records each of them in
a `LoadReport` that the caller prints and stores.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from recnarr.data.schema import (
    CATEGORY_SEP,
    EVENT_TYPES,
    INTERACTION_COLUMNS,
    PRODUCT_COLUMNS,
    USER_COLUMNS,
    Dataset,
)

KINDS = ("products", "users", "interactions")
FIELDS = {"products": PRODUCT_COLUMNS, "users": USER_COLUMNS, "interactions": INTERACTION_COLUMNS}
REQUIRED = {"products": ("id", "title", "price"), "users": ("id",), "interactions": ("user_id", "product_id", "timestamp")}
SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".parquet", ".pq")
_UNIX_RANGE = (0, 4_102_444_800)  # 1970-01-01 .. 2100-01-01 in seconds


class CatalogError(ValueError):
    """A catalog file that cannot be loaded as it is. `errors` holds every row problem found."""

    def __init__(self, message: str, errors: Sequence[RowError] = ()):
        super().__init__(message)
        self.errors = list(errors)


@dataclass(frozen=True)
class RowError:
    file: str
    line: int | None  # 1-based line (CSV, JSONL) or row (Parquet) number
    field: str | None  # our field name
    message: str  # what was found and what was expected
    unit: str = "line"  # "line" or "row"
    column: str | None = None  # the user's column(s), when a column map renamed the field

    @property
    def label(self) -> str:
        """`field 'price'`, or `field 'price' (column 'price_usd')` when the column has another name."""
        if not self.field:
            return "whole row"
        return f"field '{self.field}'" + (f" (column '{self.column}')" if self.column else "")

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f", {self.unit} {self.line}"
        if self.field:
            where += f", {self.label}"
        return f"{where}: {self.message}"


def grouped(errors: Sequence[RowError], examples: int = 3) -> list[str]:
    """Errors grouped by file and field, most frequent first: a count, the lines, the first few in full.
    One kind of problem on 85 rows then reads as one group, and a rarer one is not hidden behind it."""
    groups: dict[tuple[str, str], list[RowError]] = {}
    for e in errors:
        groups.setdefault((e.file, e.label), []).append(e)
    lines: list[str] = []
    for (file, label), errs in sorted(groups.items(), key=lambda kv: (kv[0][0], -len(kv[1]), kv[0][1])):
        rows = sorted({e.line for e in errs if e.line is not None})
        unit = errs[0].unit + ("s" if len(rows) != 1 else "")
        lines.append(f"  {file}, {label}: {len(errs):,} problem{'s' if len(errs) != 1 else ''}"
                     + (f" on {unit} {_ranges(rows)}" if rows else ""))
        lines += [f"    {e}" for e in errs[:examples]]
        if len(errs) > examples:
            lines.append(f"    ... and {len(errs) - examples:,} more like these")
    return lines


@dataclass
class LoadReport:
    """What a load kept and what it skipped (only `skip_invalid=True` skips anything)."""

    loaded: dict[str, int] = field(default_factory=dict)
    skipped_rows: dict[str, list[int]] = field(default_factory=dict)  # file -> skipped line/row numbers
    errors: list[RowError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was kept but is worth knowing (unknown prices)

    @property
    def n_skipped(self) -> int:
        return sum(len(v) for v in self.skipped_rows.values())

    def summary(self, examples: int = 3) -> str:
        counts = ", ".join(f"{n:,} {k}" for k, n in self.loaded.items())
        notes = "".join(f"\n  note: {n}" for n in self.notes)
        if not self.n_skipped:
            return f"loaded {counts}; no invalid rows{notes}"
        where = "; ".join(f"{f} {_unit_word(self.errors, f)}{'s' if len(rows) > 1 else ''} {_ranges(rows)}"
                          for f, rows in self.skipped_rows.items())
        rows = "row" if self.n_skipped == 1 else "rows"
        lines = [f"loaded {counts}; skipped {self.n_skipped:,} invalid {rows} ({where}):"]
        return "\n".join(lines + grouped(self.errors, examples)) + notes

    def to_dict(self) -> dict[str, Any]:
        return {"loaded": self.loaded, "skipped": self.n_skipped, "skipped_rows": self.skipped_rows,
                "errors": [str(e) for e in self.errors], "notes": self.notes}

    def __str__(self) -> str:
        return self.summary()


def _unit_word(errors: list[RowError], file: str) -> str:
    return next((e.unit for e in errors if e.file == file), "line")


def _ranges(rows: list[int]) -> str:
    """[2, 3, 4, 9] -> '2-4, 9'."""
    out: list[str] = []
    rows = sorted(rows)
    i = 0
    while i < len(rows):
        j = i
        while j + 1 < len(rows) and rows[j + 1] == rows[j] + 1:
            j += 1
        out.append(str(rows[i]) if i == j else f"{rows[i]}-{rows[j]}")
        i = j + 1
    return ", ".join(out)


# ---------------------------------------------------------------- reading files
@dataclass
class RawTable:
    """A file's records before validation: column names and (line or row number, {column: value})."""

    path: Path
    columns: list[str]
    rows: list[tuple[int, dict[str, Any]]]
    unit: str = "line"
    errors: list[RowError] = field(default_factory=list)  # rows that could not even be read

    @property
    def name(self) -> str:
        return self.path.name


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise CatalogError(
            f"{name}, line {line}: not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); "
            f"expected a UTF-8 text file. Re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 {name} > fixed.csv`"
        ) from None


def _empty(name: str, what: str = "a header line and at least one data row") -> CatalogError:
    return CatalogError(f"{name}: empty file; expected {what}")


def _blank(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and not v.strip()


def read_table(path: str | Path) -> RawTable:
    """Read a CSV / TSV / JSONL / Parquet file into raw records, keeping line numbers."""
    path = Path(path)
    if not path.exists():
        raise CatalogError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path)
    if suffix not in SUFFIXES:
        raise CatalogError(f"{path.name}: unknown file type {suffix!r}; expected one of {', '.join(SUFFIXES)}")
    data = path.read_bytes()
    if not data.strip():
        raise _empty(path.name, "a header line and at least one data row" if suffix in (".csv", ".tsv")
                     else "one JSON object per line")
    text = _decode(data, path.name)
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path, text)
    return _read_csv(path, text, "\t" if suffix == ".tsv" else ",")


def _read_csv(path: Path, text: str, delimiter: str) -> RawTable:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except csv.Error as e:
        raise CatalogError(f"{path.name}, line 1: cannot parse the header ({e})") from None
    columns = [h.strip() for h in header]
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise CatalogError(f"{path.name}, line 1: duplicate column names {dupes}; expected each column once")
    table = RawTable(path, columns, [])
    last = reader.line_num
    while True:
        start = last + 1  # a quoted value may span lines: a record starts after the previous one ends
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise CatalogError(f"{path.name}, line {start}: cannot parse CSV ({e})") from None
        last = reader.line_num
        if not row:  # a blank line is not a record
            continue
        if len(row) != len(columns):
            table.errors.append(RowError(
                path.name, start, None,
                f"has {len(row)} fields; expected {len(columns)} as in the header (an unquoted "
                f"'{delimiter}' inside a value?)"))
            continue
        table.rows.append((start, {c: (None if not v.strip() else v.strip()) for c, v in zip(columns, row, strict=True)}))
    if not table.rows and not table.errors:
        raise _empty(path.name, "at least one data row after the header")
    return table


def _read_jsonl(path: Path, text: str) -> RawTable:
    table = RawTable(path, [], [])
    seen: dict[str, None] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            table.errors.append(RowError(path.name, n, None, f"not valid JSON ({e.msg}); expected one JSON object per line"))
            continue
        if not isinstance(rec, dict):
            table.errors.append(RowError(path.name, n, None, f"got a JSON {type(rec).__name__}; expected a JSON object"))
            continue
        for k in rec:
            seen.setdefault(k)
        table.rows.append((n, rec))
    table.columns = list(seen)
    return table


def _read_parquet(path: Path) -> RawTable:
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a file that is not parquet
        raise CatalogError(f"{path.name}: cannot read as Parquet ({e})") from None
    if df.empty:
        raise _empty(path.name, "at least one row")
    rows = []
    for n, rec in enumerate(df.to_dict("records"), 1):
        rows.append((n, {k: _native(v) for k, v in rec.items()}))
    return RawTable(path, [str(c) for c in df.columns], rows, unit="row")


def _native(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [_native(x) for x in v.tolist()]
    if isinstance(v, np.generic):
        return v.item()
    if v is pd.NaT:
        return None
    return v


# ---------------------------------------------------------------- column mapping
def load_column_map(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """Read a column-mapping YAML: `{kind: {our_field: their_column (or a list, for category)}}`."""
    if path is None:
        return {}
    path = Path(path)
    if not path.exists():
        raise CatalogError(f"column map {path}: no such file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise CatalogError(f"column map {path.name}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise CatalogError(f"column map {path.name}: expected a mapping like `products: {{id: sku}}`")
    out: dict[str, dict[str, Any]] = {}
    for kind, mapping in raw.items():
        if kind not in KINDS:
            raise CatalogError(f"column map {path.name}: unknown section {kind!r}; expected one of {list(KINDS)}")
        if not isinstance(mapping, dict):
            raise CatalogError(f"column map {path.name}, section {kind}: expected a mapping of our field -> your column")
        for ours, theirs in mapping.items():
            if ours not in FIELDS[kind]:
                raise CatalogError(f"column map {path.name}, section {kind}: unknown field {ours!r}; "
                                   f"expected one of {FIELDS[kind]}")
            ok = isinstance(theirs, str) or (ours == "category" and isinstance(theirs, list)
                                             and all(isinstance(t, str) for t in theirs))
            if not ok:
                raise CatalogError(f"column map {path.name}, {kind}.{ours}: expected a column name"
                                   + (" or a list of column names" if ours == "category" else ""))
        out[kind] = {str(k): v for k, v in mapping.items()}
    out["_file"] = {"name": path.name}  # type: ignore[assignment]
    return out


def column_plan(table: RawTable, kind: str, cmap: dict[str, Any]) -> dict[str, list[str]]:
    """Our field -> the file's column(s) it comes from; missing required columns are an error."""
    mapping = cmap.get(kind, {})
    map_name = cmap.get("_file", {}).get("name", "the column map")
    resolved: dict[str, list[str]] = {}
    for ours in FIELDS[kind]:
        theirs = mapping.get(ours, ours)
        cols = [theirs] if isinstance(theirs, str) else list(theirs)
        present = [c for c in cols if c in table.columns]
        if len(present) == len(cols):
            resolved[ours] = cols
            continue
        if ours in REQUIRED[kind] or ours in mapping:
            missing = [c for c in cols if c not in table.columns]
            via = f" (mapped to our '{ours}' by {map_name})" if ours in mapping else ""
            hint = "" if ours in mapping else f"; map yours in a column-map YAML, e.g. `{kind}: {{{ours}: your_column}}`"
            found = ", ".join(table.columns[:30]) or "none"
            raise CatalogError(
                f"{table.name}: missing column '{missing[0]}'{via}; expected columns "
                f"{', '.join(REQUIRED[kind])} (found: {found}){hint}"
            )
    return resolved


# ---------------------------------------------------------------- field parsers
class _Bad(Exception):
    """A value that does not parse; the message says what was expected."""


def _show(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _text(v: Any) -> str:
    if isinstance(v, (dict, list)):
        raise _Bad(f"got {_show(v)}; expected text")
    return str(v).strip()


def _required_text(v: Any) -> str:
    if _blank(v):
        raise _Bad("is empty; expected a non-empty value")
    return _text(v)


def _optional_text(v: Any) -> str | None:
    return None if _blank(v) else _text(v)


def _number(v: Any, expected: str) -> float:
    if isinstance(v, bool):
        raise _Bad(f"got {_show(v)}; expected {expected}")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise _Bad(f"got {_show(v)}; expected {expected}") from None
    if not math.isfinite(x):
        raise _Bad(f"got {_show(v)}; expected {expected}")
    return x


UNKNOWN_PRICE = 0.0  # what an empty price loads as: every consumer reads price <= 0 as "no price known"


def _price(v: Any) -> float:
    """A price, or (empty) unknown: B2B and made-to-order items often have none, and such a product is
    recommended without any price claim (the claim grammar has no price slot for it)."""
    expected = ("a non-negative number such as 19.99 (no currency symbol: currency has its own field), "
                "or empty where the price is unknown")
    if _blank(v):
        return UNKNOWN_PRICE
    x = _number(v, expected)
    if x < 0:
        raise _Bad(f"got {_show(v)} (negative); expected {expected}")
    return x


def _discount(v: Any) -> float:
    if _blank(v):
        return 0.0
    expected = "a fraction in [0, 1), e.g. 0.2 for 20% off"
    x = _number(v, expected)
    if not 0.0 <= x < 1.0:
        raise _Bad(f"got {_show(v)}; expected {expected}")
    return x


def _currency(v: Any) -> str:
    if _blank(v):
        return "USD"
    s = _text(v).upper()
    if not (re.fullmatch(r"[A-Z]{3}", s) or s == "N/A"):
        raise _Bad(f"got {_show(v)}; expected a 3-letter ISO 4217 code such as USD or EUR (or N/A)")
    return s


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def _bool(v: Any) -> bool:
    if _blank(v):
        return True
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    s = str(v).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise _Bad(f"got {_show(v)}; expected true or false (also yes/no, 1/0)")


def _category(v: Any) -> list[str]:
    """A path: "Office > Paper", a JSON list, a list, or (mapped from several columns) a list of levels."""
    if _blank(v):
        return []
    if isinstance(v, str) and v.strip().startswith("["):
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            raise _Bad(f"got {_show(v)}; expected a path like 'Office > Paper' or a JSON list") from None
    expected = "a path like 'Office > Paper' or a list of levels"
    if isinstance(v, str) and v.strip().startswith("{"):
        raise _Bad(f"got {_show(v)} (a JSON object); expected {expected} (map several columns with the "
                   f"column map: `products: {{category: [dept, aisle]}}`)")
    if isinstance(v, (list, tuple)):
        bad = [p for p in v if not _blank(p) and not isinstance(p, str)]
        if bad:
            raise _Bad(f"got {_show(v)} (level {_show(bad[0])} is not text); expected {expected}")
        parts = [p.strip() for p in v if not _blank(p)]
    elif isinstance(v, str):
        parts = [p.strip() for p in v.split(">")]
        if any(not p for p in parts):
            raise _Bad(f"got {_show(v)} (an empty level); expected a path like 'Office{CATEGORY_SEP}Paper'")
    else:
        raise _Bad(f"got {_show(v)}; expected {expected}")
    # a level is a name a customer could read: "42" or "#12" is an id that landed in the wrong column
    nameless = [p for p in parts if not re.search(r"[^\W\d_]", p)]
    if nameless:
        raise _Bad(f"got {_show(v)} (level {nameless[0]!r} has no letters: an id, not a category name); "
                   f"expected {expected}")
    return parts


def _mapping_field(v: Any) -> dict[str, str]:
    if _blank(v):
        return {}
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            raise _Bad(f"got {_show(v)}; expected a JSON object such as {{\"color\": \"red\"}}") from None
    if not isinstance(v, dict):
        raise _Bad(f"got {_show(v)}; expected a JSON object such as {{\"color\": \"red\"}}")
    return {str(k): str(x) for k, x in v.items() if not _blank(x)}


def _event(v: Any) -> str:
    if _blank(v):
        return "purchase"
    s = _text(v).lower()
    if s not in EVENT_TYPES:
        raise _Bad(f"got {_show(v)}; expected one of {', '.join(EVENT_TYPES)}")
    return s


def _quantity(v: Any) -> int:
    if _blank(v):
        return 1
    x = _number(v, "a whole number >= 1")
    if x != int(x) or x < 1:
        raise _Bad(f"got {_show(v)}; expected a whole number >= 1")
    return int(x)


def _rating(v: Any) -> float:
    return math.nan if _blank(v) else _number(v, "a number (or empty)")


def parse_timestamp(v: Any) -> datetime:
    """ISO 8601 (`2017-03-14`, `2017-03-14T09:30:00Z`) or Unix seconds -> naive UTC datetime."""
    expected = "an ISO 8601 date/time such as 2017-03-14 or 2017-03-14T09:30:00, or Unix seconds"
    if _blank(v):
        raise _Bad(f"is empty; expected {expected}")
    ts: datetime
    if isinstance(v, (pd.Timestamp, datetime)):
        ts = pd.Timestamp(v).to_pydatetime()
    elif isinstance(v, (int, float)) and not isinstance(v, bool) or (
            isinstance(v, str) and re.fullmatch(r"\d{9,11}(\.\d+)?", v.strip())):
        x = float(v)
        if not _UNIX_RANGE[0] <= x < _UNIX_RANGE[1]:
            raise _Bad(f"got {_show(v)}; expected {expected}")
        ts = datetime.fromtimestamp(x, UTC)
    elif isinstance(v, str):
        try:
            ts = datetime.fromisoformat(v.strip())
        except ValueError:
            raise _Bad(f"got {_show(v)}; expected {expected}") from None
    else:
        raise _Bad(f"got {_show(v)}; expected {expected}")
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts


def _timestamp(v: Any) -> datetime:
    return parse_timestamp(v)


PARSERS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "products": {"id": _required_text, "title": _required_text, "brand": _optional_text, "category": _category,
                 "price": _price, "currency": _currency, "discount": _discount, "in_stock": _bool,
                 "attributes": _mapping_field, "description": lambda v: _optional_text(v) or ""},
    "users": {"id": _required_text, "name": _optional_text, "segment": _optional_text,
              "demographics": _mapping_field},
    "interactions": {"user_id": _required_text, "product_id": _required_text, "event": _event,
                     "quantity": _quantity, "rating": _rating, "timestamp": _timestamp},
}
# unmapped extra columns become free key-values here (interactions have no such field: ignored)
EXTRAS_INTO = {"products": "attributes", "users": "demographics"}


# ---------------------------------------------------------------- frames with the schema's dtypes
def products_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """A products DataFrame with exactly `PRODUCT_COLUMNS` and the dtypes every stage expects."""
    df = pd.DataFrame(list(records), columns=PRODUCT_COLUMNS)
    df["price"] = df["price"].astype("float64")
    df["discount"] = df["discount"].astype("float64")
    df["in_stock"] = df["in_stock"].astype(bool)
    for col in ("category", "attributes"):
        df[col] = df[col].astype(object)
    return df


def users_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(list(records), columns=USER_COLUMNS)
    df["demographics"] = df["demographics"].astype(object)
    return df


def interactions_frame(records: Iterable[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    df = pd.DataFrame(records, columns=INTERACTION_COLUMNS)
    df["quantity"] = df["quantity"].astype("int64")
    df["rating"] = df["rating"].astype("float64")
    df["timestamp"] = pd.to_datetime(df["timestamp"]).astype("datetime64[ns]")
    return df


# ---------------------------------------------------------------- validation
Problem = tuple[str, str | None, str]  # our field, the user's column if renamed, what is wrong
Check = Callable[[int, dict[str, Any], list[Problem]], None]


def _validate(table: RawTable, kind: str, cmap: dict[str, Any], check: Check | None = None,
              ) -> tuple[list[dict[str, Any]], list[RowError]]:
    """Parse every row; return the good records and one RowError per bad field (or unreadable row)."""
    cols = column_plan(table, kind, cmap)
    used = {c for cs in cols.values() for c in cs}
    extras = [c for c in table.columns if c not in used] if kind in EXTRAS_INTO else []
    parsers = PARSERS[kind]
    good: list[dict[str, Any]] = []
    errors = list(table.errors)
    for line, raw in table.rows:
        rec: dict[str, Any] = {}
        problems: list[Problem] = []
        for ours, parse in parsers.items():
            src = cols.get(ours)
            if src is None:
                value = None
            elif len(src) == 1:
                value = raw.get(src[0])
            else:  # category from several columns, most general first
                value = [raw.get(c) for c in src]
            try:
                rec[ours] = parse(value)
            except _Bad as e:
                # name the user's column too when a mapping renamed it
                column = None if src is None or src == [ours] else ", ".join(src)
                problems.append((ours, column, str(e)))
        if not problems and extras:
            target = EXTRAS_INTO[kind]
            rec[target] = {**{c: _cell(raw[c]) for c in extras if not _blank(raw.get(c))}, **rec[target]}
        if check is not None:  # also on rows with other problems, so a fix reveals no new error
            check(line, rec, problems)
            problems = [(f, c if c is not None or cols.get(f, [f]) == [f] else ", ".join(cols[f]), m)
                        for f, c, m in problems]  # a check's problem names the user's column too
        if problems:
            errors += [RowError(table.name, line, f, m, table.unit, c) for f, c, m in problems]
        else:
            good.append(rec)
    errors.sort(key=lambda e: e.line or 0)
    return good, errors


def _cell(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return v if isinstance(v, str) else json.dumps(v, default=str) if isinstance(v, (list, dict)) else str(v)


def _finish(table: RawTable, kind: str, n_good: int, errors: list[RowError], skip_invalid: bool,
            report: LoadReport | None) -> None:
    if errors and not skip_invalid:
        bad_rows = sorted({e.line for e in errors if e.line is not None})
        shown = "\n".join(grouped(errors))
        raise CatalogError(
            f"{table.name}: {len(bad_rows):,} invalid {kind} {table.unit}{'s' if len(bad_rows) != 1 else ''} "
            f"({_ranges(bad_rows)}):\n{shown}\n"
            f"Fix them, or load with skip_invalid=True (`data.skip_invalid=true`) to skip and report them.",
            errors,
        )
    if report is not None:
        report.loaded[kind] = n_good
        if errors:
            report.skipped_rows[table.name] = sorted({e.line for e in errors if e.line is not None})
            report.errors += errors
    if not n_good:
        raise CatalogError(f"{table.name}: no valid {kind} rows ({len(errors)} invalid)", errors)


Tables = RawTable | Iterable[RawTable]  # one file's records, whole or as a stream of chunks


def _load(tables: Tables, kind: str, cmap: dict[str, Any], check_for: Callable[[RawTable], Check | None],
          frame: Callable[[list[dict[str, Any]]], pd.DataFrame], skip_invalid: bool,
          report: LoadReport | None) -> pd.DataFrame:
    """Validate a file's records into a frame. Chunks (an adapter streaming a large file) are turned into
    columns one at a time, so the per-row dicts of only one chunk are alive; a strict load still lists
    every bad row of the whole file."""
    frames: list[pd.DataFrame] = []
    errors: list[RowError] = []
    first: RawTable | None = None
    check: Check | None = None
    n_good = 0
    for table in [tables] if isinstance(tables, RawTable) else tables:
        if first is None:
            first, check = table, check_for(table)
        good, errs = _validate(table, kind, cmap, check)
        n_good += len(good)
        errors += errs
        frames.append(frame(good))
    if first is None:
        raise CatalogError(f"no {kind} records")
    _finish(first, kind, n_good, errors, skip_invalid, report)
    frames = [f for f in frames if len(f)] or frames[:1]  # an empty chunk's columns have no string dtype
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _cmap(column_map: str | Path | dict | None) -> dict[str, Any]:
    return column_map if isinstance(column_map, dict) else load_column_map(column_map)


def _unique_ids(table: RawTable, what: str, key: str = "id") -> Check:
    first: dict[str, int] = {}

    def check(line: int, rec: dict[str, Any], problems: list[Problem]) -> None:
        rid = rec.get(key)
        if rid is None:
            return
        if rid in first:
            problems.append((key, None, f"duplicate {what} id {rid!r} (first seen on {table.unit} {first[rid]}); "
                                        f"expected each {what} once"))
        else:
            first[rid] = line

    return check


def load_products(path: str | Path, column_map: str | Path | dict | None = None, *,
                  skip_invalid: bool = False, report: LoadReport | None = None) -> pd.DataFrame:
    """Products from a file, validated (ids unique, prices >= 0 or unknown, discounts in [0, 1))."""
    return products_from_table(read_table(path), column_map, skip_invalid=skip_invalid, report=report)


def products_from_table(table: Tables, column_map: str | Path | dict | None = None, *,
                        skip_invalid: bool = False, report: LoadReport | None = None) -> pd.DataFrame:
    """Products from raw records (a file's, or an adapter's), validated like any catalog file."""
    return _load(table, "products", _cmap(column_map), lambda t: _unique_ids(t, "product"), products_frame,
                 skip_invalid, report)


def load_users(path: str | Path, column_map: str | Path | dict | None = None, *,
               skip_invalid: bool = False, report: LoadReport | None = None) -> pd.DataFrame:
    """Users from a file; extra columns (age, region ...) become demographics."""
    return users_from_table(read_table(path), column_map, skip_invalid=skip_invalid, report=report)


def users_from_table(table: RawTable, column_map: str | Path | dict | None = None, *,
                     skip_invalid: bool = False, report: LoadReport | None = None) -> pd.DataFrame:
    return _load(table, "users", _cmap(column_map), lambda t: _unique_ids(t, "user"), users_frame,
                 skip_invalid, report)


def load_interactions(path: str | Path, product_ids: Iterable[str], user_ids: Iterable[str] | None = None,
                      column_map: str | Path | dict | None = None, *, skip_invalid: bool = False,
                      report: LoadReport | None = None, products_file: str = "the products file",
                      users_file: str = "the users file") -> pd.DataFrame:
    """Interactions from a file; every product id (and user id, when users are given) must be known."""
    return interactions_from_table(read_table(path), product_ids, user_ids, column_map, skip_invalid=skip_invalid,
                                   report=report, products_file=products_file, users_file=users_file)


def interactions_from_table(table: Tables, product_ids: Iterable[str], user_ids: Iterable[str] | None = None,
                            column_map: str | Path | dict | None = None, *, skip_invalid: bool = False,
                            report: LoadReport | None = None, products_file: str = "the products file",
                            users_file: str = "the users file") -> pd.DataFrame:
    """Interactions from raw records, validated like an interactions file."""
    known_products = set(product_ids)
    known_users = None if user_ids is None else set(user_ids)

    def check(line: int, rec: dict[str, Any], problems: list[Problem]) -> None:
        if "product_id" in rec and rec["product_id"] not in known_products:
            problems.append(("product_id", None, f"unknown product id {rec['product_id']!r}; expected an id "
                                                 f"from {products_file}"))
        if known_users is not None and "user_id" in rec and rec["user_id"] not in known_users:
            problems.append(("user_id", None, f"unknown user id {rec['user_id']!r}; expected an id from {users_file}"))

    return _load(table, "interactions", _cmap(column_map), lambda t: check, interactions_frame, skip_invalid,
                 report)


def users_from_interactions(interactions: pd.DataFrame) -> pd.DataFrame:
    """Users known only by id (no users file): one row per distinct user id, in order of appearance."""
    ids = pd.unique(interactions["user_id"])
    return users_frame({"id": str(u), "name": None, "segment": None, "demographics": {}} for u in ids)


def note_unpriced(products: pd.DataFrame, report: LoadReport) -> None:
    unpriced = int((products["price"] <= 0).sum())
    if unpriced:
        report.notes.append(f"{unpriced:,} of {len(products):,} products have no price (empty or 0): kept, and "
                            "recommended without any price or discount claim")


def load_catalog(products: str | Path, interactions: str | Path | None = None, users: str | Path | None = None,
                 column_map: str | Path | dict | None = None, *, skip_invalid: bool = False,
                 name: str = "custom", verbose: bool = False) -> Dataset:
    """The user's own data as a `Dataset`. `dataset.meta["load_report"]` says what was loaded and skipped."""
    cmap = _cmap(column_map)
    report = LoadReport()
    prods = load_products(products, cmap, skip_invalid=skip_invalid, report=report)
    usr = load_users(users, cmap, skip_invalid=skip_invalid, report=report) if users else None
    if interactions:
        inter = load_interactions(
            interactions, prods["id"], None if usr is None else usr["id"], cmap, skip_invalid=skip_invalid,
            report=report, products_file=Path(products).name, users_file=Path(users).name if users else "")
    else:
        inter = interactions_frame([])
        report.loaded["interactions"] = 0
    if usr is None:
        usr = users_from_interactions(inter)
        report.loaded["users"] = len(usr)
    note_unpriced(prods, report)
    if verbose or report.n_skipped or report.notes:
        print(report.summary())
    files = {k: str(v) for k, v in (("products", products), ("interactions", interactions), ("users", users)) if v}
    return Dataset(name, prods, usr, inter, {"source": "custom", "files": files, "load_report": report.to_dict(),
                                             "has_prices": bool((prods["price"] > 0).any())})
