"""Which model serves, found in one place.

Search order: an explicit checkpoint folder; `<run>/serving/<mode>/` (already quantized by
`recnarr quantize`); `<run>/serving/merged/` (quantized on load); the shipped reference model under
`models/`. A quantized folder (it holds `quantization.json`) loads as it is; a full-precision one is
quantized on load by the one switch in `model.quantize`.

With `generation.backend=llamacpp` the model is a GGUF file instead: an explicit `.gguf` path, else
`<run>/export/gguf/` (`recnarr export --format gguf`), else the shipped model's GGUF; q8_0 preferred.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recnarr.config import RunConfig
from recnarr.layout import REPO_ROOT, portable
from recnarr.model.checkpoint import load_model, read_meta
from recnarr.model.gpt import GPT
from recnarr.model.quantize import QUANT_FILE, load_quantized, quantize, read_quantization

SHIPPED = REPO_ROOT / "models" / "recnarr-cpu-small"


def candidates(cfg: RunConfig, mode: str) -> list[Path]:
    return [cfg.layout.serving(mode), cfg.layout.merged, SHIPPED]


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


GGUF_PREFERENCE = ("q8_0", "q4_k_m", "q4_0", "f16", "f32")


def find_gguf(cfg: RunConfig, checkpoint: str | Path | None) -> Path:
    if checkpoint is not None:
        path = Path(checkpoint)
        if path.suffix != ".gguf" or not path.is_file():
            raise FileNotFoundError(f"{path} is not a .gguf file (the llamacpp backend runs GGUF files)")
        return path
    folders = [cfg.layout.export("gguf"), SHIPPED]
    for folder in folders:
        files = sorted(folder.glob("*.gguf"), key=lambda p: next(
            (i for i, q in enumerate(GGUF_PREFERENCE) if p.stem.endswith(q)), len(GGUF_PREFERENCE)))
        if files:
            return files[0]
    raise FileNotFoundError(f"no GGUF model in {', '.join(map(str, folders))}: "
                            f"run `recnarr export --format gguf --quant q8_0`")


def describe_serving_model(cfg: RunConfig, checkpoint: str | Path | None = None,
                           mode: str = "int8") -> tuple[Path, dict[str, Any]]:
    """Which model would serve, and its description (path, mode, training metadata), from its files
    alone: no weights are loaded (a batch driver records it without holding a model)."""
    if cfg.generation.backend == "llamacpp":
        path = find_gguf(cfg, checkpoint)
        return path, {"path": portable(path), "quantization": f"gguf {path.stem.rsplit('-', 1)[-1]}",
                      "backend": "llamacpp"}
    if cfg.generation.backend != "torch":
        raise ValueError(f"generation.backend must be torch or llamacpp, got {cfg.generation.backend!r}")
    path = find_checkpoint(cfg, checkpoint, mode)
    loaded_mode = read_quantization(path)["mode"] if (path / QUANT_FILE).exists() else mode
    meta = read_meta(path) if (path / "meta.json").exists() else {}
    return path, {"path": portable(path), "quantization": loaded_mode, "backend": "torch",
                  **{k: meta[k] for k in ("step", "tokens_seen", "val_loss", "best_val_loss") if k in meta}}


def load_serving_model(cfg: RunConfig, checkpoint: str | Path | None = None,
                       mode: str = "int8") -> tuple[GPT | Any, dict[str, Any]]:
    """The model to serve and its description (`describe_serving_model`). With the llamacpp backend, a
    `LlamaCppModel` for `Engine` (mode is then the GGUF file's own weight type)."""
    path, info = describe_serving_model(cfg, checkpoint, mode)
    if cfg.generation.backend == "llamacpp":
        from recnarr.inference.llamacpp import LlamaCppModel

        model = LlamaCppModel(path)
        return model, {**info, "quantization": f"gguf {model.file_type}"}
    if (path / QUANT_FILE).exists():
        model = load_quantized(path)
    else:
        model = load_model(path)
        if mode != "none":
            model = quantize(model, mode, group_size=cfg.quantize.group_size)
    return model.eval(), info
