"""The three record types every catalog is loaded into, and the folder format between stages.

In memory a dataset is three pandas DataFrames with exactly the columns below (one row per record);
on disk it is `<run>/data/{products,users,interactions}.parquet` + `manifest.json`. The dataclasses
are the typed view of one row, used where single records travel (retrieval results, prompts, API).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

CATEGORY_SEP = " > "
EVENT_TYPES = ("purchase", "rating", "view", "cart")


class UnknownId(KeyError):
    """An id the run's data does not hold. A KeyError, typed so that callers (the API's 404) match the
    class, not the message."""

    def __str__(self) -> str:  # KeyError's default repr-quotes the message
        return str(self.args[0])


class UnknownUser(UnknownId):
    pass


class UnknownProduct(UnknownId):
    pass


@dataclass
class Product:
    id: str
    title: str
    price: float  # current unit price before discount, in `currency`
    brand: str | None = None
    category: list[str] = field(default_factory=list)  # path, most general first
    currency: str = "USD"
    discount: float = 0.0  # fraction off, 0 <= discount < 1
    in_stock: bool = True
    attributes: dict[str, str] = field(default_factory=dict)  # free key-value facts
    description: str = ""

    @property
    def sale_price(self) -> float:
        return round(self.price * (1.0 - self.discount), 2)


@dataclass
class User:
    id: str
    name: str | None = None  # display name, if known
    segment: str | None = None
    demographics: dict[str, str] = field(default_factory=dict)  # e.g. age, gender, region


@dataclass
class Interaction:
    user_id: str
    product_id: str
    timestamp: datetime
    event: str = "purchase"  # one of EVENT_TYPES
    quantity: int = 1
    rating: float | None = None


PRODUCT_COLUMNS = ["id", "title", "brand", "category", "price", "currency", "discount", "in_stock",
                   "attributes", "description"]
USER_COLUMNS = ["id", "name", "segment", "demographics"]
INTERACTION_COLUMNS = ["user_id", "product_id", "event", "quantity", "rating", "timestamp"]
# columns that hold lists/dicts in memory and JSON text in parquet
_JSON_COLUMNS = {"products": ("category", "attributes"), "users": ("demographics",), "interactions": ()}


def product_from_row(row: Any) -> Product:
    """A DataFrame row (Series or namedtuple-like mapping) as a `Product`."""
    get = row.get if hasattr(row, "get") else row.__getitem__
    brand = get("brand")
    return Product(
        id=str(get("id")), title=str(get("title")), price=float(get("price")),
        brand=None if brand is None or (isinstance(brand, float) and pd.isna(brand)) else str(brand),
        category=list(get("category") or []), currency=str(get("currency") or "USD"),
        discount=float(get("discount") or 0.0), in_stock=bool(get("in_stock")),
        attributes=dict(get("attributes") or {}), description=str(get("description") or ""),
    )


def user_from_row(row: Any) -> User:
    get = row.get if hasattr(row, "get") else row.__getitem__
    name, seg = get("name"), get("segment")
    return User(
        id=str(get("id")),
        name=None if name is None or (isinstance(name, float) and pd.isna(name)) else str(name),
        segment=None if seg is None or (isinstance(seg, float) and pd.isna(seg)) else str(seg),
        demographics=dict(get("demographics") or {}),
    )


@dataclass
class Dataset:
    """A catalog with its users and interactions (optionally with a `split` column on interactions)."""

    name: str
    products: pd.DataFrame
    users: pd.DataFrame
    interactions: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    def product(self, product_id: str) -> Product:
        row = self.products.loc[self.products["id"] == product_id]
        if row.empty:
            raise UnknownProduct(f"unknown product id {product_id!r}")
        return product_from_row(row.iloc[0])

    def user(self, user_id: str) -> User:
        row = self.users.loc[self.users["id"] == user_id]
        if row.empty:
            raise UnknownUser(f"unknown user id {user_id!r}")
        return user_from_row(row.iloc[0])

    def history(self, user_id: str, split: str | None = None) -> pd.DataFrame:
        """A user's interactions, oldest first; `split` restricts to train/val/test rows."""
        h = self.interactions[self.interactions["user_id"] == user_id]
        if split is not None and "split" in h:
            h = h[h["split"] == split]
        return h.sort_values("timestamp", kind="stable")

    def checksum(self) -> str:
        """Content hash of the catalog (ids, titles, prices, stock), recorded by downstream stages."""
        cols = ["id", "title", "brand", "price", "discount", "in_stock"]
        blob = self.products[cols].astype(str).to_csv(index=False).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for kind in ("products", "users", "interactions"):
            df = getattr(self, kind).copy()
            for col in _JSON_COLUMNS[kind]:
                df[col] = df[col].map(lambda v: json.dumps(v, ensure_ascii=False))
            tmp = folder / f".{kind}.parquet.tmp"
            df.to_parquet(tmp, index=False)
            tmp.replace(folder / f"{kind}.parquet")
        manifest = {
            "name": self.name,
            "catalog_checksum": self.checksum(),
            "counts": {k: len(getattr(self, k)) for k in ("products", "users", "interactions")},
            **self.meta,
        }
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Dataset:
        folder = Path(folder)
        manifest_path = folder / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{folder} holds no prepared dataset (no manifest.json); run `recnarr data load`")
        manifest = json.loads(manifest_path.read_text())
        frames = {}
        for kind in ("products", "users", "interactions"):
            df = pd.read_parquet(folder / f"{kind}.parquet")
            for col in _JSON_COLUMNS[kind]:
                df[col] = df[col].map(json.loads)
            frames[kind] = df
        meta = {k: v for k, v in manifest.items() if k not in ("name", "catalog_checksum", "counts")}
        return cls(manifest["name"], frames["products"], frames["users"], frames["interactions"], meta)
