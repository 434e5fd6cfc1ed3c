"""Text and list metrics: diversity, repetition, PETER-style feature metrics (FMR, FCR, DIV), BLEU/ROUGE
against references, a lexicon tone score, and RecBole's exposure metrics (coverage, Gini, tail share).

Pure functions over strings, products and lists of ids, each with a hand-checkable definition, shared by
the writer's statistics, `recnarr evaluate narratives|fairness` and the report.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import combinations

from recnarr.data.claims import features, kind_phrase
from recnarr.data.schema import Product

TOKEN_RE = re.compile(r"[a-z0-9$%']+")


def tokens(text: str) -> list[str]:
    return TOKEN_RE.findall(text.lower())


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique n-grams / all n-grams, over the whole set of texts."""
    grams: Counter = Counter()
    for t in texts:
        toks = tokens(t)
        grams.update(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def unique_ratio(texts: Sequence[str]) -> float:
    """USR: share of distinct texts among all texts."""
    return len(set(texts)) / len(texts) if texts else 0.0


def repetition_rate(text: str, n: int = 3) -> float:
    """Share of a text's n-grams that already occurred earlier in it (0 = no repeats)."""
    toks = tokens(text)
    grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def product_features(p: Product) -> set[str]:
    """The product's key features in words: its kind phrase head, title features, descriptive attributes."""
    feats = {f.lower() for f in features(p)}
    kind = kind_phrase(p)
    if kind and not kind.endswith(("essential", "product", "pick")):  # the neutral kinds name no feature
        feats.add(kind.split()[-1].lower())
    feats |= {g.lower() for g in str(p.attributes.get("genres", "")).split("|") if g}
    if not feats and p.category:  # titles like "Xerox 221": the category is the one feature there is
        feats.add(p.category[-1].lower())
    return {f for f in feats if f}


def mentions_feature(text: str, p: Product) -> bool:
    """Does the text say something specific about the product beyond its name?"""
    body = text.replace(p.title, " ").lower()
    return any(re.search(rf"\b{re.escape(f)}\b", body) for f in product_features(p))


def fmr(texts: Sequence[str], products: Sequence[Product]) -> float:
    """Feature Matching Ratio: share of texts that mention at least one of their product's features."""
    hits = [mentions_feature(t, p) for t, p in zip(texts, products, strict=True)]
    return sum(hits) / len(hits) if hits else 0.0


def fcr(texts: Sequence[str], products: Sequence[Product]) -> float:
    """Feature Coverage Ratio: distinct features mentioned across outputs / distinct features in all products."""
    universe: set[str] = set()
    said: set[str] = set()
    for t, p in zip(texts, products, strict=True):
        feats = product_features(p)
        universe |= feats
        body = t.replace(p.title, " ").lower()
        said |= {f for f in feats if re.search(rf"\b{re.escape(f)}\b", body)}
    return len(said) / len(universe) if universe else 0.0


def feature_div(texts: Sequence[str], products: Sequence[Product], max_pairs: int = 20000) -> float:
    """DIV (PETER): mean feature-set overlap between pairs of outputs; lower = more diverse."""
    sets = []
    for t, p in zip(texts, products, strict=True):
        body = t.replace(p.title, " ").lower()
        sets.append({f for f in product_features(p) if re.search(rf"\b{re.escape(f)}\b", body)})
    pairs = list(combinations(range(len(sets)), 2))[:max_pairs]
    return sum(len(sets[i] & sets[j]) for i, j in pairs) / len(pairs) if pairs else 0.0


def length_stats(texts: Sequence[str]) -> dict[str, float]:
    lens = sorted(len(tokens(t)) for t in texts)
    if not lens:
        return {"min": 0, "median": 0, "max": 0, "mean": 0.0}
    return {"min": lens[0], "median": lens[len(lens) // 2], "max": lens[-1], "mean": sum(lens) / len(lens)}


# ------------------------------------------------------------------ reference overlap (sacrebleu, rouge-score)


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu's defaults: 13a tokenization, 4-grams, exponential smoothing), 0..100."""
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(f"bleu: {len(hypotheses)} hypotheses vs {len(references)} references")
    if not hypotheses:
        return 0.0
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def rouge(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (rouge-score, Porter stemming), each 0..1."""
    from rouge_score import rouge_scorer

    if len(hypotheses) != len(references):
        raise ValueError(f"rouge: {len(hypotheses)} hypotheses vs {len(references)} references")
    keys = ("rouge1", "rouge2", "rougeL")
    if not hypotheses:
        return dict.fromkeys(keys, 0.0)
    scorer = rouge_scorer.RougeScorer(list(keys), use_stemmer=True)
    sums = dict.fromkeys(keys, 0.0)
    for h, r in zip(hypotheses, references, strict=True):
        s = scorer.score(r, h)  # score(target, prediction)
        for k in keys:
            sums[k] += s[k].fmeasure
    return {k: v / len(hypotheses) for k, v in sums.items()}


# ------------------------------------------------------------------ tone (lexicon-based, documented)

def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Tiny hand-written lexicons sized to the narratives' vocabulary (shop talk, three tones), in the spirit
# of word-counting scores such as LIWC or VADER but self-contained and inspectable. A word counts once
# per occurrence; "!" counts as an informal marker.
POSITIVE_WORDS = _wordset("""
love lovely great perfect wonderful delighted excellent fine good best favorite favourite enjoy ideal special
worthy beautiful happy nice easy reliable smooth natural fresh elegant classic quality premium durable handy
comfortable brilliant fantastic superb amazing treat pleasure glad welcome considered
""")
NEGATIVE_WORDS = _wordset("""
bad poor cheap cheaper cheapest problem problems difficult worse worst disappointing unfortunately hard boring
flimsy basic mediocre ugly awkward annoying sorry fail failed weak plain simple budget
""")
FORMAL_WORDS = _wordset("""
dear allow considered delighted worthy addition recommendation kindly shall would suggest include may
distinguished esteemed refined ready assure pleased acquisition selection
""")
INFORMAL_WORDS = _wordset("""
hi hey hello love awesome cool grab stuff gonna wanna super totally check yay wow folks guys fun
""")


def tone_scores(text: str) -> dict[str, float]:
    """sentiment = (pos - neg) / (pos + neg), formality = (formal - informal) / (formal + informal);
    each in [-1, 1], 0 when the text has none of the words."""
    toks = tokens(text)
    pos = sum(t in POSITIVE_WORDS for t in toks)
    neg = sum(t in NEGATIVE_WORDS for t in toks)
    formal = sum(t in FORMAL_WORDS for t in toks)
    informal = sum(t in INFORMAL_WORDS for t in toks) + text.count("!")
    return {"sentiment": (pos - neg) / (pos + neg) if pos + neg else 0.0,
            "formality": (formal - informal) / (formal + informal) if formal + informal else 0.0}


# ------------------------------------------------------------------ lists of recommendations (RecBole's definitions)


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    """|A ∩ B| / |A ∪ B| of two recommendation lists as sets (two empty lists: 1)."""
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def jaccard_at_k(a: Sequence[str], b: Sequence[str], k: int) -> float:
    return jaccard(a[:k], b[:k])


def item_coverage(lists: Iterable[Sequence[str]], n_items: int) -> float:
    """RecBole ItemCoverage: distinct items in any list / items in the catalog."""
    seen: set[str] = set()
    for lst in lists:
        seen.update(lst)
    return len(seen) / n_items if n_items else 0.0


def gini_index(counts: Sequence[float] | Counter, n_items: int | None = None) -> float:
    """RecBole GiniIndex of exposure: sum_i (2i - n - 1) P_(i) / (n sum_i P_(i)), P sorted ascending,
    over all n items of the catalog (items never shown count with P = 0). 0 = perfectly even exposure,
    -> 1 = all exposure on one item."""
    values = sorted(counts.values() if isinstance(counts, Counter) else counts)
    n = len(values) if n_items is None else n_items
    if n < len(values):
        raise ValueError(f"gini_index: {len(values)} exposed items but n_items={n}")
    total = float(sum(values))
    if n == 0 or total == 0:
        return 0.0
    idx = range(n - len(values) + 1, n + 1)  # the missing items are the n - len(values) zeros in front
    return sum((2 * i - n - 1) * v for i, v in zip(idx, values, strict=True)) / (n * total)


def tail_items(popularity: dict[str, float], tail_ratio: float = 0.1) -> set[str]:
    """RecBole TailPercentage's tail: tail_ratio in (0, 1]: the share of items with the fewest training
    interactions (ties broken by id, at least one item); tail_ratio > 1: items with <= that many."""
    if tail_ratio > 1:
        return {i for i, c in popularity.items() if c <= tail_ratio}
    ordered = sorted(popularity.items(), key=lambda kv: (kv[1], kv[0]))
    return {i for i, _ in ordered[: max(int(len(ordered) * tail_ratio), 1)]}


def tail_share(lists: Sequence[Sequence[str]], tail: set[str]) -> float:
    """RecBole TailPercentage: mean over lists of the share of a list's items that are in the tail."""
    shares = [sum(i in tail for i in lst) / len(lst) for lst in lists if len(lst)]
    return sum(shares) / len(shares) if shares else 0.0
