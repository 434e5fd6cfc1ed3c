"""FAISS index: round trip, manifest checks, incremental add / update / remove, on random vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from retrieval_fixtures import random_catalog, random_cfg

from recnarr.retrieval.index import IndexMismatchError, ProductIndex, catalog_checksum

TYPES = ["flat", "hnsw", "ivfpq"]


def _ids(results):
    return [[p for p, _ in r] for r in results]


@pytest.mark.parametrize("kind", TYPES)
def test_round_trip_gives_identical_results(tmp_path, kind):
    df, x = random_catalog()
    idx = ProductIndex.build(df, random_cfg(kind), vectors=x)
    q = np.random.default_rng(1).standard_normal((20, x.shape[1])).astype(np.float32)
    before = idx.search(q, 10)
    idx.save(tmp_path)
    for name in ("index.faiss", "id_map.json", "manifest.json", "products.parquet", "embeddings.npy",
                 "embedding_keys.json"):
        assert (tmp_path / name).exists(), name
    loaded = ProductIndex.load(tmp_path, catalog_checksum=catalog_checksum(df), embed_model="random-test")
    assert loaded.search(q, 10) == before
    assert loaded.product("p0007") == idx.product("p0007")
    np.testing.assert_array_equal(loaded.vectors, idx.vectors)
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["index_type"] == kind and m["dim"] == x.shape[1] and m["embed_model"] == "random-test"
    assert m["catalog_checksum"] == catalog_checksum(df) and m["counts"]["products"] == len(df)
    assert "build_seconds" in m and m["index_params"] == idx.manifest["index_params"]


@pytest.mark.parametrize("kind", TYPES)
def test_search_quality_and_k_beyond_ef(kind):
    df, x = random_catalog(n=600)
    idx = ProductIndex.build(df, random_cfg(kind, hnsw_ef_search=16), vectors=x)
    top = idx.search(x[:50], 1)
    assert np.mean([r[0][0] == df["id"][i] for i, r in enumerate(top)]) >= 0.95  # each vector finds itself
    assert all(len(r) == 150 for r in idx.search(x[:3], 150))  # k > efSearch still returns k
    exact = ProductIndex.build(df, random_cfg("flat"), vectors=x)
    got, truth = _ids(idx.search(x[:100] + 0.1, 10)), _ids(exact.search(x[:100] + 0.1, 10))
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth, strict=True)]) >= 0.9


def test_manifest_mismatch_is_a_clear_error(tmp_path, rand_index):
    idx, df, _ = rand_index
    idx.save(tmp_path)
    with pytest.raises(IndexMismatchError, match="built from catalog .* but the dataset's catalog is"):
        ProductIndex.load(tmp_path, catalog_checksum="0123456789abcdef")
    with pytest.raises(IndexMismatchError, match="embedding model 'random-test', not 'all-MiniLM-L6-v2'"):
        ProductIndex.load(tmp_path, embed_model="all-MiniLM-L6-v2")
    changed = df.copy()
    changed.loc[3, "price"] += 1
    with pytest.raises(IndexMismatchError):
        ProductIndex.load(tmp_path, catalog_checksum=catalog_checksum(changed))
    with pytest.raises(FileNotFoundError, match="recnarr index"):
        ProductIndex.load(tmp_path / "nothing")


@pytest.mark.parametrize("kind", TYPES)
def test_incremental_add_update_remove(tmp_path, kind):
    df, x = random_catalog(n=450)
    base, extra = df.iloc[:400].reset_index(drop=True), df.iloc[400:].reset_index(drop=True)
    idx = ProductIndex.build(base, random_cfg(kind), vectors=x[:400])

    # add: new products are found (each is its own nearest neighbour)
    idx.add(extra, vectors=x[400:])
    assert len(idx) == 450 and idx.index.ntotal == 450
    assert [r[0][0] for r in idx.search(x[400:], 1)] == list(extra["id"])
    with pytest.raises(ValueError, match="already indexed"):
        idx.add(extra.iloc[:1], vectors=x[400:401])

    # update price / stock: no vector changes, the new facts are served
    vec_before = idx.vectors.copy()
    upd = df.iloc[[5, 6]].copy()
    upd["price"], upd["in_stock"] = [1.23, 4.56], [False, True]
    assert idx.update(upd) == 0  # nothing re-embedded (a random-test model could not embed anyway)
    np.testing.assert_array_equal(idx.vectors, vec_before)
    assert idx.product("p0005").price == 1.23 and idx.product("p0005").in_stock is False
    assert idx.checksum == catalog_checksum(idx.products)

    # update text: the vector is replaced
    upd = df.iloc[[7]].copy()
    upd["title"] = "A different product"
    new_vec = -x[7:8]
    assert idx.update(upd, vectors=new_vec) == 1
    assert idx.search(new_vec, 1)[0][0][0] == "p0007"
    assert idx.product("p0007").title == "A different product"

    # remove: never returned again, the rest unaffected
    gone = ["p0001", "p0002", "p0420"]
    assert idx.remove(gone) == 3
    assert len(idx) == 447 and idx.index.ntotal == 447
    found = {p for r in idx.search(x, 20) for p, _ in r}
    assert not found & set(gone)
    assert idx.search(x[3:4], 1)[0][0][0] == "p0003"
    with pytest.raises(KeyError, match="unknown product id 'p0001'"):
        idx.product("p0001")

    # and it all survives a save / load
    before = idx.search(x[:30], 10)
    idx.save(tmp_path)
    assert ProductIndex.load(tmp_path).search(x[:30], 10) == before


def test_sync_applies_a_new_catalog_version(rand_index):
    idx, df, x = rand_index
    new = df.drop(index=[0, 1]).copy()  # two removed
    new.loc[5, "price"] = 999.0  # one repriced
    new.loc[6, "in_stock"] = not new.loc[6, "in_stock"]
    counts = idx.sync(new)
    assert counts == {"added": 0, "removed": 2, "updated": 2, "reembedded": 0, "embedded": 0,
                      "unchanged": len(df) - 4}
    assert idx.checksum == catalog_checksum(new)
    assert idx.product("p0005").price == 999.0 and "p0000" not in idx
    assert idx.ids == list(new["id"])
