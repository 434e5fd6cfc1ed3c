"""A tiny NarrativeGenerator for serving tests: a small office-supplies catalog, four customers, a FAISS
index over hashed bag-of-words vectors (no embedding model), and either a random-init `tiny` GPT (its
noise is held to the claim grammar), a scripted engine that always writes the same slotted narrative
(verified, with citations), or a lying one (it wants to state a false price; the grammar refuses).

Importable in a subprocess as a factory: `RECNARR_GENERATOR_FACTORY=tiny_generator:build` with this
folder on PYTHONPATH; `RECNARR_TEST_ENGINE=scripted|lying` picks a scripted engine.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import torch

from recnarr.config import GenerationConfig, IndexConfig
from recnarr.data.schema import Dataset
from recnarr.data.tokenizer import get_tokenizer
from recnarr.inference.engine import Engine
from recnarr.inference.generator import NarrativeGenerator
from recnarr.model.gpt import GPT, PRESETS, GPTConfig
from recnarr.retrieval.index import ProductIndex
from recnarr.retrieval.recommender import Recommender

DIM = 32

# id, title, brand, category, price, discount, in_stock, attributes
_ROWS = [
    ("OFF-BI-1001", "Avery Durable Poly Binders", "Avery", ["Office Supplies", "Binders"], 5.5, 0.0, True, {"color": "blue"}),
    ("OFF-BI-1002", "Wilson Jones Easy Open Ring Binders", "Wilson Jones", ["Office Supplies", "Binders"], 12.5, 0.2, True, {}),
    ("OFF-BI-1003", "Fellowes PB500 Electric Punch Comb Binding Machine", "Fellowes", ["Office Supplies", "Binders"],
     1270.98, 0.2, True, {"color": "black"}),
    ("OFF-LA-1001", "Avery 482 Address Labels", "Avery", ["Office Supplies", "Labels"], 7.0, 0.0, True, {}),
    ("OFF-LA-1002", "Avery File Folder Labels", "Avery", ["Office Supplies", "Labels"], 4.2, 0.0, True, {}),
    ("OFF-PA-1001", "Xerox Copy Paper, 500 sheets", "Xerox", ["Office Supplies", "Paper"], 8.0, 0.0, True, {}),
    ("OFF-PA-1002", "Easy-staple paper", None, ["Office Supplies", "Paper"], 15.0, 0.1, True, {}),
    ("OFF-ST-1001", "Fellowes Bankers Box Storage", "Fellowes", ["Office Supplies", "Storage"], 30.0, 0.0, False, {}),
    ("OFF-FA-1001", "Acco Binder Clips", "Acco", ["Office Supplies", "Fasteners"], 2.0, 0.0, True, {}),
    ("OFF-AR-1001", "Newell Ballpoint Pens, 12 pack", "Newell", ["Office Supplies", "Art"], 4.0, 0.0, True, {}),
    ("FUR-CH-1001", "Hon Ergonomic Office Chair", "Hon", ["Furniture", "Chairs"], 240.0, 0.15, True, {"color": "black"}),
    ("FUR-TA-1001", "Bretford Standing Desk", "Bretford", ["Furniture", "Tables"], 420.0, 0.0, True, {}),
    ("FUR-BO-1001", "Bush Birmingham Bookcase", "Bush", ["Furniture", "Bookcases"], 130.98, 0.3, True, {}),
    ("FUR-FU-1001", "Eldon Desk Lamp", "Eldon", ["Furniture", "Furnishings"], 25.0, 0.0, True, {}),
    ("TEC-PH-1001", "Plantronics Headset", "Plantronics", ["Technology", "Phones"], 89.0, 0.0, True, {}),
    ("TEC-AC-1001", "Logitech Wireless Mouse", "Logitech", ["Technology", "Accessories"], 29.99, 0.1, True, {}),
    ("TEC-AC-1002", "Logitech Keyboard", "Logitech", ["Technology", "Accessories"], 49.99, 0.0, True, {}),
    ("TEC-MA-1001", "Brother Laser Printer", "Brother", ["Technology", "Machines"], 199.0, 0.2, True, {}),
]

BUYS = {
    "AA-10001": ["OFF-BI-1001", "OFF-LA-1001", "OFF-BI-1002", "OFF-PA-1001", "OFF-FA-1001"],
    "BB-10002": ["FUR-CH-1001", "FUR-TA-1001", "FUR-FU-1001", "TEC-AC-1001", "TEC-AC-1002"],
    "CC-10003": ["OFF-BI-1001", "OFF-BI-1002", "OFF-LA-1002", "OFF-AR-1001", "TEC-MA-1001"],
    "DD-10004": ["TEC-PH-1001", "TEC-AC-1001", "OFF-PA-1002", "FUR-BO-1001", "OFF-LA-1001"],
}
NAMES = {"AA-10001": "Ann Archer", "BB-10002": "Bo Baker", "CC-10003": "Cy Cole", "DD-10004": "Di Dunn"}


def dataset() -> Dataset:
    cols = ["id", "title", "brand", "category", "price", "discount", "in_stock", "attributes"]
    products = pd.DataFrame(_ROWS, columns=cols)
    products["currency"] = "USD"
    products["description"] = ""
    products = products[["id", "title", "brand", "category", "price", "currency", "discount", "in_stock",
                         "attributes", "description"]]
    t0 = datetime(2016, 1, 4)
    rows = []
    for u, items in BUYS.items():
        for i, p in enumerate(items):
            split = "train" if i < len(items) - 2 else ("val" if i == len(items) - 2 else "test")
            rows.append({"user_id": u, "product_id": p, "event": "purchase", "quantity": 1, "rating": None,
                         "timestamp": t0 + timedelta(days=41 * i + 3 * len(u)), "split": split})
    users = pd.DataFrame({"id": list(BUYS), "name": [NAMES[u] for u in BUYS], "segment": "Consumer",
                          "demographics": [{} for _ in BUYS]})
    return Dataset("tiny-office", products, users, pd.DataFrame(rows))


def hashed_vectors(texts: list[str]) -> np.ndarray:
    """Bag of hashed words: texts sharing words are near each other (stands in for the embedder)."""
    out = np.zeros((len(texts), DIM), np.float32)
    for i, text in enumerate(texts):
        for w in re.findall(r"[a-z0-9]+", text.lower()):
            h = int(hashlib.md5(w.encode()).hexdigest(), 16)
            out[i, h % DIM] += 1.0 if (h >> 8) % 2 else -1.0
        out[i] += 1e-3  # no all-zero rows
    return out / np.linalg.norm(out, axis=1, keepdims=True)


class ScriptedSlots:
    """Each row's logits peak at the next token of the text `text_for(prompt)` (then the end of text),
    whatever was fed: a model that learned one narrative. Rollbacks and row moves are honoured."""

    def __init__(self, backend: ScriptedBackend, rows: int):
        self.backend, self.rows = backend, [None] * rows  # per row: [script tokens, position]

    def _logits(self, row: int) -> torch.Tensor:
        script, i, _ = self.rows[row]
        out = torch.full((self.backend.config.vocab_size,), -10.0)
        out[script[min(i, len(script) - 1)]] = 10.0
        return out

    def prefill(self, row: int, tokens: list[int], vocab=None) -> torch.Tensor:
        # a script is written as it is, whatever the vocab (the Slots contract lets a backend skip it)
        tok = self.backend.tokenizer
        script = tok.encode(self.backend.text_for(tok.decode(tokens))) + [tok.eot_token]
        self.rows[row] = [script, 0, len(tokens)]
        return self._logits(row)

    def step(self, tokens: list[int], vocab=None) -> torch.Tensor:
        for i in range(len(tokens)):
            self.rows[i][1] += 1
        return torch.stack([self._logits(i) for i in range(len(tokens))])

    def truncate(self, row: int, length: int) -> None:
        self.rows[row][1] = length - self.rows[row][2]

    def move(self, src: int, dst: int) -> None:
        self.rows[dst] = self.rows[src]

    def close(self) -> None:
        pass


class ScriptedBackend:
    """An engine backend that writes the same slotted narrative every time (like a model that learned
    the format): exercises verified decoding and citations without training anything. `lying=True`
    wants to write a false price every time; the grammar does not let it."""

    LIE = "The {product} is now $0.99!"  # a price that is no fact of the product
    max_rows = 64

    def __init__(self, tokenizer: Any, block_size: int = 512, lying: bool = False):
        self.tokenizer, self.lying = tokenizer, lying
        self.config = GPTConfig(block_size=block_size, n_layer=1, n_head=1, n_embd=8)

    def text_for(self, prompt: str) -> str:
        if self.lying:
            return self.LIE
        m = re.search(r"### reason: \w+ to \[(\d+)\]", prompt)
        link = f" It {{past{m.group(1)}_link}} the {{past{m.group(1)}}}." if m else ""
        # like a model that learned the format: the product named first, a discounted product's price
        # said with its offer, then the recommender's reason
        offer = re.search(r"^### price: .* off", prompt, re.M)
        return ("Meet the {product} at {sale_price} ({discount} off {price})." if offer
                else "Meet the {product} at {price}.") + link

    def open(self, rows: int, cached: bool) -> ScriptedSlots:
        return ScriptedSlots(self, rows)


def ScriptedEngine(tokenizer: Any, block_size: int = 512, lying: bool = False, backend=ScriptedBackend) -> Engine:
    return Engine(backend(tokenizer, block_size, lying), tokenizer)


def build(settings: Any = None, engine: str | None = None, max_new_tokens: int = 12) -> NarrativeGenerator:
    """The tiny generator (a factory for RECNARR_GENERATOR_FACTORY: called with the service settings)."""
    ds = dataset()
    p = ds.products
    texts = [f"{t} {b or ''} {' '.join(c)}" for t, b, c in zip(p["title"], p["brand"], p["category"], strict=True)]
    cfg = IndexConfig(embed_model="hashed-test", index_type="flat", progress=False)
    index = ProductIndex.build(p, cfg, vectors=hashed_vectors(texts))
    recommender = Recommender(index, ds.interactions, text_encoder=hashed_vectors)
    tok = get_tokenizer()
    kind = engine or os.environ.get("RECNARR_TEST_ENGINE", "gpt")
    if kind in ("scripted", "lying"):
        eng: Any = ScriptedEngine(tok, lying=kind == "lying")
        model_info = f"{kind}-test-engine"
        max_new_tokens = max(max_new_tokens, 48)  # room for the whole script
    else:
        torch.manual_seed(0)
        eng = Engine(GPT(PRESETS["tiny"]).eval(), tok)
        model_info = "tiny-random-init"
    gen = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.8, top_k=50, top_p=0.95,
                           repetition_penalty=1.1, seed=0, max_retries=1)
    versions = {"model": model_info, "index": {"embed_model": "hashed-test", "products": len(index)},
                "catalog_checksum": ds.checksum()}
    return NarrativeGenerator(ds, recommender, eng, gen, versions, max_history=4)


def build_scripted(settings: Any = None) -> NarrativeGenerator:
    return build(settings, engine="scripted")


def build_lying(settings: Any = None) -> NarrativeGenerator:
    return build(settings, engine="lying")
