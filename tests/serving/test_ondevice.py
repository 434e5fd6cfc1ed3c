"""On-device mode against a real `recnarr serve` process: only product ids cross the network."""

from __future__ import annotations

import json

import httpx
import pytest
import tiny_generator
import torch
from serving_helpers import Server

from recnarr.config import load_config
from recnarr.data.tokenizer import get_tokenizer
from recnarr.inference.engine import Engine
from recnarr.inference.ondevice import ServerError, device_dataset, narrate_on_device, read_purchases
from recnarr.model.gpt import GPT, PRESETS

pytestmark = pytest.mark.slow

USER, NAME = "AA-10001", "Ann Archer"


def device_engine(tmp_path) -> tuple[Engine, str]:
    """The GGUF model through llama.cpp where llama-cpp-python is installed (CI), else the torch engine."""
    torch.manual_seed(0)
    model = GPT(PRESETS["tiny"]).eval()
    try:
        from recnarr.inference.llamacpp import LlamaCppModel, LlamaCppUnavailable
        from recnarr.model.gguf_export import export_gguf

        return Engine(LlamaCppModel(export_gguf(model, tmp_path / "device.gguf", "q8_0"), n_threads=1),
                      get_tokenizer()), "llamacpp"
    except LlamaCppUnavailable:
        return Engine(model, get_tokenizer()), "torch"


def test_ondevice_sends_product_ids_only(tmp_path, shared_cache, monkeypatch):
    ds = tiny_generator.dataset()
    h = ds.history(USER)
    purchases = list(zip(h["product_id"], h["timestamp"], strict=True))
    device = device_dataset(ds.products, USER, NAME, purchases)
    engine, backend = device_engine(tmp_path)
    cfg = load_config("tiny", ["generation.max_new_tokens=16", "generation.max_retries=0"])

    requests: list[httpx.Request] = []
    real_post = httpx.post

    def spy(*args, **kwargs):
        r = real_post(*args, **kwargs)
        requests.append(r.request)
        return r

    monkeypatch.setattr(httpx, "post", spy)
    server = Server(tmp_path / "server.log")
    try:
        server.wait_ready()
        result, remote = narrate_on_device(device, USER, server.url, engine, cfg, n=3)
    finally:
        server.stop()

    assert len(requests) == 1  # one call: candidates for an anonymous basket
    body = json.loads(requests[0].content)
    assert body == remote.sent[0] == {"history": [p for p, _ in purchases], "n": 3, "narrate": False}
    raw = requests[0].content.decode() + str(requests[0].url) + str(dict(requests[0].headers))
    for private in (USER, NAME, "Ann", "2016"):  # no user id, name or purchase date leaves the device
        assert private not in raw
    catalog = set(ds.products["id"])
    assert len(result.products) == 3 and {p.id for p in result.products} <= catalog
    assert not {p.id for p in result.products} & set(body["history"])  # the server filtered what was bought
    nar = result.narrative
    assert nar is not None and nar.text and nar.product_id == result.products[0].id
    assert nar.verified or nar.fallback  # written and checked on the device (a random model: the fallback)
    assert backend in ("llamacpp", "torch")


def test_ondevice_errors_are_clear(tmp_path, shared_cache):
    ds = tiny_generator.dataset()
    with pytest.raises(ValueError, match="catalog snapshot lacks.*NOPE"):
        device_dataset(ds.products, "u", None, [("NOPE", None)])
    device = device_dataset(ds.products, "u", None, [("OFF-BI-1001", None)])
    cfg = load_config("tiny")
    torch.manual_seed(0)
    with pytest.raises(ServerError, match="cannot reach the recommendation service at http://127.0.0.1:9"):
        narrate_on_device(device, "u", "http://127.0.0.1:9", Engine(GPT(PRESETS["tiny"]), get_tokenizer()), cfg)
    bad = tmp_path / "p.json"
    bad.write_text('[{"sku": 1}]')
    with pytest.raises(ValueError, match="purchase 1: expected an object with a string product_id"):
        read_purchases(bad)
    bad.write_text('[{"product_id": "OFF-BI-1001", "timestamp": "2016-02-01"}]')
    assert read_purchases(bad) == [("OFF-BI-1001", "2016-02-01")]
