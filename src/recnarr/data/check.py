"""What a catalog's files hold and what a load would make of them, before loading.

One report, in one step, so a new user sees every problem at once: per file its format and row count,
which column feeds which field (through the column map), the fields it lacks and the defaults they
take, the extra columns that become attributes, the invalid rows grouped by field with counts and the
first lines of each, and what is kept but worth knowing (unknown prices, products without a category,
products no one interacted with). `recnarr data check` (recnarr.stages.data) prints it; nothing is
written, and the exit status is 1 when any row is invalid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from recnarr.data import catalog as cat

_DEFAULTS = {"brand": "none", "category": "none", "currency": "USD", "discount": "0", "in_stock": "true",
             "attributes": "{}", "description": "empty", "name": "none", "segment": "none", "demographics": "{}",
             "event": "purchase", "quantity": "1", "rating": "empty"}


def _plan(table: cat.RawTable, kind: str, cmap: dict[str, Any]) -> list[str]:
    """How the file's columns map to our fields (raises `CatalogError` for a missing required column)."""
    cols = cat.column_plan(table, kind, cmap)
    used = {c for cs in cols.values() for c in cs}
    lines = ["  columns: " + ", ".join(
        ours if src == [ours] else f"{ours} <- {' + '.join(src)}" for ours, src in cols.items())]
    absent = [f for f in cat.FIELDS[kind] if f not in cols]
    if absent:
        lines.append("  not in the file (defaults): " + ", ".join(f"{f} ({_DEFAULTS.get(f, 'empty')})" for f in absent))
    extras = [c for c in table.columns if c not in used]
    if extras:
        into = cat.EXTRAS_INTO.get(kind)
        lines.append(f"  extra columns{f' -> {into}' if into else ' (ignored)'}: {', '.join(extras)}")
    return lines


def _section(path: Path, kind: str, cmap: dict[str, Any], load) -> tuple[list[str], Any, int]:
    """(report lines, the loaded frame or None, invalid row count) for one file."""
    lines = [f"{kind}: {path}"]
    try:
        table = cat.read_table(path)
        lines[0] += f" ({len(table.rows) + len(table.errors):,} records)"
        lines += _plan(table, kind, cmap)
        report = cat.LoadReport()
        frame = load(table, report)
    except cat.CatalogError as e:
        lines += [f"  cannot load: {line}" if i == 0 else f"  {line}" for i, line in enumerate(str(e).splitlines())]
        return lines, None, max(1, len({x.line for x in e.errors}))
    bad = report.n_skipped
    lines.append(f"  valid {len(frame):,}, invalid {bad:,}")
    lines += ["  " + line for line in cat.grouped(report.errors)]
    return lines, frame, bad


def catalog_notes(products: pd.DataFrame | None, inter: pd.DataFrame | None) -> list[str]:
    if products is None:
        return []
    notes = []
    n = len(products)
    if unpriced := int((products["price"] <= 0).sum()):
        notes.append(f"{unpriced:,} of {n:,} products have no price: kept, recommended without a price claim")
    if uncategorised := int((products["category"].map(len) == 0).sum()):
        notes.append(f"{uncategorised:,} of {n:,} products have no category: no category or relation claims")
    if undescribed := int((products["description"] == "").sum()):
        notes.append(f"{undescribed:,} of {n:,} products have no description")
    if inter is not None:
        lonely = n - int(products["id"].isin(inter["product_id"]).sum())
        if lonely:
            notes.append(f"{lonely:,} of {n:,} products have no interactions: found by text similarity only")
    return notes


def check_files(products: str | Path, interactions: str | Path | None = None, users: str | Path | None = None,
                column_map: str | Path | None = None) -> tuple[str, int]:
    """The report for a custom catalog's files, and the number of invalid rows (or files)."""
    out = ["recnarr data check"]
    try:
        cmap = cat.load_column_map(column_map)
    except cat.CatalogError as e:
        return "\n".join([*out, f"column map: cannot load: {e}"]), 1
    if column_map:
        out.append(f"column map: {column_map}")
    sec, prods, bad = _section(Path(products), "products", cmap, lambda t, r: cat.products_from_table(
        t, cmap, skip_invalid=True, report=r))
    out += sec
    usr = None
    if users:
        sec, usr, b = _section(Path(users), "users", cmap, lambda t, r: cat.users_from_table(
            t, cmap, skip_invalid=True, report=r))
        out, bad = out + sec, bad + b
    inter = None
    if interactions:
        known = [] if prods is None else prods["id"]
        sec, inter, b = _section(Path(interactions), "interactions", cmap, lambda t, r: cat.interactions_from_table(
            t, known, None if usr is None else usr["id"], cmap, skip_invalid=True, report=r,
            products_file=Path(products).name, users_file=Path(users).name if users else ""))
        out, bad = out + sec, bad + b
        if prods is None:
            out.append("  (product ids not checked: the products file did not load)")
    out += [f"note: {n}" for n in catalog_notes(prods, inter)]
    out.append(f"result: {bad:,} invalid rows; " + ("fix them, or load with data.skip_invalid=true to skip and "
                                                    "report them" if bad else "ready to load (`recnarr data load`)"))
    return "\n".join(out), bad
