"""Read-only catalog look-ups for the routes: products, product search, customers and their histories.

Built once from the loaded generator (its index and dataset); plain pandas / dict work, safe to run
in the framework's thread pool while the model worker generates. Product search is a case-insensitive
substring match over title, brand and category (no embedding model call: it must stay cheap and
answer while the model is busy).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from recnarr.retrieval.recommender import positive_interactions


class Catalog:
    def __init__(self, generator: Any):
        rec = generator.recommender
        self.index = rec.index
        self.recommender = rec
        table = self.index.products
        self._ids = table["id"].astype(str).tolist()
        self._text = [
            " ".join([str(t), str(b or ""), " ".join(str(c) for c in (cat or []))]).lower()
            for t, b, cat in zip(table["title"], table["brand"], table["category"], strict=True)
        ]
        self._in_stock = table["in_stock"].astype(bool).tolist()
        ds = generator.dataset
        inter = ds.interactions
        self.known_users = set(inter["user_id"].astype(str)) if len(inter) else set()
        positives = positive_interactions(inter, rec.cfg.positive_min_rating) if len(inter) else inter
        counts = positives["user_id"].astype(str).value_counts() if len(positives) else pd.Series(dtype=int)
        users = ds.users.copy()
        users["id"] = users["id"].astype(str)
        users = users[users["id"].isin(self.known_users)]
        self._users = [
            {"id": uid, "name": _str_or_none(name), "segment": _str_or_none(seg), "purchases": int(counts.get(uid, 0))}
            for uid, name, seg in zip(users["id"], users.get("name", [None] * len(users)),
                                      users.get("segment", [None] * len(users)), strict=True)
        ]
        listed = {u["id"] for u in self._users}
        self._users += [{"id": uid, "name": None, "segment": None, "purchases": int(counts.get(uid, 0))}
                        for uid in sorted(self.known_users - listed)]
        self._users.sort(key=lambda u: u["id"])
        self._user_by_id = {u["id"]: u for u in self._users}

    @property
    def n_products(self) -> int:
        return len(self._ids)

    @property
    def n_users(self) -> int:
        return len(self._users)

    def has_product(self, product_id: str) -> bool:
        return product_id in self.index

    def product(self, product_id: str):
        """The product as indexed; KeyError if unknown."""
        return self.index.product(product_id)

    def search(self, q: str | None, limit: int, offset: int = 0, in_stock: bool | None = None) -> tuple[list, int]:
        words = (q or "").lower().split()
        hits = [i for i, text in enumerate(self._text)
                if all(w in text for w in words) and (in_stock is None or self._in_stock[i] == in_stock)]
        return [self.index.product(self._ids[i]) for i in hits[offset: offset + limit]], len(hits)

    def users(self, q: str | None, limit: int, offset: int = 0, min_purchases: int = 0) -> tuple[list[dict], int]:
        needle = (q or "").lower().strip()
        hits = [u for u in self._users if u["purchases"] >= min_purchases
                and (not needle or needle in u["id"].lower() or needle in (u["name"] or "").lower())]
        return hits[offset: offset + limit], len(hits)

    def user(self, user_id: str) -> dict | None:
        return self._user_by_id.get(user_id)

    def history(self, user_id: str) -> list[tuple[Any, str | None]]:
        """(Product, ISO timestamp) of a known customer's positive interactions, oldest first; KeyError
        if the user is unknown."""
        if user_id not in self.known_users:
            raise KeyError(user_id)
        out = []
        for pid, ts in self.recommender.user_history(user_id):
            if pid in self.index:
                stamp = None if ts is None or pd.isna(ts) else pd.Timestamp(ts).isoformat()
                out.append((self.index.product(pid), stamp))
        return out


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
