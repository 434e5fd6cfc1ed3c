"""`recnarr index`: embed the prepared catalog and build (or incrementally update) `<run>/index/`."""

from __future__ import annotations

from pathlib import Path

from recnarr.config import RunConfig, save_config
from recnarr.data import run_data
from recnarr.retrieval.build import build_or_update
from recnarr.retrieval.index import describe_index


def index(cfg: RunConfig) -> Path:
    """Build `<run>/index` from `<run>/data` (see `recnarr.retrieval.index` for the folder layout)."""
    ds = run_data.load_dataset(cfg)  # looked up at call time: tests stand a small dataset in
    folder = cfg.layout.index
    idx, report = build_or_update(ds, cfg.index, folder)
    idx.save(folder)
    save_config(cfg, folder)
    m = idx.manifest
    print(f"index [{ds.name}] {report['mode']}: {len(idx)} products, {describe_index(m)}, "
          f"{report.get('embedded', 0)} embedded, {report.get('cached', report.get('unchanged', 0))} from cache, "
          f"{report['seconds']} s -> {folder}")
    if m.get("model_load_seconds") is not None:
        print(f"  embedding model {m['embed_model']} loaded in {m['model_load_seconds']:.2f} s")
    if report["mode"] == "incremental":
        print("  " + ", ".join(f"{k} {report[k]}" for k in ("added", "updated", "reembedded", "removed")))
    for line in recommender_notes(idx, ds, cfg):
        print("  " + line)
    return folder


def recommender_notes(idx, ds, cfg: RunConfig) -> list[str]:
    """What the recommender will make of this catalog's interactions: a small shop, and the repurchase
    sense it learned (which leaf categories are durables, and for how long)."""
    from recnarr.data.check import small_shop_note
    from recnarr.retrieval.recommender import for_dataset, positive_interactions, train_interactions
    from recnarr.retrieval.repurchase import RepurchaseModel

    rcfg = for_dataset(cfg.retrieval, ds.name)
    train = train_interactions(ds.interactions)
    n = len(positive_interactions(train, rcfg.positive_min_rating))  # what the recommender's trust counts
    notes = [note] if (note := small_shop_note(n, rcfg.small_shop_interactions)) else []
    model = RepurchaseModel(idx.ids, idx.column("category"), idx.column("price"), train, rcfg)
    senses = list(model.senses.values())
    if senses:
        durable = [f"{s.leaf} ({s.interval_days:.0f} days)" for s in senses if s.durable]
        again = [s.leaf for s in senses if s.rebuy_items]
        how = {s.source for s in senses}
        notes.append(f"repurchase sense ({', '.join(sorted(how))}; {len(senses)} leaf categories): durable "
                     f"{', '.join(durable) or 'none'}; same item may come back: {', '.join(again) or 'none'}")
    return notes
