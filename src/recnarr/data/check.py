"""What a catalog's files hold and what a load would make of them, before loading.

One report, in one step, so a new user sees every problem at once: per file its format and row count,
which column feeds which field (through the column map), the fields it lacks and the defaults they
take, the extra columns that become attributes, the invalid rows grouped by field with counts and the
first lines of each, and what is kept but worth knowing (unknown prices, products without a category,
products no one interacted with, placeholder values such as a category named "category"). `recnarr
data check` (recnarr.stages.data) prints it; nothing is written, and the exit status is 1 when any row is
invalid or any file cannot load (a missing required column is named as such: skipping rows cannot fix it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from recnarr.data import catalog as cat
from recnarr.data.placeholders import inconsistent_category_order, placeholder

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


def _missing_columns(table: cat.RawTable, kind: str, cmap: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Every (column, our field it was mapped to, or None) that `column_plan` wants and the file lacks;
    `column_plan` stops at the first, and a user fixing one column at a time deserves the whole list."""
    mapping = cmap.get(kind, {})
    out: list[tuple[str, str | None]] = []
    for ours in cat.FIELDS[kind]:
        if ours in cat.REQUIRED[kind] or ours in mapping:
            theirs = mapping.get(ours, ours)
            out += [(c, ours if ours in mapping else None)
                    for c in ([theirs] if isinstance(theirs, str) else theirs) if c not in table.columns]
    return out


def _names(cols: list[str]) -> tuple[str, str]:
    """("columns 'a', 'b'", "them") or ("column 'a'", "it")."""
    quoted = ", ".join(f"'{c}'" for c in cols)
    return (f"columns {quoted}", "them") if len(cols) > 1 else (f"column {quoted}", "it")


def _missing_advice(file: str, kind: str, missing: list[tuple[str, str | None]], cmap: dict[str, Any]) -> str:
    """The result for a file without a column it needs: add it, or map it, never "skip the invalid rows"
    (`data.skip_invalid` skips rows, and a missing column fails every row of the file)."""
    out = []
    if required := [c for c, ours in missing if ours is None]:
        names, them = _names(required)
        out.append(f"{file} lacks the required {names}: add {them}, or map yours with a column map "
                   f"(data.column_map=<yaml> with `{kind}: {{{required[0]}: your_column}}`)")
    if mapped := [(c, ours) for c, ours in missing if ours is not None]:
        names, them = _names([c for c, _ in mapped])
        map_name = cmap.get("_file", {}).get("name", "the column map")
        entries = ", ".join(f"{ours}: {c}" for c, ours in mapped)
        out.append(f"{file} has no {names} that {map_name} maps to: add {them}, or fix `{kind}: {{{entries}}}`")
    return "; ".join(out)


def _section(path: Path, kind: str, cmap: dict[str, Any], load) -> tuple[list[str], Any, int, str | None]:
    """(report lines, the loaded frame or None, invalid row count, why the whole file failed or None)."""
    lines = [f"{kind}: {path}"]

    def cannot(e: cat.CatalogError) -> list[str]:
        return lines + [f"  cannot load: {line}" if i == 0 else f"  {line}" for i, line in enumerate(str(e).splitlines())]

    try:
        table = cat.read_table(path)
    except cat.CatalogError as e:  # no such file, empty, not UTF-8, unparseable: no row to skip
        return cannot(e), None, 0, f"{path.name} cannot be read (see above)"
    lines[0] += f" ({len(table.rows) + len(table.errors):,} records)"
    try:
        lines += _plan(table, kind, cmap)
    except cat.CatalogError as e:  # `column_plan` raises only for a missing column
        why = _missing_advice(path.name, kind, _missing_columns(table, kind, cmap), cmap)
        return cannot(e), None, 0, why or f"{path.name} cannot load (see above)"
    try:
        report = cat.LoadReport()
        frame = load(table, report)
    except cat.CatalogError as e:  # every row invalid
        return cannot(e), None, max(1, len({x.line for x in e.errors})), None
    bad = report.n_skipped
    lines.append(f"  valid {len(frame):,}, invalid {bad:,}")
    lines += ["  " + line for line in cat.grouped(report.errors)]
    return lines, frame, bad, None


_PLACEHOLDER_FIELDS = {"products": ("title", "brand", "category", "description"), "users": ("name",)}


def placeholder_notes(frame: pd.DataFrame | None, kind: str, examples: int = 3) -> list[str]:
    """Per field, how many `kind` rows hold a placeholder (`placeholders.placeholder`) with the first few
    (id, value, why), so a header row or test fixture left in an export is seen before it is trained on."""
    if frame is None or not len(frame):
        return []
    ids = frame["id"].astype(str).tolist()
    titles = frame["title"].tolist() if "title" in frame else [""] * len(ids)
    notes = []
    for field in _PLACEHOLDER_FIELDS[kind]:
        hits = []
        for pid, value, title in zip(ids, frame[field].tolist(), titles, strict=True):
            values = list(value) if field == "category" and value is not None else [value]
            why = next(((v, w) for v in values if (w := placeholder(field, v, pid, title))), None)
            if why:
                hits.append((pid, *why))
        if hits:
            shown = ", ".join(f"{pid} {v!r} ({w})" for pid, v, w in hits[:examples])
            more = f", and {len(hits) - examples:,} more" if len(hits) > examples else ""
            notes.append(f"{len(hits):,} of {len(ids):,} {kind} have a placeholder {field}: {shown}{more}")
    return notes


def order_notes(products: pd.DataFrame | None, examples: int = 3) -> list[str]:
    """Category paths whose levels run in different orders (`inconsistent_category_order`): relation
    claims ("in the same aisle as") read the first level as the most general."""
    if products is None:
        return []
    found = inconsistent_category_order(list(p) for p in products["category"] if p is not None)
    notes = [f"category levels in another order on some rows: {f}" for f in found[:examples]]
    if len(found) > examples:
        notes.append(f"... and {len(found) - examples:,} more levels like these")
    if found:
        notes.append("category paths run most general first: give the columns in that order in the column "
                     "map (`products: {category: [dept, aisle]}`), and in one order in every file")
    return notes


def small_shop_note(interactions: int, threshold: int | None = None) -> str | None:
    """The warning for a catalog with too few interactions for collaborative models (None if enough);
    the recommender's response is `retrieval.small_shop_interactions` (recnarr.retrieval.recommender)."""
    from recnarr.config import RetrievalConfig

    threshold = RetrievalConfig().small_shop_interactions if threshold is None else threshold
    if threshold <= 0 or interactions >= threshold:
        return None
    return (f"small shop: {interactions:,} interactions (< {threshold:,}) are too few for the collaborative models "
            f"(EASE, sequential rules, co-purchase); they are scaled by {interactions:,} / {threshold:,} so none "
            "dominates, and recommendations lean on text similarity and complements (another category of a "
            "department the customer buys from)")


def catalog_notes(products: pd.DataFrame | None, inter: pd.DataFrame | None,
                  users: pd.DataFrame | None = None) -> list[str]:
    """What a load keeps but a user should know: it changes which claims a narrative can make."""
    if products is None:
        return placeholder_notes(users, "users")
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
        if small := small_shop_note(len(inter)):
            notes.append(small)
    return notes + placeholder_notes(products, "products") + order_notes(products) + placeholder_notes(users, "users")


def check_files(products: str | Path, interactions: str | Path | None = None, users: str | Path | None = None,
                column_map: str | Path | None = None) -> tuple[str, int]:
    """The report for a custom catalog's files, and the number of invalid rows plus files that cannot load
    (non-zero means "not ready")."""
    out = ["recnarr data check"]
    try:
        cmap = cat.load_column_map(column_map)
    except cat.CatalogError as e:
        return "\n".join([*out, f"column map: cannot load: {e}"]), 1
    if column_map:
        out.append(f"column map: {column_map}")
    sec, prods, bad, failed = _section(Path(products), "products", cmap, lambda t, r: cat.products_from_table(
        t, cmap, skip_invalid=True, report=r))
    out += sec
    failures = [failed] if failed else []
    usr = None
    if users:
        sec, usr, b, failed = _section(Path(users), "users", cmap, lambda t, r: cat.users_from_table(
            t, cmap, skip_invalid=True, report=r))
        out, bad, failures = out + sec, bad + b, failures + ([failed] if failed else [])
    inter = None
    if interactions:
        known = [] if prods is None else prods["id"]
        sec, inter, b, failed = _section(Path(interactions), "interactions", cmap, lambda t, r: cat.interactions_from_table(
            t, known, None if usr is None else usr["id"], cmap, skip_invalid=True, report=r,
            products_file=Path(products).name, users_file=Path(users).name if users else ""))
        out, bad, failures = out + sec, bad + b, failures + ([failed] if failed else [])
        if prods is None:
            out.append("  (product ids not checked: the products file did not load)")
    out += [f"note: {n}" for n in catalog_notes(prods, inter, usr)]
    results = failures + ([f"{bad:,} invalid rows: fix them, or load with data.skip_invalid=true to skip and "
                           "report them"] if bad else [])
    out.append("result: " + ("; ".join(results) or "ready to load (`recnarr data load`)"))
    return "\n".join(out), bad + len(failures)
