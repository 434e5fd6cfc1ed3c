"""Where the trainer's batches come from: the `BatchSource` protocol and `MemmapBatches` for pretraining.

Fine-tuning's source (`narrative_batches.NarrativeBatches`) follows the same protocol.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor

from recnarr.training.runtime import RANK_SEED_STRIDE


class Batch(NamedTuple):
    """Inputs (B, T) and next-token targets (B, T); loss_mask (B, T) 1 where the loss counts, or None."""

    x: Tensor
    y: Tensor
    loss_mask: Tensor | None = None


class BatchSource(Protocol):
    """Where the trainer's batches come from (pretraining: `MemmapBatches`; fine-tuning: narrative examples).

    The model is called as `model(x, y, loss_mask, return_logits=False)` and returns `(_, loss)`.
    `train_batch` advances the data position, which `state_dict`/`load_state_dict` capture (nested dicts
    of tensors and JSON values, no pickles) so that a resumed run sees the same batches. `val_batches`
    yields the same batches on every call, so validation losses are comparable across steps.
    """

    def train_batch(self) -> Batch: ...

    def val_batches(self) -> Iterable[Batch]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class MemmapBatches:
    """Random windows of `block_size` + 1 tokens from uint16 token files (`<run>/corpus/{train,val}.bin`).

    Each DDP rank draws from its own generator (seed, rank), so ranks see different windows.
    """

    def __init__(self, train: str | os.PathLike, val: str | os.PathLike | None, block_size: int, batch_size: int,
                 seed: int = 1337, rank: int = 0, val_iters: int = 20):
        self.block_size, self.batch_size, self.val_iters = block_size, batch_size, val_iters
        self.seed, self.rank = seed, rank
        self.train = self._open(train)
        self.val = self._open(val) if val is not None else None
        self.generator = torch.Generator().manual_seed(seed + RANK_SEED_STRIDE * rank)
        self.served = 0

    def _open(self, path: str | os.PathLike) -> np.memmap:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: token file not found (build it with `recnarr data corpus`)")
        data = np.memmap(path, dtype=np.uint16, mode="r")
        if len(data) < self.block_size + 2:
            raise ValueError(f"{path}: {len(data)} tokens, fewer than block_size + 2 = {self.block_size + 2}")
        return data

    def _batch(self, data: np.memmap, generator: torch.Generator) -> Batch:
        T = self.block_size
        starts = torch.randint(len(data) - T - 1, (self.batch_size,), generator=generator).tolist()
        rows = np.stack([np.asarray(data[s : s + T + 1], dtype=np.int64) for s in starts])  # (B, T + 1)
        xy = torch.from_numpy(rows)
        return Batch(xy[:, :-1], xy[:, 1:])

    def train_batch(self) -> Batch:
        self.served += 1
        return self._batch(self.train, self.generator)

    def val_batches(self) -> Iterator[Batch]:
        if self.val is None:
            return
        g = torch.Generator().manual_seed(self.seed + RANK_SEED_STRIDE * self.rank + 1)
        for _ in range(self.val_iters):
            yield self._batch(self.val, g)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "served": self.served}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.served = int(state["served"])
