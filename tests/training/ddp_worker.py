"""Run by test_ddp.py under `torchrun --nproc_per_node 2`: train a few steps, dump this rank's weights."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from recnarr.model.gpt import GPT
from recnarr.training.batches import MemmapBatches
from recnarr.training.runtime import dist_env
from recnarr.training.trainer import Trainer

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.training.test_trainer import MODEL, TRAIN

    corpus, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    env = dist_env()
    torch.manual_seed(1000 + env.rank)  # deliberately different initial weights: DDP must broadcast rank 0's
    model = GPT(MODEL)
    batches = MemmapBatches(corpus / "train.bin", corpus / "val.bin", MODEL.block_size, 4, seed=7, rank=env.rank,
                            val_iters=2)
    first = batches.train_batch().x.clone()
    batches = MemmapBatches(corpus / "train.bin", corpus / "val.bin", MODEL.block_size, 4, seed=7, rank=env.rank,
                            val_iters=2)
    cfg = replace(TRAIN, max_steps=3, eval_interval=3, ckpt_interval=3)
    result = Trainer(model, batches, cfg, out / "ckpt").fit()
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"} | {"first": first},
              str(out / f"rank{env.rank}.safetensors"))
    print(f"rank {env.rank}: step {result.step} loss {result.train_loss:.4f}")
