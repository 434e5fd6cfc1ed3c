"""`recnarr finetune` and `recnarr merge`: train on `<run>/narratives`, then fold the result into a plain
checkpoint `<run>/serving/merged`. Methods, outputs and `--compare` are described in recnarr.training.finetune.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from recnarr import choices
from recnarr.choices import FinetuneMethod
from recnarr.config import RunConfig, save_config, to_dict
from recnarr.layout import portable
from recnarr.model import lora
from recnarr.model.checkpoint import read_meta, save_checkpoint
from recnarr.training.finetune import (
    base_checkpoint,
    build_model,
    compare_methods,
    make_batches,
    merged_model,
    method_train_config,
    save_load_fns,
    trained_folder,
)
from recnarr.training.resume import file_sha256, should_resume
from recnarr.training.runtime import dist_env, git_commit
from recnarr.training.tracking import make_tracker
from recnarr.training.trainer import Trainer, TrainResult


def finetune(cfg: RunConfig, resume: bool = False, fresh: bool = False, base: str | None = None,
             from_scratch: bool = False,
             method: str | None = None, compare: bool = False, out: str | None = None,
             callbacks: Sequence[Callable[[Trainer, dict[str, Any]], None]] = (),
             **_: Any) -> TrainResult | dict[str, Any]:
    """Fine-tune on the narratives (see the module docstring); `compare=True` runs `compare_methods`.
    `callbacks` go to the `Trainer` (called after every optimizer step)."""
    if compare:
        return compare_methods(cfg, base=base, from_scratch=from_scratch)
    method = method or cfg.finetune.method
    choices.check(FinetuneMethod, method, "fine-tuning method")
    env = dist_env()
    base_path = None if from_scratch else base_checkpoint(cfg, base)
    out_dir = Path(out) if out else cfg.layout.finetune(method)
    model = build_model(cfg, method, base_path)
    batches = make_batches(cfg, model.config.block_size, env.rank, env.world_size)
    tc = method_train_config(cfg, method)
    trainable = lora.trainable_parameters(model)
    meta = {
        "stage": "finetune", "method": method, "tokenizer": "gpt2",
        "base": str(base_path) if base_path else None,
        "base_step": read_meta(base_path).get("step") if base_path else None,
        "lora": {"r": cfg.finetune.lora_r, "alpha": cfg.finetune.lora_alpha, "dropout": cfg.finetune.lora_dropout,
                 "targets": list(cfg.finetune.lora_targets)} if method != "full" else None,
        "narratives_hash": file_sha256(cfg.layout.narratives / "train.jsonl"),
        "git_commit": git_commit(), "run_config": to_dict(cfg),
        "trainable_params": trainable, "params": sum(p.numel() for p in model.parameters()),
    }
    resume = should_resume(out_dir, meta, ("finetune",), ("method", "base", "narratives_hash"), fresh=fresh,
                           require=resume, is_main=env.is_main)
    if env.is_main:
        save_config(cfg, out_dir)
        skipped = sum(batches.skipped.values())
        print(f"finetune ({method}): {trainable:,} trainable of {meta['params']:,} parameters, "
              f"{len(batches.train):,} train / {len(batches.val):,} val examples"
              f"{f' ({skipped} too long for block_size, left out)' if skipped else ''}, "
              f"base {base_path or 'random init'} -> {out_dir}")
    tracker = make_tracker(tc.tracking and env.is_main, tc.tracking_uri, tc.experiment)
    result = Trainer(model, batches, tc, out_dir, meta=meta, tracker=tracker, callbacks=callbacks,
                     **save_load_fns(method)).fit(resume)
    if env.is_main:
        best = f", best val {result.best_val_loss:.4f}" if result.best_val_loss is not None else ""
        print(f"finetune {method} {'stopped (' + result.stopped + ')' if result.stopped else 'done'} at step "
              f"{result.step}: train loss {result.train_loss:.4f}{best}; {out_dir}")
    return result


def merge(cfg: RunConfig, method: str | None = None, adapter: str | None = None, base: str | None = None,
          out: str | None = None, **_: Any) -> Path:
    """`recnarr merge`: the fine-tuned model as a plain checkpoint in `<run>/serving/merged/`."""
    folder = Path(adapter) if adapter else trained_folder(cfg, method or cfg.finetune.method)
    model, meta = merged_model(folder, base)
    dst = Path(out) if out else cfg.layout.merged
    meta = {**meta, "stage": "merge", "merged_from": portable(folder), "trainer_state": None}
    save_checkpoint(dst, model, meta={k: v for k, v in meta.items() if k != "trainer_state"})
    kind = "adapter merged into " + meta["base"] if (folder / lora.ADAPTER_CONFIG).is_file() else "full checkpoint"
    print(f"merge: {folder} ({kind}) -> {dst}")
    return dst
