"""Loading the user's own catalog: happy paths on fixture files, and every validation error by message."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from recnarr.data.catalog import (
    CatalogError,
    LoadReport,
    load_catalog,
    load_column_map,
    load_interactions,
    load_products,
    load_users,
)
from recnarr.data.schema import INTERACTION_COLUMNS, PRODUCT_COLUMNS, USER_COLUMNS, Dataset


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


PRODUCTS_HEADER = "id,title,price,discount\n"


# ---------------------------------------------------------------- happy paths
def test_csv_and_jsonl_catalog(fixtures, tmp_path):
    ds = load_catalog(fixtures / "products.csv", fixtures / "interactions.csv", fixtures / "users.jsonl")
    p = ds.products.set_index("id")
    assert list(ds.products.columns) == PRODUCT_COLUMNS
    assert list(ds.users.columns) == USER_COLUMNS and list(ds.interactions.columns) == INTERACTION_COLUMNS
    assert list(p.index) == ["P1", "P2", "P3", "P4"]
    assert p.loc["P1", "category"] == ["Office Supplies", "Binders"]  # "A > B" path
    assert p.loc["P3", "category"] == ["Office Supplies", "Paper"]  # JSON list in a CSV cell
    assert p.loc["P1", "price"] == 12.5 and p.loc["P1", "discount"] == 0.2
    assert p.loc["P3", "currency"] == "USD" and p.loc["P3", "discount"] == 0.0  # defaults for empty cells
    assert list(p["in_stock"]) == [True, True, False, True]  # true / yes / false / 1
    assert p.loc["P1", "attributes"] == {"color": "Blue"}  # an extra column becomes an attribute
    assert p.loc["P2", "attributes"] == {"color": "Black"} and p.loc["P3", "attributes"] == {}
    assert p.loc["P1", "description"] == 'A sturdy 1" binder, letter size.'

    u = ds.users.set_index("id")
    assert u.loc["U1", "demographics"] == {"region": "South", "city": "Henderson"}
    assert u.loc["U2", "demographics"] == {"age": "41"} and u.loc["U2", "segment"] == "Corporate"

    it = ds.interactions
    assert len(it) == 7 and it["quantity"].tolist()[:3] == [2, 1, 3]
    assert it["timestamp"].iloc[1] == pd.Timestamp("2017-02-10 09:30:00")
    assert it["timestamp"].iloc[5] == pd.Timestamp("2017-01-19")  # Unix seconds
    assert it["timestamp"].iloc[6] == pd.Timestamp("2017-05-02 12:00:00")  # "Z" -> naive UTC
    assert it["event"].tolist()[4:] == ["view", "purchase", "rating"] and it["rating"].iloc[6] == 4.5
    assert ds.meta["load_report"]["skipped"] == 0

    # the typed row view and the on-disk round trip
    assert ds.product("P1").sale_price == 10.0
    back = Dataset.load(ds.save(tmp_path / "data"))
    assert back.product("P3") == ds.product("P3") and back.user("U1") == ds.user("U1")
    pd.testing.assert_frame_equal(back.interactions, ds.interactions)


def test_column_map_renames_and_combines_columns(fixtures):
    ds = load_catalog(fixtures / "shop_products.csv", fixtures / "shop_orders.jsonl",
                      column_map=fixtures / "shop_columns.yaml")
    a1 = ds.product("A-1")
    assert (a1.title, a1.price, a1.discount) == ("Fellowes Shredder", 129.99, 0.15)
    assert a1.category == ["Office Supplies", "Machines"]  # category from two columns
    assert ds.interactions["quantity"].tolist() == [1, 4]
    assert ds.users["id"].tolist() == ["C9"]  # no users file: users known by id


def test_parquet_and_jsonl_products(tmp_path):
    df = pd.DataFrame({"id": ["a", "b"], "title": ["Pen", "Ink"], "price": [1.5, 2.0],
                       "category": [["Office", "Pens"], ["Office", "Ink"]], "in_stock": [True, False]})
    df.to_parquet(tmp_path / "p.parquet")
    out = load_products(tmp_path / "p.parquet")
    assert out["category"].tolist() == [["Office", "Pens"], ["Office", "Ink"]]
    assert out["in_stock"].tolist() == [True, False]
    lines = [{"id": "x", "title": "Lamp", "price": 30, "attributes": {"color": "red", "watts": 40}}]
    write(tmp_path / "p.jsonl", "\n".join(json.dumps(r) for r in lines) + "\n")
    assert load_products(tmp_path / "p.jsonl")["attributes"].tolist() == [{"color": "red", "watts": "40"}]


# ---------------------------------------------------------------- validation errors, by message
def test_missing_column(tmp_path):
    path = write(tmp_path / "products.csv", "id,title\nA,Pen\n")
    with pytest.raises(CatalogError, match=r"products\.csv: missing column 'price'.*found: id, title"):
        load_products(path)


def test_missing_mapped_column_names_the_map(tmp_path):
    path = write(tmp_path / "products.csv", "sku,name,price\nA,Pen,1\n")
    cmap = write(tmp_path / "cols.yaml", "products: {id: sku, title: product_name}\n")
    with pytest.raises(CatalogError, match=r"missing column 'product_name' \(mapped to our 'title' by cols\.yaml\)"):
        load_products(path, cmap)


def test_column_map_unknown_field(tmp_path):
    cmap = write(tmp_path / "cols.yaml", "products: {identifier: sku}\n")
    with pytest.raises(CatalogError, match=r"cols\.yaml, section products: unknown field 'identifier'"):
        load_column_map(cmap)


@pytest.mark.parametrize(("value", "expect"), [
    ("abc", r"got 'abc'; expected a non-negative number"),
    ("-3", r"got '-3' \(negative\); expected a non-negative number"),
])
def test_bad_price(tmp_path, value, expect):
    path = write(tmp_path / "products.csv", f"{PRODUCTS_HEADER}A,Pen,1.0,0\nB,Ink,{value},0\n")
    with pytest.raises(CatalogError, match=rf"products\.csv, line 3, field 'price': {expect}") as e:
        load_products(path)
    assert [(err.line, err.field) for err in e.value.errors] == [(3, "price")]


def test_discount_outside_unit_interval(tmp_path):
    path = write(tmp_path / "products.csv", f"{PRODUCTS_HEADER}A,Pen,1.0,20\n")
    with pytest.raises(CatalogError, match=r"line 2, field 'discount': got '20'; expected a fraction in \[0, 1\)"):
        load_products(path)


def test_duplicate_product_id(tmp_path):
    path = write(tmp_path / "products.csv", f"{PRODUCTS_HEADER}A,Pen,1,0\nB,Ink,2,0\nA,Pencil,3,0\n")
    with pytest.raises(CatalogError, match=r"line 4, field 'id': duplicate product id 'A' \(first seen on line 2\)"):
        load_products(path)


def test_line_numbers_count_multiline_quoted_values(tmp_path):
    text = 'id,title,price,description\nA,Pen,1,"two\nlines"\nB,Ink,oops,\n'
    with pytest.raises(CatalogError, match=r"line 4, field 'price'"):
        load_products(write(tmp_path / "products.csv", text))


def test_unknown_product_id_in_interactions(tmp_path):
    path = write(tmp_path / "orders.csv", "user_id,product_id,timestamp\nU1,A,2017-01-01\nU1,ZZZ,2017-01-02\n")
    with pytest.raises(CatalogError, match=r"orders\.csv, line 3, field 'product_id': unknown product id 'ZZZ'; "
                                           r"expected an id from products\.csv"):
        load_interactions(path, ["A"], products_file="products.csv")


def test_unknown_user_id_when_users_are_given(tmp_path):
    path = write(tmp_path / "orders.csv", "user_id,product_id,timestamp\nU9,A,2017-01-01\n")
    with pytest.raises(CatalogError, match=r"line 2, field 'user_id': unknown user id 'U9'"):
        load_interactions(path, ["A"], ["U1"])


@pytest.mark.parametrize("value", ["2017-13-45", "03/14/2017", "yesterday"])
def test_bad_timestamp(tmp_path, value):
    path = write(tmp_path / "orders.csv", f"user_id,product_id,timestamp\nU1,A,2017-01-01\nU1,A,{value}\n")
    with pytest.raises(CatalogError, match=rf"orders\.csv, line 3, field 'timestamp': got '{value}'; expected an "
                                           r"ISO 8601 date/time"):
        load_interactions(path, ["A"])


@pytest.mark.parametrize(("name", "content", "expect"), [
    ("products.csv", "", r"products\.csv: empty file; expected a header line and at least one data row"),
    ("products.csv", "\n  \n", r"products\.csv: empty file"),
    ("products.csv", PRODUCTS_HEADER, r"products\.csv: empty file; expected at least one data row after the header"),
    ("products.jsonl", "", r"products\.jsonl: empty file; expected one JSON object per line"),
])
def test_empty_file(tmp_path, name, content, expect):
    with pytest.raises(CatalogError, match=expect):
        load_products(write(tmp_path / name, content))


def test_wrong_encoding(tmp_path):
    path = write(tmp_path / "products.csv", f"{PRODUCTS_HEADER}A,Pen,1,0\nB,Café crème,2,0\n", encoding="latin-1")
    with pytest.raises(CatalogError, match=r"products\.csv, line 3: not valid UTF-8 \(byte 0xe9 .*expected a UTF-8"):
        load_products(path)


def test_bad_json_line(tmp_path):
    path = write(tmp_path / "p.jsonl", '{"id": "A", "title": "Pen", "price": 1}\n{"id": "B", "title": \n')
    with pytest.raises(CatalogError, match=r"p\.jsonl, line 2: not valid JSON"):
        load_products(path)


def test_unknown_file_type(tmp_path):
    with pytest.raises(CatalogError, match=r"unknown file type '\.xlsx'"):
        load_products(write(tmp_path / "p.xlsx", "x"))


# ---------------------------------------------------------------- skip_invalid
def test_skip_invalid_reports_count_and_lines(tmp_path, capsys):
    products = write(tmp_path / "products.csv",
                     f"{PRODUCTS_HEADER}A,Pen,1,0\nB,Ink,abc,0\nC,Pad,2,1.5\nD,Cup,3,0\nE,,4,0\nF,Mug,5,0\n")
    orders = write(tmp_path / "orders.csv",
                   "user_id,product_id,timestamp\nU1,A,2017-01-01\nU1,B,2017-01-02\nU2,D,not-a-date\nU2,F,2017-02-01\n")
    strict = pytest.raises(CatalogError, match=r"products\.csv: 3 invalid products lines \(3-4, 6\)")
    with strict:
        load_catalog(products, orders)

    ds = load_catalog(products, orders, skip_invalid=True)
    assert ds.products["id"].tolist() == ["A", "D", "F"]
    assert ds.interactions["product_id"].tolist() == ["A", "F"]  # B was skipped, so its order is unknown
    report = ds.meta["load_report"]
    assert report["skipped"] == 5
    assert report["skipped_rows"] == {"products.csv": [3, 4, 6], "orders.csv": [3, 4]}
    assert report["loaded"] == {"products": 3, "interactions": 2, "users": 2}
    out = capsys.readouterr().out
    assert "skipped 5 invalid rows (products.csv lines 3-4, 6; orders.csv lines 3-4)" in out
    assert "orders.csv, line 3, field 'product_id': unknown product id 'B'" in out


def test_load_report_summary_without_problems():
    r = LoadReport(loaded={"products": 2})
    assert r.summary() == "loaded 2 products; no invalid rows" and r.n_skipped == 0


def test_users_file(tmp_path):
    users = write(tmp_path / "users.csv", "id,name,age\nU1,Ann,34\nU1,Bob,40\n")
    with pytest.raises(CatalogError, match=r"line 3, field 'id': duplicate user id 'U1'"):
        load_users(users)
    ok = load_users(write(tmp_path / "u2.csv", "id,name,age\nU1,Ann,34\n"))
    assert ok["demographics"].tolist() == [{"age": "34"}]


def test_timestamps_are_naive_utc(tmp_path):
    path = write(tmp_path / "o.jsonl", '{"user_id": "u", "product_id": "A", "timestamp": "2017-03-14T10:00:00+02:00"}\n')
    ts = load_interactions(path, ["A"])["timestamp"].iloc[0]
    assert ts.to_pydatetime() == datetime(2017, 3, 14, 8, 0, 0)


# ---------------------------------------------------------------- unknown prices, grouped errors, categories
def test_an_empty_price_loads_as_unknown_and_is_noted(tmp_path, capsys):
    path = write(tmp_path / "products.csv", f"{PRODUCTS_HEADER}A,Pen,1.5,0\nB,Made-to-order desk,,0\n")
    ds = load_catalog(path)
    assert ds.products["price"].tolist() == [1.5, 0.0]  # 0 = unknown, as every consumer reads it
    assert ds.meta["load_report"]["skipped"] == 0
    assert "1 of 2 products have no price" in ds.meta["load_report"]["notes"][0]
    assert "1 of 2 products have no price" in capsys.readouterr().out


def test_errors_are_grouped_per_field_with_counts_and_the_column_named(tmp_path):
    rows = "".join(f"P{i},Item {i},{'abc' if i % 10 else ''},{'0.5' if i % 10 else '7'}\n" for i in range(1, 31))
    path = write(tmp_path / "products.csv", "sku,name,price_usd,discount\n" + rows)
    cmap = write(tmp_path / "cols.yaml", "products: {id: sku, title: name, price: price_usd}\n")
    with pytest.raises(CatalogError) as e:
        load_products(path, cmap)
    msg = str(e.value)
    # 27 bad prices and 3 bad discounts: two groups, each with its count, lines and first examples
    assert "products.csv, field 'price' (column 'price_usd'): 27 problems on lines 2-10, 12-20, 22-30" in msg
    assert "products.csv, field 'discount': 3 problems on lines 11, 21, 31" in msg
    assert "products.csv, line 2, field 'price' (column 'price_usd'): got 'abc'" in msg  # parenthesis closed
    assert "... and 24 more like these" in msg
    assert msg.index("field 'price'") < msg.index("field 'discount'")  # the larger group first
    assert len(e.value.errors) == 30


@pytest.mark.parametrize(("cell", "expect"), [
    ('"{""dept"": ""kitchen""}"', r"\(a JSON object\)"),
    ("42", r"level '42' has no letters"),
    ('"[""Home"", 7]"', r"level 7 is not text"),
])
def test_a_category_that_is_not_a_path_is_rejected(tmp_path, cell, expect):
    path = write(tmp_path / "products.csv", f"id,title,price,category\nA,Pen,1,Office > Pens\nB,Mug,2,{cell}\n")
    with pytest.raises(CatalogError, match=rf"line 3, field 'category': got .*{expect}"):
        load_products(path)
    ok = load_products(write(tmp_path / "ok.csv", "id,title,price,category\nA,Pen,1,Office > Pens\n"))
    assert ok["category"].tolist() == [["Office", "Pens"]]
