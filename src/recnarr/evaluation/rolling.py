"""Rolling-origin folds for `recnarr evaluate retrieval`: several time cutoffs, models refit per cutoff.

One time split gives Superstore about 1,400 targets and ten hits per method: too few to tell methods
apart. Here each cutoff c (the interaction-time quantiles `eval.rolling_quantiles`) is a fold:
- the models see only what happened before c (every user's interactions with a timestamp < c), so
  nothing of the future leaks in, for any user;
- a user with a positive before c is a case if they make a purchase in [c, next cutoff): the targets
  are the new positives of their first basket (one timestamp) after c, i.e. their next purchase;
- baskets of the validation split (each user's second-last basket) are never targets: the global defaults
  were chosen there long ago, so measuring on them would flatter the tuned methods.
Validation folds (`until`): the same construction at earlier cutoffs whose last target window ends where
the first test fold begins, so the blend weights and the peers' settings are chosen on purchases that all
precede every test target (`recnarr.evaluation.retrieval.tune_dataset`).
The folds' cases are pooled; one user can be a case in several folds, so intervals resample users
(`paired_ci(groups=...)`), not cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recnarr.data.schema import Dataset
from recnarr.retrieval.recommender import positive_interactions


@dataclass
class Fold:
    cutoff: pd.Timestamp
    before: pd.DataFrame  # every interaction before the cutoff (no `split` column: all of it is train)
    cases: list  # EvalCase (recnarr.evaluation.retrieval)


def cutoffs(timestamps: pd.Series, quantiles: Sequence[float]) -> list[pd.Timestamp]:
    """Distinct cutoffs at these quantiles of the interaction times, oldest first."""
    if not len(timestamps):
        return []
    for q in quantiles:
        if not 0 < q < 1:
            raise ValueError(f"eval.rolling_quantiles: each quantile must be in (0, 1), got {q}")
    ts = pd.to_datetime(timestamps)
    return sorted(set(ts.quantile(list(quantiles), interpolation="lower")))


@dataclass
class EvalCase:
    """One customer's question at one cutoff: their history so far, the next basket to predict."""

    user_id: str
    history: list[tuple[str, Any]]  # (product id, timestamp), oldest first: train + val positives
    targets: set[str]  # new test positives
    seen: set[str] = field(default_factory=set)  # every item interacted with before the split (excluded)


def rolling_folds(ds: Dataset, quantiles: Sequence[float], min_rating: float = 4.0,
                  max_users: int | None = None, seed: int = 0, until: float | None = None) -> list[Fold]:
    """One fold per cutoff (see the module doc); `max_users` caps the cases per fold (a seeded sample).
    `until`: a quantile above every cutoff where the last fold's targets end (validation folds); without
    it the last fold's targets run to the end of the data."""
    inter = ds.interactions
    ts = pd.to_datetime(inter["timestamp"])
    if until is not None and quantiles and until <= max(quantiles):
        raise ValueError(f"rolling_folds: until={until} must lie above every cutoff quantile {list(quantiles)}")
    cuts = cutoffs(ts, [*quantiles, until] if until is not None else quantiles)
    stop = cuts.pop() if until is not None and cuts else None
    pos = positive_interactions(inter, min_rating)
    pos_ts = pd.to_datetime(pos["timestamp"])
    val = pos["split"].eq("val") if "split" in pos.columns else pd.Series(False, index=pos.index)
    folds = []
    for i, c in enumerate(cuts):
        end = cuts[i + 1] if i + 1 < len(cuts) else stop
        before = inter[ts < c].drop(columns=["split"], errors="ignore")
        seen_by = before.groupby(before["user_id"].astype(str))["product_id"].agg(lambda s: set(s.astype(str)))
        past = pos[pos_ts < c].sort_values("timestamp", kind="stable")
        after = pos[(pos_ts >= c) & (True if end is None else pos_ts < end)]
        first = after.groupby("user_id")["timestamp"].transform("min")
        nxt = after[after["timestamp"] == first]
        tuned = set(nxt.loc[val.reindex(nxt.index, fill_value=False), "user_id"].astype(str))
        histories = {str(u): list(zip(g["product_id"].astype(str), g["timestamp"], strict=True))
                     for u, g in past.groupby("user_id", sort=False)}
        cases = []
        for uid, rows in nxt.groupby(nxt["user_id"].astype(str), sort=True):
            seen = seen_by.get(uid, set())
            targets = set(rows["product_id"].astype(str)) - seen
            if uid in histories and targets and uid not in tuned:
                cases.append(EvalCase(uid, histories[uid], targets, seen))
        if max_users is not None and len(cases) > max_users:
            pick = np.random.default_rng(seed + i).choice(len(cases), max_users, replace=False)
            cases = [cases[j] for j in sorted(pick)]
        folds.append(Fold(c, before, cases))
    return folds
