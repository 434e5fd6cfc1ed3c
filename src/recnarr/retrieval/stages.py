"""`recnarr index`: embed the prepared catalog and build (or incrementally update) `<run>/index/`."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from recnarr.config import IndexConfig, RunConfig, save_config
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


def index(cfg: RunConfig) -> Path:
    """Build `<run>/index` from `<run>/data` (see `recnarr.retrieval.index` for the folder layout)."""
    from recnarr.data.stages import load_dataset  # the data stage: reads (or builds) <run>/data

    ds = load_dataset(cfg)
    folder = cfg.stage_dir("index")
    idx, report = build_or_update(ds, cfg.index, folder)
    idx.save(folder)
    save_config(cfg, folder)
    m = idx.manifest
    print(f"index [{ds.name}] {report['mode']}: {len(idx)} products, {m['index_type']} {m['index_params']}, "
          f"{report.get('embedded', 0)} embedded, {report.get('cached', report.get('unchanged', 0))} from cache, "
          f"{report['seconds']} s -> {folder}")
    if m.get("model_load_seconds") is not None:
        print(f"  embedding model {m['embed_model']} loaded in {m['model_load_seconds']:.2f} s")
    if report["mode"] == "incremental":
        print("  " + ", ".join(f"{k} {report[k]}" for k in ("added", "updated", "reembedded", "removed")))
    return folder


def describe(folder: str | Path) -> dict:
    """The manifest of an index folder (for reports)."""
    m = json.loads((Path(folder) / "manifest.json").read_text())
    return {k: m[k] for k in ("embed_model", "dim", "catalog_checksum", "index_type", "index_params", "counts")
            if k in m} | {"config": m.get("index_config", asdict(IndexConfig()))}
