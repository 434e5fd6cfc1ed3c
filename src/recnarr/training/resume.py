"""Whether a training stage continues its last checkpoint or starts over (resume is the default).

Rerunning `recnarr pretrain` / `finetune` / `pipeline` after a kill continues from `<out>/last` when
that checkpoint was written by the same settings, so a crash or a preempted machine costs at most one
checkpoint interval. "The same" means: the same config sections the stage trains from and the same
inputs (corpus manifest, narratives file, base checkpoint), ignoring the settings that only say how
long or how visibly to train (`CONTINUABLE`: raising max_steps continues a finished run). Any other
difference is named and refused; `--fresh` discards the old checkpoints and starts over.

The continuation itself is exact (weights, optimizer, RNG and data position come back from `last/`),
so kill -9 and the same command again give the same weights as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from recnarr.config import flatten
from recnarr.layout import BEST, LAST
from recnarr.model.checkpoint import STATE_JSON, read_meta

# TrainConfig fields that change neither the weights nor the data order of the steps already taken
CONTINUABLE = frozenset({"max_steps", "max_minutes", "eval_interval", "log_interval", "ckpt_interval",
                         "progress", "tracking", "tracking_uri", "experiment", "log_checkpoint"})


def file_sha256(path: Path) -> str | None:
    """An input file's identity, recorded in a checkpoint's meta so a rerun sees when it changed."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


class IncompatibleCheckpoint(ValueError):
    """`<out>/last` was trained with other settings or inputs than this run asks for."""


def differences(saved: Mapping[str, Any], now: Mapping[str, Any], sections: Iterable[str],
                inputs: Iterable[str] = ()) -> list[str]:
    """What differs between two checkpoint metas (`run_config` sections, then top-level input keys),
    as "key: saved -> now" lines; CONTINUABLE fields are not compared."""
    diffs: list[str] = []
    saved_cfg, now_cfg = saved.get("run_config") or {}, now.get("run_config") or {}
    for section in sections:
        a = flatten(dict(saved_cfg.get(section) or {}), f"{section}.")
        b = flatten(dict(now_cfg.get(section) or {}), f"{section}.")
        for key in sorted(a.keys() | b.keys()):
            if key.rsplit(".", 1)[-1] in CONTINUABLE:
                continue
            if a.get(key) != b.get(key):
                diffs.append(f"{key}: {a.get(key)!r} -> {b.get(key)!r}")
    diffs += [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in inputs if saved.get(k) != now.get(k)]
    return diffs


def should_resume(out_dir: Path, meta: Mapping[str, Any], sections: Iterable[str], inputs: Iterable[str] = (),
                  *, fresh: bool = False, require: bool = False, is_main: bool = True) -> bool:
    """True: continue `<out_dir>/last`. `meta` is the checkpoint meta this run would write.

    fresh: start over (the old `last/` and `best/` are removed, so a stale best cannot survive).
    require (`--resume`): a missing checkpoint is an error instead of a fresh start.
    Raises IncompatibleCheckpoint naming each difference when `last/` was made by other settings."""
    last = out_dir / LAST
    # `.last.old`: killed between the two renames of an atomic save; read_meta puts it back
    resumable = (last / STATE_JSON).is_file() or (out_dir / ".last.old" / STATE_JSON).is_file()
    if fresh:
        if require:
            raise ValueError("--fresh and --resume contradict each other; give one")
        old = [p for p in (last, out_dir / BEST) if p.is_dir()]
        if old and is_main:
            print(f"--fresh: discarding {', '.join(str(p) for p in old)}")
            for p in old:
                shutil.rmtree(p)
        return False
    if not resumable:
        if require:
            raise FileNotFoundError(f"cannot resume: no checkpoint with trainer state at {last} "
                                    "(train without --resume first)")
        return False
    saved = read_meta(last)
    diffs = differences(saved, meta, sections, inputs)
    if diffs:
        listed = "; ".join(diffs[:8]) + (f"; ... and {len(diffs) - 8} more" if len(diffs) > 8 else "")
        raise IncompatibleCheckpoint(
            f"{last} (step {saved.get('step')}) was trained with other settings: {listed}. Rerun with the "
            f"same settings to continue it, or with --fresh to discard it and start over")
    if is_main:
        print(f"resuming from {last} (step {saved.get('step')}); --fresh starts over")
    return True
