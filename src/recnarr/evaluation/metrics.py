"""Text metrics for narratives: diversity, repetition, and PETER-style feature metrics (FMR, FCR, DIV).

Pure functions over strings and products, each with a hand-checkable definition, shared by the
writer's statistics, `recnarr evaluate narratives` and the report.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import combinations

from recnarr.data.narratives import features, kind_phrase
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
    if not kind.endswith("essential"):
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
