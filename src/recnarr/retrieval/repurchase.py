"""Repurchase sense per leaf category, learned from purchases: which leaves customers buy again, and when.

Per leaf category L (the last element of a product's category path, case-insensitive, as the
per-category cap counts it) from the purchase events (purchase, cart) of the statistics' interactions:
- repeat rate: of the customers who bought an item of L, the share who bought an item of L on a later
  day again (another item or the same one);
- item repeat rate: the share who bought the very same item on a later day again;
- interval: the median number of days between one customer's consecutive purchase days of L.

Small counts are shrunk toward the department (the path's first element), and the department toward
the catalog: rate_L = (repeaters_L + m * rate_dept) / (buyers_L + m), m = `repurchase_prior` pseudo
customers; intervals likewise in log days, with m pseudo gaps.

A leaf is *durable* when few of its buyers buy it again (shrunk repeat rate < `durable_below`) and it
is expensive for the catalog (median price >= `durable_price_ratio` x the catalog's median price; where
prices are unknown the repeat rate decides alone). The price condition is what a merchandiser means by
durable: in Superstore, envelopes and fasteners are bought again by few (10-19%) because few buy them at
all, and blocking them for a year would be absurd; appliances, bookcases, copiers, machines and tables
are both.
Without any repeat data (no customer bought a leaf on two days, e.g. a new shop), the price condition
decides alone and the intervals are `durable_interval_days` / `consumable_interval_days`.

What the recommender does with it (recnarr.retrieval.recommender): no item of a durable leaf while a
purchase of that leaf is younger than its interval; consumable leaves may come back, and an exact item
only where customers did buy an item of the leaf again and its item repeat rate reaches `rebuy_item_rate`. `retrieval.rebuy_categories` and
`retrieval.durable_categories` override the learned sense per leaf.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

PURCHASE_EVENTS = ("purchase", "cart")


@dataclass(frozen=True)
class LeafSense:
    """What the data says about buying one leaf category again."""

    leaf: str  # lower-case leaf category
    department: str  # lower-case first element of the path
    buyers: int  # customers with a purchase of the leaf
    repeat_rate: float  # shrunk: share of buyers who bought the leaf again on a later day
    item_repeat_rate: float  # shrunk: share of buyers who bought the same item again on a later day
    interval_days: float  # shrunk typical days between purchases of the leaf
    durable: bool
    rebuy_items: bool  # an exact item already bought may be recommended again
    source: str  # "data" | "price rule" (no repeat data) | "override"


def leaf_of(path: Sequence[str] | None) -> str:
    return str(path[-1]).strip().lower() if path is not None and len(path) else ""


def department_of(path: Sequence[str] | None) -> str:
    return str(path[0]).strip().lower() if path is not None and len(path) else ""


def _shrink(num: float, den: float, prior: float, m: float) -> float:
    return (num + m * prior) / (den + m)


class RepurchaseModel:
    """Per leaf category: repeat rate, item repeat rate, interval, durable or not (see module doc)."""

    def __init__(self, ids: Sequence[str], paths: Sequence[Sequence[str] | None], prices: Sequence[float],
                 interactions: pd.DataFrame, cfg) -> None:
        """ids / paths / prices: the catalog's products (the index's columns); interactions: the
        statistics' interactions (train rows); cfg: a RetrievalConfig."""
        leaf = {str(p): leaf_of(c) for p, c in zip(ids, paths, strict=True)}
        dept = {str(p): department_of(c) for p, c in zip(ids, paths, strict=True)}
        self.leaf_of_product = leaf
        self.senses: dict[str, LeafSense] = {}
        buys = interactions[interactions["event"].astype(str).isin(PURCHASE_EVENTS)] if len(interactions) else None
        self.purchases = 0 if buys is None else len(buys)
        if buys is None or not len(buys):
            return  # ratings and views only (MovieLens): a film of a genre seen is no repeat purchase
        price = pd.Series(np.asarray(prices, dtype=float), index=[leaf[str(p)] for p in ids])
        known = price[price > 0]
        catalog_median = float(known.median()) if len(known) else 0.0
        leaf_median = known.groupby(level=0).median()
        b = pd.DataFrame({"user": buys["user_id"].astype(str).to_numpy(),
                          "item": buys["product_id"].astype(str).to_numpy(),
                          "day": pd.to_datetime(buys["timestamp"], utc=True).dt.floor("D").to_numpy()})
        b["leaf"], b["dept"] = b["item"].map(leaf), b["item"].map(dept)
        b = b.dropna(subset=["leaf"]).drop_duplicates(["user", "item", "day"])
        per = b.drop_duplicates(["user", "leaf", "day"]).sort_values(["user", "leaf", "day"])
        days = per.groupby(["user", "leaf"])["day"].nunique()
        items = b.groupby(["user", "leaf", "item"])["day"].nunique().groupby(level=[0, 1]).max()
        gap = per.groupby(["user", "leaf"])["day"].diff().dt.days.dropna()
        gap_leaf = per.loc[gap.index, "leaf"]
        leaf_dept = b.drop_duplicates("leaf").set_index("leaf")["dept"]
        counts = pd.DataFrame({"buyers": days.groupby(level=1).size(), "rep": (days >= 2).groupby(level=1).sum(),
                               "item_rep": (items >= 2).groupby(level=1).sum()})
        counts["dept"] = leaf_dept.reindex(counts.index)
        lg = pd.DataFrame({"leaf": gap_leaf.to_numpy(), "log": np.log1p(gap.to_numpy())})
        lg["dept"] = leaf_dept.reindex(lg["leaf"]).to_numpy()
        m = cfg.repurchase_prior
        has_repeats = bool(counts["rep"].sum() > 0)
        cat_rate = counts["rep"].sum() / counts["buyers"].sum()
        cat_item = counts["item_rep"].sum() / counts["buyers"].sum()
        cat_log = float(lg["log"].median()) if len(lg) else 0.0
        by_dept = counts.groupby("dept")[["buyers", "rep", "item_rep"]].sum()
        log_dept = lg.groupby("dept")["log"].agg(["median", "size"])
        for name, row in counts.iterrows():
            d = row["dept"]
            dr = _shrink(by_dept.loc[d, "rep"], by_dept.loc[d, "buyers"], cat_rate, m)
            di = _shrink(by_dept.loc[d, "item_rep"], by_dept.loc[d, "buyers"], cat_item, m)
            rate = _shrink(row["rep"], row["buyers"], dr, m)
            item_rate = _shrink(row["item_rep"], row["buyers"], di, m)
            lm = float(leaf_median.get(name, 0.0))
            expensive = catalog_median > 0 and lm >= cfg.durable_price_ratio * catalog_median
            if has_repeats:
                durable = rate < cfg.durable_below and (expensive or lm <= 0)
                # a durable's interval shrinks toward the durable default, not toward the catalog's gaps,
                # which are mostly consumables' (a sofa nobody bought twice is not rebought monthly)
                top = math.log1p(cfg.durable_interval_days) if durable else cat_log
                mine = lg.loc[lg["leaf"] == name, "log"]
                dl = _shrink(log_dept.loc[d, "median"] * log_dept.loc[d, "size"], log_dept.loc[d, "size"], top, m) \
                    if d in log_dept.index else top
                log_days = _shrink(mine.median() * len(mine), len(mine), dl, m) if len(mine) else dl
                interval, source = float(np.expm1(log_days)), "data"
            else:
                durable, source = expensive, "price rule"
                interval = cfg.durable_interval_days if durable else cfg.consumable_interval_days
            self.senses[name] = LeafSense(name, d, int(row["buyers"]), float(rate), float(item_rate), interval,
                                          durable, bool(not durable and row["item_rep"] > 0
                                                        and item_rate >= cfg.rebuy_item_rate), source)
        self._override(cfg)

    def _override(self, cfg) -> None:
        """`rebuy_categories` (consumable, exact items may come back) and `durable_categories` win over
        the data; an override naming a leaf nobody bought still applies."""
        for names, durable in ((cfg.rebuy_categories, False), (cfg.durable_categories, True)):
            for raw in names:
                name = raw.strip().lower()
                old = self.senses.get(name)
                interval = old.interval_days if old else (
                    cfg.durable_interval_days if durable else cfg.consumable_interval_days)
                self.senses[name] = LeafSense(name, old.department if old else "", old.buyers if old else 0,
                                              old.repeat_rate if old else 0.0, old.item_repeat_rate if old else 0.0,
                                              interval, durable, not durable, "override")

    def sense(self, product_id: str) -> LeafSense | None:
        return self.senses.get(self.leaf_of_product.get(product_id, ""))

    def rebuyable(self, product_id: str) -> bool:
        """The very same item may be recommended again to a customer who bought it."""
        s = self.sense(product_id)
        return s is not None and s.rebuy_items

    def blocked_leaves(self, history_ids: Sequence[str], times: Sequence[pd.Timestamp | None]) -> set[str]:
        """Durable leaves bought within their interval before the history's newest time (an item without a
        time counts as bought now: a basket is current). The newest time stands for "now" so that a
        replayed history (evaluation, batch) is judged as on the day after its last purchase."""
        known = [t for t in times if t is not None]
        now = max(known) if known else None
        out = set()
        for pid, t in zip(history_ids, times, strict=True):
            s = self.sense(pid)
            if s is None or not s.durable:
                continue
            age = 0.0 if t is None or now is None else (now - t).total_seconds() / 86400.0
            if age < s.interval_days:
                out.add(s.leaf)
        return out

    def table(self) -> pd.DataFrame:
        """Every leaf's sense, durable first, for logs and reports."""
        rows = [vars(s) for s in self.senses.values()]
        if not rows:
            return pd.DataFrame(columns=list(LeafSense.__dataclass_fields__))
        return pd.DataFrame(rows).sort_values(["durable", "repeat_rate"], ascending=[False, True])
