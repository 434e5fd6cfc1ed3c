"""Verified decoding: the claim grammar enforced while the model samples, sentence by sentence.

`Grammar` is the claim grammar of `data.claims` as an automaton over characters: outside a slot
only connective words (`data.connectives`), spaces and punctuation; a slot only one this record can
fill; no digit outside a slot; a clause may not end while a bound slot (`{past2_date}`, `{pair}` ...)
misses its owner in that clause. `TokenTable` gives each GPT-2 token its text, so a token is allowed
when the automaton accepts its characters from the current state.

`NarrativeGuide` is the engine `Guide` for one narrative. It allows only what the grammar accepts
(the end of text only once a verified sentence names the product), and after each sentence fills
and verifies everything accepted so far plus that sentence with `grounding.ground`, the same call
that judges any narrative. A failing sentence is rolled back and sampled again (`max_tries`), then
left out (it stays in the model's context, not in the text). What it has accepted is what the
reader sees; it is released for streaming only once it names the product, so a streamed byte is
never taken back: the final narrative is the streamed text.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

from recnarr.data.claims import (
    PRODUCT_FACTS,
    SENTENCE_SPLIT,
    SLOT_NAMES,
    SLOT_RE,
    fill,
    name_slots,
    owner_of,
    slot_values,
)
from recnarr.data.connectives import VOCABULARY
from recnarr.data.narratives import FACT_LEADS, NarrativeRecord
from recnarr.inference.engine import COMMIT, GO_ON, REJECT
from recnarr.inference.grounding import MISSING_PRODUCT, Verification, ground

LETTERS = frozenset(string.ascii_letters)
WORD_CHARS = LETTERS | frozenset("'\u2019-")  # data.claims.WORD_RE: a word runs on through these
PUNCT = frozenset(".,!?;:-'\"()\u2013\u2014\u2019")
CLAUSE_END = frozenset(".!?;:")  # data.claims.CLAUSE_RE: a run of these before a space ends a clause
DASHES = frozenset("-\u2013\u2014")  # ... and so does " - "
SLOT_CHARS = frozenset(string.ascii_lowercase + string.digits + "_")
ALLOWED_CHARS = LETTERS | PUNCT | SLOT_CHARS | frozenset(" {}")
TEXT, WORD, SLOT = 0, 1, 2


def _prefixes(words) -> frozenset[str]:
    return frozenset(w[:i] for w in words for i in range(1, len(w) + 1))


WORD_PREFIXES = _prefixes(VOCABULARY)


@dataclass(frozen=True, slots=True)
class State:
    mode: int = TEXT
    buf: str = ""  # the word (lower case) or slot name being written
    clause: frozenset[str] = frozenset()  # slots in the current clause
    prev: str = ""
    prev2: str = ""


class Grammar:
    """The slotted narratives one record allows, read character by character (module docstring)."""

    def __init__(self, names):
        self.names = frozenset(names)
        self.name_prefixes = _prefixes(self.names)

    def _open(self, prefix: str, clause: frozenset[str]) -> bool:
        """Some slot this clause may still take starts with `prefix`: a slot name is never begun that
        could only close on one already in the clause (a dead end with no token allowed)."""
        return not clause or any(n.startswith(prefix) for n in self.names - clause)

    @staticmethod
    def bound(clause: frozenset[str]) -> bool:
        return all((o := owner_of(n)) is None or o in clause for n in clause)

    def feed(self, st: State, text: str) -> State | None:
        """The state after `text`, or None if no narrative of this record continues that way."""
        mode, buf, clause, prev, prev2 = st.mode, st.buf, st.clause, st.prev, st.prev2
        for c in text:
            if mode == SLOT:
                if c == "}":
                    if buf not in self.names or buf in clause:  # a claim once per clause
                        return None
                    mode, clause, buf = TEXT, clause | {buf}, ""
                elif c in SLOT_CHARS and buf + c in self.name_prefixes and self._open(buf + c, clause):
                    buf += c
                else:
                    return None
            else:
                if mode == WORD:
                    if c in WORD_CHARS:
                        buf += "'" if c == "\u2019" else c.lower()
                        if buf not in WORD_PREFIXES:
                            return None
                        prev2, prev = prev, c
                        continue
                    if buf not in VOCABULARY:
                        return None
                    mode, buf = TEXT, ""
                if c in LETTERS:
                    # a slot's value must stand alone: the verifier finds values on word boundaries
                    if prev in ("}", "$") or c.lower() not in WORD_PREFIXES:
                        return None
                    mode, buf = WORD, c.lower()
                elif c == "{":
                    if prev in LETTERS or prev in ("}", "$") or self.names <= clause:
                        return None
                    mode, buf = SLOT, ""
                elif c == " ":
                    if prev == " ":
                        return None
                    if prev in CLAUSE_END or (prev in DASHES and prev2 == " "):
                        clause = frozenset()  # checked when the clause-ending mark was written
                elif c in PUNCT:
                    if (c in CLAUSE_END or (c in DASHES and prev == " ")) and not self.bound(clause):
                        return None
                else:
                    return None
            prev2, prev = prev, c
        return State(mode, buf, clause, prev, prev2)

    def can_end(self, st: State) -> bool:
        if st.mode == SLOT or (st.mode == WORD and st.buf not in VOCABULARY):
            return False
        return st.prev != " " and self.bound(st.clause)


class TokenTable:
    """Each token's text (None where it cannot occur in a slotted narrative: other characters, a partial
    UTF-8 sequence) and the ids that can (`admissible`)."""

    _cache: dict[tuple[int, int], TokenTable] = {}

    def __init__(self, tokenizer, vocab_size: int):
        import torch

        texts: list[str | None] = []
        figures: list[int] = []  # tokens that state a figure: digits, a currency or percent sign
        for i in range(vocab_size):
            try:
                s = tokenizer.decode_bytes([i]).decode("utf-8")
            except (UnicodeDecodeError, KeyError, ValueError):
                s = None
            texts.append(s if s and set(s) <= ALLOWED_CHARS else None)
            if s and FIGURE.search(s):
                figures.append(i)
        self.text = texts
        self.figures = figures
        self.admissible = torch.tensor([i for i, s in enumerate(texts) if s is not None], dtype=torch.long)
        by_first: dict[str, list[int]] = {}
        for i, s in enumerate(texts):
            if s is not None:
                by_first.setdefault(s[0], []).append(i)
        # the admissible ids by their first character: a state that allows few characters (inside a slot
        # name) then has few candidate tokens to try, not the whole vocabulary
        self.by_first = {c: torch.tensor(ids, dtype=torch.long) for c, ids in by_first.items()}
        self._narrative: dict[int, torch.Tensor] = {}

    def narrative_ids(self, eot: int):
        """The tokens the decoder computes the head over (sorted ids), ~4,600 of GPT-2's 50,257; every
        other logit is -inf. They are those any narrative can be written in, the end of text included:
        every run of letters, digits and underscores in them is a piece of a connective word or of a
        slot name (`claims.SLOT_NAMES`), a superset of what the grammar allows in any state (a word or
        slot name may run across tokens, so a piece anywhere in one counts). And the figure tokens
        (digits, $, %), which the grammar never allows outside a slot: a model that reaches for a
        figure the record does not hold ("now $0.99") keeps that mass, so the guide still sees it
        strain against the grammar and takes the sentence again, rather than the sampler quietly
        writing something else in its place."""
        import torch

        if eot not in self._narrative:
            pieces = {w[i:j] for w in VOCABULARY | SLOT_NAMES for i in range(len(w)) for j in range(i + 1, len(w) + 1)}
            ids = [i for i, s in enumerate(self.text) if s is not None
                   and all(c in pieces for c in PIECE_SPLIT.split(s.lower()) if c)]
            self._narrative[eot] = torch.tensor(sorted({*ids, *self.figures, eot}), dtype=torch.long)
        return self._narrative[eot]

    @classmethod
    def of(cls, tokenizer, vocab_size: int) -> TokenTable:
        key = (id(tokenizer), vocab_size)
        if key not in cls._cache:
            cls._cache[key] = cls(tokenizer, vocab_size)
        return cls._cache[key]


FIGURE = re.compile(r"[0-9$%\u20ac\u00a3]")
PIECE_SPLIT = re.compile(r"[^a-z0-9_]+")  # what is left between these is a piece of one word or slot name
SENTENCE_END = frozenset(".!?")
CLOSERS = "\"')"


@dataclass
class NarrativeGuide:
    """The engine `Guide` for one record's narrative (module docstring)."""

    rec: NarrativeRecord
    table: TokenTable
    eot: int
    max_tries: int = 2  # a failing sentence is sampled again this many times, then left out
    values: dict[str, str] = field(init=False)
    names: frozenset[str] = field(init=False)  # title slots that take no article (`claims.name_slots`)
    accepted: str = ""  # slotted text that passed, as the model wrote it (no leading space)
    dropped: list[str] = field(default_factory=list)  # sentences left out, with the verifier's reason
    rejected: int = 0  # sentences sampled again

    def __post_init__(self) -> None:
        self.values = slot_values(self.rec)
        self.names = name_slots(self.rec)
        self.grammar = Grammar(self.values)
        self.admissible = self.table.admissible
        # the tokens the head is computed over (`TokenTable.narrative_ids`), when every name is one it covers
        self.vocab = self.table.narrative_ids(self.eot) if self.grammar.names <= SLOT_NAMES else None
        self.state = self.mark_state = State()
        self.segment, self.tries, self.emitted, self.finished = "", 0, 0, False
        self.forced = False  # the current sentence has a token the model was forced to
        self._pending: tuple[int, State | None] | None = None
        # the catalog's own words may still go in before a closing sentence (`with_fact`): hold one back
        self.hold_closer = "fact" in self.values

    # ------------------------------------------------------------ Guide
    def _next(self, token: int) -> State | None:
        if self._pending is not None and self._pending[0] == token:
            return self._pending[1]
        s = self.table.text[token] if 0 <= token < len(self.table.text) else None
        st = self.grammar.feed(self.state, s) if s is not None else None
        self._pending = (token, st)
        return st

    def allows(self, token: int) -> bool:
        if token == self.eot:
            return self.grammar.can_end(self.state) and "{product}" in self.accepted + self.segment
        return self._next(token) is not None

    def candidates(self):
        """Token ids that may be allowed now (a superset of what `allows` accepts): those whose first
        character the grammar takes in this state, and the end of text."""
        import torch

        firsts = [ids for c, ids in self.table.by_first.items() if self.grammar.feed(self.state, c) is not None]
        return torch.cat(firsts + [torch.tensor([self.eot])])

    def push(self, token: int) -> int:
        if token == self.eot:
            return self._close_segment()
        st = self._next(token)
        self._pending = None
        if st is None:  # only a forced token (min_new_tokens) gets here: take the sentence again
            return REJECT if self.tries < self.max_tries else self._leave_out("a token outside the grammar")
        self.state = st
        self.segment += self.table.text[token]
        tail = self.segment.rstrip(CLOSERS)
        if st.mode == TEXT and tail and tail[-1] in SENTENCE_END:
            return self._close_segment()
        return GO_ON

    def strain(self) -> int:
        """The model wanted what the grammar refuses (an unfillable slot, a figure): rather than force
        words on it, take the sentence again; once out of tries, force it, and leave the sentence out."""
        if self.tries < self.max_tries:
            self.tries += 1
            self.rejected += 1
            return REJECT
        self.forced = True
        return GO_ON

    def rewind(self) -> None:
        self.state, self.segment, self._pending, self.forced = self.mark_state, "", None, False

    def finish(self, reason: str) -> None:
        if self.segment.strip():  # cut off by the length limit mid-sentence
            self.dropped.append(f"{self.segment.strip()!r}: unfinished at the length limit")
        self.segment, self.finished = "", True

    # ------------------------------------------------------------ sentences
    def _close_segment(self) -> int:
        if not self.segment.strip():
            return COMMIT
        candidate = (self.accepted + self.segment).lstrip()
        if self.forced:
            return self._leave_out("the grammar had to force words on the model")
        if self.segment.strip() in self.accepted:
            return self._leave_out("a repeat of a sentence already written")
        said = set(SLOT_RE.findall(self.segment))
        if said - {"product"} and said <= set(SLOT_RE.findall(self.accepted)):
            # every fact of it is already stated ("You also bought the {past1} in {past1_date}." after the
            # sentence that said so): a repeat in other words reads as a second, separate claim
            return self._leave_out("it repeats facts already stated")
        errors = [e for e in ground(candidate, self.rec).errors if e != MISSING_PRODUCT]
        if not errors:
            self.accepted, self.segment, self.tries, self.forced = candidate, "", 0, False
            self.mark_state = self.state
            return COMMIT
        if self.tries < self.max_tries:
            self.tries += 1
            self.rejected += 1
            return REJECT
        return self._leave_out(errors[0])

    def _leave_out(self, reason: str) -> int:
        self.dropped.append(f"{self.segment.strip()!r}: {reason}")
        self.segment, self.tries, self.forced = "", 0, False
        self.mark_state = self.state
        return COMMIT

    # ------------------------------------------------------------ what the reader sees
    @property
    def names_product(self) -> bool:
        return "{product}" in self.accepted

    def text(self) -> str:
        return fill(self.accepted, self.values, self.names)

    def _closer(self, slotted: str) -> str:
        """The last sentence of `slotted` when it claims nothing (a closer: "We hope you enjoy it."), else ""."""
        parts = SENTENCE_SPLIT.split(slotted)
        return parts[-1] if len(parts) > 1 and not SLOT_RE.search(parts[-1]) else ""

    def take(self) -> str:
        """Verified text not streamed yet; nothing until a verified sentence names the product. A closing
        sentence waits while the catalog's words may still go before it (`hold_closer`)."""
        if not self.names_product:
            return ""
        shown = self.accepted
        if self.hold_closer and (tail := self._closer(shown)):
            shown = shown[: len(shown) - len(tail)].rstrip()
        text = fill(shown, self.values, self.names)
        piece, self.emitted = text[self.emitted:], max(self.emitted, len(text))
        return piece

    def with_fact(self) -> str:
        """At the end: when the narrative says nothing of what the product is but the catalog has a
        description sentence (`{fact}`), that sentence goes in, quoted, before any closer, if the whole
        still verifies; then the rest of the text is released. Returns what was not streamed yet."""
        if self.hold_closer and self.names_product and not PRODUCT_FACTS & set(SLOT_RE.findall(self.accepted)):
            tail = self._closer(self.accepted)
            head = self.accepted[: len(self.accepted) - len(tail)].rstrip()
            # the writer's three phrasings, one per product (stable across texts, varied across a batch)
            lead = FACT_LEADS[sum(map(ord, self.rec.product.id)) % len(FACT_LEADS)]
            candidate = f"{head} {lead} {{fact}}." + (f" {tail}" if tail else "")
            if ground(candidate, self.rec).ok:
                self.accepted = candidate
        self.hold_closer = False
        return self.take()

    def verification(self) -> Verification:
        return ground(self.accepted, self.rec)
