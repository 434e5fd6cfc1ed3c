"""`recnarr data check`: one report of a catalog's problems before loading, on files with every kind."""

from __future__ import annotations

from recnarr.cli import main
from recnarr.data.check import check_files


def test_a_clean_catalog_is_ready(fixtures):
    text, bad = check_files(fixtures / "products.csv", fixtures / "interactions.csv", fixtures / "users.jsonl")
    assert bad == 0 and "ready to load" in text
    assert "products:" in text and "valid 4, invalid 0" in text


def test_every_problem_in_one_report(tmp_path, capsys):
    (tmp_path / "p.csv").write_text(
        "sku,name,cost,dept,aisle,colour\n"
        "A,Desk,,Office,Desks,oak\n"  # unknown price: kept, noted
        "B,Lamp,abc,Office,Lamps,\n"  # invalid price
        "C,Chair,12,Office,42,\n"  # a category level that is an id
        "D,Shelf,-1,Office,Shelves,white\n"  # invalid price
        "E,Rug,30,Home,Rugs,\n")  # never bought
    (tmp_path / "o.jsonl").write_text('{"customer": "u1", "sku": "A", "at": "2024-01-02"}\n'
                                      '{"customer": "u1", "sku": "Z", "at": "2024-01-03"}\n'
                                      '{"customer": "u2", "sku": "A", "at": "yesterday"}\n')
    (tmp_path / "map.yaml").write_text("products: {id: sku, title: name, price: cost, category: [dept, aisle]}\n"
                                       "interactions: {user_id: customer, product_id: sku, timestamp: at}\n")
    args = ["data", "check", "data.dataset=custom", f"data.catalog={tmp_path / 'p.csv'}",
            f"data.interactions={tmp_path / 'o.jsonl'}", f"data.column_map={tmp_path / 'map.yaml'}",
            f"run_dir={tmp_path / 'run'}"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "columns: id <- sku, title <- name, category <- dept + aisle, price <- cost" in out
    assert "not in the file (defaults): brand (none), currency (USD), discount (0)" in out
    assert "extra columns -> attributes: colour" in out
    assert "p.csv, field 'price' (column 'cost'): 2 problems on lines 3, 5" in out
    assert "p.csv, field 'category' (column 'dept, aisle'): 1 problem on line 4" in out
    assert "o.jsonl, field 'product_id' (column 'sku'): 1 problem on line 2" in out  # unknown product Z
    assert "o.jsonl, field 'timestamp' (column 'at'): 1 problem on line 3" in out
    assert "note: 1 of 2 products have no price" in out  # of the valid ones: A and E
    assert "result: 5 invalid rows" in out
    assert not (tmp_path / "run").exists()  # a check writes nothing


def test_a_file_that_cannot_load_is_reported_not_raised(tmp_path):
    (tmp_path / "p.csv").write_text("id,title\nA,Desk\n")
    text, bad = check_files(tmp_path / "p.csv")
    assert bad == 1 and "cannot load: p.csv: missing column 'price'" in text


def test_a_missing_required_column_is_named_not_called_invalid_rows(tmp_path):
    # price is required (catalog.REQUIRED): every row would fail, so skip_invalid is no advice
    (tmp_path / "p.csv").write_text("id,title,cost\nA,Desk,10\nB,Lamp,5\n")
    text, bad = check_files(tmp_path / "p.csv")
    result = text.splitlines()[-1]
    assert bad == 1  # non-zero: `recnarr data check` exits 1
    assert result.startswith("result: p.csv lacks the required column 'price': add it, or map yours with a "
                             "column map (data.column_map=<yaml> with `products: {price: your_column}`)"), result
    assert "invalid rows" not in result and "skip_invalid" not in result


def test_every_missing_column_is_named_and_a_wrong_map_entry_too(tmp_path):
    (tmp_path / "p.csv").write_text("sku,name\nA,Desk\n")
    (tmp_path / "map.yaml").write_text("products: {id: sku, price: cost}\n")
    text, bad = check_files(tmp_path / "p.csv", column_map=tmp_path / "map.yaml")
    result = text.splitlines()[-1]
    assert bad == 1
    assert "p.csv lacks the required column 'title'" in result  # not only the first one column_plan saw
    assert "p.csv has no column 'cost' that map.yaml maps to: add it, or fix `products: {price: cost}`" in result
    assert "skip_invalid" not in result


def test_missing_columns_and_invalid_rows_each_get_their_advice(tmp_path):
    (tmp_path / "p.csv").write_text("id,title,price\nA,Desk,10\nB,Lamp,abc\n")
    (tmp_path / "o.csv").write_text("user_id,product_id\nu1,A\n")  # no timestamp column
    text, bad = check_files(tmp_path / "p.csv", tmp_path / "o.csv")
    result = text.splitlines()[-1]
    assert bad == 2  # one invalid row + one file that cannot load
    assert "o.csv lacks the required column 'timestamp'" in result
    assert "1 invalid rows: fix them, or load with data.skip_invalid=true" in result


def test_a_small_shop_is_told_so(fixtures):
    home = fixtures.parent.parent / "inference" / "fixtures" / "home"
    text, bad = check_files(home / "products.csv", home / "orders.jsonl", home / "customers.jsonl",
                            home / "columns.yaml")
    assert bad == 0 and "note: small shop: 15 interactions (< 1,000)" in text
    big, _ = check_files(fixtures / "products.csv", fixtures / "interactions.csv")
    assert "small shop" in big  # the tiny fixture is one too
    from recnarr.data.check import small_shop_note

    assert small_shop_note(1000) is None and small_shop_note(999) and small_shop_note(5, threshold=0) is None
