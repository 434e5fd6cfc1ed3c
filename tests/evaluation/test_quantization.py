"""`recnarr quantize`: every requested mode is written as a loadable folder and measured in one table."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from recnarr.config import RunConfig
from recnarr.model.checkpoint import save_checkpoint
from recnarr.model.gpt import GPT, GPTConfig
from recnarr.model.quantize import load_quantized, read_quantization
from recnarr.stages.quantize import quantize_command

MODEL = GPTConfig(block_size=64, vocab_size=1001, n_layer=2, n_head=2, n_embd=64)


@pytest.fixture
def cfg(tmp_path) -> RunConfig:
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "serving" / "merged", GPT(MODEL), meta={"step": 0})
    (tmp_path / "corpus").mkdir()
    np.random.default_rng(0).integers(0, MODEL.vocab_size, 5000).astype(np.uint16).tofile(tmp_path / "corpus" / "val.bin")
    cfg = RunConfig(run_dir=str(tmp_path), model=MODEL)
    cfg.quantize = replace(cfg.quantize, bench_prompt_tokens=24, bench_new_tokens=16, bench_repeats=1, eval_batches=4)
    return cfg


def test_quantize_writes_every_mode_and_the_table(cfg):
    rows = quantize_command(cfg, modes=["bf16", "int8", "int4"])
    assert list(rows) == ["none", "bf16", "int8", "int4"]  # fp32 measured first, as the reference
    serving = cfg.layout.serving_root
    for mode in ("bf16", "int8", "int4"):
        assert read_quantization(serving / mode)["mode"] == mode
        load_quantized(serving / mode)
    assert not (serving / "none").exists()  # the reference was not asked for
    assert rows["int8"]["size_mb"] < 0.35 * rows["none"]["size_mb"]
    for r in rows.values():
        assert r["seconds"] > 0 and r["new_tokens"] == 16 and np.isfinite(r["corpus_ppl"])
    assert abs(rows["int8"]["corpus_ppl"] / rows["none"]["corpus_ppl"] - 1) < 0.02
    md = (serving / "quantization.md").read_text()
    assert "| int4 |" in md and "corpus ppl" in md
    assert json.loads((serving / "quantization.json").read_text())["rows"]["int8"]["tok_s"] > 0


def test_quantize_needs_a_full_precision_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="recnarr merge"):
        quantize_command(RunConfig(run_dir=str(tmp_path)), modes=["int8"])
