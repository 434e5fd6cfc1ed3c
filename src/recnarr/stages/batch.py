"""`recnarr batch`: recommendations and a verified narrative for every customer of a run, as Parquet part
files in `<run>/batch/` (resumable; engines and determinism are described in recnarr.inference.batch).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from recnarr.config import RunConfig, save_config
from recnarr.inference.batch import run_batch, run_ray


def batch(cfg: RunConfig, users: str = "all", out: str | None = None, part_size: int = 256, seed: int = 0,
          n: int = 3, limit: int | None = None, engine: str = "local", ray_address: str | None = None,
          workers: int = 1, max_batch: int = 64) -> Path:
    from functools import partial

    from recnarr.inference.generator import load_generator, plan_inputs

    if max_batch < 1:
        raise ValueError(f"--max-batch must be >= 1, got {max_batch}")
    # recorded in _config.yaml; every generator of the job (the actors' too) is built from this config
    cfg = replace(cfg, generation=replace(cfg.generation, max_batch=max_batch))

    folder = Path(out) if out else cfg.layout.batch
    folder.mkdir(parents=True, exist_ok=True)
    save_config(cfg, folder, "_config.yaml")  # the config that made it ("_": Parquet readers skip it)
    if engine == "ray":
        return run_ray(partial(load_generator, cfg), folder, users, part_size, seed, n, limit, ray_address, workers,
                       plan=partial(plan_inputs, cfg))
    if engine != "local":
        raise ValueError(f"--engine must be local or ray, got {engine!r}")
    return run_batch(load_generator(cfg), folder, users, part_size, seed, n, limit)
