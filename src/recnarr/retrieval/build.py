"""An index folder built, or synced in place when only the catalog changed (the embedding cache reused)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from recnarr.config import IndexConfig
from recnarr.data.schema import Dataset
from recnarr.retrieval.embedder import EmbeddingCache
from recnarr.retrieval.index import ProductIndex

# changing any of these needs a fresh FAISS index (the embedding cache is still reused)
_STRUCTURAL = ("embed_model", "index_type", "hnsw_m", "hnsw_ef_construction", "ivf_nlist", "pq_m", "pq_nbits")


def build_or_update(ds: Dataset, cfg: IndexConfig, folder: str | Path) -> tuple[ProductIndex, dict]:
    """The index of `ds.products` in `folder`: synced in place when the folder holds a compatible index,
    otherwise built anew, reusing the folder's embedding cache either way (only new texts are embedded)."""
    folder = Path(folder)
    t0 = time.perf_counter()
    manifest_path = folder / "manifest.json"
    if cfg.incremental and manifest_path.exists():
        old = json.loads(manifest_path.read_text()).get("index_config", {})
        if all(old.get(f) == getattr(cfg, f) for f in _STRUCTURAL):
            idx = ProductIndex.load(folder)
            idx.cfg = cfg  # search-time settings (efSearch, nprobe, refine) follow the config
            if cfg.index_type == "ivfpq":
                idx.index.nprobe = min(cfg.ivf_nprobe, idx.index.nlist)
            counts = idx.sync(ds.products, checksum=ds.checksum())
            return idx, {"mode": "incremental", **counts, "seconds": round(time.perf_counter() - t0, 2)}
    cache = EmbeddingCache.load(folder, cfg.embed_model) if cfg.incremental else None
    idx = ProductIndex.build(ds.products, cfg, cache=cache, checksum=ds.checksum())
    counts = idx.manifest["embedding_counts"]
    return idx, {"mode": "build", "added": len(idx), **counts, "seconds": round(time.perf_counter() - t0, 2)}


def describe(folder: str | Path) -> dict:
    """The manifest of an index folder (for reports)."""
    m = json.loads((Path(folder) / "manifest.json").read_text())
    return {k: m[k] for k in ("embed_model", "dim", "catalog_checksum", "index_type", "index_params", "counts")
            if k in m} | {"config": m.get("index_config", asdict(IndexConfig()))}
