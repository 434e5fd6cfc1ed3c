"""What counts as a fact, in one place: slot filling and the verifier.

Exact facts (names, prices, discounts, dates, past purchases) reach a narrative only through slots,
filled here from the record. The verifier then reads the final text sentence by sentence: each
sentence is about the candidate product plus whatever items it names, and every fact-bearing word in
it must belong to one of those items:
- product titles: any catalog title mentioned must be the candidate, a cited past purchase or the pair;
- money ($12.34) must be the price, sale price or saving; percentages the discount;
- months and years must be dates of the user's history (or the product's own year);
- any other number must appear in the subject items' own titles or attributes;
- plain words: category words ("binders", "comedy"), brand names and attribute values ("black",
  "cherry") known anywhere in the catalog must belong to a subject item of that sentence.
A narrative with any failed check is rejected; the engine regenerates or falls back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from recnarr.data.narratives import SLOT_RE, NarrativeRecord, month_year, slot_values

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
MONEY_RE = re.compile(r"\$\s?\d[\d,]*(?:\.\d+)?")
PERCENT_RE = re.compile(r"\d+(?:\.\d+)?\s?%")
MONTH_YEAR_RE = re.compile(rf"\b({'|'.join(MONTHS)})\s+(\d{{4}})\b")
YEAR_RE = re.compile(r"\b(1[89]\d\d|20\d\d)\b")
NUMBER_RE = re.compile(r"\d+(?:[.,/]\d+)*")
SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z{\"'\u00a7])")
WORD_RE = re.compile(r"[A-Za-z][A-Za-z'-]*")
MISSING_PRODUCT = "the narrative does not name the recommended product"
# verifier errors that reject a narrative without it stating anything false (it fails to do its job)
NOT_A_FALSE_FACT = (MISSING_PRODUCT,)
# slot name -> which field of which record it comes from (for citations)
SLOT_SOURCES = {"product": "product.title", "brand": "product.brand", "price": "product.price",
                "sale_price": "product.price*(1-discount)", "discount": "product.discount",
                "saving": "product.price*discount", "pair": "copurchase.title", "year": "product.attributes.year",
                "name": "user.name"}


@dataclass
class Citation:
    fact: str  # slot or kind of fact, e.g. "price", "past2", "title"
    value: str
    source: str  # where it came from, e.g. "product:FUR-BO-10001798.price"


@dataclass
class Verification:
    ok: bool
    text: str
    errors: list[str] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)


def _plural_forms(word: str) -> set[str]:
    w = word.lower()
    forms = {w}
    if w.endswith("ies"):
        forms.add(w[:-3] + "y")
    elif w.endswith("es") and w[:-2].endswith(("ch", "sh", "ss", "x")):
        forms.add(w[:-2])
    elif w.endswith("s") and not w.endswith("ss"):
        forms.add(w[:-1])
    else:
        forms.add(w + "s")
    return forms


def _item_words(*texts: str) -> set[str]:
    words: set[str] = set()
    for t in texts:
        for w in WORD_RE.findall(t or ""):
            words |= _plural_forms(w)
    return words


class FactBase:
    """Catalog-wide vocabularies of fact-bearing words: titles, brands, categories, attribute values."""

    def __init__(self, products: pd.DataFrame):
        self.titles: set[str] = set(products["title"].astype(str))
        self.brands: set[str] = {b for b in products["brand"].dropna().astype(str) if len(b) > 1}
        cats: set[str] = set()
        for path in products["category"]:
            for c in path or []:
                cats |= {c.lower()} | _plural_forms(c) if " " not in c else {c.lower()}
        self.category_words = cats
        values: set[str] = set()
        for attrs in products["attributes"]:
            for k, v in (attrs or {}).items():
                if k.lower() in ("color", "colour", "finish", "material") and isinstance(v, str):
                    values |= {w.lower() for w in WORD_RE.findall(v) if len(w) > 2}
        self.attribute_words = values
        # title lookup: longest first so "Avery 4820" wins over "Avery 482"
        self._titles_sorted = sorted(self.titles, key=len, reverse=True)

    def titles_in(self, text: str) -> list[str]:
        found = []
        for t in self._titles_sorted:
            start = text.find(t)
            while start != -1:
                end = start + len(t)
                before_ok = start == 0 or not text[start - 1].isalnum()
                after_ok = end == len(text) or not text[end].isalnum()
                if before_ok and after_ok:
                    found.append(t)
                    text = text[:start] + " " * len(t) + text[end:]  # don't match inside a longer title
                    break
                start = text.find(t, start + 1)
        return found


def _own_titles(rec: NarrativeRecord) -> list[str]:
    titles = [rec.product.title, *(h.title for h in rec.history), *([rec.pair] if rec.pair else [])]
    return sorted(set(titles), key=len, reverse=True)


def cited_titles(text: str, rec: NarrativeRecord, facts: FactBase) -> list[str]:
    """Catalog titles named in the text: the record's own items first (as the verifier masks them), then any
    other title of the catalog (`FactBase.titles_in`)."""
    found, rest = [], text
    for t in _own_titles(rec):
        if t in rest:
            found.append(t)
            rest = rest.replace(t, " ")
    return found + facts.titles_in(rest)


def fact_mentions(text: str, rec: NarrativeRecord, facts: FactBase) -> int:
    """How many facts a text states, counted with the verifier's patterns and vocabularies: titles, money,
    percentages, month-year dates, years, other numbers, and category / attribute / brand words. Truth is
    not decided here (that is `verify`'s job); this is the denominator of fact precision."""
    titles = cited_titles(text, rec, facts)
    rest = text
    for t in sorted(titles, key=len, reverse=True):
        rest = rest.replace(t, " ")
    if rec.customer:  # the customer's own name is not a catalog fact (the verifier skips it too)
        for part in {rec.customer, *rec.customer.split()}:
            rest = re.sub(rf"\b{re.escape(part)}\b", " ", rest)
    n = len(titles)
    for pattern in (MONEY_RE, PERCENT_RE, MONTH_YEAR_RE, YEAR_RE):
        n += len(pattern.findall(rest))
        rest = pattern.sub(" ", rest)
    n += len(NUMBER_RE.findall(rest))
    for b in sorted(facts.brands, key=len, reverse=True):
        hits = re.findall(rf"(?<![\w-]){re.escape(b)}(?![\w-])", rest)
        if hits:
            n += len(hits)
            rest = re.sub(rf"(?<![\w-]){re.escape(b)}(?![\w-])", " ", rest)
    n += sum(w.lower() in facts.category_words or w.lower() in facts.attribute_words for w in WORD_RE.findall(rest))
    return n




def fill_slots(slotted: str, rec: NarrativeRecord) -> tuple[str, list[Citation], list[str]]:
    """Fill slots from the record. Unknown or unfillable slots are errors, never guessed."""
    values = slot_values(rec)
    citations, errors = [], []

    def repl(m: re.Match) -> str:
        name = m.group(1)
        if name not in values:
            errors.append(f"slot {{{name}}} has no value for this record")
            return m.group(0)
        if name.startswith("past"):
            k = int(re.sub(r"\D", "", name))
            src = f"history[{k}]:{rec.history[k - 1].product_id}" + (".date" if name.endswith("_date") else ".title")
        else:
            src = f"product:{rec.product.id}.{SLOT_SOURCES.get(name, name)}"
        citations.append(Citation(name, values[name], src))
        return values[name]

    return SLOT_RE.sub(repl, slotted), citations, errors


def verify(text: str, rec: NarrativeRecord, facts: FactBase) -> Verification:
    """Check every fact in a filled narrative against the record (see the module docstring)."""
    p = rec.product
    errors: list[str] = []
    if SLOT_RE.search(text):
        errors.append(f"unfilled slot {SLOT_RE.search(text).group(0)}")
    if p.title not in text:  # a text that states no fact would otherwise pass: it must name what it recommends
        errors.append(MISSING_PRODUCT)
    items = {p.title: ("product", p.title, p.brand, p.category, p.attributes)}
    for h in rec.history:
        items[h.title] = ("history", h.title, h.brand, h.category, {})
    if rec.pair:
        items[rec.pair] = ("pair", rec.pair, None, [], {})
    money_ok = {slot_values(rec)[k] for k in ("price", "sale_price", "saving") if k in slot_values(rec)}
    pct_ok = {f"{round(p.discount * 100)}%"} if p.discount > 0 else set()
    dates_ok = {month_year(h.date) for h in rec.history if h.date}
    years_ok = {h.date[:4] for h in rec.history if h.date} | ({str(p.attributes["year"])} if p.attributes.get("year") else set())

    # mask every title first: titles hold periods ("Cu. Ft.") that must not split sentences
    found = cited_titles(text, rec, facts)
    for t in found:
        if t not in items:
            errors.append(f"names {t!r}, which is not this product, a past purchase or its pair")
    masked, marks = text, {}
    for i, t in enumerate(sorted(set(found), key=len, reverse=True)):
        marks[f"\u00a7{i}\u00a7"] = t
        masked = masked.replace(t, f" \u00a7{i}\u00a7 ")
    name = rec.customer or ""
    for sentence in SENTENCE_RE.split(masked):
        named = [t for m, t in marks.items() if m in sentence]
        subjects = [items[p.title]] + [items[t] for t in named if t in items and t != p.title]
        rest = re.sub("\u00a7\\d+\u00a7", " ", sentence)
        for part in {name, *name.split()} - {""}:
            rest = re.sub(rf"\b{re.escape(part)}\b", " ", rest)
        allowed = _item_words(*(s[1] for s in subjects), *(c for s in subjects for c in s[3]),
                              *(str(v) for s in subjects for v in s[4].values()), p.description)
        brands_ok = {s[2] for s in subjects if s[2]}
        # numbers
        for m in MONEY_RE.findall(rest):
            if m.replace(" ", "") not in money_ok:
                errors.append(f"price {m} is not this product's price, sale price or saving")
        rest_nomoney = MONEY_RE.sub(" ", rest)
        for m in PERCENT_RE.findall(rest_nomoney):
            if m.replace(" ", "") not in pct_ok:
                errors.append(f"discount {m} is not this product's discount")
        rest_nopct = PERCENT_RE.sub(" ", rest_nomoney)
        for month, year in MONTH_YEAR_RE.findall(rest_nopct):
            if f"{month} {year}" not in dates_ok:
                errors.append(f"date {month} {year} is not a purchase date in this history")
        rest_nodate = MONTH_YEAR_RE.sub(" ", rest_nopct)
        for y in YEAR_RE.findall(rest_nodate):
            if y not in years_ok:
                errors.append(f"year {y} is not in this history or the product's year")
        subject_numbers = {n for s in subjects for n in NUMBER_RE.findall(s[1] + " " + " ".join(map(str, s[4].values())))}
        for n in NUMBER_RE.findall(YEAR_RE.sub(" ", rest_nodate)):
            if n not in subject_numbers:
                errors.append(f"number {n} is not a fact of the items this sentence is about")
        # plain-word facts
        words = WORD_RE.findall(rest)
        for w in words:
            lw = w.lower()
            if lw in facts.category_words and lw not in allowed:
                errors.append(f"category word {w!r} does not fit the items this sentence is about")
            elif lw in facts.attribute_words and lw not in allowed:
                errors.append(f"attribute {w!r} is not a property of the items this sentence is about")
        for b in brands_ok:
            rest = rest.replace(b, " ")  # "Wilson Jones" is allowed: its "Wilson" must not look like another brand
        for b in facts.brands:
            if b not in brands_ok and re.search(rf"(?<![\w-]){re.escape(b)}(?![\w-])", rest):
                errors.append(f"brand {b!r} is not the brand of the items this sentence is about")
    return Verification(ok=not errors, text=text, errors=sorted(set(errors)))


def ground(slotted: str, rec: NarrativeRecord, facts: FactBase) -> Verification:
    """Fill then verify: the one call the generator and evaluation use."""
    text, citations, slot_errors = fill_slots(slotted, rec)
    result = verify(text, rec, facts)
    result.errors = slot_errors + result.errors
    result.ok = not result.errors
    result.citations = citations
    return result
