"""Narratives of the shipped model on MovieLens and the unseen home catalog, printed beside their records
for a person to read, with the independent audit's verdict. Last line: JSON figures."""
import json
import sys

import torch

torch.set_num_threads(2)
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "tests" / "inference"))
from test_adversarial import home_dataset, true_records

from recnarr.config import GenerationConfig, cache_dir
from recnarr.data.movielens import load_movielens
from recnarr.data.tokenizer import get_tokenizer
from recnarr.evaluation.audit import Auditor
from recnarr.inference.engine import Engine
from recnarr.inference.generator import NarrativeGenerator
from recnarr.inference.serving_model import SHIPPED
from recnarr.model.quantize import load_quantized

eng = Engine(load_quantized(SHIPPED), get_tokenizer())
figures = {"bench": "read_narratives"}
for name, ds, n in [("movielens", load_movielens(cache_dir()), 12), ("home", home_dataset(), 10)]:
    gen = NarrativeGenerator(ds, None, eng, GenerationConfig())
    aud = Auditor(ds)
    fb = false = 0
    for i, (_, rec) in enumerate(true_records(ds, n)):
        steps = gen._narrate(rec, {"seed": i}, {"generate": 0.0, "verify": 0.0}, {}, False)
        try:
            while True: next(steps)
        except StopIteration as s: nar = s.value
        f = aud.audit(nar.text, nar.product_id, rec.user_id, [h.__dict__ for h in rec.history])
        fb += nar.fallback; false += len(f)
        print(f"[{name}] fb={nar.fallback} false={[str(x) for x in f]}\n  PRODUCT {rec.product.title} | {rec.product.category} | price {rec.product.price} disc {rec.product.discount} attrs {rec.product.attributes}")
        for k, h in enumerate(rec.history, 1): print(f"  past{k}: {h.title} | {h.category} | {h.date} | {h.event}")
        print("  TEXT:", nar.text)
    print(f"| {name} | narratives {i + 1} | fallbacks {fb} | false claims {false} |")
    figures.update({f"{name}_narratives": i + 1, f"{name}_fallbacks": fb, f"{name}_false_claims": false})
print(json.dumps(figures))
