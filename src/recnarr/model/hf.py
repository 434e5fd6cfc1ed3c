"""Hugging Face GPT-2 export/import (the `recnarr export` / `recnarr import` commands are in recnarr.stages.export).

HF export writes what `transformers.GPT2LMHeadModel.from_pretrained` loads: GPT-2's `Conv1D` stores
its weight as (in, out), so the four projection matrices are transposed relative to our `nn.Linear`.
Kept apart from `model.checkpoint` (the format every other module builds on), so that the format
imports nothing above it: quantize and GGUF export build on the format.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from recnarr.data.tokenizer import EOT_ID
from recnarr.model.checkpoint import (
    CONFIG_FILE,
    MODEL_FILE,
    TIED_KEY,
    CheckpointError,
    _read_json,
    _write_json,
    model_state,
    read_safetensors,
)
from recnarr.model.gpt import GPT, GPTConfig
from recnarr.model.quantize import load_any

# nn.Linear (out, in) here, Conv1D (in, out) in HF GPT-2
HF_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


# ------------------------------------------------------------------ Hugging Face GPT-2
def hf_config(cfg: GPTConfig) -> dict[str, Any]:
    """A transformers GPT2Config (as its config.json) with exactly our architecture."""
    if not cfg.bias:
        raise CheckpointError("HF GPT-2 always has biases: a bias=False model cannot be exported to GPT2LMHeadModel")
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": None,  # 4 * n_embd
        "activation_function": "gelu_new",  # the tanh approximation
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "bos_token_id": EOT_ID,
        "eos_token_id": EOT_ID,
        "torch_dtype": "float32",
    }


def export_hf(ckpt: str | os.PathLike | GPT, folder: str | os.PathLike) -> Path:
    """Write a folder that `transformers.GPT2LMHeadModel.from_pretrained(folder)` loads.

    `ckpt` is a checkpoint folder or a GPT. Weights are written in float32 regardless of the source dtype;
    the GPT-2 tokenizer files go beside them, so the folder is self-contained.
    """
    model = ckpt if isinstance(ckpt, GPT) else load_any(ckpt)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in model_state(model).items():
        v = v.float()
        if k.endswith(HF_TRANSPOSED):
            v = v.t()
        tensors[k] = v.contiguous()
    save_file(tensors, str(out / MODEL_FILE), metadata={"format": "pt"})
    _write_json(out / CONFIG_FILE, hf_config(model.config))
    _write_json(out / "generation_config.json",
                {"bos_token_id": EOT_ID, "eos_token_id": EOT_ID, "pad_token_id": EOT_ID})
    if model.config.vocab_size >= 50257:  # a GPT-2-vocabulary model (not a toy vocabulary)
        write_hf_tokenizer(out)
    return out


def write_hf_tokenizer(folder: Path) -> None:
    """vocab.json + merges.txt + tokenizer_config.json: `AutoTokenizer.from_pretrained(folder)` gives GPT-2 BPE."""
    from recnarr.data.tokenizer import EOT, vocab_and_merges

    tokens, merges = vocab_and_merges()
    _write_json(folder / "vocab.json", {t: i for i, t in enumerate(tokens)})
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    _write_json(folder / "tokenizer_config.json",
                {"tokenizer_class": "GPT2Tokenizer", "bos_token": EOT, "eos_token": EOT, "unk_token": EOT,
                 "add_prefix_space": False, "model_max_length": 1024})


def import_hf(folder: str | os.PathLike) -> GPT:
    """Read a GPT-2 folder in safetensors (from `export_hf`, or any GPT2LMHeadModel.save_pretrained)."""
    folder = Path(folder)
    raw = _read_json(folder / CONFIG_FILE)
    path = folder / CONFIG_FILE
    if raw.get("model_type") != "gpt2":
        raise CheckpointError(f"{path}: model_type is {raw.get('model_type')!r}, only 'gpt2' can be imported")
    expect = {"activation_function": ("gelu_new", "gelu_pytorch_tanh"), "scale_attn_by_inverse_layer_idx": (False,),
              "reorder_and_upcast_attn": (False,), "scale_attn_weights": (True,)}
    for key, allowed in expect.items():
        if key in raw and raw[key] not in allowed:
            raise CheckpointError(f"{path}: {key}={raw[key]!r} is not supported (expected one of {allowed})")
    n_embd = raw.get("n_embd", 768)
    if raw.get("n_inner") not in (None, 4 * n_embd):
        raise CheckpointError(f"{path}: n_inner={raw['n_inner']} is not supported (expected 4 * n_embd)")
    if abs(raw.get("layer_norm_epsilon", 1e-5) - 1e-5) > 1e-12:
        raise CheckpointError(f"{path}: layer_norm_epsilon={raw['layer_norm_epsilon']} is not supported (1e-5)")
    cfg = GPTConfig(block_size=raw.get("n_positions", 1024), vocab_size=raw.get("vocab_size", 50257),
                    n_layer=raw.get("n_layer", 12), n_head=raw.get("n_head", 12), n_embd=n_embd,
                    dropout=float(raw.get("resid_pdrop", 0.0)), bias=True)
    weights = folder / MODEL_FILE
    if not weights.exists() and (folder / "pytorch_model.bin").exists():
        raise CheckpointError(f"{folder}: only pytorch_model.bin (a pickle) found; re-save it with safe_serialization")
    sd = read_safetensors(weights)
    sd = {k if k.startswith(("transformer.", "lm_head.")) else f"transformer.{k}": v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}  # old causal buffers
    for k in list(sd):
        if k.endswith(HF_TRANSPOSED):
            sd[k] = sd[k].t().contiguous()
    tied = sd.pop(TIED_KEY, None)
    if tied is not None and not torch.equal(tied, sd.get("transformer.wte.weight", tied)):
        raise CheckpointError(f"{weights}: lm_head.weight differs from wte (untied); recnarr's GPT ties them")
    sd[TIED_KEY] = sd.get("transformer.wte.weight", tied)
    model = GPT(cfg)
    try:
        model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{weights} does not fit {path}: {e}") from e
    return model
