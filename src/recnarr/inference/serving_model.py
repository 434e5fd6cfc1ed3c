"""Which model serves, found in one place.

Search order: an explicit checkpoint folder; `<run>/serving/<mode>/` (already quantized by
`recnarr quantize`); `<run>/serving/merged/` (quantized on load); the shipped reference model under
`models/`. A quantized folder (it holds `quantization.json`) loads as it is; a full-precision one is
quantized on load by the one switch in `model.quantize`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recnarr.config import RunConfig
from recnarr.model.checkpoint import load_model, read_meta
from recnarr.model.gpt import GPT
from recnarr.model.quantize import QUANT_FILE, load_quantized, quantize, read_quantization

REPO_ROOT = Path(__file__).resolve().parents[3]
SHIPPED = REPO_ROOT / "models" / "recnarr-cpu-small"


def candidates(cfg: RunConfig, mode: str) -> list[Path]:
    serving = cfg.stage_dir("serving")
    return [serving / mode, serving / "merged", SHIPPED]


def find_checkpoint(cfg: RunConfig, checkpoint: str | Path | None, mode: str) -> Path:
    if checkpoint is not None:
        path = Path(checkpoint)
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} is not a checkpoint folder (no config.json)")
        return path
    for path in candidates(cfg, mode):
        if (path / "config.json").exists():
            return path
    tried = ", ".join(str(p) for p in candidates(cfg, mode))
    raise FileNotFoundError(f"no serving model found (tried {tried}); run `make demo` or `recnarr pipeline`")


def load_serving_model(cfg: RunConfig, checkpoint: str | Path | None = None,
                       mode: str = "int8") -> tuple[GPT, dict[str, Any]]:
    """The model to serve and a description of it (path, mode, training metadata)."""
    path = find_checkpoint(cfg, checkpoint, mode)
    if (path / QUANT_FILE).exists():
        model = load_quantized(path)
        loaded_mode = read_quantization(path)["mode"]
    else:
        model = load_model(path)
        if mode != "none":
            model = quantize(model, mode)
        loaded_mode = mode
    meta = read_meta(path) if (path / "meta.json").exists() else {}
    info = {"path": str(path), "quantization": loaded_mode,
            **{k: meta[k] for k in ("step", "tokens_seen", "val_loss", "best_val_loss") if k in meta}}
    return model.eval(), info
