"""Fine-tuning batches from narrative examples: the trainer's `BatchSource` for `recnarr finetune`.

One example is `prompt + target + <|endoftext|>` in GPT-2 tokens, the prompt exactly as
`recnarr.data.narratives.format_prompt` wrote it (what the generator feeds the engine), the target
the slotted narrative. The loss counts only the target's tokens and the end-of-text that closes it
(`loss_mask`), never the prompt: the model learns to write narratives, not to predict prompts.

Too long for `block_size`? History lines are dropped from the left of the prompt's history part
(the oldest purchase first) until the example fits; the target is never cut. An example that still
does not fit is left out, and counted (`skipped`).

Batches are right-padded to their longest row (pad positions: target -100 and mask 0, so they never
count). Training order is a fresh permutation of the examples every epoch, drawn from (seed, epoch),
so the data position is just (epoch, cursor): `state_dict` captures it and a resumed run sees the
same batches. Under DDP, rank r takes every world_size-th example of each permutation. Validation
batches are the first `val_batches` batches of the validation examples in file order, the same on
every call.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from recnarr.data.narratives import END_OF_NARRATIVE
from recnarr.data.tokenizer import EOT_ID  # <|endoftext|>: END_OF_NARRATIVE
from recnarr.training.batches import Batch

IGNORE = -100  # cross-entropy's ignore_index


class Encoder(Protocol):
    def encode(self, text: str) -> list[int]: ...


@dataclass
class Tokenized:
    prompt: list[int]
    target: list[int]  # ends with EOT
    dropped_history: int = 0  # history lines removed to fit block_size

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.target


def _history_span(lines: list[str]) -> tuple[int, int]:
    """Indices [start, end) of the history item lines (`[k] ...`) in a prompt's lines."""
    start = next((i + 1 for i, line in enumerate(lines) if line.startswith("### history:")), len(lines))
    end = start
    while end < len(lines) and lines[end].startswith("["):
        end += 1
    return start, end


def tokenize_example(prompt: str, target: str, tokenizer: Encoder, block_size: int) -> Tokenized | None:
    """Tokens of one example, fitted into `block_size` + 1 tokens (inputs and shifted targets), or None."""
    if target.endswith(END_OF_NARRATIVE):
        target = target[: -len(END_OF_NARRATIVE)]
    tgt = tokenizer.encode(target) + [EOT_ID]
    # line by line: GPT-2's pre-tokenizer never merges across "\n", so the pieces join to encode(prompt)
    lines = prompt.splitlines(keepends=True)
    pieces = [tokenizer.encode(line) for line in lines]
    start, end = _history_span(lines)
    budget = block_size + 1 - len(tgt)
    total, dropped = sum(map(len, pieces)), 0
    while total > budget and start + dropped < end:
        total -= len(pieces[start + dropped])
        dropped += 1
    if total > budget:
        return None
    kept = pieces[:start] + pieces[start + dropped:]
    return Tokenized([t for p in kept for t in p], tgt, dropped)


def collate(rows: Sequence[Tokenized], pad_id: int = EOT_ID) -> Batch:
    """Right-padded (B, T) inputs, targets and loss mask; T = the longest row minus one."""
    T = max(len(r.tokens) for r in rows) - 1
    x = torch.full((len(rows), T), pad_id, dtype=torch.long)
    y = torch.full((len(rows), T), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.float32)
    for i, r in enumerate(rows):
        seq = torch.tensor(r.tokens, dtype=torch.long)
        n = len(seq) - 1
        x[i, :n], y[i, :n] = seq[:-1], seq[1:]
        # y[j] is token j + 1: the target's tokens are y[len(prompt) - 1 :]
        mask[i, len(r.prompt) - 1 : n] = 1.0
    return Batch(x, y, mask)


class NarrativeBatches:
    """`BatchSource` over narrative examples (dicts with "prompt" and "target", as `load_examples` returns).

    block_size: the model's context; batch_size: rows per batch; val_batches: how many validation batches
    `val_batches()` yields (None: all of the validation set).
    """

    def __init__(self, train: Sequence[dict], val: Sequence[dict] | None, tokenizer: Encoder, block_size: int,
                 batch_size: int, seed: int = 1337, val_batches: int | None = None, rank: int = 0,
                 world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.block_size = block_size
        self.train, skipped_train = self._tokenize(train, tokenizer)
        self.val, skipped_val = self._tokenize(val or [], tokenizer)
        self.skipped = {"train": skipped_train, "val": skipped_val}
        if not self.train:
            raise ValueError(f"no training example fits block_size {block_size} ({skipped_train} too long even "
                             "without their history lines): use a model with a longer context")
        if len(self.train) < world_size:
            raise ValueError(f"{len(self.train)} training examples cannot be shared by {world_size} ranks")
        self.val_limit = val_batches
        self.epoch, self.cursor = 0, 0
        self._order = self._permutation(0)

    def _tokenize(self, examples: Sequence[dict], tokenizer: Encoder) -> tuple[list[Tokenized], int]:
        out, skipped = [], 0
        for ex in examples:
            t = tokenize_example(ex["prompt"], ex["target"], tokenizer, self.block_size)
            if t is None:
                skipped += 1
            else:
                out.append(t)
        return out, skipped

    def _permutation(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.train), generator=g).tolist()[self.rank :: self.world_size]

    @property
    def target_tokens(self) -> int:
        return sum(len(t.target) for t in self.train)

    def train_batch(self) -> Batch:
        rows = []
        while len(rows) < self.batch_size:
            if self.cursor >= len(self._order):
                self.epoch, self.cursor = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            rows.append(self.train[self._order[self.cursor]])
            self.cursor += 1
        return collate(rows)

    def val_batches(self) -> Iterator[Batch]:
        n = len(self.val)
        if self.val_limit is not None:
            n = min(n, self.val_limit * self.batch_size)
        for i in range(0, n, self.batch_size):
            yield collate(self.val[i : i + self.batch_size])

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "cursor": self.cursor, "n_train": len(self.train)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["n_train"]) != len(self.train):
            raise ValueError(f"resume: the checkpoint was trained on {state['n_train']} examples, these narratives "
                             f"have {len(self.train)}; resume with the same <run>/narratives or start anew")
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._order = self._permutation(self.epoch)
