"""`recnarr quantize`: write `<run>/serving/<mode>/` for each mode and measure size, speed and quality
(see recnarr.evaluation.quantization for what is measured).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from recnarr.config import RunConfig
from recnarr.data.examples import load_examples
from recnarr.evaluation.quantization import measure, source_checkpoint, table
from recnarr.model.checkpoint import load_model, read_config
from recnarr.model.quantize import check_mode, load_quantized, quantize, save_quantized, size_on_disk


def quantize_command(cfg: RunConfig, checkpoint: str | None = None, modes: list[str] | None = None,
                     out: str | None = None, **_: Any) -> dict[str, Any]:
    """`recnarr quantize`: see the module docstring. Returns {mode: measurements}."""
    modes = [check_mode(m) for m in (modes or cfg.quantize.modes)]
    src = source_checkpoint(cfg, checkpoint)
    out_dir = Path(out) if out else cfg.layout.serving_root
    evals: dict[str, Any] = {}
    if (cfg.layout.corpus / "val.bin").is_file():
        evals["corpus"] = cfg.layout.corpus / "val.bin"
    if (cfg.layout.narratives / "val.jsonl").is_file():
        from recnarr.data.tokenizer import get_tokenizer

        evals["narratives"] = load_examples(cfg.layout.narratives, "val")
        evals["tokenizer"] = get_tokenizer()
    if not evals.get("corpus") and not evals.get("narratives"):
        print(f"quantize: neither {cfg.layout.corpus / 'val.bin'} nor {cfg.layout.narratives} exists: "
              "no quality columns")
    cfgm = read_config(src)
    print(f"quantize: {src} ({cfgm.n_layer} layers x {cfgm.n_embd}, vocab {cfgm.vocab_size}) -> {out_dir}/<mode>; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows: dict[str, dict[str, Any]] = {}
    for mode in ["none", *[m for m in modes if m != "none"]]:  # fp32 first: the reference
        model = quantize(load_model(src), mode, group_size=cfg.quantize.group_size)
        folder = out_dir / mode
        save_quantized(model, folder, meta={"stage": "quantize", "source": str(src), "mode": mode})
        del model
        t0 = time.perf_counter()
        loaded = load_quantized(folder)
        load_s = time.perf_counter() - t0
        row = {"size_mb": size_on_disk(folder) / 2**20, "load_s": load_s, **measure(loaded, cfg, evals)}
        rows[mode] = row
        if mode not in modes:
            shutil.rmtree(folder)  # measured as the reference only
        print(f"  {mode}: {row['size_mb']:.1f} MB, {row['seconds']:.3f} s for {row['prompt_tokens']}+{row['new_tokens']} "
              f"tokens ({row['tok_s']:.0f} tok/s)" + "".join(
                  f", {k} {row[k]:.3f}" for k in ("corpus_ppl", "narrative_ppl") if k in row), flush=True)
    q = cfg.quantize
    title = (f"Quantization of {src} ({cfgm.n_layer}x{cfgm.n_embd}): {q.bench_prompt_tokens}-token prompt + "
             f"{q.bench_new_tokens} new tokens, greedy, best of {q.bench_repeats}, "
             f"{q.bench_threads or torch.get_num_threads()} threads; torch {torch.__version__}; "
             f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    md = table(rows, title)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "quantization.md").write_text(md)
    (out_dir / "quantization.json").write_text(json.dumps({"source": str(src), "rows": rows}, indent=2, default=str))
    print("\n" + md)
    return rows
