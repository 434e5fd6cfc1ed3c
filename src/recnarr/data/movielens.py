"""MovieLens-100k (from the `recbole==1.2.1` wheel) in the same schema: a second domain with demographics.

RecBole's atomic files are tab-separated with `name:type` headers (`user_id:token`, `class:token_seq`).

- products: the 1,682 movies. Title in display form ("The Butcher Boy" for "Butcher Boy, The"),
  `year` and `genres` attributes, category ["Movies", first genre]. MovieLens has no prices: price is
  0.0 with currency "N/A" and `meta["has_prices"]` is False; every consumer treats price <= 0 as
  "unknown" (the narrative writer states no price then), so no made-up number ever reaches a user.
- users: the 943 raters; demographics = age, gender, occupation, zip (no names, no segment).
- interactions: the 100,000 ratings, event "rating", rating 1-5, timestamp from Unix seconds (UTC).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd

from recnarr.data import sources
from recnarr.data.catalog import interactions_frame, products_frame, users_frame
from recnarr.data.schema import Dataset

FOLDER = "recbole/dataset_example/ml-100k"
_ARTICLE = re.compile(r"^(?P<rest>.+?), (?P<art>The|A|An|Les|La|Le|L'|Il|Das|Der|Die|El|Los|Las)$")
_PARTS = re.compile(r"^(?P<main>.*?)(?P<alts>(?: \([^()]*\))*)$")


def read_atomic(path: Path) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated, header `name:type`; every value read as text."""
    df = pd.read_csv(path, sep="\t", dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False)
    df.columns = [c.split(":", 1)[0] for c in df.columns]
    return df


def _front_article(name: str) -> str:
    m = _ARTICLE.match(name)
    if not m:
        return name
    return f"{m['art']}{'' if m['art'].endswith(chr(39)) else ' '}{m['rest']}"


def display_title(title: str) -> str:
    """'Butcher Boy, The' -> 'The Butcher Boy'; also inside alternative titles in parentheses:
    'Double vie de Véronique, La (Double Life of Veronique, The)' -> 'La Double vie de Véronique
    (The Double Life of Veronique)'."""
    m = _PARTS.match(" ".join(title.split()))
    assert m is not None  # the pattern matches any string
    alts = re.findall(r" \(([^()]*)\)", m["alts"])
    return _front_article(m["main"]) + "".join(f" ({_front_article(a)})" for a in alts)


def load_movielens(cache: Path) -> Dataset:
    folder = sources.fetch("movielens", cache) / FOLDER
    items = read_atomic(folder / "ml-100k.item")
    users = read_atomic(folder / "ml-100k.user")
    ratings = read_atomic(folder / "ml-100k.inter")

    items = items.rename(columns={"class": "genres"})  # `class` is a Python keyword: no tuple attribute
    products = []
    for row in items.itertuples(index=False):
        genres = [g for g in row.genres.split() if g != "unknown"]
        year = row.release_year if row.release_year.isdigit() else None
        attrs = {k: v for k, v in (("year", year), ("genres", ", ".join(genres))) if v}
        title = display_title(row.movie_title)
        when = f" ({year})" if year else ""
        kind = " / ".join(genres).lower() + " movie" if genres else "movie"
        kind = ("an " if kind[0] in "aeiou" else "a ") + kind
        products.append({
            "id": row.item_id, "title": title, "brand": None,
            "category": ["Movies", genres[0]] if genres else ["Movies"],
            "price": 0.0, "currency": "N/A", "discount": 0.0, "in_stock": True, "attributes": attrs,
            "description": f"{title}{when}: {kind}.",
        })

    user_rows = [{"id": u.user_id, "name": None, "segment": None,
                  "demographics": {"age": u.age, "gender": u.gender, "occupation": u.occupation, "zip": u.zip_code}}
                 for u in users.itertuples(index=False)]

    inter = interactions_frame(pd.DataFrame({
        "user_id": ratings["user_id"], "product_id": ratings["item_id"], "event": "rating", "quantity": 1,
        "rating": ratings["rating"].astype(float),
        "timestamp": pd.to_datetime(ratings["timestamp"].astype(float).astype("int64"), unit="s"),
    }))
    src = sources.SOURCES["movielens"]
    meta = {"source": src.spec, "sha256": src.sha256, "has_prices": False}
    return Dataset("movielens", products_frame(products), users_frame(user_rows), inter, meta)
