"""Narrative records from a dataset: what is true of one customer and one product, in one place.

The generator builds the record a narrative is written from; `recnarr verify` builds the record a
text is checked against. Both come from here, so a text is judged against the same facts it could
have been written from: the product row, the customer's interactions (each with its own date and
event), their name, and the item bought in the same orders by the most customers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from recnarr.data.claims import MIN_SUPPORT, Pair, bought_together
from recnarr.data.narratives import HistoryItem, NarrativeRecord
from recnarr.data.schema import Dataset, Product, UnknownProduct, UnknownUser, product_from_row


def user_names(users: pd.DataFrame) -> dict[str, str]:
    return {str(u): n for u, n in zip(users["id"], users["name"], strict=True) if isinstance(n, str)}


class RecordBuilder:
    """Indexes a dataset once; `record()` is then a few dictionary look-ups."""

    def __init__(self, dataset: Dataset, min_support: int = MIN_SUPPORT):
        self.min_support = min_support
        self.products = {str(r["id"]): r for r in dataset.products.to_dict("records")}
        inter = dataset.interactions.sort_values("timestamp", kind="stable")
        self.interactions = inter
        # the event of each (customer, item): a history line is told with its own verb ("you rated")
        self.events = dict(zip(zip(inter["user_id"].astype(str), inter["product_id"].astype(str), strict=True),
                               inter["event"], strict=True))
        self.names = user_names(dataset.users)
        self.pairs = bought_together(dataset.interactions)

    def product(self, pid: str) -> Product:
        if pid not in self.products:
            raise UnknownProduct(f"unknown product id {pid!r}")
        return product_from_row(self.products[pid])

    def customer_history(self, user_id: str) -> list[tuple[str, Any, str]]:
        """All of a customer's interactions, oldest first: (product id, timestamp, event)."""
        rows = self.interactions[self.interactions["user_id"].astype(str) == str(user_id)]
        if rows.empty and str(user_id) not in self.names:
            raise UnknownUser(f"unknown user id {user_id!r}")
        return list(zip(rows["product_id"].astype(str), rows["timestamp"], rows["event"], strict=True))

    def history_items(self, history: Sequence[tuple[str, Any]], user_id: str | None = None,
                      max_items: int | None = None) -> list[HistoryItem]:
        """The latest interaction with each item, in time order, with its date and event (a known
        customer's) or neither (an anonymous basket item: no date, no event)."""
        seen: dict[str, tuple[str, Any]] = {}
        for pid, ts in history:
            seen.pop(pid, None)
            seen[pid] = (pid, ts)
        items = []
        kept = list(seen.values())
        for pid, ts in kept[-max_items:] if max_items else kept:
            p = self.product(pid)
            day = pd.Timestamp(ts).date().isoformat() if ts is not None and not pd.isna(ts) else None
            event = self.events.get((str(user_id), pid)) if user_id is not None else None
            items.append(HistoryItem(pid, p.title, p.category, day, p.brand, event))
        return items

    def record(self, product: Product, history: list[HistoryItem], user_id: str | None = None,
               reason_id: str | None = None, tone: str = "warm") -> NarrativeRecord:
        ids = [h.product_id for h in history]
        partner, support = self.pairs.get(product.id, (None, 0))
        pair = None
        if partner in self.products and partner not in ids:
            pair = Pair(str(self.products[partner]["title"]), support)
        return NarrativeRecord(
            product=product, history=history, customer=self.names.get(str(user_id)) if user_id else None,
            reason_index=ids.index(reason_id) + 1 if reason_id in ids else None, pair=pair, tone=tone,
            user_id=user_id, min_support=self.min_support)

    def for_check(self, product_id: str, user_id: str | None = None,
                  history: Sequence[dict[str, Any]] | None = None) -> NarrativeRecord:
        """The record a written text is checked against: the customer's whole history (any past item
        may be cited), or a given history [{"product_id", "date", "event"}] for an anonymous one."""
        if history is not None:
            items = []
            for h in history:
                p = self.product(str(h["product_id"]))
                items.append(HistoryItem(p.id, p.title, p.category, h.get("date"), p.brand, h.get("event")))
            return self.record(self.product(product_id), items)
        past = self.customer_history(user_id) if user_id is not None else []
        items = self.history_items([(pid, ts) for pid, ts, _ in past], user_id)
        return self.record(self.product(product_id), items, user_id)
