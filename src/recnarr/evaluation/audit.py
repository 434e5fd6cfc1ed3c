"""An independent audit of finished narratives against the raw tables of a dataset.

The product's own grounding check (`recnarr.inference`) judges slots with the same claim grammar and
lexicon that wrote the training targets, so a bug they share would pass unseen: the verifier would be
judging itself. This module shares none of that code (it imports only `recnarr.data.schema`): it reads
the plain English text a customer would see, finds every claim it can recognise (titles, money,
percentages, dates, event verbs, what the product is, popularity, names, bare numbers) and looks each
one up in the products, users and interactions DataFrames. Anything it cannot back is a `FalseClaim`.

It is a heuristic reader, so it errs towards silence: an odd sentence yields no claim rather than a
crash or a guess.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd

from recnarr.data.schema import Dataset

log = logging.getLogger(__name__)

KINDS = ("title", "price", "discount", "date", "event", "kind", "relation", "popularity", "name", "number",
         "quote", "rating")
MASK = "§"  # replaces judged spans: not a letter, digit or clause break, so later checks skip them

MONTHS = {m: i for i, m in enumerate(
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
     "November", "December"], 1)}
_MONTH_ABBR = {"Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "Jun": 6, "Jul": 7, "Aug": 8, "Sep": 9, "Sept": 9,
               "Oct": 10, "Nov": 11, "Dec": 12}
_MONTH_NUM = {**MONTHS, **_MONTH_ABBR}
_WEEKDAYS = {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}

# ---------------------------------------------------------------- recognisers (on the masked text)
MONEY_RE = re.compile(r"[$€£]\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
PERCENT_RE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s?(?:%|percent\b|per cent\b)")
MONTH_YEAR_RE = re.compile(r"\b(" + "|".join(sorted(_MONTH_NUM, key=len, reverse=True)) + r")\.?,?\s+(\d{4})\b")
YEAR_RE = re.compile(r"(?<![\w$£€.,])(1[89]\d\d|20\d\d)(?![\w%]|[.,]\d)")
NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)*")
# clause breaks: sentence ends, ; and :, dashes; a period only when followed by space/end (not in "2.0")
CLAUSE_RE = re.compile(r"[.!?;:]+(?=\s|$|[\"'”’)\]])|\s[-–—]{1,2}\s|[–—]")
SENTENCE_RE = re.compile(r"[.!?]+(?=\s|$|[\"'”’)\]])")


RELATION_RE = re.compile(r"\b(same\s+category\s+as|same\s+department\s+as|change\s+of\s+pace\s+from)\b", re.I)
# "It is a comedy, like Fargo", "is a crime film, like ...": a genre both films have
GENRE_LIKE_RE = re.compile(r"\bis\s+(?:an?\s+|another\s+)?([a-z][a-z' -]*?)(?:\s+(?:film|movie))?,?\s+like\b", re.I)
# "which you gave 5 stars", "you rated it 4 stars": the customer's own rating of a named item
STARS_RE = re.compile(r"\b(?:gave(?:\s+it)?|rated(?:\s+it)?)\s+(\d+(?:\.\d+)?|one|two|three|four|five)\s+stars?\b", re.I)
QUOTE_RE = re.compile(r"[\"\u201c]([^\"\u201c\u201d]{3,300})[\"\u201d]")


def _path(v: Any) -> list[str]:
    """A category path as a list, whether the table holds a list, an array or JSON text."""
    if isinstance(v, str):
        try:
            v = json.loads(v) if v.startswith("[") else [x.strip() for x in v.split(">")]
        except json.JSONDecodeError:
            return [v]
    return [str(x) for x in v] if v is not None and not isinstance(v, float) else []


def _genre_key(phrase: str) -> str:
    """A genre as said ("animated", "film noir", "sci-fi") in the form the catalog lists it, lower case."""
    p = " ".join(phrase.lower().replace("-", " ").split())
    p = re.sub(r"\s+(?:film|movie)$", "", p)
    return "animation" if p == "animated" else p


def _genre_keys(row: dict[str, Any]) -> set[str]:
    """A product's genres: its `genres` attribute, else its category levels, in `_genre_key`'s form."""
    attrs = row.get("attributes") or {}
    if isinstance(attrs, str):
        try:
            attrs = json.loads(attrs)
        except json.JSONDecodeError:
            attrs = {}
    listed = [g for g in str(attrs.get("genres") or "").split(",") if g.strip()] or _path(row.get("category"))[1:]
    return {_genre_key(g) for g in listed}


def _words(text: str) -> list[str]:
    """A word list written as one string, for the long lists below."""
    return text.split()


_NUM_WORDS = {w: i for i, w in enumerate(_words(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty"))}
COUNT_RE = re.compile(
    r"\b(\d+|" + "|".join(_NUM_WORDS) + r")\s+(?:other\s+|different\s+|more\s+)?"
    r"(?:customers?|shoppers?|buyers?|people|viewers?|users?|members?|households?|fans?)\b", re.I)
# popularity wording; "people", "many", "often" and "most" only in the phrasings that are about sales,
# so "for people who work late" or "with many pockets" are not read as popularity claims
POPULARITY_RE = re.compile(r"""\b(?:
      customers | shoppers | buyers | customer[- ]favou?rite
    | best[- ]?sell(?:ing|ers?) | top[- ]sell(?:ing|ers?) | popular | trending | top[- ]rated
    | every\s+week | favou?rite\s+of | fan[- ]favou?rite | crowd[- ]pleaser
    | (?:many|most|other|lots\s+of|plenty\s+of)\s+(?:people|folks|customers|shoppers|buyers)
    | people\s+(?:often|usually|always|love|like|buy|bought|pick|pair|add|choose|order|keep|rave|say)
    | many\s+(?:of\s+(?:you|our|them)|who|fans|users|viewers|households|offices|families|teams)
    | often\s+(?:\w+\s+)?(?:paired|bought|purchased|ordered|added|chosen|picked|sold|together
                          |pair|buy|order|add|pick|choose)
    | most[- ](?:popular|bought|ordered|purchased|sold|loved|wanted|requested|rated|watched|viewed|chosen)
    )\b""", re.I | re.X)
_COOCCUR_EVENTS = (
    (re.compile(r"\b(?:bought|buy|purchased|ordered|picked)\b", re.I), "purchase"),
    (re.compile(r"\brated\b", re.I), "rating"),
    (re.compile(r"\b(?:watched|viewed|saw)\b", re.I), "view"),
    (re.compile(r"\bcarts?\b", re.I), "cart"),
)

# "you bought", "you've also rated", "you recently picked up" ...
EVENT_RE = re.compile(
    r"\byou(?:['’]ve|\s+have|\s+had)?(?:\s+(?:also|recently|already|just|once|previously|first|last|then))*"
    r"\s+(bought|purchased|ordered|picked\s+up|chose|rated|watched|viewed|saw|looked\s+at|added|put|saved)\b", re.I)
VERB_EVENT = {"bought": "purchase", "purchased": "purchase", "ordered": "purchase", "picked up": "purchase",
              "chose": "purchase", "rated": "rating", "watched": "view", "viewed": "view", "saw": "view",
              "looked at": "view", "added": "cart", "put": "cart", "saved": "cart"}

# kind claims: "<product> is a X", "it's a X", "this one is an X" / "<product>: a X", "<product>, a X" /
# clause-initial "This X ..." and "These X ..."
_ADVERB = r"(?:(?:also|really|truly|simply|just|quite|basically|essentially|still)\s+)?"
KIND_IS_RE = re.compile(
    r"(?:(?P<p>§+)\s+|\b(?:it|this(?:\s+one)?|that)\s+)is\s+" + _ADVERB + r"an?\s+"
    r"|\b(?:it|this|that)['’]s\s+" + _ADVERB + r"an?\s+", re.I)
KIND_APPOS_RE = re.compile(r"(?P<p>§+)\s*(?:[:,(]|[-–—])\s*(?:an?|(?P<owner>[A-Z][\w&.'’ -]{0,40}?)['’]s)\s+")
KIND_THIS_RE = re.compile(r"\b(this|these)\s+", re.I)
_PHRASE_WORD = re.compile(r"\s*([A-Za-z][A-Za-z'’-]*)")
_STOP = set(_words("""a an the in on at for with from by to of and or but nor that which who whose whom you your
    yours it its is are was were be been being has have had will would can could should may might must does
    do did than as so if when while because since like into onto over under about here there now just also
    we our us they their them this these those built made designed right really very too all every more
    most less still even only yet then what how why where not no never"""))
_VERBS = set(_words("""keeps keep holds hold turns turn makes make brings bring gives give fits fit works work helps
    help lets let adds add comes come offers offer delivers deliver belongs belong pairs pair goes go needs
    need looks look feels feel stays stay suits suit sits sit lights light stores store finishes finish
    completes complete cuts cut binds bind tells tell sounds sound seems seem"""))
# nouns that say nothing about what the product is ("a great pick"), and time words ("this week")
GENERIC_NOUNS = set(_words("""one pick choice find item product piece option addition favorite favourite gem treat
    classic essential staple recommendation gift idea step fit match deal bargain steal value buy upgrade
    way thing touch must-have companion partner winner hit bit lot little kind type sort set pair pack
    year month week day time season moment change start next reason place spot"""))
_SYNONYMS = {"film": "movie", "flick": "movie", "picture": "movie", "feature": "movie"}

# first names that are also ordinary words: skipped when they open a sentence ("Will it fit?")
COMMON_WORDS = set(_words("""will may mark bill grace hope joy faith rose art dawn summer chase hunter penny sky guy
    jack pat sue don rich frank miles max ray sunny iris ivy holly amber crystal april june august jean gene
    sandy carol lily daisy ruby pearl violet olive autumn cliff dean drew glen heath lance nick rob roman
    scott sterling victor warren wade woody earl eve noel hazel herb sage harmony destiny justice angel king
    page price rod reed gray grey brown black white green young long little sam hi hello dear good meet
    take next since after your more something here beyond alongside right save now yours priced"""))


@dataclass
class FalseClaim:
    kind: str  # one of KINDS
    text: str  # the offending span as it appears in the narrative
    why: str  # one sentence naming the record it contradicts


@dataclass
class _Span:
    start: int
    end: int
    ids: frozenset[str]


def _singular(word: str) -> str:
    w = word.lower().strip("'’")
    if w.endswith(("'s", "’s")):
        w = w[:-2]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("ches", "shes", "sses", "xes", "zes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def _money(x: float) -> str:
    return f"${x:,.2f}"


def _month_name(ym: str) -> str:
    y, m = ym.split("-")
    return f"{list(MONTHS)[int(m) - 1]} {y}"


def _clean(v: Any) -> Any:
    """None for missing values (None, NaN, NaT), the value otherwise."""
    if v is None:
        return None
    try:
        return None if pd.isna(v) else v
    except (TypeError, ValueError):  # lists and dicts: pd.isna is elementwise
        return v


def _number(v: Any) -> float | None:
    """A finite float, or None for missing / unparsable values (an unknown price)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _bounds(masked: str, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    out, start = [], 0
    for m in pattern.finditer(masked):
        out.append((start, m.start()))
        start = m.end()
    out.append((start, len(masked)))
    return out


def _enclosing(bounds: list[tuple[int, int]], pos: int) -> tuple[int, int]:
    for s, e in bounds:
        if s <= pos < e or (pos == e and s == e):
            return s, e
    return bounds[-1]


class Auditor:
    """Indexes a dataset's raw tables once; `audit` then checks one narrative in a few milliseconds."""

    def __init__(self, dataset: Dataset, min_support: int = 3):
        self.min_support = min_support
        self.products: dict[str, dict[str, Any]] = {}
        titles: dict[str, set[str]] = {}
        for row in dataset.products.to_dict("records"):
            pid = str(row.get("id"))
            self.products[pid] = row
            title = " ".join(str(row.get("title") or "").split())
            if len(title) >= 3:
                titles.setdefault(title, set()).add(pid)
        # films are often named without their year: "The Game" for "The Game (1997)"
        for title, ids in list(titles.items()):
            bare = re.sub(r"\s*\(\d{4}\)$", "", title)
            if bare != title and len(bare.split()) >= 2 and bare not in titles:
                titles[bare] = set(ids)
        self.titles = {t: frozenset(ids) for t, ids in titles.items()}
        self._title_index: dict[str, list[str]] = {}
        for t in sorted(self.titles, key=len, reverse=True):
            self._title_index.setdefault(t[:4].lower(), []).append(t)
        self.brand_words = {w for row in self.products.values() if _clean(row.get("brand"))
                            for w in re.findall(r"[A-Za-z]+", str(row["brand"]))}

        self.first_names: dict[str, str] = {}
        for row in dataset.users.to_dict("records"):
            name = _clean(row.get("name"))
            if isinstance(name, str) and name.split():
                self.first_names[str(row.get("id"))] = name.split()[0]
        self.all_first_names = {n for n in self.first_names.values() if len(n) >= 3}

        # per user: product -> [(event, "YYYY-MM")]; per event: product -> users (co-purchase support)
        self.by_user: dict[str, dict[str, list[tuple[str, str | None]]]] = {}
        self.buyers: dict[str, dict[str, set[str]]] = {}
        self.ratings: dict[tuple[str, str], set[float]] = {}
        inter = dataset.interactions
        if len(inter) and "rating" in inter:
            for uid, pid, r in zip(inter["user_id"].astype(str), inter["product_id"].astype(str),
                                   pd.to_numeric(inter["rating"], errors="coerce"), strict=True):
                if r == r:
                    self.ratings.setdefault((uid, pid), set()).add(float(r))
        if len(inter):
            months = pd.to_datetime(inter["timestamp"], utc=True, errors="coerce").dt.strftime("%Y-%m")
            for uid, pid, event, ym in zip(inter["user_id"].astype(str), inter["product_id"].astype(str),
                                           inter["event"].astype(str), months, strict=True):
                ym = ym if isinstance(ym, str) else None
                self.by_user.setdefault(uid, {}).setdefault(pid, []).append((event, ym))
                self.buyers.setdefault(event, {}).setdefault(pid, set()).add(uid)
        self._vocab: dict[str, set[str]] = {}

    # ------------------------------------------------------------ public
    def audit(self, text: str, product_id: str, user_id: str | None = None,
              history: list[dict] | None = None) -> list[FalseClaim]:
        """Every claim in `text` that the tables do not back, in order of appearance."""
        try:
            return self._audit(str(text or ""), str(product_id), user_id, history)
        except Exception:  # an audit never takes a report down; a missed claim is the lesser harm
            log.warning("audit failed on %r", text[:80] if isinstance(text, str) else text, exc_info=True)
            return []

    def _check_relation(self, phrase: str, product: dict[str, Any], ids: frozenset[str],
                        events: dict[str, Any], name: str) -> str | None:
        """'same category' = the same category path; 'same department' = the same top level; 'a change of
        pace' = another category. Judged on the item the customer had, when the title names several."""
        mine = _path(product.get("category"))
        theirs = [_path(self.products.get(i, {}).get("category")) for i in sorted(ids & set(events) or ids)]
        ok = {"same category as": lambda p: bool(mine) and p == mine,
              "same department as": lambda p: bool(mine) and bool(p) and p[0] == mine[0],
              "change of pace from": lambda p: p != mine}[phrase]
        if any(ok(p) for p in theirs):
            return None
        shown = " > ".join(mine) or "no category"
        other = " > ".join(theirs[0]) if theirs and theirs[0] else "no category"
        return f"'{phrase}' {name}: the product is in {shown}, {name} in {other}."

    # ------------------------------------------------------------ the checks
    def _audit(self, text: str, pid: str, user_id: str | None, history: list[dict] | None) -> list[FalseClaim]:
        found: list[tuple[int, FalseClaim]] = []
        chars = list(text)

        def mask(s: int, e: int) -> None:
            chars[s:e] = MASK * (e - s)

        def masked() -> str:
            return "".join(chars)

        def flag(pos: int, kind: str, span: str, why: str) -> None:
            found.append((pos, FalseClaim(kind, span, why)))

        product = self.products.get(pid, {})
        ptitle = str(product.get("title") or pid)
        events = self._events(user_id, history)
        uid = None if user_id is None else str(user_id)
        own_name = self.first_names.get(uid) if uid is not None else None

        # 1a. titles (verdict later: a co-purchase sentence may present one)
        spans = self._find_titles(text)
        for sp in spans:
            mask(sp.start, sp.end)

        # 1c. a quotation is the catalog's words about the product, or it is false; either way its words
        # are judged here as one claim, not one by one below (after the titles: a title's inch marks are
        # no quotation)
        description = " ".join(str(product.get("description") or "").split())
        for m in QUOTE_RE.finditer(masked()):
            quoted = " ".join(text[m.start(1):m.end(1)].split()).rstrip(".!")  # titles in it unmasked
            if not quoted or quoted.lower() not in description.lower():
                flag(m.start(), "quote", m.group(), f"{ptitle}'s description does not say {m.group()}.")
            mask(m.start(), m.end())

        # 1b. the product's own brand when it holds a digit ("3M"): a name from its row, not a number claim
        brand = str(_clean(product.get("brand")) or "")
        if re.search(r"\d", brand):
            for m in re.finditer(rf"(?<![\w§]){re.escape(brand)}(?!\w)", masked()):
                mask(m.start(), m.end())

        # 2. money
        price = _number(product.get("price"))
        discount = _number(product.get("discount")) or 0.0
        cur = masked()
        for m in MONEY_RE.finditer(cur):
            why = self._check_money(m.group(), price, discount, str(product.get("currency") or "USD"), ptitle)
            if not why and discount > 0 and price and _number(re.sub(r"[^\d.]", "", m.group())) == round(price, 2):
                why = self._list_price_alone(cur, m.start(), m.end(), discount, ptitle)
            if why:
                flag(m.start(), "price", m.group(), why)
            mask(m.start(), m.end())

        # 2b. asking for an order of a product the catalog does not price (a film in a catalog of ratings)
        if not price:
            # a request ("add it to your cart"), not a past event ("you added the lamp to your cart")
            for m in re.finditer(r"\b(?:add|include) it\b[^.!?]*?\b(?:order|cart|basket)\b", masked(), re.I):
                flag(m.start(), "for sale", m.group(), f"{ptitle} has no price in the catalog: nothing says it "
                                                      f"can be ordered.")

        # 3. percentages
        for m in PERCENT_RE.finditer(masked()):
            value = float(m.group(1))
            if discount <= 0:
                flag(m.start(), "discount", m.group(), f"{ptitle} has no discount in the catalog.")
            elif value != round(discount * 100):
                flag(m.start(), "discount", m.group(),
                     f"{ptitle} is {round(discount * 100)}% off in the catalog, not {m.group(1)}%.")
            mask(m.start(), m.end())

        # clause and sentence breaks, now that titles and amounts (which hold periods) are masked
        cur = masked()
        clauses, sentences = _bounds(cur, CLAUSE_RE), _bounds(cur, SENTENCE_RE)

        def attached(pos: int) -> _Span | None:
            """The title a date/verb belongs to: same clause (nearest before, else after), then sentence."""
            for lo, hi in (_enclosing(clauses, pos), _enclosing(sentences, pos)):
                inside = [sp for sp in spans if sp.start >= lo and sp.end <= hi]
                before = [sp for sp in inside if sp.end <= pos]
                after = [sp for sp in inside if sp.start >= pos]
                if before:
                    return max(before, key=lambda sp: sp.end)
                if after:
                    return min(after, key=lambda sp: sp.start)
            return None

        # 4. dates: "April 2017", then bare years; held back until the titles are judged, since a date
        # of an item that is itself a false title adds nothing
        dates: list[tuple[int, str, str, _Span | None]] = []
        for m in MONTH_YEAR_RE.finditer(cur):
            ym = f"{m.group(2)}-{_MONTH_NUM[m.group(1)]:02d}"
            item = attached(m.start())
            why = self._check_when(ym, item, events, text, month=True)
            if why:
                dates.append((m.start(), m.group(), why, item))
            mask(m.start(), m.end())
        cur = masked()
        for m in YEAR_RE.finditer(cur):
            item = attached(m.start())
            why = self._check_when(m.group(1), item, events, text, month=False, pid=pid)
            if why:
                dates.append((m.start(), m.group(), why, item))
            mask(m.start(), m.end())

        # 7. popularity / co-purchase, one verdict per sentence
        cur = masked()
        in_pair_sentence: set[int] = set()
        for lo, hi in sentences:
            sentence = cur[lo:hi]
            pops = list(POPULARITY_RE.finditer(sentence))
            count = COUNT_RE.search(sentence)
            if not pops and not count:
                continue
            others = [sp for sp in spans if sp.start >= lo and sp.end <= hi and pid not in sp.ids]
            in_pair_sentence.update(sp.start for sp in others)
            why = self._check_popularity(sentence, pops, count, others, pid, ptitle, text)
            if why:
                # report the whole run of popularity wording: "Customers often add", not "Customers"
                first = count if count else pops[0]
                end = first.end()
                for m in sorted([*pops, *([count] if count else [])], key=lambda m: m.start()):
                    if m.start() >= end and not sentence[end:m.start()].strip():
                        end = m.end()
                flag(lo + first.start(), "popularity", text[lo + first.start():lo + end], why)
            for m in [*pops, *([count] if count else [])]:
                mask(lo + m.start(), lo + m.end())

        # 1b. title verdicts
        known = set(events) | {pid}
        false_titles: set[int] = set()
        for sp in spans:
            if sp.ids & known or sp.start in in_pair_sentence:
                continue
            false_titles.add(sp.start)
            name = text[sp.start:sp.end]
            who = "this customer's" if history is None else "the basket's"
            flag(sp.start, "title", name,
                 f"{name} ({', '.join(sorted(sp.ids))}) is neither the recommended product {ptitle} nor in "
                 f"{who} interactions.")
        for pos, span, why, item in dates:
            if item is None or item.start not in false_titles:
                flag(pos, "date", span, why)

        # 5. event verbs
        cur = masked()
        for m in EVENT_RE.finditer(cur):
            verb = " ".join(m.group(1).lower().split())
            want = VERB_EVENT[verb]
            clause = _enclosing(clauses, m.start())
            inside = [sp for sp in spans if sp.start >= clause[0] and sp.end <= clause[1]]
            after = [sp for sp in inside if sp.start >= m.end()]
            before = [sp for sp in inside if sp.end <= m.start()]
            item = min(after, key=lambda sp: sp.start) if after else (
                max(before, key=lambda sp: sp.end) if before else None)
            span = text[m.start():m.end()]
            if item is None:
                if not any(e == want for evs in events.values() for e, _ in evs):
                    flag(m.start(), "event", span, f"'{span}' names a {want} event, but there is no {want} "
                                                   f"among this customer's interactions.")
                continue
            if item.start in false_titles:
                continue  # already false as a title
            name = text[item.start:item.end]
            had = sorted({e for i in item.ids for e, _ in events.get(i, [])})
            if not had:
                flag(m.start(), "event", span, f"this customer has no interaction with {name}.")
            elif want not in had:
                flag(m.start(), "event", span,
                     f"this customer's interaction with {name} is a {'/'.join(had)} event, not a {want}.")

        # 6. what the product is
        if product:
            for start, phrase, head in self._kind_claims(cur, spans, pid, clauses, product):
                if head in GENERIC_NOUNS or head in self._vocabulary(pid):
                    continue
                if _SYNONYMS.get(head) in self._vocabulary(pid):
                    continue
                flag(start, "kind", text[start:start + len(phrase)],
                     f"'{head}' is not in the title, category, description or attributes of {ptitle} ({pid}).")

        # 9. how the product relates to a past item, against both rows' category paths
        if product:
            for m in RELATION_RE.finditer(cur):
                clause = _enclosing(clauses, m.start())
                sentence = _enclosing(sentences, m.start())
                after = [sp for sp in spans if sp.start >= m.end() and sp.end <= clause[1]]
                before = [sp for sp in spans if sp.end <= m.start() and sp.start >= sentence[0]]
                item = min(after, key=lambda sp: sp.start) if after else (
                    max(before, key=lambda sp: sp.end) if before else None)
                if item is None or item.start in false_titles or pid in item.ids:
                    continue
                why = self._check_relation(" ".join(m.group(1).lower().split()), product, item.ids, events,
                                           text[item.start:item.end])
                if why:
                    flag(m.start(), "relation", text[m.start():m.end()], why)

        # 9b. "a comedy, like Fargo": a genre the product and that film both have
        if product:
            for m in GENRE_LIKE_RE.finditer(cur):
                clause = _enclosing(clauses, m.start())
                after = [sp for sp in spans if sp.start >= m.end() and sp.end <= clause[1]]
                if not after or after[0].start in false_titles or pid in after[0].ids:
                    continue
                item = after[0]
                genre = _genre_key(m.group(1))
                mine = _genre_keys(product)
                theirs = [_genre_keys(self.products.get(i, {})) for i in sorted(item.ids)]
                if genre not in mine or not any(genre in t for t in theirs):
                    flag(m.start(), "relation", text[m.start():m.end()],
                         f"'{m.group(1)}' is not a genre of both {ptitle} ({', '.join(sorted(mine)) or 'none'}) "
                         f"and {text[item.start:item.end]}.")

        # 9c. stars: the customer's own rating of the item the clause names
        for m in STARS_RE.finditer(cur):
            raw = m.group(1).lower()
            n = float(_NUM_WORDS[raw]) if raw in _NUM_WORDS else float(raw)
            item = attached(m.start())
            given = set().union(*(self.ratings.get((str(uid), i), set()) for i in item.ids)) if (
                item is not None and uid is not None) else set()
            if n not in given:
                what = text[item.start:item.end] if item is not None else "no item"
                flag(m.start(), "rating", text[m.start():m.end()],
                     f"this customer's ratings of {what} are {sorted(given) or 'none'}, not {n:g}.")
            mask(m.start(), m.end())

        # 8. names
        sentence_starts = {lo + len(cur[lo:hi]) - len(cur[lo:hi].lstrip(" \t\n\"'“‘(")) for lo, hi in sentences}
        for m in re.finditer(r"(?<![\w'’-])([A-Z][a-z]+)(?![\w-])", cur):
            tok = m.group(1)
            if len(tok) < 3 or tok not in self.all_first_names or tok == own_name:
                continue
            if tok in MONTHS or tok in _WEEKDAYS or tok in self.brand_words:
                continue
            if m.start() in sentence_starts and tok.lower() in COMMON_WORDS:
                continue
            owners = sorted(u for u, n in self.first_names.items() if n == tok)
            whom = f"customer {uid}" if uid is not None else "an anonymous customer"
            flag(m.start(), "name", tok, f"{tok} is the first name of user {', '.join(owners[:3])}, "
                                         f"not of {whom}{f' ({own_name})' if own_name else ''}.")
            mask(m.start(), m.end())

        # 9. any digits left are numbers nothing above could back
        for m in NUMBER_RE.finditer(masked()):
            flag(m.start(), "number", m.group(), f"{m.group()} is an unverifiable number: it is not a price, "
                                                 f"discount or date of {ptitle} or of this customer's records.")
        return [c for _, c in sorted(found, key=lambda x: x[0])]

    # ------------------------------------------------------------ helpers
    def _events(self, user_id: str | None, history: list[dict] | None) -> dict[str, list[tuple[str, str | None]]]:
        """product -> [(event, 'YYYY-MM' or None)] for this customer or the anonymous basket."""
        if history is None:
            return self.by_user.get(str(user_id), {}) if user_id is not None else {}
        out: dict[str, list[tuple[str, str | None]]] = {}
        for h in history:
            if not isinstance(h, dict) or h.get("product_id") is None:
                continue
            date = str(h.get("date") or "")
            ym = date[:7] if re.match(r"\d{4}-\d{2}", date) else None
            out.setdefault(str(h["product_id"]), []).append((str(h.get("event") or "purchase"), ym))
        return out

    def _find_titles(self, text: str) -> list[_Span]:
        """Catalog titles in the text: longest first, on word boundaries, without overlaps."""
        cands: list[tuple[int, int, str]] = []
        for i in range(len(text)):
            if text[i].isspace() or (i > 0 and text[i - 1].isalnum()):
                continue
            keys = {text[i:i + 4].lower(), text[i:i + 3].lower()}
            for t in (t for k in keys for t in self._title_index.get(k, [])):
                end = i + len(t)
                # first letter may differ in case ("the Game"), the rest must match exactly
                if text[i].lower() != t[0].lower() or text[i + 1:end] != t[1:]:
                    continue
                if t[-1].isalnum() and end < len(text) and text[end].isalnum():
                    continue
                if " " not in t and (not text[:i].strip() or text[:i].rstrip()[-1] in ".!?:"):
                    continue  # a one-word title opening a sentence is more likely a word ("Speed")
                if " " not in t and text[i] != t[0]:
                    continue  # and in lower case it is the word: "watching with the kids", not the film Kids
                if t.isdigit() and re.match(r" [a-z]", text[end:end + 2]):
                    continue  # a number before a word is a count ("rated by 187 people"), not the film 187
                cands.append((i, end, t))
        taken: list[_Span] = []
        for s, e, t in sorted(cands, key=lambda c: (-(c[1] - c[0]), c[0])):
            if all(e <= sp.start or s >= sp.end for sp in taken):
                ids = self.titles[t]
                if t.endswith(".") and (e == len(text) or text[e].isspace()):
                    # "the DAX Wood Document Frame. It ...": the catalog has the title with and without its
                    # own period, and the sentence's period reads the same: either product is named
                    ids = ids | self.titles.get(t[:-1], frozenset())
                taken.append(_Span(s, e, ids))
        return sorted(taken, key=lambda sp: sp.start)

    @staticmethod
    def _list_price_alone(text: str, start: int, end: int, discount: float, title: str) -> str | None:
        """The list price of a discounted product, in a sentence that gives no discount and no other
        amount, is read as what the product costs: a false price for what one pays."""
        left = max((m.end() for m in re.finditer(r"[.!?](?=\s|$)", text[:start])), default=0)
        right = re.search(r"[.!?](?=\s|$)", text[end:])
        sentence = text[left: end + right.start() if right else len(text)]
        others = [m for m in MONEY_RE.finditer(sentence) if m.start() != start - left]
        if "%" in sentence or others or re.search(r"\b(?:off|discount|down from|instead of)\b", sentence, re.I):
            return None
        return (f"{title} is {round(discount * 100)}% off in the catalog: its list price alone reads as what it "
                f"costs.")

    @staticmethod
    def _check_money(span: str, price: float | None, discount: float, currency: str, title: str) -> str | None:
        try:
            value = float(re.sub(r"[^\d.]", "", span))
        except ValueError:
            return None
        if price is None or price <= 0:
            return f"the catalog has no price for {title}."
        symbols = {"$": ("USD", "CAD", "AUD", "NZD", "SGD", "HKD", "MXN"), "€": ("EUR",), "£": ("GBP",)}
        known = {c for cs in symbols.values() for c in cs}
        if currency.upper() in known and currency.upper() not in symbols[span[0]]:
            return f"{title} is priced in {currency}, not in {span[0]}."
        sale = round(price * (1.0 - discount), 2)
        allowed = {"price": round(price, 2)}
        if discount > 0:
            allowed |= {"sale price": sale, "saving": round(price - sale, 2)}
        if any(abs(value - v) < 0.005 for v in allowed.values()):
            return None
        listed = ", ".join(f"{k} {_money(v)}" for k, v in allowed.items())
        return f"{span} is not a price of {title} in the catalog ({listed})."

    def _check_when(self, when: str, item: _Span | None, events: dict[str, list[tuple[str, str | None]]],
                    text: str, month: bool, pid: str | None = None) -> str | None:
        """A month ('YYYY-MM') or bare year ('YYYY') must be the time of an interaction with its item."""
        def times(ids: Any) -> set[str]:
            return {ym if month else ym[:4] for i in ids for _, ym in events.get(i, []) if ym}

        label = _month_name(when) if month else when
        if item is None:
            ok = times(events)
            own = self._own_years(pid) if not month and pid is not None else set()
            if when in ok | own:
                return None
            if own:  # a film's own year was the other way to back it
                return (f"no catalog item is named in its sentence, and {label} is neither the year of "
                        f"{self.products[str(pid)].get('title')} nor of any of this customer's interactions.")
            return (f"no catalog item is named in its sentence, and {label} is not the "
                    f"{'month' if month else 'year'} of any of this customer's interactions.")
        name = text[item.start:item.end]
        ok = times(item.ids)
        if not month:
            ok |= {y for i in item.ids for y in self._own_years(i)}
        if when in ok:
            return None
        if not any(events.get(i) for i in item.ids):
            return f"this customer has no interaction with {name}, so none in {label}."
        seen = ", ".join(_month_name(t) if month else t for t in sorted(ok)) or "no recorded date"
        return f"this customer's interactions with {name} are in {seen}, not {label}."

    def _own_years(self, pid: str) -> set[str]:
        """A film's own year, from its title "(1997)" or its attributes."""
        row = self.products.get(pid, {})
        years = set(re.findall(r"\((\d{4})\)", str(row.get("title") or "")))
        attrs = row.get("attributes")
        if isinstance(attrs, dict):
            for k in ("year", "release_year", "released"):
                v = str(attrs.get(k) or "")
                years |= set(re.findall(r"\b\d{4}\b", v))
        return years

    def _check_popularity(self, sentence: str, pops: list[re.Match[str]], count: re.Match[str] | None,
                          others: list[_Span], pid: str, ptitle: str, text: str) -> str | None:
        if count is None:
            return (f"'{pops[0].group()}' is a popularity claim about {ptitle} that states no number of "
                    f"customers, so the interactions cannot back it.")
        raw = count.group(1).lower()
        n = int(raw) if raw.isdigit() else _NUM_WORDS[raw]
        if not others:
            return f"'{count.group()}' names no second catalog item bought together with {ptitle}."
        if n < self.min_support:
            return f"{n} customers is below the minimum support of {self.min_support} for a co-purchase claim."
        wanted = {ev for pat, ev in _COOCCUR_EVENTS if pat.search(sentence)} or {"purchase"}
        for sp in others:
            name = text[sp.start:sp.end]
            support = max((self._support(pid, o, wanted) for o in sp.ids), default=0)
            if support < n:
                return (f"only {support} customer(s) in the interactions have both {ptitle} and {name} "
                        f"({'/'.join(sorted(wanted))}), not {n}.")
        return None

    def _support(self, a: str, b: str, events: set[str]) -> int:
        users_a = set().union(*(self.buyers.get(e, {}).get(a, set()) for e in events))
        users_b = set().union(*(self.buyers.get(e, {}).get(b, set()) for e in events))
        return len(users_a & users_b)

    def _kind_claims(self, cur: str, spans: list[_Span], pid: str, clauses: list[tuple[int, int]],
                     product: dict[str, Any]) -> list[tuple[int, str, str]]:
        """(start, phrase, singular head noun) for each 'what the product is' claim."""
        product_ends = {sp.end for sp in spans if pid in sp.ids}
        out: list[tuple[int, str, str]] = []

        def product_subject(m: re.Match[str]) -> bool:
            return m.group("p") is None or m.end("p") in product_ends

        for m in KIND_IS_RE.finditer(cur):
            if product_subject(m):
                out += self._phrase(cur, m.end(), "a")
        brand = str(_clean(product.get("brand")) or "")
        for m in KIND_APPOS_RE.finditer(cur):
            owner = m.group("owner")
            if product_subject(m) and (owner is None or (brand and owner.strip() == brand)):
                out += self._phrase(cur, m.end(), "a")
        for m in KIND_THIS_RE.finditer(cur):
            lo, _ = _enclosing(clauses, m.start())
            prefix = cur[lo:m.start()].strip()
            if prefix and not prefix.endswith(",") and not re.search(r"\b(?:and|but|so|yet|then)$", prefix, re.I):
                continue
            out += self._phrase(cur, m.end(), m.group(1).lower())
        return out

    @staticmethod
    def _phrase(cur: str, pos: int, det: str) -> list[tuple[int, str, str]]:
        """The short noun phrase after a determiner and its head noun; [] when the phrase is unclear."""
        words: list[tuple[int, str]] = []
        stopped = False
        at = pos
        while len(words) < 5:
            m = _PHRASE_WORD.match(cur, at)
            if not m:
                stopped = True  # punctuation, a masked span, a digit or the end
                break
            w = m.group(1)
            base = re.split(r"['’]", w.lower())[0]
            if words and w.lower() in _VERBS and w.lower() in GENERIC_NOUNS:
                words.append((m.start(1), w))  # "a good fit", "a perfect match": the noun, not a verb
                stopped = True
                break
            if base in _STOP or w.lower() in _VERBS:
                stopped = True
                break
            if det == "a" and words and len(w) > 4 and w.lower().endswith("ed"):
                stopped = True  # "a chair designed for ..."
                break
            words.append((m.start(1), w))
            at = m.end()
        if not words:
            return []
        if det == "this":
            # a singular subject's verb ends in -s: "This binding machine turns ..."
            verb = next((i for i, (_, w) in enumerate(words) if i > 0 and w.lower().endswith("s")
                         and not w.lower().endswith(("ss", "us", "is"))), None)
            if verb is not None:
                words = words[:verb]
            elif not stopped:
                return []
        elif det == "these":
            # the head of a plural subject is its last plural noun: "These binder clips hold ..."
            plural = [i for i, (_, w) in enumerate(words) if w.lower().endswith("s")]
            if plural:
                words = words[:plural[-1] + 1]
            elif not stopped:
                return []
        elif not stopped and len(words) > 4:
            return []
        if len(words) > 4:
            return []
        start = words[0][0]
        end = words[-1][0] + len(words[-1][1])
        return [(start, cur[start:end], _singular(words[-1][1]))]

    def _vocabulary(self, pid: str) -> set[str]:
        """Singular words of the product's title, brand, category path, description and attribute values."""
        if pid not in self._vocab:
            row = self.products.get(pid, {})
            parts = [str(row.get("title") or ""), str(_clean(row.get("brand")) or ""),
                     str(_clean(row.get("description")) or "")]
            cat = row.get("category")
            if isinstance(cat, list | tuple):
                parts += [str(c) for c in cat]
            elif cat is not None and not isinstance(cat, float):
                parts.append(str(cat))
            attrs = row.get("attributes")
            if isinstance(attrs, dict):
                parts += [str(v) for v in attrs.values() if v is not None]
            words = re.findall(r"[A-Za-z][A-Za-z'’-]*", " ".join(parts))
            vocab = {_singular(w) for w in words}
            vocab |= {_singular(p) for w in words for p in w.split("-") if p}
            self._vocab[pid] = vocab
        return self._vocab[pid]


def summarize(claims_per_narrative: list[list[FalseClaim]]) -> dict:
    """Counts over a batch: narratives, how many have a false claim, how many claims, claims per kind."""
    by_kind = Counter(c.kind for claims in claims_per_narrative for c in claims)
    return {
        "narratives": len(claims_per_narrative),
        "with_false_claims": sum(1 for claims in claims_per_narrative if claims),
        "false_claims": sum(by_kind.values()),
        "by_kind": {k: by_kind.get(k, 0) for k in KINDS} | {k: v for k, v in by_kind.items() if k not in KINDS},
    }
