"""Fine-tuning examples (prompt + slotted target) from real histories.

For each user, the retriever recommends from their train-split history; each candidate's record
carries the recommender's own evidence (`RecordBuilder.evidence_record`: the past items that added
most to its score, with the link a record backs), so the targets teach the model to give the reason
that made the pick, and the item most customers bought in the same orders
(`claims.bought_together`; claimed only with `narratives.min_support` customers or more).
Splits are by user AND by product: a held-out share of products never appears as a candidate in
train/val, and the test set uses only those products and unseen users, so evaluation measures
how the model describes products it has never seen. `recnarr data narratives` (recnarr.stages.data)
writes them; the file format is `recnarr.data.examples`.

Output `<run>/narratives/`: `{train,val,test}.jsonl` (one example a line: record, prompt, target),
`writer_stats.json` (diversity, lengths, FMR and attribute precision on held-out products), config.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from recnarr.config import RunConfig
from recnarr.data.narratives import NarrativeRecord, Writer, format_prompt
from recnarr.data.schema import Dataset, product_from_row
from recnarr.inference.grounding import ground
from recnarr.inference.records import RecordBuilder
from recnarr.quiet import bars
from recnarr.retrieval.recommender import positive_interactions

# (history as (product id, timestamp), allowed candidate ids, k) -> [(product id, its evidence: reasons)]
CandidateFn = Callable[[list[tuple[str, Any]], set[str], int], list[tuple[str, list]]]


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
    builder = RecordBuilder(ds, ncfg.min_support)
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
        for uid in tqdm(uids, desc=f"narratives:{split}", disable=len(uids) < 50 or not bars()):
            hist = ds.history(uid)
            train_hist = hist[hist["split"] == "train"] if "split" in hist else hist
            if train_hist.empty:
                continue
            liked = positive_interactions(train_hist, cfg.retrieval.positive_min_rating)  # what serving uses
            timed = list(zip(liked["product_id"].astype(str), liked["timestamp"], strict=True))
            if not timed:
                continue
            history = builder.history_items(timed, uid)
            bought = set(hist["product_id"].astype(str))
            picked = candidates(timed, allowed - bought, ncfg.pairs_per_user)
            for pid, reasons in picked[: ncfg.pairs_per_user]:
                recs.append(builder.evidence_record(products[pid], history, uid, reasons,
                                                    rng.choice(list(ncfg.tones)), ncfg.max_history))
        out[split] = recs
    return out


def write_examples(records: dict[str, list[NarrativeRecord]], folder: Path, seed: int,
                   describe: Callable[[list[str], list], dict] | None = None) -> dict:
    """Write the jsonl files; every target is filled and verified before it is kept. `describe(texts,
    products)` adds each split's statistics (the stage passes evaluation's metrics: a floor above)."""
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
        stats[split] = describe(filled, prods) if describe else {}
    return stats


def retriever_candidates(recommender, products: set[str]) -> CandidateFn:
    """Candidates from the real retriever, restricted to `allowed` ids, with its evidence for each."""
    from recnarr.retrieval.recommender import Filters

    def fn(history: list[tuple[str, Any]], allowed: set[str], k: int) -> list[tuple[str, list]]:
        recs = recommender.recommend(history, filters=Filters(exclude_ids=sorted(products - allowed)), k=k)
        return [(r.product.id, r.reasons) for r in recs]

    return fn
