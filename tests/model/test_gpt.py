"""The GPT module: shapes, parameter counts, loss masking, and logits equal to transformers' GPT-2."""

from __future__ import annotations

import pytest
import torch

from recnarr.model.gpt import GPT, PRESETS, GPTConfig
from recnarr.model.hf import export_hf, import_hf

SMALL = GPTConfig(block_size=32, vocab_size=97, n_layer=2, n_head=2, n_embd=32)


def make(cfg: GPTConfig = SMALL, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(cfg)


def test_presets_and_param_counts():
    assert set(PRESETS) >= {"tiny", "cpu-small", "slm-60m"}
    with torch.device("meta"):
        ref = GPT(PRESETS["slm-60m"])
    total, non_emb = ref.num_params(non_embedding=False), ref.num_params(non_embedding=True)
    assert 50e6 < total < 60e6, total  # tied embedding counted once
    c = PRESETS["slm-60m"]
    assert total - non_emb == c.vocab_size * c.n_embd + c.block_size * c.n_embd
    assert abs(non_emb - 12 * c.n_layer * c.n_embd**2) / non_emb < 0.01  # ~12 L C^2 (+ biases, norms)


def test_forward_shapes_tied_head_and_init():
    m = make()
    x = torch.randint(0, SMALL.vocab_size, (3, 10))
    logits, loss = m(x)
    assert logits.shape == (3, 10, SMALL.vocab_size) and loss is None
    assert m.lm_head.weight is m.transformer.wte.weight
    # GPT-2 init: residual projections scaled down by sqrt(2 * n_layer)
    std_proj = m.transformer.h[0].attn.c_proj.weight.std().item()
    assert std_proj == pytest.approx(0.02 / (2 * SMALL.n_layer) ** 0.5, rel=0.25)
    last, _ = m(x, last_only=True)
    assert last.shape == (3, 1, SMALL.vocab_size)
    torch.testing.assert_close(last[:, 0], logits[:, -1])


def test_loss_and_loss_mask():
    m = make()
    x = torch.randint(0, SMALL.vocab_size, (2, 12))
    y = torch.randint(0, SMALL.vocab_size, (2, 12))
    logits, loss = m(x, y)
    _, loss_ones = m(x, y, torch.ones(2, 12))
    torch.testing.assert_close(loss, loss_ones)
    mask = torch.zeros(2, 12)
    mask[:, 8:] = 1  # only the "narrative" counts
    _, masked = m(x, y, mask)
    ref = torch.nn.functional.cross_entropy(logits[:, 8:].reshape(-1, SMALL.vocab_size), y[:, 8:].reshape(-1))
    torch.testing.assert_close(masked, ref)
    masked.backward()  # gradients flow only through the counted positions' logits
    assert m.transformer.wte.weight.grad is not None


def test_causality():
    m = make().eval()
    x = torch.randint(0, SMALL.vocab_size, (1, 12))
    x2 = x.clone()
    x2[0, 7:] = (x2[0, 7:] + 1) % SMALL.vocab_size
    a, _ = m(x)
    b, _ = m(x2)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_too_long_sequence_raises():
    m = make()
    with pytest.raises(ValueError, match="longer than block_size"):
        m(torch.zeros(1, SMALL.block_size + 1, dtype=torch.long))


def test_flops_per_token():
    m = make()
    n = m.num_params(non_embedding=False) - SMALL.block_size * SMALL.n_embd
    assert m.flops_per_token(16) == 6 * n + 12 * SMALL.n_layer * SMALL.n_embd * 16


def test_logits_match_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = GPTConfig(block_size=64, vocab_size=50257, n_layer=2, n_head=4, n_embd=64)
    m = make(cfg).eval()
    with torch.no_grad():  # biases and norms are zero/one at init: randomise so every tensor is checked
        for p in m.parameters():
            if p.dim() == 1:
                p.normal_(0, 0.1)
    export_hf(m, tmp_path / "hf")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    x = torch.randint(0, cfg.vocab_size, (3, 40))
    with torch.no_grad():
        ours, _ = m(x)
        theirs = hf(x).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def test_import_round_trip(tmp_path):
    transformers = pytest.importorskip("transformers")
    m = make()
    export_hf(m, tmp_path / "hf")
    back = import_hf(tmp_path / "hf")
    assert back.config == m.config
    for (k, a), (_, b) in zip(m.state_dict().items(), back.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert back.lm_head.weight is back.transformer.wte.weight
    # a folder written by transformers itself imports too
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf")
    hf.save_pretrained(tmp_path / "hf2")
    again = import_hf(tmp_path / "hf2")
    x = torch.randint(0, SMALL.vocab_size, (2, 9))
    torch.testing.assert_close(again(x)[0], m(x)[0])


@pytest.mark.parametrize("masked", [False, True])
def test_fused_linear_cross_entropy_matches_the_plain_loss(masked):
    cfg = GPTConfig(block_size=32, vocab_size=300, n_layer=1, n_head=2, n_embd=32)
    x = torch.randint(0, cfg.vocab_size, (3, 20))
    y = torch.randint(0, cfg.vocab_size, (3, 20))
    y[0, :4] = -100  # ignored targets
    mask = (torch.rand(3, 20) > 0.5).float() if masked else None
    grads = []
    for fused in (False, True):
        m = make(cfg)
        logits, loss = m(x, y, mask, return_logits=not fused)
        assert (logits is None) == fused
        loss.backward()
        grads.append((loss.detach(), {k: p.grad.clone() for k, p in m.named_parameters()}))
    (l0, g0), (l1, g1) = grads
    torch.testing.assert_close(l1, l0)
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], atol=1e-6, rtol=1e-4, msg=k)


@pytest.mark.parametrize("vocab", [40, 64])  # padded inside to 64 rows; already a multiple
def test_fused_loss_chunks_bf16_and_no_grad(vocab):
    from recnarr.model.fused_ce import fused_linear_cross_entropy

    h = torch.randn(50, 16, requires_grad=True)
    w = torch.randn(vocab, 16, requires_grad=True)
    t = torch.randint(0, vocab, (50,))
    ref = torch.nn.functional.cross_entropy(h @ w.t(), t)
    ref_gh, ref_gw = torch.autograd.grad(ref, (h, w))
    for chunk in (7, 50, 64):
        got = fused_linear_cross_entropy(h, w, t, chunk=chunk)
        torch.testing.assert_close(got, ref)
        gh, gw = torch.autograd.grad(got, (h, w))  # the padding rows never reach the gradients
        torch.testing.assert_close(gw, ref_gw)
        torch.testing.assert_close(gh, ref_gh)
    with torch.no_grad():
        torch.testing.assert_close(fused_linear_cross_entropy(h, w, t), ref.detach())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = fused_linear_cross_entropy(h, w, t)
    low.backward()
    assert low.dtype == torch.float32 and w.grad.dtype == torch.float32
    torch.testing.assert_close(low, ref, atol=0.05, rtol=0.02)
    w.requires_grad_(False)  # frozen head (LoRA): only the hidden states get a gradient
    h.grad = None
    fused_linear_cross_entropy(h, w, t).backward()
    assert h.grad is not None


def test_swapped_head_takes_the_plain_loss_path():
    m = make()
    x, y = torch.randint(0, SMALL.vocab_size, (2, 6)), torch.randint(0, SMALL.vocab_size, (2, 6))
    _, ref = m(x, y)

    class Wrapped(torch.nn.Module):  # what a quantized or adapted head looks like to the model
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, h):
            return self.inner(h)

    m.lm_head = Wrapped(m.lm_head)
    logits, loss = m(x, y, return_logits=False)
    assert logits is not None
    torch.testing.assert_close(loss, ref)


def test_fused_loss_is_exact_for_a_target_far_below_the_rest():
    # a target logit ~200 below the max: its softmax probability underflows to 0 in any float
    from recnarr.model.fused_ce import fused_linear_cross_entropy

    w = torch.randn(30, 8)
    h = torch.randn(6, 8) * 40
    logits = h @ w.t()
    t = logits.argmin(dim=1)
    assert (logits.max(1).values - logits.min(1).values).min() > 120
    ref = torch.nn.functional.cross_entropy(logits, t)
    torch.testing.assert_close(fused_linear_cross_entropy(h, w, t), ref)
