"""Time-based train / validation / test split of interactions, per user (last events held out).

The unit of holding out is a *basket*: all of one user's interactions with the same timestamp. In
Superstore that is one order (its lines share the order date), so an order is never split between
train and test, and nothing in test is simultaneous with something in train. Per user, baskets are
ordered by time; the last `holdout_test` baskets are test, the `holdout_val` before them validation,
the rest train. Users with fewer than `max(min_history, holdout_val + holdout_test + 1)` baskets stay
entirely in train (there would be no history left to learn from).

Guarantee (tested): for every user, every val timestamp > every train timestamp, and every test
timestamp > every val timestamp. The split depends only on the data (no randomness).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recnarr.data.schema import Dataset

SPLITS = ("train", "val", "test")


def time_split(ds: Dataset, holdout_val: int = 1, holdout_test: int = 1, min_history: int = 3) -> Dataset:
    """A copy of `ds` whose interactions carry a `split` column (train / val / test); rows keep their order."""
    if holdout_val < 0 or holdout_test < 0:
        raise ValueError(f"holdout_val and holdout_test must be >= 0, got {holdout_val} and {holdout_test}")
    inter = ds.interactions
    need = max(min_history, holdout_val + holdout_test + 1)
    split = np.full(len(inter), "train", dtype=object)
    if len(inter):
        # basket rank from the end, per user: 0 = the user's latest timestamp
        ts = inter["timestamp"]
        n_baskets = inter.groupby("user_id")["timestamp"].transform("nunique").to_numpy()
        rank_from_end = ts.groupby(inter["user_id"]).rank(method="dense", ascending=False).to_numpy() - 1
        eligible = n_baskets >= need
        split[eligible & (rank_from_end < holdout_test)] = "test"
        split[eligible & (rank_from_end >= holdout_test) & (rank_from_end < holdout_test + holdout_val)] = "val"
    out = inter.copy()
    out["split"] = pd.Series(split, index=inter.index, dtype="str")
    meta = {**ds.meta, "split": {"holdout_val": holdout_val, "holdout_test": holdout_test, "min_history": min_history,
                                 "unit": "basket (same user and timestamp)", "counts": split_counts(out)}}
    return Dataset(ds.name, ds.products, ds.users, out, meta)


def split_counts(interactions: pd.DataFrame) -> dict[str, int]:
    counts = interactions["split"].value_counts() if "split" in interactions else pd.Series(dtype=int)
    return {s: int(counts.get(s, 0)) for s in SPLITS}


def check_split(interactions: pd.DataFrame) -> None:
    """Raise if any user's val/test events are not strictly later than their train/val events."""
    t = interactions
    g = t.groupby(["user_id", "split"])["timestamp"].agg(["min", "max"]).unstack("split")
    for earlier, later in (("train", "val"), ("val", "test"), ("train", "test")):
        if ("max", earlier) in g and ("min", later) in g:
            bad = g[("min", later)] <= g[("max", earlier)]
            if bad.any():
                user = bad[bad].index[0]
                raise AssertionError(f"user {user!r}: a {later} event is not later than all {earlier} events")
