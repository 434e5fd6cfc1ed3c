"""Small narrative examples (real writer, real prompt format) and a run folder to fine-tune on."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from recnarr.data.narratives import HistoryItem, NarrativeRecord, Writer, format_prompt
from recnarr.data.schema import Product
from recnarr.model.checkpoint import save_checkpoint
from recnarr.model.gpt import GPT, GPTConfig

PRODUCTS = [
    Product("P1", "Fellowes PB500 Electric Punch Comb Binding Machine", 1270.98, "Fellowes",
            ["Office Supplies", "Binders"], discount=0.2, attributes={"color": "Black"}),
    Product("P2", "Avery Durable Poly Binders", 5.5, "Avery", ["Office Supplies", "Binders"]),
    Product("P3", "Hamilton Beach Toaster Oven", 89.0, "Hamilton Beach", ["Office Supplies", "Appliances"],
            attributes={"color": "Silver"}),
    Product("P4", "Acco Binder Clips", 2.0, "Acco", ["Office Supplies", "Fasteners"]),
    Product("P5", "Avery 482", 7.0, "Avery", ["Office Supplies", "Labels"]),
    Product("P6", "Hon Deluxe Fabric Upholstered Stacking Chairs, Rounded Back", 243.0, "Hon", ["Furniture", "Chairs"],
            discount=0.1),
]
# 50257 ids so GPT-2 tokens fit; tiny otherwise (block 512: a prompt + narrative fits without truncation)
# n_embd 64: bitsandbytes' CPU inference path (QLoRA evaluation) needs rows of at least one 64-value block
MODEL = GPTConfig(block_size=512, vocab_size=50257, n_layer=2, n_head=2, n_embd=64)


def make_examples(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    writer = Writer(seed)
    out = []
    for i in range(n):
        product = PRODUCTS[i % len(PRODUCTS)]
        others = [p for p in PRODUCTS if p is not product]
        hist = [HistoryItem(p.id, p.title, p.category, f"2016-0{k + 1}-1{k}", p.brand)
                for k, p in enumerate(rng.sample(others, rng.randint(1, 4)))]
        rec = NarrativeRecord(product=product, history=hist, customer=rng.choice(["Claire Gute", None]),
                              reason_index=1, tone=rng.choice(["warm", "concise", "premium"]))
        out.append({"record": rec.to_json(), "prompt": format_prompt(rec), "target": writer.write(rec)})
    return out


def write_run(root: Path, n_train: int = 24, n_val: int = 8) -> Path:
    """A run folder with narratives/{train,val}.jsonl and a random pretrain/best checkpoint."""
    folder = root / "narratives"
    folder.mkdir(parents=True, exist_ok=True)
    for split, exs in (("train", make_examples(n_train, 0)), ("val", make_examples(n_val, 1))):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in exs))
    torch.manual_seed(0)
    save_checkpoint(root / "pretrain" / "best", GPT(MODEL), meta={"step": 0})
    return root
