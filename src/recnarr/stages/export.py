"""`recnarr export --format hf|gguf` and `recnarr import --format hf`: checkpoints in and out of the
formats other tools read (transformers' GPT-2 folders, llama.cpp's GGUF files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recnarr.layout import portable
from recnarr.model.checkpoint import save_checkpoint
from recnarr.model.gguf_export import export_gguf
from recnarr.model.hf import export_hf, import_hf

EXPORT_FORMATS = ("hf", "gguf")
IMPORT_FORMATS = {"hf": import_hf}


def _default_checkpoint(cfg: Any) -> Path:
    """The fine-tuned model if the run has one, else the pretrained one."""
    tried = cfg.layout.exportable()
    for path in tried:
        if path.is_dir():
            return path
    raise FileNotFoundError(f"no checkpoint at {', '.join(map(str, tried))}: pass --checkpoint PATH")


def export_command(cfg: Any, fmt: str = "hf", checkpoint: str | None = None, out: str | None = None,
                   quant: str = "f32") -> Path:
    """`recnarr export --format hf|gguf [--quant Q] --checkpoint PATH --out PATH`.

    Defaults: <run>/serving/merged (else <run>/pretrain/best, last) -> <run>/export/<format>. Any checkpoint
    folder works, a quantized serving folder too (dequantized first: its values, not the fp32 ones).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    src = Path(checkpoint) if checkpoint else _default_checkpoint(cfg)
    dst = Path(out) if out else cfg.layout.export(fmt)
    if fmt == "gguf":
        path = export_gguf(src, dst, quant)
        print(f"exported {src} -> {path} (gguf {quant}, {path.stat().st_size / 2**20:.1f} MB)")
        return path
    if quant != "f32":
        raise ValueError(f"--quant {quant} applies to --format gguf; the hf export is float32")
    path = export_hf(src, dst)
    print(f"exported {src} -> {path} ({fmt})")
    return path


def import_command(cfg: Any, fmt: str = "hf", src: str | None = None, out: str | None = None) -> Path:
    """`recnarr import --format hf --src PATH --out PATH`: a foreign model -> a recnarr checkpoint folder."""
    if fmt not in IMPORT_FORMATS:
        raise ValueError(f"unknown import format {fmt!r}: expected one of {sorted(IMPORT_FORMATS)}")
    if not src:
        raise ValueError("--src PATH is required: the folder to import")
    dst = Path(out) if out else cfg.layout.imported
    model = IMPORT_FORMATS[fmt](src)
    save_checkpoint(dst, model, meta={"imported_from": portable(src), "format": fmt, "step": 0,
                                      "tokenizer": "gpt2"})
    print(f"imported {src} ({fmt}) -> {dst}")
    return dst
