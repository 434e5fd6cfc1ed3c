"""Fine-tuning examples (prompt + slotted target) from real histories.

For each user, the history is their train-split purchases (most recent distinct products); the
candidates are what the retriever recommends from that history plus the user's real next purchase,
with the retrieval reason (nearest past purchase) and the item most customers bought in the same
orders (`claims.bought_together`; claimed only with `narratives.min_support` customers or more).
Splits are by user AND by product: a held-out share of products never appears as a candidate in
train/val, and the test set uses only those products and unseen users, so evaluation measures
how the model describes products it has never seen. `recnarr data narratives` (recnarr.stages.data)
writes them.

Output `<run>/narratives/`: `{train,val,test}.jsonl` (one example a line: record, prompt, target),
`writer_stats.json` (diversity, lengths, FMR and attribute precision on held-out products), config.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from recnarr.config import RunConfig
from recnarr.data import claims
from recnarr.data.narratives import HistoryItem, NarrativeRecord, Writer, format_prompt
from recnarr.data.schema import Dataset, product_from_row
from recnarr.evaluation import metrics
from recnarr.inference.grounding import ground

# (history product ids, allowed candidate ids, k) -> [(product id, nearest history index (1-based) or None)]
CandidateFn = Callable[[list[str], set[str], int], list[tuple[str, int | None]]]


def split_products(ds: Dataset, fraction: float, seed: int) -> set[str]:
    ids = sorted(ds.products["id"].astype(str))
    rng = random.Random(seed)
    return set(rng.sample(ids, int(round(len(ids) * fraction))))


def build_records(ds: Dataset, cfg: RunConfig, candidates: CandidateFn) -> dict[str, list[NarrativeRecord]]:
    """Records for train / val / test (see the module docstring for the splits)."""
    ncfg = cfg.narratives
    rng = random.Random(ncfg.seed)
    heldout = split_products(ds, ncfg.heldout_product_fraction, ncfg.seed)
    all_ids = set(ds.products["id"].astype(str))
    products = {str(r["id"]): product_from_row(r) for _, r in ds.products.iterrows()}
    users = {str(r["id"]): r for _, r in ds.users.iterrows()}
    pairs = claims.bought_together(ds.interactions)
    user_ids = sorted(ds.interactions["user_id"].astype(str).unique())
    rng.shuffle(user_ids)
    if ncfg.max_users:
        user_ids = user_ids[: ncfg.max_users]
    n_test = max(1, len(user_ids) // 10)
    n_val = max(1, len(user_ids) // 20)
    groups = {"test": user_ids[:n_test], "val": user_ids[n_test : n_test + n_val], "train": user_ids[n_test + n_val :]}
    out: dict[str, list[NarrativeRecord]] = {}
    for split, uids in groups.items():
        allowed = heldout if split == "test" else all_ids - heldout
        recs: list[NarrativeRecord] = []
        for uid in tqdm(uids, desc=f"narratives:{split}", disable=len(uids) < 50):
            hist = ds.history(uid)
            train_hist = hist[hist["split"] == "train"] if "split" in hist else hist
            if train_hist.empty:
                continue
            recent = train_hist.drop_duplicates("product_id", keep="last").tail(ncfg.max_history)
            history = [
                HistoryItem(str(r.product_id), products[str(r.product_id)].title, products[str(r.product_id)].category,
                            pd.Timestamp(r.timestamp).date().isoformat(), products[str(r.product_id)].brand, r.event)
                for r in recent.itertuples()
            ]
            hist_ids = [h.product_id for h in history]
            bought = set(hist["product_id"].astype(str))
            pool = allowed - bought
            picked = candidates(hist_ids, pool, ncfg.pairs_per_user)
            name = users[uid]["name"] if uid in users else None
            for pid, nearest in picked[: ncfg.pairs_per_user]:
                partner, support = pairs.get(pid, (None, 0))
                recs.append(NarrativeRecord(
                    product=products[pid], history=history, customer=name if isinstance(name, str) else None,
                    reason_index=nearest, reason_kind="similar",
                    pair=claims.Pair(products[partner].title, support)
                    if partner in products and partner not in hist_ids else None,
                    tone=rng.choice(list(ncfg.tones)), user_id=uid, min_support=ncfg.min_support,
                ))
        out[split] = recs
    return out


def write_examples(records: dict[str, list[NarrativeRecord]], folder: Path, seed: int) -> dict:
    """Write the jsonl files; every target is filled and verified before it is kept."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = Writer(seed)
    stats: dict = {"counts": {}, "rejected": 0}
    for split, recs in records.items():
        filled, prods = [], []
        tmp = folder / f".{split}.jsonl.tmp"
        with open(tmp, "w") as f:
            for rec in recs:
                target = writer.write(rec)
                check = ground(target, rec)
                if not check.ok:  # the writer states only record facts; a failure here is a bug to see
                    stats["rejected"] += 1
                    stats.setdefault("rejections", []).append(check.errors[:3])
                    continue
                filled.append(check.text)
                prods.append(rec.product)
                f.write(json.dumps({"record": rec.to_json(), "prompt": format_prompt(rec), "target": target}) + "\n")
        tmp.replace(folder / f"{split}.jsonl")
        stats["counts"][split] = len(filled)
        stats[split] = {
            "distinct_1": metrics.distinct_n(filled, 1), "distinct_2": metrics.distinct_n(filled, 2),
            "unique_ratio": metrics.unique_ratio(filled), "length_words": metrics.length_stats(filled),
            "fmr": metrics.fmr(filled, prods), "fcr": metrics.fcr(filled, prods),
        }
    return stats


def load_examples(folder: str | Path, split: str) -> list[dict]:
    path = Path(folder) / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `recnarr data narratives` first")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def retriever_candidates(recommender, products: set[str]) -> CandidateFn:
    """Candidates from the real retriever, restricted to `allowed` ids, with the nearest past purchase."""
    from recnarr.retrieval.recommender import Filters

    def fn(history_ids: list[str], allowed: set[str], k: int) -> list[tuple[str, int | None]]:
        recs = recommender.recommend(history_ids, filters=Filters(exclude_ids=sorted(products - allowed)), k=k)
        out = []
        for r in recs:
            near = r.reasons[0].product_id if r.reasons else None
            out.append((r.product.id, history_ids.index(near) + 1 if near in history_ids else None))
        return out

    return fn
