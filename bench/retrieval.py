"""Retrieval benchmark: exact (flat) vs HNSW inner-product search at 2k, 100k and 1M products.

    python bench/retrieval.py                 # 2k (real catalog), 100k, 1M
    python bench/retrieval.py --max-n 100000  # skip 1M (~1 minute on 2 cores)

Vectors. 2k = the real Superstore catalog embedded with all-MiniLM-L6-v2 (embeddings cached under
`<cache>/bench/`). Larger catalogs are synthetic but shaped like the real ones: each vector is a real
product embedding moved part of the way towards one of its 10 nearest real neighbours, plus Gaussian noise,
renormalised (`synthetic`). Queries are fresh vectors drawn the same way (not in the index), so the
neighbour structure, and hence recall, is meaningful.

Measured per size and index: build time, single-query latency p50/p95 (one query per call on one thread,
as a request handler runs it), batch throughput (queries/s for one call with `--batch` queries, all
cores), and HNSW recall@10 against the exact flat results. FAISS uses all cores (2 here) for builds.
The machine's load average is recorded: other processes on the same cores inflate every figure.
The LAST line of output is one JSON object with every figure: {"bench": "retrieval", ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import faiss
import numpy as np

from recnarr.config import flatten


def real_embeddings() -> np.ndarray:
    """The Superstore catalog's product embeddings (embedding only what the bench cache lacks)."""
    from recnarr.config import cache_dir
    from recnarr.data.superstore import load_superstore
    from recnarr.retrieval.embedder import EmbeddingCache, embed_products

    folder = cache_dir() / "bench" / "superstore-embeddings"
    ds = load_superstore(cache_dir())
    cache = EmbeddingCache.load(folder)
    vectors, _, counts = embed_products(ds.products, cache, progress=True)
    if counts["embedded"]:
        cache.save(folder)
    # one vector per distinct text (a few products share a title)
    return np.unique(vectors, axis=0).astype(np.float32)


def synthetic(real: np.ndarray, n: int, rng: np.random.Generator, noise: float, neighbours: int = 10) -> np.ndarray:
    """n vectors near the real ones: e_i + t * (e_j - e_i) + noise, j one of i's nearest real neighbours."""
    d = real.shape[1]
    flat = faiss.IndexFlatIP(d)
    flat.add(real)
    _, nn = flat.search(real, neighbours + 1)
    out = np.empty((n, d), dtype=np.float32)
    step = 200_000
    for s in range(0, n, step):
        m = min(step, n - s)
        base = rng.integers(0, len(real), m)
        other = nn[base, rng.integers(1, neighbours + 1, m)]
        t = rng.uniform(0, 0.5, (m, 1)).astype(np.float32)
        x = real[base] + t * (real[other] - real[base])
        x += rng.standard_normal((m, d), dtype=np.float32) * (noise / np.sqrt(d))
        out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def latency_ms(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[float, float]:
    """p50/p95 of one-query calls on ONE thread, as `ProductIndex.search` runs requests (search_threads=1):
    an OpenMP team for a single query costs more than it saves, far more on busy cores."""
    times = []
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    for i in range(len(queries)):
        t0 = time.perf_counter()
        index.search(queries[i:i + 1], k)
        times.append(time.perf_counter() - t0)
    faiss.omp_set_num_threads(threads)
    t = np.array(times) * 1000
    return float(np.percentile(t, 50)), float(np.percentile(t, 95))


def throughput(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    _, ids = index.search(queries, k)
    return len(queries) / (time.perf_counter() - t0), ids


def bench_size(x: np.ndarray, queries: np.ndarray, args: argparse.Namespace) -> dict:
    n, d = x.shape
    k = args.k
    single = queries[: args.single if n < 500_000 else max(50, args.single // 10)]
    out: dict = {"n": n}

    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(d)
    flat.add(x)
    out["flat"] = {"build_s": time.perf_counter() - t0}
    p50, p95 = latency_ms(flat, single, k)
    qps, truth = throughput(flat, queries, k)
    out["flat"].update(p50_ms=p50, p95_ms=p95, batch_qps=qps, single_queries=len(single))
    del flat

    t0 = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(d, args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = args.ef_construction
    hnsw.add(x)
    build = time.perf_counter() - t0
    out["hnsw"] = {"build_s": build, "M": args.hnsw_m, "efConstruction": args.ef_construction, "by_efSearch": {}}
    for ef in args.ef_search:
        hnsw.hnsw.efSearch = max(ef, k)
        p50, p95 = latency_ms(hnsw, queries[: args.single], k)
        qps, got = throughput(hnsw, queries, k)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, truth, strict=True)]))
        out["hnsw"]["by_efSearch"][str(ef)] = {"p50_ms": p50, "p95_ms": p95, "batch_qps": qps, "recall@10": recall}
    # the reported operating point: the smallest efSearch reaching the recall target
    ok = [ef for ef in args.ef_search if out["hnsw"]["by_efSearch"][str(ef)]["recall@10"] >= args.target_recall]
    out["hnsw"]["efSearch"] = ok[0] if ok else args.ef_search[-1]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-n", type=int, default=1_000_000, help="largest catalog size (100000 skips 1M)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000], help="synthetic sizes")
    ap.add_argument("--single", type=int, default=1000, help="single queries timed (a tenth for flat at >= 500k)")
    ap.add_argument("--batch", type=int, default=1000, help="queries in the batch-throughput call")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--ef-search", type=int, nargs="*", default=[32, 64, 128])
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--noise", type=float, default=0.3, help="norm of the Gaussian noise added per vector")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.ef_search = sorted(args.ef_search)

    rng = np.random.default_rng(args.seed)
    load_start = [round(v, 2) for v in os.getloadavg()]
    real = real_embeddings()
    results = []
    # 2k: the real catalog; queries are perturbed real vectors (users' queries are never exact products)
    q_real = synthetic(real, args.batch, rng, args.noise)
    results.append({"catalog": "superstore (real)", **bench_size(real, q_real, args)})
    for n in [s for s in args.sizes if s <= args.max_n]:
        t0 = time.perf_counter()
        x = synthetic(real, n, rng, args.noise)
        queries = synthetic(real, args.batch, rng, args.noise)
        gen_s = time.perf_counter() - t0
        results.append({"catalog": "synthetic", "generate_s": gen_s, **bench_size(x, queries, args)})
        del x

    print(f"{'n':>9} {'index':<22} {'build s':>8} {'p50 ms':>7} {'p95 ms':>7} {'batch q/s':>10} {'recall@10':>9}")
    for r in results:
        f = r["flat"]
        print(f"{r['n']:>9} {'flat (exact)':<22} {f['build_s']:>8.2f} {f['p50_ms']:>7.3f} {f['p95_ms']:>7.3f} "
              f"{f['batch_qps']:>10.0f} {1.0:>9.3f}")
        h = r["hnsw"]
        for ef, m in h["by_efSearch"].items():
            mark = " *" if int(ef) == h["efSearch"] else ""
            name = f"hnsw M{h['M']} ef{ef}{mark}"
            print(f"{r['n']:>9} {name:<22} {h['build_s']:>8.2f} {m['p50_ms']:>7.3f} {m['p95_ms']:>7.3f} "
                  f"{m['batch_qps']:>10.0f} {m['recall@10']:>9.3f}")
    print(f"(* smallest efSearch with recall@10 >= {args.target_recall}; HNSW efConstruction "
          f"{args.ef_construction}; p50/p95 on 1 thread, build and batch on {faiss.omp_get_max_threads()}; "
          f"load average at start {load_start[0]})")

    at_100k = next((r for r in results if r["n"] == 100_000), None)
    summary = {
        "bench": "retrieval", "faiss": faiss.__version__, "threads": faiss.omp_get_max_threads(),
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "k": args.k,
        "noise": args.noise, "ef_construction": args.ef_construction, "hnsw_m": args.hnsw_m,
        "loadavg_start": load_start, "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "results": [{key: (round(v, 4) if isinstance(v, float) else v) for key, v in flatten(r).items()}
                    for r in results],
    }
    if at_100k:
        op = at_100k["hnsw"]["by_efSearch"][str(at_100k["hnsw"]["efSearch"])]
        summary["target_100k"] = {"efSearch": at_100k["hnsw"]["efSearch"], "p50_ms": round(op["p50_ms"], 4),
                                  "recall@10": round(op["recall@10"], 4),
                                  "met": op["p50_ms"] < 2.0 and op["recall@10"] >= args.target_recall}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
