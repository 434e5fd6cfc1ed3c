"""The verifier catches each kind of false fact, and lets every true one through."""

import pandas as pd
import pytest

from recnarr.data.narratives import HistoryItem, NarrativeRecord
from recnarr.data.schema import Product
from recnarr.inference.grounding import FactBase, fill_slots, ground, verify

PRODUCTS = [
    Product("P1", "Fellowes PB500 Electric Punch Comb Binding Machine", 1270.98, "Fellowes",
            ["Office Supplies", "Binders"], discount=0.2, attributes={"color": "Black"}),
    Product("P2", "Avery Durable Poly Binders", 5.5, "Avery", ["Office Supplies", "Binders"]),
    Product("P3", "Hamilton Beach Toaster Oven", 89.0, "Hamilton Beach", ["Office Supplies", "Appliances"],
            attributes={"color": "Silver"}),
    Product("P4", "Acco Binder Clips", 2.0, "Acco", ["Office Supplies", "Fasteners"]),
    Product("P5", "Avery 482", 7.0, "Avery", ["Office Supplies", "Labels"]),
]


@pytest.fixture
def facts():
    return FactBase(pd.DataFrame([vars(p) for p in PRODUCTS]))


def record(product=PRODUCTS[0]):
    hist = [HistoryItem("P2", PRODUCTS[1].title, PRODUCTS[1].category, "2016-04-03", "Avery"),
            HistoryItem("P5", PRODUCTS[4].title, PRODUCTS[4].category, "2016-06-20", "Avery")]
    return NarrativeRecord(product=product, history=hist, customer="Claire Gute", reason_index=1, pair="Acco Binder Clips")


def test_true_narrative_passes_and_cites_sources(facts):
    v = ground("Hi {name}! Since you bought the {past1} in {past1_date}, meet the {product}, "
               "now {discount} off at {sale_price} instead of {price}. It goes well with the {pair}.", record(), facts)
    assert v.ok, v.errors
    assert "Fellowes PB500 Electric Punch Comb Binding Machine" in v.text and "$1,016.78" in v.text
    assert "April 2016" in v.text
    sources = {c.fact: c.source for c in v.citations}
    assert sources["past1"] == "history[1]:P2.title" and sources["price"].startswith("product:P1.")


@pytest.mark.parametrize("text,error", [
    ("The {product} is now $999.00.", "price $999.00"),
    ("The {product} is 35% off.", "discount 35%"),
    ("Since you bought the {past1} in March 2015, here it is.", "date March 2015"),
    ("You loved the Hamilton Beach Toaster Oven. Try the {product}.", "names 'Hamilton Beach Toaster Oven'"),
    ("The {product} is a favorite among our fasteners.", "category word 'fasteners'"),
    ("The {product} comes in silver.", "attribute 'silver'"),
    ("The {product} is made by Avery.", "brand 'Avery'"),
    ("The {product} is 4000 times better.", "number 4000"),
    ("Meet the {past7}.", "slot {past7}"),
    ("implicitly manifold smrons Advance Dialogue Lakes.", "does not name the recommended product"),
])
def test_each_false_fact_is_caught(facts, text, error):
    v = ground(text, record(), facts)
    assert not v.ok
    assert any(error in e for e in v.errors), v.errors


def test_plain_words_may_refer_to_the_items_a_sentence_names(facts):
    # "binders" is true of the named past purchase; "black" of the product itself
    v = ground("Your {past1} shows you know good binders. The {product} comes in black.", record(), facts)
    assert v.ok, v.errors
    # ...but a sentence that names only the labels cannot call the product "binders" of another brand
    v = ground("Your {past2} is great, and Hamilton Beach makes the best.", record(), facts)
    assert not v.ok


def test_unknown_slot_is_never_guessed():
    text, _, errors = fill_slots("Hello {nickname}", record())
    assert text == "Hello {nickname}" and errors


def test_anonymous_record_cannot_use_name(facts):
    rec = record()
    rec.customer = None
    assert not ground("Hi {name}, try the {product}.", rec, facts).ok
    assert verify("Try the Fellowes PB500 Electric Punch Comb Binding Machine.", rec, facts).ok
