"""Placeholder values (a category named "category", a description that is the id, "Sample Product") and
category paths in another order on some rows: kept by a load, named by `recnarr data check`."""

from __future__ import annotations

import time

import pytest

from recnarr.data.check import check_files
from recnarr.data.placeholders import inconsistent_category_order, placeholder


@pytest.mark.parametrize("field, value, why", [
    ("category", "category", "a column name"),
    ("category", " Sub_Category ", "a column name"),
    ("category", "Type", "a column name"),
    ("category", "N/A", "a null marker"),
    ("category", "null", "a null marker"),
    ("category", "unknown", "a null marker"),
    ("title", "Sample Product", "test or sample data"),
    ("title", "test item 3", "test or sample data"),
    ("title", "Lorem ipsum", "test or sample data"),
    ("title", "Product", "a column name"),
    ("name", "Sample", "test or sample data"),
    ("name", "Dummy User", "test or sample data"),
    ("name", "name", "a column name"),
    ("brand", "Brand", "a column name"),
    ("brand", "none", "a null marker"),
    ("brand", "n/a", "a null marker"),
    ("description", "description", "a column name"),
    ("description", "Lorem ipsum dolor sit amet", "filler text"),
    ("description", "TBD", "filler text"),
    ("description", "todo", "filler text"),
    ("description", "-", "a null marker"),
])
def test_placeholders_are_named(field, value, why):
    assert placeholder(field, value) == why


@pytest.mark.parametrize("field, value", [
    ("category", "Misc"),  # a real bucket shops use
    ("category", "Furniture"),
    ("brand", "Generic"),  # a real word on unbranded goods
    ("brand", "Acme"),
    ("title", "Hon Stacking Chair"),
    ("title", "Testosterone Booster"),  # "Test" only as a word of its own
    ("name", "Claire Gute"),
    ("name", "Samantha"),
    ("description", "A sturdy binder."),
    ("description", ""),  # missing, reported as missing elsewhere
    ("description", None),
    ("title", 42),  # not text: the loader's concern
])
def test_real_values_are_not_placeholders(field, value):
    assert placeholder(field, value) is None


def test_a_description_that_repeats_the_id_or_title():
    assert placeholder("description", " p-12 ", product_id="P-12", title="Desk") == "the product id"
    assert placeholder("description", "oak  DESK", product_id="P-12", title="Oak Desk") == "the title repeated"
    assert placeholder("description", "An oak desk.", product_id="P-12", title="Oak Desk") is None
    assert placeholder("title", "P-12", product_id="P-12") is None  # an id as title is not a description check


def test_inverted_category_paths_are_found():
    found = inconsistent_category_order([["Furniture", "Chairs"], ["Furniture", "Tables"], ["Chairs", "Furniture"],
                                         ["Office"], ["Office", "Paper"]])
    assert len(found) == 1, found  # one swap is one finding, not one per level
    assert found[0].startswith("'Furniture' is the first level of 2 paths (e.g. Furniture > Chairs) and the "
                               "last of 1 (e.g. Chairs > Furniture)")
    # the same level order everywhere, and a level in the middle of another path, are consistent
    assert inconsistent_category_order([["A", "B", "C"], ["A", "C"], ["B"], ["X", "A", "Y"]]) == []
    assert inconsistent_category_order([]) == []


def test_fast_on_ten_thousand_rows():
    paths = [["Office", f"Aisle {i % 50}", f"Shelf {i}"] for i in range(10_000)]
    t = time.perf_counter()
    assert inconsistent_category_order(paths) == []
    for i, p in enumerate(paths):
        for level in p:
            placeholder("category", level)
        placeholder("description", f"Item {i} in {p[1]}", product_id=f"P{i}", title=f"Item {i}")
    assert time.perf_counter() - t < 2.0  # ~0.1 s here; a regex per value, not per pair of rows


def test_check_names_placeholders_and_category_order(tmp_path):
    (tmp_path / "p.csv").write_text(
        "id,title,brand,category,price,description\n"
        "P1,Oak Desk,Acme,category,120,A solid oak desk.\n"  # a header value landed in a row
        "P2,Sample Product,Generic,Furniture > Chairs,40,P2\n"  # a test fixture; description = id
        "P3,Lamp,none,Chairs > Furniture,15,lamp\n"  # path inverted; description = title
        "P4,Rug,Misc,Misc > Rugs,30,A wool rug.\n")
    (tmp_path / "u.jsonl").write_text('{"id": "U1", "name": "Sample"}\n{"id": "U2", "name": "Claire Gute"}\n')
    text, bad = check_files(tmp_path / "p.csv", users=tmp_path / "u.jsonl")
    assert bad == 0 and "result: ready to load" in text  # placeholders are notes: the rows are valid
    notes = [line for line in text.splitlines() if line.startswith("note: ")]
    assert "note: 1 of 4 products have a placeholder category: P1 'category' (a column name)" in notes
    assert "note: 1 of 4 products have a placeholder title: P2 'Sample Product' (test or sample data)" in notes
    assert ("note: 2 of 4 products have a placeholder description: P2 'P2' (the product id), "
            "P3 'lamp' (the title repeated)") in notes
    assert "note: 1 of 4 products have a placeholder brand: P3 'none' (a null marker)" in notes  # not Generic
    assert "note: 1 of 2 users have a placeholder name: U1 'Sample' (test or sample data)" in notes
    order = [n for n in notes if "category levels in another order" in n]
    assert len(order) == 1 and "(e.g. Furniture > Chairs)" in order[0] and "(e.g. Chairs > Furniture)" in order[0]
    assert not any("Misc" in n or "Acme" in n or "Claire" in n for n in notes)


def test_examples_stop_at_three(tmp_path):
    rows = "".join(f"P{i},Test Product {i},Acme,Office,{i + 1}\n" for i in range(5))
    (tmp_path / "p.csv").write_text("id,title,brand,category,price\n" + rows)
    text, _ = check_files(tmp_path / "p.csv")
    assert ("note: 5 of 5 products have a placeholder title: P0 'Test Product 0' (test or sample data), "
            "P1 'Test Product 1' (test or sample data), P2 'Test Product 2' (test or sample data), "
            "and 2 more") in text


def test_a_clean_catalog_has_no_placeholder_notes(fixtures):
    text, _ = check_files(fixtures / "products.csv", fixtures / "interactions.csv", fixtures / "users.jsonl")
    assert "placeholder" not in text and "another order" not in text
