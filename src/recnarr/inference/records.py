"""Narrative records from a dataset: what is true of one customer and one product, in one place.

The generator builds the record a narrative is written from; `recnarr verify` builds the record a
text is checked against. Both come from here, so a text is judged against the same facts it could
have been written from: the product row, the customer's interactions (each with its own date and
event), their name, and the item bought in the same orders by the most customers.

Which past items a narrative may cite is the recommender's call, not the writer's: `evidence_record`
puts in the prompt only the items that added most to the product's score (`Recommender.contributions`,
largest first), each with the link a record backs (`claims.link_text`: how many customers had both,
counted here on the raw interactions; the same category; a shared genre; a lexicon pair). An item
with no such link is not cited, and when the top contributor has none, no past item is: citing the
second would give a reason that is not the one that made the pick.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from recnarr.data.claims import MIN_SUPPORT, Pair, bought_together, genres, is_film, relation
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
        self.ratings = {(str(u), str(p)): float(r) for u, p, e, r in zip(
            inter["user_id"], inter["product_id"], inter["event"], inter["rating"], strict=True)
            if e == "rating" and r is not None and r == r}
        # who had each product, by event: the support of "was bought by N customers who also bought"
        self.holders: dict[tuple[str, str], set[str]] = {}
        for (event, pid), users in inter.groupby(["event", "product_id"])["user_id"]:
            self.holders[(str(event), str(pid))] = set(users.astype(str))

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
            rating = self.ratings.get((str(user_id), pid)) if event == "rating" else None
            items.append(HistoryItem(pid, p.title, p.category, day, p.brand, event, rating))
        return items

    def support(self, a: str, b: str, event: str) -> int:
        """Distinct customers with an `event` interaction with both a and b, on the raw interactions."""
        return len(self.holders.get((event, a), set()) & self.holders.get((event, b), set()))

    def linked(self, product: Product, h: HistoryItem, evidence: str | None = None) -> HistoryItem:
        """The item with its link to the product: by the recommender's evidence where a record backs it
        (a collaborative term: the customers who had both), else the categories; films prefer the genre
        they share (a count of co-raters reads as a statistic, not a reason)."""
        n = self.support(product.id, h.product_id, h.event) if h.event else 0
        past = self.products.get(h.product_id)
        rel = relation(product, h.category, genres(past.get("attributes") if past is not None else None))
        counted = n >= self.min_support
        if is_film(product.category) and rel:
            link = rel
        elif evidence in ("ease", "copurchase", "sequence") and counted:
            link = "count"
        else:
            link = rel or ("count" if counted else None)
        return replace(h, link=link, support=n, evidence=evidence)

    def evidence_record(self, product: Product, history: list[HistoryItem], user_id: str | None,
                        reasons: Sequence[Any], tone: str = "warm", max_items: int = 4) -> NarrativeRecord:
        """The record a narrative is written from: the past items of the product's evidence (`reasons`,
        largest contribution first) that a record can link to it; none when the top one has no link."""
        by_id = {h.product_id: h for h in history}
        items: list[HistoryItem] = []
        for r in reasons:
            pid = r["product_id"] if isinstance(r, dict) else r.product_id
            kind = r.get("kind") if isinstance(r, dict) else getattr(r, "kind", None)
            if pid not in by_id:
                continue
            h = self.linked(product, by_id[pid], kind)
            if h.link is None and not items:
                break  # the top contributor cannot be told: cite nothing rather than the runner-up
            if h.link is not None:
                items.append(h)
        items = items[:max_items]
        rec = self.record(product, items, user_id, items[0].product_id if items else None, tone)
        if items:
            rec.reason_kind = items[0].evidence or "similar"
        return rec

    def record(self, product: Product, history: list[HistoryItem], user_id: str | None = None,
               reason_id: str | None = None, tone: str = "warm") -> NarrativeRecord:
        history = [h if h.link is not None else self.linked(product, h, h.evidence) for h in history]
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
                items.append(HistoryItem(p.id, p.title, p.category, h.get("date"), p.brand, h.get("event"),
                                         h.get("rating")))
            return self.record(self.product(product_id), items)
        past = self.customer_history(user_id) if user_id is not None else []
        items = self.history_items([(pid, ts) for pid, ts, _ in past], user_id)
        return self.record(self.product(product_id), items, user_id)
