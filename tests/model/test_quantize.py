"""The quantization switch: every mode loads and generates, stays near fp32, round-trips exactly, shrinks."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from recnarr.inference.engine import Engine, SamplingParams
from recnarr.model.checkpoint import CheckpointError, save_checkpoint
from recnarr.model.gpt import GPT, GPTConfig
from recnarr.model.quantize import (
    MODES,
    Int4Linear,
    Int8Embedding,
    Int8Linear,
    dequantize_int4,
    load_quantized,
    pack_nibbles,
    quantize,
    quantize_groups_int4,
    read_quantization,
    save_quantized,
    size_on_disk,
    unpack_nibbles,
)

# vocab not a multiple of 16 (as GPT-2's 50257): the int4 head is padded for its kernel
CFG = GPTConfig(block_size=64, vocab_size=1001, n_layer=2, n_head=2, n_embd=64)
# Stated tolerance per mode: max |logit - fp32 logit| / max |fp32 logit| on the tiny random model
# (measured: bf16 ~0.005, int8 ~0.02, nf4 ~0.08, int4 ~0.10)
TOLERANCE = {"none": 0.0, "bf16": 0.02, "int8": 0.05, "int4": 0.15, "nf4": 0.15}


@pytest.fixture(scope="module")
def base() -> GPT:
    torch.manual_seed(0)
    return GPT(CFG).eval()


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return torch.randint(0, CFG.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))


def logits(model: GPT, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)[0].float()


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_generates_close_to_fp32(mode, base, tokens):
    if mode == "nf4":
        pytest.importorskip("bitsandbytes")
    ref = logits(base, tokens)
    model = quantize(copy.deepcopy(base), mode)
    assert model.quantization["mode"] == mode
    out = logits(model, tokens)
    rel = ((out - ref).abs().max() / ref.abs().max()).item()
    assert rel <= TOLERANCE[mode], f"{mode}: logits off by {rel:.3f} of their range"
    gen = Engine(model).generate(tokens[0, :10].tolist(), SamplingParams(max_new_tokens=8, temperature=0,
                                                                         stop_token_ids=()))
    assert len(gen.tokens) == 8 and all(0 <= t < CFG.vocab_size for t in gen.tokens)


@pytest.mark.parametrize("mode", MODES)
def test_save_load_round_trip_is_exact(mode, base, tokens, tmp_path):
    if mode == "nf4":
        pytest.importorskip("bitsandbytes")
    model = quantize(copy.deepcopy(base), mode)
    # saved before its first forward: bitsandbytes re-lays its weights out for CPU inference on first use
    save_quantized(model, tmp_path / mode, meta={"note": "test"})
    assert read_quantization(tmp_path / mode)["mode"] == mode
    loaded = load_quantized(tmp_path / mode)
    assert torch.equal(logits(loaded, tokens), logits(model, tokens))


def test_size_on_disk_shrinks(base, tmp_path):
    save_checkpoint(tmp_path / "fp32", base)
    fp32 = size_on_disk(tmp_path / "fp32")
    sizes = {}
    for mode in ("bf16", "int8", "int4"):
        save_quantized(quantize(copy.deepcopy(base), mode), tmp_path / mode)
        sizes[mode] = size_on_disk(tmp_path / mode) / fp32
    # int8: 1 byte + a row scale per weight; int4: half a byte + a bf16 (scale, zero) per 32 weights; the
    # small fp32 rest (norms, positions, biases) is a larger share of a tiny model than of a real one
    assert sizes["bf16"] < 0.52 and sizes["int8"] < 0.32 and sizes["int4"] < 0.22, sizes


def test_tied_head_is_stored_and_held_once(base, tmp_path):
    model = quantize(copy.deepcopy(base), "int8")
    assert isinstance(model.lm_head, Int8Linear) and isinstance(model.transformer.wte, Int8Embedding)
    assert model.transformer.wte.qweight.data_ptr() == model.lm_head.qweight.data_ptr()  # one matrix in memory
    save_quantized(model, tmp_path / "q")
    stored = load_file(str(tmp_path / "q" / "model.safetensors"))
    assert "transformer.wte.qweight" in stored and not any(k.startswith("lm_head.") for k in stored)
    assert stored["transformer.wte.qweight"].dtype == torch.int8
    loaded = load_quantized(tmp_path / "q")
    assert loaded.transformer.wte.qweight.data_ptr() == loaded.lm_head.qweight.data_ptr()
    # the embedding lookup is the dequantized row of the head's matrix
    idx = torch.tensor([[0, 5, CFG.vocab_size - 1]])
    rows = model.lm_head.dequantized()[idx[0]]
    torch.testing.assert_close(model.transformer.wte(idx)[0], rows)


def test_int4_packing_and_error_bound():
    w = torch.randn(48, 64) * 0.05
    q, sz = quantize_groups_int4(w, 32)
    assert q.dtype == torch.uint8 and int(q.max()) <= 15 and sz.shape == (48, 2, 2)
    assert torch.equal(unpack_nibbles(pack_nibbles(q)), q)
    deq = dequantize_int4(pack_nibbles(q), sz, 32)
    step = sz[..., 0].float().repeat_interleave(32, dim=1)  # each weight's quantization step
    assert ((deq - w).abs() <= step * 0.5 + 2e-3).all()
    lin = torch.nn.Linear(64, 48)
    with torch.no_grad():
        lin.weight.copy_(w)
    q4 = Int4Linear.from_float(lin, 32)
    x = torch.randn(3, 64)
    torch.testing.assert_close(q4(x), x @ q4.dequantized().T + lin.bias, atol=2e-2, rtol=2e-2)  # bf16 activations


def test_switch_refuses_what_it_cannot_do(base, tmp_path):
    with pytest.raises(ValueError, match="unknown quantization mode"):
        quantize(copy.deepcopy(base), "fp8")
    model = quantize(copy.deepcopy(base), "int8")
    with pytest.raises(ValueError, match="already quantized"):
        quantize(model, "int4")
    save_quantized(model, tmp_path / "q")
    raw = json.loads((tmp_path / "q" / "quantization.json").read_text())
    (tmp_path / "q" / "quantization.json").write_text(json.dumps({**raw, "mode": "int4", "group_size": 32}))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_quantized(tmp_path / "q")


def test_plain_checkpoint_loads_as_mode_none(base, tokens, tmp_path):
    save_checkpoint(tmp_path / "plain", base)
    loaded = load_quantized(tmp_path / "plain")
    assert loaded.lm_head.weight is loaded.transformer.wte.weight  # tie restored
    assert torch.equal(logits(loaded, tokens), logits(base, tokens))


def test_serving_model_quantizes_on_load_with_the_configured_group_size(base, tmp_path):
    from recnarr.config import load_config
    from recnarr.inference.serving_model import load_serving_model

    save_checkpoint(tmp_path / "ck", copy.deepcopy(base))
    cfg = load_config("tiny", ["quantize.group_size=64"])
    model, info = load_serving_model(cfg, tmp_path / "ck", "int4")
    assert info["quantization"] == "int4" and info["backend"] == "torch"
    assert model.quantization["group_size"] == 64 and model.lm_head.group_size == 64


def test_dequantize_gives_back_a_plain_tied_gpt(base, tmp_path):
    from recnarr.model.quantize import load_any

    save_quantized(quantize(copy.deepcopy(base), "int8"), tmp_path / "q")
    plain = load_any(tmp_path / "q")
    assert isinstance(plain.lm_head, torch.nn.Linear) and plain.lm_head.weight is plain.transformer.wte.weight
    assert plain.quantization["mode"] == "none"
    quantized = load_quantized(tmp_path / "q")
    # the int8 values themselves, as fp32 (no precision comes back)
    assert torch.equal(plain.transformer.h[0].mlp.c_fc.weight, quantized.transformer.h[0].mlp.c_fc.dequantized())
    assert torch.equal(plain.lm_head.weight, quantized.lm_head.dequantized())
    x = torch.randint(0, CFG.vocab_size, (1, 12))
    a, b = plain(x)[0], quantized(x)[0]  # differ by the int8 model's dynamic activation quantization only
    assert (a - b).abs().max() / b.abs().max() < TOLERANCE["int8"]


@pytest.mark.parametrize("out_features", [96, 3 * 64, Int8Linear.WIDE + 1])
def test_an_int8_decode_row_does_not_depend_on_the_rows_beside_it(out_features):
    # one decode step of n sequences: each row is quantized with its own scale (narrow layers sum int8 in
    # int32; a full-vocabulary head runs fbgemm row by row), so a row equals itself alone, bit for bit,
    # at any batch size and beside any mates; a prefill keeps fbgemm's one scale per call
    torch.manual_seed(out_features)
    lin = torch.nn.Linear(64, out_features)
    q = Int8Linear.from_float(lin)
    x = torch.randn(12, 1, 64) * torch.logspace(-2, 2, 12)[:, None, None]  # mates of very different scales
    with torch.inference_mode():
        alone = torch.cat([q(x[i : i + 1]) for i in range(12)])
        for n in (2, 5, 12):
            batched = torch.cat([q(x[i : i + n]) for i in range(0, 12, n)])
            assert torch.equal(batched, alone), n
        assert (alone - lin(x)).abs().max() < 0.02 * lin(x).abs().max()  # and it is still the layer
        prefill = q(x.transpose(0, 1))  # (1, 12, 64): one sequence's positions
        assert (prefill - lin(x.transpose(0, 1))).abs().max() < 0.05 * lin(x).abs().max()


def test_a_head_cut_to_some_tokens_gives_those_tokens_logits(base, tokens):
    from recnarr.inference.engine import head_rows

    ids = torch.tensor([0, 5, 17, 400, 1000])
    for mode in ("none", "int8"):
        m = quantize(copy.deepcopy(base), mode)
        with torch.inference_mode():
            full, _ = m(tokens[:, -1:], last_only=True)
            cut, _ = m(tokens[:, -1:], last_only=True, head=head_rows(m.lm_head, ids))
        assert cut.shape[-1] == len(ids)
        assert torch.allclose(cut, full[..., ids], atol=1e-5), mode
