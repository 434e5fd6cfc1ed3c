"""Generation engine, separate from the model: KV cache, one `sample()`, text-level stops, streaming.

Prefill runs the whole prompt once and writes every layer's keys/values into a preallocated cache;
each decode step then feeds one token per row and attends to the cache. `generate_uncached` reruns
the full forward for every new token and is kept as the oracle that the cached path is tested
against (greedy outputs must be equal, exactly, in fp32).

Batches of prompts of different lengths are left-padded: pad positions are masked out of attention
and position ids count only real tokens, so a row generates what it would alone.

Text is handled as bytes: GPT-2 tokens are byte sequences and one character (an emoji, an accented
letter) may be split across tokens. Stop sequences are matched on the decoded text, across token
boundaries; `stream` yields only complete characters and holds back text that could still turn
out to be the start of a stop sequence.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import torch
from torch import Tensor

from recnarr.model.gpt import GPT, GPTConfig


class Tokenizer(Protocol):
    """What the engine needs from a tokenizer; `tiktoken.Encoding` (recnarr.data.tokenizer) fits."""

    def encode(self, text: str) -> list[int]: ...

    def decode_bytes(self, tokens: Sequence[int]) -> bytes: ...


@dataclass
class SamplingParams:
    """Sampling controls. Defaults are plain sampling at temperature 1; `temperature=0` is greedy.

    repetition_penalty (CTRL, Keskar et al. 2019; as in HF): a token already in the prompt or the output
    has its logit divided by the penalty if positive, multiplied if negative. frequency_penalty and
    presence_penalty (OpenAI semantics, output tokens only): logit -= frequency * count + presence * (count > 0).
    stop: strings that end generation, matched on the text (across token boundaries); the returned text
    stops before them. stop_token_ids: token ids that end generation; None = the tokenizer's end-of-text.
    min_new_tokens: stop tokens are masked out and stop strings ignored until this many tokens exist.
    """

    max_new_tokens: int = 120
    min_new_tokens: int = 0
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    repetition_penalty: float = 1.0  # 1 = off
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    stop: Sequence[str] = ()
    stop_token_ids: Sequence[int] | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        def bad(msg: str) -> ValueError:
            return ValueError(f"SamplingParams: {msg}")

        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise bad(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not isinstance(self.min_new_tokens, int) or not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise bad(f"min_new_tokens must be in [0, max_new_tokens={self.max_new_tokens}], got {self.min_new_tokens!r}")
        if not self.temperature >= 0:  # also catches NaN
            raise bad(f"temperature must be >= 0 (0 = greedy), got {self.temperature!r}")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise bad(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")
        if not 0 < self.top_p <= 1:
            raise bad(f"top_p must be in (0, 1] (1 = off), got {self.top_p!r}")
        if not self.repetition_penalty > 0:
            raise bad(f"repetition_penalty must be > 0 (1 = off), got {self.repetition_penalty!r}")
        for name in ("frequency_penalty", "presence_penalty"):
            if not -2.0 <= getattr(self, name) <= 2.0:
                raise bad(f"{name} must be in [-2, 2], got {getattr(self, name)!r}")
        if isinstance(self.stop, str):
            self.stop = (self.stop,)
        self.stop = tuple(self.stop)
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise bad(f"stop sequences must be non-empty strings, got {self.stop!r}")
        if self.stop_token_ids is not None:
            self.stop_token_ids = tuple(int(t) for t in self.stop_token_ids)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def penalized(self) -> bool:
        return self.repetition_penalty != 1.0 or self.frequency_penalty != 0.0 or self.presence_penalty != 0.0


def process_logits(
    logits: Tensor,
    params: SamplingParams,
    *,
    output_counts: Tensor | None = None,
    prompt_mask: Tensor | None = None,
) -> Tensor:
    """Penalties, temperature, top-k and top-p applied to next-token logits (B, V); filtered-out tokens
    become -inf. Returns a new float32 tensor (the input is untouched). With temperature 0 the result is
    not divided (the caller takes the argmax).

    output_counts (B, V): how often each token was generated so far; prompt_mask (B, V) bool: tokens
    present in the prompt. Both only matter for the penalties. Order as in HF/vLLM.
    """
    logits = logits.float()
    if params.penalized and (output_counts is not None or prompt_mask is not None):
        seen = torch.zeros_like(logits, dtype=torch.bool)
        if prompt_mask is not None:
            seen |= prompt_mask
        if output_counts is not None:
            seen |= output_counts > 0
        if params.repetition_penalty != 1.0:
            penalized = torch.where(logits > 0, logits / params.repetition_penalty, logits * params.repetition_penalty)
            logits = torch.where(seen, penalized, logits)
        if output_counts is not None:
            counts = output_counts.to(logits.dtype)
            logits = logits - params.frequency_penalty * counts - params.presence_penalty * (counts > 0).to(logits.dtype)
    if params.greedy:
        return logits
    logits = logits / params.temperature
    if params.top_k and params.top_k < logits.size(-1):
        kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]  # (B, 1): the k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))  # ties with the k-th stay
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # keep a token if the mass strictly before it is < top_p: the token that crosses top_p stays,
        # and so does the most likely token
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= params.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample(
    logits: Tensor,
    params: SamplingParams,
    *,
    generator: torch.Generator | None = None,
    output_counts: Tensor | None = None,
    prompt_mask: Tensor | None = None,
) -> Tensor:
    """The one sampling function: next-token logits (B, V) -> token ids (B,). Pure (inputs untouched).

    `process_logits` (penalties, temperature, top-k, top-p), then argmax when temperature is 0, else one
    draw per row from `generator` (seeded: reproducible).
    """
    logits = process_logits(logits, params, output_counts=output_counts, prompt_mask=prompt_mask)
    if params.greedy:
        return logits.argmax(dim=-1)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(-1)


class KVCache:
    """Preallocated keys/values for every layer: (n_layer, B, nh, max_len, hs) each, written in place.

    `key_mask` (B, max_len) marks real tokens (False on left padding). The engine calls `begin(T)` before
    a forward of T new tokens, the model's attention calls `update` once per layer, then `commit()`.
    """

    def __init__(self, n_layer: int, batch: int, n_head: int, max_len: int, head_size: int,
                 dtype: torch.dtype, device: torch.device):
        shape = (n_layer, batch, n_head, max_len, head_size)
        self.k = torch.empty(shape, dtype=dtype, device=device)
        self.v = torch.empty(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.key_mask: Tensor | None = None  # (B, max_len) bool, set only for padded batches
        self.pos = 0  # filled length
        self._end = 0
        self._mask: Tensor | None = None

    def reset(self, key_mask: Tensor | None = None) -> None:
        self.pos, self.key_mask = 0, key_mask

    def begin(self, T: int) -> None:
        self._end = self.pos + T
        if self._end > self.max_len:
            raise ValueError(f"KV cache of {self.max_len} positions is full")
        if self.key_mask is None and (T == 1 or self.pos == 0):
            self._mask = None  # plain causal attention is exact (see gpt.KVCache)
            return
        rows = torch.arange(self.pos, self._end, device=self.k.device)[:, None]  # (T, 1) query positions
        cols = torch.arange(self._end, device=self.k.device)[None, :]  # (1, S) key positions
        mask = cols <= rows  # (T, S) causal
        if self.key_mask is not None:
            # a query always sees itself, so padded rows attend to something and stay finite
            mask = mask & (self.key_mask[:, None, None, : self._end] | (cols == rows))  # (B, 1, T, S)
        self._mask = mask

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        self.k[layer, :, :, self.pos : self._end] = k  # in place: no per-step allocation
        self.v[layer, :, :, self.pos : self._end] = v
        return self.k[layer, :, :, : self._end], self.v[layer, :, :, : self._end], self._mask

    def commit(self) -> None:
        self.pos = self._end


@dataclass
class Generation:
    """One row's result. `tokens` are the new ids (a stop token included); `text` ends before any stop."""

    tokens: list[int]
    text: str
    finish_reason: str  # "stop" (stop token or stop sequence) | "length"
    prompt_tokens: int


@dataclass
class _Row:
    """Per-row text state: incremental UTF-8 decoding, stop-sequence search, what was already streamed."""

    stop: tuple[str, ...]
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    emitted: int = 0
    finish_reason: str | None = None
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )

    def push(self, token: int, piece: bytes, is_stop_token: bool, check_stops: bool) -> None:
        self.tokens.append(token)
        if is_stop_token:
            self.text += self.decoder.decode(b"", final=True)
            self.finish_reason = "stop"
            return
        before = len(self.text)
        self.text += self.decoder.decode(piece)  # only complete characters come out
        if check_stops and self.stop:
            start = max(0, before - max(len(s) for s in self.stop) + 1)
            hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
            if hits:
                self.text = self.text[: min(hits)]
                self.finish_reason = "stop"

    def finish_length(self) -> None:
        self.text += self.decoder.decode(b"", final=True)
        self.finish_reason = self.finish_reason or "length"

    def take(self) -> str:
        """Text safe to stream now: complete characters, minus a tail that could begin a stop sequence."""
        end = len(self.text)
        if self.finish_reason is None and self.stop:
            for n in range(min(len(self.text), max(len(s) for s in self.stop) - 1), 0, -1):
                if any(s.startswith(self.text[-n:]) for s in self.stop):
                    end -= n
                    break
        piece, self.emitted = self.text[self.emitted : end], max(self.emitted, end)
        return piece


def relayout_for_decode(model: torch.nn.Module) -> None:
    """Make every nn.Linear weight a transposed view of a contiguous (in, out) tensor, in place.

    `F.linear(x, W)` computes x @ W.T; with W.T contiguous that is a plain row-times-matrix product.
    The tied embedding (wte = lm_head) follows, which only makes the prefill's embedding lookup strided.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module.weight.is_contiguous():
                module.weight.data = module.weight.data.t().contiguous().t()


class Run(Protocol):
    """One generation call's model state (a KV cache) in some runtime."""

    def logits(self, start: int, end: int) -> Tensor:
        """Feed `idx[:, start:end]` (the engine fills `idx` as it samples); the next-token logits (B, V)."""
        ...

    def __enter__(self) -> Run: ...

    def __exit__(self, *exc: object) -> None: ...


class Backend(Protocol):
    """What produces logits for the engine. Sampling, stops, streaming and text stay in the engine, so
    every backend gets the same controls. `batched`: whether a run may hold more than one row."""

    config: GPTConfig
    batched: bool

    def open(self, idx: Tensor, positions: Tensor, key_mask: Tensor | None, cached: bool) -> Run: ...


class TorchRun:
    """A `GPT` over one call: a KV cache sized to what the call will hold (calls may run concurrently),
    or, for the `generate_uncached` oracle, a full forward over the whole sequence at every step."""

    def __init__(self, model: torch.nn.Module, idx: Tensor, positions: Tensor, key_mask: Tensor | None,
                 cached: bool):
        self.model, self.idx, self.positions, self.key_mask = model, idx, positions, key_mask
        self.cache = None
        if cached:
            cfg = model.config
            p = next(model.parameters())
            self.cache = KVCache(cfg.n_layer, idx.size(0), cfg.n_head, idx.size(1), cfg.n_embd // cfg.n_head,
                                 p.dtype, p.device)
            self.cache.reset(key_mask)

    def logits(self, start: int, end: int) -> Tensor:
        padded = self.key_mask is not None
        if self.cache is None:  # recompute everything up to `end`
            mask = None
            if padded:
                causal = torch.ones(end, end, dtype=torch.bool, device=self.idx.device).tril()
                eye = torch.eye(end, dtype=torch.bool, device=self.idx.device)
                mask = causal & (self.key_mask[:, None, None, :end] | eye)
            logits, _ = self.model(self.idx[:, :end], positions=self.positions[:, :end] if padded else None,
                                   attn_mask=mask, last_only=True)
            return logits[:, -1, :]
        self.cache.begin(end - start)
        pos = self.positions[:, start:end] if padded or start > 0 else None
        logits, _ = self.model(self.idx[:, start:end], positions=pos, kv_cache=self.cache, last_only=True)
        self.cache.commit()
        return logits[:, -1, :]

    def __enter__(self) -> TorchRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cache = None


class TorchBackend:
    """The default backend: recnarr's own GPT in PyTorch (any quantization mode, batches, the oracle)."""

    batched = True

    def __init__(self, model: torch.nn.Module):
        self.model, self.config = model, model.config

    def open(self, idx: Tensor, positions: Tensor, key_mask: Tensor | None, cached: bool) -> TorchRun:
        return TorchRun(self.model, idx, positions, key_mask, cached)


class Engine:
    """Generation for a `GPT` (the torch backend) or another `Backend` that produces logits, such as
    `inference.llamacpp.LlamaCppModel` (a GGUF file run by llama.cpp). Sampling, stops and streaming
    are this class's, whatever the backend. A GPT is put in eval mode; generation runs under
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
            p = next(model.parameters())
            self.device, self.dtype = p.device, p.dtype
            self.backend: Backend = TorchBackend(model)
        else:  # another runtime that only produces logits (inference/llamacpp.py)
            self.model, self.backend = None, model
            self.device, self.dtype = torch.device("cpu"), torch.float32

    # ---------------------------------------------------------------- public API
    def generate(self, prompt: str | Sequence[int], params: SamplingParams | None = None, **overrides) -> Generation:
        """Generate for one prompt (text or token ids). `overrides` are SamplingParams fields."""
        return self.generate_batch([prompt], params, **overrides)[0]

    def generate_batch(self, prompts: Sequence[str | Sequence[int]], params: SamplingParams | None = None,
                       **overrides) -> list[Generation]:
        """Generate for several prompts at once (any lengths: left-padded); one `Generation` per prompt."""
        params = self._params(params, overrides)
        ids = self._encode(prompts)
        if not self.backend.batched and len(ids) > 1:
            return [self.generate(p, params) for p in ids]
        rows = [_Row(params.stop) for _ in ids]
        for _ in self._run(ids, params, rows, cached=True):
            pass
        return [self._result(r, p) for r, p in zip(rows, ids, strict=True)]

    def generate_uncached(self, prompts: Sequence[str | Sequence[int]], params: SamplingParams | None = None,
                          **overrides) -> list[Generation]:
        """The reference path: a full forward over the whole sequence for every token, no cache."""
        if not isinstance(self.backend, TorchBackend):
            raise ValueError("generate_uncached is the torch backend's oracle; this engine runs another backend")
        params = self._params(params, overrides)
        ids = self._encode(prompts)
        rows = [_Row(params.stop) for _ in ids]
        for _ in self._run(ids, params, rows, cached=False):
            pass
        return [self._result(r, p) for r, p in zip(rows, ids, strict=True)]

    def stream(self, prompt: str | Sequence[int], params: SamplingParams | None = None, **overrides) -> Iterator[str]:
        """Yield text pieces as they are generated. A piece never splits a character and never contains
        (a part of) a stop sequence; the pieces join to `generate(...).text`."""
        if self.tokenizer is None:
            raise ValueError("stream needs a tokenizer: Engine(model, tokenizer)")
        params = self._params(params, overrides)
        ids = self._encode([prompt])
        row = _Row(params.stop)
        for _ in self._run(ids, params, [row], cached=True):
            piece = row.take()
            if piece:
                yield piece
        piece = row.take()
        if piece:
            yield piece

    # ---------------------------------------------------------------- internals
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

    def _result(self, row: _Row, prompt: list[int]) -> Generation:
        return Generation(tokens=row.tokens, text=row.text, finish_reason=row.finish_reason or "length",
                          prompt_tokens=len(prompt))

    @torch.inference_mode()
    def _run(self, prompts: list[list[int]], params: SamplingParams, rows: list[_Row], cached: bool) -> Iterator[None]:
        """The decode loop shared by every public method; yields after each step (for streaming)."""
        B, lens = len(prompts), [len(p) for p in prompts]
        T, block = max(lens), self.config.block_size
        if T + params.max_new_tokens > block:
            raise ValueError(
                f"prompt of {T} tokens + max_new_tokens {params.max_new_tokens} exceeds the model's block_size "
                f"{block}: shorten the prompt (at most {block - params.max_new_tokens} tokens) or lower max_new_tokens"
            )
        dev = self.device
        # left padding: real tokens end-aligned; positions count real tokens only
        idx = torch.zeros(B, T + params.max_new_tokens, dtype=torch.long, device=dev)  # (B, T + max_new)
        key_mask = torch.ones(B, T + params.max_new_tokens, dtype=torch.bool, device=dev)
        for b, p in enumerate(prompts):
            idx[b, T - len(p) : T] = torch.tensor(p, device=dev)
            key_mask[b, : T - len(p)] = False
        padded = min(lens) != T
        positions = (key_mask.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, T + max_new)

        stop_ids = self._stop_ids(params)
        prompt_mask = None
        if params.penalized:
            prompt_mask = torch.zeros(B, self.config.vocab_size, dtype=torch.bool, device=dev)
            for b, p in enumerate(prompts):
                prompt_mask[b, torch.tensor(p, device=dev)] = True
        with self.backend.open(idx, positions, key_mask if padded else None, cached) as run:
            yield from self._decode(run, idx, T, params, rows, stop_ids, prompt_mask)

    def _decode(self, run: Run, idx: Tensor, T: int, params: SamplingParams, rows: list[_Row],
                stop_ids: tuple[int, ...], prompt_mask: Tensor | None) -> Iterator[None]:
        B, dev = idx.size(0), self.device
        stop_set = set(stop_ids)
        generator = None
        if params.seed is not None:
            generator = torch.Generator(device=dev).manual_seed(params.seed)
        counts = None
        if prompt_mask is not None:
            counts = torch.zeros(B, self.config.vocab_size, dtype=torch.int32, device=dev)
        stop_cols = torch.tensor([t for t in stop_ids if 0 <= t < self.config.vocab_size], dtype=torch.long,
                                 device=dev)
        decode = self.tokenizer.decode_bytes if self.tokenizer is not None else (lambda _ids: b"")
        logits = run.logits(0, T)
        for step in range(params.max_new_tokens):
            L = T + step  # tokens in the sequence so far
            last = logits  # (B, V)
            if step < params.min_new_tokens and stop_cols.numel():
                last = last.index_fill(1, stop_cols, float("-inf"))
            if params.greedy and not params.penalized:
                nxt = last.argmax(dim=-1)  # the common case, without sample()'s copies
            else:
                nxt = sample(last, params, generator=generator, output_counts=counts, prompt_mask=prompt_mask)
            idx[:, L] = nxt
            if counts is not None:
                counts[torch.arange(B, device=dev), nxt] += 1
            check_stops = step + 1 >= params.min_new_tokens
            for b, tok in enumerate(nxt.tolist()):
                row = rows[b]
                if row.finish_reason is None:
                    row.push(tok, decode([tok]), tok in stop_set, check_stops)
            if all(r.finish_reason is not None for r in rows):
                break
            yield
            if step + 1 < params.max_new_tokens:
                logits = run.logits(L, L + 1)
        for r in rows:
            if r.finish_reason is None:
                r.finish_length()
        yield
