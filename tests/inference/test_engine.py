"""The generation engine: cache == no cache, sample(), stops, streaming, batching, argument checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recnarr.inference.engine import Engine, SamplingParams
from recnarr.inference.sampling import process_logits, sample
from recnarr.model.gpt import GPT, GPTConfig

CFG = GPTConfig(block_size=64, vocab_size=101, n_layer=2, n_head=2, n_embd=32)


def make_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    m = GPT(CFG)
    with torch.no_grad():  # a sharper model than the 0.02 init: well-separated logits, varied outputs
        for p in m.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return m


GREEDY = SamplingParams(max_new_tokens=20, temperature=0, stop_token_ids=())


# ---------------------------------------------------------------- cache vs oracle
def test_cached_greedy_equals_uncached():
    e = Engine(make_model())
    prompt = torch.randint(0, CFG.vocab_size, (9,)).tolist()
    cached = e.generate(prompt, GREEDY)
    (oracle,) = e.generate_uncached([prompt], GREEDY)
    assert cached.tokens == oracle.tokens and len(cached.tokens) == 20
    assert cached.finish_reason == "length" and cached.prompt_tokens == 9
    assert len(set(cached.tokens)) > 3  # not a degenerate repetition


def test_batched_left_padding_equals_uncached_and_single_rows():
    e = Engine(make_model(1))
    torch.manual_seed(5)
    prompts = [torch.randint(0, CFG.vocab_size, (n,)).tolist() for n in (3, 11, 7)]
    batch = e.generate_batch(prompts, GREEDY)
    oracle = e.generate_uncached(prompts, GREEDY)
    assert [g.tokens for g in batch] == [g.tokens for g in oracle]
    singles = [e.generate(p, GREEDY).tokens for p in prompts]
    assert [g.tokens for g in batch] == singles  # padding does not change what a row generates


def test_fast_layout_keeps_values():
    m = make_model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.randint(0, CFG.vocab_size, (1, 10))
    ref = m(x)[0]
    Engine(m)  # re-lays weights out column-major
    assert not m.transformer.h[0].mlp.c_fc.weight.is_contiguous()
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    torch.testing.assert_close(m(x)[0], ref)


# ---------------------------------------------------------------- sample()
def test_temperature_zero_is_argmax():
    logits = torch.randn(4, 50)
    assert torch.equal(sample(logits, SamplingParams(temperature=0)), logits.argmax(-1))


def test_top_k_mask():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    out = process_logits(logits, SamplingParams(top_k=2))
    assert torch.isfinite(out).tolist() == [[False, True, False, True, False]]
    g = torch.Generator().manual_seed(0)
    draws = {int(sample(logits, SamplingParams(top_k=2), generator=g)) for _ in range(200)}
    assert draws == {1, 3}


def test_top_p_mask():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    keep = lambda p: torch.isfinite(process_logits(logits, SamplingParams(top_p=p))).tolist()[0]  # noqa: E731
    assert keep(0.5) == [True, False, False, False]  # the first token alone reaches 0.5
    assert keep(0.6) == [True, True, False, False]  # the token that crosses top_p stays
    assert keep(0.85) == [True, True, True, False]
    assert keep(1.0) == [True, True, True, True]
    assert keep(0.01) == [True, False, False, False]  # the most likely token always stays
    # the mask is per row and follows each row's own order
    two = torch.stack([probs[0], probs[0].flip(0)]).log()
    assert torch.isfinite(process_logits(two, SamplingParams(top_p=0.6))).tolist() == [
        [True, True, False, False], [False, False, True, True]]


def test_repetition_frequency_presence_penalties():
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    prompt_mask = torch.tensor([[True, True, False, False]])
    counts = torch.tensor([[0, 0, 3, 0]])
    out = process_logits(logits, SamplingParams(temperature=0, repetition_penalty=2.0),
                         output_counts=counts, prompt_mask=prompt_mask)
    torch.testing.assert_close(out, torch.tensor([[1.0, -4.0, 0.5, 0.5]]))
    out = process_logits(logits, SamplingParams(temperature=0, frequency_penalty=0.5, presence_penalty=0.25),
                         output_counts=counts, prompt_mask=prompt_mask)
    torch.testing.assert_close(out, torch.tensor([[2.0, -2.0, 1.0 - 1.5 - 0.25, 0.5]]))
    assert torch.equal(logits, torch.tensor([[2.0, -2.0, 1.0, 0.5]]))  # pure: input untouched


def test_repetition_penalty_changes_greedy_output():
    e = Engine(make_model())
    prompt = [1, 2, 3]
    plain = e.generate(prompt, GREEDY).tokens
    pen = e.generate(prompt, GREEDY, repetition_penalty=5.0).tokens
    assert plain != pen
    assert len(set(pen)) >= len(set(plain))


def test_seed_reproducibility():
    e = Engine(make_model())
    p = SamplingParams(max_new_tokens=25, temperature=1.0, top_k=20, top_p=0.9, seed=123, stop_token_ids=())
    a, b = e.generate([5, 6], p).tokens, e.generate([5, 6], p).tokens
    c = e.generate([5, 6], p, seed=124).tokens
    assert a == b and a != c
    assert e.generate_batch([[5, 6], [7]], p)[0].tokens == e.generate_uncached([[5, 6], [7]], p)[0].tokens


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"min_new_tokens": 30, "max_new_tokens": 10}, "min_new_tokens"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"frequency_penalty": 3.0}, "frequency_penalty"),
        ({"stop": [""]}, "stop"),
    ],
)
def test_bad_sampling_params(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplingParams(**kwargs)


def test_bad_prompts():
    e = Engine(make_model())
    with pytest.raises(ValueError, match="exceeds the model's block_size"):
        e.generate(list(range(60)), GREEDY)  # 60 + 20 > 64
    with pytest.raises(ValueError, match="exceeds the model's block_size"):
        e.generate([1] * (CFG.block_size + 1), GREEDY, max_new_tokens=1)
    with pytest.raises(ValueError, match="empty"):
        e.generate([], GREEDY)
    with pytest.raises(ValueError, match="outside"):
        e.generate([CFG.vocab_size], GREEDY)
    with pytest.raises(ValueError, match="tokenizer"):
        e.generate("text needs a tokenizer", GREEDY)
    with pytest.raises(ValueError, match="temperature"):
        e.generate([1], GREEDY, temperature=-1)


# ---------------------------------------------------------------- text: a scripted model and byte vocabulary
EMOJI = "😀".encode()  # f0 9f 98 80
VOCAB = {0: b"<eot>", 1: EMOJI[:2], 2: EMOJI[2:], 3: b"a", 4: b"b", 5: b" ", 6: "é".encode()[:1],
         7: "é".encode()[1:], 8: b"x", 9: b"END"}


class ByteTokenizer:
    """Token id -> fixed bytes; `encode` maps single characters (enough for prompts here)."""

    eot_token = 0

    def encode(self, text: str) -> list[int]:
        inv = {v.decode("utf-8", "ignore"): k for k, v in VOCAB.items()}
        return [inv[ch] for ch in text]

    def decode_bytes(self, tokens) -> bytes:
        return b"".join(VOCAB[t] for t in tokens)


class ScriptedModel(nn.Module):
    """Emits `script[i]` as the i-th generated token, whatever the input (logits peaked at that id)."""

    def __init__(self, script: list[int], vocab: int = 10):
        super().__init__()
        self.config = GPTConfig(block_size=128, vocab_size=vocab, n_layer=1, n_head=1, n_embd=2)
        self.script = script
        self.dummy = nn.Parameter(torch.zeros(1))
        self.prompt_len = 0

    def forward(self, idx, targets=None, loss_mask=None, *, positions=None, attn_mask=None, kv_cache=None,
                last_only=False):
        B, T = idx.shape
        assert kv_cache is not None, "the scripted model only runs with the engine's cache"
        if positions.dim() == 1:  # prefill: the whole prompt
            self.prompt_len = T
            done = [0] * B
        else:  # a decode step: position ids say how many tokens each row has
            done = (positions[:, -1] + 1 - self.prompt_len).tolist()
        logits = torch.full((B, 1, self.config.vocab_size), -10.0)
        for b, i in enumerate(done):
            logits[b, :, self.script[min(i, len(self.script) - 1)]] = 10.0
        return logits, None


def scripted(script: list[int]) -> Engine:
    return Engine(ScriptedModel(script), ByteTokenizer())


def test_stream_never_splits_a_multibyte_character():
    script = [1, 2, 3, 6, 7, 1, 2, 5, 4, 0]
    e = scripted(script)
    pieces = list(e.stream("a", max_new_tokens=20))
    assert "".join(pieces) == "😀aé😀 b"
    assert all("\ufffd" not in p for p in pieces)
    assert "😀" in pieces[0] and len(pieces) >= 4  # streamed as characters complete, not all at the end
    g = e.generate("a", max_new_tokens=20)
    assert g.text == "😀aé😀 b" and g.finish_reason == "stop" and g.tokens == script


def test_stop_sequence_across_token_boundaries():
    # "xEND" never appears inside one token: "x" + "END"; and "😀a" spans three tokens
    e = scripted([3, 8, 9, 4, 4, 4])
    g = e.generate("a", max_new_tokens=10, stop=["xEND"])
    assert g.text == "a" and g.finish_reason == "stop" and g.tokens == [3, 8, 9]
    e = scripted([4, 1, 2, 3, 4, 4])
    g = e.generate("a", max_new_tokens=10, stop=["😀a"])
    assert g.text == "b" and g.finish_reason == "stop"
    pieces = list(scripted([4, 1, 2, 3, 4, 4]).stream("a", max_new_tokens=10, stop=["😀a"]))
    assert "".join(pieces) == "b"  # the held-back "😀" (a possible stop prefix) is never emitted


def test_stream_releases_held_back_text_that_is_not_a_stop():
    pieces = list(scripted([3, 8, 3, 8, 4]).stream("a", max_new_tokens=5, stop=["xEND"]))
    assert "".join(pieces) == "axaxb"


def test_min_new_tokens_and_stop_tokens():
    e = scripted([0, 0, 0, 3, 3, 3])  # the model wants to stop at once
    assert e.generate("a", max_new_tokens=5).tokens == [0]
    g = e.generate("a", max_new_tokens=5, min_new_tokens=3, temperature=0)
    assert g.tokens[:3] != [0, 0, 0] and 0 not in g.tokens[:3]
    g = e.generate("a", max_new_tokens=4, stop_token_ids=[])
    assert g.tokens == [0, 0, 0, 3] and g.finish_reason == "length"


def test_batch_rows_finish_independently():
    e = Engine(make_model(), None)
    rows = e.generate_batch([[1, 2], [3, 4, 5]], GREEDY, stop_token_ids=None)
    assert all(r.finish_reason == "length" for r in rows)  # no tokenizer: no default end-of-text
    stop_tok = rows[0].tokens[2]
    rows2 = e.generate_batch([[1, 2], [3, 4, 5]], GREEDY, stop_token_ids=[stop_tok])
    assert rows2[0].tokens == rows[0].tokens[: rows[0].tokens.index(stop_tok) + 1]
    assert rows2[0].finish_reason == "stop"
