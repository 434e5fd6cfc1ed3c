"""The real all-MiniLM-L6-v2 from the offline wheel, on a small catalog."""

from __future__ import annotations

import os

import numpy as np
import pytest
from retrieval_fixtures import small_catalog

from recnarr.retrieval import embedder
from recnarr.retrieval.embedder import EmbeddingCache, embed_products, embed_texts, product_text, text_key


def test_product_text_has_the_describing_fields_but_not_price_or_stock():
    row = small_catalog().iloc[4]
    text = product_text(row)
    for part in ("Gooseneck kettle", "Brewline", "Kitchen > Coffee Gear", "capacity: 1 l", "Precise pouring"):
        assert part in text
    assert "45" not in text and "True" not in text
    changed = row.copy()
    changed["price"], changed["in_stock"], changed["discount"] = 1.0, False, 0.5
    assert text_key(product_text(changed)) == text_key(text)


def test_embed_texts_offline_normalised_and_meaningful():
    v = embed_texts(["pour-over coffee kettle", "gooseneck kettle for filter coffee", "office stapler"])
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    np.testing.assert_allclose(embed_texts(["pour-over coffee kettle"])[0], v[0], atol=1e-5)
    assert embedder.get_model() is embedder.get_model()  # loaded once
    assert 0 < embedder.model_load_seconds() < 30
    with pytest.raises(TypeError):
        embed_texts("one string")


def test_cache_embeds_only_new_or_changed_texts(tmp_path, monkeypatch):
    calls: list[list[str]] = []
    real = embedder.embed_texts

    def spy(texts, **kw):
        calls.append(list(texts))
        return real(texts, **kw)

    monkeypatch.setattr(embedder, "embed_texts", spy)
    cat = small_catalog()
    cache = EmbeddingCache()
    v1, keys, counts = embed_products(cat, cache, progress=False)
    assert counts == {"embedded": len(cat), "cached": 0} and len(calls[0]) == len(cat)
    cache.save(tmp_path)

    cache2 = EmbeddingCache.load(tmp_path)
    cat2 = cat.copy()
    cat2.loc[0, "price"] = 1.0  # price / stock: not part of the text
    cat2.loc[1, "in_stock"] = False
    cat2.loc[2, "title"] = "Espresso dark roast beans, 1 kg"  # text change
    v2, _, counts = embed_products(cat2, cache2, progress=False)
    assert counts == {"embedded": 1, "cached": len(cat) - 1}
    assert calls[-1] == [product_text(cat2.iloc[2])]
    np.testing.assert_array_equal(v2[[0, 1, 3]], v1[[0, 1, 3]])
    assert not np.allclose(v2[2], v1[2])

    # a cache made by another model is not reused
    assert len(EmbeddingCache.load(tmp_path, model="some-other-model")) == 0


def test_unknown_model_is_a_clear_error():
    with pytest.raises(embedder.EmbedderError, match="not a sentence-transformers model folder"):
        embedder.model_path("/nonexistent/model")
