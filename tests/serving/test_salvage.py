"""Verified decoding with a model that wants to say what no record backs: the grammar refuses the
unfillable slot or the false figure while sampling, a sentence that fails the verifier is rolled
back and sampled again, then left out; the fallback only when no verified sentence names the product."""

from __future__ import annotations

import tiny_generator

from recnarr.evaluation.audit import Auditor


class HalfRight(tiny_generator.ScriptedBackend):
    """A true narrative with one sentence that claims a release year no product here has."""

    def text_for(self, prompt: str) -> str:
        return "Meet the {product}. It came out in {year}. It costs {price}."


class AllWrong(tiny_generator.ScriptedBackend):
    def text_for(self, prompt: str) -> str:
        return "It came out in {year}. It is best-selling, 2 for $9."


def narrate(backend, **kw):
    gen = tiny_generator.build(engine="scripted", max_new_tokens=40)
    gen.engine = tiny_generator.ScriptedEngine(gen.engine.tokenizer, backend=backend)
    return gen, gen.recommend(history=["OFF-BI-1001"], n=1, **kw).narrative


def test_an_unfillable_slot_cannot_be_written(shared_cache):
    gen, n = narrate(HalfRight)
    assert n.verified and not n.fallback
    assert n.text.startswith("Meet the ") and "{" not in n.text and "year" not in n.slotted
    product = gen.dataset.products.set_index("id").loc[n.product_id]
    assert product["title"] in n.text
    assert Auditor(gen.dataset).audit(n.text, n.product_id, None) == []  # independent: nothing false


def test_nothing_verified_left_means_the_fallback(shared_cache):
    gen, n = narrate(AllWrong)
    assert "best-selling" not in n.text and "$9" not in n.text and "2 for" not in n.text
    assert n.verified
    if n.fallback:
        assert n.text.startswith("We recommend the ")
