"""The one quantization switch: `quantize(model, mode)` for `none | bf16 | int8 | int4 | nf4`.

Every mode is resolved here and nowhere else; the rest of the code sees a `GPT` whose modules happen
to be quantized, so the inference engine, the generator and the benchmarks work with any mode.

- none: fp32, untouched.
- bf16: every tensor in bfloat16 (half the size, and faster decoding than fp32, which is memory-bound).
- int8: every matmul weight, the tied embedding/lm_head included, as int8 with one fp32 scale per
  output row (symmetric); activations are quantized per call (dynamic int8, fbgemm kernels: the
  fastest CPU mode measured here). This is what `torch.ao.quantization.quantize_dynamic` builds, but
  through the underlying ops, so the deprecated `torch.ao` Python API is not involved.
- int4: 4-bit weights in groups of `group_size` along the input dimension, asymmetric (one bf16 scale
  and zero per group), computed by torch's CPU int4 kernel (`_weight_int4pack_mm_for_cpu`, the
  "tinygemm" layout) with bf16 activations; the rest of the model stays fp32.
- nf4: bitsandbytes 4-bit NormalFloat (QLoRA, Dettmers et al. 2023) for the blocks' linears, and the
  tied head as int8. Saves memory; slow on CPU (bitsandbytes targets GPUs). `head=False` keeps the
  head in full precision: what QLoRA training needs, since gradients must flow through it.

The lm_head (V x C, 50257 x 512 on slm-60m) is about half of the decoding FLOPs and bytes, so the
integer modes quantize it too. The embedding is tied to it: `Int8Embedding` / `Int4Embedding` look
rows up in the head's own quantized matrix and dequantize only those rows, so the matrix is stored
(on disk and in memory) once.

A quantized checkpoint is a folder like any checkpoint (`config.json`, `meta.json`) plus
`quantization.json` (mode and parameters); `model.safetensors` holds the quantized tensors (int8 /
packed uint8 weights and their scales), the tied head once under `transformer.wte.*`. No pickles.
`load_quantized` rebuilds the model without materialising the fp32 weights first.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recnarr import choices
from recnarr.choices import QUANT_MODES, QuantMode
from recnarr.model.checkpoint import (
    CONFIG_FILE,
    META_FILE,
    MODEL_FILE,
    CheckpointError,
    model_state,
    read_config,
    read_safetensors,
    write_folder,
)
from recnarr.model.gpt import GPT
from recnarr.quiet import quiet_libraries

MODES = QUANT_MODES  # every mode, in the order the quantize table lists them
QUANT_FILE = "quantization.json"
FORMAT_VERSION = 1
INT4_N_MULTIPLE = 16  # the CPU int4 kernel wants the output dimension in multiples of 16 (lm_head is padded)


def check_mode(mode: str) -> str:
    return choices.check(QuantMode, mode, "quantization mode")


# ------------------------------------------------------------------ int8: per-row weights, dynamic activations
def quantize_rows_int8(w: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric per-row int8: w ~= q * scale[:, None], q in [-127, 127]. Returns (q int8, scale fp32)."""
    w = w.detach().float()
    scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)  # (out,)
    q = torch.clamp(torch.round(w / scale[:, None]), -127, 127).to(torch.int8)
    return q, scale


class Int8Linear(nn.Module):
    """y = x W^T + b with W stored as int8 rows times fp32 scales (buffers `qweight`, `scale`, `bias`).

    Activations are quantized on the fly, and how depends on what the rows are:
    - a sequence's positions (a prefill, x (1, T, C)): fbgemm's dynamic int8 linear, one scale per call
      over a 7-bit range (`reduce_range`, which keeps fbgemm's AVX2 multiply-add from saturating);
    - one token of each of n sequences (a decode step, x (n, 1, C)): a sequence's result must not depend
      on the sequences decoded beside it (a batch row equals the same request alone), so each row gets
      its own scale. Narrow layers (the blocks, a head cut to the tokens a grammar allows) quantize
      each row to 8 bits and sum int8 x int8 in int32 (`torch._int_mm`): exact integer sums, whatever
      the batch. A full-vocabulary head (where `_int_mm` is 2.5x slower than fbgemm) runs fbgemm once
      per row, which for one row is the same call as alone.
    The packed weight and the transposed copy for `_int_mm` are derived from `qweight` on load and not
    saved.
    """

    WIDE = 8192  # output features beyond which a decode step runs fbgemm row by row

    def __init__(self, qweight: Tensor, scale: Tensor, bias: Tensor | None):
        super().__init__()
        self.out_features, self.in_features = qweight.shape
        self.register_buffer("qweight", qweight.contiguous())  # (out, in) int8
        self.register_buffer("scale", scale.float().contiguous())  # (out,)
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous())
        self.repack()

    @classmethod
    def from_float(cls, linear: nn.Linear) -> Int8Linear:
        q, s = quantize_rows_int8(linear.weight)
        return cls(q, s, linear.bias)

    def rows(self, ids: Tensor) -> Int8Linear:
        """The same layer over output rows `ids` only (a head cut to the tokens a grammar can allow)."""
        return Int8Linear(self.qweight[ids], self.scale[ids], None if self.bias is None else self.bias[ids])

    def repack(self) -> None:
        with warnings.catch_warnings():
            # torch >= 2.10 marks quantized tensor creation deprecated; this is the one place that uses it
            # (torch is pinned; if the fbgemm ops ever go, int8 moves to torch._weight_int8pack_mm here)
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
            qt = torch._make_per_channel_quantized_tensor(
                self.qweight, self.scale.double(), torch.zeros_like(self.scale, dtype=torch.long), 0)
        self._packed = torch.ops.quantized.linear_prepack(qt, self.bias)
        self._wide = self.out_features > self.WIDE
        self._qt = None if self._wide else self.qweight.t().contiguous()  # (in, out) int8 for `_int_mm`

    def dequantized(self) -> Tensor:
        return self.qweight.float() * self.scale[:, None]

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype != torch.float32:
            x = x.float()
        if x.dim() == 3 and x.size(1) == 1 and x.size(0) > 1 and self._wide:
            return torch.cat([torch.ops.quantized.linear_dynamic(r, self._packed, True) for r in x.split(1)])
        if x.dim() == 3 and x.size(1) == 1 and not self._wide:
            return self._per_row(x)
        return torch.ops.quantized.linear_dynamic(x, self._packed, True)

    def _per_row(self, x: Tensor) -> Tensor:
        """(n, 1, C) -> (n, 1, out): each row quantized with its own symmetric 8-bit scale, summed in int32.
        (Few ops on purpose: at one row each costs about what the matmul does.)"""
        rows = x.view(x.size(0), self.in_features)
        sx = rows.abs().amax(dim=1, keepdim=True).div_(127.0).clamp_(min=1e-12)
        q = rows.div(sx).round_()  # in [-127, 127]: the row's largest value maps to 127
        y = torch._int_mm(q.to(torch.int8), self._qt).float().mul_(sx).mul_(self.scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y.view(x.size(0), 1, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-row"


class Int8Embedding(nn.Module):
    """Token embedding tied to an `Int8Linear` head: the same int8 matrix, rows dequantized on lookup."""

    def __init__(self, head: Int8Linear):
        super().__init__()
        self.register_buffer("qweight", head.qweight)  # the same tensors: one copy in memory
        self.register_buffer("scale", head.scale)

    def forward(self, idx: Tensor) -> Tensor:
        return F.embedding(idx, self.qweight).float() * self.scale[idx].unsqueeze(-1)  # (..., C)


# ------------------------------------------------------------------ int4: grouped asymmetric, tinygemm kernel
def quantize_groups_int4(w: Tensor, group_size: int) -> tuple[Tensor, Tensor]:
    """Asymmetric 4-bit per group of `group_size` inputs, in the convention of torch's int4 kernels:
    w ~= (q - 8) * scale + zero, q in [0, 15]. Scales and zeros are rounded to bf16 *before* q is chosen,
    so q is optimal for the parameters actually stored. Returns (q uint8 (N, K), scales_zeros bf16 (N, K/g, 2))."""
    w = w.detach().float()
    N, K = w.shape
    if K % group_size:
        raise ValueError(f"int4: input dimension {K} is not a multiple of group_size {group_size}")
    g = w.reshape(N, K // group_size, group_size)
    lo, hi = g.amin(-1), g.amax(-1)
    scale = ((hi - lo) / 15.0).clamp(min=1e-8).to(torch.bfloat16)
    zero = (lo + 8 * scale.float()).to(torch.bfloat16)
    s, z = scale.float()[..., None], zero.float()[..., None]
    q = torch.clamp(torch.round((g - z) / s + 8), 0, 15).to(torch.uint8).reshape(N, K)
    return q, torch.stack([scale, zero], dim=-1)


def pack_nibbles(q: Tensor) -> Tensor:
    """(N, K) values 0..15 -> (N, K/2) uint8, column 2j in the low nibble, 2j+1 in the high one."""
    return (q[:, 0::2] | (q[:, 1::2] << 4)).contiguous()


def unpack_nibbles(packed: Tensor) -> Tensor:
    """Inverse of `pack_nibbles`: (..., K/2) uint8 -> (..., K) uint8."""
    return torch.stack([packed & 0xF, packed >> 4], dim=-1).flatten(-2)


def dequantize_int4(packed: Tensor, scales_zeros: Tensor, group_size: int) -> Tensor:
    """(..., K/2) packed rows and their (..., K/g, 2) scales/zeros -> fp32 (..., K)."""
    q = unpack_nibbles(packed).float()
    q = q.reshape(*q.shape[:-1], -1, group_size)  # (..., K/g, g)
    s, z = scales_zeros[..., 0:1].float(), scales_zeros[..., 1:2].float()
    return ((q - 8) * s + z).flatten(-2)


class Int4Linear(nn.Module):
    """y = x W^T + b with W in 4-bit groups (buffers `qweight` (N, K/2) uint8, `scales_zeros` (N, K/g, 2) bf16).

    The kernel's packed weight and its (K/g, N, 2) scale layout are derived copies (rebuilt on load, not
    saved); the output dimension is padded to a multiple of 16 for the kernel and cut back after.
    """

    def __init__(self, qweight: Tensor, scales_zeros: Tensor, bias: Tensor | None, group_size: int):
        super().__init__()
        self.out_features, self.in_features = qweight.shape[0], qweight.shape[1] * 2
        self.group_size = group_size
        self.register_buffer("qweight", qweight.contiguous())
        self.register_buffer("scales_zeros", scales_zeros.to(torch.bfloat16).contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous())
        self.repack()

    @classmethod
    def from_float(cls, linear: nn.Linear, group_size: int) -> Int4Linear:
        q, sz = quantize_groups_int4(linear.weight, group_size)
        return cls(pack_nibbles(q), sz, linear.bias, group_size)

    def repack(self) -> None:
        N, pad = self.out_features, (-self.out_features) % INT4_N_MULTIPLE
        q = unpack_nibbles(self.qweight).to(torch.int32)  # (N, K)
        sz = self.scales_zeros
        if pad:
            q = torch.cat([q, torch.full((pad, q.size(1)), 8, dtype=torch.int32)])
            sz = torch.cat([sz, torch.zeros(pad, *sz.shape[1:], dtype=sz.dtype)])
        self._packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        self._sz = sz.transpose(0, 1).contiguous()  # (K/g, N + pad, 2), the kernel's layout
        self._n = N

    def dequantized(self) -> Tensor:
        return dequantize_int4(self.qweight, self.scales_zeros, self.group_size)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(
            x.reshape(-1, shape[-1]).to(torch.bfloat16), self._packed, self.group_size, self._sz)
        if y.size(-1) != self._n:
            y = y[:, : self._n]
        y = y.float()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self._n)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int4 group={self.group_size}"


class Int4Embedding(nn.Module):
    """Token embedding tied to an `Int4Linear` head: rows unpacked and dequantized on lookup."""

    def __init__(self, head: Int4Linear):
        super().__init__()
        self.group_size = head.group_size
        self.register_buffer("qweight", head.qweight)
        self.register_buffer("scales_zeros", head.scales_zeros)

    def forward(self, idx: Tensor) -> Tensor:
        return dequantize_int4(self.qweight[idx], self.scales_zeros[idx], self.group_size)


# ------------------------------------------------------------------ nf4: bitsandbytes
def _bnb():
    # bitsandbytes tries to fetch an optional CPU kernel from the Hugging Face hub at import and logs a
    # warning when it can't (always, offline); its built-in CPU path is what runs either way
    quiet_libraries()
    import bitsandbytes as bnb

    return bnb


def nf4_linear(linear: nn.Linear, compute_dtype: torch.dtype = torch.float32) -> nn.Module:
    """A frozen `bnb.nn.Linear4bit` (NF4, double-quantized absmax) holding `linear`'s weights."""
    bnb = _bnb()
    device = linear.weight.device
    q = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                          compute_dtype=compute_dtype, compress_statistics=True, quant_type="nf4", device="meta")
    q.weight = bnb.nn.Params4bit(linear.weight.detach().float().cpu(), requires_grad=False, quant_type="nf4",
                                 compress_statistics=True, module=q)
    if linear.bias is not None:
        q.bias = nn.Parameter(linear.bias.detach().float().cpu(), requires_grad=False)
    return q.to(device)  # the move quantizes (bitsandbytes quantizes on .to(device))


def _nf4_from_state(sd: dict[str, Tensor], compute_dtype: torch.dtype = torch.float32) -> nn.Module:
    bnb = _bnb()
    stats = {k.removeprefix("weight."): v for k, v in sd.items() if k.startswith("weight.")}
    qs = bnb.functional.QuantState.from_dict(stats, device=torch.device("cpu"))
    out_features, in_features = qs.shape
    q = bnb.nn.Linear4bit(in_features, out_features, bias="bias" in sd, compute_dtype=compute_dtype,
                          compress_statistics=True, quant_type="nf4", device="meta")
    q.weight = bnb.nn.Params4bit.from_prequantized(sd["weight"], stats, requires_grad=False, device="cpu", module=q)
    if "bias" in sd:
        q.bias = nn.Parameter(sd["bias"], requires_grad=False)
    return q


# ------------------------------------------------------------------ the switch
def block_linears(model: GPT) -> list[tuple[str, nn.Linear]]:
    """The transformer blocks' nn.Linear layers (c_attn, c_proj, c_fc, c_proj of every block)."""
    return [(f"transformer.h.{name}", m) for name, m in model.transformer.h.named_modules() if isinstance(m, nn.Linear)]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def quantize(model: GPT, mode: str, *, group_size: int = 32, head: bool = True) -> GPT:
    """Quantize `model` in place per `mode` (see the module docstring) and return it.

    group_size: int4 group along the input dimension (32: +~1% perplexity; 128: smaller, less exact).
    head: also quantize the tied embedding/lm_head (int8 for int8 and nf4, int4 for int4). nf4 with
    head=False is the frozen base of QLoRA.
    """
    check_mode(mode)
    if getattr(model, "quantization", {}).get("mode", "none") != "none":
        raise ValueError(f"model is already quantized ({model.quantization}); start from the full-precision checkpoint")
    if any("lora_" in name for name, _ in model.named_modules()):
        raise ValueError("model has LoRA adapters: merge them first (recnarr.model.lora.merge_lora)")
    if mode == "bf16":
        model.to(torch.bfloat16)
    elif mode != "none":
        model.float()
        if mode in ("int8", "int4") and next(model.parameters()).device.type != "cpu":
            raise ValueError(f"{mode} uses CPU kernels (fbgemm / tinygemm); move the model to the CPU first")
        with torch.no_grad():
            for name, lin in block_linears(model):
                if mode == "int8":
                    new = Int8Linear.from_float(lin)
                elif mode == "int4":
                    new = Int4Linear.from_float(lin, group_size)
                else:
                    new = nf4_linear(lin)
                _set_module(model, name, new)
            if head:
                if model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr():
                    raise ValueError("lm_head is not tied to the token embedding; recnarr's GPT ties them")
                if mode == "int4":
                    model.lm_head = Int4Linear.from_float(model.lm_head, group_size)
                    model.transformer.wte = Int4Embedding(model.lm_head)
                else:
                    model.lm_head = Int8Linear.from_float(model.lm_head)
                    model.transformer.wte = Int8Embedding(model.lm_head)
    model.quantization = {"mode": mode, "group_size": group_size if mode == "int4" else None,
                          "head": bool(head) if mode in ("int8", "int4", "nf4") else None}
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()  # the new modules too (bitsandbytes picks its CPU inference path in eval mode)


def quantized_state(model: GPT) -> dict[str, Tensor]:
    """The tensors a quantized checkpoint stores: the tied head once, derived kernel copies left out."""
    if isinstance(model.lm_head, (Int8Linear, Int4Linear)):
        sd = {k: v for k, v in model.state_dict().items() if not k.startswith("lm_head.")}
        for k in [k for k in sd if k.startswith("transformer.wte.")]:
            del sd[k]
        for k, v in model.lm_head.state_dict().items():
            if k != "bias":
                sd[f"transformer.wte.{k}"] = v
        return {k: v.detach().cpu().contiguous() for k, v in sd.items()}
    return model_state(model)


# ------------------------------------------------------------------ files
def save_quantized(model: GPT, folder: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write a quantized checkpoint folder (atomically: a temporary folder renamed into place).

    nf4: save right after `quantize`. On a CPU, bitsandbytes re-lays a 4-bit layer out for inference on
    its first eval-mode forward and undoes that (not bit-exactly) when asked for its state."""
    q = getattr(model, "quantization", {"mode": "none", "group_size": None, "head": None})
    return write_folder(folder, {MODEL_FILE: quantized_state(model)},
                        {CONFIG_FILE: asdict(model.config), QUANT_FILE: {**q, "format_version": FORMAT_VERSION},
                         META_FILE: meta or {}}, weights_meta={"quantization": q["mode"]})


def read_quantization(folder: str | os.PathLike) -> dict[str, Any]:
    """`quantization.json` of a folder; a plain checkpoint (no such file) is mode none."""
    path = Path(folder) / QUANT_FILE
    if not path.is_file():
        return {"mode": "none", "group_size": None, "head": None}
    try:
        q = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from e
    if q.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {q['format_version']} is newer than this code ({FORMAT_VERSION})")
    check_mode(q.get("mode", ""))
    return q


def _prefixed(sd: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) + 1:]: sd.pop(k) for k in [k for k in sd if k.startswith(prefix + ".")]}


def load_quantized(folder: str | os.PathLike) -> GPT:
    """Load a checkpoint folder written by `save_quantized` (or a plain checkpoint: mode none), in eval mode.

    The model is built on the meta device and the stored tensors are assigned into it, so no fp32 copy
    of the weights is ever made; every stored tensor must be used and every parameter filled.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no checkpoint folder here")
    cfg, q = read_config(folder), read_quantization(folder)
    path = folder / MODEL_FILE
    sd = read_safetensors(path)
    with torch.device("meta"):
        model = GPT(cfg)
    mode = q["mode"]
    builders: dict[str, Callable[[dict[str, Tensor]], nn.Module]] = {
        "int8": lambda s: Int8Linear(s["qweight"], s["scale"], s.get("bias")),
        "int4": lambda s: Int4Linear(s["qweight"], s["scales_zeros"], s.get("bias"), q["group_size"]),
        "nf4": _nf4_from_state,
    }
    try:
        if mode in builders:
            for name, _ in block_linears(model):
                _set_module(model, name, builders[mode](_prefixed(sd, name)))
            if q.get("head"):
                head_sd = _prefixed(sd, "transformer.wte")
                if mode == "int4":
                    model.lm_head = Int4Linear(head_sd["qweight"], head_sd["scales_zeros"], None, q["group_size"])
                    model.transformer.wte = Int4Embedding(model.lm_head)
                else:
                    model.lm_head = Int8Linear(head_sd["qweight"], head_sd["scale"], None)
                    model.transformer.wte = Int8Embedding(model.lm_head)
        if "transformer.wte.weight" in sd and isinstance(model.lm_head, nn.Linear):
            sd["lm_head.weight"] = sd["transformer.wte.weight"]
        unexpected = model.load_state_dict(sd, strict=False, assign=True).unexpected_keys
        if isinstance(model.lm_head, nn.Linear):
            model.lm_head.weight = model.transformer.wte.weight  # assign=True replaced the tied parameter
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path} does not fit a {mode} model of {folder / CONFIG_FILE}: {e}") from e
    missing = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if unexpected or missing:
        raise CheckpointError(f"{path} does not fit a {mode} model of {folder / CONFIG_FILE}: "
                              f"unexpected {sorted(unexpected)[:5]}, missing {missing[:5]}")
    model.quantization = {k: q.get(k) for k in ("mode", "group_size", "head")}
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def dequantize(model: GPT) -> GPT:
    """Back to a plain fp32 GPT (nn.Linear layers, tied head), in place: for exports from a serving folder.

    The values are the quantized ones (no precision comes back); exporting from the full-precision
    checkpoint is better where it exists.
    """
    mode = getattr(model, "quantization", {}).get("mode", "none")
    if mode == "nf4":
        raise ValueError("nf4 models cannot be dequantized here: export from the full-precision checkpoint")
    if mode == "bf16":
        model.float()
    with torch.no_grad():
        for name, module in [*block_linears_any(model), ("lm_head", model.lm_head)]:
            if isinstance(module, (Int8Linear, Int4Linear)):
                lin = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
                lin.weight.copy_(module.dequantized())
                if module.bias is not None:
                    lin.bias.copy_(module.bias)
                _set_module(model, name, lin)
        if not isinstance(model.transformer.wte, nn.Embedding):
            model.transformer.wte = nn.Embedding(model.config.vocab_size, model.config.n_embd)
            model.transformer.wte.weight = model.lm_head.weight  # tied again
    model.quantization = {"mode": "none", "group_size": None, "head": None}
    return model.eval()


def block_linears_any(model: GPT) -> list[tuple[str, nn.Module]]:
    """The blocks' matmul layers, quantized or not."""
    kinds = (nn.Linear, Int8Linear, Int4Linear)
    return [(f"transformer.h.{name}", m) for name, m in model.transformer.h.named_modules() if isinstance(m, kinds)]


def load_any(folder: str | os.PathLike) -> GPT:
    """A plain fp32 GPT from any checkpoint folder: full precision as it is, a quantized one dequantized."""
    return dequantize(load_quantized(folder))


def size_on_disk(folder: str | os.PathLike) -> int:
    """Bytes of every file in a checkpoint folder."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
