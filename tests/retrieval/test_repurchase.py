"""Repurchase sense on a small home shop: durables stay away within their interval, consumables come back."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from retrieval_fixtures import home_shop, random_cfg

from recnarr.config import RetrievalConfig
from recnarr.retrieval.index import ProductIndex
from recnarr.retrieval.recommender import EVIDENCE_KINDS, Filters, Recommender

ALL = Filters(in_stock=False)


@pytest.fixture(scope="module")
def shop():
    ds, x = home_shop()
    idx = ProductIndex.build(ds.products, random_cfg(), vectors=x)
    return Recommender(idx, ds.interactions, RetrievalConfig()), ds, idx


def _leaf(rec, pid):
    return rec.index.product(pid).category[-1]


def test_the_sense_is_learned_from_the_orders(shop):
    rec, _, _ = shop
    s = rec.repurchase.senses
    assert s["sofas"].durable and s["beds"].durable and s["sofas"].source == "data"  # nobody bought two
    assert s["sofas"].interval_days > 180  # shrunk toward the durable default, not the candles' few weeks
    for leaf in ("candles", "coffee beans", "tea", "diffuser oils"):
        assert not s[leaf].durable and s[leaf].repeat_rate > 0.4 and s[leaf].interval_days < 60, leaf
        assert s[leaf].rebuy_items, leaf  # the same beans, the same candle, bought again
    assert not s["bookcases"].durable and not s["bookcases"].rebuy_items  # a second one, never the same one


def test_no_durable_sibling_within_its_interval(shop):
    rec, _, _ = shop
    t = datetime(2024, 3, 1)
    interval = rec.repurchase.senses["sofas"].interval_days
    soon = [("sof-1", t), ("can-1", t + timedelta(days=30))]
    later = [("sof-1", t), ("can-1", t + timedelta(days=interval + 10))]
    leaves = {_leaf(rec, r.product.id) for r in rec.recommend(soon, filters=ALL, k=20)}
    assert "Sofas" not in leaves and "Coffee Tables" in leaves  # a table for the sofa, not a second sofa
    assert "Sofas" in {_leaf(rec, r.product.id) for r in rec.recommend(later, filters=ALL, k=20)}
    for user in ("k3", "k12"):  # bought a sofa a few months before their newest order
        assert "Sofas" not in {_leaf(rec, r.product.id) for r in rec.recommend(user_id=user, filters=ALL, k=20)}
    # the override wins over the data: declared consumable, the sofas come back
    loose = Recommender(rec.index, rec._interactions, RetrievalConfig(rebuy_categories=["sofas"]))
    assert "Sofas" in {_leaf(loose, r.product.id) for r in loose.recommend(soon, filters=ALL, k=20)}


def test_consumables_come_back_exact_items_included(shop):
    rec, _, _ = shop
    wide = Filters(in_stock=False, max_per_category=10)
    top = [r.product.id for r in rec.recommend(user_id="k6", filters=wide, k=20)]  # beans thrice, tea once
    assert "cof-3" in top and {"cof-1", "cof-2"} <= set(top)
    assert "bed-2" not in [r.product.id for r in rec.recommend(user_id="k14", filters=ALL, k=30)]  # never again
    strict = Recommender(rec.index, rec._interactions, RetrievalConfig(rebuy_item_rate=1.01))
    assert "cof-3" not in [r.product.id for r in strict.recommend(user_id="k6", filters=wide, k=20)]


def test_reasons_name_the_evidence_and_no_untrained_model_dominates(shop):
    _, ds, idx = shop
    base = RetrievalConfig(max_reasons=50)  # every history item's share, so that they sum to the score
    rec = Recommender(idx, ds.interactions, base)
    assert rec.trust == pytest.approx(len(ds.interactions) / base.small_shop_interactions)
    assert rec.cfg.ease_weight == pytest.approx(base.ease_weight * rec.trust) and rec.cfg.complement_weight > 0
    for user in ds.users["id"]:
        hist = {p for p, _ in rec.user_history(user)}
        for r in rec.recommend(user_id=user, filters=ALL, k=10):
            assert r.reasons and {x.product_id for x in r.reasons} <= hist
            assert all(x.kind in EVIDENCE_KINDS for x in r.reasons)
            owed = sum(x.contribution for x in r.reasons)
            assert owed + rec.cfg.popularity_weight * r.popularity == pytest.approx(r.score, abs=1e-5)
            assert rec.cfg.ease_weight * r.ease < 0.3  # fitted on 56 purchases: a nudge at most
    table = next(r for r in rec.recommend([("sof-1", datetime(2024, 3, 1))], filters=ALL, k=20)
                 if _leaf(rec, r.product.id) == "Coffee Tables")
    assert table.complement == 1.0 and table.reasons[0].product_id == "sof-1"
    assert table.reasons[0].kind in ("similar", "complement")
