"""The pipeline's `recnarr gguf` stage: the merged model as the GGUF file `quantize.gguf` names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recnarr.model.gguf_export import export_gguf


def gguf_stage(cfg: Any, **_: Any) -> Path:
    """`recnarr gguf`: <run>/serving/merged -> <run>/export/gguf/model-<quantize.gguf>.gguf."""
    src = cfg.layout.merged
    path = export_gguf(src, cfg.layout.export("gguf"), cfg.quantize.gguf)
    print(f"gguf: {src} -> {path} ({path.stat().st_size / 2**20:.1f} MB)")
    return path
