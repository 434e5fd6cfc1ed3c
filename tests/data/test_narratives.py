"""The writer writes only the claim grammar (every claim a slot of its record, every other word connective
vocabulary), varies its wording, and the example splits hold out products."""

import random
import re

import pandas as pd
import pytest

from recnarr.config import load_config
from recnarr.data.claims import SLOT_RE, WORD_RE, Pair, genres, relation, slot_values
from recnarr.data.connectives import VOCABULARY
from recnarr.data.narratives import PROMPT_END, HistoryItem, NarrativeRecord, Writer, format_prompt
from recnarr.data.schema import product_from_row
from recnarr.data.splits import time_split
from recnarr.evaluation import metrics
from recnarr.inference.examples import build_records, split_products
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
        product = rng.choice(products)
        # each past item with a link as the record builder would give it: a category relation, else a
        # count of customers who had both (said only from the minimum support on)
        history = [HistoryItem(r.product_id, by_id[r.product_id].title, by_id[r.product_id].category,
                               pd.Timestamp(r.timestamp).date().isoformat(), by_id[r.product_id].brand, r.event,
                               r.rating if r.event == "rating" else None,
                               relation(product, by_id[r.product_id].category, genres(by_id[r.product_id]))
                               or rng.choice([None, "count"]), rng.randint(0, 9))
                   for r in hist.itertuples()]
        out.append(NarrativeRecord(
            product=product, history=history, customer=u.name if rng.random() < 0.8 else None,
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
    # where the record holds something about the product beyond its name and price (a kind the title does
    # not say, what it is for, the catalog's words, an attribute, a year), the text says it
    about = [(t, v) for t, r in zip(texts, recs, strict=True)
             if (v := [slot_values(r)[n] for n in ("a_kind", "purpose", "fact", "feature", "year")
                       if n in slot_values(r)])]
    assert len(about) > 50
    assert sum(any(x in t for x in v) for t, v in about) / len(about) >= 0.9
    lengths = metrics.length_stats(texts)
    assert lengths["min"] >= 6 and lengths["max"] <= 150  # long catalog titles count as words


def test_example_splits_hold_out_products_and_users(superstore):
    ds = time_split(superstore)
    cfg = load_config("tiny", ["narratives.max_users=120", "narratives.pairs_per_user=2"])
    heldout = split_products(ds, cfg.narratives.heldout_product_fraction, cfg.narratives.seed)
    popular = list(ds.interactions["product_id"].value_counts().index)

    def candidates(history, allowed, k):  # evidence: the newest past item, as a recommender would say
        why = [{"product_id": history[-1][0], "kind": "similar"}]
        return [(pid, why) for pid in popular if pid in allowed][:k]

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

    binder = Product("B1", "Avery Durable Binders", 9.0, category=["Office Supplies", "Binders"])
    covers = Product("B2", "Acco Clear Report Covers", 9.0, category=["Office Supplies", "Binders"])
    scarf = Product("W1", "Lambswool Scarf", 49.0, category=["Women", "Accessories"])
    assert purpose_phrase(binder) in PURPOSE["Binders"]
    assert purpose_phrase(covers) is None  # filed under Binders, but "holds documents together" is a binder's
    assert purpose_phrase(scarf) is None  # not "makes the computer work smoother", and no filler range phrase
    said = Product("W2", "Silk Scarf", 74.0, category=["Women", "Accessories"],
                   description="Hand rolled edges. Adds colour to a plain coat.")
    assert purpose_phrase(said) == "adds colour to a plain coat"  # the description's own words
    drive = Product("T1", "Imation Flash Drive", 45.0, category=["Technology", "Accessories"])
    phone = Product("T2", "Polycom Phone", 99.0, category=["Technology", "Phones"])
    case = Product("W3", "Phone Case", 9.0, category=["Women", "Phones"])
    assert relation(drive, phone.category) == "complement"
    # a shared top level, another leaf or the same leaf on another path: no reason at all
    assert relation(scarf, case.category) is None and relation(scarf, ["Men", "Accessories"]) is None
    assert relation(scarf, ["Women", "Accessories"]) == "same"


def test_films_relate_by_a_genre_they_share_not_their_first_genre():
    from recnarr.data.claims import link_text, relation
    from recnarr.data.narratives import HistoryItem
    from recnarr.data.schema import Product

    fargo = Product("M1", "Fargo (1996)", 0.0, category=["Movies", "Crime"],
                    attributes={"genres": "Crime, Drama, Thriller"})
    assert relation(fargo, ["Movies", "Action"], ["Action", "Thriller"]) == "genre:Thriller"
    assert relation(fargo, ["Movies", "Comedy"], ["Comedy"]) is None  # "same department" holds of any two films
    h = HistoryItem("M2", "Heat (1995)", ["Movies", "Action"], "1998-01-01", event="rating", link="genre:Thriller")
    assert link_text(h) == "is a thriller, like"
    counted = HistoryItem("P1", "Xerox 1883", ["Office Supplies", "Paper"], "2016-05-01", link="count", support=4)
    assert link_text(counted) == "was bought by 4 customers who also bought"
    assert link_text(HistoryItem("P1", "Xerox 1883", ["Office Supplies", "Paper"], None, link="count",
                                 support=2)) is None  # below the minimum support: not said

