"""`recnarr pretrain [--fresh | --resume]`: pretrain the GPT on the run's corpus.

pretrain reads `<run>/corpus/{train,val}.bin` (uint16 GPT-2 ids from `recnarr data corpus`) and writes
`<run>/pretrain/`: `config.yaml` (the resolved run config), `last/` (with trainer state: a rerun of the
same command continues from it, see `training.resume`) and `best/` (lowest validation loss) checkpoint
folders. Under torchrun every rank runs this function.
"""

from __future__ import annotations

from typing import Any

import torch

from recnarr.config import RunConfig, save_config, to_dict
from recnarr.model.gpt import GPT
from recnarr.training.batches import MemmapBatches
from recnarr.training.resume import file_sha256, should_resume
from recnarr.training.runtime import dist_env, git_commit
from recnarr.training.tracking import make_tracker
from recnarr.training.trainer import Trainer, TrainResult


def pretrain(cfg: RunConfig, resume: bool = False, fresh: bool = False, **_: Any) -> TrainResult:
    """Pretrain a GPT of `cfg.model` shape on the corpus memmaps with `cfg.pretrain`. Continues
    `<run>/pretrain/last` when it was made by the same settings (`resume=True`: it must exist;
    `fresh=True`: start over)."""
    corpus, out = cfg.layout.corpus, cfg.layout.pretrain
    for name in ("train.bin", "val.bin"):
        if not (corpus / name).is_file():
            raise FileNotFoundError(f"{corpus / name} not found: build the corpus first (`recnarr data corpus`)")
    tc, env = cfg.pretrain, dist_env()
    torch.manual_seed(tc.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = GPT(cfg.model)
    batches = MemmapBatches(corpus / "train.bin", corpus / "val.bin", cfg.model.block_size, tc.batch_size,
                            seed=tc.seed, rank=env.rank, val_iters=tc.eval_iters)
    max_id = int(batches.train.max()) if len(batches.train) < 50_000_000 else None
    if max_id is not None and max_id >= cfg.model.vocab_size:
        raise ValueError(f"{corpus / 'train.bin'} holds token id {max_id} >= vocab_size {cfg.model.vocab_size}")
    meta = {
        "stage": "pretrain",
        "tokenizer": "gpt2",
        "data_manifest_hash": file_sha256(corpus / "manifest.json"),
        "git_commit": git_commit(),
        "run_config": to_dict(cfg),
        "params": model.num_params(non_embedding=False),
        "params_non_embedding": model.num_params(non_embedding=True),
    }
    resume = should_resume(out, meta, ("model", "pretrain"), ("data_manifest_hash",), fresh=fresh, require=resume,
                           is_main=env.is_main)
    if env.is_main:
        save_config(cfg, out)  # after the check: a refused run must not overwrite the config of the checkpoint
        print(f"pretrain: {meta['params'] / 1e6:.1f}M parameters ({meta['params_non_embedding'] / 1e6:.1f}M "
              f"without embeddings), {len(batches.train):,} train tokens -> {out}")
    tracker = make_tracker(tc.tracking and env.is_main, tc.tracking_uri, tc.experiment)
    result = Trainer(model, batches, tc, out, meta=meta, tracker=tracker).fit(resume=resume)
    if env.is_main:
        where = f"stopped ({result.stopped})" if result.stopped else "done"
        train = f"train loss {result.train_loss:.4f}" if result.train_loss is not None else "no steps left to run"
        best = f", best val {result.best_val_loss:.4f}" if result.best_val_loss is not None else ""
        print(f"pretrain {where} at step {result.step}: {train}{best}; checkpoints in {out}")
    return result
