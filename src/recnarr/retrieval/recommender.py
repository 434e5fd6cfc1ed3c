"""Personalized candidates: a user's history and/or free text -> filtered, re-ranked products with reasons.

Query vector. Each past purchase h_i (a positive interaction: purchase/cart, or a rating >= 4) weighs
w_i = 0.5 ** (age_i / half_life), age_i = days before the newest purchase in the history (items sent
without a timestamp weigh 1, like the newest). The history vector is the normalised weighted mean of
their embeddings; with free text t it becomes normalise((1 - text_weight) * h + text_weight * e(t)).

Candidates. The `candidates` nearest products of the query in the index, plus (if copurchase_weight > 0)
up to `copurchase_candidates` products most co-purchased with the history, widened until enough pass
the filters (or the whole catalog was seen).

Score (documented, every component is returned with the result):

    score = cosine(query, product)
          + popularity_weight * log(1 + n_p) / log(1 + max_q n_q)
          + copurchase_weight * co(p) / max_candidates co(c)
          + ease_weight * max(0, ease(p)) / max_candidates ease(c)
          + sequence_weight * seq(p) / max_candidates seq(c)
          + complement_weight * comp(p)
    co(p) = sum over history items h of  n_hp / sqrt(n_h * n_p)
    ease(p) = sum over history items h of  w_h * B[h, p]   (EASE, `recnarr.retrieval.collaborative`)
    seq(p) = sum over the newest `sequence_last` items h (r = 1 newest) of T[h, p] / r   (sequential rules)
    comp(p) = sum over history items h in p's department but another leaf of w_h / sum_h' w_h'

n_p = distinct users with a positive interaction with p in the TRAIN split, n_hp = train users who
bought both h and p. Both weighted terms are in [0, 1]. The co-purchase count is cosine-normalised (as in
item-kNN) so that items everybody buys do not dominate it: on the validation split this beat the raw
count on both datasets (MovieLens NDCG@10 0.065 vs 0.056 at weights 0.8/0.8). The weights are
chosen on the validation split (`docs` / `recnarr evaluate retrieval`).

Small shops. Below `small_shop_interactions` train positives the collaborative weights (EASE, sequence,
co-purchase) are scaled by positives / that number (an EASE fitted on 30 orders must not outvote the
text), and the complement term, 0 for a catalog with enough data, gets complement_weight x (1 - the
scale): a shop with little data leans on text similarity and on another leaf of a department the
customer buys from, rather than on near-duplicates. `self.cfg` holds the weights as applied.

Seen items and repurchase sense (`recnarr.retrieval.repurchase`, learned per leaf category from the
train purchases). A known user's every interaction (a rating of any value, a view, a purchase) means
they have it or have seen it, so it is never recommended again, except purchases of a consumable leaf
whose buyers buy the same item again. No item of a durable leaf is recommended while a purchase of that
leaf in the history is younger than its interval (a second sofa a month after the first).
`rebuy_categories` / `durable_categories` override the learned sense. Anonymous histories exclude their
own items the same way.

Diversity. At most `max_per_category` results of one leaf category (a request's Filters may set its own
cap), so a list is not ten near-identical paper packs.

Reasons: the recommender's own evidence. The score splits exactly over the history items
(`contributions`): the similarity term is cos(query, p) with query = sum_h c_h e_h (+ the free text's
part), so item h contributes c_h * cos(h, p); EASE's w_h B[h, p], co-purchase's co(h, p) and the
sequential rule's T[h, p] / r are sums over h already, each times its weight and scale. Popularity and
the free text are the only parts no past item owns. Each result's `reasons` are the history items with
the largest contribution, largest first, each with the term that gave most of it (`kind`: similar |
ease | copurchase | sequence) and its support (`copurchase_count` = train users who bought both), so a
narrative cites what made the recommender pick the product, not whatever was bought last.

Privacy (anonymous mode). `recommend(history=[ids...])` needs no user id. The recommender keeps no state
per call: nothing about the history or text is logged, cached or written; it reads the index and the
interaction statistics, which are fixed at construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from recnarr.config import RetrievalConfig
from recnarr.data.schema import Dataset, Product, UnknownProduct, UnknownUser
from recnarr.retrieval.collaborative import EASE, SequentialRules
from recnarr.retrieval.embedder import embed_texts
from recnarr.retrieval.index import ProductIndex
from recnarr.retrieval.repurchase import RepurchaseModel, department_of, leaf_of

HistoryItem = str | tuple[str, Any]  # product id, or (product id, timestamp: datetime | ISO str | epoch s)
POSITIVE_EVENTS = ("purchase", "cart")


@dataclass
class Filters:
    """Hard constraints on recommended products (applied before the top k are picked)."""

    in_stock: bool = True  # only products in stock
    min_price: float | None = None  # on the price the shopper pays (after discount)
    max_price: float | None = None  # below min_price: an empty range, nothing matches (as the API documents)
    categories: Sequence[str] | None = None  # any level of the category path matches (case-insensitive)
    exclude_purchased: bool = True  # never recommend an item of the history
    max_per_brand: int | None = None  # at most this many results per brand (no-brand products: unlimited)
    max_per_category: int | None = None  # at most this many per leaf category (None: the config's cap)
    exclude_ids: Sequence[str] = ()  # never recommend these

    def __post_init__(self) -> None:
        for name in ("max_per_brand", "max_per_category"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


EVIDENCE_KINDS = ("similar", "ease", "copurchase", "sequence", "complement")  # the per-history-item terms


@dataclass
class Reason:
    """A past purchase and what it added to a recommendation's score."""

    product_id: str
    title: str
    similarity: float  # cosine between the recommended product's and this purchase's embeddings
    copurchase_count: int = 0  # train users who bought both
    kind: str = "similar"  # the term of EVIDENCE_KINDS that gave most of this item's contribution
    contribution: float = 0.0  # this item's share of the score (all its terms)


@dataclass
class Recommendation:
    product: Product  # as indexed: current price, discount, stock
    score: float  # similarity + popularity_weight * popularity + copurchase_weight * copurchase
    similarity: float  # cosine with the query vector
    popularity: float  # normalised log popularity in [0, 1]
    copurchase: float  # normalised co-purchase count with the history in [0, 1]
    ease: float = 0.0  # normalised EASE score with the history in [0, 1]
    sequence: float = 0.0  # normalised sequential-rule score (what follows the newest items) in [0, 1]
    complement: float = 0.0  # share of the history's weight in its department, another leaf, in [0, 1]
    reasons: list[Reason] = field(default_factory=list)

    @property
    def copurchased(self) -> bool:
        return any(r.copurchase_count > 0 for r in self.reasons)


def for_dataset(cfg: RetrievalConfig, dataset: str | None) -> RetrievalConfig:
    """The config with `per_dataset[dataset]`'s weights in place (each chosen on that dataset's validation
    split); unknown fields are an error, not a silent no-op."""
    over = dict(cfg.per_dataset.get(dataset or "", {}))
    if not over:
        return cfg
    types = {f.name: f.type for f in fields(cfg)}
    unknown = sorted(set(over) - set(types) - {"per_dataset"})
    if unknown:
        raise ValueError(f"retrieval.per_dataset.{dataset}: unknown field(s) {unknown}; expected fields of retrieval")
    cast = {k: int(v) if str(types[k]).startswith("int") and v is not None else v for k, v in over.items()}
    return replace(cfg, **cast)


def positive_interactions(interactions: pd.DataFrame, min_rating: float = 4.0) -> pd.DataFrame:
    """Interactions that say the user liked the item: purchases, carts, ratings >= min_rating."""
    if interactions.empty:
        return interactions
    event = interactions["event"].astype(str)
    rated = event.eq("rating") & (pd.to_numeric(interactions["rating"], errors="coerce") >= min_rating)
    return interactions[event.isin(POSITIVE_EVENTS) | rated]


def train_interactions(interactions: pd.DataFrame) -> pd.DataFrame:
    """The train split (all rows if the dataset is not split)."""
    if "split" in interactions.columns:
        return interactions[interactions["split"] == "train"]
    return interactions


class InteractionStats:
    """Item popularity and user-level co-occurrence from a set of (positive) interactions."""

    def __init__(self, interactions: pd.DataFrame):
        pairs = interactions[["user_id", "product_id"]].drop_duplicates()
        items = pd.Index(pd.unique(pairs["product_id"]))
        users = pd.Index(pd.unique(pairs["user_id"]))
        rows = users.get_indexer(pairs["user_id"])
        cols = items.get_indexer(pairs["product_id"])
        x = sparse.csr_matrix((np.ones(len(pairs), np.float32), (rows, cols)), shape=(len(users), len(items)))
        self.items: list[str] = [str(p) for p in items]  # column j of the statistics is product items[j]
        self.user_items = x  # (users, items) 0/1: who interacted with what (a library model's input)
        self.counts = np.asarray(x.sum(axis=0)).ravel()  # distinct users per item
        co = (x.T @ x).tocsr()
        co.setdiag(0)
        co.eliminate_zeros()
        self.cooc = co  # (items, items): users who interacted with both
        inv = sparse.diags(1.0 / np.sqrt(np.maximum(self.counts, 1.0)))
        self.cooc_cosine = (inv @ co @ inv).tocsr()  # co(a, b) / sqrt(n_a n_b): popular items don't swamp it
        self.max_count = float(self.counts.max()) if len(self.counts) else 0.0
        self._col = {p: j for j, p in enumerate(self.items)}

    def cols(self, product_ids: Sequence[str]) -> np.ndarray:
        """Column of each product in the statistics, -1 for products nobody interacted with."""
        return np.fromiter((self._col.get(p, -1) for p in product_ids), dtype=np.int64, count=len(product_ids))

    def popularity(self, product_ids: Sequence[str]) -> np.ndarray:
        """log(1 + users) / log(1 + max users), in [0, 1]."""
        c = self.cols(product_ids)
        if self.max_count <= 0:
            return np.zeros(len(c))
        raw = np.where(c >= 0, self.counts[np.maximum(c, 0)], 0.0)
        return np.log1p(raw) / math.log1p(self.max_count)

    def copurchase_row(self, history_ids: Sequence[str]) -> np.ndarray:
        """co(p) for every item column: sum over history items h of co(h, p) / sqrt(n_h n_p)."""
        c = self.cols(history_ids)
        c = c[c >= 0]
        if not len(c):
            return np.zeros(len(self.items), dtype=np.float32)
        return np.asarray(self.cooc_cosine[c].sum(axis=0)).ravel()

    def pair_counts(self, a: str, bs: Sequence[str]) -> np.ndarray:
        """Users who interacted with both a and each of bs."""
        return self.pair_matrix([a], bs)[0]

    def pair_matrix(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """(len(a), len(b)) users who interacted with both."""
        ca, cb = self.cols(a), self.cols(b)
        out = np.zeros((len(a), len(b)), dtype=np.int64)
        ia, ib = np.flatnonzero(ca >= 0), np.flatnonzero(cb >= 0)
        if len(ia) and len(ib):
            out[np.ix_(ia, ib)] = self.cooc[ca[ia]][:, cb[ib]].toarray()
        return out


def small_shop_weights(cfg: RetrievalConfig, positives: int) -> tuple[RetrievalConfig, float]:
    """The weights as applied to a catalog with this many train positives, and the trust in its
    collaborative models (positives / small_shop_interactions, at most 1); see the module doc."""
    if cfg.small_shop_interactions <= 0 or positives >= cfg.small_shop_interactions:
        return replace(cfg, complement_weight=0.0), 1.0
    trust = positives / cfg.small_shop_interactions
    return replace(cfg, ease_weight=cfg.ease_weight * trust, sequence_weight=cfg.sequence_weight * trust,
                   copurchase_weight=cfg.copurchase_weight * trust,
                   complement_weight=cfg.complement_weight * (1 - trust)), trust


def _to_timestamp(ts: Any) -> pd.Timestamp | None:
    if ts is None or (isinstance(ts, float) and math.isnan(ts)):
        return None
    t = pd.Timestamp(ts, unit="s") if isinstance(ts, int | float | np.integer | np.floating) else pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


class Recommender:
    """History / text -> filtered, re-ranked products with reasons. Stateless per call (see module doc)."""

    def __init__(
        self,
        index: ProductIndex,
        interactions: pd.DataFrame | None = None,
        cfg: RetrievalConfig | None = None,
        text_encoder: Callable[[list[str]], np.ndarray] | None = None,
        dataset: str | None = None,
    ):
        """`interactions`: the dataset's interactions (train split used for the statistics; all rows for
        `user_id` histories). `text_encoder`: list of texts -> normalised vectors in the index's space
        (default: the index's embedding model). `dataset`: its name, for `cfg.per_dataset` weights."""
        self.index = index
        self.cfg = for_dataset(cfg or RetrievalConfig(), dataset)
        self._interactions = interactions if interactions is not None else pd.DataFrame(
            columns=["user_id", "product_id", "event", "quantity", "rating", "timestamp"])
        positives = positive_interactions(self._interactions, self.cfg.positive_min_rating)
        self._positives = positives
        self._user_rows: dict[str, tuple] = {}  # table -> (user id -> row positions, columns) (`_rows_of`)
        self.stats = InteractionStats(train_interactions(positives))
        self.cfg, self.trust = small_shop_weights(self.cfg, len(train_interactions(positives)))
        self.ease = EASE(self.stats, self.cfg.ease_l2) if (
            self.cfg.ease_weight > 0 and 0 < len(self.stats.items) <= self.cfg.ease_max_items) else None
        self.rules = SequentialRules(train_interactions(self._interactions), self.stats, self.cfg.sequence_window) \
            if self.cfg.sequence_weight > 0 and len(self.stats.items) else None
        self.repurchase = RepurchaseModel(index.ids, index.column("category"), index.column("price"),
                                          train_interactions(self._interactions), self.cfg)
        self._text_encoder = text_encoder or (lambda texts: embed_texts(texts, model=index.embed_model))

    @classmethod
    def from_folder(
        cls,
        folder: str | Path,
        dataset: Dataset,
        cfg: RetrievalConfig | None = None,
        embed_model: str | None = None,
    ) -> Recommender:
        """Load the index in `folder` (checked against the dataset's catalog checksum) with its interactions."""
        index = ProductIndex.load(folder, catalog_checksum=dataset.checksum(), embed_model=embed_model)
        return cls(index, dataset.interactions, cfg, dataset=dataset.name)

    def warm_up(self) -> None:
        """Load the text encoder (the embedding model loads on its first call: seconds)."""
        self._text_encoder(["warm up"])

    # ------------------------------------------------------------------------------------------ query

    def _rows_of(self, table: str, user_id: str) -> dict[str, Any] | None:
        """A user's rows of `_positives` or `_interactions`, in table order, as columns (product ids as
        strings, timestamps, events), or None for a user with none. The positions per user and the
        columns are taken once: a batch asks for every customer, a service for each request, and pandas
        indexing per call was most of retrieval's time."""
        cached = self._user_rows.get(table)
        if cached is None:
            frame = getattr(self, table)
            groups = frame.groupby("user_id", sort=False).indices if len(frame) else {}
            cols = {"product_id": frame["product_id"].astype(str).to_numpy(), "timestamp": frame["timestamp"].array,
                    "event": frame["event"].astype(str).to_numpy()}
            cached = self._user_rows[table] = (groups, cols)
        groups, cols = cached
        idx = groups.get(user_id)
        return None if idx is None else {k: v[idx] for k, v in cols.items()}

    def user_history(self, user_id: str) -> list[tuple[str, Any]]:
        """A known user's positive interactions (all splits), oldest first, as (product id, timestamp)."""
        h = self._rows_of("_positives", user_id)
        if h is None:
            if self._rows_of("_interactions", user_id) is None:
                raise UnknownUser(f"unknown user id {user_id!r}")
            return []
        order = np.argsort(h["timestamp"], kind="stable")
        return list(zip(h["product_id"][order], h["timestamp"][order], strict=True))

    def seen(self, user_id: str) -> set[str]:
        """What a known user has or has seen (any interaction, any split), never recommended again;
        purchases the repurchase sense lets come back are left out of it."""
        rows = self._rows_of("_interactions", user_id)
        if rows is None:
            return set()
        bought = np.isin(rows["event"], list(POSITIVE_EVENTS))
        rest = set(rows["product_id"][~bought])
        return rest | {p for p in rows["product_id"][bought] if not self.rebuyable(p)}

    def rebuyable(self, product_id: str) -> bool:
        """A purchase of this product may be recommended again (a consumable leaf whose items are bought
        again, or `rebuy_categories`)."""
        return self.repurchase.rebuyable(product_id)

    def resolve_history(self, history: Sequence[HistoryItem]) -> tuple[list[str], list[pd.Timestamp | None]]:
        """Product ids and UTC timestamps (None where not given); unknown ids raise UnknownProduct."""
        if isinstance(history, str):
            raise TypeError("history is a list of product ids or (product id, timestamp) pairs; "
                            "pass a user id as user_id=")
        ids: list[str] = []
        times: list[pd.Timestamp | None] = []
        for item in history:
            pid, ts = (item, None) if isinstance(item, str) else (item[0], item[1])
            if pid not in self.index:
                raise UnknownProduct(f"unknown product id {pid!r} in the history: not in the index "
                                          f"({len(self.index)} products, checksum {self.index.checksum})")
            ids.append(str(pid))
            times.append(_to_timestamp(ts))
        return ids, times

    def history_weights(self, times: Sequence[pd.Timestamp | None]) -> np.ndarray:
        """Recency weights 0.5 ** (days before the newest / half-life); no timestamp -> weight 1."""
        known = [t for t in times if t is not None]
        if not known:
            return np.ones(len(times))
        newest = max(known)
        hl = self.cfg.recency_half_life_days
        return np.array([1.0 if t is None else 0.5 ** (((newest - t).total_seconds() / 86400.0) / hl)
                         for t in times])

    def query_vector(self, history_ids: Sequence[str], times: Sequence[pd.Timestamp | None],
                     text: str | None) -> np.ndarray | None:
        return self.query_parts(history_ids, times, text)[0]

    def query_parts(self, history_ids: Sequence[str], times: Sequence[pd.Timestamp | None],
                    text: str | None) -> tuple[np.ndarray | None, np.ndarray]:
        """The query vector and each history position's coefficient in it: query = sum_i c_i e_i (+ the
        text's part), so a product's cosine with the query splits over the history as c_i * cos(e_i, p)."""
        vec, coef = None, np.zeros(len(history_ids))
        if history_ids:
            w = self.history_weights(times)
            h = (w[:, None] * self.index.vectors[self.index.rows_of(history_ids)]).sum(axis=0)
            norm = max(float(np.linalg.norm(h)), 1e-12)
            vec, coef = h / norm, w / norm
        if text and text.strip():
            t = np.asarray(self._text_encoder([text.strip()]), dtype=np.float32)[0]
            t = t / max(np.linalg.norm(t), 1e-12)
            if vec is None:
                vec = t
            else:
                vec = (1 - self.cfg.text_weight) * vec + self.cfg.text_weight * t
                norm = max(float(np.linalg.norm(vec)), 1e-12)
                vec, coef = vec / norm, coef * (1 - self.cfg.text_weight) / norm
        return (None if vec is None else vec.astype(np.float32)), coef

    # ---------------------------------------------------------------------------------------- recommend

    def recommend(
        self,
        history: Sequence[HistoryItem] | None = None,
        *,
        user_id: str | None = None,
        text: str | None = None,
        filters: Filters | None = None,
        k: int = 10,
    ) -> list[Recommendation]:
        """Top-k products for a history and/or free text.

        history: product ids, or (product id, timestamp) pairs (anonymous mode: no user id needed).
        user_id: a known user; their positive interactions are the history (added to `history` if both).
        With neither history nor text, the most popular products that pass the filters are returned.
        Raises `UnknownProduct` (a KeyError) for a history product that is not in the index.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if isinstance(history, str):
            raise TypeError("history is a list of product ids or (product id, timestamp) pairs; "
                            "pass a user id as user_id=")
        filters = filters or Filters()
        items: list[HistoryItem] = list(self.user_history(user_id)) if user_id is not None else []
        items += list(history or [])
        hist_ids, times = self.resolve_history(items)
        query, coef = self.query_parts(hist_ids, times, text)
        excluded, blocked = set(filters.exclude_ids), set()
        if filters.exclude_purchased:
            excluded |= {p for p in hist_ids if not self.rebuyable(p)}
            if user_id is not None:
                excluded |= self.seen(user_id)
            blocked = self.repurchase.blocked_leaves(hist_ids, times)
        co_row = self.stats.copurchase_row(hist_ids) if hist_ids else None
        ease_row = self.ease.scores(hist_ids, self.history_weights(times)) if hist_ids and self.ease else None
        seq_row = self.rules.scores(self._in_time_order(hist_ids, times), self.cfg.sequence_last) \
            if hist_ids and self.rules else None

        n_fetch = self.cfg.candidates + len(excluded)
        while True:  # widen the search until k results pass the filters, or the whole catalog was seen
            rows = self._filter(self._candidates(query, co_row, ease_row, seq_row, n_fetch), filters, excluded,
                                blocked)
            searched_all = n_fetch >= len(self.index)
            if len(rows) >= k or searched_all:
                out = self._rank(rows, query, (hist_ids, times, coef), co_row, ease_row, seq_row, filters, k,
                                 fill=searched_all)
                if len(out) == k or searched_all:
                    return out
            n_fetch *= 4

    @staticmethod
    def _in_time_order(ids: list[str], times: list[pd.Timestamp | None]) -> list[str]:
        """History ids oldest first (items without a time count as newest, in the order given)."""
        newest = max((t for t in times if t is not None), default=None)
        key = [(t if t is not None else newest, i) for i, t in enumerate(times)]
        if newest is None:
            return list(ids)
        return [ids[i] for _, i in sorted(key)]

    def _candidates(self, query: np.ndarray | None, co_row: np.ndarray | None, ease_row: np.ndarray | None,
                    seq_row: np.ndarray | None, n_fetch: int) -> np.ndarray:
        """Index rows of the candidate pool (nearest neighbours + co-purchased + EASE's best + popular if
        no query)."""
        ids: list[str] = []
        if query is not None:
            ids += [pid for pid, _ in self.index.search(query, n_fetch)[0]]
        else:  # cold start: popularity order
            pop = self.stats.popularity(self.index.ids)
            ids += [self.index.ids[i] for i in np.argsort(-pop, kind="stable")[:n_fetch]]
        if co_row is not None and self.cfg.copurchase_weight > 0 and self.cfg.copurchase_candidates > 0:
            top = np.argsort(-co_row, kind="stable")[: self.cfg.copurchase_candidates]
            ids += [self.stats.items[j] for j in top if co_row[j] > 0 and self.stats.items[j] in self.index]
        for row, n in ((ease_row, self.cfg.ease_candidates), (seq_row, self.cfg.sequence_candidates)):
            if row is not None and n > 0:  # widened with the search
                top = np.argsort(-row, kind="stable")[: n + n_fetch - self.cfg.candidates]
                ids += [self.stats.items[j] for j in top if row[j] > 0 and self.stats.items[j] in self.index]
        return self.index.rows_of(dict.fromkeys(ids))

    def _filter(self, rows: np.ndarray, f: Filters, excluded: set[str], blocked: set[str] = frozenset()) -> np.ndarray:
        """`blocked`: durable leaf categories bought within their interval (`RepurchaseModel.blocked_leaves`)."""
        col = self.index.column
        keep = np.ones(len(rows), dtype=bool)
        if excluded:
            keep &= np.array([pid not in excluded for pid in col("id")[rows]], dtype=bool)
        if blocked:
            keep &= np.array([leaf_of(path) not in blocked for path in col("category")[rows]], dtype=bool)
        if f.in_stock:
            keep &= col("in_stock")[rows].astype(bool)
        if f.min_price is not None or f.max_price is not None:
            paid = col("price")[rows].astype(float) * (1.0 - col("discount")[rows].astype(float))
            if f.min_price is not None:
                keep &= paid >= f.min_price - 1e-9
            if f.max_price is not None:
                keep &= paid <= f.max_price + 1e-9
        if f.categories:
            wanted = {c.strip().lower() for c in f.categories}
            cats = col("category")[rows]
            keep &= np.array([bool(wanted & {str(c).lower() for c in (path or [])}) for path in cats], dtype=bool)
        return rows[keep]

    def _column_score(self, row: np.ndarray | None, ids: list[str]) -> tuple[np.ndarray, float]:
        """A per-item-column score row at these products, clipped at 0 and scaled to max 1, and the
        scale (1 / the max; 0 when nothing scores)."""
        if row is None:
            return np.zeros(len(ids)), 0.0
        c = self.stats.cols(ids)
        out = np.maximum(np.where(c >= 0, row[np.maximum(c, 0)], 0.0), 0.0)
        if out.max() <= 0:
            return out, 0.0
        return out / out.max(), 1.0 / float(out.max())

    def _rank(self, rows: np.ndarray, query: np.ndarray | None, history: tuple, co_row: np.ndarray | None,
              ease_row: np.ndarray | None, seq_row: np.ndarray | None, f: Filters, k: int,
              fill: bool = False) -> list[Recommendation]:
        if not len(rows):
            return []
        ids = [str(p) for p in self.index.column("id")[rows]]
        vecs = self.index.vectors[rows]
        sim = vecs @ query if query is not None else np.zeros(len(rows), dtype=np.float32)
        pop = self.stats.popularity(ids)
        co, co_scale = self._column_score(co_row if co_row is not None and len(co_row) else None, ids)
        ease, ease_scale = self._column_score(ease_row, ids)
        seq, seq_scale = self._column_score(seq_row, ids)
        comp_of = self.complement_shares(ids, *history[:2])  # (results, distinct history items)
        score = (sim + self.cfg.popularity_weight * pop + self.cfg.copurchase_weight * co
                 + self.cfg.ease_weight * ease + self.cfg.sequence_weight * seq
                 + self.cfg.complement_weight * comp_of.sum(axis=1))
        order = np.lexsort((np.array(ids), -score))  # ties: by id, so results are deterministic
        picked = self._capped(order, rows, f, k, fill)
        scales = {"copurchase": self.cfg.copurchase_weight * co_scale, "ease": self.cfg.ease_weight * ease_scale,
                  "sequence": self.cfg.sequence_weight * seq_scale}
        chosen = [ids[i] for i in picked]
        parts = self.contributions(chosen, vecs[picked], history, scales, ease[picked] > 0, comp_of[picked])
        reasons = self._reasons(chosen, vecs[picked], history[0], parts)
        return [Recommendation(product=self.index.product(ids[i]), score=float(score[i]), similarity=float(sim[i]),
                               popularity=float(pop[i]), copurchase=float(co[i]), ease=float(ease[i]),
                               sequence=float(seq[i]), complement=float(comp_of[i].sum()), reasons=r)
                for i, r in zip(picked, reasons, strict=True)]

    def complement_shares(self, ids: list[str], hist_ids: list[str], times: list) -> np.ndarray:
        """(products, distinct history items): w_h / sum w where the product is in h's department but
        another leaf (a table for a sofa's buyer), else 0; sums to comp(p) over the history."""
        uniq = list(dict.fromkeys(hist_ids))
        out = np.zeros((len(ids), len(uniq)))
        if not uniq or not len(ids) or self.cfg.complement_weight <= 0:
            return out
        pos = {h: j for j, h in enumerate(uniq)}
        w = np.bincount([pos[h] for h in hist_ids], weights=self.history_weights(times), minlength=len(uniq))
        w = w / max(float(w.sum()), 1e-12)
        cat = self.index.column("category")
        hp = cat[self.index.rows_of(uniq)]
        h_dept, h_leaf = [department_of(p) for p in hp], [leaf_of(p) for p in hp]
        for i, path in enumerate(cat[self.index.rows_of(ids)]):
            d, leaf = department_of(path), leaf_of(path)
            for j in range(len(uniq)):
                if d and h_dept[j] == d and h_leaf[j] != leaf:
                    out[i, j] = w[j]
        return out

    def contributions(self, ids: list[str], vecs: np.ndarray, history: tuple, scales: dict[str, float],
                      ease_on: np.ndarray, complement: np.ndarray | None = None) -> np.ndarray:
        """(results, distinct history items, EVIDENCE_KINDS) share of each result's score owed to each
        past item, by term; summed over items and terms it is the score less popularity and the free
        text's part (tested). `ease_on`: results whose EASE score is above 0 (below, the clipped term
        is 0 and no item owns any of it)."""
        hist_ids, times, coef = history
        uniq = list(dict.fromkeys(hist_ids))
        out = np.zeros((len(ids), len(uniq), len(EVIDENCE_KINDS)))
        if not uniq or not len(ids):
            return out
        at = {h: j for j, h in enumerate(uniq)}
        pos = np.array([at[h] for h in hist_ids])
        c_u = np.bincount(pos, weights=coef, minlength=len(uniq))
        out[:, :, 0] = (vecs @ self.index.vectors[self.index.rows_of(uniq)].T) * c_u[None, :]
        if complement is not None:
            out[:, :, 4] = complement * self.cfg.complement_weight
        cu, cp = self.stats.cols(uniq), self.stats.cols(ids)
        ku, kp = np.flatnonzero(cu >= 0), np.flatnonzero(cp >= 0)
        if not len(ku) or not len(kp):
            return out
        sub = np.ix_(kp, ku)
        if self.ease is not None and scales["ease"] > 0:
            w_u = np.bincount(pos, weights=self.history_weights(times), minlength=len(uniq))
            b = self.ease.B[np.ix_(cu[ku], cp[kp])].T.astype(np.float64) * w_u[ku][None, :]
            out[:, :, 1][sub] = b * scales["ease"] * ease_on[kp][:, None]
        if scales["copurchase"] > 0:
            times_had = np.bincount(pos, minlength=len(uniq))[ku]  # `copurchase_row` counts each listing
            co = self.stats.cooc_cosine[cu[ku]][:, cp[kp]].toarray().T * times_had[None, :]
            out[:, :, 2][sub] = co * scales["copurchase"]
        if self.rules is not None and scales["sequence"] > 0:
            recent = self._in_time_order(hist_ids, times)[-self.cfg.sequence_last:][::-1]
            for rank, h in enumerate(recent, 1):
                if (c := self.stats.cols([h])[0]) >= 0:
                    out[kp, at[h], 3] += self.rules.T[c][:, cp[kp]].toarray().ravel() / rank * scales["sequence"]
        return out

    def _capped(self, order: np.ndarray, rows: np.ndarray, f: Filters, k: int, fill: bool) -> list[int]:
        """The first k of `order` within the per-brand and per-leaf-category caps. The brand cap is a
        filter; the category cap gives way (`fill`, once the whole catalog was searched) when the
        catalog has too few categories to fill k places under it."""
        picked = self._within_caps(order, rows, f, k, f.max_per_category or self.cfg.max_per_category)
        if fill and len(picked) < k:
            chosen = set(picked)
            rest = self._within_caps([i for i in order if int(i) not in chosen], rows, f, k, None, picked)
            rank = {int(i): r for r, i in enumerate(order)}
            picked = sorted(picked + rest, key=rank.__getitem__)[:k]
        return picked

    def _within_caps(self, order, rows: np.ndarray, f: Filters, k: int, cat_cap: int | None,
                     already: Sequence[int] = ()) -> list[int]:
        """Rows of `order`, best first, that keep the caps (with `already` in the list), up to k in all."""
        brand_col, cat_col = self.index.column("brand")[rows], self.index.column("category")[rows]
        counts: dict[tuple[str, str], int] = {}
        for i in already:  # brands already in the list count against the brand cap
            if f.max_per_brand is not None and isinstance(brand_col[i], str) and brand_col[i]:
                counts[("brand", brand_col[i])] = counts.get(("brand", brand_col[i]), 0) + 1
        picked: list[int] = []
        for i in order:
            b, path = brand_col[i], cat_col[i]
            keys = []
            if f.max_per_brand is not None and isinstance(b, str) and b:
                keys.append((("brand", b), f.max_per_brand))
            if cat_cap is not None and path is not None and len(path):
                keys.append((("category", str(path[-1]).lower()), cat_cap))
            if any(counts.get(key, 0) >= cap for key, cap in keys):
                continue
            for key, _ in keys:
                counts[key] = counts.get(key, 0) + 1
            picked.append(int(i))
            if len(picked) + len(already) == k:
                break
        return picked

    def _reasons(self, ids: list[str], vecs: np.ndarray, hist_ids: list[str],
                 parts: np.ndarray) -> list[list[Reason]]:
        """Per result: the past items that added most to its score (`contributions`), largest first,
        at most max_reasons; ties by id, so the answer never depends on the history's order."""
        if not hist_ids:
            return [[] for _ in ids]
        uniq = list(dict.fromkeys(hist_ids))
        hist_rows = self.index.rows_of(uniq)
        sims = vecs @ self.index.vectors[hist_rows].T  # (results, history)
        co = self.stats.pair_matrix(ids, uniq)
        titles = self.index.column("title")[hist_rows]
        total = parts.sum(axis=2)
        out = []
        for i in range(len(ids)):
            order = sorted(range(len(uniq)), key=lambda j, i=i: (-round(float(total[i, j]), 9), uniq[j]))
            out.append([Reason(uniq[j], str(titles[j]), float(sims[i, j]), int(co[i, j]),
                               EVIDENCE_KINDS[int(np.argmax(parts[i, j]))], float(total[i, j]))
                        for j in order[: self.cfg.max_reasons]])
        return out
