"""Sampling controls and the sampler: penalties, temperature, top-k, top-p; one row, or every row of a
decode step at once (`preselect`).

Sampling touches as little of the vocabulary as it can: penalties only on tokens already seen, top-k as
a partial selection, top-p over the k survivors, so sampling costs about what greedy does. The batch
form computes exactly what the one-row form does, row by row (tested), so a row samples the same
tokens whether it decodes alone or with 63 others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


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


# ---------------------------------------------------------------- sampling
def penalize(logits: Tensor, params: SamplingParams, seen: Tensor | None = None, out_ids: Tensor | None = None,
             out_counts: Tensor | None = None) -> Tensor:
    """Penalties on one row of logits (V,), touching only the tokens that were seen: `seen` (n,) ids in the
    prompt or the output (repetition penalty), `out_ids`/`out_counts` the output's ids and how often each
    came (frequency and presence). Returns a new float32 tensor."""
    logits = logits.float().clone()
    if params.repetition_penalty != 1.0 and seen is not None and seen.numel():
        v = logits[seen]
        logits[seen] = torch.where(v > 0, v / params.repetition_penalty, v * params.repetition_penalty)
    if (params.frequency_penalty or params.presence_penalty) and out_ids is not None and out_ids.numel():
        counts = out_counts.to(logits.dtype)
        logits[out_ids] -= params.frequency_penalty * counts + params.presence_penalty
    return logits


def select(logits: Tensor, params: SamplingParams, vocab: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The tokens that may be drawn from one row of (penalized) logits (V,), best first, and their tempered
    logits: top-k first (a partial selection, not a sort of the vocabulary), then top-p on the k survivors
    (the mass strictly before a token must be < top_p: the token that crosses top_p stays, and so does the
    most likely one). With top-k off and top-p on, the whole vocabulary is sorted. vocab: the only ids
    whose logits can be finite (a guide's); the selection then reads those alone."""
    if vocab is not None:
        ids, vals = select(logits[vocab], params)
        return vocab[ids], vals
    V = logits.size(-1)
    if 0 < params.top_k < V:
        vals, ids = torch.topk(logits, params.top_k)  # sorted, descending
    elif params.top_p < 1.0:
        vals, ids = torch.sort(logits, descending=True)
    else:
        vals, ids = logits, torch.arange(V, device=logits.device)
    vals = vals / params.temperature if params.temperature > 0 else vals
    if params.top_p < 1.0:
        probs = vals.softmax(-1)
        keep = (probs.cumsum(-1) - probs) < params.top_p
        keep[0] = True
        vals, ids = vals[keep], ids[keep]
    return ids, vals


def _seen(prompt_mask: Tensor | None, counts: Tensor | None, b: int) -> tuple[Tensor | None, Tensor, Tensor]:
    seen = torch.zeros(0, dtype=torch.bool)
    if prompt_mask is not None:
        seen = prompt_mask[b].clone()
    if counts is not None:
        seen = (seen | (counts[b] > 0)) if seen.numel() else counts[b] > 0
    out_ids = (counts[b] > 0).nonzero().squeeze(-1) if counts is not None else torch.zeros(0, dtype=torch.long)
    out_counts = counts[b][out_ids] if counts is not None else torch.zeros(0)
    return (seen.nonzero().squeeze(-1) if seen.numel() else None), out_ids, out_counts


def process_logits(logits: Tensor, params: SamplingParams, *, output_counts: Tensor | None = None,
                   prompt_mask: Tensor | None = None) -> Tensor:
    """Penalties, temperature, top-k and top-p on next-token logits (B, V), as a (B, V) tensor whose
    filtered-out tokens are -inf (with temperature 0: penalized, not divided; the caller takes the argmax).
    output_counts (B, V): how often each token was generated; prompt_mask (B, V) bool: tokens in the prompt.
    Order as in HF/vLLM. The engine calls `penalize` and `select` per row; this is their batch form."""
    out = torch.full(logits.shape, float("-inf"), dtype=torch.float32, device=logits.device)
    for b in range(logits.size(0)):
        row = logits[b]
        if params.penalized:
            row = penalize(row, params, *_seen(prompt_mask, output_counts, b))
        if params.greedy:
            out[b] = row.float()
            continue
        ids, vals = select(row.float(), params)
        out[b, ids] = vals
    return out


def sample(logits: Tensor, params: SamplingParams, *, generator: torch.Generator | None = None,
           output_counts: Tensor | None = None, prompt_mask: Tensor | None = None) -> Tensor:
    """Next-token logits (B, V) -> token ids (B,): `process_logits`, then the argmax when temperature is 0,
    else one draw per row from `generator` (seeded: reproducible). Pure (inputs untouched)."""
    logits = process_logits(logits, params, output_counts=output_counts, prompt_mask=prompt_mask)
    if params.greedy:
        return logits.argmax(dim=-1)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(-1)


def batchable(p: SamplingParams, vocab: int) -> bool:
    """Sampling that `preselect` does for many rows at once: top-k on, no frequency or presence penalty."""
    return not p.greedy and 0 < p.top_k < vocab and not p.frequency_penalty and not p.presence_penalty


def preselect(logits: Sequence[Tensor], params: Sequence[SamplingParams], seen: Sequence[Tensor],
              stop_cols: Sequence[Tensor | None], vocab: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`penalize` + `select` for n rows in one pass: what a decode step at 32-64 rows otherwise spends
    most of its Python-side time on, one (V,) row at a time. Every row's params must be `batchable` with
    the same top_k. logits: n rows (V,); seen: each row's prompt + output ids (the repetition penalty);
    stop_cols: ids masked out while a row is below min_new_tokens, else None.

    Returns (penalized (n, V), ids (n, k), tempered logits (n, k), keep (n, k)): row i's `select` result
    is ids[i][keep[i]], vals[i][keep[i]], and penalized[i] is what `penalize` gave (for the rare guided
    fallback that needs the whole row). Same values as the one-row path: the same elementwise ops, and
    top-k, softmax and cumsum each run along one row. vocab: every row's guide vocab (as in `select`)."""
    pen = torch.stack(logits).float()  # (n, V), a copy: the step's logits stay as they were
    n = pen.size(0)
    rp = torch.tensor([p.repetition_penalty for p in params], dtype=pen.dtype)[:, None]
    if (rp != 1.0).any():
        width = max(s.numel() for s in seen)
        idx = torch.empty((n, width), dtype=torch.long)
        for i, s in enumerate(seen):  # padded with the row's first id: a repeated index writes the same value
            idx[i, : s.numel()] = s
            idx[i, s.numel():] = s[0]
        v = pen.gather(1, idx)
        pen.scatter_(1, idx, torch.where(v > 0, v / rp, v * rp))  # a penalty of 1 divides by 1: exact
    for i, cols in enumerate(stop_cols):
        if cols is not None and cols.numel():
            pen[i].index_fill_(0, cols, float("-inf"))
    if vocab is not None:  # as `select` with a vocab: the top-k of those columns
        vals, ids = torch.topk(pen[:, vocab], min(params[0].top_k, vocab.numel()), dim=-1)  # sorted, descending
        ids = vocab[ids]
    else:
        vals, ids = torch.topk(pen, params[0].top_k, dim=-1)
    vals = vals / torch.tensor([p.temperature for p in params], dtype=vals.dtype)[:, None]
    top_p = torch.tensor([p.top_p for p in params], dtype=vals.dtype)[:, None]
    probs = vals.softmax(-1)
    keep = ((probs.cumsum(-1) - probs) < top_p) | (top_p >= 1.0)
    keep[:, 0] = True
    return pen, ids, vals, keep
