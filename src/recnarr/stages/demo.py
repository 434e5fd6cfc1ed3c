"""`recnarr demo`: the README's main job.

Data prepared, a model available (the shipped reference model under `models/` when it exists, else this
preset's pipeline trains one), index built, then narratives for three real customers, with timings.
"""

from __future__ import annotations

import time
from typing import Any

from recnarr.config import RunConfig
from recnarr.stages.data import prepare
from recnarr.stages.pipeline import pipeline


def demo(cfg: RunConfig, customers: int = 3, checkpoint: str | None = None, replace_data: bool = False,
         **_: Any) -> int:
    """Prepare data and index, find (or train) a model, and print narratives for real customers."""
    from recnarr.inference.generator import load_generator
    from recnarr.inference.serving_model import SHIPPED, find_checkpoint

    prepare(cfg, replace_data=replace_data)
    pipeline(cfg, only=["index"])
    try:
        path = find_checkpoint(cfg, checkpoint, cfg.quantize.mode)
    except FileNotFoundError:
        print(f"no trained model at {SHIPPED} or in {cfg.run_dir}: training the {cfg.run_dir} pipeline (CPU)")
        pipeline(cfg, until="quantize")
        path = find_checkpoint(cfg, checkpoint, cfg.quantize.mode)
    t = time.perf_counter()
    gen = load_generator(cfg, path)
    print(f"\nserving model: {path} ({gen.versions['model'].get('quantization')}), loaded in {time.perf_counter() - t:.1f}s")
    inter = gen.dataset.interactions
    counts = inter.groupby("user_id").size().sort_values(ascending=False)
    names = gen.users["name"]
    for uid in list(counts.index[: customers * 7 : 7])[:customers]:
        r = gen.recommend(user_id=str(uid), n=3, style="warm")
        n = r.narrative
        print(f"\n=== {names.get(uid, uid)} ({uid}), {counts[uid]} past purchases")
        for p, why in zip(r.products, r.reasons, strict=True):
            off = f", {round(p.discount * 100)}% off" if p.discount else ""
            print(f"  - {p.title}  ${p.price:,.2f}{off}")
            if why:  # the recommender's own evidence: the past item that added most to the score
                print(f"      why: {why[0]['kind']} to {why[0]['title']} (+{why[0]['contribution']:.2f})")
        flag = "verified" if n.verified and not n.fallback else ("FALLBACK (verifier rejected the model's text)"
                                                               if n.fallback else "UNVERIFIED")
        print(f"  narrative [{flag}, {n.attempts} attempt(s)]:\n    {n.text}")
        tm = r.timings
        print(f"  timings: retrieval {tm['retrieval'] * 1000:.0f} ms, generate {tm['generate'] * 1000:.0f} ms, "
              f"verify {tm['verify'] * 1000:.0f} ms, total {tm['total'] * 1000:.0f} ms "
              f"({r.tokens['generated']} tokens)")
    print("\nnext: `.venv/bin/recnarr serve --preset P` and `.venv/bin/recnarr demo-ui --preset P` (see README)")
    return 0
