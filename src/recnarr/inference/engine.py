"""Generation engine, separate from the model: KV cache, one sampler, guides, stops, streaming, batching.

Every sequence is a row of a `Session` (continuous batching): the prompt is prefilled into the row's
own KV-cache slot, then each step feeds one token per running row in one forward. Rows join and leave
between steps, each with its own positions, sampling settings, seeded generator and guide, so a row
generates what it would alone. `generate_uncached` reruns the full forward for every new token and is
kept as the oracle the cached path is tested against (greedy outputs must be equal in fp32).

Sampling (`inference.sampling`) touches as little of the vocabulary as it can: penalties only on tokens
already seen, top-k as a partial selection, top-p over the k survivors, for all rows of a step at once.

A `Guide` steers a row: it says which tokens may come next (the claim grammar, in
`inference.decoding`) and may reject a finished segment (a sentence), which rolls the row back, KV
cache included, to the last commit point and samples the segment again.

Text is handled as bytes: GPT-2 tokens are byte sequences and one character (an emoji, an accented
letter) may be split across tokens. Stop sequences are matched on the decoded text, across token
boundaries; `stream` yields only complete characters and holds back text that could still turn
out to be the start of a stop sequence.
"""

from __future__ import annotations

import codecs
import logging
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import torch
from torch import Tensor

from recnarr.inference.sampling import SamplingParams, batchable, penalize, preselect, select
from recnarr.model.gpt import GPT, GPTConfig

log = logging.getLogger(__name__)


class Tokenizer(Protocol):
    """What the engine needs from a tokenizer; `tiktoken.Encoding` (recnarr.data.tokenizer) fits."""

    def encode(self, text: str) -> list[int]: ...

    def decode_bytes(self, tokens: Sequence[int]) -> bytes: ...


# ---------------------------------------------------------------- guides: constraints and rollback
GO_ON, COMMIT, REJECT = 0, 1, 2
STRAIN = 0.1  # below this much of the model's probability on allowed tokens, a choice is forced on it


class Guide(Protocol):
    """Steers one row while it is sampled (the logits processor of this engine, whatever the backend).

    `allows(token)`: whether the token may come next; the engine samples as usual and asks only about
    the token it drew (llama.cpp's grammar sampler does the same), masking more only when that one is
    refused. `push(token)` after each token: COMMIT marks a rollback point (what came so far is final),
    REJECT asks the engine to drop every token since the last commit point (its KV cache included) and
    sample them again. `strain()`: the next token had to be forced (the model put less than STRAIN of
    its probability on allowed tokens); REJECT takes the segment again, GO_ON forces it.
    `rewind()` tells the guide a rollback happened; `finish(reason)` that the row ended. Optional:
    `candidates()`, token ids that may be allowed now (a superset), searched when no likely token is;
    `vocab`, the sorted ids of every token the guide may ever allow (a superset, the end of text
    included): the head is then computed over those only and every other logit is -inf, which leaves
    the model's distribution over the allowed tokens as it was (see `Session.step`).
    """

    def allows(self, token: int) -> bool: ...

    def strain(self) -> int: ...

    def push(self, token: int) -> int: ...

    def rewind(self) -> None: ...

    def finish(self, reason: str) -> None: ...


@dataclass
class Generation:
    """One row's result. `tokens` are the new ids (a stop token included); `text` ends before any stop."""

    tokens: list[int]
    text: str
    finish_reason: str  # "stop" (stop token or stop sequence) | "length" | "error" (an isolated row's failure)
    prompt_tokens: int
    rollbacks: int = 0  # segments a guide rejected and the engine sampled again


def relayout_for_decode(model: torch.nn.Module) -> None:
    """Make every nn.Linear weight a transposed view of a contiguous (in, out) tensor, in place.

    `F.linear(x, W)` computes x @ W.T; with W.T contiguous that is a plain row-times-matrix product.
    The tied embedding (wte = lm_head) follows, which only makes the prefill's embedding lookup strided.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module.weight.is_contiguous():
                module.weight.data = module.weight.data.t().contiguous().t()


def head_rows(head: torch.nn.Module, vocab: Tensor) -> torch.nn.Module:
    """The output projection over the rows `vocab` only: an int8 head stays int8 (`Int8Linear.rows`),
    any other is cut from its (dequantized) weight."""
    if hasattr(head, "rows"):
        return head.rows(vocab)
    weight = head.dequantized() if hasattr(head, "dequantized") else head.weight
    cut = torch.nn.Linear(weight.size(1), len(vocab), bias=False, device=weight.device, dtype=weight.dtype)
    cut.weight.data = weight.detach()[vocab].contiguous()
    return cut


def outside_masked(logits: Tensor, vocab: Tensor | None) -> Tensor:
    """Logits (..., V) with every token outside `vocab` at -inf: what a backend that computes the full
    head returns when a vocab is asked for, so every backend samples from the same distribution."""
    if vocab is None:
        return logits
    keep = torch.zeros(logits.size(-1), dtype=torch.bool, device=logits.device)
    keep[vocab] = True
    return logits.masked_fill(~keep, float("-inf"))


# ---------------------------------------------------------------- KV state: slots, one per row
class SlotCache:
    """Keys/values for up to `rows` sequences, (n_layer, rows, nh, max_len, hs) each, written in place.

    Row i holds its own sequence from position 0, so a row's physical slot is its position id: rows of
    different lengths decode together without padding (a mask hides each row's unused tail), a row is
    rolled back by moving its length back (`truncate`), and a finished row's place is taken by moving
    the last row into it (`move`). The model's attention calls `update` once per layer.
    """

    def __init__(self, n_layer: int, rows: int, n_head: int, max_len: int, head_size: int,
                 dtype: torch.dtype, device: torch.device):
        shape = (n_layer, rows, n_head, max_len, head_size)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.lens = [0] * rows  # tokens held per row
        self.device = device
        self._prefill: int | None = None  # the row a prefill writes, or None for a decode step
        self._n, self._pos, self._S, self._mask = 0, None, 0, None

    def begin_prefill(self, row: int) -> None:
        self._prefill = row

    def begin_step(self, n: int) -> Tensor:
        """A step of one new token for each of rows 0..n-1; returns their position ids (n,)."""
        lens = self.lens[:n]
        self._prefill, self._n, self._S = None, n, max(lens) + 1
        self._pos = torch.tensor(lens, device=self.device)
        self._same = min(lens) == max(lens)
        self._mask = None if self._same else (
            torch.arange(self._S, device=self.device)[None, :] <= self._pos[:, None])[:, None, None, :]
        return self._pos

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        kl, vl = self.k[layer], self.v[layer]
        if self._prefill is not None:  # one row's prompt: plain causal attention over itself
            T = k.size(2)
            kl[self._prefill, :, :T], vl[self._prefill, :, :T] = k[0], v[0]
            return k, v, None
        n = self._n
        if self._same:  # every row at the same position: one slice (the single-row case)
            p = self.lens[0]
            kl[:n, :, p], vl[:n, :, p] = k[:, :, 0], v[:, :, 0]
        else:
            rows = torch.arange(n, device=self.device)
            kl[rows, :, self._pos], vl[rows, :, self._pos] = k[:, :, 0], v[:, :, 0]
        return kl[:n, :, : self._S], vl[:n, :, : self._S], self._mask

    def commit(self, length: int | None = None) -> None:
        if self._prefill is not None:
            self.lens[self._prefill] = length
        else:
            for i in range(self._n):
                self.lens[i] += 1

    def truncate(self, row: int, length: int) -> None:
        self.lens[row] = length  # later writes overwrite the rest; the mask hides it until then

    def move(self, src: int, dst: int) -> None:
        n = self.lens[src]
        self.k[:, dst, :, :n] = self.k[:, src, :, :n]
        self.v[:, dst, :, :n] = self.v[:, src, :, :n]
        self.lens[dst] = n


class Slots(Protocol):
    """One backend's KV state for up to `rows` sequences (a session's rows 0..n-1)."""

    def prefill(self, row: int, tokens: list[int], vocab: Tensor | None = None) -> Tensor:
        """Start row `row` on these tokens; the next-token logits (V,). vocab: only these token ids can
        be chosen; every other logit may be left -inf (and need not be computed)."""
        ...

    def step(self, tokens: list[int], vocab: Tensor | None = None) -> Tensor:
        """One token for each of rows 0..len(tokens)-1; their next-token logits (n, V) (vocab: as prefill)."""
        ...

    def truncate(self, row: int, length: int) -> None:
        """Keep the first `length` tokens of the row (a rollback)."""
        ...

    def move(self, src: int, dst: int) -> None:
        """Row `src` becomes row `dst` (dst's sequence has finished)."""
        ...

    def close(self) -> None: ...


class Backend(Protocol):
    """What produces logits for the engine. Sampling, guides, stops, streaming and text stay in the
    engine, so every backend gets the same controls. `max_rows`: sequences one session may hold."""

    config: GPTConfig
    max_rows: int

    def open(self, rows: int, cached: bool) -> Slots: ...


class TorchSlots:
    def __init__(self, model: torch.nn.Module, rows: int):
        cfg, p = model.config, next(model.parameters())
        self.model = model
        self.cache = SlotCache(cfg.n_layer, rows, cfg.n_head, cfg.block_size, cfg.n_embd // cfg.n_head,
                               p.dtype, p.device)
        self.vocab_size = cfg.vocab_size
        self._heads: dict[int, tuple[Tensor, torch.nn.Module]] = {}  # id(vocab) -> (vocab, its head)

    def _head(self, vocab: Tensor | None) -> dict[str, torch.nn.Module]:
        """The model's `head` argument for this vocab ({} for the full head, or a model without `lm_head`)."""
        if vocab is None or not hasattr(self.model, "lm_head"):
            return {}
        if id(vocab) not in self._heads:  # the vocab is kept: its id stays its own while cached
            self._heads[id(vocab)] = (vocab, head_rows(self.model.lm_head, vocab))
        return {"head": self._heads[id(vocab)][1]}

    def _widen(self, logits: Tensor, vocab: Tensor | None) -> Tensor:
        """(n, |vocab|) logits -> (n, V), -inf outside the vocab."""
        if vocab is None:
            return logits
        if logits.size(-1) == self.vocab_size:  # a model that computed the full head anyway
            return outside_masked(logits, vocab)
        out = logits.new_full((logits.size(0), self.vocab_size), float("-inf"))
        return out.index_copy_(1, vocab, logits)

    def prefill(self, row: int, tokens: list[int], vocab: Tensor | None = None) -> Tensor:
        idx = torch.tensor([tokens], device=self.cache.device)
        self.cache.begin_prefill(row)
        logits, _ = self.model(idx, positions=torch.arange(len(tokens), device=idx.device), kv_cache=self.cache,
                               last_only=True, **self._head(vocab))
        self.cache.commit(len(tokens))
        return self._widen(logits[:, -1], vocab)[0]

    def step(self, tokens: list[int], vocab: Tensor | None = None) -> Tensor:
        pos = self.cache.begin_step(len(tokens))
        idx = torch.tensor(tokens, device=self.cache.device)[:, None]
        logits, _ = self.model(idx, positions=pos[:, None], kv_cache=self.cache, last_only=True,
                               **self._head(vocab))
        self.cache.commit()
        return self._widen(logits[:, -1], vocab)

    def truncate(self, row: int, length: int) -> None:
        self.cache.truncate(row, length)

    def move(self, src: int, dst: int) -> None:
        self.cache.move(src, dst)

    def close(self) -> None:
        self.cache = None


class UncachedSlots:
    """The oracle: every step reruns the full forward over each row's whole sequence."""

    def __init__(self, model: torch.nn.Module, rows: int):
        self.model, self.seqs = model, [[] for _ in range(rows)]
        self.device = next(model.parameters()).device

    def _last(self, row: int, vocab: Tensor | None) -> Tensor:
        logits, _ = self.model(torch.tensor([self.seqs[row]], device=self.device), last_only=True)
        return outside_masked(logits[0, -1], vocab)

    def prefill(self, row: int, tokens: list[int], vocab: Tensor | None = None) -> Tensor:
        self.seqs[row] = list(tokens)
        return self._last(row, vocab)

    def step(self, tokens: list[int], vocab: Tensor | None = None) -> Tensor:
        for i, t in enumerate(tokens):
            self.seqs[i].append(t)
        return torch.stack([self._last(i, vocab) for i in range(len(tokens))])

    def truncate(self, row: int, length: int) -> None:
        del self.seqs[row][length:]

    def move(self, src: int, dst: int) -> None:
        self.seqs[dst] = self.seqs[src]

    def close(self) -> None:
        self.seqs = []


class TorchBackend:
    """The default backend: recnarr's own GPT in PyTorch (any quantization mode, many rows, the oracle)."""

    max_rows = 64

    def __init__(self, model: torch.nn.Module):
        self.model, self.config = model, model.config

    def open(self, rows: int, cached: bool) -> Slots:
        return TorchSlots(self.model, rows) if cached else UncachedSlots(self.model, rows)


# ---------------------------------------------------------------- one row's decoding
class _Row:
    """One sequence being decoded: its sampling state, text (incremental UTF-8, stop sequences, what was
    streamed), guide and last commit point."""

    def __init__(self, prompt: list[int], params: SamplingParams, guide: Guide | None, stop_ids: tuple[int, ...],
                 decode, vocab_size: int):
        self.prompt, self.params, self.guide, self.decode = prompt, params, guide, decode
        self.stop_ids, self.stop_set = stop_ids, set(stop_ids)
        self.stop_cols = torch.tensor([t for t in stop_ids if 0 <= t < vocab_size], dtype=torch.long)
        self.rng = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        # a rejected segment is sampled again, never greedily (greedy would write it again)
        self.retry_params = replace(params, temperature=max(params.temperature, 0.7)) if params.greedy else params
        self.retrying = False
        self.tokens: list[int] = []
        self.text, self.emitted = "", 0
        self.finish_reason: str | None = None
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.logits: Tensor | None = None  # next-token logits (V,)
        self.mark_len, self.mark_logits, self.want_mark = 0, None, False
        self.rollbacks, self.strained = 0, False
        self.error: str | None = None  # why the row ended early (finish_reason "error")
        self.admissible: Tensor | None = None  # token ids a guide may ever allow (its `admissible`), else all
        self.vocab: Tensor | None = None  # the guide's `vocab`: logits outside it are -inf
        # ids in the prompt or the output, for the repetition penalty; the tensor is rebuilt only when the
        # set grows (or a rewind shrinks it), not at every step
        self.seen, self.seen_ids = set(prompt), None

    # ------------------------------------------------------------ sampling
    @property
    def sampling(self) -> SamplingParams:
        return self.retry_params if self.retrying else self.params

    def seen_tensor(self) -> Tensor:
        if self.seen_ids is None:
            self.seen_ids = torch.tensor(sorted(self.seen), dtype=torch.long)
        return self.seen_ids

    def stop_mask(self, p: SamplingParams) -> Tensor | None:
        """The stop tokens to mask out now (below min_new_tokens), else None."""
        return self.stop_cols if len(self.tokens) < p.min_new_tokens and self.stop_cols.numel() else None

    def _penalized(self, p: SamplingParams) -> Tensor:
        logits = self.logits
        if p.penalized:
            seen = self.seen_tensor()
            out_ids, out_counts = torch.zeros(0, dtype=torch.long), None
            if (p.frequency_penalty or p.presence_penalty) and self.tokens:
                out_ids, out_counts = torch.tensor(self.tokens).unique(return_counts=True)
            logits = penalize(logits, p, seen, out_ids, out_counts)
        if (cols := self.stop_mask(p)) is not None:
            logits = logits.index_fill(0, cols, float("-inf"))
        return logits

    def _draw(self, ids: Tensor, vals: Tensor) -> int:
        return int(ids[torch.multinomial(vals.softmax(-1), 1, generator=self.rng)])

    def choose(self, pre: tuple[Tensor, Tensor, Tensor] | None = None) -> int:
        """The next token: sampled as `params` say; with a guide, from the tokens it allows. Sets
        `strained` when the guide refused what the model wanted and the allowed tokens hold less than
        STRAIN of the probability (the guide may then take the segment again rather than force it).
        pre: (penalized logits, ids, tempered logits) as `select` would give them, already computed
        for the whole step by `sampling.preselect`."""
        p = self.sampling
        self.strained = False
        if pre is not None:
            logits, ids, vals = pre
            return self._pick(logits, ids, vals, p)
        logits = self._penalized(p)
        allows = self.guide.allows if self.guide is not None else None
        if p.greedy:
            tok = int(logits.argmax())
            if allows is None or allows(tok):
                return tok
            vals, ids = torch.topk(logits, min(64, logits.numel()))
            probs = logits.float().softmax(-1)[ids]
            ok = torch.tensor([allows(t) for t in ids.tolist()])
            self.strained = float(probs[ok].sum()) < STRAIN
            return int(ids[ok][0]) if ok.any() else self._constrained(logits, p)
        ids, vals = select(logits.float(), p, self.vocab)
        return self._pick(logits, ids, vals, p)

    def _pick(self, logits: Tensor, ids: Tensor, vals: Tensor, p: SamplingParams) -> int:
        """A draw from the selected (ids, vals); with a guide, from those it allows, else `_constrained`."""
        allows = self.guide.allows if self.guide is not None else None
        tok = self._draw(ids, vals)
        if allows is None or allows(tok):
            return tok
        ok = torch.tensor([allows(t) for t in ids.tolist()])
        self.strained = float(vals.softmax(-1)[ok].sum()) < STRAIN
        if ok.any():
            return self._draw(ids[ok], vals[ok])
        return self._constrained(logits, p)

    def _constrained(self, logits: Tensor, p: SamplingParams) -> int:
        """No likely token is allowed: walk the admissible tokens by logit and sample among the first
        allowed ones (top-k of the masked distribution, then top-p)."""
        if hasattr(self.guide, "candidates"):  # the guide narrows the pool first (much faster)
            pool = self.guide.candidates()
        else:
            pool = self.admissible if self.admissible is not None else torch.arange(logits.numel())
        want = 1 if p.greedy else (p.top_k or 256)
        scores = logits[pool]
        # the best few first (a partial selection); the whole pool is sorted only if they hold too few
        # allowed tokens. Either way the tokens are walked in descending logit order.
        m = min(len(pool), max(8 * want, 512))
        found: list[int] = []

        def walk(order: list[int]) -> None:
            for t in order:
                if self.guide.allows(t):
                    found.append(t)
                    if len(found) == want:
                        return

        walk(pool[torch.topk(scores, m).indices].tolist())
        if len(found) < want and m < len(pool):
            walk(pool[torch.argsort(scores, descending=True)].tolist()[m:])
        if not found:
            raise RuntimeError("the guide allows no token at all (a grammar with no way on)")
        if p.greedy:
            return found[0]
        ids = torch.tensor(found)
        sub = select(logits[ids].float(), replace(p, top_k=0))
        return int(ids[sub[0][torch.multinomial(sub[1].softmax(-1), 1, generator=self.rng)]])

    # ------------------------------------------------------------ text
    def push(self, token: int) -> int:
        self.tokens.append(token)
        if token not in self.seen:
            self.seen.add(token)
            self.seen_ids = None
        action = self.guide.push(token) if self.guide is not None else GO_ON
        if action == REJECT:
            return REJECT
        p = self.params
        if token in self.stop_set:
            self.text += self.decoder.decode(b"", final=True)
            self.finish_reason = "stop"
        else:
            before = len(self.text)
            self.text += self.decoder.decode(self.decode([token]))  # only complete characters come out
            if len(self.tokens) >= p.min_new_tokens and p.stop:
                start = max(0, before - max(len(s) for s in p.stop) + 1)
                hits = [i for i in (self.text.find(s, start) for s in p.stop) if i >= 0]
                if hits:
                    self.text = self.text[: min(hits)]
                    self.finish_reason = "stop"
        if self.finish_reason is None and len(self.tokens) >= p.max_new_tokens:
            self.text += self.decoder.decode(b"", final=True)
            self.finish_reason = "length"
        if self.finish_reason is not None and self.guide is not None:
            self.guide.finish(self.finish_reason)
        self.want_mark = action == COMMIT
        return action

    def rewind(self) -> None:
        """Back to the last commit point: tokens, text and logits as they were there."""
        del self.tokens[self.mark_len:]
        self.seen, self.seen_ids = set(self.prompt) | set(self.tokens), None
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = self.decoder.decode(self.decode(self.tokens))
        self.finish_reason = None
        self.logits, self.retrying = self.mark_logits, True
        self.rollbacks += 1
        self.guide.rewind()

    def mark(self) -> None:
        self.mark_len, self.mark_logits, self.want_mark, self.retrying = len(self.tokens), self.logits, False, False

    def take(self) -> str:
        """Text safe to stream now: complete characters, minus a tail that could begin a stop sequence."""
        end, stop = len(self.text), self.params.stop
        if self.finish_reason is None and stop:
            for n in range(min(len(self.text), max(len(s) for s in stop) - 1), 0, -1):
                if any(s.startswith(self.text[-n:]) for s in stop):
                    end -= n
                    break
        piece, self.emitted = self.text[self.emitted : end], max(self.emitted, end)
        return piece

    def result(self) -> Generation:
        return Generation(self.tokens, self.text, self.finish_reason or "length", len(self.prompt), self.rollbacks)


class Session:
    """Continuous batching: rows join (`add`) and leave as they finish; every `step` decodes one token
    for each running row in one forward. A row waits while all `rows` places are taken, and is prefilled
    on its own when it gets one. Rows never affect each other's tokens: each has its own positions,
    sampling settings, random generator and guide."""

    def __init__(self, engine: Engine, rows: int, cached: bool = True, isolate_errors: bool = False):
        self.engine, self.isolate_errors = engine, isolate_errors
        self.rows = max(1, min(rows, engine.backend.max_rows))
        self.slots = engine.backend.open(self.rows, cached)
        self.active: list[_Row] = []
        self.waiting: deque[_Row] = deque()
        self.batched_sampling = True  # `_preselect`; off: every row samples on its own (the reference)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.slots is not None:
            self.slots.close()
            self.slots = None

    @property
    def busy(self) -> bool:
        return bool(self.active or self.waiting)

    def add(self, prompt: str | Sequence[int], params: SamplingParams | None = None, guide: Guide | None = None,
            **overrides) -> _Row:
        """Queue a prompt; the returned row fills in as the session steps (`.result()` once finished)."""
        e = self.engine
        params = e._params(params, overrides)
        ids = e._encode([prompt])[0]
        block = e.config.block_size
        if len(ids) + params.max_new_tokens > block:
            raise ValueError(
                f"prompt of {len(ids)} tokens + max_new_tokens {params.max_new_tokens} exceeds the model's block_size "
                f"{block}: shorten the prompt (at most {block - params.max_new_tokens} tokens) or lower max_new_tokens")
        decode = e.tokenizer.decode_bytes if e.tokenizer is not None else (lambda _ids: b"")
        row = _Row(ids, params, guide, e._stop_ids(params), decode, e.config.vocab_size)
        row.admissible = getattr(guide, "admissible", None)
        row.vocab = getattr(guide, "vocab", None)
        self.waiting.append(row)
        return row

    def cancel(self, row: _Row) -> None:
        """Stop a row (its caller went away); its place is freed at the next step."""
        if row in self.waiting:
            self.waiting.remove(row)
        row.finish_reason = row.finish_reason or "cancelled"

    @torch.inference_mode()
    def step(self) -> list[_Row]:
        """Admit waiting rows, then one token for every running row. Returns the rows that finished."""
        if any(r.finish_reason is not None for r in self.active):  # cancelled since the last step
            self._leave([r for r in self.active if r.finish_reason is None], None)
        while self.waiting and len(self.active) < self.rows:
            row = self.waiting.popleft()
            row.logits = self.slots.prefill(len(self.active), row.prompt, row.vocab)
            row.mark()
            self.active.append(row)
        if not self.active:
            return []
        tokens, done = [], []
        pre = self._preselect()
        for i, row in enumerate(self.active):
            try:
                tok = row.choose(pre.get(i))
                while (row.strained and row.guide.strain() == REJECT) or row.push(tok) == REJECT:
                    self.slots.truncate(i, len(row.prompt) + row.mark_len)  # the rejected token was never fed
                    row.rewind()
                    tok = row.choose()
            except Exception as e:  # one row's failure ends that row, never the batch it decodes in
                if not self.isolate_errors:
                    raise
                log.exception("row %d failed; it ends here", i)
                tok, row.error, row.finish_reason = 0, f"{type(e).__name__}: {e}", "error"
                if row.guide is not None:
                    row.guide.finish("error")
            tokens.append(tok)
            if row.finish_reason is not None:
                done.append(row)
        if done:
            tokens = self._leave([r for r in self.active if r.finish_reason is None], tokens)
        if self.active:
            # rows that share one vocab (every narrative's guide gives the same) get the head over it alone
            vocabs = {id(r.vocab): r.vocab for r in self.active}
            shared = next(iter(vocabs.values())) if len(vocabs) == 1 else None
            logits = self.slots.step(tokens, shared).float()
            for i, row in enumerate(self.active):
                row.logits = logits[i] if shared is not None else outside_masked(logits[i], row.vocab)
                if row.want_mark:
                    row.mark()
        return done

    def _preselect(self) -> dict[int, tuple[Tensor, Tensor, Tensor]]:
        """The step's first choice for every row that samples with top-k, in one batched pass
        (`sampling.preselect`): row index -> (penalized logits, ids, tempered logits). A row that is
        rolled back during the step chooses again on its own."""
        if not self.batched_sampling:
            return {}
        V = self.engine.config.vocab_size
        groups: dict[tuple[int, int], list[int]] = {}
        for i, row in enumerate(self.active):
            if row.logits is not None and batchable(row.sampling, V):
                groups.setdefault((row.sampling.top_k, id(row.vocab)), []).append(i)
        out: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
        for rows in groups.values():
            if len(rows) < 2:
                continue  # one row: the one-row path is as fast
            act = [self.active[i] for i in rows]
            params = [r.sampling for r in act]
            pen, ids, vals, keep = preselect([r.logits for r in act], params, [r.seen_tensor() for r in act],
                                             [r.stop_mask(p) for r, p in zip(act, params, strict=True)], act[0].vocab)
            for j, i in enumerate(rows):
                out[i] = (pen[j], ids[j][keep[j]], vals[j][keep[j]])
        return out

    def _leave(self, keep: list[_Row], tokens: list[int] | None) -> list[int]:
        """Finished rows leave; each free place below the last running row is filled by moving the last
        running row into it (one cache copy per row that left, not a shift of every row after it).
        Returns the running rows' tokens, in their new places."""
        alive = {id(r) for r in keep}
        order = list(self.active)
        toks = list(tokens) if tokens is not None else [0] * len(order)
        i = 0
        while i < len(order):
            if id(order[i]) in alive:
                i += 1
                continue
            while order and id(order[-1]) not in alive:  # finished rows at the end just go
                order.pop()
                toks.pop()
            if i >= len(order):
                break
            last = len(order) - 1
            self.slots.move(last, i)
            order[i], toks[i] = order[last], toks[last]
            order.pop()
            toks.pop()
            i += 1
        self.active = order
        return toks if tokens is not None else []


# ---------------------------------------------------------------- the engine
class Engine:
    """Generation for a `GPT` (the torch backend) or another `Backend` that produces logits, such as
    `inference.llamacpp.LlamaCppModel` (a GGUF file run by llama.cpp). Sampling, guides, stops and
    streaming are this class's, whatever the backend. A GPT is put in eval mode; generation runs under
    `inference_mode`.

    tokenizer: needed for string prompts, stop sequences and text output (`Tokenizer` protocol); with
    token-id prompts and no tokenizer, `text` is empty.
    fast_layout (CPU): store the model's matmul weights column-major, in place (values, shapes and names
    unchanged). Decoding multiplies one row by each weight; MKL's gemv reads an (in, out) matrix about
    twice as fast as the (out, in) layout nn.Linear keeps, and decoding is bound by those reads. Pass
    False for a model that is still being trained.
    """

    def __init__(self, model: GPT | Backend, tokenizer: Tokenizer | None = None, fast_layout: bool = True):
        self.tokenizer = tokenizer
        self.config = model.config
        if isinstance(model, torch.nn.Module):
            self.model = model.eval()
            if fast_layout and next(model.parameters()).device.type == "cpu":
                relayout_for_decode(model)
            self.backend: Backend = TorchBackend(model)
        else:  # another runtime that only produces logits (inference/llamacpp.py)
            self.model, self.backend = None, model

    # ---------------------------------------------------------------- public API
    def session(self, rows: int = 16, cached: bool = True, isolate_errors: bool = False) -> Session:
        """A continuous batch of up to `rows` sequences (the backend may allow fewer: llama.cpp, one).
        isolate_errors: a row whose sampling or guide raises ends alone (finish_reason "error", `error`
        says why) instead of the exception ending every row; what a server shared by requests wants."""
        return Session(self, rows, cached, isolate_errors)

    def generate(self, prompt: str | Sequence[int], params: SamplingParams | None = None, guide: Guide | None = None,
                 **overrides) -> Generation:
        """Generate for one prompt (text or token ids). `overrides` are SamplingParams fields."""
        return self.generate_batch([prompt], params, guides=[guide], **overrides)[0]

    def generate_batch(self, prompts: Sequence[str | Sequence[int]], params: SamplingParams | None = None,
                       guides: Sequence[Guide | None] | None = None, **overrides) -> list[Generation]:
        """Generate for several prompts at once (any lengths); one `Generation` per prompt."""
        return self._generate(prompts, params, guides, overrides, cached=True)

    def generate_uncached(self, prompts: Sequence[str | Sequence[int]], params: SamplingParams | None = None,
                          guides: Sequence[Guide | None] | None = None, **overrides) -> list[Generation]:
        """The reference path: a full forward over the whole sequence for every token, no cache."""
        if not isinstance(self.backend, TorchBackend):
            raise ValueError("generate_uncached is the torch backend's oracle; this engine runs another backend")
        return self._generate(prompts, params, guides, overrides, cached=False)

    def stream(self, prompt: str | Sequence[int], params: SamplingParams | None = None, **overrides) -> Iterator[str]:
        """Yield text pieces as they are generated. A piece never splits a character and never contains
        (a part of) a stop sequence; the pieces join to `generate(...).text`."""
        if self.tokenizer is None:
            raise ValueError("stream needs a tokenizer: Engine(model, tokenizer)")
        with self.session(1) as s:
            row = s.add(prompt, params, **overrides)
            while s.busy:
                s.step()
                piece = row.take()
                if piece:
                    yield piece

    # ---------------------------------------------------------------- internals
    def _generate(self, prompts, params, guides, overrides, cached: bool) -> list[Generation]:
        params = self._params(params, overrides)
        ids = self._encode(prompts)
        guides = list(guides) if guides is not None else [None] * len(ids)
        if len(guides) != len(ids):
            raise ValueError(f"{len(guides)} guides for {len(ids)} prompts")
        with self.session(len(ids), cached) as s:
            rows = [s.add(p, params, g) for p, g in zip(ids, guides, strict=True)]
            while s.busy:
                s.step()
        return [r.result() for r in rows]

    def _params(self, params: SamplingParams | None, overrides: dict) -> SamplingParams:
        params = replace(params or SamplingParams(), **overrides)  # replace() re-validates
        if params.stop and self.tokenizer is None:
            raise ValueError("stop sequences need a tokenizer: Engine(model, tokenizer)")
        return params

    def _encode(self, prompts: Sequence[str | Sequence[int]]) -> list[list[int]]:
        if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
            raise ValueError("prompts must be a non-empty list of prompts (strings or lists of token ids)")
        out = []
        for i, p in enumerate(prompts):
            if isinstance(p, str):
                if self.tokenizer is None:
                    raise ValueError("a text prompt needs a tokenizer: Engine(model, tokenizer)")
                p = self.tokenizer.encode(p)
            p = [int(t) for t in p]
            if not p:
                raise ValueError(f"prompt {i} is empty: at least one token is needed to condition on")
            if min(p) < 0 or max(p) >= self.config.vocab_size:
                raise ValueError(f"prompt {i} has token ids outside [0, {self.config.vocab_size})")
            out.append(p)
        return out

    def _stop_ids(self, params: SamplingParams) -> tuple[int, ...]:
        if params.stop_token_ids is not None:
            return params.stop_token_ids
        eot = getattr(self.tokenizer, "eot_token", None)
        return (eot,) if eot is not None else ()
