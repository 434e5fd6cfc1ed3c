"""Values that hold the place of real data: a category named "category", a description that repeats the id.

They pass every type check (they are non-empty text), so a load keeps them, and then a narrative says
"a great pick in Category" or quotes "Sample Product". `recnarr data check` names them beside the other
notes, so a shop fixes the export (a header row repeated as data, a test fixture left in, a column map
that points at the wrong column) before a model is trained on them. Nothing here rejects a value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# values an export writes where it has nothing: the same in every field
_NULLISH = frozenset({"none", "null", "nil", "n/a", "na", "nan", "unknown", "undefined", "-", "--", "?"})
# a header landing in a row ("category" under the category column), field by field; "misc" and "generic"
# are real words shops use, so they are not here
_COLUMN_NAMES = {
    "category": {"category", "categories", "subcategory", "sub category", "sub-category", "type",
                 "product type", "department", "dept", "class", "level", "segment"},
    "brand": {"brand", "brand name", "manufacturer", "make", "vendor"},
    "title": {"name", "title", "product", "product name", "item", "item name"},
    "name": {"name", "user", "username", "user name", "customer", "customer name", "full name"},
    "description": {"description", "desc", "details", "text"},
}
_FILLER = frozenset({"tbd", "todo", "to do", "tba", "xxx", "..."})
# a test fixture's name: "Sample Product", "Test User 3", "Dummy", "Lorem ipsum"
_SAMPLE = re.compile(r"(sample|test|dummy|placeholder|lorem)\b", re.IGNORECASE)


def _norm(v: Any) -> str:
    """Case- and space-insensitive form; `_` counts as a space so "sub_category" matches "sub category"."""
    return " ".join(str(v).replace("_", " ").casefold().split())


def placeholder(field: str, value: Any, product_id: str = "", title: str = "") -> str | None:
    """Why `value` of `field` ("title", "brand", "category" (one level), "description" or "name", a
    user's name) is placeholder data rather than real data, or None. Empty values are None: a missing
    value is reported as missing, not as a placeholder."""
    if value is None or not isinstance(value, str) or not value.strip():
        return None
    v = _norm(value)
    if v in _COLUMN_NAMES.get(field, ()):
        return "a column name"
    if v in _NULLISH:
        return "a null marker"
    if field == "description":
        if v.startswith("lorem ipsum") or v in _FILLER:
            return "filler text"
        if product_id and v == _norm(product_id):
            return "the product id"
        if title and v == _norm(title):
            return "the title repeated"
    elif field in ("title", "name") and _SAMPLE.match(v):
        return "test or sample data"
    return None


def inconsistent_category_order(paths: Iterable[list[str]]) -> list[str]:
    """Levels that are the first of some paths and the last of others ("Furniture > Chairs" beside
    "Chairs > Furniture"): the rows do not agree on which level is the most general, as when two exports
    were concatenated with their category columns in another order. One finding per level, most rows
    first; empty when the order is consistent. Paths of one level say nothing about order and are skipped."""
    first: dict[str, list] = {}  # level (normalized) -> [count, an example path]
    last: dict[str, list] = {}
    for path in paths:
        levels = [str(p) for p in path]
        if len(levels) < 2:
            continue
        for seen, level in ((first, levels[0]), (last, levels[-1])):
            entry = seen.setdefault(_norm(level), [0, levels])
            entry[0] += 1
    both = sorted(first.keys() & last.keys(), key=lambda k: (-(first[k][0] + last[k][0]), k))
    out, told = [], set()
    for k in both:
        (nf, pf), (nl, pl) = first[k], last[k]
        if (tuple(pf), tuple(pl)) in told:  # "A > B" vs "B > A" was already said, for A
            continue
        told |= {(tuple(pf), tuple(pl)), (tuple(pl), tuple(pf))}
        name = pf[0]
        out.append(f"{name!r} is the first level of {nf:,} path{'s' if nf != 1 else ''} (e.g. "
                   f"{' > '.join(pf)}) and the last of {nl:,} (e.g. {' > '.join(pl)})")
    return out
