"""The narrative format, defined once: prompt, slots, and the data-to-text writer of fine-tuning targets.

A `NarrativeRecord` holds what is true: the customer, a few real past purchases, the candidate
product, why retrieval chose it, an optional "pairs with" item, and a tone. `format_prompt` renders
it for the model; the writer produces a target narrative in which every exact fact is a slot
(`{product}`, `{price}`, `{past2}`, `{past2_date}` ...) filled later by `inference.grounding`, so the
model never copies digits. Plain words about the product (what it is, what it is for, its colour or
finish) are copied from the record's own title and attributes, and the writer states nothing else.

Slots (see `SLOTS`): name, product, brand, price, sale_price, discount, saving, pair, year,
pastK and pastK_date for K = 1..len(history).
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass
from datetime import date

from recnarr.data.lexicon import COMPLEMENTS, PURPOSE
from recnarr.data.schema import CATEGORY_SEP, Product

PROMPT_END = "### narrative:\n"
END_OF_NARRATIVE = "<|endoftext|>"
TONES = ("warm", "concise", "premium")
SLOT_RE = re.compile(r"\{([a-z_]+[0-9]*(?:_date)?)\}")
# attribute keys whose values are plain-word facts worth mentioning
DESCRIPTIVE_KEYS = ("color", "colour", "finish", "material", "size", "pack", "capacity", "genres", "style")


@dataclass
class HistoryItem:
    product_id: str
    title: str
    category: list[str]
    date: str | None  # ISO date of the purchase; None for an anonymous basket sent without dates
    brand: str | None = None


@dataclass
class NarrativeRecord:
    product: Product
    history: list[HistoryItem]
    customer: str | None = None  # display name, if known
    reason_index: int | None = None  # 1-based history item retrieval found nearest
    reason_kind: str = "similar"  # similar | copurchase
    pair: str | None = None  # title of an item often bought with the product
    tone: str = "warm"
    user_id: str | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> NarrativeRecord:
        d = dict(d)
        d["product"] = Product(**d["product"])
        d["history"] = [HistoryItem(**h) for h in d["history"]]
        return cls(**d)


# ---------------------------------------------------------------- facts as text
def money(x: float) -> str:
    return f"${x:,.2f}"


def month_year(iso: str) -> str:
    d = date.fromisoformat(iso[:10])
    return d.strftime("%B %Y")


def first_name(name: str | None) -> str | None:
    return name.split()[0] if name and name.split() else None


def product_year(p: Product) -> str | None:
    y = p.attributes.get("year")
    return str(y) if y and str(y).isdigit() else None


def slot_values(rec: NarrativeRecord) -> dict[str, str]:
    """Every slot the record can fill, with its exact text. The only source of exact facts."""
    p = rec.product
    values: dict[str, str] = {"product": p.title}
    if rec.customer:
        values["name"] = first_name(rec.customer) or rec.customer
    if p.brand:
        values["brand"] = p.brand
    if p.price > 0:
        values["price"] = money(p.price)
        if p.discount > 0:
            values["sale_price"] = money(p.sale_price)
            values["discount"] = f"{round(p.discount * 100)}%"
            values["saving"] = money(round(p.price - p.sale_price, 2))
    if rec.pair:
        values["pair"] = rec.pair
    if (y := product_year(p)) is not None:
        values["year"] = y
    for k, h in enumerate(rec.history, 1):
        values[f"past{k}"] = h.title
        if h.date:
            values[f"past{k}_date"] = month_year(h.date)
    return values


def format_prompt(rec: NarrativeRecord) -> str:
    """The model's input. Shows the facts themselves so the model can talk about what things are."""
    p = rec.product
    lines = [f"### customer: {rec.customer or 'anonymous'}", "### history:"]
    for k, h in enumerate(rec.history, 1):
        when = f", {month_year(h.date)}" if h.date else ""
        lines.append(f"[{k}] {h.title} ({CATEGORY_SEP.join(h.category)}){when}")
    lines.append(f"### product: {p.title}")
    if p.brand:
        lines.append(f"### brand: {p.brand}")
    lines.append(f"### category: {CATEGORY_SEP.join(p.category)}")
    if p.price > 0:
        offer = f" ({round(p.discount * 100)}% off: {money(p.sale_price)})" if p.discount > 0 else ""
        lines.append(f"### price: {money(p.price)}{offer}")
    attrs = "; ".join(f"{k}: {v}" for k, v in p.attributes.items() if v not in (None, ""))
    if attrs:
        lines.append(f"### attributes: {attrs}")
    if rec.reason_index:
        lines.append(f"### reason: {rec.reason_kind} to [{rec.reason_index}]")
    if rec.pair:
        lines.append(f"### pairs with: {rec.pair}")
    lines.append(f"### tone: {rec.tone}")
    return "\n".join(lines) + "\n" + PROMPT_END


def slots_in(text: str) -> list[str]:
    return SLOT_RE.findall(text)


# ---------------------------------------------------------------- what the product is
def _lower(word: str) -> str:
    return word if word.isupper() and len(word) > 1 else word.lower()


def kind_phrase(p: Product) -> str:
    """What the product is, in plain words from its own title: the head noun phrase.

    "Hon Deluxe Fabric Upholstered Stacking Chairs, Rounded Back" -> "stacking chairs". Titles that
    are only a brand and a model code ("Xerox 221") fall back to the category ("paper essential").
    """
    head = p.title.split(",")[0]
    if p.brand and head.lower().startswith(p.brand.lower()):
        head = head[len(p.brand):]
    head = re.split(r"\s(?:with|for|by|-|/|&)\s", head)[0]
    words = [w.strip("\"'()") for w in head.split()]
    words = [w for w in words if re.fullmatch(r"[A-Za-z][A-Za-z'-]+", w)]
    if len(words) >= 2:
        return " ".join(_lower(w) for w in words[-2:])
    leaf = p.category[-1].lower() if p.category else "everyday"
    # deterministic per product, so the model sees one name for one product
    return [f"{leaf} essential", f"{leaf} staple", f"everyday {leaf} pick"][sum(map(ord, p.id)) % 3]


def features(p: Product) -> list[str]:
    """Short true features in words: title clauses ("Rounded Back", "Black") and descriptive attributes.

    Clauses with digits are left out: numbers travel only as slots, never copied by the model.
    """
    out = [c.strip() for c in p.title.split(",")[1:] if 2 < len(c.strip()) <= 40]
    out += [str(v) for k, v in p.attributes.items() if k.lower() in DESCRIPTIVE_KEYS and k.lower() != "genres" and v]
    seen, uniq = set(), []
    for f in out:
        if re.search(r"[\d*]", f) or f.lower() in seen:
            continue
        seen.add(f.lower())
        uniq.append(f)
    return uniq[:3]


def relation(p: Product, h: HistoryItem) -> str:
    a, b = (p.category[-1] if p.category else ""), (h.category[-1] if h.category else "")
    if a and a == b:
        return "same"
    if frozenset((a, b)) in COMPLEMENTS:
        return "complement"
    if p.category and h.category and p.category[0] == h.category[0]:
        return "family"
    return "other"


# ---------------------------------------------------------------- the writer
class Writer:
    """Writes a slotted narrative from a record: varied sentence plans, only facts in the record."""

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)

    def pick(self, options: list[str]) -> str:
        return self.rng.choice(options)

    def opener(self, rec: NarrativeRecord) -> str:
        named = {
            "warm": ["Hi {name}!", "Hello {name},", "{name}, we found something for you.", "Good news, {name}:",
                     "{name}, this one made us think of you."],
            "concise": ["{name}, a pick for you:", "For you, {name}:", ""],
            "premium": ["Dear {name},", "{name}, allow us to suggest something special.",
                        "{name}, a considered recommendation:"],
        }
        anon = {
            "warm": ["Here's one we think you'll like.", "We found something for you.", ""],
            "concise": [""],
            "premium": ["A considered recommendation:", "Allow us to suggest something special.", ""],
        }
        return self.pick((named if rec.customer else anon)[rec.tone])

    def history(self, rec: NarrativeRecord, k: int, kind: str) -> str:
        h = rec.history[k - 1]
        past, when = f"{{past{k}}}", f"{{past{k}_date}}"
        rel = relation(rec.product, h)
        leaf = (h.category[-1].lower() if h.category else "")
        by_rel = {
            "same": [f"Since you picked up the {past} in {when}, here is more of what you liked.",
                     f"You chose the {past} in {when}; this {kind} belongs on the same shelf.",
                     f"Your {past} from {when} tells us you know good {leaf}.",
                     f"More {leaf}, in the spirit of the {past} you ordered in {when}."],
            "complement": [f"It pairs naturally with the {past} you bought in {when}.",
                           f"You ordered the {past} in {when}; this completes the setup.",
                           f"The {past} from {when} needs a partner, and this is it.",
                           f"Alongside your {past} ({when}), it finishes the job."],
            "family": [f"It fits right in with the {past} you picked up in {when}.",
                       f"After the {past} in {when}, this is a natural next step.",
                       f"You went for the {past} in {when}; here is another piece for the same space."],
            "other": [f"Something new to go with the {past} from {when}.",
                      f"A change of pace from the {past} you chose in {when}.",
                      f"Beyond the {past} ({when}), here is something different."],
        }
        return self.pick(by_rel[rel])

    def pitch(self, rec: NarrativeRecord, kind: str, feats: list[str]) -> list[str]:
        p = rec.product
        leaf = p.category[-1] if p.category else ""
        brand = "{brand}'s " if p.brand else ""
        first = self.pick([
            f"Meet the {{product}}: {kind_article(kind)}{f' {with_feature(feats[0])}' if feats else ''}.",
            "Next on your list: the {product}.",
            f"We recommend the {{product}}, {brand}{kind}.",
            "Take a look at the {product}.",
            f"The {{product}} is {kind_article(kind)}{f', {feats[0].lower()}' if feats else ''}.",
        ])
        out = [first]
        said_kind = kind in first or "{brand}" in first
        purposes = PURPOSE.get(leaf) or ([p.description.split(".")[0].strip().lower()] if p.description else [])
        if purposes and purposes[0] and (rec.tone != "concise" or self.rng.random() < 0.5):
            purpose = self.pick(purposes)
            this = f"{'These' if is_plural(kind) else 'This'} {kind}"
            options = [f"{this} {plural_verb(purpose) if is_plural(kind) else purpose}."] if not said_kind else [
                f"It {purpose}.", f"{'Built by {brand}, it' if p.brand else 'It'} {purpose}.", f"{this} {purpose}."]
            out.append(self.pick(options))
        elif not said_kind:
            out.append(self.pick([f"It is {kind_article(kind)}.", f"A fine choice of {kind}."]))
        if len(feats) > 1 and rec.tone != "concise":
            out.append(self.pick([f"Look for the {feats[1].lower()}.", f"It comes with {feats[1].lower()}.",
                                  f"Note the {feats[1].lower()}."]))
        if product_year(p) and self.rng.random() < 0.6:
            out.append(self.pick(["It came out in {year}.", "A {year} release.", "Released in {year}."]))
        return out

    def offer(self, rec: NarrativeRecord) -> str:
        p = rec.product
        if p.price <= 0:
            return ""
        if p.discount > 0:
            return self.pick([
                "It's {price}, now {discount} off at {sale_price}.",
                "Right now it's {discount} off: {sale_price} instead of {price}.",
                "Save {saving}: {sale_price}, down from {price}.",
                "Now {sale_price} ({discount} off {price}).",
                "At {discount} off, it comes to {sale_price}.",
            ])
        return self.pick(["It's {price}.", "Yours for {price}.", "Priced at {price}.", "It costs {price}."])

    def pairing(self, rec: NarrativeRecord) -> str:
        if not rec.pair:
            return ""
        return self.pick(["Customers often add the {pair}.", "It goes well with the {pair}.",
                          "Many people pair it with the {pair}."])

    def cta(self, rec: NarrativeRecord) -> str:
        return self.pick({
            "warm": ["Add it to your next order!", "We think you'll love it.", "Give it a try.", ""],
            "concise": ["", "Worth a look.", "Add it to your cart."],
            "premium": ["We would be delighted to include it in your next order.", "A worthy addition.",
                        "It is ready when you are."],
        }[rec.tone])

    def write(self, rec: NarrativeRecord) -> str:
        kind = kind_phrase(rec.product)
        feats = features(rec.product)
        ks = list(range(1, len(rec.history) + 1))
        cited = rec.reason_index if rec.reason_index in ks else (self.pick(ks) if ks else None)
        parts = {
            "opener": [self.opener(rec)],
            "history": [self.history(rec, cited, kind)] if cited else [],
            "pitch": self.pitch(rec, kind, feats),
            "offer": [self.offer(rec)],
            "pair": [self.pairing(rec)] if self.rng.random() < 0.7 else [],
            "cta": [self.cta(rec)],
        }
        # a second history reference now and then, for longer, more personal texts
        if cited and len(ks) > 1 and rec.tone != "concise" and self.rng.random() < 0.3:
            other = self.pick([k for k in ks if k != cited])
            parts["history"].append(self.pick([f"You also picked up the {{past{other}}} in {{past{other}_date}}.",
                                               f"And the {{past{other}}} from {{past{other}_date}} is in good company."]))
        plan = self.pick([
            ["opener", "history", "pitch", "offer", "pair", "cta"],
            ["opener", "pitch", "history", "offer", "pair", "cta"],
            ["opener", "pitch", "offer", "history", "pair", "cta"],
            ["history", "pitch", "offer", "pair", "cta"],
            ["pitch", "history", "offer", "cta"],
        ])
        sentences = [s for name in plan for s in parts[name] if s]
        return " ".join(sentences)


def with_feature(feature: str) -> str:
    """'Black' -> 'in black'; 'Rounded Back' -> 'with rounded back'."""
    f = feature.lower()
    return f"in {f}" if " " not in f else f"with {f}"


def plural_verb(phrase: str) -> str:
    """'keeps reports organized' -> 'keep reports organized' (the purpose phrases start with a verb)."""
    verb, _, rest = phrase.partition(" ")
    irregular = {"is": "are", "has": "have", "does": "do"}
    if verb in irregular:
        verb = irregular[verb]
    elif verb.endswith("ies"):
        verb = verb[:-3] + "y"
    elif verb.endswith(("ches", "shes", "sses", "xes")):
        verb = verb[:-2]
    elif verb.endswith("s"):
        verb = verb[:-1]
    return f"{verb} {rest}".strip()


def is_plural(kind: str) -> bool:
    return kind.endswith("s") and not kind.endswith("ss")


def kind_article(kind: str) -> str:
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    return kind if is_plural(kind) else f"{article} {kind}"
