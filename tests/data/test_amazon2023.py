"""Amazon Reviews 2023: the released per-category files (fixture in the exact published format) through
the adapter, the catalog's validation and the data stage."""

from __future__ import annotations

import gzip
import json
import shutil
import time
from datetime import UTC, datetime

import pytest

from recnarr.cli import main
from recnarr.config import load_config
from recnarr.data import amazon2023, run_data
from recnarr.data.catalog import CatalogError

CATEGORY = "Home_and_Kitchen"


@pytest.fixture
def released(fixtures):
    return fixtures / "amazon2023" / f"meta_{CATEGORY}.jsonl", fixtures / "amazon2023" / f"{CATEGORY}.jsonl"


def test_the_released_files_load_into_the_schema(released):
    meta, reviews = released
    ds = amazon2023.load_amazon2023(meta, reviews, category=CATEGORY)
    raw_meta = [json.loads(line) for line in meta.read_text().splitlines()]
    raw_reviews = [json.loads(line) for line in reviews.read_text().splitlines()]
    assert len(ds.products) == len(raw_meta) and len(ds.interactions) == len(raw_reviews)
    p = ds.products.set_index("id")
    skillet = p.loc["B00006JSUA"]
    assert skillet["brand"] == "Lodge" and skillet["price"] == 19.9 and skillet["currency"] == "USD"
    assert skillet["category"] == ["Home & Kitchen", "Kitchen & Dining", "Cookware", "Skillets"]
    assert skillet["attributes"]["Material"] == "Cast Iron"  # details as attributes
    assert skillet["description"].startswith("Keeps heat evenly") and "Pre-seasoned with" in skillet["description"]
    assert p.loc["B07PGL2N7J", "category"] == ["Amazon Home"]  # no categories: the main category
    assert p.loc["B07PGL2N7J", "price"] == 13.99  # "$13.99" as some files write it
    unknown = {m["parent_asin"] for m in raw_meta if m["price"] is None}
    assert set(p.index[p["price"] == 0]) == unknown and len(unknown) == 3  # null price: kept, unknown
    assert "3 of 12 products have no price" in ds.meta["load_report"]["notes"][0]
    # reviews: keyed by parent_asin (a child asin is a variant), dated to the millisecond, rating events
    first = raw_reviews[0]
    row = ds.interactions.iloc[0]
    assert row["product_id"] == first["parent_asin"] != first["asin"]
    assert row["timestamp"].to_pydatetime() == datetime.fromtimestamp(first["timestamp"] / 1000, UTC).replace(tzinfo=None)
    assert set(ds.interactions["event"]) == {"rating"} and row["rating"] == first["rating"]
    assert ds.meta["verified_reviews"] == sum(r["verified_purchase"] for r in raw_reviews)
    assert len(ds.users) == len({r["user_id"] for r in raw_reviews})


def test_gzipped_files_stream_the_same(released, tmp_path):
    plain = amazon2023.load_amazon2023(*released)
    gz = []
    for src in released:
        dst = tmp_path / (src.name + ".gz")
        with gzip.open(dst, "wb") as f:
            f.write(src.read_bytes())
        gz.append(dst)
    packed = amazon2023.load_amazon2023(*gz)
    assert packed.products.equals(plain.products) and packed.interactions.equals(plain.interactions)
    cut = tmp_path / "cut.jsonl.gz"  # a partial download
    cut.write_bytes(gz[1].read_bytes()[:300])
    with pytest.raises(CatalogError, match=r"cut\.jsonl\.gz: cannot read .*partial download"):
        amazon2023.load_amazon2023(gz[0], cut)


def test_bad_lines_are_named_by_file_line_and_field(released, tmp_path):
    meta, reviews = released
    lines = meta.read_text().splitlines()
    broken = json.loads(lines[1])
    broken["price"] = "call for price"
    lines[1] = json.dumps(broken)
    lines.insert(3, '{"main_category": "Amazon Home", "title": ')
    bad_meta = tmp_path / meta.name
    bad_meta.write_text("\n".join(lines) + "\n")
    with pytest.raises(CatalogError) as e:
        amazon2023.load_amazon2023(bad_meta, reviews)
    msg = str(e.value)
    assert f"{meta.name}, line 2, field 'price': got 'call for price'" in msg
    assert f"{meta.name}, line 4: not valid JSON" in msg
    # skipped on request, each named; the reviews of the skipped product are reported, not dropped quietly
    ds = amazon2023.load_amazon2023(bad_meta, reviews, skip_invalid=True)
    report = ds.meta["load_report"]
    lost = broken["parent_asin"]
    n_reviews = sum(json.loads(r)["parent_asin"] == lost for r in reviews.read_text().splitlines())
    assert report["skipped_rows"][meta.name] == [2, 4] and len(report["skipped_rows"][reviews.name]) == n_reviews
    assert lost not in set(ds.products["id"])


def test_the_data_stage_finds_the_category_in_the_cache_and_says_where_it_belongs(released, tmp_path, capsys):
    run = [f"run_dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}", "data.dataset=amazon2023",
           f"data.category={CATEGORY}"]
    assert main(["data", "load", "--preset", "tiny", *run]) == 1
    err = capsys.readouterr().err
    folder = tmp_path / "cache" / "amazon2023" / CATEGORY
    assert f"expected meta_{CATEGORY}.jsonl and {CATEGORY}.jsonl" in err and str(folder) in err
    folder.mkdir(parents=True)
    for src in released:
        shutil.copy(src, folder)
    assert main(["data", "load", "--preset", "tiny", *run]) == 0
    ds = run_data.load_dataset(load_config("tiny", run))
    assert ds.name == "amazon2023" and len(ds.products) == 12 and set(ds.interactions["split"]) >= {"train", "test"}


def test_fetch_offline_fails_at_once_with_where_to_put_the_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = time.perf_counter()
    code = main(["data", "fetch", "amazon2023", "--category", "All_Beauty", "--preset", "tiny",
                 f"cache_dir={tmp_path}"])
    assert code == 1 and time.perf_counter() - t < 5
    err = capsys.readouterr().err
    assert "offline" in err and "raw/review_categories/All_Beauty.jsonl" in err
    assert str(tmp_path / "amazon2023" / "All_Beauty") in err


def test_chunked_validation_equals_one_pass_and_still_lists_every_bad_line(released, tmp_path, monkeypatch):
    whole = amazon2023.load_amazon2023(*released)
    monkeypatch.setattr(amazon2023, "CHUNK", 4)  # 12 products and 25 reviews in chunks of 4
    chunked = amazon2023.load_amazon2023(*released)
    assert chunked.products.equals(whole.products) and chunked.interactions.equals(whole.interactions)
    meta, reviews = released
    lines = meta.read_text().splitlines()
    for i in (1, 9):  # a bad price in the first chunk and one in the third
        rec = json.loads(lines[i])
        rec["price"] = "ask"
        lines[i] = json.dumps(rec)
    lines.append(lines[0])  # and a duplicate id in the last chunk, seen first in the first one
    bad = tmp_path / meta.name
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(CatalogError) as e:
        amazon2023.load_amazon2023(bad, reviews)
    assert sorted((err.line, err.field) for err in e.value.errors) == [(2, "price"), (10, "price"), (13, "id")]
