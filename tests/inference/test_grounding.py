"""The whitelist verifier: every claim bound to its record by the claim grammar, every other word on
the closed connective vocabulary. Each kind of false claim is caught with its rule named; true texts,
the model's slotted ones and the same texts written out in full, pass."""

from dataclasses import replace

import pytest

from recnarr.data.claims import LINKS, Pair, check, fill, reslot, slot_values
from recnarr.data.connectives import VOCABULARY
from recnarr.data.narratives import HistoryItem, NarrativeRecord
from recnarr.data.schema import Product
from recnarr.inference.generator import fallback_text
from recnarr.inference.grounding import ground, verify

PRODUCTS = [
    Product("P1", "Fellowes PB500 Electric Punch Comb Binding Machine", 1270.98, "Fellowes",
            ["Office Supplies", "Binders"], discount=0.2, attributes={"color": "Black"}),
    Product("P2", "Avery Durable Poly Binders", 5.5, "Avery", ["Office Supplies", "Binders"]),
    Product("P3", "Hamilton Beach Toaster Oven", 89.0, "Hamilton Beach", ["Office Supplies", "Appliances"]),
    Product("P4", "Acco Binder Clips", 2.0, "Acco", ["Office Supplies", "Fasteners"]),
    Product("P5", "Avery 482", 7.0, "Avery", ["Office Supplies", "Labels"]),
]
FILM = Product("M1", "The Game", 0.0, None, ["Movies", "Thriller"], currency="N/A", attributes={"year": "1997"})


def record(product=PRODUCTS[0], support=3):
    hist = [HistoryItem("P2", PRODUCTS[1].title, PRODUCTS[1].category, "2016-04-03", "Avery", link="same"),
            HistoryItem("P5", PRODUCTS[4].title, PRODUCTS[4].category, "2016-06-20", "Avery", link="complement")]
    return NarrativeRecord(product=product, history=hist, customer="Claire Gute", reason_index=1,
                           pair=Pair("Acco Binder Clips", support))


TRUE = ("Hi {name}! The {product} {past1_link} the {past1} you {past1_verb} in {past1_date}. It comes {feature}. "
        "Right now it's {discount} off: {sale_price} instead of {price}. {pair_support} the {pair}.")


def test_a_true_narrative_passes_and_cites_every_claim():
    v = ground(TRUE, record())
    assert v.ok, v.errors
    assert v.text.startswith("Hi Claire! The Fellowes PB500 Electric Punch Comb Binding Machine is from the same "
                             "category as the Avery Durable Poly Binders you bought in April 2016.")
    assert "$1,016.78 instead of $1,270.98" in v.text and "3 customers bought it together with the Acco" in v.text
    sources = {c.fact: c.source for c in v.citations}
    assert sources["past1_date"] == "history[1]:P2.date" and sources["past1_verb"] == "history[1]:P2.event"
    assert sources["price"] == "product:P1.product.price"
    # the same text written out in full (by a person, another model) is judged the same
    assert verify(v.text, record()).ok


@pytest.mark.parametrize("text,error", [
    # a date moved to another purchase: the date slot of past2 in past1's clause
    ("The {product} {past1_link} the {past1} you {past1_verb} in {past2_date}.", "not in the same clause as {past2}"),
    # a date in no record
    ("You {past1_verb} the {past1} in March 2015. Try the {product}.", "word 'March'"),
    # kind and purpose words no slot backs
    ("The {product} is a keyboard.", "word 'keyboard'"),
    ("The {product} keeps clutter off the desk.", "word 'keeps'"),
    # popularity, frequency
    ("The {product} is best-selling.", "word 'best-selling'"),
    ("Customers often add the {product}.", "word 'Customers'"),
    ("Try the {product} every week.", "word 'every'"),
    # a wrong relation, a wrong event verb
    ("The {product} is a change of pace from the {past1}.", "word 'change'"),
    ("You rated the {past1}. Try the {product}.", "word 'rated'"),
    # numbers outside slots, prices and discounts not the record's
    ("The {product} is now $999.00.", "digits outside a slot"),
    ("The {product} is 35% off.", "digits outside a slot"),
    # the list price alone of a discounted product reads as what it costs (P1 is 20% off)
    ("Yours for {price}. Try the {product}.", "{price} alone on a discounted product"),
    ("The {product} costs {price}, a great deal.", "{price} alone on a discounted product"),
    # another customer's name, another product's title
    ("Hi Sean! Try the {product}.", "word 'Sean'"),
    ("You loved the Hamilton Beach Toaster Oven. Try the {product}.", "word 'loved'"),
    # slots the record cannot fill, a pair without its support, no product at all
    ("Meet the {past7}.", "slot {past7}"),
    ("The {product} goes with the {pair}.", "{pair} (pair) is not in the same clause as {pair_support}"),
    ("We think you'll love it.", "does not name the recommended product"),
    # composition: what no shop would send, though every word of it is true
    ("It {past1_link} the {past1}. Meet the {product}.", "refers to the product before naming it"),
    ("Hi {name}! Good news: Meet the {product}.", "2 openers before the product"),
    ("Good news, {name}! Our pick for you: the {product}.", "2 openers before the product"),
    ("Meet the {product}. It's {price}, now {discount} off at {sale_price}. Now {sale_price}.",
     "{sale_price} is said 2 times"),
    ("Meet the {product}. You also {past1_verb} the {past1}.", "'also' with no past item before it"),
    ("Meet the {product}. It is {a_kind}. A fine choice from our {category}.", "{a_kind}"),
    ("Hi {name}! Meet the {product}. It comes {feature}. It's {price}, now {discount} off at {sale_price}. "
     "{pair_support} the {pair}. Give it a try. We hope you enjoy it.", "at most 5"),
])
def test_each_false_claim_is_caught_with_its_rule(text, error):
    v = ground(text, record())
    assert not v.ok
    assert any(error in e for e in v.errors), v.errors


def test_a_price_alone_is_fine_without_a_discount_and_said_with_it_when_there_is_one():
    assert ground("Yours for {price}. Try the {product}.", record(PRODUCTS[1])).ok  # no discount
    for ok in ("Try the {product}. Save {saving}: {sale_price}, down from {price}.",
               "Now {sale_price} ({discount} off {price}). Try the {product}.",
               "Try the {product}. It's {price}, now {discount} off at {sale_price}."):
        assert ground(ok, record()).ok, ok


def test_bought_together_needs_its_support():
    assert ground("Try the {product}. {pair_support} the {pair}.", record(support=3)).ok
    thin = ground("Try the {product}. {pair_support} the {pair}.", record(support=2))
    assert not thin.ok and any("slot {pair_support} has no value" in e for e in thin.errors)
    # written out by hand with the wrong count: "3" is not this record's support, so a digit outside a slot
    assert not verify("Try the Fellowes PB500 Electric Punch Comb Binding Machine. 3 customers bought it together "
                      "with the Acco Binder Clips.", record(support=2)).ok


def test_equal_values_are_read_by_clause():
    """Two purchases in one month: the month is the right one for whichever item its clause names."""
    rec = record()
    rec.history[1].date = "2016-04-28"
    v = verify("You bought the Avery 482 in April 2016. Try the Fellowes PB500 Electric Punch Comb Binding Machine.",
               rec)
    assert v.ok, v.errors
    assert reslot("You bought the Avery 482 in April 2016.", slot_values(rec)) == "You {past2_verb} the {past2} in {past2_date}."


def test_event_verbs_follow_the_event():
    film_hist = [HistoryItem("M2", "Scream 2", ["Movies", "Thriller"], "1998-03-01", None, "rating", 5.0,
                             "genre:Thriller")]
    rec = NarrativeRecord(product=FILM, history=film_hist, reason_index=1)
    v = ground("The {product} {past1_link} the {past1}, which {past1_rating} in {past1_date}.", rec)
    assert v.ok and v.text == "The Game is a thriller, like Scream 2, which you gave 5 stars in March 1998.", v
    assert not verify("The Game is a thriller, like Scream 2, which you gave 4 stars in March 1998.", rec).ok
    assert not verify("We recommend The Game. You bought the Scream 2 in March 1998.", rec).ok
    # no price slot for a product without a price
    assert not ground("The {product} costs {price}.", rec).ok


def test_a_title_with_its_own_article_is_not_doubled():
    rec = NarrativeRecord(product=FILM, history=[], customer=None)
    v = ground("Take a look at the {product}.", rec)
    assert v.ok and v.text == "Take a look at The Game." and "the The" not in v.text
    assert verify("Take a look at the The Game.", rec).ok  # a copy written that way is not false


def test_a_film_title_takes_no_article_and_a_product_keeps_it():
    fargo = Product("M3", "Fargo", 0.0, None, ["Movies", "Crime"], currency="N/A", attributes={"year": "1996"})
    past = HistoryItem("M4", "Secrets & Lies", ["Movies", "Drama"], "1997-11-17", event="rating", link="count",
                       support=40)
    rec = NarrativeRecord(product=fargo, history=[past], customer=None, reason_index=1)
    v = ground("The {product} {past1_link} the {past1} you {past1_verb} in {past1_date}.", rec)
    assert v.ok, v.errors
    assert v.text == "Fargo was rated by 40 people who also rated Secrets & Lies you rated in November 1997."
    assert ground("Meet the {product}.", rec).text == "Meet Fargo."
    # an office product is not a name: its article stays, also beside a film in the history
    mixed = NarrativeRecord(product=PRODUCTS[1], history=[replace(past, link="count", support=3)], customer=None,
                            reason_index=1)
    assert ground("Meet the {product}. It {past1_link} the {past1}.", mixed).text == (
        "Meet the Avery Durable Poly Binders. It was rated by 3 people who also rated Secrets & Lies.")
    # a past item with no link (another department, a film beside binders) cannot be given as a reason
    unlinked = NarrativeRecord(product=PRODUCTS[1], history=[replace(past, link=None)], reason_index=1)
    assert not ground("Meet the {product}. It {past1_link} the {past1}.", unlinked).ok


def test_an_order_is_asked_for_only_where_the_catalog_prices_the_product():
    film = NarrativeRecord(product=FILM, history=[], customer=None)
    assert any("asks for an order" in e for e in ground("Meet the {product}. Add it to your next order!", film).errors)
    assert ground("Meet the {product}. Add it to your next order!", record()).ok  # priced: for sale


def test_the_fallback_is_grammatical_event_aware_and_verified():
    rec = NarrativeRecord(product=FILM, history=[HistoryItem("M2", "Scream 2", ["Movies", "Horror"], "1998-03-01",
                                                             None, "rating", link="complement")], reason_index=1)
    v = ground(fallback_text(rec), rec)
    assert v.ok, v.errors
    assert v.text == ("We recommend The Game, a thriller. It is a natural companion to Scream 2, which you "
                      "rated in March 1998.")
    v = ground(fallback_text(record()), record())
    assert v.ok and "you bought in April 2016" in v.text and "Now $1,016.78 (20% off $1,270.98)." in v.text


def test_the_vocabulary_is_closed_to_claims():
    claims = {"keyboard", "binder", "binders", "desk", "paper", "best-selling", "popular", "many", "most", "customers",
              "people", "often", "every", "week", "daily", "same", "different", "match", "pairs", "together", "more",
              "new", "bought", "ordered", "rated", "watched", "since", "ago", "black", "cheap", "sale", "free"}
    assert not claims & VOCABULARY
    # every link phrase is slot text, not free vocabulary
    assert all(not set(link.split()) <= VOCABULARY for link in LINKS.values())


def test_fill_and_check_agree_on_unknown_slots():
    values = slot_values(record())
    assert fill("the {nope}", values) == "the {nope}"
    assert any("{nope}" in e for e in check("Try the {product} and the {nope}.", values))
    anonymous = NarrativeRecord(product=PRODUCTS[0], history=[])
    assert not ground("Hi {name}, try the {product}.", anonymous).ok


@pytest.mark.parametrize(("title", "category", "kind"), [
    # a title that says what it is gets no kind after it: "the Memorex Froggy Flash Drive: a flash drive"
    ("Memorex Froggy Flash Drive 8 GB", ["Technology", "Accessories"], None),
    ("Hon Deluxe Fabric Upholstered Stacking Chairs, Rounded Back", ["Furniture", "Chairs"], None),
    ("Fellowes PB500 Electric Punch Comb Binding Machine", ["Office Supplies", "Binders"], None),  # no "binder"
    # a brand and a model number: the leaf's noun adds what the title does not say
    ("Xerox 1916", ["Office Supplies", "Paper"], "paper product"),
    ("Avery 482", ["Office Supplies", "Labels"], "label product"),
    ("Zebra Z400", ["Shop", "Printers"], "printer"),  # another catalog: its one-word leaf, made singular
    ("Zebra Z400", ["Shop", "Category"], None),  # a placeholder leaf says nothing
])
def test_the_kind_is_said_only_where_the_title_does_not_say_it(title, category, kind):
    from recnarr.data.claims import kind_phrase

    assert kind_phrase(Product("X1", title, 5.0, title.split()[0], category)) == kind


def test_two_items_of_one_month_are_not_both_dated():
    """Two purchases in one month, each told with its date, read as one fact said twice."""
    rec = record()
    rec.history[1].date = "2016-04-28"
    text = ("Meet the {product}. It {past1_link} the {past1}, which you {past1_verb} in {past1_date}. And it "
            "{past2_link} the {past2}, which you {past2_verb} in {past2_date}.")
    assert any("say the same words twice: 'April 2016'" in e for e in ground(text, rec).errors)
    assert ground(text, record()).ok  # April and June: two facts


def test_a_genre_link_takes_the_place_of_the_kind():
    """"We recommend The Game, a thriller. It is a thriller, like Scream 2": the kind said twice."""
    past = HistoryItem("M2", "Scream 2", ["Movies", "Thriller"], "1998-03-01", None, "rating", 5.0, "genre:Thriller")
    v = slot_values(NarrativeRecord(product=FILM, history=[past], reason_index=1))
    assert v["past1_link"] == "is a thriller, like" and "a_kind" not in v and "kind" not in v
    other = replace(past, link="count", support=9)
    assert slot_values(NarrativeRecord(product=FILM, history=[other], reason_index=1))["a_kind"] == "a thriller"
