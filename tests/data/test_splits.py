"""Time split per user: last baskets held out, whole orders kept together, never earlier than train."""

from __future__ import annotations

import pandas as pd
import pytest

from recnarr.data.catalog import interactions_frame, products_frame, users_frame
from recnarr.data.schema import Dataset
from recnarr.data.splits import check_split, time_split


def toy() -> Dataset:
    rows = [  # user, product, day
        ("a", "p1", 1), ("a", "p2", 2), ("a", "p3", 3), ("a", "p4", 4), ("a", "p5", 5), ("a", "p6", 5),
        ("b", "p1", 1), ("b", "p2", 9),  # two baskets: too short a history, all train
        ("c", "p3", 7), ("c", "p1", 3), ("c", "p2", 3), ("c", "p4", 8),  # out of order in the file
    ]
    inter = interactions_frame({"user_id": u, "product_id": p, "event": "purchase", "quantity": 1,
                                "rating": float("nan"), "timestamp": pd.Timestamp("2020-01-01") + pd.Timedelta(days=d)}
                               for u, p, d in rows)
    prods = products_frame({"id": f"p{i}", "title": f"P{i}", "brand": None, "category": [], "price": 1.0,
                            "currency": "USD", "discount": 0.0, "in_stock": True, "attributes": {},
                            "description": ""} for i in range(1, 7))
    users = users_frame({"id": u, "name": None, "segment": None, "demographics": {}} for u in "abc")
    return Dataset("toy", prods, users, inter)


def test_last_baskets_are_held_out():
    ds = time_split(toy())
    got = list(zip(ds.interactions["user_id"], ds.interactions["product_id"], ds.interactions["split"], strict=True))
    assert got == [
        ("a", "p1", "train"), ("a", "p2", "train"), ("a", "p3", "train"), ("a", "p4", "val"),
        ("a", "p5", "test"), ("a", "p6", "test"),  # one basket (same timestamp): both in test
        ("b", "p1", "train"), ("b", "p2", "train"),
        ("c", "p3", "val"), ("c", "p1", "train"), ("c", "p2", "train"), ("c", "p4", "test"),
    ]
    assert ds.meta["split"]["counts"] == {"train": 7, "val": 2, "test": 3}
    check_split(ds.interactions)


def test_holdout_sizes():
    ds = time_split(toy(), holdout_val=0, holdout_test=2, min_history=3)
    a = ds.history("a")
    assert a["split"].tolist() == ["train", "train", "train", "test", "test", "test"]
    assert set(ds.interactions["split"]) == {"train", "test"}
    with pytest.raises(ValueError, match=">= 0"):
        time_split(toy(), holdout_val=-1)


def test_check_split_catches_leaks():
    ds = time_split(toy())
    bad = ds.interactions.copy()
    bad.loc[(bad["user_id"] == "a") & (bad["product_id"] == "p1"), "split"] = "test"
    with pytest.raises(AssertionError, match="user 'a'"):
        check_split(bad)


def test_superstore_split(superstore):
    ds = time_split(superstore)
    it = ds.interactions
    check_split(it)  # no user's val/test row is earlier than (or simultaneous with) their train rows
    for _, g in it.groupby("user_id"):
        if (g["split"] == "test").any() and (g["split"] == "train").any():
            assert g.loc[g["split"] == "test", "timestamp"].min() > g.loc[g["split"] == "train", "timestamp"].max()
    # an order (same user + date) is never split across train/val/test
    assert (it.groupby(["user_id", "timestamp"])["split"].nunique() == 1).all()
    c = ds.meta["split"]["counts"]
    assert c["train"] + c["val"] + c["test"] == 9994 and c["test"] > 1000 and c["val"] > 1000
    assert len(it) == len(superstore.interactions)  # nothing dropped
