"""Batch narratives: one customer at a time (what a loop over the API does, minus HTTP) vs `recnarr batch`'s
batched generation at 1, 8 and 32 rows in flight, side by side in one run, on the run's real customers.

Every figure covers the whole job per customer: retrieval, prompt, grammar-constrained decoding with
sentence verification and rollback, the final check. The batched rows' narratives are read by the
independent audit (`recnarr.evaluation.audit`) against the raw tables.

    .venv/bin/python bench/batch_throughput.py --preset cpu-small --customers 64

Needs <run>/data and <run>/index (`make demo`). The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from memory import peak_rss_mb
from recnarr.config import load_config
from recnarr.evaluation.audit import Auditor
from recnarr.inference.batch import run_batch, select_users, user_seed
from recnarr.inference.generator import load_generator


def threaded_generator(preset: str, threads: int):
    """A Ray actor's generator, its torch threads set first (2 actors on 2 cores: 1 thread each)."""
    torch.set_num_threads(threads)
    return load_generator(load_config(preset))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--customers", type=int, default=64)
    ap.add_argument("--batches", default="1,8,32", help="rows in flight (generation.max_batch)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--ray-workers", dest="ray_workers", type=int, default=2,
                    help="actors of the --engine ray row, model loading included (0: leave the row out)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = load_generator(load_config(args.preset))
    users = select_users(gen.dataset, "all")[: args.customers]
    gen.recommend(users[0])  # warm-up: first-call allocations, the token table
    rows = []
    t = time.perf_counter()
    for u in users:
        gen.recommend(u, n=3, sampling={"seed": user_seed(0, u)})
    loop = len(users) / (time.perf_counter() - t)
    rows.append(("one at a time (the API loop, no HTTP)", 1, loop, None))
    auditor = Auditor(gen.dataset)
    for b in [int(x) for x in args.batches.split(",")]:
        gen.max_batch = b
        gen._close_session()  # the next session opens with b rows
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            run_batch(gen, Path(tmp) / "b", part_size=max(b, 32), limit=args.customers)
            rate = len(users) / (time.perf_counter() - t)
            df = pd.read_parquet(Path(tmp) / "b")
        false = sum(len(auditor.audit(r.narrative, r.narrated_product, r.user_id)) for r in df.itertuples())
        rows.append((f"recnarr batch, {b} in flight", b, rate, (false, int(df["fallback"].sum()), len(df))))
    if args.ray_workers:
        from functools import partial

        from recnarr.inference.batch import run_ray

        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()  # actors load the model and index inside this time
            run_ray(partial(threaded_generator, args.preset, 1), Path(tmp) / "b", part_size=32,
                    limit=args.customers, workers=args.ray_workers)
            rate = len(users) / (time.perf_counter() - t)
            df = pd.read_parquet(Path(tmp) / "b")
        false = sum(len(auditor.audit(r.narrative, r.narrated_product, r.user_id)) for r in df.itertuples())
        rows.append((f"--engine ray, {args.ray_workers} actors x 1 thread", 32, rate,
                     (false, int(df["fallback"].sum()), len(df))))
    print(f"\n{args.customers} customers of {args.preset}; torch {torch.get_num_threads()} threads")
    print(f"{'how':<42}{'narratives/s':>14}{'vs loop':>9}  audit false claims / fallbacks")
    for name, _, rate, audit in rows:
        a = f"{audit[0]} / {audit[1]} of {audit[2]}" if audit else "-"
        print(f"{name:<42}{rate:>14.2f}{rate / loop:>8.2f}x  {a}")
    best = max(rows[1:], key=lambda r: r[2])
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    print(json.dumps({"bench": "batch_throughput", "customers": args.customers, "loop_per_s": round(loop, 2),
                      **{f"batch{r[1]}_per_s": round(r[2], 2) for r in rows[1:] if not r[0].startswith("--")},
                      **({"ray_per_s": round(rows[-1][2], 2)} if args.ray_workers else {}),
                      "best_ratio": round(best[2] / loop, 2),
                      "false_claims": sum(r[3][0] for r in rows[1:]), "peak_rss_mb": round(peak_rss_mb())}))


if __name__ == "__main__":
    main()
