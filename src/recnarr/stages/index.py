"""`recnarr index`: embed the prepared catalog and build (or incrementally update) `<run>/index/`."""

from __future__ import annotations

from pathlib import Path

from recnarr.config import RunConfig, save_config
from recnarr.data import run_data
from recnarr.retrieval.build import build_or_update


def index(cfg: RunConfig) -> Path:
    """Build `<run>/index` from `<run>/data` (see `recnarr.retrieval.index` for the folder layout)."""
    ds = run_data.load_dataset(cfg)  # looked up at call time: tests stand a small dataset in
    folder = cfg.layout.index
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
