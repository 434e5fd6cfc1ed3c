"""Decoder-only GPT in plain torch. (Config only for now; the module lands with the model issue.)"""

from __future__ import annotations

from dataclasses import dataclass


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


PRESETS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(block_size=128, n_layer=2, n_head=2, n_embd=64),
    "cpu-small": GPTConfig(block_size=512, n_layer=4, n_head=4, n_embd=256),
    "slm-60m": GPTConfig(),
}
