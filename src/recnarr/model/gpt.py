"""Decoder-only GPT in plain torch: the GPT-2 architecture, readable top to bottom.

References: GPT-2 (Radford et al. 2019: pre-LayerNorm blocks, learned positions, residual
projections initialised with std 0.02/sqrt(2 * n_layer)), nanoGPT (the layout), PaLM appendix B
(the FLOPs-per-token estimate used for MFU). Parameter names are GPT-2's, so the weights map 1:1
onto `transformers.GPT2LMHeadModel` (`recnarr.model.hf.export_hf`); the only difference is
that GPT-2 stores its projections as `Conv1D`, i.e. transposed relative to our `nn.Linear`.

The model knows nothing about training, serving or configuration files. Generation lives in
`recnarr.inference.engine`; it drives `forward` with a KV cache object (see `KVCache` below).

Shapes: B batch, T time (tokens in this call), S keys attended to (cache + T), C n_embd,
nh heads, hs = C // nh head size, V vocab.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recnarr.model.fused_ce import fused_linear_cross_entropy


@dataclass
class GPTConfig:
    """Shape of the network. Defaults are the reference `slm-60m`."""

    block_size: int = 512  # prompt (history + product facts) + a ~120-token narrative fits
    vocab_size: int = 50257  # GPT-2 BPE; kept exact so HF/GGUF exports carry the real vocabulary
    n_layer: int = 10
    n_head: int = 8
    n_embd: int = 512
    dropout: float = 0.0
    bias: bool = True  # GPT-2 layout (needed for HF GPT2LMHeadModel compatibility)

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")


PRESETS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(block_size=128, n_layer=2, n_head=2, n_embd=64),
    "cpu-small": GPTConfig(block_size=512, n_layer=4, n_head=4, n_embd=256),
    "slm-60m": GPTConfig(),
}


class KVCache(Protocol):
    """What attention needs from a cache (the engine's `recnarr.inference.engine.KVCache` implements it).

    `update` stores this call's keys/values for `layer` and returns every key/value the queries
    attend to, plus the attention mask to use: a bool tensor broadcastable to (B, nh, T, S)
    (True = attend), or None meaning "plain causal over (T, S)", which is exact when T == 1 or S == T.
    """

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor | None]: ...


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.layer, self.n_head, self.dropout = layer, cfg.n_head, cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # q, k, v for all heads at once
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, kv_cache: KVCache | None = None) -> Tensor:
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        if kv_cache is not None:
            k, v, attn_mask = kv_cache.update(self.layer, k, v)  # (B, nh, S, hs), S = cached + T
        p = self.dropout if self.training else 0.0
        if attn_mask is None:
            # T == 1 (decode) attends to everything cached; otherwise the square causal mask
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=T > 1)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        # GPT-2's GELU is the tanh approximation ("gelu_new"); the exact erf form would not match HF logits
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg, layer)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, kv_cache: KVCache | None = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask, kv_cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),  # token embeddings, (V, C)
                wpe=nn.Embedding(cfg.block_size, cfg.n_embd),  # learned positions, (block_size, C)
                drop=nn.Dropout(cfg.dropout),
                h=nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer)),
                ln_f=nn.LayerNorm(cfg.n_embd, bias=cfg.bias),
            )
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        # weight tying (Press & Wolf 2017), as GPT-2: the output projection is the embedding matrix
        self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(number of residual additions = 2 per layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters, the tied embedding counted once. `non_embedding` drops wte and wpe (the usual
        "model size" of scaling-law papers); `non_embedding=False` is everything stored."""
        n = sum(p.numel() for p in self.parameters())  # parameters() yields the tied weight once
        if non_embedding:
            n -= self.transformer.wte.weight.numel() + self.transformer.wpe.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward), PaLM appendix B: 6N + 12 L C T, where N counts
        every matmul weight (the tied lm_head included, the wpe lookup not)."""
        cfg = self.config
        n = self.num_params(non_embedding=False) - self.transformer.wpe.weight.numel()
        return 6 * n + 12 * cfg.n_layer * cfg.n_embd * (seq_len or cfg.block_size)

    def forward(
        self,
        idx: Tensor,
        targets: Tensor | None = None,
        loss_mask: Tensor | None = None,
        *,
        positions: Tensor | None = None,
        attn_mask: Tensor | None = None,
        kv_cache: KVCache | None = None,
        last_only: bool = False,
        return_logits: bool = True,
        head: nn.Module | None = None,
    ) -> tuple[Tensor | None, Tensor | None]:
        """Logits (B, T, V) and the mean cross-entropy loss when `targets` (B, T) are given.

        loss_mask (B, T): 1 where a target counts (fine-tuning: the narrative, not the prompt); the loss
            is the mean over counted targets. Targets equal to -100 are ignored as well.
        return_logits=False (with targets): the caller needs only the loss (training). With the plain
            nn.Linear head, logits are then None and the loss is computed chunk by chunk without ever
            holding the (B, T, V) logits (`fused_linear_cross_entropy`).
        positions (B, T) or (T,): position ids; default 0..T-1 (the engine passes them with a cache or
            with left padding). attn_mask: bool (B, 1, T, S), True = attend, for padded batches without a
            cache. kv_cache: see `KVCache`. last_only: logits of the last position only (B, 1, V), what
            generation needs; skips the (B, T, V) projection. head: another output projection in place of
            lm_head (the engine's, over the tokens a grammar can allow: logits (B, T, its rows)).
        """
        if positions is None:
            if idx.size(1) > self.config.block_size:
                raise ValueError(f"sequence of {idx.size(1)} tokens is longer than block_size {self.config.block_size}")
            positions = torch.arange(idx.size(1), device=idx.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(positions))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x, attn_mask, kv_cache)
        if last_only:
            x = x[:, -1:, :]  # (B, 1, C): layer norm and the head are per position
        x = self.transformer.ln_f(x)
        if targets is not None and not return_logits and type(self.lm_head) is nn.Linear:
            # (a head swapped for a quantized or adapted module takes the plain path below)
            return None, fused_linear_cross_entropy(x, self.lm_head.weight, targets, loss_mask)
        logits = (head if head is not None else self.lm_head)(x)  # (B, T, V)
        if targets is None:
            return logits, None
        return logits, self.loss(logits, targets, loss_mask)

    @staticmethod
    def loss(logits: Tensor, targets: Tensor, loss_mask: Tensor | None = None) -> Tensor:
        """Mean next-token cross-entropy; with a mask, the mean over the positions where it is nonzero."""
        flat = logits.reshape(-1, logits.size(-1)).float()
        if loss_mask is None:
            return F.cross_entropy(flat, targets.reshape(-1), ignore_index=-100)
        per_token = F.cross_entropy(flat, targets.reshape(-1), ignore_index=-100, reduction="none")
        mask = (loss_mask.reshape(-1) != 0) & (targets.reshape(-1) != -100)
        mask = mask.to(per_token.dtype)
        return (per_token * mask).sum() / mask.sum().clamp(min=1.0)
