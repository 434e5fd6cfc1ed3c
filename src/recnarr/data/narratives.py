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
from recnarr.data.claims import MIN_SUPPORT, Pair, link_text, money, month_year, slot_values
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
    rating: float | None = None  # the customer's own rating of it (a rating event)
    link: str | None = None  # how the product relates to it, as a record backs it (`claims.link_text`)
    support: int = 0  # distinct customers who had both it and the product (its event), raw interactions
    evidence: str | None = None  # the recommender's term that made it count (`recommender.EVIDENCE_KINDS`)


@dataclass
class NarrativeRecord:
    product: Product
    history: list[HistoryItem]
    customer: str | None = None  # display name, if known
    reason_index: int | None = None  # 1-based history item that added most to the product's score
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
        stars = f", {h.rating:g} stars" if h.rating is not None and h.event == "rating" else ""
        link = link_text(h, rec.min_support) or "no link"
        lines.append(f"[{k}] {h.title} ({CATEGORY_SEP.join(h.category)}){when}{event}{stars}, {link}")
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
    said = [n for n in ("kind", "purpose", "fact", "feature", "year") if n in values]
    lines.append(f"### about it: {', '.join(said) or 'name only'}")
    lines.append(f"### tone: {rec.tone}")
    return "\n".join(lines) + "\n" + PROMPT_END


# ---------------------------------------------------------------- the writer
FACT_LEADS = ("In the catalog's words:", "From its description:", "Its description says:")  # before a quote
OPENERS = {
    "warm": ["Hi {name}!", "Good news, {name}!", "{name}, we found something for you.", "Hello {name}!",
             "{name}, here's a pick for you."],
    "concise": ["{name}, a pick for you.", "For you, {name}."],
    "premium": ["{name}, allow us to suggest something special.", "Dear {name}, a considered recommendation.",
                "{name}, we have something special for you."],
}
ANON_OPENERS = {"warm": ["Here's one we think you'll like.", "We found something for you."],
                "concise": ["A pick for you."], "premium": ["Allow us to suggest something special."]}
CLOSERS = {
    "warm": ["Add it to your next order!", "We think you'll love it.", "Give it a try.", "We hope you enjoy it.",
             "Take a look today!", "It's worth a look.", "We think it's a good fit.", "Enjoy!"],
    "concise": ["Worth a look.", "Add it to your cart.", "Take a look."],
    "premium": ["We would be delighted to include it in your next order.", "A worthy addition.",
                "It is ready when you are.", "We hope you enjoy it."],
}


class Writer:
    """Writes a slotted narrative from a record: claims only through slots, composed as a shop would
    send it (`claims.composition` checks it): one opener, the product named first, the recommender's
    own reason with its evidence, each claim once, 2-5 sentences, openers and closers drawn from many."""

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)

    def pick(self, options: list[str]) -> str:
        return self.rng.choice(options)

    def opener(self, rec: NarrativeRecord, v: dict[str, str]) -> str:
        if "name" in v:
            return self.pick(OPENERS[rec.tone]) if self.rng.random() < 0.7 else ""
        return self.pick(ANON_OPENERS[rec.tone]) if self.rng.random() < 0.3 else ""

    def lead(self, v: dict[str, str], opened: bool) -> str:
        """The sentence that names the product (the first to mention it). After an opener, no lead-in
        of its own ("Our pick for you:"): two hooks before the name are one too many."""
        options = ["Meet the {product}.", "We recommend the {product}.", "Take a look at the {product}.",
                   "We think you'll like the {product}."]
        if not opened:
            options += ["Next on your list: the {product}.", "Our pick for you: the {product}.",
                        "Here's one for you: the {product}."]
        if "a_kind" in v:
            options += ["Meet the {product}, {a_kind}.", "We recommend the {product}, {a_kind}.",
                        "Have a look at the {product}, {a_kind}."]
        if "brand" in v:
            options += ["We recommend the {product} from {brand}."]
        return self.pick(options)

    def reason(self, k: int, v: dict[str, str], named: bool) -> str:
        """A past item and the evidence that ties the product to it, in one clause."""
        past, link = f"{{past{k}}}", f"{{past{k}_link}}"
        when = f" in {{past{k}_date}}" if f"past{k}_date" in v else ""
        if f"past{k}_rating" in v:
            did = f"which {{past{k}_rating}}{when}"
        elif f"past{k}_verb" in v:
            did = f"which you {{past{k}_verb}}{when}"
        else:
            did = "from your basket"
        # the product named once: here, when no sentence before named it, else "it" / "this one"
        subject = "It" if named else "The {product}"
        options = [f"{subject} {link} the {past}, {did}."]
        if f"past{k}_verb" in v and f"past{k}_rating" not in v:
            options += [f"{subject} {link} the {past} you {{past{k}_verb}}{when}."]
            if named:
                options += [f"You {{past{k}_verb}} the {past}{when}, and this one {link} it."]
        return self.pick(options)

    def second(self, k: int, v: dict[str, str]) -> str:
        when = f" in {{past{k}_date}}" if f"past{k}_date" in v else ""
        did = f"which {{past{k}_rating}}{when}" if f"past{k}_rating" in v else f"which you {{past{k}_verb}}{when}"
        return f"And it {{past{k}_link}} the {{past{k}}}, {did}." if f"past{k}_verb" in v else ""

    def facts(self, v: dict[str, str], said_kind: bool) -> list[str]:
        """What the product itself is and does, each once; the catalog's own words first."""
        out = []
        if "fact" in v:
            out.append(f"{self.pick(FACT_LEADS)} {{fact}}.")
        if "purpose" in v:
            out.append(self.pick(["It {purpose}.", "This one {purpose}."]))
        if "feature" in v:
            out.append(self.pick(["It comes {feature}.", "You can have it {feature}."]))
        if "year" in v:
            out.append(self.pick(["It came out in {year}.", "A {year} release.", "Released in {year}."]))
        if not said_kind and "a_kind" in v and not out:
            out.append(self.pick(["It is {a_kind}.", "This one is {a_kind}."]))
        self.rng.shuffle(out)
        return out

    def offer(self, v: dict[str, str]) -> str:
        if "price" not in v:
            return ""  # an unknown price: no price claim at all
        if "discount" in v:
            same = v["saving"] == v["sale_price"]  # at 50% off "Save $5: $5" says one amount twice
            return self.pick([x for x in [
                "It's {price}, now {discount} off at {sale_price}.",
                "Right now it's {discount} off: {sale_price} instead of {price}.",
                "Save {saving}: {sale_price}, down from {price}.",
                "Now {sale_price} ({discount} off {price}).",
                "At {discount} off, it comes to {sale_price}.",
            ] if not (same and "{saving}" in x)])
        return self.pick(["It's {price}.", "Yours for {price}.", "Priced at {price}.", "It costs {price}."])

    def pairing(self, v: dict[str, str]) -> str:
        if "pair" not in v:
            return ""
        return self.pick(["{pair_support} the {pair}.", "Good to know: {pair_support} the {pair}."])

    def closer(self, rec: NarrativeRecord) -> str:
        calls = CLOSERS[rec.tone]
        if rec.product.price <= 0:  # not for sale in this catalog: no asking for an order (claims.check)
            calls = [c for c in calls if not ORDER_WORDS & set(c.lower().rstrip("!.").split())]
        return self.pick(calls) if self.rng.random() < 0.35 else ""  # most texts end on a fact

    def write(self, rec: NarrativeRecord) -> str:
        v = slot_values(rec)
        cited = 1 if "past1_link" in v else None  # the top contributor, or no past item at all
        opener = self.opener(rec, v)
        lead = self.lead(v, bool(opener))
        first_reason = cited is not None and self.rng.random() < 0.3  # the reason names the product itself
        body: list[str] = []
        if cited:
            body.append(self.reason(cited, v, named=not first_reason))
            # a second item only when it adds something: another link, another month
            differs = all(v.get(f"past2_{x}") != v.get(f"past1_{x}") for x in ("link", "date"))
            if "past2_link" in v and differs and rec.tone != "concise" and self.rng.random() < 0.25:
                body.append(self.second(2, v))
        product = self.facts(v, "{a_kind}" in lead)
        body += product[: 1 if rec.tone == "concise" else 2]
        offer = self.offer(v)
        if offer:
            body.insert(self.rng.randint(1 if cited else 0, len(body)), offer)
        if self.rng.random() < 0.4:
            body.append(self.pairing(v))
        body = [b for b in body if b]
        head = [body.pop(0)] if first_reason else [lead]  # the reason sentence names the product itself
        sentences = [opener, *head, *body, self.closer(rec)]
        sentences = [x for x in sentences if x]
        while len(sentences) > 5:  # at most 5: the extras go first, the reason and the offer stay
            drop = next(i for i in range(len(sentences) - 1, -1, -1)
                        if not any(t in sentences[i] for t in ("{product}", "_link}", "{price}", "{sale_price}")))
            sentences.pop(drop)
        return " ".join(sentences)
