"""Every metric on a hand-made case with a known answer."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from recnarr.data.claims import Pair
from recnarr.data.narratives import HistoryItem, NarrativeRecord
from recnarr.data.schema import Dataset, Product
from recnarr.evaluation import metrics
from recnarr.evaluation.audit import Auditor
from recnarr.evaluation.narratives import (
    check_text,
    fact_mentions,
    personalization,
    score_outputs,
    strip_retrieval,
    swap_hits,
)
from recnarr.inference.grounding import FactBase

PRODUCTS = [
    Product("P1", "Fellowes PB500 Electric Punch Comb Binding Machine", 1270.98, "Fellowes",
            ["Office Supplies", "Binders"], discount=0.2, attributes={"color": "Black"}),
    Product("P2", "Avery Durable Poly Binders", 5.5, "Avery", ["Office Supplies", "Binders"]),
    Product("P3", "Hamilton Beach Toaster Oven", 89.0, "Hamilton Beach", ["Office Supplies", "Appliances"]),
    Product("P4", "Acco Binder Clips", 2.0, "Acco", ["Office Supplies", "Fasteners"]),
    Product("P5", "Avery 482", 7.0, "Avery", ["Office Supplies", "Labels"]),
]
P1 = PRODUCTS[0].title


@pytest.fixture(scope="module")
def facts() -> FactBase:
    return FactBase(pd.DataFrame([vars(p) for p in PRODUCTS]))


@pytest.fixture(scope="module")
def auditor() -> Auditor:
    """The raw tables the records below are true of: u1 bought P2 in April 2016, u2 P3 in May 2016."""
    products = pd.DataFrame([vars(p) for p in PRODUCTS])
    users = pd.DataFrame([{"id": "u1", "name": "Claire Gute", "segment": None, "demographics": {}},
                          {"id": "u2", "name": "Bo Lee", "segment": None, "demographics": {}}])
    inter = pd.DataFrame([{"user_id": u, "product_id": p, "event": "purchase", "quantity": 1, "rating": None,
                           "timestamp": pd.Timestamp(t, tz="UTC")}
                          for u, p, t in [("u1", "P2", "2016-04-03"), ("u2", "P3", "2016-05-01")]])
    return Auditor(Dataset("test", products, users, inter))


def record(user: str = "u1") -> NarrativeRecord:
    hist = [HistoryItem("P2", PRODUCTS[1].title, PRODUCTS[1].category, "2016-04-03", "Avery")]
    return NarrativeRecord(product=PRODUCTS[0], history=hist, customer="Claire Gute", reason_index=1,
                           pair=Pair("Acco Binder Clips", 1), user_id=user)


# ------------------------------------------------------------------ grounding


def test_a_hallucinated_price_is_caught_by_both_judges(facts, auditor):
    true = check_text(f"Meet the {P1}, now $1,016.78.", record(), facts, auditor)
    assert true["ok"] and true["false"] == 0 and true["stated"] == 2  # the title and the price
    lie = check_text(f"Meet the {P1}, now $0.99.", record(), facts, auditor)
    assert not lie["ok"] and lie["false"] == 1 and lie["stated"] == 2
    assert any("$0.99" in e for e in lie["errors"]) and lie["audit"][0].startswith("price: '$0.99'")


def test_fact_mentions_counts_each_kind(facts):
    text = (f"Since you bought the Avery Durable Poly Binders in April 2016, meet the {P1}: 20% off, $1,016.78, "
            "in black, by Fellowes.")
    # 2 titles, a month-year, a percentage, a price, an attribute word, a brand
    assert fact_mentions(text, record(), facts) == 7


def test_hallucination_rate_and_precision_pool_over_narratives(facts, auditor):
    recs = [record(), record()]
    outs = [{"raw": f"Meet the {P1}, now $0.99.", "text": f"Meet the {P1}, now $1,016.78.", "fallback": True,
             "attempts": 3, "latency_s": 0.5, "prompt_tokens": 100, "generated_tokens": 20},
            {"raw": f"Meet the {P1}.", "text": f"Meet the {P1}.", "fallback": False, "attempts": 1,
             "latency_s": 0.1, "prompt_tokens": 90, "generated_tokens": 8}]
    m = score_outputs(outs, recs, [o["text"] for o in outs], facts, {"u1": {PRODUCTS[1].title}}, auditor)
    assert m["hallucination_rate_raw"] == 0.5 and m["hallucination_rate"] == 0.0
    assert m["fact_precision_raw"] == pytest.approx(1 - 1 / 3)  # 3 facts stated, 1 false
    assert m["fallback_rate"] == 0.5 and m["mean_attempts"] == 2.0
    assert m["bleu"] == pytest.approx(100.0) and m["rougeL"] == pytest.approx(1.0)
    assert m["latency_p50_s"] in (0.1, 0.5) and m["latency_mean_s"] == pytest.approx(0.3)


def test_an_empty_first_attempt_is_counted_apart(facts, auditor):
    c = check_text("   ", record(), facts, auditor)
    assert c["empty"] and not c["ok"] and c["false"] == 0


# ------------------------------------------------------------------ personalization


def test_a_purchase_the_user_never_made_is_caught(facts, auditor):
    bought = {PRODUCTS[1].title}
    real = personalization(f"Since you bought the {PRODUCTS[1].title}, meet the {P1}.", record(), bought, facts)
    assert real == {"bought": [PRODUCTS[1].title], "never_bought": []}
    fake = personalization(f"Since you bought the Hamilton Beach Toaster Oven, meet the {P1}.", record(), bought, facts)
    assert fake == {"bought": [], "never_bought": ["Hamilton Beach Toaster Oven"]}
    # the verifier refuses it, and the audit finds the false title
    c = check_text(f"Since you bought the Hamilton Beach Toaster Oven, meet the {P1}.", record(), facts, auditor)
    assert not c["ok"] and c["false"] >= 1 and any(a.startswith("title") for a in c["audit"])


def test_swap_test_counts_only_the_other_users_own_purchases(facts):
    a = {PRODUCTS[1].title}
    b = {"Hamilton Beach Toaster Oven", PRODUCTS[1].title, "Acco Binder Clips"}
    text = f"Since you bought the {PRODUCTS[1].title}, meet the {P1}. 3 customers bought it with the Acco Binder Clips."
    assert swap_hits(text, record(), a, b, facts) == []  # shared purchase and the pair do not count
    assert swap_hits("You loved the Hamilton Beach Toaster Oven.", record(), a, b, facts) == ["Hamilton Beach Toaster Oven"]


def test_swap_rate_is_zero_for_specific_narratives(facts, auditor):
    r1 = record("u1")
    r2 = NarrativeRecord(product=PRODUCTS[0], customer="Bo", reason_index=1, user_id="u2",
                         history=[HistoryItem("P3", PRODUCTS[2].title, PRODUCTS[2].category, "2016-05-01")])
    outs = [{"raw": t, "text": t, "fallback": False, "attempts": 1, "latency_s": 0.1}
            for t in (f"Since you bought the {r1.history[0].title}, meet the {P1}.",
                      f"Since you bought the {r2.history[0].title}, meet the {P1}.")]
    m = score_outputs(outs, [r1, r2], [o["text"] for o in outs], facts, {}, auditor)
    assert m["personal_rate"] == 1.0 and m["swap_rate"] == 0.0 and m["swap_pairs"] == 2


def test_no_rag_prompt_loses_only_the_retrieval_lines():
    prompt = ("### customer: A\n### history:\n[1] X (Y), May 2016\n### product: P\n### category: C\n"
              "### attributes: color: black\n### reason: similar to [1]\n### pairs with: Q\n### tone: warm\n"
              "### narrative:\n")
    assert strip_retrieval(prompt) == ("### customer: A\n### history:\n[1] X (Y), May 2016\n### product: P\n"
                                       "### category: C\n### tone: warm\n### narrative:\n")


# ------------------------------------------------------------------ text metrics


def test_bleu_and_rouge_of_identical_text():
    refs = ["the cat sat on the mat", "a dog ran in the park today"]
    assert metrics.bleu(refs, refs) == pytest.approx(100.0)
    assert metrics.rouge(refs, refs) == pytest.approx({"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0})
    assert metrics.bleu(["zebra quantum"], ["the cat sat on the mat"]) == pytest.approx(0.0)


def test_tone_scores_on_known_words():
    assert metrics.tone_scores("Hi! We think you'll love it.") == {"sentiment": 1.0, "formality": -1.0}
    assert metrics.tone_scores("Dear Claire, a worthy but cheap addition.") == {
        "sentiment": 0.0,  # worthy (+) and cheap (-)
        "formality": 1.0}  # dear, worthy, addition
    assert metrics.tone_scores("The binder.") == {"sentiment": 0.0, "formality": 0.0}


# ------------------------------------------------------------------ list metrics


def test_jaccard():
    assert metrics.jaccard_at_k(["a", "b", "c"], ["a", "b", "c"], 3) == 1.0
    assert metrics.jaccard_at_k(["a", "b", "c"], ["c", "b", "a"], 3) == 1.0
    assert metrics.jaccard_at_k(["a", "b"], ["c", "d"], 2) == 0.0
    assert metrics.jaccard_at_k(["a", "b", "x"], ["a", "c", "y"], 2) == pytest.approx(1 / 3)


def test_gini_of_uniform_exposure_is_zero_and_of_one_item_is_maximal():
    assert metrics.gini_index([5, 5, 5, 5]) == pytest.approx(0.0)
    assert metrics.gini_index(Counter({"a": 3, "b": 3}), n_items=2) == pytest.approx(0.0)
    # all exposure on one of 4 items: (n - 1) / n
    assert metrics.gini_index(Counter({"a": 10}), n_items=4) == pytest.approx(0.75)
    assert metrics.gini_index([0, 0, 0, 10]) == pytest.approx(0.75)


def test_coverage_and_tail_share():
    lists = [["a", "b"], ["a", "c"]]
    assert metrics.item_coverage(lists, 6) == pytest.approx(0.5)
    pop = {"a": 10, "b": 5, "c": 1, "d": 0, "e": 0, "f": 7}
    tail = metrics.tail_items(pop, 0.5)  # the 3 least popular: d, e, c
    assert tail == {"c", "d", "e"}
    assert metrics.tail_items(pop, 1.5) == {"c", "d", "e"}  # > 1: a count threshold
    assert metrics.tail_share(lists, tail) == pytest.approx(0.25)  # (0/2 + 1/2) / 2


def test_a_narrative_that_fails_without_a_false_fact_is_no_hallucination(facts, auditor):
    c = check_text("You bought the Avery Durable Poly Binders in April 2016. We think you'll love it.", record(),
                   facts, auditor)
    assert not c["ok"]  # it does not name the recommended product: not shown, yet nothing in it is false
    assert c["false"] == 0 and c["stated"] == 2
