"""`recommend()`: retrieve -> prompt -> generate (KV cache) -> fill slots -> verify -> return.

The generator is loaded once (model, quantization mode, tokenizer, index, dataset) and then serves
any number of requests. The model writes one narrative about the top recommendation; a narrative
that fails the verifier is regenerated with a new seed (`max_retries`). If every try fails, the
sentences of an attempt that pass on their own are kept (`verified_sentences`: e.g. a sentence that
opened a `{year}` slot a record without a year cannot fill is dropped), when what is left names the
product and verifies whole; else a plain factual narrative is returned, flagged `fallback=True`. Nothing about an anonymous
caller is stored.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from recnarr.config import GenerationConfig, RunConfig
from recnarr.data.claims import slot_values
from recnarr.data.narratives import END_OF_NARRATIVE, NarrativeRecord, format_prompt
from recnarr.data.schema import Dataset, Product
from recnarr.inference.engine import Engine, SamplingParams
from recnarr.inference.grounding import MISSING_PRODUCT, Citation, ground
from recnarr.inference.records import RecordBuilder
from recnarr.retrieval.recommender import Filters, Recommender

STYLES = ("warm", "concise", "premium")


@dataclass
class Narrative:
    text: str  # what the user sees: slots filled, verified (or the flagged fallback)
    verified: bool
    fallback: bool
    attempts: int
    product_id: str
    slotted: str = ""  # the model's raw output, slots unfilled
    errors: list[str] = field(default_factory=list)  # verifier errors of the last failed attempt
    citations: list[Citation] = field(default_factory=list)


@dataclass
class Result:
    products: list[Product]
    scores: list[float]
    reasons: list[list[dict]]
    narrative: Narrative | None
    timings: dict[str, float]  # seconds: retrieval, prefill+decode (generate), verify, total
    tokens: dict[str, int]  # prompt and generated tokens of the accepted attempt
    versions: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fallback_text(rec: NarrativeRecord) -> str:
    """A plain factual narrative, built only from slots of the claim grammar (and verified like any
    other): the product and its kind, its price when known, and the past item it relates to, told
    with that item's own event and date."""
    v = slot_values(rec)
    parts = ["We recommend the {product}, {a_kind}."]
    if "price" in v:
        parts.append("Now {sale_price} ({discount} off {price})." if "discount" in v else "It costs {price}.")
    k = rec.reason_index
    if k and f"past{k}_verb" in v:
        when = f" in {{past{k}_date}}" if f"past{k}_date" in v else ""
        parts.append(f"It is {{past{k}_link}} the {{past{k}}} you {{past{k}_verb}}{when}.")
    return " ".join(parts)


SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def verified_sentences(slotted: str, rec: NarrativeRecord) -> tuple[str, list[str]]:
    """The sentences of a failed narrative that pass the verifier on their own, in order, and the
    errors of the ones left out. The binding rules keep each claim inside its own clause, so a
    sentence never leans on a dropped one for its facts; the joined text is verified again whole."""
    kept, dropped = [], []
    for sentence in SENTENCE_END.split(slotted):
        errors = [e for e in ground(sentence, rec).errors if e != MISSING_PRODUCT]
        if errors:
            dropped.append(f"{sentence!r}: {errors[0]}")
        else:
            kept.append(sentence)
    return " ".join(kept), dropped


class SlotStream:
    """Fills slots in a stream of text pieces: holds back from `{` until its `}` arrives."""

    def __init__(self, values: dict[str, str]):
        self.values, self.buf = values, ""

    def push(self, piece: str) -> str:
        self.buf += piece
        out = []
        while self.buf:
            start = self.buf.find("{")
            if start == -1:
                out.append(self.buf)
                self.buf = ""
            elif start > 0:
                out.append(self.buf[:start])
                self.buf = self.buf[start:]
            else:
                end = self.buf.find("}")
                if end == -1:
                    if len(self.buf) > 24:  # not a slot after all
                        out.append(self.buf)
                        self.buf = ""
                    break
                name = self.buf[1:end]
                out.append(self.values.get(name, self.buf[: end + 1]))
                self.buf = self.buf[end + 1 :]
        return "".join(out)

    def flush(self) -> str:
        out, self.buf = self.buf, ""
        return out


class NarrativeGenerator:
    """Loaded once; `recommend` and `stream` serve requests. Thread-safe (one generation at a time)."""

    def __init__(self, dataset: Dataset, recommender: Recommender, engine: Engine,
                 gen: GenerationConfig | None = None, versions: dict[str, Any] | None = None,
                 max_history: int = 4, min_support: int = 3):
        self.dataset, self.recommender, self.engine = dataset, recommender, engine
        self.gen = gen or GenerationConfig()
        self.versions = versions or {}
        self.max_history = max_history
        self.records = RecordBuilder(dataset, min_support)
        self.users = dataset.users.set_index(dataset.users["id"].astype(str))
        self._lock = threading.Lock()  # the engine's KV cache is shared: one generation at a time

    def warm_up(self) -> None:
        """Load now what the first request would otherwise wait for: the text embedding model (seconds,
        on the first free-text query) and the engine's first forward pass."""
        self.recommender.warm_up()
        with self._lock:
            self.engine.generate(self.engine.tokenizer.encode("Recommended:"), max_new_tokens=1, temperature=0.0)

    def _sampling(self, sampling: dict[str, Any] | None, attempt: int) -> SamplingParams:
        g = self.gen
        base = SamplingParams(max_new_tokens=g.max_new_tokens, min_new_tokens=g.min_new_tokens,
                              temperature=g.temperature, top_k=g.top_k, top_p=g.top_p,
                              repetition_penalty=g.repetition_penalty, seed=g.seed, stop=(END_OF_NARRATIVE, "\n###"))
        params = replace(base, **(sampling or {}))
        if attempt > 0:  # a retry samples anew: new seed, and never greedy (greedy would repeat itself)
            params = replace(params, seed=(params.seed or 0) + 7919 * attempt, temperature=max(params.temperature, 0.7))
        return params

    def _prompt(self, rec: NarrativeRecord, params: SamplingParams) -> tuple[str, SamplingParams]:
        """The prompt, dropping the oldest history lines until it fits the block with room to write;
        if even the bare prompt leaves less room than asked, max_new_tokens shrinks to what fits."""
        block = self.engine.config.block_size
        while True:
            prompt = format_prompt(rec)
            n = len(self.engine.tokenizer.encode(prompt))
            if n + params.max_new_tokens <= block or not rec.history:
                room = block - n
                if room < 1:
                    raise ValueError(f"the prompt alone ({n} tokens) fills the model's block of {block} tokens")
                return prompt, replace(params, max_new_tokens=min(params.max_new_tokens, room),
                                       min_new_tokens=min(params.min_new_tokens, room))
            rec.history = rec.history[1:]
            rec.reason_index = None if rec.reason_index == 1 else (rec.reason_index - 1 if rec.reason_index else None)

    # ------------------------------------------------------------------ requests
    def retrieve(self, user_id: str | None, history: Sequence[str | tuple[str, Any]] | None, text: str | None,
                 filters: Filters | None, n: int):
        items: list[tuple[str, Any]] = list(self.recommender.user_history(user_id)) if user_id else []
        items += [(h, None) if isinstance(h, str) else (h[0], h[1]) for h in (history or [])]
        recs = self.recommender.recommend(items or None, text=text, filters=filters, k=n)
        return items, recs

    def recommend(self, user_id: str | None = None, history: Sequence[str | tuple[str, Any]] | None = None,
                  text: str | None = None, filters: Filters | None = None, n: int = 3, style: str = "warm",
                  sampling: dict[str, Any] | None = None, narrate: bool = True) -> Result:
        events = list(self.stream(user_id, history, text, filters, n, style, sampling, narrate))
        return events[-1]["result"]

    def stream(self, user_id: str | None = None, history: Sequence[str | tuple[str, Any]] | None = None,
               text: str | None = None, filters: Filters | None = None, n: int = 3, style: str = "warm",
               sampling: dict[str, Any] | None = None, narrate: bool = True) -> Iterator[dict[str, Any]]:
        """Events: {"type": "products"}, then {"type": "token", "text"} pieces of the first attempt, then
        {"type": "final", "result"}; the final narrative replaces the streamed text if a retry or the
        fallback was needed."""
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        t0 = time.perf_counter()
        items, recs = self.retrieve(user_id, history, text, filters, n)
        t_retrieval = time.perf_counter() - t0
        products = [r.product for r in recs]
        reasons = [[asdict(x) for x in r.reasons] for r in recs]
        yield {"type": "products", "products": [asdict(p) for p in products], "scores": [r.score for r in recs],
               "reasons": reasons}
        timings = {"retrieval": t_retrieval, "generate": 0.0, "verify": 0.0}
        tokens = {"prompt": 0, "generated": 0}
        narrative = None
        if narrate and recs:
            top = recs[0]
            rec = self.records.record(top.product, self.records.history_items(items, user_id, self.max_history),
                                      user_id, top.reasons[0].product_id if top.reasons else None, style)
            narrative = yield from self._narrate(rec, sampling, timings, tokens)
        timings["total"] = time.perf_counter() - t0
        yield {"type": "final", "result": Result(products, [r.score for r in recs], reasons, narrative, timings,
                                                 tokens, self.versions)}

    def _narrate(self, rec: NarrativeRecord, sampling: dict[str, Any] | None, timings: dict, tokens: dict):
        last_errors: list[str] = []
        written: list[str] = []
        attempts = 1 + self.gen.max_retries
        for attempt in range(attempts):
            prompt, params = self._prompt(rec, self._sampling(sampling, attempt))
            t = time.perf_counter()
            pieces = []
            with self._lock:
                if attempt == 0:
                    filler = SlotStream(slot_values(rec))
                    for piece in self.engine.stream(prompt, params):
                        pieces.append(piece)
                        shown = filler.push(piece)
                        if shown:
                            yield {"type": "token", "text": shown}
                    tail = filler.flush()
                    if tail:
                        yield {"type": "token", "text": tail}
                else:
                    pieces.append(self.engine.generate(prompt, params).text)
            timings["generate"] += time.perf_counter() - t
            slotted = re.sub(r"\s+", " ", "".join(pieces)).strip()
            tokens["prompt"] = len(self.engine.tokenizer.encode(prompt))
            tokens["generated"] += len(self.engine.tokenizer.encode(slotted))
            t = time.perf_counter()
            check = ground(slotted, rec) if slotted else None
            timings["verify"] += time.perf_counter() - t
            if check is not None and check.ok:
                return Narrative(check.text, True, False, attempt + 1, rec.product.id, slotted, [], check.citations)
            last_errors = check.errors if check else ["empty narrative"]
            if slotted:
                written.append(slotted)
        # every attempt failed: before the fallback, the attempts' verified sentences (module docstring)
        for slotted in written:
            kept, dropped = verified_sentences(slotted, rec)
            check = ground(kept, rec) if kept else None
            if check is not None and check.ok:
                return Narrative(check.text, True, False, attempts, rec.product.id, slotted,
                                 [f"dropped: {e}" for e in dropped], check.citations)
        fb = ground(fallback_text(rec), rec)
        return Narrative(fb.text, fb.ok, True, attempts, rec.product.id, "", last_errors, fb.citations)


def load_generator(cfg: RunConfig, checkpoint: str | Path | None = None, mode: str | None = None) -> NarrativeGenerator:
    """Load dataset, index, model (quantized per `mode`, default cfg.quantize.mode) and tokenizer once."""
    from recnarr.data.stages import load_dataset
    from recnarr.data.tokenizer import get_tokenizer
    from recnarr.inference.serving_model import load_serving_model

    ds = load_dataset(cfg)
    recommender = Recommender.from_folder(cfg.stage_dir("index"), ds, cfg.retrieval)
    model, info = load_serving_model(cfg, checkpoint, mode or cfg.quantize.mode)
    engine = Engine(model, get_tokenizer())
    versions = {"model": info, "index": recommender.index.manifest if hasattr(recommender.index, "manifest") else {},
                "catalog_checksum": ds.checksum()}
    return NarrativeGenerator(ds, recommender, engine, cfg.generation, versions, cfg.narratives.max_history,
                              cfg.narratives.min_support)
