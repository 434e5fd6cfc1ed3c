"""Small catalogs for retrieval tests: a hand-written one for the real embedding model, random vectors otherwise."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from recnarr.config import IndexConfig
from recnarr.data.schema import Dataset

# id, title, brand, category, price, discount, in_stock, attributes, description
_ROWS = [
    ("c1", "Ethiopian Yirgacheffe whole bean coffee", "Bean Co", ["Grocery", "Coffee"], 16.0, 0.0, True,
     {"roast": "light"}, "Floral, citrusy single-origin beans for filter brewing."),
    ("c2", "Colombian medium roast ground coffee", "Bean Co", ["Grocery", "Coffee"], 12.0, 0.1, True,
     {"roast": "medium"}, "Balanced, chocolatey everyday coffee."),
    ("c3", "Espresso dark roast beans", "Roastery", ["Grocery", "Coffee"], 18.0, 0.0, False,
     {"roast": "dark"}, "Intense beans for espresso machines."),
    ("c4", "Pour-over coffee dripper, ceramic", "Brewline", ["Kitchen", "Coffee Gear"], 25.0, 0.0, True,
     {"material": "ceramic"}, "A cone dripper for a clean morning pour-over."),
    ("c5", "Gooseneck kettle for pour-over coffee", "Brewline", ["Kitchen", "Coffee Gear"], 45.0, 0.2, True,
     {"capacity": "1 l"}, "Precise pouring control for filter coffee."),
    ("c6", "Burr coffee grinder", "Grindwell", ["Kitchen", "Coffee Gear"], 89.0, 0.0, True,
     {"burr": "conical"}, "Consistent grind size from espresso to French press."),
    ("c7", "Paper coffee filters, 100 pack", "Brewline", ["Kitchen", "Coffee Gear"], 5.0, 0.0, True,
     {}, "Filters for cone drippers."),
    ("t1", "Japanese sencha green tea", "Leaf & Co", ["Grocery", "Tea"], 14.0, 0.0, True,
     {"type": "green"}, "Grassy, fresh loose-leaf green tea."),
    ("t2", "English breakfast black tea bags", "Leaf & Co", ["Grocery", "Tea"], 6.0, 0.0, True,
     {"type": "black"}, "Strong black tea for mornings."),
    ("t3", "Cast iron teapot", "Kyusu", ["Kitchen", "Tea Gear"], 55.0, 0.0, True,
     {"material": "cast iron"}, "Keeps tea hot."),
    ("o1", "Ergonomic office chair with lumbar support", "SitRight", ["Furniture", "Chairs"], 240.0, 0.15, True,
     {"color": "black"}, "Adjustable mesh chair for long work days."),
    ("o2", "Stacking chairs, set of four", "SitRight", ["Furniture", "Chairs"], 180.0, 0.0, True,
     {"color": "grey"}, "Fabric upholstered stacking chairs."),
    ("o3", "Standing desk, oak top", "Deskly", ["Furniture", "Tables"], 420.0, 0.0, True,
     {"width": "140 cm"}, "Electric height-adjustable desk."),
    ("o4", "Bookcase with five shelves", "Deskly", ["Furniture", "Bookcases"], 150.0, 0.0, False,
     {}, "Tall wooden bookcase."),
    ("p1", "Ballpoint pens, blue, 12 pack", "Inkwell", ["Office Supplies", "Art"], 4.0, 0.0, True,
     {"color": "blue"}, "Smooth writing pens."),
    ("p2", "Spiral notebook, A5, ruled", "Inkwell", ["Office Supplies", "Paper"], 3.5, 0.0, True,
     {}, "100 ruled pages."),
    ("p3", "Heavy-duty stapler", "Fastenit", ["Office Supplies", "Fasteners"], 19.0, 0.0, True,
     {}, "Staples up to 60 sheets."),
    ("p4", "Copy paper, 500 sheets", None, ["Office Supplies", "Paper"], 8.0, 0.0, True,
     {}, "Bright white printer paper."),
]


def small_catalog() -> pd.DataFrame:
    cols = ["id", "title", "brand", "category", "price", "discount", "in_stock", "attributes", "description"]
    df = pd.DataFrame(_ROWS, columns=cols)
    df["currency"] = "USD"
    return df[["id", "title", "brand", "category", "price", "currency", "discount", "in_stock", "attributes",
               "description"]]


def small_dataset() -> Dataset:
    """The small catalog with three users' purchases, split train/val/test by time."""
    t0 = datetime(2024, 1, 1)
    buys = {
        "u1": ["c1", "c4", "c7", "c5", "c2"],  # a pour-over coffee drinker
        "u2": ["o1", "o3", "p1", "p2", "p3"],  # office
        "u3": ["c1", "c4", "t1", "c6", "t2"],  # coffee and tea
    }
    rows = []
    for u, items in buys.items():
        n = len(items)
        for i, p in enumerate(items):
            split = "train" if i < n - 2 else ("val" if i == n - 2 else "test")
            rows.append({"user_id": u, "product_id": p, "event": "purchase", "quantity": 1, "rating": None,
                         "timestamp": t0 + timedelta(days=30 * i), "split": split})
    users = pd.DataFrame({"id": list(buys), "name": ["Ann", "Bo", "Cy"], "segment": "Consumer",
                          "demographics": [{} for _ in buys]})
    return Dataset("small", small_catalog(), users, pd.DataFrame(rows))


def random_catalog(n: int = 400, d: int = 32, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """n products with random categories/brands/prices/stock and random unit vectors."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "id": [f"p{i:04d}" for i in range(n)],
        "title": [f"Product {i}" for i in range(n)],
        "brand": [f"brand{i % 6}" if i % 9 else None for i in range(n)],
        "category": [["Dept" + str(i % 3), f"Cat{i % 5}"] for i in range(n)],
        "price": rng.uniform(1, 200, n).round(2),
        "currency": "USD",
        "discount": np.where(rng.random(n) < 0.3, 0.2, 0.0),
        "in_stock": rng.random(n) > 0.3,
        "attributes": [{"size": str(i % 4)} for i in range(n)],
        "description": "",
    })
    x = rng.standard_normal((n, d)).astype(np.float32)
    return df, x / np.linalg.norm(x, axis=1, keepdims=True)


def random_interactions(ids: list[str], n_users: int = 40, per_user: int = 8, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    t0 = datetime(2023, 1, 1)
    for u in range(n_users):
        items = rng.choice(len(ids), per_user, replace=False)
        for j, i in enumerate(items):
            split = "train" if j < per_user - 2 else ("val" if j == per_user - 2 else "test")
            rows.append({"user_id": f"u{u}", "product_id": ids[i], "event": "purchase", "quantity": 1,
                         "rating": None, "timestamp": t0 + timedelta(days=7 * j), "split": split})
    return pd.DataFrame(rows)


def random_cfg(index_type: str = "flat", **kw) -> IndexConfig:
    return IndexConfig(embed_model="random-test", index_type=index_type, progress=False, pq_m=8, **kw)
