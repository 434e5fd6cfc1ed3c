"""The claim model: every kind of claim a narrative may make, and the record field each comes from.

A narrative is made of two things only: words of the connective vocabulary (`data.connectives`:
tone, glue, calls to action; they assert nothing) and slots. Every claim reaches the text through
a slot filled from the record, so the model never writes a fact itself:

    claim                 slots                          filled from
    identity              {product} {brand}              product.title, product.brand
    kind / category       {kind} {a_kind} {category}     the leaf category's noun (a film: its genre), only
                                                         where the title does not say it already
    purpose               {purpose}                      lexicon.PURPOSE[leaf, on its own path] when the
                                                         title names the leaf's noun, else a description
                                                         sentence that says what it does
    description           {fact}                         a description sentence, quoted word for word
    attribute             {feature}                      a descriptive attribute (colour, material ...)
    price                 {price} {sale_price}           product.price, price * (1 - discount)
                          {discount} {saving}            (known prices only: an unknown price has none)
    release               {year}                         product.attributes.year
    customer              {name}                         user.name (first name)
    past interaction      {pastK} {pastK_date}           history[K]: its title, its own date,
                          {pastK_verb} {pastK_rating}    the verb of its event (bought, rated ...), its stars
    relation              {pastK_link}                   history[K].link, the recommender's evidence told as
                                                         a record can back it: N customers who had both
                                                         (>= min_support), the same category path, a shared
                                                         film genre, a lexicon COMPLEMENTS pair
    bought together       {pair_support} {pair}          orders shared by >= min_support customers

Binding rules, checked on the slotted text (`check`): a slot must be one this record can fill; a
`{pastK_date}`, `{pastK_verb}` or `{pastK_link}` must sit in the same clause as its own `{pastK}`;
`{pair}` and `{pair_support}` only together, in one clause; a `{pastK_rating}` in the clause of its
`{pastK}`; composition (`composition`): the product named before "it" / "this one", at most one opener
before it, each claim once (the kind and the category not both), "also" only after a past item, at
most 5 sentences; on a discounted product `{price}` only in a
clause with `{sale_price}` or `{discount}` (alone it reads as what one pays); no asking for an order of
a product without a price; the recommended product is named; every other word is connective
vocabulary, and no digit stands outside a slot. A narrative that breaks a
rule is rejected with the rule named. Checking a written text (`reslot`) first turns the record's
values back into slots, choosing among equal values (two purchases in one month) by clause.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection
from dataclasses import dataclass

from recnarr.data.connectives import ORDER_WORDS, VOCABULARY
from recnarr.data.lexicon import COMPLEMENTS, GENRE_NOUNS, NOUNS, PURPOSE, lexicon_leaf
from recnarr.data.placeholders import placeholder
from recnarr.data.schema import Product

SLOT_RE = re.compile(r"\{([a-z_]+[0-9]*(?:_[a-z]+)?)\}")
CLAUSE_RE = re.compile(r"[.!?;:]+(?=\s|$)|\s[-\u2013\u2014]\s")
WORD_RE = re.compile(r"[A-Za-z][A-Za-z'\u2019-]*")
PAST_RE = re.compile(r"past(\d+)(?:_(date|verb|link|rating))?$")
# the verb a past interaction is told with, by its event (schema.EVENT_TYPES)
EVENT_VERBS = {"purchase": "bought", "rating": "rated", "view": "viewed", "cart": "saved"}
# how the product relates to a past item (`relation`), each a verb phrase: "It {link} the {pastK}". No
# "same department" or "change of pace": they hold for nearly any two products and give no reason.
# Counts ("was bought by 12 customers who also bought") and genres are filled in by `link_text`.
LINKS = {"same": "is from the same category as", "complement": "is a natural companion to"}
MIN_SUPPORT = 3  # "bought together" needs at least this many distinct customers (narratives.min_support)
# what each slot claims and where its value comes from (for citations and docs)
SOURCES = {"product": "product.title", "brand": "product.brand", "kind": "product.title|category",
           "a_kind": "product.title|category", "category": "product.category[-1]",
           "purpose": "lexicon.PURPOSE[category]|product.description", "feature": "product.attributes",
           "fact": "product.description",
           "price": "product.price", "sale_price": "product.price*(1-discount)", "discount": "product.discount",
           "saving": "product.price*discount", "year": "product.attributes.year", "name": "user.name",
           "pair": "copurchase.title", "pair_support": "copurchase.customers"}
DESCRIPTIVE_KEYS = ("color", "colour", "finish", "material", "size", "style")


@dataclass(frozen=True)
class Pair:
    """An item bought in the same order as the product, and by how many distinct customers."""

    title: str
    support: int


# ---------------------------------------------------------------- facts as text
def money(x: float) -> str:
    return f"${x:,.2f}"


def month_year(iso: str) -> str:
    from datetime import date

    return date.fromisoformat(iso[:10]).strftime("%B %Y")


def first_name(name: str | None) -> str | None:
    return name.split()[0] if name and name.split() else None


def product_year(p: Product) -> str | None:
    y = p.attributes.get("year")
    return str(y) if y and str(y).isdigit() else None


def _lower(word: str) -> str:
    return word if word.isupper() and len(word) > 1 else word.lower()


def is_plural(kind: str) -> bool:
    return kind.endswith("s") and not kind.endswith("ss")


def with_article(kind: str) -> str:
    return kind if is_plural(kind) else ("an " if kind[:1].lower() in "aeiou" else "a ") + kind


# units that follow a size in a title ("8 GB", "12 oz"): part of the size, never of what the product is
UNITS = frozenset(["gb", "mb", "tb", "kb", "ghz", "mhz", "oz", "lb", "lbs", "in", "ft", "mm", "cm", "ml", "ct",
                   "pk", "pack", "sheets", "w", "v", "mah"])


def is_film(category) -> bool:
    """A film (MovieLens' "Movies > genre"): its title is a name, its kind is its genre."""
    return bool(category) and category[0] == "Movies"


def genres(p_or_attrs) -> list[str]:
    """A film's genres, all of them (MovieLens' `genres` attribute: "Comedy, Drama"); [] without one (the
    callers fall back on the category path's genre)."""
    attrs = p_or_attrs.attributes if isinstance(p_or_attrs, Product) else (p_or_attrs or {})
    listed = [g.strip() for g in str(attrs.get("genres") or "").split(",") if g.strip()]
    return listed


def _stems(text: str) -> set[str]:
    return {singular(w.lower()) for w in re.findall(r"[A-Za-z][A-Za-z'-]+", text)}


def kind_phrase(p: Product) -> str | None:
    """What the product is, only where that adds to its title: a film's genre when it has one (several
    genres: None, no first-alphabetical pick); else, for a title that names no kind of its own ("Xerox
    1883", "Avery 482": a brand and a model number), its leaf category's noun ("paper product"; the
    lexicon's on its own paths, else a one-word leaf made singular). None otherwise: a title that says
    what it is ("Avery File Folder Labels") needs no "labels" after it, and a leaf's noun can be wrong of
    what the title names (a binding machine filed under Binders is no binder)."""
    if is_film(p.category):
        gs = genres(p) or p.category[1:]
        return GENRE_NOUNS.get(gs[0], f"{gs[0].lower()} film") if len(gs) == 1 else None
    name = p.title[len(p.brand):] if p.brand and p.title.lower().startswith(p.brand.lower()) else p.title
    if len(re.findall(r"[A-Za-z]{3,}", name)) >= 2:
        return None
    leaf = p.category[-1] if p.category else ""
    known = lexicon_leaf(p.category)
    if known in NOUNS:
        kind = NOUNS[known]
    elif re.fullmatch(r"[A-Za-z]+", leaf) and not placeholder("category", leaf):
        kind = singular(leaf.lower())
    else:
        return None
    said = _stems(p.title)
    return None if _stems(kind) <= said else kind


def singular(word: str) -> str:
    """Rough English singular, enough for category names: "accessories" -> "accessory"."""
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def purpose_phrase(p: Product) -> str | None:
    """What it is for: the lexicon's phrase for its leaf category, else its description's first clause
    when that reads as a verb phrase ("keeps ..."); None otherwise (no filler "part of our X range")."""
    known = lexicon_leaf(p.category)
    # the leaf's phrase only for what the leaf is named for: Binders' "holds documents together" is not
    # said of a report cover or a binding machine filed under Binders
    fits = known is not None and (is_film(p.category) or _stems(NOUNS.get(known, known)) & _stems(p.title))
    if fits and PURPOSE.get(known):
        options = PURPOSE[known]
        return options[sum(map(ord, p.id)) % len(options)]  # one phrase per product: stable across texts
    return described_purpose(p.description)


PURPOSE_VERBS = ("keeps", "makes", "holds", "gives", "adds", "brings", "helps", "lets", "turns", "frees", "stores",
                 "protects", "cleans", "catches", "carries", "fits", "saves", "brightens", "softens", "warms")
_PURPOSE_RE = re.compile(rf"(?:{'|'.join(PURPOSE_VERBS)}) [a-z ,'-]{{3,60}}")


def described_purpose(description: str | None) -> str | None:
    """The first sentence of a description (Amazon's feature bullets included) that says what the product
    does as a verb phrase ("Keeps knives sharp longer." -> "keeps knives sharp longer"), word for word;
    None when no sentence reads so (no digits, no names: those would be claims of their own)."""
    for sentence in re.split(r"[.;!?]+(?:\s|$)", description or ""):
        s = sentence.strip()
        s = s[:1].lower() + s[1:]
        if _PURPOSE_RE.fullmatch(s):
            return s.rstrip(" ,")
    return None


def features(p: Product) -> list[str]:
    """True features in words: descriptive attributes ("Black") the title does not already say, not
    title clauses (those repeat the name just said); values with digits are left out (numbers are
    claims of their own)."""
    said = _stems(p.title)  # "Black" of "... Flash Drive - Black": the name said it already
    out = [str(v) for k, v in p.attributes.items() if k.lower() in DESCRIPTIVE_KEYS and v
           and not placeholder(k.lower(), str(v)) and not _stems(str(v)) <= said]
    seen, uniq = set(), []
    for f in out:
        if re.search(r"[\d*]", f) or f.lower() in seen:
            continue
        seen.add(f.lower())
        uniq.append(f)
    return uniq[:3]


def feature_phrase(p: Product) -> str | None:
    """The first feature as a phrase: "in black", "with rounded back"; None without one."""
    feats = features(p)
    if not feats:
        return None
    f = feats[0].lower()
    return f"in {f}" if " " not in f else f"with {f}"


_FILLER_WORDS = frozenset(["a", "an", "the", "by", "in", "of", "for", "and", "or", "with", "from", "to", "is", "it", "this", "its", "department", "category", "movie", "film"])


def description_fact(p: Product) -> str | None:
    """A description sentence to quote as the catalog's words: the first of 4 to 25 words that says
    something the title, brand, category and attributes do not (3 words of its own or more) and is not
    placeholder text; quoted exactly, so any word of it is the catalog's, not ours."""
    for sentence in re.split(r"(?<=[.!?])\s+|\n+|\s*[\u2022|]\s*", p.description or ""):
        s = sentence.strip().rstrip(".!").strip()
        if not 4 <= len(s.split()) <= 25 or '"' in s or placeholder("description", s, p.id, p.title):
            continue
        known = _stems(" ".join([p.title, p.brand or "", *p.category, *map(str, p.attributes.values())]))
        if len(_stems(s) - known - _FILLER_WORDS) < 3:
            continue  # it restates the name and category (a loader's stand-in description): nothing to add
        return f'"{s}"'
    return None


def relation(p: Product, category: list[str], past_genres: list[str] | None = None) -> str | None:
    """same | genre:<G> | complement | None: how the product's categories relate to a past item's, when
    that is a reason. Films: a genre both have ("same category" would be only their first genre); other
    products: the whole path ("Women > Accessories" is not "Men > Accessories"), else a lexicon pair."""
    if is_film(p.category) and is_film(category):
        shared = [g for g in genres(p) or p.category[1:] if g in set(past_genres or category[1:])]
        return f"genre:{shared[0]}" if shared else None
    if p.category and list(p.category) == list(category):
        return "same"
    la, lb = lexicon_leaf(p.category), lexicon_leaf(category)
    if la and lb and frozenset((la, lb)) in COMPLEMENTS:  # the lexicon's pairs, on its own paths only
        return "complement"
    return None


def link_text(h, min_support: int = MIN_SUPPORT) -> str | None:
    """A past item's `link` as the words of `{pastK_link}`; None when there is nothing true and worth
    saying. "count": the distinct customers who had both, by the item's own event, counted on the raw
    interactions (`RecordBuilder`), said only from `min_support` on."""
    link = getattr(h, "link", None)
    if link == "count":
        if h.support < min_support:
            return None
        verb = EVENT_VERBS.get(h.event or "purchase", "bought")
        who = "people" if h.event == "rating" else "customers"
        return f"was {verb} by {h.support} {who} who also {verb}"
    if link and link.startswith("genre:"):
        g = link.split(":", 1)[1]
        return f"is {with_article(GENRE_NOUNS.get(g, g.lower() + ' film'))}, like"
    return LINKS.get(link) if link else None


def stars(rating) -> str | None:
    """A customer's own rating of an item as words: "you gave 5 stars"; None without a whole rating."""
    if rating is None or rating != rating or float(rating) != int(rating) or int(rating) < 1:
        return None
    n = int(rating)
    return f"you gave {n} star{'s' if n != 1 else ''}"


def bought_together(interactions) -> dict[str, tuple[str, int]]:
    """For each product, the item the most distinct customers bought in the same order with it (same
    customer, same time, purchase events only), and how many customers that is: the support of a
    "bought together" claim, counted on the raw interactions the claim is said of."""
    from collections import defaultdict

    buys = interactions[interactions["event"] == "purchase"]
    who: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    for (user, _), order in buys.groupby(["user_id", "timestamp"])["product_id"]:
        items = set(map(str, order))
        for a in items:
            for b in items - {a}:
                who[a][b].add(user)
    # the most supported partner; ties go to the smaller id, so the answer never depends on order
    return {a: min(((b, len(users)) for b, users in partners.items()), key=lambda t: (-t[1], t[0]))
            for a, partners in who.items()}


# ---------------------------------------------------------------- the record's slots
# every name `slot_values` gives, past items up to PAST_NAMED (the decoder keeps its logits to the tokens
# these and the connective words can be made of; a record with other names decodes over every token)
PAST_NAMED = 9
PAST_FIELDS = ("", "_date", "_verb", "_link", "_rating")
SLOT_NAMES = frozenset({"product", "kind", "a_kind", "category", "fact", "purpose", "feature", "name", "brand",
                        "price", "sale_price", "discount", "saving", "pair", "pair_support", "year"}
                       | {f"past{k}{f}" for k in range(1, PAST_NAMED + 1) for f in PAST_FIELDS})


def slot_values(rec) -> dict[str, str]:
    """Every slot a `NarrativeRecord` can fill, with its exact text: the only source of claims."""
    p = rec.product
    values: dict[str, str] = {"product": p.title}
    if (kind := kind_phrase(p)) is not None:
        values["kind"], values["a_kind"] = kind, with_article(kind)
    if p.category and not is_film(p.category) and not placeholder("category", p.category[-1]):
        values["category"] = p.category[-1].lower()
    if (fact := description_fact(p)) is not None:
        values["fact"] = fact
    if (purpose := purpose_phrase(p)) is not None:
        values["purpose"] = purpose
    if (feature := feature_phrase(p)) is not None:
        values["feature"] = feature
    if rec.customer and first_name(rec.customer) and not placeholder("name", rec.customer):
        values["name"] = first_name(rec.customer)
    if p.brand and not placeholder("brand", p.brand) and p.brand.lower() not in p.title.lower():  # no echo
        values["brand"] = p.brand
    if p.price > 0:
        values["price"] = money(p.price)
        if p.discount > 0:
            values["sale_price"] = money(p.sale_price)
            values["discount"] = f"{round(p.discount * 100)}%"
            values["saving"] = money(round(p.price - p.sale_price, 2))
    pair = rec.pair
    if pair is not None and pair.support >= rec.min_support:
        values["pair"] = pair.title
        values["pair_support"] = f"{pair.support} customers bought it together with"
    if (y := product_year(p)) is not None:
        values["year"] = y
    for k, h in enumerate(rec.history, 1):
        values[f"past{k}"] = h.title
        if h.date:
            values[f"past{k}_date"] = month_year(h.date)
        if h.event in EVENT_VERBS:
            values[f"past{k}_verb"] = EVENT_VERBS[h.event]
        if (link := link_text(h, rec.min_support)) is not None:
            values[f"past{k}_link"] = link
        if h.event == "rating" and (said := stars(getattr(h, "rating", None))) is not None:
            values[f"past{k}_rating"] = said
    if "kind" in values and any(values["kind"] in v for n, v in values.items() if n.endswith("_link")):
        del values["kind"], values["a_kind"]  # "a drama" and "is a drama, like Fargo": the link says it already
    return values


def slot_source(name: str, rec) -> str:
    m = PAST_RE.fullmatch(name)
    if m:
        k, part = int(m.group(1)), m.group(2) or "title"
        field = {"title": "title", "date": "date", "verb": "event", "link": "link", "rating": "rating"}[part]
        return f"history[{k}]:{rec.history[k - 1].product_id}.{field}"
    return f"product:{rec.product.id}.{SOURCES.get(name, name)}"


# ---------------------------------------------------------------- checking slotted text
def clauses(slotted: str) -> list[str]:
    return [c for c in CLAUSE_RE.split(slotted) if c.strip()]


def owner_of(name: str) -> str | None:
    """The slot a bound slot must share its clause with: past2_date -> past2, pair_support -> pair."""
    m = PAST_RE.fullmatch(name)
    if m and m.group(2):
        return f"past{m.group(1)}"
    return {"pair_support": "pair", "pair": "pair_support"}.get(name)


def check(slotted: str, values: dict[str, str]) -> list[str]:
    """Every binding rule (module docstring) on a slotted narrative; [] when it may be shown."""
    errors: list[str] = []
    names = SLOT_RE.findall(slotted)
    for name in dict.fromkeys(names):
        if name not in values:
            errors.append(f"slot {{{name}}} has no value for this record (it would state what no record backs)")
    if "product" not in names:
        errors.append("the narrative does not name the recommended product")
    for clause in clauses(slotted):
        here = set(SLOT_RE.findall(clause))
        if "price" in here and "sale_price" in values and not here & {"sale_price", "discount"}:
            # "Yours for $21.38" of an item at 80% off: true of the list price, false of what one pays
            errors.append(f"{{price}} alone on a discounted product reads as what it costs: say it with "
                          f"{{sale_price}} or {{discount}} in the same clause: {clause.strip()!r}")
        for name in sorted(here):
            owner = owner_of(name)
            if owner is not None and owner not in here:
                what = {"date": "date", "verb": "event verb", "link": "relation"}.get(name.rsplit("_", 1)[-1], name)
                errors.append(f"{{{name}}} ({what}) is not in the same clause as {{{owner}}}: "
                              f"{clause.strip()!r}")
    errors += composition(slotted)
    said = [n for n in dict.fromkeys(names) if n in values and n.endswith(("_date", "_rating", "_link"))]
    for v in {values[n] for n in said}:
        twice = [n for n in said if values[n] == v]
        if len(twice) > 1:  # two purchases of one month, two links alike: "... in March 1998. And ... in March 1998"
            errors.append(f"{' and '.join('{' + n + '}' for n in twice)} say the same words twice: {v!r}")
    plain = SLOT_RE.sub(" ", slotted)
    numbers = re.findall(r"\S*\d\S*", plain)
    if numbers:
        errors.append(f"digits outside a slot: {' '.join(numbers)!r} (numbers are claims: only slots state them)")
    unknown = [w for w in WORD_RE.findall(plain) if w.lower().replace("\u2019", "'") not in VOCABULARY]
    for w in dict.fromkeys(unknown):
        errors.append(f"word {w!r} is not connective vocabulary: it states something no record backs")
    if "price" not in values:
        asked = [w for w in WORD_RE.findall(plain) if w.lower() in ORDER_WORDS]
        if asked:
            errors.append(f"{asked[0]!r} asks for an order, but the catalog gives this product no price: "
                          "nothing says it is for sale")
    return errors


SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")
# the slots that say what the product itself is or does (a narrative with none says only its name and price)
PRODUCT_FACTS = frozenset({"kind", "a_kind", "purpose", "fact", "feature", "year"})
REFERENCE_RE = re.compile(r"\b(?:it|it's|its|this one|this pick|these)\b", re.I)
MAX_SENTENCES = 5
KIND_SLOTS = frozenset({"kind", "a_kind", "category"})  # one claim: what the product is


def composition(slotted: str) -> list[str]:
    """How the sentences go together, so the sampler cannot write a narrative no shop would send: the
    product named before anything refers to it ("it", "this one"); at most one opener (a sentence with
    no claim but the name) before it; every claim once (the product's name too, then "it"; the kind and
    the category not both); "also" only after a sentence that cited a past item; at most 5 sentences."""
    errors: list[str] = []
    sentences = [x for x in SENTENCE_SPLIT.split(slotted.strip()) if x.strip()]
    named = next((i for i, x in enumerate(sentences) if "{product}" in x), len(sentences))
    for x in sentences[:named]:
        if REFERENCE_RE.search(SLOT_RE.sub(" ", x)):
            errors.append(f"refers to the product before naming it: {x!r}")
    # the clauses before the one that names the product and claim nothing: one opener ("Hi {name}! Meet
    # the {product}", "Next on your list: the {product}"); two are stacked ("Good news, {name}! Our pick
    # for you: the {product}")
    before = slotted.split("{product}", 1)[0] if named < len(sentences) else slotted + " "
    empty = [c for c in clauses(before)[:-1] if set(SLOT_RE.findall(c)) <= {"name"}]
    if len(empty) > 1:
        errors.append(f"{len(empty)} openers before the product is named: one is enough")
    said = SLOT_RE.findall(slotted)
    counts = {n: said.count(n) for n in set(said)}
    for n, c in sorted(counts.items()):
        if c > 1:  # the product too: "We think you'll like the X. The X is ..." reads as a stutter
            errors.append(f"{{{n}}} is said {c} times: each claim once")
    if len(KIND_SLOTS & set(counts)) > 1:
        errors.append("the kind and the category are both said: one says what it is")
    cited = False
    for x in sentences:
        if re.search(r"\balso\b", SLOT_RE.sub(" ", x), re.I) and not cited:
            errors.append(f"'also' with no past item before it: {x!r}")
        cited = cited or any(PAST_RE.fullmatch(n) for n in SLOT_RE.findall(x))
    if len(sentences) > MAX_SENTENCES:
        errors.append(f"{len(sentences)} sentences: at most {MAX_SENTENCES}")
    return errors


# ---------------------------------------------------------------- filling and reading back
_ARTICLE_TITLE = re.compile(r"^(?:The|A|An)\s", re.I)


def name_slots(rec) -> frozenset[str]:
    """The title slots whose values are names of works (a film: "Fargo"), which take no article: "the
    {product}" before one is written "Fargo", not "the Fargo"."""
    out = {"product"} if is_film(rec.product.category) else set()
    return frozenset(out | {f"past{k}" for k, h in enumerate(rec.history, 1) if is_film(h.category)})


def fill(slotted: str, values: dict[str, str], names: Collection[str] = ()) -> str:
    """Slots replaced by their values; "the {past1}" before a title that has its own article ("The
    Game") or is a name (`names`, from `name_slots`) drops ours. Unknown slots stay as they are (`check`
    reports them)."""
    def repl(m: re.Match) -> str:
        return values.get(m.group(1), m.group(0))

    def drop_article(m: re.Match) -> str:
        v = values.get(m.group(2))
        drop = bool(v) and (_ARTICLE_TITLE.match(v) is not None or m.group(2) in names)
        return m.group(0)[len(m.group(1)):] if drop else m.group(0)  # a title starts with its capital

    slotted = re.sub(r"\b([Tt]he )\{([a-z_0-9]+)\}", drop_article, slotted)
    return SLOT_RE.sub(repl, slotted)


@functools.lru_cache(maxsize=4096)
def _value_re(v: str) -> re.Pattern:
    """A value on word boundaries (cached: `re`'s own cache holds 512 patterns, and a batch of 64
    narratives checks thousands of values per step)."""
    return re.compile(rf"(?<![\w$]){re.escape(v)}(?!\w)")


def reslot(text: str, values: dict[str, str]) -> str:
    """A written narrative read back into slots: each value of the record found in the text (longest
    first, on word boundaries) becomes its slot. A value several slots share (two purchases in one
    month) goes to the one whose owner slot is in the same clause, else the first."""
    by_value: dict[str, list[str]] = {}
    for name, v in values.items():
        by_value.setdefault(v, []).append(name)
    marks: dict[str, list[str]] = {}
    out = text
    for i, v in enumerate(sorted(by_value, key=len, reverse=True)):
        if v not in out:  # most of a record's values are not in the text: no pattern needed
            continue
        pattern = _value_re(v)
        if pattern.search(out):
            mark = f"\u00a7{i}\u00a7"
            marks[mark] = by_value[v]
            out = pattern.sub(mark, out)
    parts = CLAUSE_RE.split(out)
    seps = CLAUSE_RE.findall(out)
    resolved = []
    for clause in parts:
        here = re.findall("\u00a7\\d+\u00a7", clause)
        present = {n for m in here for n in marks[m]}
        owners = {o for n in present if (o := owner_of(n)) is not None}
        for m in here:
            names = marks[m]
            # the reading that binds: a date whose item is here, an item whose date/verb/link is here
            bound = [n for n in names if owner_of(n) in present or n in owners]
            clause = clause.replace(m, "{" + (bound or names)[0] + "}", 1)
        resolved.append(clause)
    joined = resolved[0]
    for sep, clause in zip(seps, resolved[1:], strict=True):
        joined += sep + clause
    return joined
