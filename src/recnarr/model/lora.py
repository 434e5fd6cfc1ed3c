"""LoRA (Hu et al. 2021) and QLoRA (Dettmers et al. 2023) on our own GPT, through PEFT.

The model class is never copied or wrapped: `add_lora` walks the model, picks the linear layers whose
last name is in `targets` (default c_attn, c_proj, c_fc: attention and MLP of every block; the tied
lm_head is never a target), and PEFT replaces exactly those modules in place with LoRA layers that
wrap the frozen base layer (y = W x + (alpha / r) B A x, B initialised to zero, so a fresh adapter
leaves the logits unchanged). Every other parameter is frozen. The result is still a `GPT`: the
trainer, the engine and the checkpoint code see the same object.

QLoRA: `add_qlora` first turns the frozen base's block linears into bitsandbytes NF4 layers (the one
quantization switch, `recnarr.model.quantize`), marks the model `is_loaded_in_4bit` (what makes PEFT
pick its bitsandbytes-aware LoRA layers), then injects LoRA on top.

Files (PEFT's format, so `peft.PeftModel.from_pretrained` reads them too):

    adapter_model.safetensors   only the adapter tensors, keys `base_model.model.<module>.lora_A.weight`
    adapter_config.json         the LoraConfig (r, alpha, dropout, target modules, base checkpoint)
    meta.json                   step, losses, base checkpoint, ... (+ trainer_state.* when resumable)

Merging (`merge_lora`) folds B A into the full-precision base weights and swaps each LoRA layer back
for its plain nn.Linear; like PEFT's safe merge it refuses weights that became NaN/inf. A QLoRA
adapter is merged into the full-precision base too (`merge_adapter`), never into the 4-bit weights:
re-quantizing the merged weights would move the logits far more than the adapter did.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from recnarr.model.checkpoint import META_FILE, CheckpointError, read_safetensors, write_folder
from recnarr.model.gpt import GPT
from recnarr.model.quantize import quantize
from recnarr.quiet import quiet_libraries

ADAPTER_WEIGHTS, ADAPTER_CONFIG = "adapter_model.safetensors", "adapter_config.json"
DEFAULT_TARGETS = ("c_attn", "c_proj", "c_fc")
ADAPTER = "default"  # PEFT's adapter name; we train one adapter at a time
PEFT_PREFIX = "base_model.model."  # how PeftModel.save_pretrained prefixes adapter keys


def import_peft():
    """The peft module, imported without the optional-kernel noise (`recnarr.quiet`)."""
    quiet_libraries()
    import peft

    return peft


# ------------------------------------------------------------------ injection
def target_modules(model: nn.Module, targets: Sequence[str] = DEFAULT_TARGETS) -> list[str]:
    """Full names of the linear layers (nn.Linear or bitsandbytes Linear4bit) whose last name component is
    one of `targets`, in model order. Every target must match at least one layer."""
    names, matched = [], set()
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in targets and isinstance(module, nn.Linear):  # bitsandbytes' Linear4bit is one too
            if name == "lm_head":
                continue  # tied to the embedding: adapting it would untie it
            names.append(name)
            matched.add(leaf)
    missing = [t for t in targets if t not in matched]
    if missing:
        raise ValueError(f"LoRA targets {missing} match no linear layer of the model "
                         f"(its linear layers end in {sorted({n.rsplit('.', 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})})")
    return names


def lora_config(r: int = 16, alpha: float = 32, dropout: float = 0.05, targets: Sequence[str] = DEFAULT_TARGETS,
                modules: Sequence[str] | None = None, base: str | None = None) -> Any:
    """A `peft.LoraConfig`; `modules` are the exact module names (from `target_modules`), else `targets`."""
    if r < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout}")
    return import_peft().LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none", init_lora_weights=True,
                              target_modules=list(modules or targets), base_model_name_or_path=base)


def inject(model: GPT, config: Any) -> GPT:
    """Inject the adapter described by a LoraConfig into `model`, in place; only adapter weights stay trainable."""
    if any(isinstance(m, import_peft().tuners.lora.LoraLayer) for m in model.modules()):
        raise ValueError("model already has LoRA layers: merge or reload it before adding another adapter")
    import_peft().inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    return model


def add_lora(model: GPT, r: int = 16, alpha: float = 32, dropout: float = 0.05,
             targets: Sequence[str] = DEFAULT_TARGETS, base: str | None = None) -> GPT:
    """LoRA on every linear layer named in `targets` (see `target_modules`); returns the same model."""
    return inject(model, lora_config(r, alpha, dropout, targets, target_modules(model, targets), base))


def add_qlora(model: GPT, r: int = 16, alpha: float = 32, dropout: float = 0.05,
              targets: Sequence[str] = DEFAULT_TARGETS, base: str | None = None) -> GPT:
    """QLoRA: the frozen base's block linears in 4-bit NF4 (bitsandbytes), LoRA on top (the head stays
    full precision, frozen, so gradients flow through it to the adapters)."""
    quantize(model, "nf4", head=False)
    model.is_loaded_in_4bit = True  # PEFT's signal to use its bitsandbytes LoRA layers
    model.train()
    return add_lora(model, r, alpha, dropout, targets, base)


def lora_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    lora_cls = import_peft().tuners.lora.LoraLayer
    return [(n, m) for n, m in model.named_modules() if isinstance(m, lora_cls)]


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ------------------------------------------------------------------ adapter files
def _adapter_params(model: nn.Module) -> dict[str, nn.Parameter]:
    """The adapter parameters under PEFT's file keys (`base_model.model.<module>.lora_A.weight`).

    Read from named_parameters, not state_dict: bitsandbytes' state_dict hook rewrites a 4-bit base
    layer's weights in place (it undoes its CPU inference layout), which would touch the frozen base."""
    return {PEFT_PREFIX + k.replace(f".{ADAPTER}.", "."): p for k, p in model.named_parameters() if "lora_" in k}


def adapter_state(model: GPT) -> dict[str, torch.Tensor]:
    """The adapter tensors as stored in `adapter_model.safetensors`."""
    out = {k: p.detach().cpu().contiguous() for k, p in _adapter_params(model).items()}
    if not out:
        raise ValueError("model has no LoRA adapter to save")
    return out


def save_adapter(folder: str | os.PathLike, model: GPT, meta: dict[str, Any] | None = None,
                 trainer_state: dict[str, Any] | None = None) -> Path:
    """Write only the adapter (PEFT format) + meta.json (+ trainer state), atomically (temporary folder
    renamed into place). The signature is the trainer's `save_fn`."""
    config = model.peft_config[ADAPTER].to_dict()
    config["target_modules"] = sorted(config["target_modules"])  # a set in memory; sorted for stable files
    config["peft_type"], config["task_type"] = "LORA", None
    return write_folder(folder, {ADAPTER_WEIGHTS: adapter_state(model)},
                        {ADAPTER_CONFIG: json.loads(json.dumps(config, default=str)), META_FILE: meta or {}},
                        trainer_state)


def read_adapter_config(folder: str | os.PathLike) -> Any:
    """The `peft.LoraConfig` stored in `folder/adapter_config.json`."""
    path = Path(folder) / ADAPTER_CONFIG
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found (not a LoRA adapter folder)")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from e
    if raw.get("peft_type") != "LORA":
        raise CheckpointError(f"{path}: peft_type {raw.get('peft_type')!r}, expected 'LORA'")
    peft = import_peft()
    known = set(peft.LoraConfig.__dataclass_fields__)
    return peft.LoraConfig(**{k: v for k, v in raw.items() if k in known and k not in ("peft_type", "task_type")})


def load_adapter_weights(folder: str | os.PathLike, model: GPT) -> None:
    """Copy `folder/adapter_model.safetensors` into the model's (already injected) adapter, exactly: every
    adapter tensor of the model must be in the file with its shape, and nothing else. The trainer's `load_fn`."""
    path = Path(folder) / ADAPTER_WEIGHTS
    stored = read_safetensors(path)
    ours = _adapter_params(model)
    missing, unexpected = sorted(set(ours) - set(stored)), sorted(set(stored) - set(ours))
    if missing or unexpected:
        raise CheckpointError(f"{path} does not fit the model's adapter: missing {missing[:4]}, "
                              f"unexpected {unexpected[:4]} (different targets or a different model?)")
    with torch.no_grad():
        for key, param in ours.items():
            if param.shape != stored[key].shape:
                raise CheckpointError(f"{path}: {key} has shape {tuple(stored[key].shape)}, the model's adapter "
                                      f"{tuple(param.shape)} (different rank?)")
            param.copy_(stored[key])


def load_adapter(model: GPT, folder: str | os.PathLike, qlora: bool = False) -> GPT:
    """Inject the adapter stored in `folder` into a base model (quantized to NF4 first if `qlora`) and load it."""
    config = read_adapter_config(folder)
    if qlora:
        quantize(model, "nf4", head=False)
        model.is_loaded_in_4bit = True
    inject(model, config)
    load_adapter_weights(folder, model)
    return model


# ------------------------------------------------------------------ merge
def merge_lora(model: GPT) -> GPT:
    """Fold every LoRA layer into its full-precision base weight (PEFT's safe merge: refuses NaN/inf) and put
    the plain nn.Linear back; the model is an ordinary GPT again (all parameters trainable, as loaded)."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError("model has no LoRA layers to merge")
    for name, layer in layers:
        if type(layer.get_base_layer()) is not nn.Linear:  # bitsandbytes' Linear4bit subclasses nn.Linear
            raise ValueError(f"{name}: base layer is {type(layer.get_base_layer()).__name__}, not a full-precision "
                             "nn.Linear; merge the adapter into the full-precision base (merge_adapter)")
    with torch.no_grad():
        for name, layer in layers:
            layer.merge(safe_merge=True)  # raises ValueError naming the adapter if the merged weight is not finite
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, layer.get_base_layer())
    for attr in ("peft_config", "is_loaded_in_4bit", "quantization"):
        if hasattr(model, attr):
            delattr(model, attr)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def merge_adapter(base: GPT, folder: str | os.PathLike) -> GPT:
    """A LoRA or QLoRA adapter folder merged into a full-precision base model: a plain GPT."""
    return merge_lora(load_adapter(base, folder, qlora=False))
