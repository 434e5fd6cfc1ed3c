"""Send-readiness of finished narrative texts: what a copywriter would refuse to send.

The audit (`evaluation.audit`) asks whether each claim is true. This module asks whether the text is
fit to send: no link that says nothing ("a change of pace from"), no kind phrase that only repeats
the title ("Meet the Avery File Folder Labels: folder labels"), nothing said twice, no "this one"
before the product is named, no "also" with nothing before it, one opener, no placeholder words, and
2 to 5 sentences.

It is independent of the grammar that writes the texts: it imports nothing from
`recnarr.data.{claims,narratives,connectives,lexicon}` or `recnarr.inference`, and reads only the plain
text the customer sees, the raw product row and the titles of the customer's past items. A phrase
that grammar considers fine is still judged here. Each defect is one small function over the text's
sentences, with the titles masked first (titles hold commas, periods and words like "Hi" or "Test").
It is a heuristic reader: it leans towards silence rather than guessing.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# the audit's recognisers of amounts and dates (it, too, shares nothing with the writing grammar)
from recnarr.evaluation.audit import MONEY_RE, MONTH_YEAR_RE, NUMBER_RE, PERCENT_RE, YEAR_RE

DEFECTS = (
    "empty_reason",
    "kind_echo",
    "repeated_claim",
    "reference_before_name",
    "orphan_also",
    "stacked_opener",
    "placeholder_text",
    "too_long",
    "too_short",
)
MIN_SENTENCES, MAX_SENTENCES = 2, 5

PRODUCT = "⟦P⟧"  # the product's title, masked; past titles become ⟦H0⟧, ⟦H1⟧, ...
PAST_RE = re.compile(r"⟦H\d+⟧")
TITLE_RE = re.compile(r"⟦(?:P|H\d+)⟧")


def _wordset(words: str) -> frozenset[str]:
    """A set of words written as one string, for the long lists below."""
    return frozenset(words.split())


SENTENCE_END_RE = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s|$)")
CLAUSE_BREAK_RE = re.compile(r"[.!?:;,]+|\s[-–—]+\s")
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "no", "vs", "inc", "co", "ltd", "etc", "approx", "jr", "sr"}

EVENT_VERBS = r"(?:bought|purchased|ordered|rated|reviewed|viewed|watched|liked|loved|added|picked)"
VAGUE_LINK_RE = re.compile(
    r"\b(?:a\s+)?change\s+of\s+pace\s+from\b|\bfrom\s+the\s+same\s+department\s+as\b", re.I
)
# a past event and nothing else: "You also bought the Wool Throw in May 2023." ("rest": what follows)
BARE_EVENT_RE = re.compile(
    rf"^(?:in\s+\w+\.?\s+\d{{4}},?\s+)?you\s+(?:also\s+)?{EVENT_VERBS}\b(?P<rest>.*)$", re.I
)
GREETING_RE = re.compile(r"^(?:hi|hello|hey|dear|greetings|good\s+(?:morning|afternoon|evening))\b", re.I)
NAME_RE = re.compile(r"^[A-Z][\w'’-]*(?:\s+[A-Z][\w'’-]*)?$")
_NOT_NAMES = _wordset(
    "it this also so now plus and but meet here today then still yes well first finally again sure "
    "note enjoy thanks we you our"
)
HOOK_RE = re.compile(
    r"""\b(?:good\s+news|great\s+news|next\s+on\s+your\s+list|pick\s+for\s+you|for\s+you
    |we\s+found|found\s+something|you['’]ll\s+(?:like|love)|you\s+will\s+(?:like|love)|think\s+of\s+you
    |recommendation|suggest|something\s+special|here['’]s\s+one|here\s+is\s+one|take\s+a\s+look
    |have\s+a\s+look|check\s+(?:this|it)\s+out|guess\s+what|heads\s+up|don['’]t\s+miss)\b""",
    re.I | re.X,
)

# kind phrases: after "is (a/an)", "It's (a/an)", "<title>: (a/an)", "<title>, a/an" and "from our"
KIND_RE = re.compile(
    r"(?:\b(?:is|are)(?:\s+also)?|\b[Ii]t['’]s|⟦P⟧\s*:|⟦P⟧\s*,(?=\s+an?\s))\s+(?:(?:an?|the)\s+)?"
    r"(?P<kind>[A-Za-z][\w'’-]*(?:\s+[A-Za-z][\w'’-]*){0,3})"
)
OUR_KIND_RE = re.compile(r"\bfrom\s+our\s+(?P<kind>[A-Za-z][\w'’-]*(?:\s+[A-Za-z][\w'’-]*){0,3})")
# words that end a kind phrase ("a binding machine for busy offices" -> "binding machine")
_BREAKERS = _wordset("""for from with by that which who to in on at of and or but as you your our it its this
    made now when while so if than like since because also just not very ready perfect here there""")
# words that carry no kind ("a paper product" echoes "Xerox Paper"; "a natural companion" is a link)
_GENERIC = _wordset("""a an the product products item items thing things one ones piece pick choice kind type option
    great fine good nice new movie movies film films natural companion change pace same release""")
_LINK_WORDS = _wordset("""and which so because like similar same companion companions pairs pair goes go fits fit
    match matches complements together this it one pick too fan fans who as with""")
_PLACEHOLDER_ANY_CASE = re.compile(
    r"\b(?:lorem|ipsum|tbd|todo|placeholder|xxx+)\b|\bn/a\b|\{\w*\}|<\w+>|\[\w+\]", re.I
)
_PLACEHOLDER_CASED = re.compile(
    r"\b(?:Sample|SAMPLE|Test|TEST|None|NaN|nan|null|undefined)\b"
    r"|\b(?:Hi|Hello|Hey|Dear)\s+(?:Customer|User|Name|NAME|First[Nn]ame)\b"
    r"|(?<!same )(?<!Same )\b[Cc]ategor(?:y|ies)\b"
)


@dataclass
class Readiness:
    defects: list[str]  # defect class names found, in DEFECTS order
    details: list[str]  # one human sentence per defect, quoting the span
    sentences: list[str] = field(default_factory=list)  # the text's sentences, as the customer reads them
    frames: list[str] = field(default_factory=list)  # the same with titles, amounts, dates, names masked

    @property
    def ok(self) -> bool:
        return not self.defects


@dataclass
class _Text:
    """A narrative with its titles masked, split into sentences; `unmask` turns a span back into text."""

    sentences: list[str]  # masked
    product: dict[str, Any]
    titles: dict[str, str]  # mask -> title

    def unmask(self, s: str) -> str:
        return TITLE_RE.sub(lambda m: self.titles.get(m.group(), m.group()), s)

    @property
    def masked(self) -> str:
        return " ".join(self.sentences)


# ---------------------------------------------------------------- reading
def _norm(s: Any) -> str:
    return " ".join(str(s or "").split())


def _title_pattern(title: str) -> str:
    """A title on word boundaries, also without a trailing "(1997)" (a film named bare)."""
    bare = re.sub(r"\s*\(\d{4}\)$", "", title)
    forms = [title] + ([bare] if bare != title and len(bare.split()) >= 2 else [])
    return "|".join(r"(?<!\w)" + re.escape(f) + r"(?!\w)" for f in forms)


def _mask_titles(text: str, title: str, past_titles: Sequence[str]) -> tuple[str, dict[str, str]]:
    named = {PRODUCT: title} if len(title) >= 2 else {}
    for i, t in enumerate(dict.fromkeys(_norm(t) for t in past_titles if isinstance(t, str))):
        if len(t) >= 3 and t.lower() != title.lower():
            named[f"⟦H{i}⟧"] = t
    for mask, t in sorted(named.items(), key=lambda kv: -len(kv[1])):  # longest first: no partial overlaps
        text = re.sub(_title_pattern(t), mask, text, flags=re.I)
    return text, named


def split_sentences(text: str) -> list[str]:
    """Sentences end at . ! ? before a space or the end; not after "No.", "Dr." and the like."""
    out, start = [], 0
    for m in SENTENCE_END_RE.finditer(text):
        before = re.search(r"(\w+)$", text[start : m.start()])
        if m.group().startswith(".") and before and before.group(1).lower() in _ABBREVIATIONS:
            continue
        out.append(text[start : m.end()].strip())
        start = m.end()
    out.append(text[start:].strip())
    return [s for s in out if s]


def _clauses(s: str) -> list[str]:
    return [c.strip() for c in CLAUSE_BREAK_RE.split(s) if c.strip()]


def _is_greeting(clause: str) -> bool:
    """ "Hi Ann", "Dear Ann", or a name on its own ("Ann" in "Ann, a pick for you")."""
    words = clause.split()
    return (bool(GREETING_RE.match(clause)) and len(words) <= 3) or (
        bool(NAME_RE.match(clause)) and not HOOK_RE.search(clause) and words[0].lower() not in _NOT_NAMES
    )


def _is_opener(clause: str) -> bool:
    return _is_greeting(clause) or bool(HOOK_RE.search(clause))


def _singular(w: str) -> str:
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("sses", "shes", "ches", "xes")):
        return w[:-2]
    return w[:-1] if w.endswith("s") and not w.endswith(("ss", "us", "is")) and len(w) > 3 else w


def _words(s: str) -> list[str]:
    return [_singular(w) for w in re.findall(r"[a-z0-9]+", s.lower())]


def _kind_words(phrase: str) -> list[str]:
    """The content words of a kind phrase, up to the first breaker word ("for", "from", ...)."""
    out = []
    for w in phrase.split():
        if w.lower() in _BREAKERS:
            break
        out += [x for x in _words(w) if x not in _GENERIC]
    return out


def _kinds(t: _Text) -> list[tuple[int, str, list[str], bool]]:
    """(sentence index, phrase, content words, said of the product by name or "is") for every kind phrase."""
    found = []
    for i, s in enumerate(t.sentences):
        for rx, direct in ((KIND_RE, True), (OUR_KIND_RE, False)):
            for m in rx.finditer(s):
                if words := _kind_words(m.group("kind")):
                    found.append((i, m.group("kind"), words, direct))
    return found


# ---------------------------------------------------------------- defects (each: detail sentence or None)
def empty_reason(t: _Text) -> str | None:
    """A link that says nothing: "It is a change of pace from the Wool Throw.", "from the same department
    as", or a bare past event with no link in its sentence: "You also bought the Wool Throw Blanket."."""
    for s in t.sentences:
        if m := VAGUE_LINK_RE.search(s):
            return f"'{t.unmask(s)}' gives no reason: '{m.group()}' says nothing about the product."
        if (m := BARE_EVENT_RE.match(s)) and not _LINK_WORDS & set(
            re.findall(r"[a-z]+", m.group("rest").lower())
        ):
            return f"'{t.unmask(s)}' names a past item without saying how the product relates to it."
    return None


def kind_echo(t: _Text) -> str | None:
    """The kind phrase only repeats the title ("Meet the Avery File Folder Labels: folder labels", "the
    Xerox Paper. It is a paper product", "a seater sofa" from "Three Seater Sofa"), or the kind is said
    twice ("It is a drama movie. A fine choice from our drama movies.")."""
    title = set(_words(t.product.get("title") or ""))
    kinds = _kinds(t)
    for _, phrase, words, direct in kinds:
        if direct and title and set(words) <= title:
            return (
                f"The kind phrase '{phrase}' only repeats words of the title '{t.titles.get(PRODUCT, '')}'."
            )
    for a, (i, pa, wa, _) in enumerate(kinds):
        for j, pb, wb, _ in kinds[a + 1 :]:
            if i != j and set(wa) & set(wb):
                return f"The kind is said twice: '{pa}' and '{pb}'."
    return None


def repeated_claim(t: _Text) -> str | None:
    """A sentence, price, discount or date said twice, a past title named twice or the product's title
    named more than twice: "It's $9.99. ... Yours for $9.99."."""
    said = Counter(re.sub(r"\W+", " ", s.lower()).strip() for s in t.sentences)
    spans = [
        f"the sentence '{t.unmask(s)}'"
        for s in t.sentences
        if said[re.sub(r"\W+", " ", s.lower()).strip()] > 1
    ]
    titles = Counter(TITLE_RE.findall(t.masked))
    spans += [f"'{t.titles[m]}' ({n} times)" for m, n in titles.items() if n > (2 if m == PRODUCT else 1)]
    text = t.masked
    facts = Counter(m.group() for rx in (MONEY_RE, PERCENT_RE) for m in rx.finditer(text))
    for s in t.sentences:  # a date counts once per past item it belongs to
        owner = tuple(PAST_RE.findall(s))
        rest = MONTH_YEAR_RE.sub("", s)
        dates = [m.group() for m in MONTH_YEAR_RE.finditer(s)] + [m.group() for m in YEAR_RE.finditer(rest)]
        facts.update((d, owner) for d in dates)
    spans += [f"'{k if isinstance(k, str) else k[0]}' ({n} times)" for k, n in facts.items() if n > 1]
    return f"Said twice: {'; '.join(dict.fromkeys(spans))}." if spans else None


def reference_before_name(t: _Text) -> str | None:
    """ "this one", "this pick" or a sentence opening with "it" before the product is named: "Hi Ann! This
    one is a natural companion to the Wool Throw. Meet the Walnut Board." (a greeting or hook is fine)."""
    for s in t.sentences:
        clauses = _clauses(s.split(PRODUCT)[0])  # the sentence up to the title, if it is named here
        if re.match(r"it\b", s, re.I) and clauses and not _is_opener(clauses[0]):
            return f"'{t.unmask(s)}' refers to the product before naming it."
        for c in clauses:
            if not _is_opener(c) and (m := re.search(r"\bthis\s+(?:one|pick)\b", c, re.I)):
                return f"'{m.group()}' in '{t.unmask(s)}' comes before the product is named."
        if PRODUCT in s:
            return None
    return None


def orphan_also(t: _Text) -> str | None:
    """ "also" about the customer's history with no past item named before it: "Meet the Walnut Board.
    You also bought the Wool Throw Blanket.". Not the relative "customers who also bought the X": there
    "also" ties other customers' purchase to the product, and the item it names follows."""
    history = re.compile(
        rf"⟦H\d+⟧|\b{EVENT_VERBS}\b|companion|same\s+(?:category|department)|change\s+of\s+pace", re.I
    )
    for i, s in enumerate(t.sentences):
        for m in re.finditer(r"(?<!\bwho )\balso\b", s, re.I):
            before = " ".join(t.sentences[:i]) + " " + s[: m.start()]
            if history.search(s) and not PAST_RE.search(before):
                return f"'also' in '{t.unmask(s)}' follows no past item."
    return None


def stacked_opener(t: _Text) -> str | None:
    """Two hooks, or two greetings, before the product: "Good news: Next on your list: the X.", "Hi Ann!
    Good news, Ann: ...". One greeting and one hook ("Hi Ann! Our pick for you: the X.") is fine."""
    head = t.masked.split(PRODUCT)[0]
    clauses = _clauses(head)
    if clauses and PRODUCT in t.masked and not re.search(r"[.!?:;,]\s*$", head):
        clauses = clauses[:-1]  # the title's own clause ("Meet the")
    greetings = [c for c in clauses if _is_greeting(c)]
    hooks = [c for c in clauses if not _is_greeting(c) and HOOK_RE.search(c)]
    if len(greetings) > 1 or len(hooks) > 1:
        return f"Openers stacked before the product: {', '.join(repr(c) for c in greetings + hooks)}."
    return None


def placeholder_text(t: _Text) -> str | None:
    """Placeholder words or the product's id in the text: "Hi Sample!", "A fine choice from our category.",
    "Lorem ipsum", "N/A", "{product}", "OFF-BI-10003910"."""
    text = t.masked
    spans = [m.group() for rx in (_PLACEHOLDER_ANY_CASE, _PLACEHOLDER_CASED) for m in rx.finditer(text)]
    pid = str(t.product.get("id") or "")
    if pid and not pid.isdigit() and re.search(r"(?<![\w-])" + re.escape(pid) + r"(?![\w-])", text):
        spans.append(pid)  # a bare number id (MovieLens "50") is left alone: it reads as a number
    return f"Placeholder text: {', '.join(repr(s) for s in dict.fromkeys(spans))}." if spans else None


def _content_sentences(t: _Text) -> int:
    """Sentences, a greeting on its own ("Hi Ann!") not counted."""
    return sum(not all(_is_greeting(c) for c in _clauses(s)) for s in t.sentences)


def too_long(t: _Text) -> str | None:
    """More than 5 sentences (a greeting on its own not counted)."""
    n = _content_sentences(t)
    return f"{n} sentences, more than {MAX_SENTENCES}." if n > MAX_SENTENCES else None


def too_short(t: _Text) -> str | None:
    """Fewer than 2 sentences (a greeting on its own not counted): "Hi Ann! Meet the Walnut Board."."""
    n = _content_sentences(t)
    return f"{n} sentence(s), fewer than {MIN_SENTENCES}." if n < MIN_SENTENCES else None


CHECKS: dict[str, Callable[[_Text], str | None]] = {
    "empty_reason": empty_reason,
    "kind_echo": kind_echo,
    "repeated_claim": repeated_claim,
    "reference_before_name": reference_before_name,
    "orphan_also": orphan_also,
    "stacked_opener": stacked_opener,
    "placeholder_text": placeholder_text,
    "too_long": too_long,
    "too_short": too_short,
}
assert tuple(CHECKS) == DEFECTS


# ---------------------------------------------------------------- API
def frame(sentence: str) -> str:
    """A sentence with its facts masked: titles, amounts, percentages, dates, numbers, capitalised names."""
    s = TITLE_RE.sub("<title>", sentence)
    s = MONEY_RE.sub("<money>", s)
    s = PERCENT_RE.sub("<pct>", s)
    s = MONTH_YEAR_RE.sub("<date>", s)
    s = NUMBER_RE.sub("<n>", s)
    words = s.split()
    for i, w in enumerate(words):  # the first word only when it is an address ("Ann, ...")
        if i > 0 or re.fullmatch(r"[A-Z][\w'’-]*[,:]", w):
            words[i] = re.sub(r"^[A-Z][\w'’-]*", "<name>", w)
    return re.sub(r"<name>(?: <name>)+", "<name>", " ".join(words))


def check(text: str, product: dict, past_titles: Sequence[str] = ()) -> Readiness:
    """The defects of one narrative, given the raw product row and the titles of the customer's past items."""
    text = text if isinstance(text, str) else ""  # a missing narrative (None, NaN) is an empty one
    masked, titles = _mask_titles(_norm(text), _norm(product.get("title")), past_titles)
    t = _Text(split_sentences(masked), product, titles)
    if not t.sentences:
        return Readiness(["too_short"], ["The text is empty."])
    found = [(name, detail) for name, fn in CHECKS.items() if (detail := fn(t))]
    return Readiness(
        [n for n, _ in found],
        [d for _, d in found],
        [t.unmask(s) for s in t.sentences],
        [frame(s) for s in t.sentences],
    )


def _top(values: list[str], n: int) -> list:
    """The commonest value and its share of all n texts (an empty text has no opener or closer)."""
    if not values:
        return ["", 0.0]
    value, count = Counter(values).most_common(1)[0]
    return [value, round(count / n, 4)]


def summarize(texts: Sequence[str], results: Sequence[Readiness]) -> dict:
    """Ready share, defect counts, the commonest opener (first 3 words) and closer (last sentence) with
    their shares, distinct sentence frames and distinct-2 over a set of narratives."""
    texts = [x if isinstance(x, str) else "" for x in texts]
    sentences = [r.sentences or split_sentences(_norm(x)) for x, r in zip(texts, results, strict=True)]
    frames = {
        f for x, r, s in zip(texts, results, sentences, strict=True) for f in (r.frames or map(frame, s))
    }
    bigrams: Counter = Counter()
    for x in texts:
        toks = re.findall(r"[a-z0-9$%']+", x.lower())
        bigrams.update(zip(toks, toks[1:], strict=False))
    n = len(results)
    return {
        "n": n,
        "ready": round(sum(r.ok for r in results) / n, 4) if n else 0.0,
        "by_defect": {d: sum(d in r.defects for r in results) for d in DEFECTS},
        "top_opener": _top([" ".join(s[0].split()[:3]).strip(".,:;!?") for s in sentences if s], n),
        "top_closer": _top([s[-1] for s in sentences if s], n),
        "frames": len(frames),
        "distinct_2": round(len(bigrams) / sum(bigrams.values()), 4) if bigrams else 0.0,
    }


def format_table(summaries: dict[str, dict]) -> str:
    """A markdown table: one row per dataset or system, defect counts as the last columns."""

    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|")

    head = ["system", "n", "ready", "top opener", "top closer", "frames", "distinct-2", *DEFECTS]
    rows = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * 2 + "---|---|" + "---:|" * (2 + len(DEFECTS))]
    for name, s in summaries.items():
        (op, op_share), (cl, cl_share) = s["top_opener"], s["top_closer"]
        cells = [
            name,
            s["n"],
            f"{s['ready']:.1%}",
            f"'{op}' ({op_share:.0%})",
            f"'{cl}' ({cl_share:.0%})",
            s["frames"],
            f"{s['distinct_2']:.3f}",
            *(s["by_defect"].get(d, 0) for d in DEFECTS),
        ]
        rows.append("| " + " | ".join(cell(c) for c in cells) + " |")
    return "\n".join(rows)
