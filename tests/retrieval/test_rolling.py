"""Rolling-origin folds, category hit and the user-resampling bootstrap of `recnarr evaluate retrieval`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from retrieval_fixtures import random_catalog, random_interactions

from recnarr.data.schema import Dataset
from recnarr.evaluation import retrieval as ev
from recnarr.evaluation.rolling import cutoffs, rolling_folds


def _dataset() -> Dataset:
    df, _ = random_catalog(n=80)
    inter = random_interactions(list(df["id"]), n_users=30, per_user=8)
    return Dataset("rand", df, inter[["user_id"]].drop_duplicates().rename(columns={"user_id": "id"}), inter)


def test_folds_see_only_the_past_and_target_the_next_basket():
    ds = _dataset()
    inter = ds.interactions
    folds = rolling_folds(ds, [0.4, 0.6, 0.8])
    assert len(folds) == 3 and sum(len(f.cases) for f in folds) > 0
    v = inter[inter["split"] == "val"]
    val = set(zip(v["user_id"], v["product_id"], strict=True))
    for i, f in enumerate(folds):
        assert (f.before["timestamp"] < f.cutoff).all() and "split" not in f.before.columns
        end = folds[i + 1].cutoff if i + 1 < len(folds) else pd.Timestamp.max
        for c in f.cases:
            assert all(t < f.cutoff for _, t in c.history) and c.targets and not c.targets & c.seen
            mine = inter[(inter["user_id"] == c.user_id) & (inter["timestamp"] >= f.cutoff) & (inter["timestamp"] < end)]
            first = mine[mine["timestamp"] == mine["timestamp"].min()]
            assert c.targets <= set(first["product_id"])  # the next basket, nothing later
            assert not {(c.user_id, p) for p in c.targets} & val  # tuning data is never measured
    with pytest.raises(ValueError, match="rolling_quantiles"):
        cutoffs(inter["timestamp"], [0.5, 1.0])


def test_category_hit_by_hand():
    leaf = {"a": "Paper", "b": "Paper", "c": "Chairs", "d": "Tables"}
    case = ev.EvalCase("u", [], {"b"})
    got = ev.case_scores([case, ev.EvalCase("v", [], {"d"})], lambda c, k: ["a", "c"], 10, leaf)
    assert got["cat_hit"] == [1.0, 0.0] and got["ndcg"] == [0.0, 0.0]  # the right kind, not the item


def test_paired_ci_resamples_users_and_says_what_is_real():
    rng = np.random.default_rng(0)
    a, b = rng.random(400) + 0.2, rng.random(400)
    users = [f"u{i // 4}" for i in range(400)]
    v = ev.paired_ci(a, b, groups=users)
    assert v["real"] and v["lo"] <= v["diff"] <= v["hi"] and v["diff"] == pytest.approx(0.2 + a.mean() - 0.2 - b.mean())
    same = ev.paired_ci(b, b[::-1], groups=users)
    assert not same["real"]
    # one user's four cases move together: resampling cases would understate the spread
    clustered = np.repeat(rng.standard_normal(100), 4)
    wide = ev.paired_ci(clustered, np.zeros(400), groups=users)
    narrow = ev.paired_ci(clustered, np.zeros(400))
    assert wide["hi"] - wide["lo"] > 1.5 * (narrow["hi"] - narrow["lo"])


def test_validation_folds_end_before_the_test_folds():
    ds = _dataset()
    val = rolling_folds(ds, [0.2, 0.3], until=0.4)
    first_test = rolling_folds(ds, [0.4, 0.6])[0].cutoff
    inter = ds.interactions
    for f in val:
        for c in f.cases:  # every target bought before the first test cutoff
            mine = inter[(inter["user_id"] == c.user_id) & inter["product_id"].isin(c.targets)
                         & (inter["timestamp"] >= f.cutoff)]
            assert (mine["timestamp"].min() < first_test) and c.targets
    with pytest.raises(ValueError, match="until"):
        rolling_folds(ds, [0.2, 0.5], until=0.4)
