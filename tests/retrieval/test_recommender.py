"""Recommender: query vector, filters, re-ranking, reasons, anonymous mode."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

import faiss
import numpy as np
import pandas as pd
import pytest
from retrieval_fixtures import random_catalog, random_cfg, random_interactions, small_dataset

from recnarr.config import IndexConfig, RetrievalConfig
from recnarr.data.schema import UnknownProduct
from recnarr.retrieval.index import ProductIndex
from recnarr.retrieval.recommender import Filters, InteractionStats, Recommender


@pytest.fixture
def rand_rec():
    df, x = random_catalog(n=400)
    idx = ProductIndex.build(df, random_cfg(), vectors=x)
    inter = random_interactions(list(df["id"]), n_users=60)
    enc = lambda texts: np.stack([x[len(t) % len(x)] for t in texts])  # noqa: E731  (a stand-in text model)
    return Recommender(idx, inter, RetrievalConfig(), text_encoder=enc), df, x, inter


def _histories(df, n=25, seed=3):
    rng = np.random.default_rng(seed)
    t0 = datetime(2024, 1, 1)
    return [[(df["id"][i], t0 + timedelta(days=10 * j)) for j, i in enumerate(rng.choice(len(df), 6, replace=False))]
            for _ in range(n)]


def test_filters_are_never_violated(rand_rec):
    rec, df, _, _ = rand_rec
    facts = df.set_index("id")
    for hist in _histories(df):
        ids = {h for h, _ in hist}
        out = rec.recommend(hist, filters=Filters(in_stock=True, exclude_purchased=True), k=20)
        assert len(out) == 20
        assert all(r.product.in_stock for r in out) and not ids & {r.product.id for r in out}

        out = rec.recommend(hist, filters=Filters(in_stock=False, min_price=20, max_price=60), k=15)
        assert out and all(20 <= r.product.sale_price <= 60 + 1e-6 for r in out)
        assert not ids & {r.product.id for r in out}

        out = rec.recommend(hist, filters=Filters(categories=["cat2"]), k=10)  # any level, any case
        assert len(out) == 10 and all("Cat2" in r.product.category for r in out)

        out = rec.recommend(hist, filters=Filters(max_per_brand=1), k=12)
        brands = [r.product.brand for r in out if r.product.brand]
        assert len(brands) == len(set(brands)) and len(out) == 12  # 6 brands + unbranded products
        assert all(facts.loc[r.product.id, "in_stock"] for r in out)

    # the purchased items themselves are the nearest: kept only when not excluded
    hist = _histories(df, 1)[0]
    near = Recommender(rec.index, rec._interactions, RetrievalConfig(ease_weight=0.0))  # similarity leads
    kept = near.recommend(hist, filters=Filters(in_stock=False, exclude_purchased=False), k=6)
    assert {r.product.id for r in kept} & {h for h, _ in hist}
    # an empty price range matches nothing (after searching the whole catalog), it is not an error
    assert rec.recommend(hist, filters=Filters(in_stock=False, min_price=10, max_price=5), k=3) == []


def test_filters_widen_the_search_when_few_candidates_pass(rand_rec):
    rec, df, x, _ = rand_rec
    rec.cfg.candidates = 5
    cheap = set(df.loc[(df["price"] * (1 - df["discount"]) <= 15) & df["in_stock"], "id"])
    out = rec.recommend([df["id"][0]], filters=Filters(max_price=15), k=50)
    assert {r.product.id for r in out} == cheap - {df["id"][0]} or len(out) == 50


def test_score_is_the_documented_sum_and_sorted(rand_rec):
    rec, df, _, _ = rand_rec
    out = rec.recommend(_histories(df, 1)[0], filters=Filters(in_stock=False), k=15)
    cfg = rec.cfg
    for r in out:
        assert r.score == pytest.approx(r.similarity + cfg.popularity_weight * r.popularity
                                        + cfg.copurchase_weight * r.copurchase + cfg.ease_weight * r.ease
                                        + cfg.complement_weight * r.complement, abs=1e-6)
        assert 0 <= r.popularity <= 1 and 0 <= r.copurchase <= 1 and 0 <= r.ease <= 1 and 0 <= r.complement <= 1
    assert cfg.complement_weight > 0 and any(r.complement > 0 for r in out)  # 360 positives: a small shop
    assert [r.score for r in out] == sorted((r.score for r in out), reverse=True)


def test_reasons_point_at_real_history_items(rand_rec):
    rec, df, x, inter = rand_rec
    stats = InteractionStats(inter[inter["split"] == "train"])
    for hist in _histories(df, 10):
        ids = [h for h, _ in hist]
        for r in rec.recommend(hist, filters=Filters(in_stock=False), k=10):
            assert r.reasons
            for reason in r.reasons:
                assert reason.product_id in ids
                assert reason.title == df.set_index("id").loc[reason.product_id, "title"]
                row_a, row_b = rec.index.row_of(r.product.id), rec.index.row_of(reason.product_id)
                assert reason.similarity == pytest.approx(float(x[row_a] @ x[row_b]), abs=1e-5)
                assert reason.copurchase_count == stats.pair_counts(r.product.id, [reason.product_id])[0]
            # the evidence is ordered by what each item added to the score, largest first
            shares = [x.contribution for x in r.reasons]
            assert shares == sorted(shares, reverse=True)
            assert r.copurchased == any(x.copurchase_count > 0 for x in r.reasons)


@pytest.mark.parametrize("text", [None, "abcd"])
def test_evidence_splits_the_score_exactly_over_the_history(rand_rec, text):
    """Every term that depends on the history (similarity, EASE, co-purchase, sequential rules) is owed to
    its items: the items' contributions plus popularity (plus the text's own part) give the score."""
    rec, df, x, inter = rand_rec
    cfg = RetrievalConfig(copurchase_weight=0.7, sequence_weight=1.5, popularity_weight=0.3, max_reasons=50)
    full = Recommender(rec.index, inter, cfg, text_encoder=rec._text_encoder)
    for hist in _histories(df, 5):
        hist = hist + [hist[0]]  # an item bought twice counts once in the evidence, with both weights
        out = full.recommend(hist, text=text, filters=Filters(in_stock=False), k=10)
        ids, times = full.resolve_history(hist)
        q, coef = full.query_parts(ids, times, text)
        for r in out:
            assert len(r.reasons) == len(set(ids))
            text_part = r.similarity - float(sum(c * (x[rec.index.row_of(h)] @ x[rec.index.row_of(r.product.id)])
                                                 for h, c in zip(ids, coef, strict=True)))
            assert (text_part == pytest.approx(0, abs=1e-5)) == (text is None)
            owed = sum(x.contribution for x in r.reasons)
            assert owed + cfg.popularity_weight * r.popularity + text_part == pytest.approx(r.score, abs=1e-5)
            top = r.reasons[0]
            assert top.kind in ("similar", "ease", "copurchase", "sequence", "complement")
        kinds = {x.kind for r in out for x in r.reasons}
        assert len(kinds) >= 2  # the terms really are told apart


def test_copurchase_and_popularity_come_from_train_only():
    df, x = random_catalog(n=50)
    idx = ProductIndex.build(df, random_cfg(), vectors=x)
    t = datetime(2024, 1, 1)
    rows = [{"user_id": f"u{u}", "product_id": p, "event": "purchase", "quantity": 1, "rating": None,
             "timestamp": t, "split": s}
            for u in range(5) for p, s in (("p0001", "train"), ("p0002", "train"), ("p0003", "test"))]
    rec = Recommender(idx, pd.DataFrame(rows), RetrievalConfig(copurchase_weight=0.5, small_shop_interactions=0))
    assert rec.stats.pair_counts("p0001", ["p0002", "p0003"]).tolist() == [5, 0]
    out = {r.product.id: r for r in rec.recommend(["p0001"], filters=Filters(in_stock=False), k=50)}
    assert out["p0002"].copurchase == 1.0 and out["p0002"].reasons[0].copurchase_count == 5
    assert out["p0003"].copurchase == 0.0 and out["p0003"].popularity == 0.0
    assert "p0002" in list(out)[:1]  # the co-purchase boost lifts it to the top


def test_recency_weighting_and_text_weight(rand_rec):
    rec, df, x, _ = rand_rec
    t = datetime(2024, 6, 1)
    old, new = df["id"][10], df["id"][20]
    q = rec.query_vector(*rec.resolve_history([(old, t - timedelta(days=720)), (new, t)]), None)
    assert q @ x[20] > q @ x[10] + 0.3  # 4 half-lives older: weight 1/16
    q_equal = rec.query_vector(*rec.resolve_history([old, new]), None)  # no timestamps: equal weights
    assert q_equal @ x[20] == pytest.approx(q_equal @ x[10], abs=1e-5)
    rec.cfg.text_weight = 1.0
    q_text = rec.query_vector(*rec.resolve_history([old]), "abc")
    np.testing.assert_allclose(q_text, x[3], atol=1e-5)  # stand-in encoder: len("abc") -> x[3]
    # epoch seconds and ISO strings are timestamps too
    ids, times = rec.resolve_history([(old, 1_700_000_000), (new, "2024-01-01T00:00:00+02:00")])
    assert times[0].year == 2023 and str(times[1].tz) == "UTC"


def test_unknown_ids_raise_a_clear_key_error(rand_rec):
    rec, df, _, _ = rand_rec
    with pytest.raises(KeyError, match="unknown product id 'nope'"):
        rec.recommend([df["id"][0], "nope"])
    with pytest.raises(UnknownProduct):
        rec.recommend([("nope", datetime(2024, 1, 1))])
    with pytest.raises(KeyError, match="unknown user id"):
        rec.recommend(user_id="nobody")
    with pytest.raises(TypeError, match="user_id="):
        rec.recommend("u1")


def test_user_mode_and_cold_start(rand_rec):
    rec, df, _, inter = rand_rec
    mine = set(inter.loc[inter["user_id"] == "u3", "product_id"])
    out = rec.recommend(user_id="u3", filters=Filters(in_stock=False), k=10)
    assert len(out) == 10 and not mine & {r.product.id for r in out}
    assert all(r.reasons and {x.product_id for x in r.reasons} <= mine for r in out)
    cold = rec.recommend(k=5, filters=Filters(in_stock=False))
    pops = [r.popularity for r in cold]
    assert pops == sorted(pops, reverse=True) and pops[0] == 1.0 and all(not r.reasons for r in cold)


def _fingerprint(rec: Recommender, folder) -> str:
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(rec.index.products.astype(str)).values.tobytes())
    h.update(rec.index.vectors.tobytes())
    h.update(faiss.serialize_index(rec.index.index).tobytes())
    h.update(repr(sorted(rec.index.manifest.items())).encode())
    h.update(rec.stats.counts.tobytes() + rec.stats.cooc.data.tobytes() + rec.stats.cooc.indices.tobytes())
    h.update(pd.util.hash_pandas_object(rec._interactions.astype(str)).values.tobytes())
    h.update(repr(sorted(vars(rec))).encode() + repr(sorted(vars(rec.index))).encode())
    h.update(repr(vars(rec.cfg)).encode())
    for p in sorted(folder.rglob("*")):
        h.update(p.name.encode() + (p.read_bytes() if p.is_file() else b""))
    return h.hexdigest()


def _reachable_strings(obj, depth=0, seen=None):
    """Every str reachable from obj's attributes / containers (not into numpy, pandas, faiss)."""
    seen = seen if seen is not None else set()
    if id(obj) in seen or depth > 6:
        return
    seen.add(id(obj))
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _reachable_strings(k, depth + 1, seen)
            yield from _reachable_strings(v, depth + 1, seen)
    elif isinstance(obj, list | tuple | set | frozenset):
        for v in obj:
            yield from _reachable_strings(v, depth + 1, seen)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("recnarr"):
        yield from _reachable_strings(vars(obj), depth + 1, seen)


def test_anonymous_mode_stores_nothing(tmp_path, rand_rec, caplog):
    rec, df, x, _ = rand_rec
    rec.index.save(tmp_path)
    rec = Recommender(ProductIndex.load(tmp_path), rec._interactions, rec.cfg, rec._text_encoder)
    caplog.set_level(logging.DEBUG)
    before = _fingerprint(rec, tmp_path)
    first = rec.recommend([df["id"][1], df["id"][2]], k=10)
    secret = "my anniversary gift for zelda-7f3a"
    hist = [(df["id"][i], datetime(2024, 1, i + 1)) for i in (5, 6, 7)]
    rec.recommend(hist, text=secret, filters=Filters(max_per_brand=2), k=10)
    assert _fingerprint(rec, tmp_path) == before  # no state, cache or file changed
    assert not any(secret in s or "zelda" in s for s in _reachable_strings(rec))
    assert not [r for r in caplog.records if secret in r.getMessage() or df["id"][5] in r.getMessage()]
    # calls do not influence each other
    again = rec.recommend([df["id"][1], df["id"][2]], k=10)
    assert [(r.product.id, r.score) for r in again] == [(r.product.id, r.score) for r in first]


def test_real_model_on_a_small_catalog(tmp_path):
    ds = small_dataset()
    idx = ProductIndex.build(ds.products, IndexConfig(progress=False))
    idx.save(tmp_path)
    rec = Recommender.from_folder(tmp_path, ds, RetrievalConfig(popularity_weight=0, copurchase_weight=0,
                                                                ease_weight=0))  # the text model alone
    hist = [("c1", datetime(2024, 1, 1)), ("c4", datetime(2024, 2, 1))]  # filter coffee + a dripper
    out = rec.recommend(hist, k=5)
    top = [r.product.id for r in out]
    assert set(top[:3]) <= {"c2", "c5", "c6", "c7"}  # coffee things; c3 is out of stock
    assert "c3" not in top and not {"c1", "c4"} & set(top)
    assert all(r.reasons[0].product_id in {"c1", "c4"} for r in out)
    # with the re-ranking, green tea (bought with c1 and c4 by u3 in train) rises and says why
    boosted = {r.product.id: r for r in Recommender.from_folder(tmp_path, ds).recommend(hist, k=5)}
    assert "t1" in boosted and boosted["t1"].copurchased and boosted["t1"].copurchase == 1.0
    assert {x.product_id for x in boosted["t1"].reasons if x.copurchase_count} == {"c1", "c4"}
    # text alone: the text query decides
    tea = rec.recommend(text="loose leaf green tea", filters=Filters(exclude_purchased=False), k=3)
    assert tea[0].product.id == "t1"
    # text + history: a tea drinker asking for a teapot
    mixed = rec.recommend([("t1", datetime(2024, 1, 1))], text="teapot", k=3)
    assert mixed[0].product.id == "t3"
    office = rec.recommend(["o1"], filters=Filters(categories=["furniture"], in_stock=True), k=5)
    assert {r.product.id for r in office} == {"o3"}  # o4 out of stock, o1 bought, o2 a second chair (durable)
    # a dataset whose catalog changed does not load silently
    changed = small_dataset()
    changed.products.loc[0, "price"] = 1.0
    with pytest.raises(ValueError, match="recnarr index"):
        Recommender.from_folder(tmp_path, changed)


def test_ease_is_per_item_ridge_regression_on_the_other_items():
    """EASE's closed form equals, column by column, ridge regression of item j on every other item."""
    from recnarr.retrieval.collaborative import ease_weights

    x = (np.random.default_rng(0).random((40, 7)) < 0.35).astype(np.float64)
    l2 = 3.0
    b = ease_weights(x.T @ x, l2)
    for j in range(7):
        others = [i for i in range(7) if i != j]
        xo = x[:, others]
        ridge = np.linalg.solve(xo.T @ xo + l2 * np.eye(6), xo.T @ x[:, j])
        assert b[j, j] == 0
        np.testing.assert_allclose(b[others, j], ridge, rtol=1e-4, atol=1e-5)


def test_category_cap_and_its_override(rand_rec):
    rec, df, _, _ = rand_rec
    leaf = dict(zip(df["id"], (c[-1] for c in df["category"]), strict=True))
    for hist in _histories(df, 10):
        top = [r.product.id for r in rec.recommend(hist, filters=Filters(in_stock=False), k=10)]
        assert len(top) == 10 and max(pd.Series([leaf[p] for p in top]).value_counts()) <= rec.cfg.max_per_category
        two = [r.product.id for r in rec.recommend(hist, filters=Filters(in_stock=False, max_per_category=2), k=10)]
        assert len(two) == 10 and max(pd.Series([leaf[p] for p in two]).value_counts()) <= 2


def test_a_rating_of_any_value_is_seen_and_rebuy_categories_come_back(rand_rec):
    _, df, x, _ = rand_rec
    idx = ProductIndex.build(df, random_cfg(), vectors=x)
    t = datetime(2024, 1, 1)
    rows = [("u", "p0001", "rating", 1.0), ("u", "p0002", "purchase", None), ("u", "p0003", "view", None)]
    rows += [(f"o{i}", f"p{(i * 7) % 400:04d}", "purchase", None) for i in range(200)]
    inter = pd.DataFrame([{"user_id": u, "product_id": p, "event": e, "quantity": 1, "rating": r,
                           "timestamp": t} for u, p, e, r in rows])
    near = {"p0001", "p0002", "p0003"}
    rec = Recommender(idx, inter, RetrievalConfig(max_per_category=None))
    # a query right at the seen items: without the exclusion they would top the list
    top = {r.product.id for r in rec.recommend(["p0002"], user_id="u", filters=Filters(in_stock=False), k=20)}
    assert not top & near and rec.seen("u") == near
    leaf = df.set_index("id").loc["p0002", "category"][-1]
    rebuy = Recommender(idx, inter, RetrievalConfig(max_per_category=None, rebuy_categories=[leaf.upper()]))
    assert rebuy.seen("u") == {"p0001", "p0003"}  # the purchase may come again; the rating and view never
    again = [r.product.id for r in rebuy.recommend(user_id="u", filters=Filters(in_stock=False), k=400)]
    assert "p0002" in again and not {"p0001", "p0003"} & set(again)


@pytest.mark.parametrize("name", ["superstore", "movielens"])
def test_no_user_of_either_dataset_is_recommended_what_they_saw(name, shared_cache):
    """Every user of both real datasets: nothing in their list was in any of their interactions."""
    from recnarr.data.movielens import load_movielens
    from recnarr.data.superstore import load_superstore

    ds = (load_superstore if name == "superstore" else load_movielens)(shared_cache)
    df = ds.products.reset_index(drop=True)
    x = np.random.default_rng(0).standard_normal((len(df), 16)).astype(np.float32)  # the rule, not the vectors
    rec = Recommender(ProductIndex.build(df, random_cfg(), vectors=x), ds.interactions, RetrievalConfig(),
                      dataset=ds.name)  # the dataset's own tuned blend, sequential rules included on MovieLens
    seen = ds.interactions.groupby(ds.interactions["user_id"].astype(str))["product_id"].agg(
        lambda s: set(s.astype(str)))
    for uid, items in seen.items():
        top = [r.product.id for r in rec.recommend(user_id=uid, filters=Filters(in_stock=False), k=10)]
        assert len(top) == 10 and not set(top) & items, uid


def test_sequential_rules_count_what_follows_within_the_window():
    from recnarr.retrieval.collaborative import SequentialRules

    t = datetime(2024, 1, 1)
    seqs = {"u1": ["a", "b", "c", "d"], "u2": ["a", "b"], "u3": ["c", "a"]}
    inter = pd.DataFrame([{"user_id": u, "product_id": p, "event": "rating", "quantity": 1, "rating": 2.0,
                           "timestamp": t + timedelta(days=i)} for u, s in seqs.items() for i, p in enumerate(s)])
    stats = InteractionStats(inter)
    rules = SequentialRules(inter.sample(frac=1.0, random_state=0), stats, window=2)  # order comes from time
    col = dict(zip(stats.items, range(len(stats.items)), strict=True))
    t_ = rules.T.toarray()
    assert t_[col["a"], col["b"]] == 2.0  # right after a, twice
    assert t_[col["a"], col["c"]] == 0.5  # two steps after a, once
    assert t_[col["a"], col["d"]] == 0.0  # three steps: outside the window
    assert t_[col["b"], col["a"]] == 0.0 and t_[col["c"], col["a"]] == 1.0  # direction matters
    s = rules.scores(["d", "a"], last=1)  # the newest item only
    assert s[col["b"]] == 2.0 and s[col["c"]] == 0.5 and s[col["d"]] == 0.0


def test_sequence_weight_and_per_dataset_overrides(rand_rec):
    _, df, x, _ = rand_rec
    idx = ProductIndex.build(df, random_cfg(), vectors=x)
    t = datetime(2024, 1, 1)
    # forty users watch p0010 and then p0300; a new history ending in p0010 should be told p0300 comes next
    rows = [(f"o{i}", p, t + timedelta(days=d)) for i in range(40) for d, p in enumerate(["p0010", "p0300"])]
    rows += [(f"n{i}", f"p{(i * 13) % 400:04d}", t) for i in range(300)]
    inter = pd.DataFrame([{"user_id": u, "product_id": p, "event": "purchase", "quantity": 1, "rating": None,
                           "timestamp": ts} for u, p, ts in rows])
    plain = RetrievalConfig(ease_weight=0.0, popularity_weight=0.0, max_per_category=None, small_shop_interactions=0)
    hist = [("p0123", t), ("p0010", t + timedelta(days=1))]
    without = [r.product.id for r in Recommender(idx, inter, plain).recommend(hist, filters=Filters(in_stock=False))]
    cfg = RetrievalConfig(ease_weight=0.0, popularity_weight=0.0, max_per_category=None, small_shop_interactions=0,
                          per_dataset={"films": {"sequence_weight": 5.0, "sequence_last": 1}})
    tuned = Recommender(idx, inter, cfg, dataset="films")
    assert tuned.cfg.sequence_weight == 5.0 and isinstance(tuned.cfg.sequence_last, int)
    top = tuned.recommend(hist, filters=Filters(in_stock=False))
    assert top[0].product.id == "p0300" and top[0].sequence == 1.0 and "p0300" not in without[:1]
    assert Recommender(idx, inter, cfg, dataset="other").cfg.sequence_weight == 0.0  # no entry: plain values
    with pytest.raises(ValueError, match=r"per_dataset\.films: unknown field\(s\) \['sequence_wieght'\]"):
        Recommender(idx, inter, RetrievalConfig(per_dataset={"films": {"sequence_wieght": 1.0}}), dataset="films")
