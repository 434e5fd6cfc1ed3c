"""Batch narratives: a client looping over the real API (`recnarr serve`, one request at a time), the same
loop in-process without HTTP, and `recnarr batch`'s batched generation at 1, 8 and 32 rows in flight, side
by side in one run, on the run's real customers, with the same per-customer seeds.

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
from serve_latency import ServerProcess


def threaded_generator(preset: str, threads: int):
    """A Ray actor's generator, its torch threads set first (2 actors on 2 cores: 1 thread each)."""
    torch.set_num_threads(threads)
    return load_generator(load_config(preset))


def api_loop(preset: str, users: list[str], threads: int | None) -> tuple[float, dict[str, str]]:
    """narratives/s of a client calling `POST /v1/recommendations` for each customer in turn, against a
    real server on the run (its serving model), and each customer's narrative text."""
    import httpx

    env = {"RECNARR_TORCH_THREADS": str(threads)} if threads else {}
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(preset, env, Path(tmp) / "server.log")
        try:
            server.wait_ready(600)
            texts: dict[str, str] = {}
            with httpx.Client(base_url=server.url, timeout=600) as c:
                c.post("/v1/recommendations", json={"user_id": users[0], "n": 3}).raise_for_status()  # warm-up
                t = time.perf_counter()
                for u in users:
                    r = c.post("/v1/recommendations", json={"user_id": u, "n": 3, "sampling": {"seed": user_seed(0, u)}})
                    r.raise_for_status()
                    texts[u] = (r.json().get("narrative") or {}).get("text")
                rate = len(users) / (time.perf_counter() - t)
        finally:
            server.stop()
    return rate, texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--customers", type=int, default=64)
    ap.add_argument("--batches", default="1,8,32", help="rows in flight (generation.max_batch)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--part-size", dest="part_size", type=int, default=256,
                    help="customers per part, as `recnarr batch --part-size` (its default: 256)")
    ap.add_argument("--no-api", dest="api", action="store_false", help="leave out the real-API loop row")
    ap.add_argument("--ray-workers", dest="ray_workers", type=int, default=2,
                    help="actors of the --engine ray row, model loading included (0: leave the row out)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = load_generator(load_config(args.preset))
    users = select_users(gen.dataset, "all")[: args.customers]
    rows = []
    api_texts: dict[str, str] = {}
    if args.api:  # first, while this process only holds its generator (the server loads its own)
        api, api_texts = api_loop(args.preset, users, args.threads)
        rows.append(("the API in a loop (HTTP, one at a time)", 1, api, None))
    gen.recommend(users[0])  # warm-up: first-call allocations, the token table
    t = time.perf_counter()
    for u in users:
        gen.recommend(u, n=3, sampling={"seed": user_seed(0, u)})
    rows.append(("one at a time in-process (no HTTP)", 1, len(users) / (time.perf_counter() - t), None))
    loop = rows[0][2]  # the baseline: the real API loop when measured
    same_as_api: list[int] = []
    auditor = Auditor(gen.dataset)
    for b in [int(x) for x in args.batches.split(",")]:
        gen.max_batch = b
        gen._close_session()  # the next session opens with b rows
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            run_batch(gen, Path(tmp) / "b", part_size=args.part_size, limit=args.customers)
            rate = len(users) / (time.perf_counter() - t)
            df = pd.read_parquet(Path(tmp) / "b")
        false = sum(len(auditor.audit(r.narrative, r.narrated_product, r.user_id)) for r in df.itertuples())
        rows.append((f"recnarr batch, {b} in flight", b, rate, (false, int(df["fallback"].sum()), len(df))))
        if api_texts:
            same_as_api.append(sum(api_texts.get(r.user_id) == r.narrative for r in df.itertuples()))
    if args.ray_workers:
        from functools import partial

        from recnarr.inference.batch import run_ray

        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()  # actors load the model and index inside this time
            run_ray(partial(threaded_generator, args.preset, 1), Path(tmp) / "b",
                    part_size=max(1, min(args.part_size, args.customers // args.ray_workers)),
                    limit=args.customers, workers=args.ray_workers)
            rate = len(users) / (time.perf_counter() - t)
            df = pd.read_parquet(Path(tmp) / "b")
        false = sum(len(auditor.audit(r.narrative, r.narrated_product, r.user_id)) for r in df.itertuples())
        rows.append((f"--engine ray, {args.ray_workers} actors x 1 thread", 32, rate,
                     (false, int(df["fallback"].sum()), len(df))))
    print(f"\n{args.customers} customers of {args.preset}; torch {torch.get_num_threads()} threads")
    base = "the API loop" if args.api else "the in-process loop"
    print(f"{'how':<42}{'narratives/s':>14}{'vs base':>9}  audit false claims / fallbacks   (base: {base})")
    for name, _, rate, audit in rows:
        a = f"{audit[0]} / {audit[1]} of {audit[2]}" if audit else "-"
        print(f"{name:<42}{rate:>14.2f}{rate / loop:>8.2f}x  {a}")
    if same_as_api:
        print(f"batch narratives equal to the API's for the same seed: {', '.join(map(str, same_as_api))} of "
              f"{len(users)} (batch {args.batches}; int8 quantizes each decode row with its own scale, so a row "
              f"never depends on its batch mates)")
    batched = [r for r in rows if r[3] is not None]
    best = max(batched, key=lambda r: r[2])
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    print(json.dumps({"bench": "batch_throughput", "customers": args.customers,
                      **({"api_loop_per_s": round(rows[0][2], 2)} if args.api else {}),
                      "loop_per_s": round(rows[int(args.api)][2], 2),
                      **{f"batch{r[1]}_per_s": round(r[2], 2) for r in batched if not r[0].startswith("--")},
                      **({"ray_per_s": round(rows[-1][2], 2)} if args.ray_workers else {}),
                      "best_ratio": round(best[2] / loop, 2),
                      "false_claims": sum(r[3][0] for r in batched), "same_as_api": same_as_api,
                      "peak_rss_mb": round(peak_rss_mb())}))


if __name__ == "__main__":
    main()
