"""When every attempt fails, the attempt's sentences that verify on their own are shown (still verified
whole) before the flagged fallback: a sentence that opens a slot this record cannot fill is dropped."""

from __future__ import annotations

import tiny_generator


class HalfRight(tiny_generator.ScriptedEngine):
    """Writes a true narrative with one sentence that claims a release year no product here has."""

    @staticmethod
    def text_for(prompt: str) -> str:
        return "Meet the {product}. It came out in {year}. It costs {price}."


class AllWrong(tiny_generator.ScriptedEngine):
    @staticmethod
    def text_for(prompt: str) -> str:
        return "It came out in {year}. It is best-selling."


def narrate(engine_cls):
    gen = tiny_generator.build(engine="scripted")
    gen.engine = engine_cls(gen.engine.tokenizer)
    return gen.recommend(history=["OFF-BI-1001"], n=1).narrative


def test_the_verified_sentences_of_a_failed_narrative_are_kept(shared_cache):
    n = narrate(HalfRight)
    assert n.verified and not n.fallback and n.attempts == 2  # the tiny generator retries once
    assert n.text.startswith("Meet the ") and n.text.endswith(".") and "came out" not in n.text and "$" in n.text
    assert any(e.startswith("dropped: 'It came out in {year}.'") for e in n.errors)


def test_nothing_verified_left_means_the_fallback(shared_cache):
    n = narrate(AllWrong)
    assert n.fallback and n.text.startswith("We recommend the ")
