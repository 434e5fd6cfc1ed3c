"""`recnarr finetune` / `merge` / `--compare` on a tiny model and a handful of real-format narratives."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from recnarr.config import RunConfig, TrainConfig
from recnarr.data.tokenizer import get_tokenizer
from recnarr.evaluation.generation import grounding_pass_rate
from recnarr.model import lora
from recnarr.model.checkpoint import load_model, load_trainer_state
from recnarr.stages.finetune import finetune, merge
from recnarr.training.finetune import (
    build_model,
    compare_methods,
    merged_model,
    parse_variant,
)

from .narrative_fixtures import MODEL, make_examples, write_run

TRAIN = TrainConfig(max_steps=4, batch_size=2, grad_accum=1, lr=3e-3, min_lr=3e-4, warmup_steps=1, dtype="fp32",
                    device="cpu", eval_interval=2, eval_iters=2, log_interval=1, ckpt_interval=2, progress=False,
                    tracking=False)


@pytest.fixture
def cfg(tmp_path, shared_cache) -> RunConfig:
    write_run(tmp_path)
    cfg = RunConfig(run_dir=str(tmp_path), model=MODEL)
    cfg.finetune = replace(cfg.finetune, lora_r=4, lora_alpha=8, lora_dropout=0.0, train=TRAIN, full_lr=1e-3,
                           eval_examples=0)
    return cfg


def test_lora_finetune_writes_adapters_and_resumes_exactly(cfg):
    straight = finetune(cfg, method="lora", out=str(cfg.layout.finetune_root / "straight"))
    folder = cfg.layout.finetune_root / "straight"
    assert {p.name for p in (folder / "best").iterdir()} == {"adapter_model.safetensors", "adapter_config.json",
                                                               "meta.json"}
    assert (folder / "last" / "trainer_state.json").is_file() and (folder / "config.yaml").is_file()
    meta = json.loads((folder / "last" / "meta.json").read_text())
    assert meta["method"] == "lora" and meta["base"].endswith("pretrain/best") and meta["step"] == 4

    first = finetune(cfg, method="lora", callbacks=[lambda t, m: t.request_stop() if t.step == 2 else None])
    assert first.stopped == "request" and first.step == 2
    resumed = finetune(cfg, method="lora", resume=True)
    assert first.losses + resumed.losses == pytest.approx(straight.losses, abs=1e-6)
    a = lora.adapter_state(lora.load_adapter(load_model(meta["base"]), folder / "last"))
    b = lora.adapter_state(lora.load_adapter(load_model(meta["base"]), cfg.layout.finetune_root / "lora" / "last"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert load_trainer_state(cfg.layout.finetune_root / "lora" / "last")["step"] == 4


def test_merge_matches_the_unmerged_adapter(cfg):
    finetune(cfg, method="lora")
    path = merge(cfg, method="lora")
    assert path == cfg.layout.serving_root / "merged" and not (path / "adapter_config.json").exists()
    merged = load_model(path).eval()
    unmerged = lora.load_adapter(load_model(cfg.layout.pretrain / "best"),
                                 cfg.layout.finetune_root / "lora" / "best").eval()
    x = torch.randint(0, 50257, (2, 40), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(merged(x)[0], unmerged(x)[0], atol=1e-5, rtol=0)


def test_qlora_and_full_and_scratch(cfg):
    pytest.importorskip("bitsandbytes")
    short = replace(cfg, finetune=replace(cfg.finetune, train=replace(TRAIN, max_steps=2)))
    q = finetune(short, method="qlora")
    assert q.step == 2 and (cfg.layout.finetune_root / "qlora" / "last" / "adapter_model.safetensors").is_file()
    model, meta = merged_model(cfg.layout.finetune_root / "qlora" / "last")
    assert not lora.lora_layers(model) and meta["method"] == "qlora"  # merged into the full-precision base
    full = finetune(short, method="full")
    assert full.step == 2 and (cfg.layout.finetune_root / "full" / "last" / "model.safetensors").is_file()
    scratch = finetune(short, method="full", from_scratch=True, out=str(cfg.layout.finetune_root / "scratch"))
    assert scratch.step == 2
    with pytest.raises(ValueError, match="no-pretraining baseline is method=full"):
        build_model(cfg, "lora", None)


def test_a_rerun_continues_and_another_method_is_refused(cfg):
    short = replace(cfg, finetune=replace(cfg.finetune, train=replace(TRAIN, max_steps=1)))
    out = str(cfg.layout.finetune_root / "x")
    finetune(short, method="lora", out=out)
    longer = replace(cfg, finetune=replace(cfg.finetune, train=replace(TRAIN, max_steps=2)))
    assert finetune(longer, method="lora", out=out).step == 2  # the same command continues (resume is the default)
    with pytest.raises(ValueError, match="method: 'lora' -> 'full'.*--fresh"):
        finetune(short, method="full", out=out)
    assert finetune(short, method="full", fresh=True, out=out).step == 1  # --fresh starts over


def test_variants_parse():
    assert parse_variant("lora-r32") == ("lora", 32) and parse_variant("full") == ("full", None)
    with pytest.raises(ValueError, match="unknown comparison variant"):
        parse_variant("adapter-r8")


def test_compare_writes_the_table(cfg):
    short = replace(cfg, finetune=replace(cfg.finetune, train=replace(TRAIN, max_steps=2)))
    result = compare_methods(short, variants=["full", "lora-r4", "lora-r8"], fresh_process=False)
    rows = {r["variant"]: r for r in result["rows"]}
    assert set(rows) == {"full", "lora-r4", "lora-r8"}
    assert rows["lora-r8"]["trainable_params"] == 2 * rows["lora-r4"]["trainable_params"]
    assert rows["full"]["trainable_params"] == rows["full"]["total_params"]
    assert all(r["peak_rss_mb"] > 0 and r["s_per_step"] > 0 and r["val_loss"] > 0 for r in rows.values())
    out = cfg.layout.finetune_root / "compare"
    assert "| lora-r8 |" in (out / "table.md").read_text() and (out / "results.json").is_file()


def test_grounding_pass_rate_counts_verified_narratives(shared_cache):
    torch.manual_seed(0)
    from recnarr.model.gpt import GPT

    g = grounding_pass_rate(GPT(MODEL), make_examples(3), get_tokenizer(shared_cache), n=2, max_new_tokens=16)
    assert g["tried"] == 2 and 0 <= g["passed"] <= 2 and g["mean_new_tokens"] > 0
