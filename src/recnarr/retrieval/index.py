"""The product index: FAISS over product embeddings, with the catalog facts the filters need, in one folder.

Index folder (written by `ProductIndex.save`, read by `ProductIndex.load`):

    index.faiss            the FAISS index; its int64 ids are our `faiss_id`s (stable across updates)
    id_map.json            {"next_id": n, "ids": {product_id: faiss_id}}
    products.parquet       the catalog rows as indexed (+ faiss_id, text_key): current price, discount,
                           stock, category, brand... A price or stock change rewrites only this file.
    embeddings.npy         exact embeddings, keyed by sha256 of the product text (`embedding_keys.json`):
    embedding_keys.json    the embedding cache, and the exact vectors history queries and re-scoring use
    manifest.json          embedding model, dimension, catalog checksum, index type + effective params,
                           build/update times, counts
    config.yaml            the resolved run config (written by the `index` stage)

Index types (`IndexConfig.index_type`), all inner product on L2-normalised vectors (= cosine):
- `flat`: exact (`IndexIDMap2(IndexFlatIP)`), the default; brute force is < 1 ms up to ~100k products.
- `hnsw`: `IndexIDMap2(IndexHNSWFlat)` (M, efConstruction, efSearch). Scores are exact (the graph holds
  full vectors), only the neighbour set is approximate.
- `ivfpq`: `IndexIVFPQ` (nlist, nprobe, m sub-quantizers x nbits) for millions of products. PQ scores are
  coarse, so `k * ivf_refine` candidates are fetched and re-scored exactly from the stored vectors.
  nlist and nbits are capped for small catalogs (k-means needs ~39 points per centroid); the manifest
  records the effective values.

Incremental updates: `add`, `update` (price/stock/any field; re-embeds only if the product text changed),
`remove`, and `sync` (diff a whole catalog against the index and apply all three). Flat and IVF-PQ remove
vectors in place (`remove_ids`); FAISS's HNSW cannot delete nodes, so an HNSW index is rebuilt from the
stored vectors after a removal or re-embedding (no model call; ~1 s per 10k products on 2 cores).
New products are added to an IVF-PQ index with the codebooks trained at build time; rebuild
(`recnarr index index.incremental=false`) after the catalog has grown several-fold.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd

from recnarr import choices
from recnarr.choices import IndexType
from recnarr.config import IndexConfig
from recnarr.data.schema import PRODUCT_COLUMNS, Dataset, Product, UnknownProduct, product_from_row
from recnarr.retrieval.embedder import (
    EmbeddingCache,
    embed_products,
    model_load_seconds,
    product_text,
    text_key,
)

FORMAT_VERSION = 1
_JSON_COLUMNS = ("category", "attributes")


class IndexMismatchError(ValueError):
    """An index folder made from another catalog or embedding model than the one asked for."""


def catalog_checksum(products: pd.DataFrame) -> str:
    """The same checksum `Dataset.checksum()` records for a catalog (ids, titles, brands, prices, stock)."""
    empty = pd.DataFrame()
    return Dataset("catalog", products, empty, empty).checksum()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


INDEX_KINDS = {"flat": "exact search", "hnsw": "HNSW graph, approximate", "ivfpq": "IVF-PQ, approximate"}


def describe_index(manifest: dict[str, Any]) -> str:
    """The index type in words with its effective parameters: "flat (exact search)",
    "hnsw (HNSW graph, approximate: M 32, efConstruction 200, efSearch 64)"."""
    kind, params = manifest["index_type"], manifest.get("index_params") or {}
    words = INDEX_KINDS.get(kind, kind)
    if params:
        words += ": " + ", ".join(f"{k} {v}" for k, v in params.items())
    return f"{kind} ({words})"


class ProductIndex:
    """A FAISS index over a catalog plus the product rows and exact vectors behind it."""

    def __init__(
        self,
        cfg: IndexConfig,
        products: pd.DataFrame,
        vectors: np.ndarray,
        cache: EmbeddingCache,
        manifest: dict[str, Any],
        index: faiss.Index | None = None,
        next_id: int | None = None,
    ):
        choices.check(IndexType, cfg.index_type, "index_type")
        if len(products) != len(vectors):
            raise ValueError(f"{len(products)} products but {len(vectors)} vectors")
        self.cfg = cfg
        self.products = products.reset_index(drop=True)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.cache = cache
        self.manifest = manifest
        self.next_id = int(next_id if next_id is not None else (products["faiss_id"].max() + 1 if len(products) else 0))
        self._reindex()
        self.index = index if index is not None else self._build_faiss()

    # ------------------------------------------------------------------------------------------ build

    @classmethod
    def build(
        cls,
        products: pd.DataFrame,
        cfg: IndexConfig | None = None,
        *,
        vectors: np.ndarray | None = None,
        cache: EmbeddingCache | None = None,
        checksum: str | None = None,
    ) -> ProductIndex:
        """Embed `products` (or take `vectors`, aligned with its rows) and build the configured index.

        `cache`: an existing embedding cache; only products whose text it lacks are embedded.
        `checksum`: the catalog checksum to record (default: computed from `products`).
        """
        cfg = cfg or IndexConfig()
        _check_products(products)
        t0 = time.perf_counter()
        dim = vectors.shape[1] if vectors is not None else None
        cache = cache or EmbeddingCache(cfg.embed_model, **({"dim": dim} if dim else {}))
        if vectors is not None:
            keys = [text_key(product_text(row)) for _, row in products.iterrows()]
            vectors = _normalize_rows(vectors)
            if len(vectors) != len(products):
                raise ValueError(f"{len(products)} products but {len(vectors)} vectors")
            cache.put(keys, vectors)
            counts = {"embedded": 0, "cached": len(keys)}
        else:
            vectors, keys, counts = embed_products(
                products, cache, batch_size=cfg.batch_size, progress=cfg.progress, model=cfg.embed_model)
        embed_s = time.perf_counter() - t0
        table = products[PRODUCT_COLUMNS].copy().reset_index(drop=True)
        table["faiss_id"] = np.arange(len(table), dtype=np.int64)
        table["text_key"] = keys
        manifest = {
            "format": FORMAT_VERSION,
            "embed_model": cfg.embed_model,
            "dim": int(cache.dim),
            "catalog_checksum": checksum or catalog_checksum(products),
            "index_type": cfg.index_type,
            "built_at": _now(),
            "embed_seconds": round(embed_s, 3),
            "model_load_seconds": None,
            "faiss_version": faiss.__version__,
        }
        t1 = time.perf_counter()
        idx = cls(cfg, table, vectors, cache, manifest)
        idx.manifest["build_seconds"] = round(time.perf_counter() - t1, 3)
        idx.manifest["embedding_counts"] = counts
        idx._touch()
        return idx

    def _build_faiss(self) -> faiss.Index:
        """A fresh FAISS index of `self.cfg.index_type` over all current vectors; records effective params."""
        cfg, d, n = self.cfg, self.dim, len(self.vectors)
        ids = self.products["faiss_id"].to_numpy(np.int64)
        if cfg.index_type == "flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
            params: dict[str, Any] = {}
        elif cfg.index_type == "hnsw":
            hnsw = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = cfg.hnsw_ef_construction
            hnsw.hnsw.efSearch = cfg.hnsw_ef_search
            index = faiss.IndexIDMap2(hnsw)
            params = {"M": cfg.hnsw_m, "efConstruction": cfg.hnsw_ef_construction, "efSearch": cfg.hnsw_ef_search}
        else:
            if d % cfg.pq_m:
                raise ValueError(f"pq_m={cfg.pq_m} must divide the embedding dimension {d}")
            if n == 0:
                raise ValueError("an IVF-PQ index needs vectors to train on; build it from a non-empty catalog")
            # k-means wants >= 39 points per centroid; PQ needs >= 2**nbits points per codebook
            nlist = max(1, min(cfg.ivf_nlist, n // 39))
            nbits = max(1, min(cfg.pq_nbits, int(np.log2(n))))
            index = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, nlist, cfg.pq_m, nbits, faiss.METRIC_INNER_PRODUCT)
            index.cp.min_points_per_centroid = 1  # small catalogs: no warnings, the caps above apply
            index.pq.cp.min_points_per_centroid = 1
            index.train(self.vectors)
            index.nprobe = min(cfg.ivf_nprobe, nlist)
            params = {"nlist": nlist, "nprobe": int(index.nprobe), "m": cfg.pq_m, "nbits": nbits,
                      "refine": cfg.ivf_refine, "trained_on": n}
        if n:
            index.add_with_ids(self.vectors, ids)
        self.manifest["index_params"] = params
        return index

    # ----------------------------------------------------------------------------------------- lookup

    def _reindex(self) -> None:
        self.products = self.products.reset_index(drop=True)
        self._row = {pid: i for i, pid in enumerate(self.products["id"])}
        fids = self.products["faiss_id"].to_numpy(np.int64)
        self._fid_row = np.full(max(self.next_id, 1), -1, dtype=np.int64)
        self._fid_row[fids] = np.arange(len(fids))
        self._columns = {c: self.products[c].to_numpy() for c in PRODUCT_COLUMNS}  # fast row access

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def embed_model(self) -> str:
        return str(self.manifest["embed_model"])

    @property
    def checksum(self) -> str:
        return str(self.manifest["catalog_checksum"])

    def __len__(self) -> int:
        return len(self.products)

    def __contains__(self, product_id: object) -> bool:
        return product_id in self._row

    @property
    def ids(self) -> list[str]:
        return list(self.products["id"])

    def row_of(self, product_id: str) -> int:
        try:
            return self._row[product_id]
        except KeyError:
            raise UnknownProduct(f"unknown product id {product_id!r}: not in the index ({len(self)} products)") from None

    def rows_of(self, product_ids: Iterable[str]) -> np.ndarray:
        return np.array([self.row_of(p) for p in product_ids], dtype=np.int64)

    def vector(self, product_id: str) -> np.ndarray:
        return self.vectors[self.row_of(product_id)]

    def product(self, product_id: str) -> Product:
        """The product as indexed, with its current price, discount and stock."""
        row = self.row_of(product_id)
        return product_from_row({c: v[row] for c, v in self._columns.items()})

    def column(self, name: str) -> np.ndarray:
        """A product column as an array aligned with the index rows (read-only view; do not modify)."""
        return self._columns[name] if name in self._columns else self.products[name].to_numpy()

    # ----------------------------------------------------------------------------------------- search

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """The k nearest products of each query (rows of `queries`, normalised here): [(id, cosine), ...]."""
        q = _normalize_rows(queries)
        if q.shape[1] != self.dim:
            raise ValueError(f"query is {q.shape[1]}-d; index {self.embed_model!r} is {self.dim}-d")
        k = min(int(k), len(self))
        if k <= 0:
            return [[] for _ in range(len(q))]
        refine = self.cfg.index_type == "ivfpq" and self.cfg.ivf_refine > 1
        fetch = min(k * self.cfg.ivf_refine, len(self)) if refine else k
        params = None
        if self.cfg.index_type == "hnsw":
            # the graph search keeps efSearch candidates; fewer than k would truncate the result
            params = faiss.SearchParametersHNSW(efSearch=max(self.cfg.hnsw_ef_search, fetch))
        with _omp_threads(self.cfg.search_threads if len(q) <= 16 else 0):
            scores, fids = self.index.search(q, fetch, params=params) if params else self.index.search(q, fetch)
        out: list[list[tuple[str, float]]] = []
        id_col = self.column("id")
        for qi in range(len(q)):
            valid = fids[qi] >= 0
            rows = self._fid_row[fids[qi][valid]]
            s = scores[qi][valid]
            if refine:  # exact re-scoring of the PQ candidates
                s = self.vectors[rows] @ q[qi]
                order = np.argsort(-s, kind="stable")[:k]
                rows, s = rows[order], s[order]
            out.append([(str(id_col[r]), float(v)) for r, v in zip(rows, s, strict=True)])
        return out

    # ---------------------------------------------------------------------------------------- updates

    def _embed(self, products: pd.DataFrame, vectors: np.ndarray | None) -> tuple[np.ndarray, list[str], int]:
        keys = [text_key(product_text(row)) for _, row in products.iterrows()]
        if vectors is not None:
            vectors = _normalize_rows(vectors)
            if len(vectors) != len(products):
                raise ValueError(f"{len(products)} products but {len(vectors)} vectors")
            self.cache.put(keys, vectors)
            return vectors, keys, 0
        vecs, keys, counts = embed_products(products, self.cache, batch_size=self.cfg.batch_size,
                                            progress=False, model=self.embed_model)
        return vecs, keys, counts["embedded"]

    def add(self, products: pd.DataFrame, vectors: np.ndarray | None = None) -> int:
        """Add new products (embedding only texts the cache lacks); returns how many texts were embedded."""
        _check_products(products)
        dup = [p for p in products["id"] if p in self._row]
        if dup:
            raise ValueError(f"{len(dup)} products are already indexed (e.g. {dup[0]!r}); use update()")
        if not len(products):
            return 0
        vecs, keys, embedded = self._embed(products, vectors)
        new = products[PRODUCT_COLUMNS].copy().reset_index(drop=True)
        new["faiss_id"] = np.arange(self.next_id, self.next_id + len(new), dtype=np.int64)
        new["text_key"] = keys
        self.next_id += len(new)
        self.products = pd.concat([self.products, new], ignore_index=True) if len(self.products) else new
        self.vectors = np.concatenate([self.vectors, vecs]) if len(self.vectors) else vecs
        self._reindex()
        self.index.add_with_ids(vecs, new["faiss_id"].to_numpy(np.int64))
        self._touch()
        return embedded

    def update(self, products: pd.DataFrame, vectors: np.ndarray | None = None) -> int:
        """Replace indexed products' rows (price, discount, stock, any field).

        Only products whose text changed are re-embedded (or take the matching rows of `vectors`) and
        have their vector replaced; returns how many vectors changed.
        """
        _check_products(products)
        rows = self.rows_of(products["id"])
        new_keys = [text_key(product_text(row)) for _, row in products.iterrows()]
        old_keys = self.products["text_key"].to_numpy()[rows]
        changed = np.array([a != b for a, b in zip(new_keys, old_keys, strict=True)], dtype=bool)
        for col in PRODUCT_COLUMNS:
            _set_values(self.products, col, rows, products[col].tolist())
        self._reindex()
        if changed.any():
            sub = products.iloc[np.flatnonzero(changed)]
            vecs, keys, _ = self._embed(sub, None if vectors is None else np.asarray(vectors)[changed])
            changed_rows = rows[changed]
            self.vectors[changed_rows] = vecs
            _set_values(self.products, "text_key", changed_rows, keys)
            self._replace_vectors(changed_rows)
        self._touch()
        return int(changed.sum())

    def remove(self, product_ids: Sequence[str]) -> int:
        """Remove products from the index; returns how many were removed."""
        rows = self.rows_of(product_ids)
        if not len(rows):
            return 0
        fids = self.products["faiss_id"].to_numpy(np.int64)[rows]
        keep = np.ones(len(self.products), dtype=bool)
        keep[rows] = False
        self.products = self.products[keep]
        self.vectors = np.ascontiguousarray(self.vectors[keep])
        self._reindex()
        if self.cfg.index_type == "hnsw":
            self.index = self._build_faiss()  # HNSW cannot delete nodes: rebuild from stored vectors
        else:
            self.index.remove_ids(fids)
        self._touch()
        return len(rows)

    def _replace_vectors(self, rows: np.ndarray) -> None:
        if self.cfg.index_type == "hnsw":
            self.index = self._build_faiss()
            return
        fids = self.products["faiss_id"].to_numpy(np.int64)[rows]
        self.index.remove_ids(fids)
        self.index.add_with_ids(self.vectors[rows], fids)

    def sync(self, products: pd.DataFrame, checksum: str | None = None) -> dict[str, int]:
        """Make the index match a catalog: add new products, update changed ones, remove missing ones.

        Returns counts: added, removed, updated (any field changed), reembedded (text changed), embedded
        (texts sent to the model), unchanged.
        """
        _check_products(products)
        incoming = set(products["id"])
        gone = [p for p in self.products["id"] if p not in incoming]
        removed = self.remove(gone) if gone else 0
        is_new = ~products["id"].isin(self._row.keys())
        new, old = products[is_new], products[~is_new]
        rows = self.rows_of(old["id"])
        current = self.products.iloc[rows][PRODUCT_COLUMNS].reset_index(drop=True)
        differs = np.array([_row_differs(a, b) for a, b in
                            zip(current.to_dict("records"), old[PRODUCT_COLUMNS].to_dict("records"), strict=True)],
                           dtype=bool)
        reembedded = self.update(old[differs]) if differs.any() else 0
        embedded = self.add(new) if len(new) else 0
        # same row order as the catalog, so the recorded checksum is the catalog's own
        self.products = self.products.iloc[self.rows_of(products["id"])]
        self.vectors = np.ascontiguousarray(self.vectors[self.rows_of(products["id"])])
        self._reindex()
        self._touch(checksum or catalog_checksum(products))
        return {"added": int(len(new)), "removed": removed, "updated": int(differs.sum()),
                "reembedded": reembedded, "embedded": embedded + reembedded,
                "unchanged": int(len(old) - differs.sum())}

    def _touch(self, checksum: str | None = None) -> None:
        self.manifest["catalog_checksum"] = checksum or catalog_checksum(self.products)
        self.manifest["updated_at"] = _now()
        if model_load_seconds() is not None:
            self.manifest["model_load_seconds"] = round(model_load_seconds(), 3)
        self.manifest["index_type"] = self.cfg.index_type
        self.manifest["counts"] = {"products": len(self.products), "vectors": int(self.index.ntotal)
                                   if hasattr(self, "index") else len(self.products),
                                   "cached_embeddings": len(self.cache),
                                   "in_stock": int(self.products["in_stock"].astype(bool).sum())}

    # ------------------------------------------------------------------------------------ persistence

    def save(self, folder: str | Path) -> Path:
        """Write the index folder (see the module docstring); the embedding cache keeps only used texts."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.cache.prune(self.products["text_key"])
        self.cache.save(folder)
        table = self.products.copy()
        for col in _JSON_COLUMNS:
            table[col] = table[col].map(lambda v: json.dumps(v, ensure_ascii=False))
        table.to_parquet(folder / "products.parquet", index=False)
        faiss.write_index(self.index, str(folder / "index.faiss"))
        id_map = {"next_id": self.next_id, "ids": dict(zip(self.products["id"],
                                                            self.products["faiss_id"].astype(int), strict=True))}
        (folder / "id_map.json").write_text(json.dumps(id_map))
        manifest = {**self.manifest, "index_config": asdict(self.cfg)}
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        return folder

    @classmethod
    def load(
        cls,
        folder: str | Path,
        catalog_checksum: str | None = None,
        embed_model: str | None = None,
    ) -> ProductIndex:
        """Read an index folder; fail clearly if it was built from another catalog or embedding model."""
        folder = Path(folder)
        mpath = folder / "manifest.json"
        if not mpath.exists():
            raise FileNotFoundError(f"{folder} holds no product index (no manifest.json); run `recnarr index`")
        manifest = json.loads(mpath.read_text())
        if embed_model is not None and manifest["embed_model"] != embed_model:
            raise IndexMismatchError(
                f"index at {folder} was built with embedding model {manifest['embed_model']!r}, not "
                f"{embed_model!r}: query vectors would not be comparable; rebuild it with `recnarr index`")
        if catalog_checksum is not None and manifest["catalog_checksum"] != catalog_checksum:
            raise IndexMismatchError(
                f"index at {folder} was built from catalog {manifest['catalog_checksum']} "
                f"({manifest.get('counts', {}).get('products', '?')} products) but the dataset's catalog is "
                f"{catalog_checksum}: prices, stock or products differ; run `recnarr index` to update it "
                "(only new or changed product texts are re-embedded)")
        cfg_fields = {k: v for k, v in manifest.get("index_config", {}).items()
                      if k in IndexConfig.__dataclass_fields__}
        cfg = IndexConfig(**cfg_fields)
        cache = EmbeddingCache.load(folder, manifest["embed_model"], manifest["dim"])
        table = pd.read_parquet(folder / "products.parquet")
        for col in _JSON_COLUMNS:
            table[col] = table[col].map(json.loads)
        missing = [k for k in table["text_key"] if k not in cache]
        if missing:
            raise ValueError(f"{folder}: {len(missing)} products have no vector in {EmbeddingCache.VECTORS}; "
                             "the folder is incomplete, rebuild it with `recnarr index index.incremental=false`")
        vectors = cache.get(table["text_key"]) if len(table) else np.zeros((0, manifest["dim"]), np.float32)
        index = faiss.read_index(str(folder / "index.faiss"))
        if index.ntotal != len(table) or index.d != manifest["dim"]:
            raise ValueError(f"{folder}: index.faiss holds {index.ntotal} x {index.d}-d vectors but "
                             f"products.parquet {len(table)} products of {manifest['dim']}-d; rebuild it")
        id_map = json.loads((folder / "id_map.json").read_text())
        if id_map["ids"] != dict(zip(table["id"], table["faiss_id"].astype(int), strict=True)):
            raise ValueError(f"{folder}: id_map.json does not match products.parquet; rebuild the index")
        if cfg.index_type == "hnsw":
            faiss.downcast_index(index.index).hnsw.efSearch = cfg.hnsw_ef_search
        return cls(cfg, table, vectors, cache, manifest, index=index, next_id=id_map["next_id"])


@contextmanager
def _omp_threads(n: int) -> Iterator[None]:
    """Run FAISS with n OpenMP threads (0: leave as is). A single query is a ~0.2 ms scan at 2k products;
    an OpenMP team for it costs more, and 10-50x more when the cores are busy (measured: 0.18 ms on one
    thread vs 11.8 ms on two under load)."""
    if n <= 0:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _check_products(products: pd.DataFrame) -> None:
    missing = [c for c in PRODUCT_COLUMNS if c not in products.columns]
    if missing:
        raise ValueError(f"product table lacks columns {missing} (schema: {PRODUCT_COLUMNS})")
    if products["id"].duplicated().any():
        dup = products.loc[products["id"].duplicated(), "id"].iloc[0]
        raise ValueError(f"duplicate product id {dup!r} in the catalog")


def _row_differs(a: dict[str, Any], b: dict[str, Any]) -> bool:
    for col in PRODUCT_COLUMNS:
        x, y = a[col], b[col]
        if isinstance(x, float) and isinstance(y, float):
            if not (x == y or (np.isnan(x) and np.isnan(y))):
                return True
        elif x != y and not (_missing(x) and _missing(y)):
            return True
    return False


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _set_values(df: pd.DataFrame, col: str, rows: np.ndarray, values: list[Any]) -> None:
    """df[col][rows] = values, element-wise (cells may hold lists/dicts), keeping the column's dtype."""
    vals = df[col].tolist()
    for r, v in zip(rows, values, strict=True):
        vals[int(r)] = v
    try:
        df[col] = pd.Series(vals, index=df.index, dtype=df[col].dtype)
    except (TypeError, ValueError):
        df[col] = pd.Series(vals, index=df.index, dtype=object)
