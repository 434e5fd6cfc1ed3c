"""GGUF export: a recnarr GPT as a self-contained llama.cpp model file (architecture `gpt2`).

Our GPT has GPT-2's layout and names, so the tensors map one to one through the `gguf` package's
own GPT-2 name table (the one llama.cpp's `convert_hf_to_gguf.py` uses), and the type rules follow
that script: 1-D tensors, norms, biases and the position table stay f32; 2-D weights take the
requested type. The tied head is written once (as `token_embd`); llama.cpp's GPT-2 loader reuses it
when `output.weight` is absent. The GPT-2 tokenizer (token list + merges) goes into the file.

f32 / f16 / q8_0 are written directly (q8_0 with the gguf package's reference quantizer, as
`convert_hf_to_gguf.py --outtype q8_0` does). q4_0 / q4_k_m go through llama.cpp's own quantizer
(`llama_model_quantize`, from the optional `llama-cpp-python`), exactly what `llama-quantize` does.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recnarr import choices
from recnarr.choices import GgufQuant
from recnarr.model.gpt import GPT

LLAMA_QUANTIZED = {"q4_0": 2, "q4_k_m": 15}  # llama.cpp's LLAMA_FTYPE_MOSTLY_* for llama_model_quantize
CONFIG_KEY = "recnarr.config"  # our GPTConfig + source, as JSON: the file records what made it


class GGUFError(ValueError):
    pass


def check_quant(quant: str) -> str:
    return choices.check(GgufQuant, quant, "GGUF quantization", GGUFError)


def _tensor_type(gguf: Any, gguf_name: str, shape: tuple[int, ...], quant: str) -> Any:
    T = gguf.GGMLQuantizationType
    if len(shape) < 2 or not gguf_name.endswith(".weight") or "norm" in gguf_name or gguf_name.startswith(
            "position_embd"):
        return T.F32
    wanted = {"f32": T.F32, "f16": T.F16, "q8_0": T.Q8_0}[quant]
    block = gguf.GGML_QUANT_SIZES[wanted][0]
    return wanted if shape[-1] % block == 0 else T.F16  # as convert_hf_to_gguf: rows must fill blocks


def _write(model: GPT, path: Path, quant: str, source: str) -> None:
    import gguf

    from recnarr.data.tokenizer import EOT_ID, vocab_and_merges
    from recnarr.model.checkpoint import model_state

    cfg = model.config
    if not cfg.bias:
        raise GGUFError("llama.cpp's gpt2 architecture has biases: a bias=False model cannot be exported")
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPT2, cfg.n_layer)
    writer = gguf.GGUFWriter(str(path), "gpt2")
    writer.add_name(Path(source).name or "recnarr")
    writer.add_context_length(cfg.block_size)
    writer.add_embedding_length(cfg.n_embd)
    writer.add_feed_forward_length(4 * cfg.n_embd)
    writer.add_block_count(cfg.n_layer)
    writer.add_head_count(cfg.n_head)
    writer.add_layer_norm_eps(1e-5)
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant])
    writer.add_string(CONFIG_KEY, json.dumps({"model": vars(cfg), "source": source}))

    tokens, merges = vocab_and_merges()
    if len(tokens) != cfg.vocab_size:
        raise GGUFError(f"model vocab_size {cfg.vocab_size} != GPT-2 tokenizer's {len(tokens)}")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if i == EOT_ID else gguf.TokenType.NORMAL
                            for i in range(len(tokens))])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(EOT_ID)
    writer.add_eos_token_id(EOT_ID)
    writer.add_add_bos_token(False)  # GPT-2 prompts start with text, not <|endoftext|>

    for name, tensor in model_state(model).items():
        if name == "lm_head.weight":
            continue  # tied: llama.cpp falls back to token_embd
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise GGUFError(f"no GGUF name for tensor {name!r}")
        data = tensor.detach().float().contiguous().numpy()
        qtype = _tensor_type(gguf, gguf_name, data.shape, quant)
        if qtype == gguf.GGMLQuantizationType.F16:
            data = data.astype(np.float16)
        elif qtype != gguf.GGMLQuantizationType.F32:
            data = gguf.quants.quantize(data, qtype)
        writer.add_tensor(gguf_name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _llama_quantize(src: Path, dst: Path, quant: str) -> None:
    try:
        import llama_cpp
    except ImportError as e:
        raise GGUFError(f"--quant {quant} uses llama.cpp's quantizer: pip install 'recnarr[llamacpp]' "
                        f"(llama-cpp-python); f32, f16 and q8_0 need only the gguf package") from e
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = LLAMA_QUANTIZED[quant]
    params.nthread = os.cpu_count() or 1
    from llama_cpp._utils import suppress_stdout_stderr  # llama.cpp logs every tensor to stderr

    with suppress_stdout_stderr(disable=False):
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise GGUFError(f"llama_model_quantize({src} -> {dst}, {quant}) failed with code {rc}")


def gguf_filename(quant: str) -> str:
    """The file name `export_gguf` gives a folder's export of weight type `quant`."""
    return f"model-{quant}.gguf"


def export_gguf(ckpt: str | os.PathLike | GPT, path: str | os.PathLike, quant: str = "f32") -> Path:
    """Write `ckpt` (a checkpoint folder, quantized serving folder or a GPT) as one GGUF file.

    `path` is the file, or a folder (then `<folder>/model-<quant>.gguf`). Written atomically.
    """
    from recnarr.model.quantize import load_any

    check_quant(quant)
    source = "<in-memory GPT>" if isinstance(ckpt, GPT) else str(ckpt)
    model = ckpt if isinstance(ckpt, GPT) else load_any(ckpt)
    out = Path(path)
    if out.suffix != ".gguf":
        out = out / gguf_filename(quant)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), tempfile.TemporaryDirectory(dir=out.parent, prefix=".gguf-") as tmp:
        if quant in LLAMA_QUANTIZED:
            f32 = Path(tmp) / "f32.gguf"
            _write(model, f32, "f32", source)
            _llama_quantize(f32, Path(tmp) / "out.gguf", quant)
        else:
            _write(model, Path(tmp) / "out.gguf", quant, source)
        os.replace(Path(tmp) / "out.gguf", out)
    return out


def read_gguf_config(path: str | os.PathLike) -> dict[str, Any]:
    """The recnarr metadata of a GGUF file we wrote (`{"model": GPTConfig fields, "source": ...}`)."""
    import gguf

    path = Path(path)
    if not path.is_file():
        raise GGUFError(f"{path}: no such GGUF file")
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError) as e:
        raise GGUFError(f"{path}: not a readable GGUF file ({e})") from e
    field = reader.get_field(CONFIG_KEY)
    if field is None:
        raise GGUFError(f"{path}: no {CONFIG_KEY} metadata (not written by `recnarr export --format gguf`)")
    return json.loads(field.contents())
