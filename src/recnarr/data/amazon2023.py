"""Amazon Reviews 2023 (McAuley Lab, https://amazon-reviews-2023.github.io): the per-category files as
released, streamed, into the same schema as every other catalog.

Files (`.jsonl` or `.jsonl.gz`, one JSON object per line; a category can be gigabytes, so both are read
a line at a time and only our fields are kept):

- `<Category>.jsonl`, reviews: rating, title, text, images, asin, parent_asin, user_id, timestamp (Unix
  milliseconds), helpful_vote, verified_purchase.
- `meta_<Category>.jsonl`, products: main_category, title, average_rating, rating_number, features,
  description, price, images, videos, store, categories, details, parent_asin, bought_together.

Mapping (products are keyed by `parent_asin`, the id reviews and meta share):
- product: title; `store` as brand; `categories` as the path (`[main_category]` when the list is empty);
  `price` in USD, `null` = unknown (such a product gets no price claim); `details` as attributes;
  `description` paragraphs joined as the description, `features` (the bullet points) after them.
- interaction: one per review, event `rating` with its stars, dated by the review. A verified purchase is
  still a rating event: the review's time is not the purchase time, so "you bought it in May" would
  state a date no record holds; "you rated it in May" is exactly what the record says.
  `meta["verified_reviews"]` counts the verified ones.
- users: the reviewers, by id only (the dataset has no names or demographics).

Every record passes the catalog's own validation (`recnarr.data.catalog`): a bad line is reported with
its file, line and field, and a strict load lists them all.

`recnarr data fetch amazon2023 --category NAME` downloads the two raw files from the Hugging Face hub
(`huggingface_hub`, which `transformers` brings); offline it stops at once and says where to put them.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from recnarr.data.catalog import (
    CatalogError,
    LoadReport,
    RawTable,
    RowError,
    interactions_from_table,
    note_unpriced,
    products_from_table,
    users_from_interactions,
)
from recnarr.data.schema import INTERACTION_COLUMNS, PRODUCT_COLUMNS, Dataset

HUB_REPO = "McAuley-Lab/Amazon-Reviews-2023"
HUB_HOST = "huggingface.co"
SITE = "https://amazon-reviews-2023.github.io"
REVIEWS = "raw/review_categories/{category}.jsonl"
META = "raw/meta_categories/meta_{category}.jsonl"
_PRICE_RE = re.compile(r"\$?\s*(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?")


def expected_files(category: str) -> tuple[str, str]:
    """(meta, reviews) file names of a category, as released."""
    return Path(META.format(category=category)).name, Path(REVIEWS.format(category=category)).name


def find_files(folder: Path, category: str) -> tuple[Path, Path]:
    """The category's meta and reviews files under `folder` (plain or .gz, flat or in the release's
    `raw/meta_categories`, `raw/review_categories` layout)."""
    found = []
    for rel in (META, REVIEWS):
        rel = rel.format(category=category)
        candidates = [folder / p for p in (Path(rel).name, rel, Path(rel).relative_to("raw"))]
        hit = next((c.with_name(c.name + gz) for c in candidates for gz in ("", ".gz")
                    if c.with_name(c.name + gz).exists()), None)
        if hit is None:
            raise FileNotFoundError(missing_message(folder, category))
        found.append(hit)
    return found[0], found[1]


def missing_message(folder: Path, category: str) -> str:
    meta, reviews = expected_files(category)
    return (f"Amazon Reviews 2023 '{category}' is not in {folder}: expected {meta} and {reviews} (or .jsonl.gz). "
            f"Download them from https://huggingface.co/datasets/{HUB_REPO} ({META.format(category=category)}, "
            f"{REVIEWS.format(category=category)}) or {SITE}, and put them in {folder}; or run "
            f"`recnarr data fetch amazon2023 --category {category}` where the hub is reachable; or name the files "
            f"with data.catalog=<meta file> data.interactions=<reviews file>")


# ---------------------------------------------------------------- streaming the released files
def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON or a `RowError`) for every non-blank line of a .jsonl / .jsonl.gz file."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    yield n, json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    yield n, RowError(path.name, n, None, "not valid UTF-8; expected the released UTF-8 JSONL")
                except json.JSONDecodeError as e:
                    yield n, RowError(path.name, n, None, f"not valid JSON ({e.msg}); expected one JSON object "
                                                          "per line")
    except (OSError, EOFError) as e:  # a truncated download: gzip raises at the cut
        raise CatalogError(f"{path.name}: cannot read ({e}); a partial download? Fetch the file again") from None


CHUNK = 100_000  # lines validated and turned into columns at a time: memory for one chunk of dicts


def _chunks(path: Path, convert, columns: list[str]) -> Iterator[RawTable]:
    """The file's lines converted to our fields (`columns`), in chunks for the catalog's validation."""
    table, seen, size = RawTable(path, columns, []), False, CHUNK
    for n, rec in iter_jsonl(path):
        seen = True
        if isinstance(rec, RowError):
            table.errors.append(rec)
        elif not isinstance(rec, dict):
            table.errors.append(RowError(path.name, n, None, f"got a JSON {type(rec).__name__}; expected an object"))
        else:
            table.rows.append((n, convert(rec)))
        if len(table.rows) >= size:
            yield table
            table = RawTable(path, columns, [])
    if not seen:
        raise CatalogError(f"{path.name}: empty file; expected one JSON object per line")
    yield table


def _price(v: Any) -> Any:
    """The release's price: a number, null, or (in some files) text such as "$12.99" or "None"."""
    if v is None or isinstance(v, (int, float)):
        return v
    s = str(v).strip()
    if s in ("", "None", "null", "—", "-"):
        return None
    m = _PRICE_RE.fullmatch(s)
    return float(m.group(1).replace(",", "") + (m.group(2) or "")) if m else s  # other text: reported


def _paragraphs(v: Any) -> list[str]:
    items = v if isinstance(v, list) else [v] if v else []
    return [" ".join(str(x).split()) for x in items if str(x).strip()]


def product_record(m: dict[str, Any]) -> dict[str, Any]:
    """A meta line as our product fields (still to be validated)."""
    cats = m.get("categories")
    if not cats and m.get("main_category"):
        cats = [m["main_category"]]
    details = m.get("details")
    if isinstance(details, str):  # the hub's parquet conversion stores details as JSON text
        try:
            details = json.loads(details)
        except json.JSONDecodeError:
            details = {}
    # sentences kept apart, so a bullet point never runs on into the next one
    text = " ".join(p if p[-1] in ".!?" else p + "." for p in
                    _paragraphs(m.get("description")) + _paragraphs(m.get("features")))
    return {"id": m.get("parent_asin"), "title": m.get("title"), "brand": m.get("store"), "category": cats,
            "price": _price(m.get("price")), "currency": "USD",
            "attributes": {str(k): v for k, v in (details or {}).items() if isinstance(v, (str, int, float))},
            "description": text}


def interaction_record(r: dict[str, Any]) -> dict[str, Any]:
    """A review as our interaction fields: a rating event at the review's time (milliseconds)."""
    ts = r.get("timestamp")
    return {"user_id": r.get("user_id"), "product_id": r.get("parent_asin") or r.get("asin"), "event": "rating",
            "rating": r.get("rating"), "quantity": 1,
            "timestamp": ts / 1000 if isinstance(ts, (int, float)) and not isinstance(ts, bool) else ts}


def load_amazon2023(meta: str | Path, reviews: str | Path, *, category: str | None = None,
                    skip_invalid: bool = False) -> Dataset:
    """A category's meta + reviews files as a `Dataset` (validated; `meta["load_report"]` as for any catalog)."""
    meta, reviews = Path(meta), Path(reviews)
    for p in (meta, reviews):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file")
    report = LoadReport()
    products = products_from_table(_chunks(meta, product_record, PRODUCT_COLUMNS), skip_invalid=skip_invalid, report=report)
    verified = 0

    def review(r: dict[str, Any]) -> dict[str, Any]:
        nonlocal verified
        verified += r.get("verified_purchase") is True
        return interaction_record(r)

    inter = interactions_from_table(_chunks(reviews, review, INTERACTION_COLUMNS), products["id"], skip_invalid=skip_invalid,
                                    report=report, products_file=meta.name)
    users = users_from_interactions(inter)
    report.loaded["users"] = len(users)
    note_unpriced(products, report)
    print(report.summary())
    return Dataset("amazon2023", products, users, inter, {
        "source": f"Amazon Reviews 2023 (McAuley Lab){f', {category}' if category else ''}",
        "category": category, "files": {"products": str(meta), "interactions": str(reviews)},
        "load_report": report.to_dict(), "has_prices": bool((products["price"] > 0).any()),
        "verified_reviews": verified})


# ---------------------------------------------------------------- fetching (where the hub is reachable)
def _reachable(host: str, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def fetch(category: str, folder: Path) -> tuple[Path, Path]:
    """Download a category's two raw files into `folder` (kept as released), or find them there."""
    try:
        return find_files(folder, category)
    except FileNotFoundError:
        pass
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or not _reachable(HUB_HOST)
    if offline:
        raise RuntimeError(f"cannot reach {HUB_HOST} (offline). " + missing_message(folder, category))
    from huggingface_hub import hf_hub_download

    folder.mkdir(parents=True, exist_ok=True)
    for rel in (META, REVIEWS):
        hf_hub_download(HUB_REPO, rel.format(category=category), repo_type="dataset", local_dir=folder)
    return find_files(folder, category)
