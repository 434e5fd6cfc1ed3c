"""The two bundled real datasets, loaded from the registry files into the common schema."""

from __future__ import annotations

import csv
import statistics

import pandas as pd
import pytest

from recnarr.data import sources
from recnarr.data.movielens import display_title
from recnarr.data.schema import INTERACTION_COLUMNS, PRODUCT_COLUMNS, USER_COLUMNS, Dataset
from recnarr.data.superstore import CSV_MEMBER, brand_lexicon, brand_of, title_attributes


def test_superstore_counts(superstore):
    ds = superstore
    assert list(ds.products.columns) == PRODUCT_COLUMNS and list(ds.users.columns) == USER_COLUMNS
    assert list(ds.interactions.columns) == INTERACTION_COLUMNS
    # 1,862 Product IDs; 32 of them name two different products, which get their own ids (`<id>-2`)
    assert len(ds.products) == 1894 and ds.products["id"].is_unique
    assert ds.products["id"].str.replace(r"-2$", "", regex=True).nunique() == 1862
    assert ds.products["id"].str.endswith("-2").sum() == 32 == ds.meta["shared_product_ids"]
    assert len(ds.users) == 793 and len(ds.interactions) == 9994 and ds.meta["orders"] == 5009
    assert ds.interactions["product_id"].isin(ds.products["id"]).all()
    assert ds.interactions["user_id"].isin(ds.users["id"]).all()
    assert (ds.interactions["event"] == "purchase").all() and ds.interactions["quantity"].min() >= 1
    assert ds.interactions["timestamp"].min() == pd.Timestamp("2014-01-03")
    assert {len(c) for c in ds.products["category"]} == {2}
    assert ((ds.products["discount"] >= 0) & (ds.products["discount"] < 1)).all() and (ds.products["price"] > 0).all()


def test_superstore_unit_price_and_discount(superstore, shared_cache):
    # recompute from the raw file: unit price = Sales / Quantity / (1 - Discount), median, rounded to cents
    path = sources.fetch("superstore", shared_cache) / CSV_MEMBER
    with open(path, newline="") as f:
        lines = [r for r in csv.DictReader(f) if r["Product ID"] == "OFF-BI-10002215"]
    units = [float(r["Sales"]) / int(r["Quantity"]) / (1 - float(r["Discount"])) for r in lines]
    latest = max(lines, key=lambda r: (r["Order Date"], int(r["Row ID"])))
    p = superstore.product("OFF-BI-10002215")
    assert p.title == 'Wilson Jones Hanging View Binder, White, 1"'
    assert p.price == round(statistics.median(units), 2) == 7.10
    assert p.discount == float(latest["Discount"]) == 0.2 and p.sale_price == 5.68
    assert p.brand == "Wilson Jones" and p.attributes["color"] == "white"
    assert p.category == ["Office Supplies", "Binders"] and p.attributes["sub_category"] == "Binders"
    assert p.description.startswith('Wilson Jones Hanging View Binder, White, 1": binders by Wilson Jones')
    # first row of the file: 261.96 / 2 / (1 - 0) = 130.98
    assert superstore.product("FUR-BO-10001798").price == 130.98


def test_superstore_shared_ids_are_split_deterministically(superstore):
    a, b = superstore.product("FUR-CH-10001146"), superstore.product("FUR-CH-10001146-2")
    assert {a.title, b.title} == {"Global Value Mid-Back Manager's Chair, Gray", "Global Task Chair, Black"}
    assert a.price != b.price
    # the name on more order lines keeps the id
    counts = superstore.interactions["product_id"].value_counts()
    assert counts["FUR-CH-10001146"] >= counts["FUR-CH-10001146-2"]


def test_superstore_users(superstore):
    u = superstore.user("CG-12520")
    assert (u.name, u.segment) == ("Claire Gute", "Consumer")
    # 2 order lines each in Dallas and Henderson (and 1 in Houston): a tie goes to the place ordered from first
    assert u.demographics == {"region": "Central", "state": "Texas", "city": "Dallas", "country": "United States"}
    assert superstore.user("AA-10315").demographics["city"] == "Round Rock"  # 4 of 11 lines


def test_brand_rules():
    titles = ["Avery 1", "Avery 2", "Avery 3", "Recycled Paper", "Recycled Pads", "Recycled Labels",
              "Acme Recycled Tray", "Acme Recycled Folder", "Zorbo Pen", "Zorbo Pad", "Zorbo Cup"]
    lex = brand_lexicon(titles)
    assert lex["zorbo"] == "Zorbo"  # recurring leading word, rare elsewhere: a brand
    assert "recycled" not in lex  # recurs first but is common mid-title: a description
    assert brand_of("Wilson Jones Binder", lex) == "Wilson Jones"  # curated multi-word, longest match
    assert brand_of("SAFCO Mobile Desk", lex) == "Safco"  # curated spelling
    assert brand_of("Recycled Paper", lex) is None
    assert brand_of("Hewlett Packard LaserJet", lex) == "Hewlett-Packard"


def test_title_attributes():
    assert title_attributes("Quartet Omega Colored Chalk, 12/Pack") == {"pack": "pack of 12"}
    assert title_attributes("Metal Folding Chairs, Beige, 4/Carton") == {
        "color": "beige", "material": "metal", "pack": "pack of 4"}
    assert title_attributes('Xerox Color Copier Paper, 11" x 17", Ream')["size"] == '11" x 17"'
    assert title_attributes("Fellowes Drawer File, Letter/Legal Size")["size"] == "Letter/legal size"
    assert title_attributes("Bush Westfield Collection Bookcases, Medium Cherry Finish")["finish"] == "cherry"
    assert title_attributes("Xerox 1946") == {}


def test_movielens(movielens):
    ds = movielens
    assert (len(ds.products), len(ds.users), len(ds.interactions)) == (1682, 943, 100_000)
    assert ds.meta["has_prices"] is False
    toy = ds.product("1")
    assert (toy.title, toy.price, toy.currency) == ("Toy Story", 0.0, "N/A")
    assert toy.attributes == {"year": "1995", "genres": "Animation, Children's, Comedy"}
    assert toy.category == ["Movies", "Animation"]
    assert ds.user("1").demographics == {"age": "24", "gender": "M", "occupation": "technician", "zip": "85711"}
    first = ds.interactions.iloc[0]
    assert (first["user_id"], first["product_id"], first["event"], first["rating"]) == ("196", "242", "rating", 3.0)
    assert first["timestamp"] == pd.Timestamp(881250949, unit="s")
    assert ds.interactions["rating"].between(1, 5).all()
    assert ds.interactions["product_id"].isin(ds.products["id"]).all()


@pytest.mark.parametrize(("raw", "shown"), [
    ("Butcher Boy, The", "The Butcher Boy"), ("Misérables, Les", "Les Misérables"),
    ("Double vie de Véronique, La (Double Life of Veronique, The)",
     "La Double vie de Véronique (The Double Life of Veronique)"),
    ("Toy Story", "Toy Story"),
])
def test_display_title(raw, shown):
    assert display_title(raw) == shown


def test_real_dataset_round_trips_on_disk(superstore, tmp_path):
    back = Dataset.load(superstore.save(tmp_path / "data"))
    assert back.checksum() == superstore.checksum()
    assert back.product("OFF-BI-10002215") == superstore.product("OFF-BI-10002215")
    pd.testing.assert_frame_equal(back.interactions, superstore.interactions)
