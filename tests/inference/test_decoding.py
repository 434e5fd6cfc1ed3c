"""Verified decoding: the grammar automaton, rollback in the KV cache, and the shipped model under the
guide: every streamed byte is the final narrative's, every narrative verifies and passes the audit."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from recnarr.inference.contract import Token
from recnarr.inference.decoding import Grammar, State
from recnarr.inference.engine import COMMIT, GO_ON, REJECT, Engine, SamplingParams
from recnarr.model.gpt import GPT, GPTConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
import tiny_generator  # noqa: E402

CFG = GPTConfig(block_size=64, vocab_size=101, n_layer=2, n_head=2, n_embd=32)


def make_model() -> GPT:
    torch.manual_seed(0)
    m = GPT(CFG)
    with torch.no_grad():  # sharp logits: varied outputs
        for p in m.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return m


NAMES = {"product", "price", "past1", "past1_date", "past1_verb", "past1_link", "name"}


def accepts(text: str) -> bool:
    g = Grammar(NAMES)
    st = g.feed(State(), text)
    return st is not None and g.can_end(st)


def test_grammar_accepts_claims_through_slots_only():
    assert accepts("Hi {name}! Meet the {product}. It costs {price}.")
    assert accepts("In {past1_date} you {past1_verb} the {past1}, and this one is {past1_link} it.")
    assert not accepts("It came out in {year}.")  # a slot this record cannot fill
    assert not accepts("Meet the {product}, only 2 left.")  # a digit outside a slot
    assert not accepts("Meet the {product}, our best-selling keyboard.")  # not connective vocabulary
    assert not accepts("You bought it in {past1_date}. Meet the {product}.")  # a date without its item
    assert not accepts("Meet the {product}s.")  # a value glued to a word cannot be read back
    assert not accepts("Meet  the {product}.")
    assert not accepts("You {past1_verb} the {past1} in {past1_date} in {past1_date}.")  # once per clause


def test_grammar_never_begins_a_slot_it_cannot_close():
    g = Grammar(NAMES)
    st = g.feed(State(), "You {past1_verb} the {past1} in {past1_date} in {")
    assert g.feed(st, "past1") is not None and g.feed(st, "past1_d") is None  # {past1_date} is taken


@pytest.mark.parametrize("seed", range(4))
def test_grammar_has_no_dead_end(seed):
    """A random walk over what the grammar allows, character by character: from every state reached,
    some character goes on (the engine's guide would otherwise allow no token at all)."""
    import random
    import string

    rng, g = random.Random(seed), Grammar(NAMES)
    chars = string.ascii_letters + "{}_ .,!?;:'-" + "".join(sorted({c for n in NAMES for c in n}))
    st = State()
    for _ in range(3000):
        nxt = [(c, s) for c in chars if (s := g.feed(st, c)) is not None]
        assert nxt, f"dead end after {st}"
        st = rng.choice(nxt)[1]


class EveryFifth:
    """Commits every 5 tokens; rejects each segment the first time it is written."""

    def __init__(self):
        self.n, self.tried = 0, False

    def allows(self, token):
        return token % 7 != 3  # some tokens are never allowed

    def strain(self):
        return GO_ON

    def push(self, token):
        assert token % 7 != 3
        self.n += 1
        if self.n == 5:
            self.n = 0
            if not self.tried:
                self.tried = True
                return REJECT
            self.tried = False
            return COMMIT
        return GO_ON

    def rewind(self):
        self.n = 0

    def finish(self, reason):
        pass


def test_rollback_in_the_cache_equals_the_uncached_oracle():
    e = Engine(make_model())
    p = SamplingParams(max_new_tokens=20, temperature=0.9, top_k=30, seed=3, stop_token_ids=())
    prompts = [torch.randint(0, CFG.vocab_size, (n,)).tolist() for n in (4, 9)]
    cached = e.generate_batch(prompts, p, guides=[EveryFifth(), EveryFifth()])
    oracle = e.generate_uncached(prompts, p, guides=[EveryFifth(), EveryFifth()])
    assert [g.tokens for g in cached] == [g.tokens for g in oracle]
    assert all(g.rollbacks == 4 and len(g.tokens) == 20 for g in cached)
    assert all(t % 7 != 3 for g in cached for t in g.tokens)
    alone = e.generate(prompts[1], p, guide=EveryFifth())
    assert alone.tokens == cached[1].tokens  # a row decodes what it would alone


def test_a_step_samples_every_row_at_once_exactly_as_each_row_alone():
    # sampling.preselect: penalties, top-k and top-p for all rows of a step in one pass; rows with their
    # own penalties, top-p, temperatures, minimum lengths, guides and rollbacks draw the same tokens
    e = Engine(make_model())
    torch.manual_seed(11)
    prompts = [torch.randint(0, CFG.vocab_size, (n,)).tolist() for n in (3, 9, 5, 12, 7, 4)]
    params = [SamplingParams(max_new_tokens=18, min_new_tokens=m, temperature=t, top_k=25, top_p=tp,
                             repetition_penalty=rp, seed=i, stop_token_ids=(5, 6))
              for i, (m, t, tp, rp) in enumerate([(0, 0.8, 1.0, 1.0), (6, 1.0, 0.9, 1.3), (0, 0.7, 0.95, 1.1),
                                                   (10, 1.2, 0.8, 1.0), (3, 0.9, 1.0, 2.0), (0, 1.0, 0.5, 1.1)])]
    runs = []
    for batched in (True, False):
        with e.session(8) as s:
            s.batched_sampling = batched
            rows = [s.add(p, q, guide=EveryFifth() if i % 2 else None)
                    for i, (p, q) in enumerate(zip(prompts, params, strict=True))]
            while s.busy:
                s.step()
        runs.append([(r.tokens, r.rollbacks, r.finish_reason) for r in rows])
    assert runs[0] == runs[1]
    assert sum(r[1] for r in runs[0]) > 0 and len({tuple(r[0]) for r in runs[0]}) == 6  # rollbacks happened
    alone = [e.generate(p, q, guide=EveryFifth() if i % 2 else None).tokens
             for i, (p, q) in enumerate(zip(prompts, params, strict=True))]
    assert alone == [r[0] for r in runs[0]]


class Broken(EveryFifth):
    """A guide that fails after a few tokens, as a bug in a grammar would."""

    def allows(self, token):
        if self.n == 3:
            raise RuntimeError("the guide allows no token at all")
        return super().allows(token)


def test_a_failing_row_ends_alone_in_an_isolating_session():
    e = Engine(make_model())
    p = SamplingParams(max_new_tokens=20, temperature=0.9, top_k=30, seed=3, stop_token_ids=())
    prompts = [torch.randint(0, CFG.vocab_size, (n,)).tolist() for n in (4, 9)]
    with pytest.raises(RuntimeError, match="allows no token"):  # a direct call still raises
        e.generate_batch(prompts, p, guides=[Broken(), EveryFifth()])
    with e.session(2, isolate_errors=True) as s:
        broken, fine = s.add(prompts[0], p, Broken()), s.add(prompts[1], p, EveryFifth())
        while s.busy:
            s.step()
    assert broken.finish_reason == "error" and "allows no token" in broken.error and len(broken.tokens) == 3
    assert fine.tokens == e.generate(prompts[1], p, guide=EveryFifth()).tokens  # untouched by its neighbour


@pytest.fixture(scope="module")
def shipped_gen(shared_cache):
    from recnarr.data.tokenizer import get_tokenizer
    from recnarr.inference.serving_model import SHIPPED
    from recnarr.model.quantize import load_quantized

    if not (SHIPPED / "config.json").exists():
        pytest.skip("no shipped model")
    gen = tiny_generator.build(engine="scripted", max_new_tokens=120)
    gen.engine = Engine(load_quantized(SHIPPED), get_tokenizer())
    gen.gen.temperature, gen.gen.max_retries = 0.7, 2
    return gen


def test_shipped_model_streams_only_its_final_verified_text(shipped_gen):
    from recnarr.evaluation.audit import Auditor

    auditor = Auditor(shipped_gen.dataset)
    for seed, user in enumerate(["AA-10001", "BB-10002", "CC-10003", "DD-10004"] * 3):
        events = list(shipped_gen.stream(user_id=user, n=2, sampling={"seed": seed}))
        streamed = "".join(e.text for e in events if isinstance(e, Token))
        n = events[-1].result.narrative
        assert streamed == n.text and n.verified, (seed, streamed, n.text)
        assert auditor.audit(n.text, n.product_id, user) == [], n.text
        assert not n.fallback or n.text.startswith("We recommend the ")


def busiest_customers_record():
    """A real record of the tiny dataset: its busiest customer, four past items, a product not bought."""
    from recnarr.inference.records import RecordBuilder

    ds = tiny_generator.dataset()
    builder = RecordBuilder(ds)
    uid = str(ds.interactions["user_id"].value_counts().index[0])
    past = builder.customer_history(uid)
    items = builder.history_items([(pid, ts) for pid, ts, _ in past], uid, max_items=4)
    bought = {pid for pid, _, _ in past}
    pid = next(p for p in sorted(ds.products["id"].astype(str)) if p not in bought)
    return builder.record(builder.product(pid), items, uid, items[-1].product_id, "warm")


def test_a_sentence_of_facts_already_stated_is_left_out(shared_cache):
    from recnarr.data.tokenizer import get_tokenizer
    from recnarr.inference.decoding import NarrativeGuide, TokenTable

    rec = busiest_customers_record()
    tok = get_tokenizer()
    guide = NarrativeGuide(rec, TokenTable.of(tok, 50257), tok.eot_token, 2)
    text = ("Meet the {product}. You {past1_verb} the {past1} in {past1_date}. "
            "In {past1_date} you {past1_verb} the {past1}. Meet the {product}.")
    for t in tok.encode(text):
        assert guide.allows(t)
        guide.push(t)
    guide.push(tok.eot_token)
    assert guide.accepted == "Meet the {product}. You {past1_verb} the {past1} in {past1_date}."
    assert [d.split(": ")[-1] for d in guide.dropped] == ["it repeats facts already stated",
                                                          "a repeat of a sentence already written"]


def test_the_catalogs_words_go_in_before_a_held_closer_and_the_stream_still_joins(shared_cache):
    """A narrative that says only the name and price of a product the catalog describes gets that
    description sentence, quoted, before its closing sentence; the closer was held back from the
    stream, so what was streamed plus what follows is the final text, byte for byte."""
    from recnarr.data.narratives import FACT_LEADS, NarrativeRecord
    from recnarr.data.schema import Product
    from recnarr.data.tokenizer import get_tokenizer
    from recnarr.inference.decoding import NarrativeGuide, TokenTable

    lamp = Product("h-108", "Ceramic Table Lamp", 129.0, None, ["Lighting", "Lamps"],
                   description="Glazed ceramic base with a linen drum shade.")
    tok = get_tokenizer()
    guide = NarrativeGuide(NarrativeRecord(product=lamp, history=[]), TokenTable.of(tok, 50257), tok.eot_token, 2)
    streamed = ""
    for t in tok.encode("Meet the {product}. It costs {price}. We hope you enjoy it."):
        guide.push(t)
        streamed += guide.take()
    guide.push(tok.eot_token)
    streamed += guide.take()
    assert streamed == "Meet the Ceramic Table Lamp. It costs $129.00."  # the closer waits
    streamed += guide.with_fact()
    assert streamed == guide.verification().text
    lead = streamed.split("$129.00. ")[1].split(' "')[0]
    assert lead in FACT_LEADS and streamed.endswith(
        '"Glazed ceramic base with a linen drum shade". We hope you enjoy it.')
    assert guide.verification().ok


def test_the_narrative_vocab_holds_every_token_the_grammar_allows(shared_cache):
    """The head is computed over `TokenTable.narrative_ids` only: at every state of a real narrative,
    each token the guide allows (searched among its candidates) is in it, the end of text included."""
    from recnarr.data.tokenizer import get_tokenizer
    from recnarr.inference.decoding import NarrativeGuide, TokenTable

    rec = busiest_customers_record()
    tok = get_tokenizer()
    table = TokenTable.of(tok, 50257)
    guide = NarrativeGuide(rec, table, tok.eot_token, 2)
    vocab = set(guide.vocab.tolist())
    assert tok.eot_token in vocab and len(vocab) < 5000  # a small part of the 50,257 tokens
    text = "Hi {name}, meet the {product}. You {past1_verb} the {past1} in {past1_date}; it costs {price}."
    checked = 0
    for t in tok.encode(text):
        allowed = {c for c in guide.candidates().tolist() if guide.allows(c)}
        assert allowed <= vocab, sorted(allowed - vocab)[:10]
        checked += len(allowed)
        if guide.allows(t):
            guide.push(t)
    assert checked > 1000
    outside = next(i for i, s in enumerate(table.text) if s == " elephant")
    assert outside not in vocab


def test_a_row_with_a_vocab_samples_as_the_full_logits_masked_outside_it():
    # the engine computes the head over a guide's vocab only; the row then draws exactly what it would
    # from the full logits with every other token at -inf (the oracle path masks them)
    e = Engine(make_model())
    vocab = torch.tensor(sorted({3, 5, 8, 13, 21, 34, 55, 89, 99, 100}))

    class Vocab(EveryFifth):
        def __init__(self):
            super().__init__()
            self.vocab = vocab

    params = SamplingParams(max_new_tokens=14, temperature=0.9, top_k=6, top_p=0.9, seed=4, stop_token_ids=(5,))
    cached = e.generate([1, 2, 3], params, guide=Vocab())
    oracle = e.generate_uncached([[1, 2, 3]], params, guides=[Vocab()])[0]
    assert cached.tokens == oracle.tokens and set(cached.tokens) <= set(vocab.tolist())
