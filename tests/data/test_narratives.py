"""The writer writes only the claim grammar (every claim a slot of its record, every other word connective
vocabulary), varies its wording, and the example splits hold out products."""

import random
import re

import pandas as pd
import pytest

from recnarr.config import load_config
from recnarr.data.claims import SLOT_RE, WORD_RE, Pair, slot_values
from recnarr.data.connectives import VOCABULARY
from recnarr.data.examples import build_records, split_products
from recnarr.data.narratives import PROMPT_END, HistoryItem, NarrativeRecord, Writer, format_prompt
from recnarr.data.schema import product_from_row
from recnarr.data.splits import time_split
from recnarr.evaluation import metrics
from recnarr.inference.grounding import ground


def random_records(ds, n, seed=0):
    rng = random.Random(seed)
    products = [product_from_row(r) for _, r in ds.products.iterrows()]
    by_id = {p.id: p for p in products}
    users = list(ds.users.itertuples())
    out = []
    while len(out) < n:
        u = rng.choice(users)
        hist = ds.history(u.id).drop_duplicates("product_id").tail(rng.randint(1, 4))
        if hist.empty:
            continue
        history = [HistoryItem(r.product_id, by_id[r.product_id].title, by_id[r.product_id].category,
                               pd.Timestamp(r.timestamp).date().isoformat(), by_id[r.product_id].brand, r.event)
                   for r in hist.itertuples()]
        out.append(NarrativeRecord(
            product=rng.choice(products), history=history, customer=u.name if rng.random() < 0.8 else None,
            reason_index=rng.choice([None, *range(1, len(history) + 1)]),
            pair=Pair(rng.choice(products).title, rng.randint(1, 6)) if rng.random() < 0.5 else None,
            tone=rng.choice(["warm", "concise", "premium"]),
        ))
    return out


@pytest.mark.parametrize("dataset", ["superstore", "movielens"])
def test_writer_never_states_a_fact_absent_from_its_record(dataset, request):
    ds = request.getfixturevalue(dataset)
    for i, rec in enumerate(random_records(ds, 300, seed=1)):
        target = Writer(i).write(rec)
        assert set(SLOT_RE.findall(target)) <= set(slot_values(rec)), target
        plain = SLOT_RE.sub(" ", target)
        assert not re.search(r"\d", plain), f"digits outside slots: {target}"
        assert {w.lower() for w in WORD_RE.findall(plain)} <= VOCABULARY, target
        check = ground(target, rec)
        assert check.ok, (target, check.errors)


def test_prompt_shows_the_facts_and_ends_with_the_marker(superstore):
    rec = random_records(superstore, 1, seed=3)[0]
    prompt = format_prompt(rec)
    assert prompt.endswith(PROMPT_END)
    assert rec.product.title in prompt and all(h.title in prompt for h in rec.history)
    assert slot_values(rec)["price"] in prompt
    assert all(f"{h.event and 'bought'}" in prompt for h in rec.history if h.event == "purchase")


def test_writer_is_varied_and_says_something_about_the_product(superstore):
    recs = random_records(superstore, 400, seed=2)
    texts = [ground(Writer(i).write(r), r).text for i, r in enumerate(recs)]
    assert metrics.unique_ratio(texts) > 0.95
    assert metrics.distinct_n(texts, 2) > 0.15
    assert metrics.fmr(texts, [r.product for r in recs]) > 0.9
    lengths = metrics.length_stats(texts)
    assert lengths["min"] >= 15 and lengths["max"] <= 150  # long catalog titles count as words


def test_example_splits_hold_out_products_and_users(superstore):
    ds = time_split(superstore)
    cfg = load_config("tiny", ["narratives.max_users=120", "narratives.pairs_per_user=2"])
    heldout = split_products(ds, cfg.narratives.heldout_product_fraction, cfg.narratives.seed)
    popular = list(ds.interactions["product_id"].value_counts().index)

    def candidates(history_ids, allowed, k):
        return [(pid, 1) for pid in popular if pid in allowed][:k]

    recs = build_records(ds, cfg, candidates)
    assert recs["train"] and recs["test"]
    assert all(r.product.id not in heldout for r in recs["train"] + recs["val"])
    assert all(r.product.id in heldout for r in recs["test"])
    assert not {r.user_id for r in recs["train"]} & {r.user_id for r in recs["test"]}
    # histories come from the train split only: never the purchases that evaluation holds out
    inter = ds.interactions
    for r in recs["train"][:50]:
        train_ids = set(inter[(inter.user_id == r.user_id) & (inter.split == "train")].product_id)
        assert {h.product_id for h in r.history} <= train_ids


def test_the_lexicon_speaks_only_on_the_paths_it_was_written_for():
    from recnarr.data.claims import purpose_phrase, relation
    from recnarr.data.lexicon import PURPOSE
    from recnarr.data.schema import Product

    drive = Product("T1", "Imation Flash Drive", 45.0, category=["Technology", "Accessories"])
    scarf = Product("W1", "Lambswool Scarf", 49.0, category=["Women", "Accessories"])
    assert purpose_phrase(drive) in PURPOSE["Accessories"]
    assert purpose_phrase(scarf) == "is part of our accessories range"  # not "makes the computer work smoother"
    said = Product("W2", "Silk Scarf", 74.0, category=["Women", "Accessories"],
                   description="Hand rolled edges. Adds colour to a plain coat.")
    assert purpose_phrase(said) == "adds colour to a plain coat"  # the description's own words
    phone = Product("T2", "Polycom Phone", 99.0, category=["Technology", "Phones"])
    case = Product("W3", "Phone Case", 9.0, category=["Women", "Phones"])
    assert relation(drive, phone.category) == "complement" and relation(scarf, case.category) == "family"
    assert relation(scarf, ["Men", "Accessories"]) == "other"  # same leaf, another path
