"""Slot filling and the verifier: the one call that decides whether a narrative may be shown.

The claim grammar is `data.claims`: every claim is a slot filled from the record, everything else is
connective vocabulary. `verify(text, record)` reads any written text (the model's, filled; a copy a
person wrote; another model's) back into slots against this record and checks every binding rule:
each slot one this record fills, each date, event verb and relation in the clause of its own item,
"bought together" only with its support, the product named, and every other word on the closed
whitelist (`data.connectives`), no digit outside a slot. There is no catalog-derived word list: the
same verifier works on any catalog. `ground(slotted, record)` fills the model's slots and verifies
the result with that same call; `recnarr verify` uses it too.

`FactBase`, `cited_titles` and `fact_mentions` count the facts a text states, for evaluation
metrics (fact precision's denominator); they decide nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from recnarr.data.claims import SLOT_RE, check, fill, name_slots, reslot, slot_source, slot_values
from recnarr.data.narratives import NarrativeRecord

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
    titles = [rec.product.title, *(h.title for h in rec.history), *([rec.pair.title] if rec.pair else [])]
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
        if b not in rest:  # the pattern needs the substring: skip compiling it
            continue
        hits = re.findall(rf"(?<![\w-]){re.escape(b)}(?![\w-])", rest)
        if hits:
            n += len(hits)
            rest = re.sub(rf"(?<![\w-]){re.escape(b)}(?![\w-])", " ", rest)
    n += sum(w.lower() in facts.category_words or w.lower() in facts.attribute_words for w in WORD_RE.findall(rest))
    return n




def verify(text: str, rec: NarrativeRecord) -> Verification:
    """Check a written narrative against this record (see the module docstring)."""
    errors = []
    raw = SLOT_RE.search(text)
    if raw:
        errors.append(f"unfilled slot {raw.group(0)}")
    values = slot_values(rec)
    slotted = reslot(text, values)
    errors += check(slotted, values)
    citations = [Citation(n, values[n], slot_source(n, rec)) for n in dict.fromkeys(SLOT_RE.findall(slotted))
                 if n in values]
    return Verification(ok=not errors, text=text, errors=errors, citations=citations)


def ground(slotted: str, rec: NarrativeRecord) -> Verification:
    """Fill the model's slots from the record, then `verify` the text: the one call the generator,
    the fine-tuning data and evaluation use."""
    return verify(fill(slotted, slot_values(rec), name_slots(rec)), rec)
