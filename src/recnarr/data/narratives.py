"""The narrative format, defined once: the record, the prompt, and the writer of fine-tuning targets.

A `NarrativeRecord` holds what is true: the customer, a few real past interactions (each with its
own date and event), the candidate product, why retrieval chose it, an item bought in the same
orders by enough customers, and a tone. `format_prompt` renders it for the model. The writer makes a
target in the claim grammar of `data.claims`: every claim is a slot (`{product}`, `{kind}`,
`{past2_date}`, `{past1_link}` ...) filled from the record later, and every other word is connective
vocabulary (`data.connectives`), so a target states nothing the record does not back. Many sentence
plans and phrasings per claim kind, for each of the three tones.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from recnarr.choices import STYLES
from recnarr.data.claims import MIN_SUPPORT, Pair, money, month_year, relation, slot_values
from recnarr.data.connectives import ORDER_WORDS
from recnarr.data.schema import CATEGORY_SEP, Product

PROMPT_END = "### narrative:\n"
END_OF_NARRATIVE = "<|endoftext|>"
TONES = STYLES


@dataclass
class HistoryItem:
    product_id: str
    title: str
    category: list[str]
    date: str | None  # ISO date of the interaction; None for an anonymous basket sent without dates
    brand: str | None = None
    event: str | None = "purchase"  # schema.EVENT_TYPES; None: an anonymous basket item (no event known)


@dataclass
class NarrativeRecord:
    product: Product
    history: list[HistoryItem]
    customer: str | None = None  # display name, if known
    reason_index: int | None = None  # 1-based history item retrieval found nearest
    reason_kind: str = "similar"  # similar | copurchase
    pair: Pair | None = None  # an item bought in the same orders, with its support
    tone: str = "warm"
    user_id: str | None = None
    min_support: int = MIN_SUPPORT  # distinct customers a "bought together" claim needs

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> NarrativeRecord:
        d = dict(d)
        d["product"] = Product(**d["product"])
        d["history"] = [HistoryItem(**h) for h in d["history"]]
        d["pair"] = Pair(**d["pair"]) if isinstance(d.get("pair"), dict) else None
        return cls(**d)


EVENT_WORDS = {"purchase": "bought", "rating": "rated", "view": "viewed", "cart": "saved to cart"}


def format_prompt(rec: NarrativeRecord) -> str:
    """The model's input: the facts, each past item's event and how it relates to the product. A slot
    the record cannot fill has no line here (no price line, no price slot), so the model sees none."""
    p = rec.product
    lines = [f"### customer: {rec.customer or 'anonymous'}", "### history:"]
    for k, h in enumerate(rec.history, 1):
        when = f", {month_year(h.date)}" if h.date else ""
        event = f", {EVENT_WORDS[h.event]}" if h.event in EVENT_WORDS else ""
        lines.append(f"[{k}] {h.title} ({CATEGORY_SEP.join(h.category)}){when}{event}, "
                     f"{relation(p, h.category)}")
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
    values = slot_values(rec)
    if "pair" in values:
        lines.append(f"### bought together: {values['pair']} ({rec.pair.support} customers)")
    lines.append(f"### tone: {rec.tone}")
    return "\n".join(lines) + "\n" + PROMPT_END


# ---------------------------------------------------------------- the writer
class Writer:
    """Writes a slotted narrative from a record: varied sentence plans, claims only through slots."""

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)

    def pick(self, options: list[str]) -> str:
        return self.rng.choice(options)

    def opener(self, rec: NarrativeRecord, v: dict[str, str]) -> str:
        named = {
            "warm": ["Hi {name}!", "Hello {name},", "{name}, we found something for you.", "Good news, {name}:",
                     "{name}, this one made us think of you.", "Hi {name}, we think you'll like this one."],
            "concise": ["{name}, a pick for you:", "For you, {name}:", "{name}:", ""],
            "premium": ["Dear {name},", "{name}, allow us to suggest something special.",
                        "{name}, a considered recommendation:", "Dear {name}, we have something for you."],
        }
        anon = {
            "warm": ["Here's one we think you'll like.", "We found something for you.", "Good news:", ""],
            "concise": ["", "A pick for you:"],
            "premium": ["A considered recommendation:", "Allow us to suggest something special.", ""],
        }
        return self.pick((named if "name" in v else anon)[rec.tone])

    def history(self, k: int, v: dict[str, str]) -> str:
        """A past item, its own date and event, and how the product relates to it: one clause."""
        past, link = f"{{past{k}}}", f"{{past{k}_link}}"
        verb, date = f"past{k}_verb" in v, f"past{k}_date" in v
        did = (f"you {{past{k}_verb}} in {{past{k}_date}}" if date else f"you {{past{k}_verb}}") if verb else (
            "in your basket")
        options = [f"It is {link} the {past} {did}.", f"The {{product}} is {link} the {past} {did}.",
                   f"This pick is {link} the {past} {did}.", f"This one is {link} the {past} {did}."]
        if verb and date:
            options += [f"In {{past{k}_date}} you {{past{k}_verb}} the {past}, and this one is {link} it.",
                        f"You {{past{k}_verb}} the {past} in {{past{k}_date}}, and this pick is {link} it."]
        return self.pick(options)

    def also(self, k: int, v: dict[str, str]) -> str:
        if f"past{k}_verb" not in v:
            return ""
        when = f" in {{past{k}_date}}" if f"past{k}_date" in v else ""
        return self.pick([f"You also {{past{k}_verb}} the {{past{k}}}{when}.",
                          f"It is also {{past{k}_link}} the {{past{k}}} you {{past{k}_verb}}{when}."])

    def pitch(self, rec: NarrativeRecord, v: dict[str, str]) -> list[str]:
        first = self.pick([
            "Meet the {product}: {a_kind}." if "feature" not in v else "Meet the {product}: {a_kind}, {feature}.",
            "Next on your list: the {product}.",
            "We recommend the {product}, {a_kind} from {brand}." if "brand" in v else
            "We recommend the {product}, {a_kind}.",
            "Take a look at the {product}.",
            "The {product} is {a_kind}." if "feature" not in v else "The {product} is {a_kind}, {feature}.",
            "Our pick for you: the {product}.",
        ])
        out = [first]
        said_kind = "{a_kind}" in first
        if "purpose" in v and (rec.tone != "concise" or self.rng.random() < 0.5):
            out.append(self.pick(["It {purpose}.", "The {product} {purpose}." if "{product}" not in first else
                                  "It {purpose}.", "This one {purpose}."]))
        if not said_kind:
            out.append(self.pick(["It is {a_kind}.", "This one is {a_kind}."]))
        if "category" in v and rec.tone != "concise" and self.rng.random() < 0.25:
            out.append("A fine choice from our {category}.")
        if "brand" in v and "{brand}" not in first and self.rng.random() < 0.5:
            out.append(self.pick(["It comes from {brand}.", "Made by {brand}.", "It is made by {brand}."]))
        if "feature" in v and "{feature}" not in first and rec.tone != "concise" and self.rng.random() < 0.6:
            out.append(self.pick(["It comes {feature}.", "You can have it {feature}."]))
        if "year" in v and self.rng.random() < 0.6:
            out.append(self.pick(["It came out in {year}.", "A {year} release.", "Released in {year}."]))
        return out

    def offer(self, v: dict[str, str]) -> str:
        if "price" not in v:
            return ""  # an unknown price: no price claim at all
        if "discount" in v:
            return self.pick([
                "It's {price}, now {discount} off at {sale_price}.",
                "Right now it's {discount} off: {sale_price} instead of {price}.",
                "Save {saving}: {sale_price}, down from {price}.",
                "Now {sale_price} ({discount} off {price}).",
                "At {discount} off, it comes to {sale_price}.",
            ])
        return self.pick(["It's {price}.", "Yours for {price}.", "Priced at {price}.", "It costs {price}."])

    def pairing(self, v: dict[str, str]) -> str:
        if "pair" not in v:
            return ""
        return self.pick(["{pair_support} the {pair}.", "Good to know: {pair_support} the {pair}."])

    def cta(self, rec: NarrativeRecord) -> str:
        calls = {
            "warm": ["Add it to your next order!", "We think you'll love it.", "Give it a try.", "",
                     "We hope you enjoy it."],
            "concise": ["", "Worth a look.", "Add it to your cart."],
            "premium": ["We would be delighted to include it in your next order.", "A worthy addition.",
                        "It is ready when you are."],
        }[rec.tone]
        if rec.product.price <= 0:  # not for sale in this catalog: no asking for an order (claims.check)
            calls = [c for c in calls if not ORDER_WORDS & set(c.lower().rstrip("!.").split())]
        return self.pick(calls)

    def write(self, rec: NarrativeRecord) -> str:
        v = slot_values(rec)
        ks = list(range(1, len(rec.history) + 1))
        cited = rec.reason_index if rec.reason_index in ks else (self.pick(ks) if ks else None)
        parts = {
            "opener": [self.opener(rec, v)],
            "history": [self.history(cited, v)] if cited else [],
            "pitch": self.pitch(rec, v),
            "offer": [self.offer(v)],
            "pair": [self.pairing(v)] if self.rng.random() < 0.8 else [],
            "cta": [self.cta(rec)],
        }
        # a second past item now and then, for longer, more personal texts
        if cited and len(ks) > 1 and rec.tone != "concise" and self.rng.random() < 0.3:
            parts["history"].append(self.also(self.pick([k for k in ks if k != cited]), v))
        plan = self.pick([
            ["opener", "history", "pitch", "offer", "pair", "cta"],
            ["opener", "pitch", "history", "offer", "pair", "cta"],
            ["opener", "pitch", "offer", "history", "pair", "cta"],
            ["pitch", "history", "offer", "pair", "cta"],
            ["pitch", "offer", "history", "cta"],
        ])
        sentences = [s for name in plan for s in parts[name] if s]
        if not any("{product}" in s for s in sentences):  # the product is always named
            sentences.insert(1 if parts["opener"][0] else 0, self.pick(["Take a look at the {product}.",
                                                                        "We recommend the {product}."]))
        return " ".join(sentences)
