"""Recommendations and a verified narrative for every customer of a run, as Parquet (`recnarr batch`).

The campaign job: one row per customer (products with scores and reasons, the narrative, whether it
verified or fell back, its citations, model and index versions, timings), written as part files
`<out>/part-NNNNN.parquet`. The customers are cut into parts of `--part-size` in a fixed order, so a
rerun skips every part already on disk and rewrites only what a kill interrupted: each part is
written to a hidden temporary file and renamed into place (atomic), so a kill loses at most the part it
was writing, and the finished table is the same. Read it whole with `pandas.read_parquet(<out>)`
(`_manifest.json` and `_config.yaml` beside the parts are skipped by Parquet readers).

Engines: `local` (the default, in this process) and `ray` (Ray Data: the parts as a Ray Dataset,
`map_batches` over a pool of actors that each load the model and index once, written by Ray's Parquet
writer, on a local Ray or an existing cluster; see `run_ray`). Both leave the same part files, so either
can resume the other's job.

Generation is batched: every customer of a part joins one continuous-batching session of the same
generator, grammar and verifier the service runs (`NarrativeGenerator.stream(cooperative=True)`), up to
`--max-batch` (default 64) decoding together, their sampling done for all rows at once
(`sampling.preselect`). Each customer's sampling seed is derived from `--seed` and the customer id
(recorded in the row). With `--max-batch 1` the API with that seed writes the same narrative (measured:
256 of 256). With more rows in flight the int8 serving model writes a different, equally checked
narrative for about two thirds of customers: dynamic int8 quantizes each step's activations with one
scale for the whole batch, so the numbers, and from the first changed token the text, depend on the
batch. (Not measured: whether an fp32 serving model's batched matmuls round like its one-row ones.)
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zlib
from pathlib import Path
from typing import Any

import pandas as pd

from recnarr.inference.contract import Final, Narrator, Tick

COLUMNS = ["user_id", "seed", "product_ids", "products", "narrative", "verified", "fallback", "narrated_product",
           "citations", "errors", "timings", "versions"]


def select_users(ds, users: str) -> list[str]:
    """all | segment=NAME | a file with one customer id per line; sorted, so parts are stable."""
    active = set(ds.interactions["user_id"].astype(str))
    if users == "all":
        chosen = active
    elif users.startswith("segment="):
        seg = users.split("=", 1)[1]
        u = ds.users
        chosen = set(u.loc[u["segment"].astype(str) == seg, "id"].astype(str)) & active
        if not chosen:
            raise ValueError(f"no customer with interactions in segment {seg!r} "
                             f"(segments: {sorted(set(u['segment'].dropna().astype(str)))})")
    else:
        path = Path(users)
        if not path.exists():
            raise FileNotFoundError(f"--users {users!r}: not 'all', not 'segment=NAME', and no such file")
        ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        unknown = [u for u in ids if u not in active]
        if unknown:
            raise ValueError(f"{path}: {len(unknown)} customer ids have no interactions in the run's data, "
                             f"e.g. {unknown[:3]}")
        chosen = set(ids)
    return sorted(chosen)


def user_seed(seed: int, user_id: str) -> int:
    return zlib.crc32(f"{seed}:{user_id}".encode()) & 0x7FFFFFFF


def row_of(user_id: str, seed: int, result) -> dict[str, Any]:
    nar = result.narrative
    return {"user_id": user_id, "seed": seed, "product_ids": [p.id for p in result.products],
            "products": json.dumps([{"id": p.id, "title": p.title, "score": round(s, 6), "reasons": r}
                                    for p, s, r in zip(result.products, result.scores, result.reasons, strict=True)]),
            "narrative": nar.text if nar else None, "verified": bool(nar and nar.verified),
            "fallback": bool(nar and nar.fallback), "narrated_product": nar.product_id if nar else None,
            "citations": json.dumps([c.__dict__ for c in nar.citations] if nar else [], default=str),
            "errors": json.dumps(nar.errors if nar else []),
            "timings": json.dumps({k: round(v, 4) for k, v in result.timings.items()}),
            "versions": json.dumps(result.versions, default=str)}


def narrate_part(gen: Narrator, users: list[str], seed: int, n: int) -> list[dict[str, Any]]:
    """Every customer of `users` through one batched session: each stream runs to its next decode step,
    then one `step()` decodes a token for all of them."""
    seeds = {u: user_seed(seed, u) for u in users}
    streams = {u: gen.stream(u, n=n, sampling={"seed": seeds[u]}, cooperative=True) for u in users}
    rows: dict[str, dict[str, Any]] = {}
    while streams:
        for u in list(streams):
            for event in streams[u]:
                if isinstance(event, Tick):
                    break
                if isinstance(event, Final):
                    rows[u] = row_of(u, seeds[u], event.result)
            else:
                del streams[u]
        gen.step()
    return [rows[u] for u in users]


def write_part(gen: Narrator, folder: Path, k: int, users: list[str], seed: int, n: int) -> None:
    """Part k: its customers narrated, then written to a hidden temporary file and renamed into place
    (atomic: a reader of the folder, or a rerun, never sees a half-written part)."""
    path = folder / f"part-{k:05d}.parquet"
    tmp = path.with_name(f".{path.name}.tmp")
    pd.DataFrame(narrate_part(gen, users, seed, n), columns=COLUMNS).to_parquet(tmp, index=False)
    os.replace(tmp, path)


STAGING = "_ray_staging"  # Ray's writer puts each part here (hive-partitioned by part); "_": readers skip it


class _PartRows:
    """A Ray actor: loads the generator once, then turns a part number into that part's rows."""

    def __init__(self, factory, parts: dict[int, list[str]], seed: int, n: int):
        self.gen, self.parts, self.seed, self.n = factory(), parts, seed, n

    def __call__(self, batch: dict) -> pd.DataFrame:
        frames = [pd.DataFrame(narrate_part(self.gen, self.parts[int(k)], self.seed, self.n), columns=COLUMNS)
                  .assign(part=int(k)) for k in batch["part"]]
        return pd.concat(frames, ignore_index=True)


def promote_staged(folder: Path, parts: list[list[str]]) -> int:
    """Move every complete part Ray's writer left in `<folder>/_ray_staging/part=K/` into place as
    `part-K.parquet` (atomic rename; several files of one part are joined first). A part whose files do
    not read back, or do not hold exactly that part's customers, was cut by a kill: left to be redone."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    staging, moved = folder / STAGING, 0
    for d in sorted(staging.glob("part=*")) if staging.exists() else []:
        k = int(d.name.split("=", 1)[1])
        final = folder / f"part-{k:05d}.parquet"
        files = sorted(d.glob("*.parquet"))
        try:
            table = pa.concat_tables([pq.read_table(f) for f in files]) if files else None
        except (OSError, pa.ArrowInvalid):
            table = None
        if table is None or k >= len(parts) or sorted(table.column("user_id").to_pylist()) != sorted(parts[k]):
            continue
        if not final.exists():
            if len(files) == 1:
                os.replace(files[0], final)
            else:
                tmp = final.with_name(f".{final.name}.tmp")
                pq.write_table(table, tmp)
                os.replace(tmp, final)
            moved += 1
        shutil.rmtree(d)
    if staging.exists() and not any(staging.glob("part=*")):
        shutil.rmtree(staging)  # nothing left to redo
    return moved


def run_ray(factory, folder: Path, users: str = "all", part_size: int = 256, seed: int = 0, n: int = 3,
            limit: int | None = None, address: str | None = None, workers: int = 1, plan=None) -> Path:
    """The batch on Ray Data: the missing parts as a Ray Dataset, `map_batches` over a pool of `workers`
    actors (each loads the model and index once via `factory`), written by Ray's Parquet writer
    (`write_parquet`, one hive partition per part under `_ray_staging/`), then each complete part renamed
    into place as `part-K.parquet`, the local engine's name, so either engine resumes the other's job.
    `plan`: returns (dataset, versions) without loading a model (`generator.plan_inputs`); without it the
    driver builds one generator to read them. `address`: an existing cluster (`ray://...` or `auto`);
    without one, a local Ray is started for the job. The output folder must be storage every worker sees."""
    import ray

    if plan is None:
        gen = factory()
        dataset, versions = gen.dataset, gen.versions
        del gen
    else:
        dataset, versions = plan()
    ids = select_users(dataset, users)[:limit]
    parts = _parts(ids, part_size)
    promote_staged(folder, parts)  # what a killed job finished writing
    todo = _todo(folder, users, part_size, seed, n, limit, ids, versions, len(parts))
    started = not ray.is_initialized()
    if started and todo:  # the workers import what the driver imports: pass its module path on
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
    try:
        t0 = time.perf_counter()
        if todo:
            rows = ray.data.from_items([{"part": k} for k in todo]).map_batches(
                _PartRows, batch_size=1, batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=workers),
                fn_constructor_kwargs={"factory": factory, "parts": {k: parts[k] for k in todo}, "seed": seed,
                                       "n": n})
            rows.write_parquet(str(folder / STAGING), partition_cols=["part"])
        moved = promote_staged(folder, parts)
        print(f"ray: {moved} parts in {time.perf_counter() - t0:.1f} s -> {folder}", flush=True)
    finally:
        if started and ray.is_initialized():
            ray.shutdown()
    return folder


def run_batch(gen: Narrator, folder: Path, users: str = "all", part_size: int = 256, seed: int = 0, n: int = 3,
              limit: int | None = None) -> Path:
    """The batch over a loaded generator: parts already in `folder` are kept, the rest written."""
    parts, todo = _plan(gen, folder, users, part_size, seed, n, limit)
    ids = [u for p in parts for u in p]
    done_before = len(ids) - sum(len(parts[k]) for k in todo)
    print(f"batch: {len(ids)} customers in {len(parts)} parts -> {folder} ({done_before} already written)",
          flush=True)
    t0, written = time.perf_counter(), 0
    for k in todo:
        write_part(gen, folder, k, parts[k], seed, n)
        written += len(parts[k])
        rate = written / (time.perf_counter() - t0)
        left = len(ids) - done_before - written
        print(f"  part {k + 1}/{len(parts)}: {done_before + written}/{len(ids)} customers, {rate:.2f} narratives/s, "
              f"ETA {left / rate:.0f} s", flush=True)
    return folder


def _parts(ids: list[str], part_size: int) -> list[list[str]]:
    if part_size < 1:
        raise ValueError(f"--part-size must be >= 1, got {part_size}")
    return [ids[i:i + part_size] for i in range(0, len(ids), part_size)]


def _todo(folder: Path, users: str, part_size: int, seed: int, n: int, limit: int | None, ids: list[str],
          versions: dict[str, Any], n_parts: int) -> list[int]:
    """The parts not on disk yet; records the job's settings, and refuses a folder holding a batch of
    other settings."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"users": users, "part_size": part_size, "seed": seed, "n": n, "limit": limit,
                "customers": len(ids), "versions": versions}
    manifest = folder / "_manifest.json"
    if manifest.exists():
        before = json.loads(manifest.read_text())
        changed = [k for k in ("users", "part_size", "seed", "n", "limit") if before.get(k) != settings[k]]
        if changed:
            raise ValueError(f"{folder} holds a batch made with other settings ({', '.join(changed)}): "
                             "use another --out, or delete it to start over")
    manifest.write_text(json.dumps(settings, indent=2, default=str))
    return [k for k in range(n_parts) if not (folder / f"part-{k:05d}.parquet").exists()]


def _plan(gen: Narrator, folder: Path, users: str, part_size: int, seed: int, n: int,
          limit: int | None) -> tuple[list[list[str]], list[int]]:
    """The customers cut into parts in a fixed order, and the parts not on disk yet."""
    ids = select_users(gen.dataset, users)[:limit]
    parts = _parts(ids, part_size)
    return parts, _todo(folder, users, part_size, seed, n, limit, ids, gen.versions, len(parts))
