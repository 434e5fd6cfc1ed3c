"""Fallback rate and false claims of the shipped model's verified narratives, on three catalogs.

Superstore (the catalog the model was tuned on), MovieLens, and a home-and-fashion shop shaped unlike
both (`tests/inference/fixtures/home`, never seen in training). For each catalog, records for real
customers (most active first), each for a product the customer never bought, in the three styles, with
a fresh sampling seed per narrative. Each narrative is then read by the independent audit
(`recnarr.evaluation.audit`, which shares no code with the verifier) against the raw tables.

    .venv/bin/python bench/narrative_audit.py                 # 100 narratives per catalog
    .venv/bin/python bench/narrative_audit.py --n 20 --show 5 # and print 5 per catalog beside their records

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from recnarr.choices import STYLES
from recnarr.config import GenerationConfig, cache_dir
from recnarr.data.catalog import load_catalog
from recnarr.data.movielens import load_movielens
from recnarr.data.narratives import NarrativeRecord
from recnarr.data.schema import Dataset
from recnarr.data.superstore import load_superstore
from recnarr.data.tokenizer import get_tokenizer
from recnarr.evaluation.audit import Auditor
from recnarr.inference.engine import Engine
from recnarr.inference.generator import NarrativeGenerator
from recnarr.inference.records import RecordBuilder
from recnarr.inference.serving_model import SHIPPED
from recnarr.model.quantize import load_quantized

HOME = Path(__file__).resolve().parents[1] / "tests" / "inference" / "fixtures" / "home"


def catalogs() -> dict[str, Dataset]:
    return {"superstore": load_superstore(cache_dir()), "movielens": load_movielens(cache_dir()),
            "home": load_catalog(HOME / "products.csv", HOME / "orders.jsonl", HOME / "customers.jsonl",
                                 HOME / "columns.yaml", name="home")}


def records(ds: Dataset, n: int) -> list[NarrativeRecord]:
    """n records: customers with two or more past items, most active first, each paired with products
    they never bought; a small catalog wraps round its customers with the next unbought product."""
    builder = RecordBuilder(ds)
    products = sorted(ds.products["id"].astype(str))
    customers = []
    for uid in ds.interactions["user_id"].astype(str).value_counts().index[: n * 2]:
        past = builder.customer_history(uid)
        items = builder.history_items([(pid, ts) for pid, ts, _ in past], uid, max_items=4)
        if len(items) >= 2:
            customers.append((uid, items, [p for p in products if p not in {pid for pid, _, _ in past}]))
    out: list[NarrativeRecord] = []
    for i in range(n):
        uid, items, unbought = customers[i % len(customers)]
        pid = unbought[(i * 7 + i // len(customers)) % len(unbought)]
        out.append(builder.record(builder.product(pid), items, uid, items[-1].product_id, STYLES[i % 3]))
    return out


def show(rec: NarrativeRecord, narrative, false: list) -> None:
    p = rec.product
    print(f"  PRODUCT {p.title} | {p.category} | price {p.price} | discount {p.discount} | {p.attributes}")
    for k, h in enumerate(rec.history, 1):
        print(f"  past{k}: {h.title} | {h.category} | {h.date} | {h.event}")
    print(f"  fallback={narrative.fallback} audit={[str(f) for f in false] or 'clean'}")
    print(f"  TEXT: {narrative.text}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="narratives per catalog")
    ap.add_argument("--show", type=int, default=0, help="narratives per catalog to print beside their records")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    engine = Engine(load_quantized(SHIPPED), get_tokenizer())
    figures: dict = {"bench": "narrative_audit"}
    rows = []
    for name, ds in catalogs().items():
        gen, auditor = NarrativeGenerator(ds, None, engine, GenerationConfig()), Auditor(ds)
        fallbacks = false_claims = resampled = 0
        seconds = []
        for i, rec in enumerate(records(ds, args.n)):
            history = [h.__dict__ for h in rec.history]
            t = time.perf_counter()
            narrative = gen.narrate(rec, {"seed": 1000 + i})
            seconds.append(time.perf_counter() - t)
            false = auditor.audit(narrative.text, narrative.product_id, rec.user_id, history)
            fallbacks += narrative.fallback
            false_claims += len(false)
            resampled += narrative.attempts - 1
            if i < args.show or false:
                print(f"[{name} #{i}]")
                show(rec, narrative, false)
        n = len(seconds)
        rows.append((name, n, fallbacks, false_claims, resampled, statistics.median(seconds),
                     sorted(seconds)[int(0.95 * (n - 1))]))
        figures.update({f"{name}_narratives": n, f"{name}_fallbacks": fallbacks,
                        f"{name}_false_claims": false_claims})
    print("| catalog | narratives | fallbacks | fallback rate | audit false claims | sentences resampled "
          "| p50 s | p95 s |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, n, fb, fc, rs, p50, p95 in rows:
        print(f"| {name} | {n} | {fb} | {fb / n:.1%} | {fc} | {rs} | {p50:.3f} | {p95:.3f} |")
    total = sum(r[1] for r in rows)
    figures.update({"narratives": total, "fallback_rate": round(sum(r[2] for r in rows) / total, 4),
                    "false_claims": sum(r[3] for r in rows)})
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
