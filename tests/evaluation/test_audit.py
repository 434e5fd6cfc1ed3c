"""The independent narrative audit (`recnarr.evaluation.audit`) on three tiny in-memory catalogs:
true narratives must come back clean, and each perturbed one must be caught with the expected kind."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from recnarr.data.schema import PRODUCT_COLUMNS, Dataset
from recnarr.evaluation.audit import Auditor, FalseClaim, summarize


def _dataset(name: str, products: list[dict], users: list[tuple], inter: list[tuple]) -> Dataset:
    base = {"brand": None, "category": [], "currency": "USD", "discount": 0.0, "in_stock": True, "attributes": {},
            "description": ""}
    p = pd.DataFrame([{**base, **row} for row in products])[PRODUCT_COLUMNS]
    u = pd.DataFrame(users, columns=["id", "name", "segment", "demographics"])
    i = pd.DataFrame(inter, columns=["user_id", "product_id", "event", "rating", "timestamp"])
    i["quantity"] = 1
    i["timestamp"] = pd.to_datetime(i["timestamp"], utc=True, format="ISO8601")
    return Dataset(name, p, u, i[["user_id", "product_id", "event", "quantity", "rating", "timestamp"]])


FELLOWES = "Fellowes PB500 Electric Punch Plastic Comb Binding Machine with Manual Bind"
HILITER = "Avery Hi-Liter GlideStik Fluorescent Highlighter, Yellow Ink"


def superstore() -> Dataset:
    products = [
        {"id": "FUR-BO-10001798", "title": "Bush Somerset Collection Bookcase", "brand": "Bush",
         "category": ["Furniture", "Bookcases"], "price": 261.96},
        {"id": "FUR-CH-10000454", "title": "Hon Deluxe Fabric Upholstered Stacking Chairs, Rounded Back",
         "brand": "Hon", "category": ["Furniture", "Chairs"], "price": 731.94},
        {"id": "OFF-LA-10000240", "title": "Self-Adhesive Address Labels for Typewriters by Universal",
         "brand": "Universal", "category": ["Office Supplies", "Labels"], "price": 14.62},
        {"id": "OFF-BI-10003910", "title": FELLOWES, "brand": "Fellowes", "category": ["Office Supplies", "Binders"],
         "price": 1270.98, "discount": 0.2, "attributes": {"color": "black"}},
        {"id": "OFF-AR-10003478", "title": HILITER, "brand": "Avery", "category": ["Office Supplies", "Art"],
         "price": 5.84},
        {"id": "OFF-ST-10000760", "title": "Eldon Fold 'N Roll Cart System", "brand": "Eldon",
         "category": ["Office Supplies", "Storage"], "price": 22.37, "discount": 0.2},
        {"id": "TEC-AC-10002167", "title": "Imation 8gb Micro Traveldrive USB 2.0 Flash Drive", "brand": "Imation",
         "category": ["Technology", "Accessories"], "price": 45.0},
        {"id": "OFF-PA-10002365", "title": "Xerox 1967", "brand": "Xerox", "category": ["Office Supplies", "Paper"],
         "price": 15.55},
        {"id": "OFF-FA-10000304", "title": "Advantus Push Pins", "brand": "Advantus",
         "category": ["Office Supplies", "Fasteners"], "price": 7.31},
        {"id": "OFF-AR-10002833", "title": "Newell 322", "brand": "Newell", "category": ["Office Supplies", "Art"],
         "price": 7.28},
        {"id": "FUR-TA-10000577", "title": "Bretford CR4500 Series Slim Rectangular Table", "brand": "Bretford",
         "category": ["Furniture", "Tables"], "price": 957.58, "discount": 0.45},
    ]
    users = [("CG-12520", "Claire Gute", "Consumer", {"region": "South"}),
             ("DV-13045", "Darrin Van Huff", "Corporate", {"region": "West"}),
             ("SO-20335", "Sean O'Donnell", "Consumer", {"region": "South"}),
             ("BH-11710", "Brosina Hoffman", "Consumer", {"region": "West"}),
             ("AA-10480", "Andrew Allen", "Consumer", {"region": "South"}),
             ("PK-19075", "Pete Kriz", "Consumer", {"region": "Central"})]
    inter = [("CG-12520", "FUR-BO-10001798", "purchase", None, "2016-11-08"),
             ("CG-12520", "FUR-CH-10000454", "purchase", None, "2016-11-08"),
             ("CG-12520", "OFF-LA-10000240", "purchase", None, "2017-06-12"),
             ("CG-12520", "OFF-AR-10003478", "cart", None, "2017-04-20T10:00:00"),
             ("CG-12520", "OFF-PA-10002365", "view", None, "2017-09-03"),
             ("DV-13045", "FUR-BO-10001798", "purchase", None, "2016-11-20"),
             ("DV-13045", "OFF-BI-10003910", "purchase", None, "2017-03-14"),
             ("DV-13045", "OFF-FA-10000304", "purchase", None, "2017-03-14"),
             ("SO-20335", "OFF-BI-10003910", "purchase", None, "2016-10-11"),
             ("SO-20335", "OFF-FA-10000304", "purchase", None, "2016-10-11"),
             ("BH-11710", "OFF-BI-10003910", "purchase", None, "2015-06-09"),
             ("BH-11710", "OFF-FA-10000304", "purchase", None, "2015-06-09"),
             ("AA-10480", "OFF-BI-10003910", "purchase", None, "2017-04-15"),
             ("AA-10480", "OFF-AR-10002833", "purchase", None, "2017-04-15"),
             ("PK-19075", "TEC-AC-10002167", "purchase", None, "2017-12-31T23:30:00")]
    return _dataset("superstore-tiny", products, users, inter)


def _film(pid: str, title: str, year: str, genres: list[str]) -> dict:
    kind = " / ".join(genres).lower() + " movie"
    return {"id": pid, "title": f"{title} ({year})", "category": ["Movies", genres[0]], "price": 0.0,
            "currency": "N/A", "attributes": {"year": year, "genres": ", ".join(genres)},
            "description": f"{title} ({year}): a {kind}."}


def movielens() -> Dataset:
    products = [_film("1", "Toy Story", "1995", ["Animation", "Children's", "Comedy"]),
                _film("2", "GoldenEye", "1995", ["Action", "Adventure", "Thriller"]),
                _film("50", "Star Wars", "1977", ["Action", "Adventure", "Romance", "Sci-Fi", "War"]),
                _film("100", "Fargo", "1996", ["Crime", "Drama", "Thriller"]),
                _film("258", "Contact", "1997", ["Drama", "Sci-Fi"]),
                _film("286", "The English Patient", "1996", ["Drama", "Romance", "War"]),
                _film("300", "Air Force One", "1997", ["Action", "Thriller"]),
                _film("333", "The Game", "1997", ["Mystery", "Thriller"])]
    users = [(u, None, None, {"age": a, "gender": g}) for u, a, g in
             [("196", 49, "M"), ("186", 39, "F"), ("22", 25, "M"), ("244", 28, "M")]]
    inter = [("196", "50", "rating", 5.0, "1997-12-04"), ("196", "100", "rating", 4.0, "1998-01-10"),
             ("196", "258", "rating", 3.0, "1997-12-20")]
    inter += [(u, p, "rating", 4.0, f"1998-02-0{k}") for k, u in enumerate(["186", "22", "244"], 1)
              for p in ("333", "100")]
    return _dataset("movielens-tiny", products, users, inter)


def home() -> Dataset:
    products = [
        {"id": "HG-001", "title": "Threshold Woven Storage Basket, Large", "brand": "Threshold",
         "category": ["Home", "Storage", "Baskets"], "price": math.nan},
        {"id": "HG-002", "title": "Room Essentials 4-Pack Bath Towel Set, Gray", "brand": "Room Essentials",
         "category": ["Home", "Bath", "Towels"], "price": 19.99, "discount": 0.25},
        {"id": "HG-003", "title": "Mainstays 12-Cup Coffee Maker, Black", "brand": "Mainstays",
         "category": ["Home", "Kitchen", "Coffee Makers"], "price": 0.0},
        {"id": "HG-004", "title": "Better Homes & Gardens Ceramic Table Lamp", "brand": "Better Homes & Gardens",
         "category": ["Home", "Lighting", "Lamps"], "price": 34.5},
        {"id": "HG-005", "title": "Lodge 10.25 in. Cast Iron Skillet", "brand": "Lodge",
         "category": ["Home", "Kitchen", "Cookware"], "price": 29.9, "description": "Pre-seasoned skillet."},
        {"id": "HG-006", "title": "Mr. Clean Magic Eraser, 4 ct.", "brand": "Mr. Clean",
         "category": ["Home", "Cleaning"], "price": 5.97},
    ]
    users = [("H1", "Maya Lopez", None, {}), ("H2", "Tom Becker", None, {}), ("H3", "Priya Shah", None, {}),
             ("H4", "Luis Ortega", None, {}), ("H5", "Ana Kim", None, {}), ("H6", "Sam Reed", None, {})]
    inter = [("H1", "HG-002", "purchase", None, "2021-03-05"), ("H1", "HG-003", "view", None, "2021-05-17"),
             ("H2", "HG-006", "purchase", None, "2021-02-11"), ("H2", "HG-001", "cart", None, "2021-02-11")]
    inter += [(u, p, "purchase", None, "2021-06-01") for u in ("H4", "H5", "H6") for p in ("HG-001", "HG-004")]
    return _dataset("home-tiny", products, users, inter)


AUDITORS = {"store": Auditor(superstore()), "films": Auditor(movielens()), "home": Auditor(home())}
LAMP_CART = [{"product_id": "HG-004", "date": None, "event": "cart"}]
FARGO_RATED = [{"product_id": "100", "date": "1998-01-10T08:00:00+00:00", "event": "rating"}]

# (catalog, product, user, anonymous history, text): every claim here is true to the tables
TRUE = {
    "fellowes": ("store", "OFF-BI-10003910", "CG-12520", None,
                 f"Hi Claire! Meet the {FELLOWES}: a binding machine for busy offices. It's $1,270.98, now 20% off "
                 "at $1,016.78. Since you picked up the Bush Somerset Collection Bookcase in November 2016, here is "
                 "more of what you liked. 3 customers bought it together with the Advantus Push Pins."),
    "fellowes_saving": ("store", "OFF-BI-10003910", "CG-12520", None,
                        f"Claire, a considered recommendation: the {FELLOWES}. Save $254.20: $1,016.78, down from "
                        "$1,270.98. Your Self-Adhesive Address Labels for Typewriters by Universal from June 2017 "
                        "tells us you know good labels."),
    "cart": ("store", "OFF-ST-10000760", "CG-12520", None,
             "Dear Claire, we recommend the Eldon Fold 'N Roll Cart System, Eldon's cart system. Right now it's "
             f"20% off: $17.90 instead of $22.37. You added the {HILITER} to your cart in April 2017."),
    "drive": ("store", "TEC-AC-10002167", "CG-12520", None,
              "For you, Claire: the Imation 8gb Micro Traveldrive USB 2.0 Flash Drive. This flash drive keeps files "
              "handy. It costs $45.00. You looked at the Xerox 1967 in September 2017."),
    "highlighter": ("store", "OFF-AR-10003478", "DV-13045", None,
                    f"Darrin, the {HILITER} is a highlighter. Priced at $5.84. You ordered the {FELLOWES} in "
                    "March 2017; this highlighter belongs on the same shelf."),
    "game": ("films", "333", "196", None,
             "Meet The Game (1997): a mystery thriller. You rated Star Wars (1977) in December 1997, and this one "
             "is a natural next step. It came out in 1997."),
    "air_force": ("films", "300", "196", None,
                  "Air Force One (1997) is an action thriller. Since you rated Fargo (1996) in January 1998, here "
                  "is another edge-of-your-seat evening. A 1997 release."),
    "goldeneye_anon": ("films", "2", None, FARGO_RATED,
                       "You rated Fargo (1996) in January 1998. GoldenEye (1995) is an action adventure. These "
                       "thrillers keep the tension high."),
    "game_pair": ("films", "333", "196", None,
                  "Take a look at The Game (1997). 3 people rated it together with Fargo (1996), which you rated "
                  "in January 1998."),
    "basket": ("home", "HG-001", "H1", None,
               "Hi Maya! The Threshold Woven Storage Basket, Large is a storage basket. It fits right in with the "
               "Room Essentials 4-Pack Bath Towel Set, Gray you bought in March 2021."),
    "skillet": ("home", "HG-005", "H1", None,
                "Maya, this one made us think of you. Meet the Lodge 10.25 in. Cast Iron Skillet: a cast iron "
                "skillet. Yours for $29.90. You viewed the Mainstays 12-Cup Coffee Maker, Black in May 2021."),
    "towels": ("home", "HG-002", "H2", None,
               "Tom, Room Essentials 4-Pack Bath Towel Set, Gray: a towel set. At 25% off, it comes to $14.99. "
               "Save $5.00. You also picked up the Mr. Clean Magic Eraser, 4 ct. in February 2021."),
    "coffee_anon": ("home", "HG-003", None, LAMP_CART,
                    "Here's one we think you'll like. The Mainstays 12-Cup Coffee Maker, Black is a coffee maker. It "
                    "pairs naturally with the Better Homes & Gardens Ceramic Table Lamp you added to your cart."),
    "basket_pair": ("home", "HG-001", "H3", None,
                    "Priya, we found something for you. Take a look at the Threshold Woven Storage Basket, Large. "
                    "3 customers bought it together with the Better Homes & Gardens Ceramic Table Lamp."),
}

# (true narrative, old text, new text, the kind that must be reported)
PERTURBED = [
    ("fellowes", "November 2016", "June 2017", "date"),  # moved to the month of another purchase
    ("fellowes_saving", "June 2017", "November 2016", "date"),
    ("highlighter", "March 2017", "November 2016", "date"),
    ("game", "December 1997", "January 1998", "date"),
    ("fellowes", "of what you liked.", "of what you liked. Your last order was in May 2015.", "date"),
    ("air_force", "A 1997 release.", "A 1995 release.", "date"),
    ("fellowes", "a binding machine", "a keyboard", "kind"),
    ("highlighter", "is a highlighter", "is a keyboard", "kind"),
    ("drive", "This flash drive keeps", "This desk lamp keeps", "kind"),
    ("game", "a mystery thriller", "a romantic comedy", "kind"),
    ("basket", "is a storage basket", "is a bath towel", "kind"),
    ("fellowes", "3 customers bought it together with", "Customers often add", "popularity"),
    ("fellowes", "here is more of what you liked.", "here is a best-selling favorite.", "popularity"),
    ("fellowes", "3 customers bought it together with", "Many customers pair it with", "popularity"),
    ("drive", "It costs $45.00.", "It costs $45.00 and is popular with shoppers.", "popularity"),
    ("fellowes", "the Advantus Push Pins", "the Newell 322", "popularity"),  # real support is 1
    ("fellowes", "3 customers", "2 customers", "popularity"),  # below min_support
    ("basket_pair", "3 customers", "4 customers", "popularity"),  # real support is 3
    ("game", "It came out in 1997.", "It came out in 1997 and is trending.", "popularity"),
    ("game", "You rated Star Wars", "You bought Star Wars", "event"),  # a rating described as bought
    ("game", "It came out in 1997.", "It came out in 1997. Add it to your next order!", "for sale"),  # no price
    ("air_force", "A 1997 release.", "A 1997 release. Add it to your cart.", "for sale"),
    ("air_force", "you rated Fargo", "you watched Fargo", "event"),
    ("cart", "You added the", "You ordered the", "event"),
    ("drive", "You looked at the Xerox", "You bought the Xerox", "event"),
    ("basket", "you bought in", "you viewed in", "event"),
    ("coffee_anon", "you added to your cart", "you bought", "event"),
    ("fellowes", "for busy offices.", "for busy offices. It binds 300 sheets.", "number"),
    ("skillet", "Yours for $29.90.", "Yours for $29.90, with 2 spare handles.", "number"),
    ("game", "It came out in 1997.", "It runs 129 minutes.", "number"),
    ("fellowes", "Hi Claire!", "Hi Darrin!", "name"),
    ("basket", "Hi Maya!", "Hi Priya!", "name"),
    ("coffee_anon", "you'll like.", "you'll like, Tom.", "name"),
    ("fellowes", "It's $1,270.98", "It's $1,207.98", "price"),
    ("drive", "$45.00", "$54.00", "price"),
    ("basket", "Large is", "Large, at $24.99, is", "price"),  # the catalog has no price for it
    ("coffee_anon", "is a coffee maker.", "is a coffee maker. Yours for $39.00.", "price"),  # price 0: unknown
    ("towels", "Save $5.00", "Save $5.50", "price"),
    ("fellowes", "It's $1,270.98, now 20% off at $1,016.78.", "It's $1,270.98.", "price"),  # list price alone
    ("towels", "At 25% off, it comes to $14.99. Save $5.00.", "Yours for $19.99.", "price"),  # of a sale item
    ("fellowes", "20% off", "25% off", "discount"),
    ("towels", "25% off", "30% off", "discount"),
    ("drive", "It costs $45.00.", "It costs $45.00, now 10% off.", "discount"),
    ("fellowes", "Bush Somerset Collection Bookcase", "Bretford CR4500 Series Slim Rectangular Table", "title"),
    ("game", "Star Wars (1977)", "The English Patient (1996)", "title"),
    ("skillet", "Mainstays 12-Cup Coffee Maker, Black", "Better Homes & Gardens Ceramic Table Lamp", "title"),
]


def run(key: str, text: str | None = None) -> list[FalseClaim]:
    catalog, pid, uid, hist, base = TRUE[key]
    return AUDITORS[catalog].audit(base if text is None else text, pid, uid, hist)


@pytest.mark.parametrize("key", list(TRUE))
def test_true_narratives_have_no_false_claims(key: str, caplog: pytest.LogCaptureFixture) -> None:
    assert run(key) == []
    assert not caplog.records  # a clean result must not be an internal error swallowed by `audit`


@pytest.mark.parametrize(("key", "old", "new", "kind"), PERTURBED,
                         ids=[f"{k}:{kind}:{new[:24]}" for k, _, new, kind in PERTURBED])
def test_perturbed_narratives_are_caught(key: str, old: str, new: str, kind: str) -> None:
    base = TRUE[key][4]
    assert old in base
    claims = run(key, base.replace(old, new, 1))
    assert kind in [c.kind for c in claims], claims
    assert all(c.text and c.why.endswith(".") for c in claims)


def test_claims_name_the_offending_span_and_record() -> None:
    text = f"The {HILITER} is a keyboard."
    claims = AUDITORS["store"].audit(text, "OFF-AR-10003478", "DV-13045")
    assert [(c.kind, c.text) for c in claims] == [("kind", "keyboard")]
    assert HILITER in claims[0].why
    date = run("fellowes", TRUE["fellowes"][4].replace("November 2016", "June 2017"))
    assert [(c.kind, c.text) for c in date] == [("date", "June 2017")]
    assert "Bush Somerset Collection Bookcase" in date[0].why and "November 2016" in date[0].why


def test_min_support_is_respected() -> None:
    strict = Auditor(superstore(), min_support=4)
    catalog, pid, uid, hist, text = TRUE["fellowes"]
    assert [c.kind for c in strict.audit(text, pid, uid, hist)] == ["popularity"]


def test_odd_text_never_raises() -> None:
    auditor = AUDITORS["store"]
    for text in ["", "   ", "$", "%%%", "You bought", "this", "Meet the : a", "1" * 500, "\u00a7\u00a7 is a",
                 "May 2017", "It's $.", "The Game (1997)"]:
        assert isinstance(auditor.audit(text, "OFF-BI-10003910", "CG-12520"), list)
    assert isinstance(auditor.audit("It's $5.84.", "NO-SUCH-ID", "NOBODY"), list)


def test_summarize_counts_by_kind() -> None:
    claims = [run(key) for key in TRUE]
    claims.append(run("fellowes", TRUE["fellowes"][4].replace("20% off", "25% off").replace("Hi Claire", "Hi Sean")))
    out = summarize(claims)
    assert out["narratives"] == len(TRUE) + 1
    assert out["with_false_claims"] == 1
    assert out["false_claims"] == 2
    assert out["by_kind"]["discount"] == 1 and out["by_kind"]["name"] == 1 and out["by_kind"]["title"] == 0


def test_a_brand_with_digits_is_the_products_name_not_a_number() -> None:
    ds = _dataset("brands", [{"id": "h", "title": "3M Hangers With Command Adhesive", "brand": "3M",
                              "category": ["Furniture", "Furnishings"], "price": 3.70, "discount": 0.6},
                             {"id": "d", "title": "Master Caster Door Stop, Gray", "brand": "Master Caster",
                              "category": ["Furniture", "Furnishings"], "price": 8.0}],
                  [("G", "Gary Mole", "Consumer", {})], [("G", "d", "purchase", None, "2017-12-14")])
    audit = Auditor(ds)
    text = "Our pick for you: the 3M Hangers With Command Adhesive. Made by 3M. Now $1.48 instead of $3.70."
    assert audit.audit(text, "h", "G") == []
    wrong = audit.audit("Take a look at the Master Caster Door Stop, Gray. Made by 3M.", "d", "G")
    assert [c.kind for c in wrong] == ["number"]  # another product's brand stays a claim to check


# ---------------------------------------------------------------- relations, judged on the category paths
def fashion() -> Dataset:
    products = [
        {"id": "F1", "title": "Cashmere Ribbed Beanie", "category": ["Women", "Accessories"], "price": 58.0},
        {"id": "F2", "title": "Leather Belt Classic", "category": ["Men", "Accessories"], "price": 40.0},
        {"id": "F3", "title": "Organic Cotton Tee", "category": ["Women", "Tops"], "price": 32.0},
        {"id": "F4", "title": "Silk Twill Scarf", "category": ["Women", "Accessories"], "price": 74.0},
    ]
    inter = [("W1", p, "purchase", None, d) for p, d in (("F2", "2024-01-09"), ("F3", "2024-02-01"),
                                                        ("F4", "2024-03-05"))]
    return _dataset("fashion", products, [("W1", "Ingrid Solberg", None, {})], inter)


@pytest.mark.parametrize(("text", "false"), [
    ("The Cashmere Ribbed Beanie is from the same category as the Silk Twill Scarf you bought in March 2024.", 0),
    ("The Cashmere Ribbed Beanie is from the same department as the Organic Cotton Tee you bought in "
     "February 2024.", 0),
    ("The Cashmere Ribbed Beanie is a change of pace from the Leather Belt Classic you bought in January 2024.", 0),
    # a leaf of the same name on another path is another category
    ("The Cashmere Ribbed Beanie is from the same category as the Leather Belt Classic you bought in "
     "January 2024.", 1),
    ("You bought the Leather Belt Classic in January 2024, and this pick is from the same department as it. "
     "Meet the Cashmere Ribbed Beanie.", 1),
    ("The Cashmere Ribbed Beanie is a change of pace from the Silk Twill Scarf you bought in March 2024.", 1),
])
def test_relation_claims_are_checked_against_both_category_paths(text, false):
    claims = Auditor(fashion()).audit(text, "F1", "W1")
    assert [c.kind for c in claims] == ["relation"] * false, claims


def test_a_one_word_title_in_lower_case_is_the_word_not_the_film():
    """"suits watching with the kids" is a phrase; the film Kids (1995) is a title only as written."""
    products = [_film("1", "Toy Story", "1995", ["Animation", "Children's"]), _film("772", "Kids", "1995", ["Drama"])]
    inter = [("u", "772", "rating", 4.0, "1998-03-02")]
    auditor = Auditor(_dataset("films", products, [("u", None, None, {})], inter))
    assert auditor.audit("The Toy Story suits watching with the kids.", "1", "u") == []
    assert auditor.audit("You rated Kids in March 1998. Meet the Toy Story.", "1", "u") == []
    wrong = auditor.audit("You rated Kids in May 1998. Meet the Toy Story.", "1", "u")
    assert [c.kind for c in wrong] == ["date"]  # still read as the film where it is written as one


# ---------------------------------------------------------------- the claims the evidence-grounded narratives make
@pytest.mark.parametrize(("text", "false"), [
    # the stars the customer gave: 196 rated Star Wars 5 and Fargo 4
    ("Contact is a sci-fi film, like Star Wars, which you gave 5 stars in December 1997.", []),
    ("Contact is a sci-fi film, like Star Wars, which you gave 4 stars in December 1997.", ["rating"]),
    # a genre both films have: Contact is Drama / Sci-Fi, Fargo Crime / Drama / Thriller
    ("Contact is a drama, like Fargo (1996), which you gave 4 stars in January 1998.", []),
    ("Contact is a thriller, like Fargo (1996), which you gave 4 stars in January 1998.", ["relation"]),
    # an opinion closer is no kind claim
    ("Meet Contact. We think it's a good fit.", []),
])
def test_stars_and_shared_genres_are_checked_against_the_ratings_and_both_films(text, false):
    found = Auditor(movielens()).audit(text, "258", "196")
    assert [c.kind for c in found] == false, found


def test_a_quotation_must_be_the_catalogs_own_words_and_inch_marks_are_no_quotation():
    ds = home()
    auditor = Auditor(ds)
    said = 'Meet the Lodge 10.25 in. Cast Iron Skillet. In the catalog\'s words: "Pre-seasoned skillet".'
    assert auditor.audit(said, "HG-005", None) == []
    made_up = 'Meet the Lodge 10.25 in. Cast Iron Skillet. In the catalog\'s words: "Lasts a lifetime".'
    assert [c.kind for c in auditor.audit(made_up, "HG-005", None)] == ["quote"]
    inches = _dataset("inches", [{"id": "B1", "title": 'Acco Data Binder, Dark Blue, 11 1/2" X 14" 7/8"',
                                  "brand": "Acco", "category": ["Office Supplies", "Binders"], "price": 16.27}], [], [])
    assert Auditor(inches).audit('We think you\'ll like the Acco Data Binder, Dark Blue, 11 1/2" X 14" 7/8".',
                                 "B1", None) == []


def test_a_title_with_its_own_period_before_the_sentences_reads_either_way() -> None:
    # Superstore sells "DAX Wood Document Frame" and "DAX Wood Document Frame." (two ids): "the DAX Wood
    # Document Frame. It ..." names the recommended one as truly as the other; a third title is still false
    frame = {"brand": "DAX", "category": ["Furniture", "Furnishings"], "price": 13.73}
    ds = _dataset("frames", [{"id": "F1", "title": "DAX Wood Document Frame", **frame},
                             {"id": "F2", "title": "DAX Wood Document Frame.", **frame, "price": 9.99},
                             {"id": "C1", "title": "Eldon Wave Desk Accessories", **frame}],
                  [("U1", "Pat Lee", "Consumer", {})], [("U1", "C1", "purchase", None, "2017-09-03")])
    auditor = Auditor(ds)
    assert auditor.audit("We think you'll like the DAX Wood Document Frame. It's $13.73.", "F1", "U1") == []
    wrong = auditor.audit("We think you'll like the DAX Wood Document Frame. It's $13.73.", "C1", "U1")
    assert "title" in [c.kind for c in wrong]


def test_a_count_is_no_film_called_by_that_number() -> None:
    # MovieLens has a film called "187": "rated by 187 people" counts people; the count itself is checked
    # as a count, and the film, named as a title, is still a title
    films = {"category": ["Movies", "Drama"], "price": 0.0}
    ds = _dataset("films", [{"id": "330", "title": "187", **films}, {"id": "1", "title": "Dead Poets Society", **films},
                            {"id": "2", "title": "Fargo", **films}],
                  [("u1", "", "", {})], [("u1", "2", "rating", 5, "1998-02-01")])
    auditor = Auditor(ds)
    kinds = [c.kind for c in auditor.audit("Dead Poets Society was rated by 187 people who also rated Fargo.", "1", "u1")]
    assert "title" not in kinds
    assert "title" in [c.kind for c in auditor.audit("We think you'll like 187. You rated Fargo.", "1", "u1")]
