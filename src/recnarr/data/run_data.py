"""A run's dataset folder `<run>/data/`: built from the configured source, fingerprinted, reused.

`<run>/data/` holds products / users / interactions parquet with a `split` column, manifest.json and
config.yaml. The manifest stores a fingerprint of the data config (and input files) that made it, and
the settings themselves: a run keeps the data it was made with (`adopt_run_data`, `DataMismatch`).
`load_dataset` is how every later stage reads the data; `recnarr data load` is `write_dataset`.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from recnarr.config import RunConfig, cache_dir, save_config, to_dict
from recnarr.data import sources
from recnarr.data.schema import Dataset
from recnarr.data.splits import split_counts, time_split

DATA_FORMAT_VERSION = 1  # bump when an adapter or the split changes, so cached datasets are rebuilt
DATASETS = ("superstore", "movielens", "custom", "amazon2023")


def amazon_folder(cfg: RunConfig, category: str) -> Path:
    return cache_dir(cfg) / "amazon2023" / category


def amazon_category(cfg: RunConfig, category: str | None) -> str:
    category = category or cfg.data.category
    if not category:
        raise ValueError("Amazon Reviews 2023 needs a category: `--category NAME` or data.category=NAME "
                         "(as released, e.g. All_Beauty, Home_and_Kitchen)")
    return category


def amazon_files(cfg: RunConfig) -> tuple[Path, Path]:
    """The meta and reviews files of an amazon2023 run: data.catalog / data.interactions if given, else
    the category's files in the cache (where `data fetch amazon2023` puts them)."""
    from recnarr.data import amazon2023

    d = cfg.data
    if d.catalog and d.interactions:
        return Path(d.catalog).expanduser(), Path(d.interactions).expanduser()
    category = amazon_category(cfg, None)
    return amazon2023.find_files(amazon_folder(cfg, category), category)


# ---------------------------------------------------------------- dataset
def build_dataset(cfg: RunConfig) -> Dataset:
    """The configured dataset, validated and loaded (and cut to `max_products` if set), not yet split."""
    ds = _build_dataset(cfg)
    return most_interacted(ds, cfg.data.max_products) if cfg.data.max_products else ds


def most_interacted(ds: Dataset, n: int) -> Dataset:
    """The n products with the most interactions, their interactions, and the users who have any."""
    keep = ds.interactions["product_id"].value_counts().index[:n]
    products = ds.products[ds.products["id"].isin(keep)].reset_index(drop=True)
    inter = ds.interactions[ds.interactions["product_id"].isin(keep)].reset_index(drop=True)
    users = ds.users[ds.users["id"].isin(inter["user_id"])].reset_index(drop=True)
    return Dataset(ds.name, products, users, inter, {**ds.meta, "max_products": n})


def _build_dataset(cfg: RunConfig) -> Dataset:
    d = cfg.data
    cache = cache_dir(cfg)
    if d.dataset == "superstore":
        from recnarr.data.superstore import load_superstore

        return load_superstore(cache)
    if d.dataset == "movielens":
        from recnarr.data.movielens import load_movielens

        return load_movielens(cache)
    if d.dataset == "custom":
        from recnarr.data.catalog import load_catalog

        if not d.catalog:
            raise ValueError("data.dataset=custom needs data.catalog=<products file> "
                             "(and usually data.interactions=<file>, optionally data.users and data.column_map)")
        return load_catalog(d.catalog, d.interactions, d.users, d.column_map, skip_invalid=d.skip_invalid)
    if d.dataset == "amazon2023":
        from recnarr.data.amazon2023 import load_amazon2023

        meta, reviews = amazon_files(cfg)
        return load_amazon2023(meta, reviews, category=d.category, skip_invalid=d.skip_invalid)
    raise ValueError(f"unknown data.dataset {d.dataset!r}; expected one of {list(DATASETS)}")


def _file_print(path: str | None) -> Any:
    if not path:
        return None
    p = Path(path).expanduser()
    return [str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] if p.exists() else str(p)


def data_fingerprint(cfg: RunConfig) -> str:
    """Hash of what decides `<run>/data`: the data config, custom input files, the source archive."""
    d = cfg.data
    parts: dict[str, Any] = {"version": DATA_FORMAT_VERSION, "data": _settings(to_dict(d))}
    if d.dataset == "custom":
        parts["files"] = [_file_print(p) for p in (d.catalog, d.interactions, d.users, d.column_map)]
    elif d.dataset == "amazon2023":
        try:
            parts["files"] = [_file_print(str(p)) for p in amazon_files(cfg)]
        except (FileNotFoundError, ValueError):
            parts["files"] = None  # the load itself says what is missing
    elif d.dataset in sources.SOURCES:
        parts["sha256"] = sources.SOURCES[d.dataset].sha256
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# ---------------------------------------------------------------- the run's own data settings
PATH_KEYS = ("catalog", "interactions", "users", "column_map")


class DataMismatch(ValueError):
    """A command asked for other data than the run's `data/` holds: refused, never a silent rebuild."""


def _settings(d: dict[str, Any]) -> dict[str, Any]:
    """Data settings in comparable form: file paths absolute, so `my/p.csv` and `/home/me/my/p.csv` agree."""
    return {k: (str(Path(v).expanduser().resolve()) if k in PATH_KEYS and v else v) for k, v in d.items()}


def recorded_settings(cfg: RunConfig) -> dict[str, Any] | None:
    """The data settings that made this run's `data/` (None before its first load)."""
    m = read_manifest(cfg.layout.data)
    return None if m is None or not isinstance(m.get("config"), dict) else m["config"]


def data_differences(cfg: RunConfig) -> dict[str, tuple[Any, Any]]:
    """{setting: (the run's value, this config's value)} for every data setting that differs."""
    recorded = recorded_settings(cfg)
    if recorded is None:
        return {}
    was, now = _settings(recorded), _settings(to_dict(cfg.data))
    return {k: (was[k], now[k]) for k in now if k in was and was[k] != now[k]}


def mismatch_error(cfg: RunConfig, diffs: dict[str, tuple[Any, Any]]) -> DataMismatch:
    listed = "; ".join(f"data.{k}: the run has {was!r}, this command asks for {now!r}" for k, (was, now) in diffs.items())
    return DataMismatch(
        f"{cfg.layout.data} holds other data than this command asks for ({listed}). A run keeps the data "
        f"it was made with: leave out the data.* settings to reuse them, use another run_dir=..., or pass "
        f"--replace-data to rebuild this run's data (every stage that reads it then runs again).")


def adopt_run_data(cfg: RunConfig, explicit: set[str]) -> RunConfig:
    """A later command reuses the data settings its run was made with, so a stage run without repeating
    every `data.*` override reads the same catalog. A setting given explicitly (`explicit`: the
    `data.<key>` overrides on the command line) that differs from the run's is a `DataMismatch`."""
    for k, v in _settings({k: getattr(cfg.data, k) for k in PATH_KEYS}).items():
        setattr(cfg.data, k, v)  # absolute from here on: the same files whatever the working directory
    diffs = data_differences(cfg)
    if not diffs:
        return cfg
    asked = {k: v for k, v in diffs.items() if f"data.{k}" in explicit}
    if asked:
        raise mismatch_error(cfg, asked)
    recorded = recorded_settings(cfg) or {}
    for k in diffs:
        setattr(cfg.data, k, recorded[k])
    shown = ", ".join(f"data.{k}={recorded[k]}" for k in diffs)
    print(f"data: using this run's data settings ({shown}), recorded in {cfg.layout.data / 'manifest.json'}",
          file=sys.stderr)
    return cfg


def write_dataset(cfg: RunConfig, force: bool = True, replace_data: bool = False) -> Dataset:
    """Load + validate + split the configured dataset into `<run>/data`. `force=False` reuses a match;
    a run whose data came from other settings is only rebuilt with `replace_data=True`."""
    out = cfg.layout.data
    fp = data_fingerprint(cfg)
    if not force and (m := read_manifest(out)) and m.get("fingerprint") == fp:
        print(f"data: {out} is up to date ({m['name']}, fingerprint {fp})")
        return Dataset.load(out)
    if (diffs := data_differences(cfg)) and not replace_data:
        raise mismatch_error(cfg, diffs)
    t = time.perf_counter()
    ds = build_dataset(cfg)
    d = cfg.data
    ds = time_split(ds, d.holdout_val, d.holdout_test, d.min_history)
    ds.meta.update(fingerprint=fp, config=_settings(to_dict(d)))
    ds.save(out)
    save_config(cfg, out)
    c = split_counts(ds.interactions)
    print(f"data: {ds.name}: {len(ds.products):,} products, {len(ds.users):,} users, {len(ds.interactions):,} "
          f"interactions (train {c['train']:,} / val {c['val']:,} / test {c['test']:,}) -> {out} "
          f"[{time.perf_counter() - t:.1f}s]")
    return ds


def load_dataset(cfg: RunConfig) -> Dataset:
    """The prepared dataset of this run (for later stages); built first if missing or if its input files
    changed. Other data settings than the run's are a `DataMismatch` (see `adopt_run_data`)."""
    out = cfg.layout.data
    m = read_manifest(out)
    if m is not None and m.get("fingerprint") == data_fingerprint(cfg):
        return Dataset.load(out)
    return write_dataset(cfg, force=True)

