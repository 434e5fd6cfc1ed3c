"""`recnarr evaluate retrieval`: next-item prediction on the time split, our retriever vs baselines.

Protocol, per dataset (Superstore and MovieLens-100k by default, `eval.retrieval_datasets`):
- positives: purchases (Superstore) or ratings >= `retrieval.positive_min_rating` (MovieLens: 4);
- a user is evaluated if they have a positive in the TEST split that they had not interacted with
  positively before (targets = those new items) and at least one positive in train + val (the history);
- every method ranks the whole catalog minus what the user has seen before the split (any interaction:
  a film rated 2 is seen too; in stock or not: the ranking, not the stock filter, is measured) and
  returns its top k;
- popularity and co-occurrence (for the baselines and our re-ranking) come from TRAIN positives only;
- Recall@k = |top-k ∩ targets| / |targets|, NDCG@k with binary gains, coverage = distinct items in
  anyone's top-k / catalog size, diversity = distinct leaf categories in a top-k / its length (mean
  over users), and the largest number of one leaf category in any top-k.

Methods in the same table: random, most-popular, item-kNN (co-occurrence, cosine-normalised: sum over the
history of co(h, c) / sqrt(n_h n_c)), EASE alone (the strongest classic item-item model, closed form),
a well-kept library's model (`implicit`'s ALS, its factors and regularization chosen on the validation
split), ours with similarity only, and ours with the configured blend (similarity, popularity,
co-purchase, EASE, sequential rules; per-dataset weights from `retrieval.per_dataset`, chosen on the
validation split by `--tune`) and the per-category cap.

Approximate index recall: for the configured HNSW and IVF-PQ settings, recall@k of their neighbours
against exact inner product, on the real embeddings, with the users' query vectors and every product's
own vector as queries (target >= 0.95).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from recnarr.config import IndexConfig, RunConfig, cache_dir
from recnarr.data.schema import Dataset
from recnarr.retrieval.collaborative import EASE
from recnarr.retrieval.index import ProductIndex
from recnarr.retrieval.recommender import (
    Filters,
    InteractionStats,
    Recommender,
    positive_interactions,
    train_interactions,
)


@dataclass
class EvalCase:
    user_id: str
    history: list[tuple[str, Any]]  # (product id, timestamp), oldest first: train + val positives
    targets: set[str]  # new test positives
    seen: set[str] = field(default_factory=set)  # every item interacted with before the split (excluded)


Ranker = Callable[[EvalCase, int], list[str]]


# ------------------------------------------------------------------------------------------- metrics


def recall_at_k(ranked: Sequence[str], targets: set[str], k: int) -> float:
    return len(set(ranked[:k]) & targets) / len(targets) if targets else 0.0


def ndcg_at_k(ranked: Sequence[str], targets: set[str], k: int) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, p in enumerate(ranked[:k]) if p in targets)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(targets), k)))
    return dcg / idcg if idcg else 0.0


def eval_cases(ds: Dataset, min_rating: float = 4.0, max_users: int | None = None, seed: int = 0,
               split: str = "test") -> list[EvalCase]:
    """One case per user with a new positive in `split` and a non-empty history before it.

    split="test": history = train + val positives; split="val" (for tuning): history = train positives.
    """
    inter = ds.interactions
    if "split" not in inter.columns:
        raise ValueError(f"dataset {ds.name!r} has no `split` column: run the time split (`recnarr data load`)")
    before = {"test": ["train", "val"], "val": ["train"]}[split]
    pos = positive_interactions(inter, min_rating).sort_values(["user_id", "timestamp"], kind="stable")
    earlier = inter[inter["split"].isin(before)]
    seen_by = {str(u): set(g.astype(str)) for u, g in earlier.groupby("user_id")["product_id"]}
    cases = []
    for uid, rows in pos.groupby("user_id", sort=True):
        past = rows[rows["split"].isin(before)]
        seen = seen_by.get(str(uid), set()) | set(past["product_id"].astype(str))
        targets = set(rows.loc[rows["split"] == split, "product_id"].astype(str)) - seen
        if targets and len(past):
            cases.append(EvalCase(str(uid), list(zip(past["product_id"], past["timestamp"], strict=True)), targets,
                                  seen))
    if max_users is not None and len(cases) > max_users:
        pick = np.random.default_rng(seed).choice(len(cases), max_users, replace=False)
        cases = [cases[i] for i in sorted(pick)]
    return cases


def evaluate_rankers(cases: Sequence[EvalCase], rankers: dict[str, Ranker], catalog_size: int,
                     k: int = 10, leaf: dict[str, str] | None = None) -> dict[str, dict[str, float]]:
    """leaf: product id -> leaf category, for diversity (left out without it)."""
    out = {}
    for name, rank in rankers.items():
        rec, ndcg, listed, hits, div, most, repeats = [], [], set(), 0, [], 0, 0
        t0 = time.perf_counter()
        for c in cases:
            top = rank(c, k)[:k]
            rec.append(recall_at_k(top, c.targets, k))
            ndcg.append(ndcg_at_k(top, c.targets, k))
            hits += len(set(top) & c.targets)
            repeats += len(set(top) & c.seen)
            listed.update(top)
            if leaf is not None and top:
                cats = [leaf.get(p, "") for p in top]
                div.append(len(set(cats)) / len(cats))
                most = max(most, max(cats.count(x) for x in set(cats)))
        out[name] = {f"recall@{k}": float(np.mean(rec)) if rec else 0.0,
                     f"ndcg@{k}": float(np.mean(ndcg)) if ndcg else 0.0,
                     "coverage": len(listed) / catalog_size if catalog_size else 0.0,
                     "diversity": float(np.mean(div)) if div else None,
                     "max_same_category": most,
                     "seen_recommended": repeats,  # items the user had already seen, in their list
                     "hits": hits,  # targets found in a top-k, all users together (the scale of the numbers)
                     "ndcg_per_user": ndcg,  # for the paired bootstrap (`paired_ci`)
                     "ms_per_user": 1000 * (time.perf_counter() - t0) / max(len(cases), 1)}
    return out


# ------------------------------------------------------------------------------------------ baselines


def _top_excluding(order: np.ndarray, ids: np.ndarray, exclude: set[str], k: int) -> list[str]:
    out = []
    for i in order:
        if ids[i] not in exclude:
            out.append(str(ids[i]))
            if len(out) == k:
                break
    return out


def paired_ci(a: Sequence[float], b: Sequence[float], n: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean of a - b over the same users, with a 95% paired-bootstrap interval and the relative gain. When
    the interval holds 0 the data cannot tell the two apart (Superstore: about ten hits per method)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if not len(d):
        return {"diff": 0.0, "lo": 0.0, "hi": 0.0, "rel": 0.0}
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (n, len(d)))].mean(axis=1)
    base = float(np.mean(b))
    return {"diff": float(d.mean()), "lo": float(np.percentile(means, 2.5)), "hi": float(np.percentile(means, 97.5)),
            "rel": float(d.mean() / base) if base else 0.0}


def random_ranker(catalog: Sequence[str], seed: int = 0) -> Ranker:
    ids = np.asarray(catalog, dtype=object)
    rng = np.random.default_rng(seed)

    def rank(case: EvalCase, k: int) -> list[str]:
        return _top_excluding(rng.permutation(len(ids)), ids, case.seen | {h for h, _ in case.history}, k)

    return rank


def popularity_ranker(catalog: Sequence[str], stats: InteractionStats) -> Ranker:
    ids = np.asarray(catalog, dtype=object)
    order = np.lexsort((ids.astype(str), -stats.popularity(list(catalog))))

    def rank(case: EvalCase, k: int) -> list[str]:
        return _top_excluding(order, ids, case.seen | {h for h, _ in case.history}, k)

    return rank


def ease_ranker(catalog: Sequence[str], stats: InteractionStats, l2: float) -> Ranker:
    """EASE alone: score(c) = sum over the history of B[h, c]; the rest by popularity."""
    ids = np.asarray(catalog, dtype=object)
    cols = stats.cols(list(catalog))
    pop = stats.popularity(list(catalog))
    model = EASE(stats, l2)

    def rank(case: EvalCase, k: int) -> list[str]:
        hist = [h for h, _ in case.history]
        row = model.scores(hist)
        score = np.where(cols >= 0, row[np.maximum(cols, 0)], 0.0)
        order = np.lexsort((ids.astype(str), -pop, -score))
        return _top_excluding(order, ids, case.seen | set(hist), k)

    return rank


def itemknn_ranker(catalog: Sequence[str], stats: InteractionStats) -> Ranker:
    """Item co-occurrence kNN: score(c) = sum_h co(h, c) / sqrt(n_h * n_c); ties and the rest by popularity."""
    ids = np.asarray(catalog, dtype=object)
    cols = stats.cols(list(catalog))
    pop = stats.popularity(list(catalog))
    n = np.where(cols >= 0, stats.counts[np.maximum(cols, 0)], 0.0)

    def rank(case: EvalCase, k: int) -> list[str]:
        hist = list(dict.fromkeys(h for h, _ in case.history))
        hc = stats.cols(hist)
        hc = hc[hc >= 0]
        score = np.zeros(len(ids))
        if len(hc):
            co = stats.cooc[hc].toarray()  # (H, items)
            co = co / np.sqrt(stats.counts[hc])[:, None]
            row = co.sum(axis=0)
            score = np.where(cols >= 0, row[np.maximum(cols, 0)], 0.0) / np.sqrt(np.maximum(n, 1.0))
        order = np.lexsort((ids.astype(str), -pop, -score))
        return _top_excluding(order, ids, case.seen | set(hist), k)

    return rank


ALS_GRID = {"factors": [16, 32, 64], "regularization": [0.1, 1.0]}  # chosen per dataset on validation


def als_ranker(catalog: Sequence[str], stats: InteractionStats, factors: int = 64, regularization: float = 0.05,
               iterations: int = 15, seed: int = 0) -> Ranker:
    """The library peer: `implicit`'s alternating least squares (Hu, Koren, Volinsky 2008) on the same
    train positives; a user's factors are solved from their history (`recalculate_user`), so val
    positives in a test history count as they do for every other method."""
    from implicit.als import AlternatingLeastSquares
    from scipy import sparse
    from threadpoolctl import threadpool_limits

    x = stats.user_items.astype(np.float32).tocsr()
    with threadpool_limits(1, "blas"):  # implicit's advice: its own threads, not BLAS's, do the work
        model = AlternatingLeastSquares(factors=factors, regularization=regularization, iterations=iterations,
                                        random_state=seed, num_threads=1, calculate_training_loss=False)
        model.fit(x, show_progress=False)
    ids = np.asarray(catalog, dtype=object)
    pop = stats.popularity(list(catalog))
    cols = stats.cols(list(catalog))
    n_items = len(stats.items)

    def rank(case: EvalCase, k: int) -> list[str]:
        hist = [h for h, _ in case.history]
        hc = stats.cols(hist)
        hc = np.unique(hc[hc >= 0])
        score = np.zeros(len(ids))
        if len(hc):
            row = sparse.csr_matrix((np.ones(len(hc), np.float32), (np.zeros(len(hc), int), hc)), shape=(1, n_items))
            got, val = model.recommend(0, row, N=n_items, recalculate_user=True, filter_already_liked_items=False)
            full = np.full(n_items, -np.inf)
            full[got] = val
            score = np.where(cols >= 0, full[np.maximum(cols, 0)], -np.inf)
        order = np.lexsort((ids.astype(str), -pop, -score))
        return _top_excluding(order, ids, case.seen | set(hist), k)

    return rank


def tuned_als(ds: Dataset, catalog: Sequence[str], stats: InteractionStats, cfg: RunConfig) -> tuple[str, Ranker]:
    """The ALS peer at the `ALS_GRID` point with the best validation NDCG@k (as ours is tuned)."""
    import itertools

    val = eval_cases(ds, cfg.retrieval.positive_min_rating, cfg.eval.retrieval_max_users, cfg.eval.seed, "val")
    best: tuple[float, int, float] | None = None
    for f, r in itertools.product(*ALS_GRID.values()):
        score = evaluate_rankers(val, {"als": als_ranker(catalog, stats, f, r)}, len(catalog), cfg.eval.k)["als"]
        if best is None or score[f"ndcg@{cfg.eval.k}"] > best[0]:
            best = (score[f"ndcg@{cfg.eval.k}"], f, r)
    assert best is not None
    return (f"implicit ALS (library; factors {best[1]}, reg {best[2]:g}, chosen on val)",
            als_ranker(catalog, stats, best[1], best[2]))


def retriever_ranker(rec: Recommender) -> Ranker:
    def rank(case: EvalCase, k: int) -> list[str]:
        f = Filters(in_stock=False, exclude_purchased=True, exclude_ids=tuple(case.seen))
        return [r.product.id for r in rec.recommend(case.history, filters=f, k=k)]

    return rank


# ------------------------------------------------------------------------------ approximate index recall


def approx_recall(vectors: np.ndarray, queries: np.ndarray, cfg: IndexConfig, k: int = 10) -> dict[str, Any]:
    """Recall@k of HNSW and IVF-PQ (at `cfg`'s settings) against exact inner product on the same vectors."""
    products = _stub_products(len(vectors))
    exact = ProductIndex.build(products, replace(cfg, index_type="flat", progress=False), vectors=vectors)
    truth = [{p for p, _ in r} for r in exact.search(queries, k)]
    out: dict[str, Any] = {}
    for kind in ("hnsw", "ivfpq"):
        t0 = time.perf_counter()
        idx = ProductIndex.build(products, replace(cfg, index_type=kind, progress=False), vectors=vectors)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = idx.search(queries, k)
        search_ms = 1000 * (time.perf_counter() - t0) / max(len(queries), 1)
        hits = [len({p for p, _ in g} & t) / max(len(t), 1) for g, t in zip(got, truth, strict=True)]
        out[kind] = {"recall@k": float(np.mean(hits)), "params": idx.manifest["index_params"],
                     "build_s": round(build_s, 3), "ms_per_query": round(search_ms, 3), "queries": len(queries)}
    return out


def _stub_products(n: int) -> pd.DataFrame:
    """Placeholder catalog rows for indexes built from bare vectors."""
    return pd.DataFrame({"id": [f"v{i}" for i in range(n)], "title": [f"v{i}" for i in range(n)], "brand": None,
                         "category": [[] for _ in range(n)], "price": 0.0, "currency": "USD", "discount": 0.0,
                         "in_stock": True, "attributes": [{} for _ in range(n)], "description": ""})


# --------------------------------------------------------------------------------------------- driver


def evaluate_dataset(ds: Dataset, index: ProductIndex, cfg: RunConfig) -> dict[str, Any]:
    """The comparison table and the approximate index recall for one dataset."""
    k, rcfg = cfg.eval.k, cfg.retrieval
    cases = eval_cases(ds, rcfg.positive_min_rating, cfg.eval.retrieval_max_users, cfg.eval.seed)
    catalog = index.ids
    rec = Recommender(index, ds.interactions, rcfg, dataset=ds.name)
    sim_only = Recommender(index, ds.interactions, replace(rcfg, popularity_weight=0.0, copurchase_weight=0.0,
                                                           ease_weight=0.0, sequence_weight=0.0,
                                                           max_per_category=None, per_dataset={}))
    stats = InteractionStats(train_interactions(positive_interactions(ds.interactions, rcfg.positive_min_rating)))
    als_name, als = tuned_als(ds, catalog, stats, cfg)
    rankers: dict[str, Ranker] = {
        "random": random_ranker(catalog, cfg.eval.seed),
        "most-popular": popularity_ranker(catalog, stats),
        "item-kNN (co-occurrence)": itemknn_ranker(catalog, stats),
        "EASE (closed form, no text)": ease_ranker(catalog, stats, rcfg.ease_l2),
        als_name: als,
        "ours: embedding similarity": retriever_ranker(sim_only),
        "ours: similarity + popularity + co-purchase + EASE + sequence, capped": retriever_ranker(rec),
    }
    leaf = {str(p): (str(c[-1]) if c is not None and len(c) else "") for p, c in
            zip(index.column("id"), index.column("category"), strict=True)}
    table = evaluate_rankers(cases, rankers, len(catalog), k, leaf)
    ours_name = next(n for n in rankers if n.startswith("ours: similarity +"))
    peers = [n for n in rankers if not n.startswith(("ours", "random"))]
    best_peer = max(peers, key=lambda n: table[n][f"ndcg@{k}"])
    versus = {"ours": ours_name, "best_peer": best_peer,
              **paired_ci(table[ours_name]["ndcg_per_user"], table[best_peer]["ndcg_per_user"], seed=cfg.eval.seed)}
    users = np.stack([rec.query_vector(*rec.resolve_history(c.history), None) for c in cases]) \
        if cases else np.zeros((0, index.dim), np.float32)
    approx_users = approx_recall(index.vectors, users, cfg.index, k) if len(users) else {}
    approx_products = approx_recall(index.vectors, index.vectors, cfg.index, k)
    return {
        "dataset": ds.name, "catalog_checksum": ds.checksum(), "products": len(catalog), "users": len(cases),
        "targets": sum(len(c.targets) for c in cases),
        "targets_per_user": float(np.mean([len(c.targets) for c in cases])) if cases else 0.0,
        "history_per_user": float(np.mean([len(c.history) for c in cases])) if cases else 0.0,
        "index": {"type": index.manifest["index_type"], "params": index.manifest["index_params"]},
        "methods": table, "ours_vs_best_peer": versus,
        "approx_index_recall": {kind: {**approx_users.get(kind, {}),
                                       "recall@k_product_queries": approx_products[kind]["recall@k"]}
                                for kind in approx_products},
    }


def load_eval_dataset(name: str, cfg: RunConfig) -> Dataset:
    """The run's own dataset if it is `name`, else `name` loaded from the cache and split the same way."""
    if cfg.data.dataset == name:
        from recnarr.data.run_data import load_dataset

        return load_dataset(cfg)
    from recnarr.data.splits import time_split

    if name == "superstore":
        from recnarr.data.superstore import load_superstore

        ds = load_superstore(cache_dir(cfg))
    elif name == "movielens":
        from recnarr.data.movielens import load_movielens

        ds = load_movielens(cache_dir(cfg))
    else:
        raise ValueError(f"eval.retrieval_datasets: unknown dataset {name!r} (superstore | movielens | the "
                         f"run's own data.dataset {cfg.data.dataset!r})")
    return time_split(ds, holdout_val=cfg.data.holdout_val, holdout_test=cfg.data.holdout_test,
                      min_history=cfg.data.min_history)


def index_for(ds: Dataset, cfg: RunConfig) -> ProductIndex:
    """`<run>/index` if it was built from this catalog, else an index kept under `<run>/eval/indexes/`."""
    from recnarr.retrieval.build import build_or_update

    main = cfg.layout.index
    if (main / "manifest.json").exists():
        m = json.loads((main / "manifest.json").read_text())
        if m["catalog_checksum"] == ds.checksum() and m["embed_model"] == cfg.index.embed_model:
            return ProductIndex.load(main, catalog_checksum=ds.checksum())
    folder = cfg.layout.eval_index(ds.name)
    idx, _ = build_or_update(ds, cfg.index, folder)
    idx.save(folder)
    return idx


def format_table(results: dict[str, Any], k: int = 10) -> str:
    lines = [f"{'dataset':<11} {'method':<70} {'Recall@' + str(k):>9} {'NDCG@' + str(k):>8} {'coverage':>9} "
             f"{'diversity':>9} {'max/cat':>7} {'seen':>5} {'hits':>5}"]
    for r in results["datasets"]:
        for name, m in r["methods"].items():
            div = f"{m['diversity']:.3f}" if m.get("diversity") is not None else "-"
            lines.append(f"{r['dataset']:<11} {name:<70} {m[f'recall@{k}']:>9.4f} {m[f'ndcg@{k}']:>8.4f} "
                         f"{m['coverage']:>9.3f} {div:>9} {m.get('max_same_category', '-'):>7} "
                         f"{m.get('seen_recommended', '-'):>5} {m['hits']:>5}")
        lines.append(f"{'':<11} ({r['users']} users, {r['targets']} test targets, {r['products']} products, "
                     f"index {r['index']['type']})")
        if v := r.get("ours_vs_best_peer"):
            lines.append(f"{'':<11} ours vs the best peer ({v['best_peer']}): NDCG@{k} {v['diff']:+.4f} "
                         f"({v['rel']:+.0%}), 95% paired-bootstrap interval [{v['lo']:+.4f}, {v['hi']:+.4f}]")
    lines.append("")
    lines.append(f"{'dataset':<11} {'approximate index':<45} {'recall@' + str(k) + ' vs exact':>18}  settings")
    for r in results["datasets"]:
        for kind, a in r["approx_index_recall"].items():
            users = f"{a['recall@k']:.4f}" if "recall@k" in a else "  -   "
            lines.append(f"{r['dataset']:<11} {kind:<45} {users:>8} / {a['recall@k_product_queries']:.4f}  "
                         f"{a.get('params', '')}")
    lines.append("(recall vs exact: user query vectors / product vectors as queries)")
    return "\n".join(lines)


# the half-life too: Superstore's customers keep their interests for years (validation NDCG@10 0.0054 at
# 180 days, 0.0069 at 3000), while a MovieLens history is mostly one evening
TUNE_GRID: dict[str, list[float]] = {"sequence_weight": [0.0, 1.0, 2.0, 4.0], "ease_weight": [1.0, 2.0, 4.0],
                                     "popularity_weight": [0.0, 0.4, 1.0], "recency_half_life_days": [180.0, 3000.0]}


def tune_dataset(ds: Dataset, index: ProductIndex, cfg: RunConfig, grid: dict[str, list[float]] | None = None,
                 ) -> tuple[dict[str, float], list[tuple[float, dict[str, float]]]]:
    """The blend weights with the best NDCG@k on the VALIDATION split (history = train positives); the
    test split is never read. Returns the best overrides and every grid point's score, best first."""
    import itertools

    grid = grid or TUNE_GRID
    cases = eval_cases(ds, cfg.retrieval.positive_min_rating, cfg.eval.retrieval_max_users, cfg.eval.seed, "val")
    base = replace(cfg.retrieval, per_dataset={})
    scores = []
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values, strict=True))
        rank = retriever_ranker(Recommender(index, ds.interactions, replace(base, **point)))
        m = evaluate_rankers(cases, {"x": rank}, len(index.ids), cfg.eval.k)["x"]
        scores.append((m[f"ndcg@{cfg.eval.k}"], point))
        print(f"  {ds.name} val: {point} NDCG@{cfg.eval.k} {scores[-1][0]:.4f}", flush=True)
    scores.sort(key=lambda t: -t[0])
    return scores[0][1], scores
