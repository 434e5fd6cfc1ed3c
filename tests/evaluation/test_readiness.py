"""The send-readiness check (`recnarr.evaluation.readiness`) on plain texts: sendable narratives come back
clean, and each text with one defect comes back with exactly that defect."""

from __future__ import annotations

import pytest

from recnarr.evaluation.readiness import DEFECTS, Readiness, check, format_table, summarize

PUNCH = {
    "id": "OFF-BI-10003910",
    "title": "Fellowes PB500 Electric Punch",
    "brand": "Fellowes",
    "category": ["Office Supplies", "Binders"],
    "description": "",
    "attributes": {"color": "black"},
    "price": 1270.98,
    "discount": 0.2,
}
LABELS = {
    "id": "OFF-LA-10002762",
    "title": "Avery File Folder Labels",
    "brand": "Avery",
    "category": ["Office Supplies", "Labels"],
    "description": "",
    "attributes": {},
    "price": 3.5,
    "discount": 0.0,
}
PAPER = {**LABELS, "id": "OFF-PA-10001569", "title": "Xerox Paper", "brand": "Xerox", "category": ["Paper"]}
SOFA = {
    **LABELS,
    "id": "FUR-FU-10000001",
    "title": "Three Seater Sofa",
    "brand": None,
    "category": ["Furniture"],
}
FARGO = {
    "id": "608",
    "title": "Fargo (1996)",
    "brand": None,
    "category": ["Movies", "Drama"],
    "description": "",
    "attributes": {},
    "price": 0.0,
    "discount": 0.0,
}
PAST = ["Wilson Jones binders", "Avery Durable Poly Binders"]

CLEAN = [
    (
        "Hi Ann! We recommend the Fellowes PB500 Electric Punch, $1,270.98, now 20% off at $1,016.78. It was bought "
        "by 4 customers who had bought the Wilson Jones binders you bought in April 2017.",
        PUNCH,
        PAST,
    ),
    (
        "Hi Ann! Our pick for you: the Fellowes PB500 Electric Punch, a binding machine from Fellowes. You bought the "
        "Wilson Jones binders in April 2017, and this one keeps their pages together. It is also a natural companion "
        "to the Avery Durable Poly Binders you bought. Add it to your next order!",
        PUNCH,
        PAST,
    ),
    (
        "Meet Fargo (1996): a crime drama. You rated Star Wars (1977) in December 1997, and fans of it also rated "
        "this one.",
        FARGO,
        ["Star Wars (1977)"],
    ),
    # "customers who also bought": the relative "also" ties others' purchases to the product, no orphan
    (
        "Meet the Fellowes PB500 Electric Punch. It was bought by 4 customers who also bought the Avery Durable "
        "Poly Binders, which you bought in April 2017.",
        PUNCH,
        PAST,
    ),
    # a title holding placeholder-like words, commas and "Hi" is masked before any check reads it
    (
        "Meet the Test Tube Rack, Hi-Grade. It's $12.99.",
        {**LABELS, "id": "LAB-1", "title": "Test Tube Rack, Hi-Grade", "category": ["Lab"]},
        [],
    ),
]


@pytest.mark.parametrize(("text", "product", "past"), CLEAN)
def test_sendable_texts_pass(text, product, past):
    r = check(text, product, past)
    assert r.ok, r.details
    assert r.defects == r.details == []


DEFECTIVE = [
    (
        "empty_reason",
        "Meet the Fellowes PB500 Electric Punch. It is a change of pace from the Wilson Jones binders.",
        PUNCH,
        PAST,
    ),
    (
        "empty_reason",
        "Meet the Fellowes PB500 Electric Punch. It is from the same department as the Wilson Jones "
        "binders you bought.",
        PUNCH,
        PAST,
    ),
    (
        "empty_reason",
        "Meet the Fellowes PB500 Electric Punch. It's $9.99. You bought the Wilson Jones binders in "
        "April 2017.",
        PUNCH,
        PAST,
    ),
    ("kind_echo", "Meet the Avery File Folder Labels: folder labels. It's $3.50.", LABELS, []),
    ("kind_echo", "Meet the Xerox Paper. It is a paper product.", PAPER, []),
    ("kind_echo", "Take a look at the Three Seater Sofa. It is a seater sofa.", SOFA, []),
    ("kind_echo", "Meet Fargo (1996). It is a drama movie. A fine choice from our drama movies.", FARGO, []),
    ("repeated_claim", "Meet the Fellowes PB500 Electric Punch. It's $9.99. Yours for $9.99.", PUNCH, []),
    ("repeated_claim", "Meet the Fellowes PB500 Electric Punch. Give it a try. Give it a try.", PUNCH, []),
    (
        "repeated_claim",
        "Meet the Fellowes PB500 Electric Punch. The Fellowes PB500 Electric Punch is black. The "
        "Fellowes PB500 Electric Punch is 20% off.",
        PUNCH,
        [],
    ),
    (
        "reference_before_name",
        "Hi Ann! This one is a natural companion to the Wilson Jones binders you bought. "
        "Meet the Fellowes PB500 Electric Punch.",
        PUNCH,
        PAST,
    ),
    (
        "reference_before_name",
        "It is a natural companion to the Wilson Jones binders you bought. Meet the Fellowes "
        "PB500 Electric Punch.",
        PUNCH,
        PAST,
    ),
    (
        "orphan_also",
        "Meet the Fellowes PB500 Electric Punch. It is also a natural companion to the Wilson Jones "
        "binders you bought.",
        PUNCH,
        PAST,
    ),
    (
        "stacked_opener",
        "Good news: Next on your list: the Fellowes PB500 Electric Punch. It's $9.99.",
        PUNCH,
        [],
    ),
    (
        "stacked_opener",
        "Hi Ann! Good news, Ann: the Fellowes PB500 Electric Punch is here. It's $9.99.",
        PUNCH,
        [],
    ),
    ("placeholder_text", "Hi Sample! Meet the Fellowes PB500 Electric Punch. It's $9.99.", PUNCH, []),
    (
        "placeholder_text",
        "Meet the Fellowes PB500 Electric Punch. A fine choice from our category.",
        PUNCH,
        [],
    ),
    ("placeholder_text", "Meet the Fellowes PB500 Electric Punch (OFF-BI-10003910). It's $9.99.", PUNCH, []),
    (
        "too_long",
        "Meet the Fellowes PB500 Electric Punch. It's $9.99. Made by Fellowes. It comes in black. "
        "Give it a try. We think you'll love it.",
        PUNCH,
        [],
    ),
    ("too_short", "Hi Ann! Meet the Fellowes PB500 Electric Punch.", PUNCH, []),
]


@pytest.mark.parametrize(("defect", "text", "product", "past"), DEFECTIVE)
def test_each_defect_is_caught_alone(defect, text, product, past):
    r = check(text, product, past)
    assert r.defects == [defect], r.details
    assert len(r.details) == 1


def test_every_defect_class_has_a_case():
    assert {d for d, *_ in DEFECTIVE} == set(DEFECTS)


def test_details_quote_the_span():
    r = check("Meet the Avery File Folder Labels: folder labels. It's $3.50.", LABELS)
    assert "'folder labels'" in r.details[0] and "Avery File Folder Labels" in r.details[0]


def test_also_after_a_named_past_item_is_fine():
    text = (
        "Meet the Fellowes PB500 Electric Punch. It goes with the Wilson Jones binders you bought. You also rated "
        "the Avery Durable Poly Binders, and this one keeps them company."
    )
    assert check(text, PUNCH, PAST).ok
    assert check(text, PUNCH, []).defects == ["orphan_also"]  # nothing known was named before the "also"


def test_summarize_top_closer_share_and_counts():
    texts = [
        "Meet the Fellowes PB500 Electric Punch. It's $9.99. Add it to your cart.",
        "Meet the Avery File Folder Labels. Yours for $3.50. Add it to your cart.",
        "Meet the Xerox Paper. It costs $5.00. Add it to your cart.",
        "Hi Sample! Meet the Fellowes PB500 Electric Punch. Give it a try.",
    ]
    results = [check(t, p) for t, p in zip(texts, [PUNCH, LABELS, PAPER, PUNCH], strict=True)]
    s = summarize(texts, results)
    assert s["n"] == 4
    assert s["top_closer"] == ["Add it to your cart.", 0.75]
    assert s["top_opener"] == ["Meet the Fellowes", 0.25]  # four openers once each: the first seen
    assert s["ready"] == 0.75
    assert s["by_defect"]["placeholder_text"] == 1 and sum(s["by_defect"].values()) == 1
    # titles, amounts and names don't count: "Meet the <title>.", three price wordings, "Add it to your cart.",
    # "Hi <name>!", "Give it a try."
    assert s["frames"] == 7
    assert 0 < s["distinct_2"] < 1


def test_summarize_without_stored_sentences_and_table():
    texts = ["Meet the Fellowes PB500 Electric Punch. Try it | today."] * 2
    s = summarize(texts, [Readiness([], []), Readiness(["too_long"], ["x"])])  # frames from the texts alone
    assert s["ready"] == 0.5 and s["top_closer"] == ["Try it | today.", 1.0] and s["frames"] == 2
    table = format_table({"superstore": s, "movielens": summarize([], [])})
    lines = table.splitlines()
    assert len(lines) == 4 and lines[2].startswith("| superstore | 2 | 50.0% |") and "\\|" in lines[2]
    assert all(line.count(" | ") == lines[0].count(" | ") for line in lines[2:])


def test_a_missing_narrative_is_empty_and_shares_count_every_text():
    texts = [None, float("nan"), "Meet the Xerox Paper. It costs $5.00."]
    results = [check(t, PAPER) for t in texts]
    assert [r.defects for r in results] == [["too_short"], ["too_short"], []]
    s = summarize(texts, results)
    assert s["top_closer"] == ["It costs $5.00.", 0.3333] and s["ready"] == 0.3333
