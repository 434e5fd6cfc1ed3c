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


# a small home shop: furniture (durables) and consumables, a few dozen orders of a dozen customers
_HOME_LEAVES = {  # (department, leaf): [(title, price), ...]
    ("Furniture", "Sofas"): [("Linen three-seat sofa", 1190.0), ("Velvet two-seat sofa", 890.0),
                             ("Corner sofa, grey", 1450.0)],
    ("Furniture", "Beds"): [("Oak queen bed", 780.0), ("Oak king bed", 920.0), ("Upholstered double bed", 640.0)],
    ("Furniture", "Coffee Tables"): [("Walnut coffee table", 320.0), ("Marble round coffee table", 410.0)],
    ("Furniture", "Bookcases"): [("Tall pine bookcase", 210.0), ("Low oak bookcase", 260.0)],
    ("Home Fragrance", "Candles"): [("Fig scented candle", 22.0), ("Cedar scented candle", 22.0),
                                    ("Amber scented candle", 24.0), ("Unscented pillar candle", 12.0)],
    ("Home Fragrance", "Diffuser Oils"): [("Lavender diffuser oil", 14.0), ("Eucalyptus diffuser oil", 14.0),
                                          ("Orange diffuser oil", 13.0)],
    ("Pantry", "Coffee Beans"): [("House espresso beans", 15.0), ("Single origin filter beans", 18.0),
                                 ("Decaf beans", 16.0), ("Dark roast beans", 15.0)],
    ("Pantry", "Tea"): [("Earl grey tea", 9.0), ("Sencha green tea", 11.0), ("Chamomile tea", 8.0)],
}


_PREFIX = {"Coffee Tables": "tab", "Diffuser Oils": "dif", "Coffee Beans": "cof"}


def home_shop(seed: int = 0) -> tuple[Dataset, np.ndarray]:
    """The home shop and stand-in embeddings (items of one leaf close, one department nearer than
    another): 24 products, 14 customers, 41 orders. Customers buy candles, oils, beans and tea again
    every few weeks (the same beans too); nobody buys a second sofa, bed or coffee table, and two buy a
    second bookcase a year and more after the first."""
    rng = np.random.default_rng(seed)
    rows, vecs, d = [], [], 32
    dept_v = {dep: rng.standard_normal(d) for dep in {dep for dep, _ in _HOME_LEAVES}}
    for (dep, leaf), items in _HOME_LEAVES.items():
        leaf_v = rng.standard_normal(d)
        for j, (title, price) in enumerate(items):
            pid = f"{_PREFIX.get(leaf, leaf[:3].lower())}-{j + 1}"
            rows.append((pid, title, None, [dep, leaf], price, 0.0, True, {}, ""))
            vecs.append(0.8 * dept_v[dep] + 1.0 * leaf_v + 0.25 * rng.standard_normal(d))
    x = np.asarray(vecs, dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cols = ["id", "title", "brand", "category", "price", "discount", "in_stock", "attributes", "description"]
    products = pd.DataFrame(rows, columns=cols)
    products.insert(5, "currency", "USD")
    t0 = datetime(2023, 1, 2)
    orders = {  # customer: [(day, [items])]
        "k1": [(0, ["sof-1", "can-1"]), (30, ["can-2"]), (61, ["can-1", "dif-1"])],
        "k2": [(3, ["bed-1"]), (20, ["cof-1"]), (40, ["cof-1", "tea-1"]), (62, ["cof-1"])],
        "k3": [(5, ["sof-2", "cof-2"]), (33, ["cof-2"]), (64, ["cof-2", "can-3"])],
        "k4": [(8, ["bed-2", "can-1"]), (39, ["can-4"]), (70, ["dif-2"])],
        "k5": [(10, ["boo-1"]), (420, ["boo-2", "tea-2"]), (450, ["tea-2"])],
        "k6": [(12, ["cof-3"]), (35, ["cof-3"]), (58, ["cof-3", "tea-3"])],
        "k7": [(15, ["sof-3", "dif-1"]), (45, ["dif-1"]), (80, ["dif-3"])],
        "k8": [(18, ["bed-3"]), (50, ["can-2", "cof-4"]), (75, ["cof-4"])],
        "k9": [(21, ["boo-2"]), (500, ["boo-1", "can-3"]), (530, ["can-3"])],
        "k10": [(25, ["sof-1"]), (55, ["can-1", "tea-1"]), (90, ["tea-1"])],
        "k11": [(28, ["bed-1", "cof-1"]), (60, ["cof-1"]), (91, ["cof-2"])],
        "k12": [(30, ["sof-2"]), (60, ["cof-4", "dif-2"]), (95, ["dif-2"])],
        "k13": [(31, ["cof-2", "can-4"]), (61, ["can-4"])],
        "k14": [(35, ["bed-2"]), (66, ["tea-3"])],
    }
    inter = [{"user_id": u, "product_id": p, "event": "purchase", "quantity": 1, "rating": None,
              "timestamp": t0 + timedelta(days=day)} for u, os in orders.items() for day, items in os for p in items]
    users = pd.DataFrame({"id": list(orders), "name": [f"Customer {u}" for u in orders], "segment": "Consumer",
                          "demographics": [{} for _ in orders]})
    return Dataset("home", products, users, pd.DataFrame(inter)), x
