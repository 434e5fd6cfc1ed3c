"""`recnarr index` (incremental) and `recnarr evaluate retrieval` on a small dataset."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from retrieval_fixtures import random_catalog, random_cfg, random_interactions, small_dataset

from recnarr.config import RunConfig
from recnarr.data.schema import Dataset
from recnarr.evaluation import retrieval as ev
from recnarr.retrieval import embedder
from recnarr.retrieval.index import ProductIndex
from recnarr.retrieval.recommender import InteractionStats, Recommender
from recnarr.stages.evaluate import evaluate_retrieval
from recnarr.stages.index import index as index_stage


def test_ranking_metrics_by_hand():
    assert ev.recall_at_k(["a", "b", "c"], {"b", "z"}, 2) == 0.5
    assert ev.recall_at_k(["a", "b", "c"], {"c"}, 2) == 0.0
    assert ev.ndcg_at_k(["a", "b"], {"a"}, 10) == 1.0
    assert ev.ndcg_at_k(["x", "a"], {"a"}, 10) == pytest.approx(1 / math.log2(3))
    assert ev.ndcg_at_k(["x", "a", "b"], {"a", "b"}, 10) == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))


def test_eval_cases_use_the_time_split():
    ds = small_dataset()
    cases = {c.user_id: c for c in ev.eval_cases(ds)}
    assert [h for h, _ in cases["u1"].history] == ["c1", "c4", "c7", "c5"] and cases["u1"].targets == {"c2"}
    val = {c.user_id: c for c in ev.eval_cases(ds, split="val")}
    assert [h for h, _ in val["u1"].history] == ["c1", "c4", "c7"] and val["u1"].targets == {"c5"}


def test_baselines_exclude_history_and_rank_sensibly():
    df, x = random_catalog(n=120)
    inter = random_interactions(list(df["id"]), n_users=50, per_user=6)
    ds = Dataset("rand", df, inter[["user_id"]].drop_duplicates().rename(columns={"user_id": "id"}), inter)
    stats = InteractionStats(inter[inter["split"] == "train"])
    catalog = list(df["id"])
    cases = ev.eval_cases(ds)
    pop = ev.popularity_ranker(catalog, stats)
    knn = ev.itemknn_ranker(catalog, stats)
    rnd = ev.random_ranker(catalog, seed=1)
    rec = Recommender(ProductIndex.build(df, random_cfg(), vectors=x), inter)
    ours = ev.retriever_ranker(rec)
    for c in cases[:10]:
        hist = {h for h, _ in c.history}
        for rank in (pop, knn, rnd, ours):
            top = rank(c, 10)
            assert len(top) == 10 == len(set(top)) and not hist & set(top)
    most = catalog[int(np.argmax(stats.popularity(catalog)))]
    assert pop(ev.EvalCase("x", [], set()), 1) == [most]
    table = ev.evaluate_rankers(cases, {"pop": pop, "ours": ours}, len(catalog), 10)
    assert set(table["pop"]) >= {"recall@10", "ndcg@10", "coverage", "hits"}
    assert 0 < table["ours"]["coverage"] <= 1


def test_approx_recall_reaches_target_on_clustered_vectors():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((30, 48))
    x = (centers[rng.integers(0, 30, 1500)] + 0.3 * rng.standard_normal((1500, 48))).astype(np.float32)
    out = ev.approx_recall(x, x[:200] + 0.05, random_cfg())
    assert out["hnsw"]["recall@k"] >= 0.95 and out["ivfpq"]["recall@k"] >= 0.95
    assert out["ivfpq"]["params"]["nlist"] == 1500 // 39


@pytest.fixture
def small_run(tmp_path, monkeypatch):
    ds = small_dataset()
    from recnarr.data import run_data

    monkeypatch.setattr(run_data, "load_dataset", lambda cfg: ds)
    cfg = RunConfig(run_dir=str(tmp_path / "run"))
    cfg.index.progress = False
    return cfg, ds


def test_index_stage_builds_then_updates_incrementally(small_run, monkeypatch):
    cfg, ds = small_run
    folder = index_stage(cfg)
    assert {p.name for p in folder.iterdir()} >= {"index.faiss", "id_map.json", "manifest.json", "products.parquet",
                                                  "embeddings.npy", "embedding_keys.json", "config.yaml"}
    assert yaml.safe_load((folder / "config.yaml").read_text())["index"]["index_type"] == "flat"
    assert json.loads((folder / "manifest.json").read_text())["catalog_checksum"] == ds.checksum()

    calls = []
    real = embedder.embed_texts
    monkeypatch.setattr(embedder, "embed_texts", lambda texts, **kw: calls.append(list(texts)) or real(texts, **kw))
    ds.products.loc[0, "price"] = 99.0  # price: no embedding
    ds.products.loc[1, "in_stock"] = False
    ds.products.loc[2, "description"] = "Now roasted darker than ever."  # text: one embedding
    ds.products = ds.products.drop(index=[17]).reset_index(drop=True)  # removed
    index_stage(cfg)
    assert calls == [[embedder.product_text(ds.products.iloc[2])]]
    m = json.loads((folder / "manifest.json").read_text())
    assert m["catalog_checksum"] == ds.checksum() and m["counts"]["products"] == 17
    rec = Recommender.from_folder(folder, ds)  # the checksum matches the changed catalog
    assert rec.index.product("c1").price == 99.0 and "p4" not in rec.index

    # another index type rebuilds FAISS but reuses every embedding
    calls.clear()
    cfg.index.index_type = "hnsw"
    index_stage(cfg)
    assert calls == [] and ProductIndex.load(folder).manifest["index_params"]["M"] == cfg.index.hnsw_m


def test_the_index_log_says_small_shop_and_what_is_durable(small_run, capsys):
    cfg, _ = small_run
    index_stage(cfg)
    out = capsys.readouterr().out
    assert "small shop: 9 interactions (< 1,000)" in out  # 3 customers, 9 train purchases
    assert "repurchase sense (data; " in out and "durable chairs" in out  # the office chair, just bought


def test_evaluate_retrieval_end_to_end(small_run, monkeypatch, capsys):
    cfg, ds = small_run
    cfg.eval.retrieval_datasets = ["small"]
    monkeypatch.setattr(ev, "load_eval_dataset", lambda name, cfg: ds)
    results = evaluate_retrieval(cfg)
    saved = json.loads((cfg.layout.eval / "retrieval.json").read_text())
    assert saved["datasets"][0]["users"] == 3 == results["datasets"][0]["users"]
    methods = saved["datasets"][0]["methods"]
    als = [m for m in methods if m.startswith(("implicit ALS (library; factors ", "EASE (closed form, no text; l2 "))]
    assert len(als) == 2  # the library peer and EASE, their settings chosen on the validation folds
    assert set(methods) - set(als) == {
        "random", "most-popular", "item-kNN (co-occurrence)",
        "ours: embedding similarity", "ours: similarity + popularity + co-purchase + EASE + sequence, capped"}
    versus = saved["datasets"][0]["ours_vs_best_peer"]
    assert versus["lo"] <= versus["diff"] <= versus["hi"] and versus["best_peer"] in methods
    peers = saved["datasets"][0]["ours_vs_peers"]  # ours against every peer, on both measures
    assert set(peers) == {"ndcg", "cat_hit"} and set(peers["cat_hit"]) == set(methods) - {ev.OURS, *[
        m for m in methods if m.startswith("ours")]}
    assert all(0 <= m["cat_hit@10"] <= 1 for m in methods.values()) and saved["datasets"][0]["folds"]
    assert all(m["seen_recommended"] == 0 for m in methods.values())  # nobody is shown what they saw
    assert set(saved["datasets"][0]["approx_index_recall"]) == {"hnsw", "ivfpq"}
    out = capsys.readouterr().out
    assert "Recall@10" in out and "item-kNN" in out and "retrieval.json" in out and "cat-hit@10" in out
