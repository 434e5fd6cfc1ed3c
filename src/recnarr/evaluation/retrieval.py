"""`recnarr evaluate retrieval`: next-purchase prediction on pooled rolling-origin folds, ours vs peers.

Protocol, per dataset (Superstore and MovieLens-100k by default, `eval.retrieval_datasets`):
- positives: purchases (Superstore) or ratings >= `retrieval.positive_min_rating` (MovieLens: 4);
- folds (recnarr.evaluation.rolling): cutoffs at `eval.rolling_quantiles` of the interaction times;
  every model is refit on what precedes its cutoff; a case is a user with a positive before it and a
  next basket after it (not a validation basket: tuning happened there), its new items the targets;
- every method ranks the whole catalog minus what the user has seen before the cutoff (any interaction:
  a film rated 2 is seen too; in stock or not: the ranking, not the stock filter, is measured) and
  returns its top k;
- Recall@k = |top-k ∩ targets| / |targets|, NDCG@k with binary gains, category hit@k = a top-k item in
  the leaf category of a target (sparse retail: the right kind of product, which item-level metrics
  cannot see), coverage = distinct items in anyone's top-k / catalog size, diversity = distinct leaf
  categories in a top-k / its length, and the largest number of one leaf category in any top-k;
- ours against every peer: the mean paired difference with a 95% bootstrap interval that resamples
  users (a user is a case in several folds); "real" when the interval excludes 0.

Methods in the same table: random, most-popular, item-kNN (co-occurrence, cosine-normalised: sum over the
history of co(h, c) / sqrt(n_h n_c)), EASE alone (the strongest classic item-item model, closed form, its
l2 chosen on the validation folds), a well-kept library's model (`implicit`'s ALS, its factors and
regularization chosen on the validation folds), ours with similarity only, and ours with the configured
blend (similarity, popularity, co-purchase, EASE, sequential rules, the half-life and the per-category cap;
per-dataset values from `retrieval.per_dataset`, chosen by `--tune`).

Tuning never reads a test target: `validation_folds` are rolling folds at earlier cutoffs
(`TUNE_QUANTILES`) whose targets all precede the first test cutoff; ours (`tune_dataset`, coordinate
ascent over `TUNE_GRID`) and the EASE and ALS peers (`tuned_peers`) are chosen there on the same
measure per dataset (`TUNE_METRIC`: NDCG@k, Superstore category hit@k). `eval_cases` (the per-user
last-basket split) remains for `evaluate fairness`.

Approximate index recall: for the configured HNSW and IVF-PQ settings, recall@k of their neighbours
against exact inner product, on the real embeddings, with the users' query vectors and every product's
own vector as queries (target >= 0.95).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from recnarr.config import IndexConfig, RetrievalConfig, RunConfig, cache_dir
from recnarr.data.schema import Dataset
from recnarr.evaluation.rolling import EvalCase, Fold, rolling_folds
from recnarr.retrieval.collaborative import EASE
from recnarr.retrieval.index import ProductIndex
from recnarr.retrieval.recommender import (
    Filters,
    InteractionStats,
    Recommender,
    for_dataset,
    positive_interactions,
    small_shop_weights,
    train_interactions,
)

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


def case_scores(cases: Sequence[EvalCase], rank: Ranker, k: int = 10,
                leaf: dict[str, str] | None = None) -> dict[str, list]:
    """Per case: recall, NDCG, category hit (a top-k item in the leaf category of a target: the right
    kind of product, which item-level metrics cannot see on sparse retail), hits, seen items listed, the
    top-k itself; and the milliseconds per case. Lists, so that folds can be pooled (`summarize`)."""
    out: dict[str, list] = {"recall": [], "ndcg": [], "cat_hit": [], "hits": [], "seen": [], "top": [], "ms": []}
    t0 = time.perf_counter()
    for c in cases:
        top = rank(c, k)[:k]
        out["recall"].append(recall_at_k(top, c.targets, k))
        out["ndcg"].append(ndcg_at_k(top, c.targets, k))
        if leaf is not None:
            out["cat_hit"].append(float(bool({leaf.get(p, "") for p in top} & {leaf.get(t, "") for t in c.targets})))
        out["hits"].append(len(set(top) & c.targets))
        out["seen"].append(len(set(top) & c.seen))
        out["top"].append(top)
    out["ms"].append(1000 * (time.perf_counter() - t0))
    return out


def summarize(s: dict[str, list], catalog_size: int, k: int = 10, leaf: dict[str, str] | None = None,
              ) -> dict[str, Any]:
    """The table row of pooled `case_scores`: means, coverage (distinct items in anyone's top-k /
    catalog), diversity (distinct leaves in a top-k / its length), the most of one leaf in any top-k."""
    div, most = [], 0
    for top in s["top"]:
        if leaf is not None and top:
            cats = [leaf.get(p, "") for p in top]
            div.append(len(set(cats)) / len(cats))
            most = max(most, max(cats.count(x) for x in set(cats)))
    n = len(s["top"])
    mean = lambda xs: float(np.mean(xs)) if xs else 0.0  # noqa: E731
    return {f"recall@{k}": mean(s["recall"]), f"ndcg@{k}": mean(s["ndcg"]),
            f"cat_hit@{k}": mean(s["cat_hit"]) if s["cat_hit"] else None,
            "coverage": len({p for top in s["top"] for p in top}) / catalog_size if catalog_size else 0.0,
            "diversity": float(np.mean(div)) if div else None, "max_same_category": most,
            "seen_recommended": int(sum(s["seen"])),  # items the user had already seen, in their list
            "hits": int(sum(s["hits"])),  # targets found in a top-k, all cases together (the numbers' scale)
            "ndcg_per_user": s["ndcg"], "cat_hit_per_user": s["cat_hit"],  # for `paired_ci`
            "ms_per_user": sum(s["ms"]) / max(n, 1)}


def evaluate_rankers(cases: Sequence[EvalCase], rankers: dict[str, Ranker], catalog_size: int,
                     k: int = 10, leaf: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """One set of cases, every ranker: `summarize(case_scores(...))` per ranker name."""
    return {name: summarize(case_scores(cases, rank, k, leaf), catalog_size, k, leaf) for name, rank in rankers.items()}


def pooled_scores(folds: Sequence[Fold], rankers_for: Callable[[int, Fold], dict[str, Ranker]], k: int = 10,
                  leaf: dict[str, str] | None = None, log: str | None = None) -> dict[str, dict[str, list]]:
    """`case_scores` of every ranker over every fold's cases, pooled (fold after fold); `rankers_for(i,
    fold)` fits the methods on that fold's past. `log`: print a line per fold under this name."""
    pooled: dict[str, dict[str, list]] = {}
    for i, fold in enumerate(folds):
        t0 = time.perf_counter()
        if not fold.cases:
            continue
        for name, rank in rankers_for(i, fold).items():
            got = case_scores(fold.cases, rank, k, leaf)
            into = pooled.setdefault(name, {key: [] for key in got})
            for key, v in got.items():
                into[key] += v
        if log:
            print(f"  {log} fold {fold.cutoff.date()}: {len(fold.cases)} cases, {len(fold.before):,} interactions "
                  f"before, {time.perf_counter() - t0:.0f} s", flush=True)
    return pooled


def leaf_categories(index: ProductIndex) -> dict[str, str]:
    """Product id -> its leaf category ("" without one)."""
    return {str(p): (str(c[-1]) if c is not None and len(c) else "") for p, c in
            zip(index.column("id"), index.column("category"), strict=True)}


# ------------------------------------------------------------------------------------------ baselines


def _top_excluding(order: np.ndarray, ids: np.ndarray, exclude: set[str], k: int) -> list[str]:
    out = []
    for i in order:
        if ids[i] not in exclude:
            out.append(str(ids[i]))
            if len(out) == k:
                break
    return out


def paired_ci(a: Sequence[float], b: Sequence[float], n: int = 2000, seed: int = 0,
              groups: Sequence[str] | None = None) -> dict[str, Any]:
    """Mean of a - b over the same cases, with a 95% paired-bootstrap interval and the relative gain. When
    the interval holds 0 the data cannot tell the two apart. `groups` (a user id per case): resample
    users, not cases, since one user's cases in several folds are not independent."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if not len(d):
        return {"diff": 0.0, "lo": 0.0, "hi": 0.0, "rel": 0.0, "real": False}
    rng = np.random.default_rng(seed)
    if groups is None:
        means = d[rng.integers(0, len(d), (n, len(d)))].mean(axis=1)
    else:
        _, g = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
        sums, counts = np.bincount(g, weights=d), np.bincount(g).astype(np.float64)
        pick = rng.integers(0, len(sums), (n, len(sums)))
        means = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    base = float(np.mean(b))
    lo, hi = float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))
    return {"diff": float(d.mean()), "lo": lo, "hi": hi, "rel": float(d.mean() / base) if base else 0.0,
            "real": bool(lo > 0 or hi < 0)}


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


ALS_GRID = {"factors": [16, 32, 64], "regularization": [0.1, 1.0]}  # chosen per dataset on validation folds
EASE_L2_GRID = [50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0]  # the EASE peer's l2, chosen the same way
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


def tuned_peers(catalog: Sequence[str], folds: Sequence[Fold], cfg: RunConfig, metric: str,
                leaf: dict[str, str] | None = None) -> tuple[float, tuple[int, float]]:
    """The EASE peer's l2 and the ALS peer's (factors, regularization): the `EASE_L2_GRID` / `ALS_GRID`
    points with the best pooled `metric` on the validation folds, each refit per fold (as ours is tuned)."""
    import itertools

    k, rcfg = cfg.eval.k, cfg.retrieval
    stats = [InteractionStats(positive_interactions(f.before, rcfg.positive_min_rating)) for f in folds]

    def score(make: Callable[[InteractionStats], Ranker]) -> float:
        got = pooled_scores(folds, lambda i, f: {"x": make(stats[i])}, k, leaf)["x"]
        return float(np.mean(got[metric])) if got[metric] else 0.0

    l2 = max(EASE_L2_GRID, key=lambda v: score(lambda st: ease_ranker(catalog, st, v)))
    als = max(itertools.product(*ALS_GRID.values()), key=lambda p: score(lambda st: als_ranker(catalog, st, *p)))
    return l2, als


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


OURS = "ours: similarity + popularity + co-purchase + EASE + sequence, capped"


def fold_rankers(ds: Dataset, index: ProductIndex, before: pd.DataFrame, cfg: RunConfig,
                 ease_l2: float, als_params: tuple[int, float]) -> dict[str, Ranker]:
    """Every method, fitted on `before` (one fold's past): peers (EASE's l2 and ALS's settings chosen on
    the validation folds), ours."""
    rcfg, catalog = cfg.retrieval, index.ids
    stats = InteractionStats(positive_interactions(before, rcfg.positive_min_rating))
    sim_only = replace(rcfg, popularity_weight=0.0, copurchase_weight=0.0, ease_weight=0.0, sequence_weight=0.0,
                       complement_weight=0.0, max_per_category=None, per_dataset={})
    return {
        "random": random_ranker(catalog, cfg.eval.seed),
        "most-popular": popularity_ranker(catalog, stats),
        "item-kNN (co-occurrence)": itemknn_ranker(catalog, stats),
        f"EASE (closed form, no text; l2 {ease_l2:g}, chosen on val folds)": ease_ranker(catalog, stats, ease_l2),
        f"implicit ALS (library; factors {als_params[0]}, reg {als_params[1]:g}, chosen on val folds)":
            als_ranker(catalog, stats, *als_params),
        "ours: embedding similarity": retriever_ranker(Recommender(index, before, sim_only)),
        OURS: retriever_ranker(Recommender(index, before, rcfg, dataset=ds.name)),
    }


def evaluate_dataset(ds: Dataset, index: ProductIndex, cfg: RunConfig) -> dict[str, Any]:
    """The pooled rolling-origin comparison (recnarr.evaluation.rolling) and the approximate index recall
    for one dataset: every method refit per fold, the folds' cases pooled, ours vs every peer with a
    paired bootstrap interval (users resampled) on NDCG@k and category hit@k."""
    k, rcfg = cfg.eval.k, cfg.retrieval
    catalog = index.ids
    leaf = leaf_categories(index)
    ease_l2, als_params = tuned_peers(catalog, validation_folds(ds, cfg), cfg, tune_metric(ds.name), leaf)
    folds = rolling_folds(ds, cfg.eval.rolling_quantiles, rcfg.positive_min_rating, cfg.eval.retrieval_max_users,
                          cfg.eval.seed)
    pooled = pooled_scores(folds, lambda i, f: fold_rankers(ds, index, f.before, cfg, ease_l2, als_params), k,
                           leaf, log=ds.name)
    cases = [c for f in folds for c in f.cases]
    table = {name: summarize(sc, len(catalog), k, leaf) for name, sc in pooled.items()}
    users = [c.user_id for c in cases]
    peers = [n for n in table if not n.startswith(("ours", "random"))]
    versus = {metric: {peer: paired_ci(table[OURS][f"{metric}_per_user"], table[peer][f"{metric}_per_user"],
                                       seed=cfg.eval.seed, groups=users) for peer in [*peers, "random"]}
              for metric in ("ndcg", "cat_hit")} if OURS in table else {}
    best = max(peers, key=lambda n: table[n][f"ndcg@{k}"]) if peers and OURS in table else None
    rec = Recommender(index, ds.interactions, rcfg, dataset=ds.name)
    sample = cases[:2000]
    qs = np.stack([rec.query_vector(*rec.resolve_history(c.history), None) for c in sample]) \
        if sample else np.zeros((0, index.dim), np.float32)
    approx_users = approx_recall(index.vectors, qs, cfg.index, k) if len(qs) else {}
    approx_products = approx_recall(index.vectors, index.vectors, cfg.index, k)
    return {
        "dataset": ds.name, "catalog_checksum": ds.checksum(), "products": len(catalog), "users": len(set(users)),
        "cases": len(cases), "folds": [{"cutoff": str(f.cutoff), "cases": len(f.cases)} for f in folds],
        "peer_settings": {"ease_l2": ease_l2, "als": {"factors": als_params[0], "regularization": als_params[1]},
                          "chosen_on": f"validation folds, pooled {tune_metric(ds.name)}@{k}"},
        "targets": sum(len(c.targets) for c in cases),
        "targets_per_user": float(np.mean([len(c.targets) for c in cases])) if cases else 0.0,
        "history_per_user": float(np.mean([len(c.history) for c in cases])) if cases else 0.0,
        "index": {"type": index.manifest["index_type"], "params": index.manifest["index_params"]},
        "methods": table, "ours_vs_peers": versus,
        "ours_vs_best_peer": {"ours": OURS, "best_peer": best, **versus["ndcg"][best]} if best else None,
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
    lines = [f"{'dataset':<11} {'method':<70} {'Recall@' + str(k):>9} {'NDCG@' + str(k):>8} "
             f"{'cat-hit@' + str(k):>10} {'coverage':>9} {'diversity':>9} {'max/cat':>7} {'seen':>5} {'hits':>5}"]
    for r in results["datasets"]:
        for name, m in r["methods"].items():
            div = f"{m['diversity']:.3f}" if m.get("diversity") is not None else "-"
            cat = f"{m[f'cat_hit@{k}']:.4f}" if m.get(f"cat_hit@{k}") is not None else "-"
            lines.append(f"{r['dataset']:<11} {name:<70} {m[f'recall@{k}']:>9.4f} {m[f'ndcg@{k}']:>8.4f} "
                         f"{cat:>10} {m['coverage']:>9.3f} {div:>9} {m.get('max_same_category', '-'):>7} "
                         f"{m.get('seen_recommended', '-'):>5} {m['hits']:>5}")
        folds = ", ".join(f"{f['cutoff'][:10]}: {f['cases']}" for f in r.get("folds", []))
        lines.append(f"{'':<11} ({r.get('cases', r['users'])} cases of {r['users']} users, {r['targets']} targets, "
                     f"{r['products']} products, index {r['index']['type']}; rolling-origin folds {folds})")
        for metric, label in (("ndcg", f"NDCG@{k}"), ("cat_hit", f"cat-hit@{k}")):
            for peer, v in r.get("ours_vs_peers", {}).get(metric, {}).items():
                verdict = "real" if v["real"] else "cannot tell apart"
                lines.append(f"{'':<11} ours - {peer[:40]:<40} {label:>10} {v['diff']:+.4f} ({v['rel']:+.0%}) "
                             f"95% [{v['lo']:+.4f}, {v['hi']:+.4f}] {verdict}")
    lines.append("")
    lines.append(f"{'dataset':<11} {'approximate index':<45} {'recall@' + str(k) + ' vs exact':>18}  settings")
    for r in results["datasets"]:
        for kind, a in r["approx_index_recall"].items():
            users = f"{a['recall@k']:.4f}" if "recall@k" in a else "  -   "
            lines.append(f"{r['dataset']:<11} {kind:<45} {users:>8} / {a['recall@k_product_queries']:.4f}  "
                         f"{a.get('params', '')}")
    lines.append("(recall vs exact: user query vectors / product vectors as queries)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- tuning

# validation folds: cutoffs at these quantiles, the last one's targets ending at the first test cutoff
# (`eval.rolling_quantiles`' lowest), so every purchase that chooses a setting precedes every test target
TUNE_QUANTILES = [0.2, 0.25, 0.3, 0.35, 0.4, 0.45]
# what each dataset is tuned on (ours and the peers alike): Superstore's validation folds hold a dozen item
# hits per method, noise; the category of the next purchase is the measure with power there
TUNE_METRIC = {"superstore": "cat_hit"}
TUNE_GRID: dict[str, list] = {
    "ease_l2": [100.0, 250.0, 500.0, 1000.0, 2000.0], "ease_weight": [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
    "sequence_weight": [0.0, 1.0, 2.0, 4.0, 8.0], "popularity_weight": [0.0, 0.2, 0.4, 1.0, 2.0, 4.0],
    "copurchase_weight": [0.0, 0.5, 1.0], "recency_half_life_days": [7.0, 30.0, 180.0, 3000.0],
    "max_per_category": [2, 3],  # the issue's rule: never more than 3 of one leaf in a list
}


def tune_metric(dataset: str) -> str:
    return TUNE_METRIC.get(dataset, "ndcg")


def validation_folds(ds: Dataset, cfg: RunConfig) -> list[Fold]:
    """The rolling folds that choose settings: cutoffs `TUNE_QUANTILES` below the test folds', targets
    ending at the first test cutoff (recnarr.evaluation.rolling)."""
    first = min(cfg.eval.rolling_quantiles)
    qs = [q for q in TUNE_QUANTILES if q < first]
    if not qs:
        raise ValueError(f"eval.rolling_quantiles start at {first}: no validation fold of {TUNE_QUANTILES} "
                         f"precedes the test folds")
    return rolling_folds(ds, qs, cfg.retrieval.positive_min_rating, cfg.eval.retrieval_max_users, cfg.eval.seed,
                         until=first)


def _reweighted(rec: Recommender, cfg: RetrievalConfig, eases: dict[float, EASE]) -> Recommender:
    """`rec` (fitted with EASE and sequential rules on) with `cfg`'s weights, as if built with them: EASE at
    cfg.ease_l2 (fitted once per l2), the rules only where their weight is > 0. The grid then fits
    each fold's models once, not once per point."""
    out = copy.copy(rec)
    out.cfg, out.trust = small_shop_weights(cfg, len(train_interactions(rec._positives)))
    if out.cfg.ease_weight > 0 and rec.ease is not None:
        if cfg.ease_l2 not in eases:
            eases[cfg.ease_l2] = EASE(rec.stats, cfg.ease_l2)
        out.ease = eases[cfg.ease_l2]
    else:
        out.ease = None
    out.rules = rec.rules if out.cfg.sequence_weight > 0 else None
    return out


def tune_dataset(ds: Dataset, index: ProductIndex, cfg: RunConfig, grid: dict[str, list] | None = None,
                 passes: int = 2) -> tuple[dict[str, Any], list[tuple[float, dict[str, Any]]]]:
    """The blend with the best pooled `tune_metric` on the VALIDATION folds (`validation_folds`: every
    target precedes the test folds'; the test targets are never read). Coordinate ascent over `grid`
    from the configured blend: each field in turn takes its best value with the others held, `passes`
    times over or until nothing changes (ties keep the earlier point). Returns the best overrides and
    every point's score, best first."""
    grid = grid or TUNE_GRID
    k, metric = cfg.eval.k, tune_metric(ds.name)
    folds = validation_folds(ds, cfg)
    leaf = leaf_categories(index)
    start = for_dataset(cfg.retrieval, ds.name)
    base = replace(start, per_dataset={})
    fitted = [Recommender(index, f.before, replace(base, ease_weight=max(base.ease_weight, 1.0),
                                                   sequence_weight=max(base.sequence_weight, 1.0)))
              for f in folds]
    eases: list[dict[float, EASE]] = [{} for _ in folds]
    seen: dict[tuple, float] = {}

    def score(point: dict[str, Any]) -> float:
        key = tuple(point[name] for name in grid)
        if key not in seen:
            rc = replace(base, **point)
            got = pooled_scores(folds, lambda i, f: {"x": retriever_ranker(_reweighted(fitted[i], rc, eases[i]))},
                                k, leaf)["x"]
            seen[key] = float(np.mean(got[metric])) if got[metric] else 0.0
            print(f"  {ds.name} val folds: {point} {metric}@{k} {seen[key]:.4f}", flush=True)
        return seen[key]

    best = {name: getattr(start, name) for name in grid}
    best_score = score(best)
    for _ in range(passes):
        moved = False
        for name, values in grid.items():
            for v in values:
                point = {**best, name: v}
                if score(point) > best_score:
                    best, best_score, moved = point, score(point), True
        if not moved:
            break
    scores = sorted(((v, dict(zip(grid, key, strict=True))) for key, v in seen.items()), key=lambda t: -t[0])
    return best, scores
