"""GPT-2 BPE built offline from the registry file: exact ids, and no network access attempted."""

from __future__ import annotations

import pytest

from recnarr.data import sources, tokenizer


def test_gpt2_ids_offline(shared_cache, no_network, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("the tokenizer tried to download its vocabulary")

    monkeypatch.setattr(sources, "_download", no_download)
    tokenizer._encoding.cache_clear()  # build it again here, under the network block
    enc = tokenizer.get_tokenizer(shared_cache)
    assert enc.encode("Hello world") == [15496, 995]
    assert enc.encode("<|endoftext|>", allowed_special="all") == [50256] == [tokenizer.EOT_ID]
    assert enc.eot_token == 50256 and enc.n_vocab == 50257
    text = "Café crème, 12.5% off — naïve “quotes”\n\nnew paragraph"
    assert enc.decode(enc.encode_ordinary(text)) == text


def test_vocabulary_hash_is_checked(tmp_path):
    bad = tmp_path / "gpt2.tiktoken"
    bad.write_text("SGVsbG8= 0\n")
    with pytest.raises(ValueError, match="[Hh]ash"):
        tokenizer._encoding(str(bad))
