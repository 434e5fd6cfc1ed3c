"""A tiny run folder for the evaluation tests, made in seconds: a 14-product catalog with six named
customers (segment, region, gender, age, occupation), a FAISS index over hashed bag-of-words vectors
(no embedding model), narrative examples written by the real Writer, and random-init GPT checkpoints
laid out as pretraining, fine-tuning and serving would leave them."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recnarr.config import RunConfig, load_config
from recnarr.data.claims import Pair
from recnarr.data.narratives import HistoryItem, NarrativeRecord, Writer, format_prompt
from recnarr.data.schema import Dataset, product_from_row
from recnarr.inference.records import RecordBuilder
from recnarr.model.checkpoint import save_checkpoint
from recnarr.model.gpt import GPT, GPTConfig

# id, title, brand, category, price, discount, attributes
ROWS = [
    ("OFF-BI-1", "Avery Durable Poly Binders", "Avery", ["Office Supplies", "Binders"], 5.5, 0.0, {"color": "blue"}),
    ("OFF-BI-2", "Wilson Jones Easy Open Ring Binders", "Wilson Jones", ["Office Supplies", "Binders"], 12.5, 0.2, {}),
    ("OFF-BI-3", "Fellowes PB500 Electric Punch Comb Binding Machine", "Fellowes", ["Office Supplies", "Binders"],
     1270.98, 0.2, {"color": "black"}),
    ("OFF-LA-1", "Avery 482 Address Labels", "Avery", ["Office Supplies", "Labels"], 7.0, 0.0, {}),
    ("OFF-PA-1", "Xerox Copy Paper, 500 sheets", "Xerox", ["Office Supplies", "Paper"], 8.0, 0.0, {}),
    ("OFF-FA-1", "Acco Binder Clips", "Acco", ["Office Supplies", "Fasteners"], 2.0, 0.0, {}),
    ("OFF-AR-1", "Newell Ballpoint Pens, 12 pack", "Newell", ["Office Supplies", "Art"], 4.0, 0.0, {}),
    ("FUR-CH-1", "Hon Ergonomic Office Chair", "Hon", ["Furniture", "Chairs"], 240.0, 0.15, {"color": "black"}),
    ("FUR-TA-1", "Bretford Standing Desk", "Bretford", ["Furniture", "Tables"], 420.0, 0.0, {}),
    ("FUR-FU-1", "Eldon Desk Lamp", "Eldon", ["Furniture", "Furnishings"], 25.0, 0.0, {}),
    ("TEC-PH-1", "Plantronics Headset", "Plantronics", ["Technology", "Phones"], 89.0, 0.0, {}),
    ("TEC-AC-1", "Logitech Wireless Mouse", "Logitech", ["Technology", "Accessories"], 29.99, 0.1, {}),
    ("TEC-AC-2", "Logitech Keyboard", "Logitech", ["Technology", "Accessories"], 49.99, 0.0, {}),
    ("TEC-MA-1", "Brother Laser Printer", "Brother", ["Technology", "Machines"], 199.0, 0.2, {}),
]
BUYS = {
    "AA-1": ["OFF-BI-1", "OFF-LA-1", "OFF-BI-2", "OFF-PA-1", "OFF-FA-1"],
    "BB-2": ["FUR-CH-1", "FUR-TA-1", "FUR-FU-1", "TEC-AC-1", "TEC-AC-2"],
    "CC-3": ["OFF-BI-1", "OFF-BI-2", "OFF-AR-1", "OFF-LA-1", "TEC-MA-1"],
    "DD-4": ["TEC-PH-1", "TEC-AC-1", "OFF-PA-1", "FUR-FU-1", "OFF-LA-1"],
    "EE-5": ["OFF-PA-1", "OFF-AR-1", "OFF-FA-1", "OFF-BI-1", "OFF-BI-3"],
    "FF-6": ["TEC-AC-2", "TEC-MA-1", "TEC-PH-1", "FUR-CH-1", "TEC-AC-1"],
}
USERS = [  # id, name, segment, demographics
    ("AA-1", "Ann Archer", "Consumer", {"region": "West", "gender": "F", "age": 24, "occupation": "student"}),
    ("BB-2", "Bo Baker", "Corporate", {"region": "East", "gender": "M", "age": 41, "occupation": "engineer"}),
    ("CC-3", "Cy Cole", "Consumer", {"region": "West", "gender": "M", "age": 33, "occupation": "writer"}),
    ("DD-4", "Di Dunn", "Corporate", {"region": "East", "gender": "F", "age": 52, "occupation": "librarian"}),
    ("EE-5", "Ed Eyre", "Consumer", {"region": "South", "gender": "M", "age": 19, "occupation": "student"}),
    ("FF-6", "Flo Finch", "Corporate", {"region": "South", "gender": "F", "age": 61, "occupation": "retired"}),
]
MODEL = GPTConfig(block_size=512, vocab_size=50257, n_layer=2, n_head=2, n_embd=64)
DIM = 32


def bought_on(user: str, i: int) -> datetime:
    """When `user` bought their i-th item of BUYS."""
    return datetime(2016, 1, 4) + timedelta(days=41 * i + 3 * ord(user[0]))


def dataset() -> Dataset:
    cols = ["id", "title", "brand", "category", "price", "discount", "attributes"]
    products = pd.DataFrame(ROWS, columns=cols)
    products["currency"] = "USD"
    products["in_stock"] = True
    products["description"] = ""
    products = products[["id", "title", "brand", "category", "price", "currency", "discount", "in_stock",
                         "attributes", "description"]]
    rows = []
    for u, items in BUYS.items():
        for i, p in enumerate(items):
            split = "train" if i < len(items) - 2 else ("val" if i == len(items) - 2 else "test")
            rows.append({"user_id": u, "product_id": p, "event": "purchase", "quantity": 1, "rating": None,
                         "timestamp": bought_on(u, i), "split": split})
    users = pd.DataFrame(USERS, columns=["id", "name", "segment", "demographics"])
    return Dataset("tiny-eval", products, users, pd.DataFrame(rows))


def hashed_vectors(texts: list[str]) -> np.ndarray:
    """Bag of hashed words: texts sharing words are near each other (stands in for the embedder)."""
    out = np.zeros((len(texts), DIM), np.float32)
    for i, text in enumerate(texts):
        for w in re.findall(r"[a-z0-9]+", text.lower()):
            h = int(hashlib.md5(w.encode()).hexdigest(), 16)
            out[i, h % DIM] += 1.0 if (h >> 8) % 2 else -1.0
        out[i] += 1e-3
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def records(ds: Dataset) -> list[NarrativeRecord]:
    """One test record per user: their train purchases as history, a product they never bought."""
    products = {str(r["id"]): product_from_row(r) for _, r in ds.products.iterrows()}
    names = dict(zip(ds.users["id"], ds.users["name"], strict=True))
    builder = RecordBuilder(ds)
    out = []
    for k, (uid, items) in enumerate(BUYS.items()):
        hist = [HistoryItem(p, products[p].title, products[p].category, bought_on(uid, i).date().isoformat(),
                            products[p].brand)
                for i, p in enumerate(items[:3])]  # the purchases as the interactions table has them
        candidate = next(p for p in list(products)[k:] + list(products) if p not in items)
        # each past item with the link a record backs (a category relation, a customer count), or none
        hist = [builder.linked(products[candidate], h, "ease") for h in hist]
        out.append(NarrativeRecord(product=products[candidate], history=hist, customer=names[uid], reason_index=1,
                                   pair=Pair(products["OFF-FA-1"].title, 1)
                                   if candidate != "OFF-FA-1" and "OFF-FA-1" not in items else None, tone=["warm", "concise", "premium"][k % 3], user_id=uid))
    return out


def write_run(root: Path, checkpoints: bool = True) -> RunConfig:
    """The run folder; returns its config (tracking off, tiny evaluation sizes)."""
    from recnarr.config import IndexConfig
    from recnarr.data.run_data import data_fingerprint
    from recnarr.retrieval.index import ProductIndex

    cfg = load_config("tiny", [
        f"run_dir={root}", "data.dataset=custom", "index.embed_model=hashed-test", "index.progress=false",
        "eval.tracking=false", "eval.narrative_examples=3", "eval.narrative_samples=2", "eval.speed_probes=1",
        "eval.n_users=3", "eval.counterfactual_narratives=1", "eval.permutations=20", "eval.k=3",
        "eval.fairness_datasets=[custom]", "generation.max_new_tokens=6", "generation.max_retries=1",
        "quantize.mode=none", "quantize.modes=[none,int8]", "finetune.method=lora",
    ])
    ds = dataset()
    ds.meta["fingerprint"] = data_fingerprint(cfg)
    ds.save(cfg.layout.data)
    p = ds.products
    texts = [f"{t} {b or ''} {' '.join(c)}" for t, b, c in zip(p["title"], p["brand"], p["category"], strict=True)]
    index = ProductIndex.build(p, IndexConfig(embed_model="hashed-test", index_type="flat", progress=False),
                               vectors=hashed_vectors(texts))
    index.save(cfg.layout.index)
    writer = Writer(0)
    folder = cfg.layout.narratives
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"record": r.to_json(), "prompt": format_prompt(r), "target": writer.write(r)})
             for r in records(ds)]
    (folder / "test.jsonl").write_text("\n".join(lines) + "\n")
    if checkpoints:
        torch.manual_seed(0)
        pre = cfg.layout.pretrain / "best"
        save_checkpoint(pre, GPT(MODEL), meta={"stage": "pretrain", "step": 20, "train_loss": 9.1, "val_loss": 9.3})
        save_checkpoint(cfg.layout.pretrain / "last", GPT(MODEL),
                        meta={"stage": "pretrain", "step": 40, "train_loss": 8.2, "val_loss": 8.9})
        torch.manual_seed(1)
        tuned = GPT(MODEL)
        meta = {"stage": "finetune", "method": "lora", "base": str(pre), "step": 10, "train_loss": 5.0, "val_loss": 5.5}
        save_checkpoint(cfg.layout.finetune_root / "lora" / "best", tuned, meta=meta)
        save_checkpoint(cfg.layout.serving_root / "merged", tuned, meta={**meta, "stage": "merge"})
    return cfg
