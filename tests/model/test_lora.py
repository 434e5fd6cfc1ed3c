"""LoRA / QLoRA through PEFT on our GPT: only adapters train, adapter files round-trip exactly, merge is exact."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from recnarr.model import lora
from recnarr.model.checkpoint import CheckpointError, load_model, save_checkpoint
from recnarr.model.gpt import GPT, GPTConfig

# n_embd 64: bitsandbytes' CPU inference path needs rows of at least one 64-value quantization block
CFG = GPTConfig(block_size=32, vocab_size=97, n_layer=2, n_head=2, n_embd=64)


@pytest.fixture
def base() -> GPT:
    torch.manual_seed(0)
    return GPT(CFG).eval()


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, CFG.vocab_size, (4, 16), generator=g), torch.randint(0, CFG.vocab_size, (4, 16), generator=g)


def train_steps(model: GPT, steps: int = 3, lr: float = 1e-2, autocast: bool = False) -> None:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for i in range(steps):
        x, y = batch(i)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            _, loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def test_targets_are_found_by_walking_the_model(base):
    names = lora.target_modules(base)
    assert len(names) == 4 * CFG.n_layer and "lm_head" not in names
    assert lora.target_modules(base, ["c_attn"]) == [f"transformer.h.{i}.attn.c_attn" for i in range(CFG.n_layer)]
    with pytest.raises(ValueError, match="match no linear layer"):
        lora.target_modules(base, ["q_proj"])


def test_fresh_adapter_leaves_logits_unchanged(base):
    x, _ = batch()
    ref = base(x)[0]
    model = lora.add_lora(copy.deepcopy(base), r=4, alpha=8, dropout=0.0)
    assert torch.equal(model(x)[0], ref)  # B starts at zero


def test_only_adapter_weights_train(base):
    model = lora.add_lora(copy.deepcopy(base), r=4, alpha=8, dropout=0.1)
    C = CFG.n_embd
    per_layer = 4 * ((C + 3 * C) + (C + C) + (C + 4 * C) + (4 * C + C))  # r * (in + out) for each target
    assert lora.trainable_parameters(model) == per_layer * CFG.n_layer
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "lora_" not in k}
    adapters = {k: v.clone() for k, v in model.state_dict().items() if "lora_" in k}
    train_steps(model)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in frozen.items())  # bit-identical base
    assert any(not torch.equal(after[k], v) for k, v in adapters.items())


def test_adapter_save_load_exact(base, tmp_path):
    model = lora.add_lora(copy.deepcopy(base), r=4, alpha=8, dropout=0.0)
    train_steps(model)
    lora.save_adapter(tmp_path / "a", model, meta={"step": 3})
    files = {p.name for p in (tmp_path / "a").iterdir()}
    assert files == {"adapter_model.safetensors", "adapter_config.json", "meta.json"}
    stored = load_file(str(tmp_path / "a" / "adapter_model.safetensors"))
    assert stored and all(k.startswith("base_model.model.") and ".lora_" in k for k in stored)  # adapter only
    cfg = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 4 and cfg["lora_alpha"] == 8
    assert lora.read_adapter_config(tmp_path / "a").target_modules == set(lora.target_modules(base))
    peft = pytest.importorskip("peft")
    assert peft.LoraConfig.from_pretrained(str(tmp_path / "a")).r == 4  # PEFT reads our file

    again = lora.load_adapter(copy.deepcopy(base), tmp_path / "a").eval()
    x, _ = batch()
    assert torch.equal(again(x)[0], model(x)[0])
    theirs = {k: v for k, v in again.state_dict().items() if "lora_" in k}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in theirs.items())


def test_adapter_of_another_shape_is_refused(base, tmp_path):
    lora.save_adapter(tmp_path / "r4", lora.add_lora(copy.deepcopy(base), r=4, dropout=0.0))
    model = lora.add_lora(copy.deepcopy(base), r=8, dropout=0.0)
    with pytest.raises(CheckpointError, match="different rank"):
        lora.load_adapter_weights(tmp_path / "r4", model)
    only_attn = lora.add_lora(copy.deepcopy(base), r=4, targets=["c_attn"], dropout=0.0)
    with pytest.raises(CheckpointError, match="unexpected"):
        lora.load_adapter_weights(tmp_path / "r4", only_attn)


def test_merged_equals_unmerged(base, tmp_path):
    model = lora.add_lora(copy.deepcopy(base), r=4, alpha=8, dropout=0.0)
    train_steps(model, steps=5, lr=3e-2)
    x, _ = batch(7)
    unmerged = model(x)[0]
    assert not torch.allclose(unmerged, base(x)[0], atol=1e-3)  # the adapter does something
    lora.save_adapter(tmp_path / "a", model)
    merged = lora.merge_adapter(copy.deepcopy(base), tmp_path / "a").eval()
    assert not lora.lora_layers(merged) and not hasattr(merged, "peft_config")
    assert set(merged.state_dict()) == set(base.state_dict())  # a plain GPT again
    torch.testing.assert_close(merged(x)[0], unmerged, atol=1e-5, rtol=0)
    # and it is an ordinary checkpoint
    save_checkpoint(tmp_path / "merged", merged)
    torch.testing.assert_close(load_model(tmp_path / "merged")(x)[0], unmerged, atol=1e-5, rtol=0)


def test_merge_refuses_nan(base):
    model = lora.add_lora(copy.deepcopy(base), r=4, dropout=0.0)
    with torch.no_grad():
        model.transformer.h[0].attn.c_attn.lora_B["default"].weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        lora.merge_lora(model)


def test_qlora_step_on_cpu_changes_only_adapters(base, tmp_path):
    pytest.importorskip("bitsandbytes")
    model = lora.add_qlora(copy.deepcopy(base), r=4, alpha=8, dropout=0.0)
    layer = model.transformer.h[0].attn.c_attn
    assert type(layer.get_base_layer()).__name__ == "Linear4bit"  # PEFT's bitsandbytes LoRA layer on NF4
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "lora_" not in k}
    adapters = {k: v.clone() for k, v in model.state_dict().items() if "lora_" in k}
    train_steps(model, steps=2, autocast=True)  # bf16 autocast, as the trainer runs it
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in frozen.items())
    assert any(not torch.equal(after[k], v) for k, v in adapters.items())
    # merging into the 4-bit weights is refused; into the full-precision base it works
    with pytest.raises(ValueError, match="full-precision"):
        lora.merge_lora(model)
    lora.save_adapter(tmp_path / "q", model)
    merged = lora.merge_adapter(copy.deepcopy(base), tmp_path / "q").eval()
    x, _ = batch()
    diff = (merged(x)[0] - model(x)[0]).abs().max()
    assert diff < 0.5, f"fp32-merged QLoRA moved the logits by {diff}"  # only the NF4 rounding of the base
