"""`recommend()`: retrieve -> prompt -> verified decoding -> return.

The generator is loaded once (model, quantization mode, tokenizer, index, dataset) and then serves
any number of requests. The model writes one narrative about the top recommendation under a
`decoding.NarrativeGuide`: it can only write what the claim grammar allows for this record, and each
sentence is filled and verified as it ends; a failing sentence is rolled back and sampled again,
then left out. Only verified text is streamed, so the stream is the final narrative. If no verified
sentence names the product, a plain factual narrative is returned instead, flagged `fallback=True`.

Requests share one engine session (continuous batching): `stream(..., cooperative=True)` adds its
row and yields a `Tick` event whenever it needs a decode step, and the caller (the serving worker)
steps the session once for every request in flight. Nothing about an anonymous caller is stored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from recnarr import choices
from recnarr.choices import Style
from recnarr.config import GenerationConfig, RunConfig
from recnarr.data.claims import fill, slot_values
from recnarr.data.narratives import END_OF_NARRATIVE, FACT_LEADS, NarrativeRecord, format_prompt
from recnarr.data.schema import Dataset
from recnarr.inference.contract import Event, Final, Narrative, Products, Result, Tick, Token
from recnarr.inference.decoding import NarrativeGuide, TokenTable
from recnarr.inference.engine import Engine, SamplingParams, Session
from recnarr.inference.grounding import ground
from recnarr.inference.records import RecordBuilder
from recnarr.retrieval.recommender import Filters, Recommender


def fallback_text(rec: NarrativeRecord) -> str:
    """A plain factual narrative, built only from slots of the claim grammar (and verified like any
    other): the product (and its kind where that adds to the title), its price when known, and the
    past item that made the pick, told with its link, its own event and date."""
    v = slot_values(rec)
    parts = ["We recommend the {product}, {a_kind}." if "a_kind" in v else "We recommend the {product}."]
    if "price" in v:
        parts.append("Now {sale_price} ({discount} off {price})." if "discount" in v else "It costs {price}.")
    k = rec.reason_index
    if k and f"past{k}_verb" in v and f"past{k}_link" in v:
        when = f" in {{past{k}_date}}" if f"past{k}_date" in v else ""
        parts.append(f"It {{past{k}_link}} the {{past{k}}}, which you {{past{k}_verb}}{when}.")
    elif "fact" in v:
        parts.append(f"{FACT_LEADS[0]} {{fact}}.")
    return " ".join(parts)


class NarrativeGenerator:
    """Loaded once; `recommend` and `stream` serve requests. Thread-safe: one thread steps the shared
    session at a time (the serving worker is that one thread). Implements `contract.Narrator`."""

    def __init__(self, dataset: Dataset, recommender: Recommender, engine: Engine,
                 gen: GenerationConfig | None = None, versions: dict[str, Any] | None = None,
                 max_history: int = 4, min_support: int = 3, max_batch: int = 16):
        self.dataset, self.recommender, self.engine = dataset, recommender, engine
        self.gen = gen or GenerationConfig()
        self.versions = versions or {}
        self.max_history = max_history
        self.records = RecordBuilder(dataset, min_support)
        self.users = dataset.users.set_index(dataset.users["id"].astype(str))
        self.max_batch = max_batch
        self._session: Session | None = None
        self._lock = threading.RLock()  # the session is shared: one thread steps it at a time

    @property
    def block_size(self) -> int:
        return self.engine.config.block_size

    def warm_up(self) -> None:
        """Load now what the first request would otherwise wait for: the text embedding model (seconds,
        on the first free-text query) and the engine's first forward pass."""
        self.recommender.warm_up()
        with self._lock:
            self.engine.generate(self.engine.tokenizer.encode("Recommended:"), max_new_tokens=1, temperature=0.0)

    # ------------------------------------------------------------------ the shared session
    def step(self) -> None:
        """One decode step for every narrative in flight (the cooperative caller's half of `stream`)."""
        with self._lock:
            if self._session is not None:
                self._session.step()
                if not self._session.busy and self.engine.backend.max_rows == 1:
                    self._close_session()  # llama.cpp: release the one context between requests

    def _close_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _add(self, prompt: str, params: SamplingParams, guide: NarrativeGuide):
        with self._lock:
            if self._session is None:
                self._session = self.engine.session(self.max_batch, isolate_errors=True)
            return self._session.add(prompt, params, guide)

    def _sampling(self, sampling: dict[str, Any] | None) -> SamplingParams:
        g = self.gen
        base = SamplingParams(max_new_tokens=g.max_new_tokens, min_new_tokens=g.min_new_tokens,
                              temperature=g.temperature, top_k=g.top_k, top_p=g.top_p,
                              repetition_penalty=g.repetition_penalty, seed=g.seed, stop=(END_OF_NARRATIVE, "\n###"))
        params = replace(base, **(sampling or {}))
        return params

    def _prompt(self, rec: NarrativeRecord, params: SamplingParams) -> tuple[str, SamplingParams]:
        """The prompt, dropping the weakest evidence lines (the last) until it fits the block with room to write;
        if even the bare prompt leaves less room than asked, max_new_tokens shrinks to what fits."""
        block = self.block_size
        while True:
            prompt = format_prompt(rec)
            n = len(self.engine.tokenizer.encode(prompt))
            if n + params.max_new_tokens <= block or not rec.history:
                room = block - n
                if room < 1:
                    raise ValueError(f"the prompt alone ({n} tokens) fills the model's block of {block} tokens")
                return prompt, replace(params, max_new_tokens=min(params.max_new_tokens, room),
                                       min_new_tokens=min(params.min_new_tokens, room))
            rec.history = rec.history[:-1]
            rec.reason_index = rec.reason_index if rec.reason_index and rec.reason_index <= len(rec.history) else None

    # ------------------------------------------------------------------ requests
    def retrieve(self, user_id: str | None, history: Sequence[str | tuple[str, Any]] | None, text: str | None,
                 filters: Filters | None, n: int):
        items: list[tuple[str, Any]] = list(self.recommender.user_history(user_id)) if user_id else []
        items += [(h, None) if isinstance(h, str) else (h[0], h[1]) for h in (history or [])]
        if user_id and hasattr(self.recommender, "seen") and (filters is None or filters.exclude_purchased):
            # everything the user saw (a film rated 2, a view), not only the positives in `items`, stays out;
            # the on-device retriever has no `seen`: it sends product ids only and excludes its own history
            f = filters or Filters()
            filters = replace(f, exclude_ids=tuple(f.exclude_ids) + tuple(sorted(self.recommender.seen(user_id))))
        recs = self.recommender.recommend(items or None, text=text, filters=filters, k=n)
        return items, recs

    def recommend(self, user_id: str | None = None, history: Sequence[str | tuple[str, Any]] | None = None,
                  text: str | None = None, filters: Filters | None = None, n: int = 3, style: str = "warm",
                  sampling: dict[str, Any] | None = None, narrate: bool = True) -> Result:
        events = list(self.stream(user_id, history, text, filters, n, style, sampling, narrate))
        return events[-1].result

    def stream(self, user_id: str | None = None, history: Sequence[str | tuple[str, Any]] | None = None,
               text: str | None = None, filters: Filters | None = None, n: int = 3, style: str = "warm",
               sampling: dict[str, Any] | None = None, narrate: bool = True,
               cooperative: bool = False) -> Iterator[Event]:
        """Events (`contract`): `Products`, then `Token` pieces of verified text, then `Final`. The token
        pieces join to the final narrative's text, exactly. cooperative: yield `Tick` where a decode
        step is needed and leave the stepping to the caller (`step`), so that many requests decode in
        one batch."""
        choices.check(Style, style, "style")
        t0 = time.perf_counter()
        items, recs = self.retrieve(user_id, history, text, filters, n)
        t_retrieval = time.perf_counter() - t0
        products = [r.product for r in recs]
        reasons = [[asdict(x) for x in r.reasons] for r in recs]
        yield Products([asdict(p) for p in products], [r.score for r in recs], reasons)
        timings = {"retrieval": t_retrieval, "generate": 0.0, "verify": 0.0}
        tokens = {"prompt": 0, "generated": 0}
        narrative = None
        if narrate and recs:
            top = recs[0]
            # history lines for the evidence items only: a film rater's hundreds of ratings are not the prompt
            cited = {r.product_id for r in top.reasons}
            evidence = self.records.history_items([it for it in items if it[0] in cited], user_id)
            rec = self.records.evidence_record(top.product, evidence, user_id, top.reasons, style, self.max_history)
            narrative = yield from self._narrate(rec, sampling, timings, tokens, cooperative)
        timings["total"] = time.perf_counter() - t0
        yield Final(Result(products, [r.score for r in recs], reasons, narrative, timings, tokens, self.versions))

    def narrate(self, rec: NarrativeRecord, sampling: dict[str, Any] | None = None,
                tokens: dict[str, int] | None = None) -> Narrative:
        """The narrative for one record, decoded to its end (evaluation and audits call this).
        `tokens`, when given, receives the prompt and generated token counts."""
        steps = self._narrate(rec, sampling, {"generate": 0.0, "verify": 0.0}, {} if tokens is None else tokens,
                              False)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def _narrate(self, rec: NarrativeRecord, sampling: dict[str, Any] | None, timings: dict, tokens: dict,
                 cooperative: bool):
        prompt, params = self._prompt(rec, self._sampling(sampling))
        table = TokenTable.of(self.engine.tokenizer, self.engine.config.vocab_size)  # built once per tokenizer
        guide = NarrativeGuide(rec, table, self.engine.tokenizer.eot_token, self.gen.max_retries)
        t = time.perf_counter()
        row = self._add(prompt, params, guide)
        try:
            while row.finish_reason is None:
                if cooperative:
                    yield Tick()
                else:
                    self.step()
                piece = guide.take()
                if piece:
                    yield Token(piece)
        finally:
            if row.finish_reason is None:  # the caller left early: free the row's place
                with self._lock:
                    if self._session is not None:
                        self._session.cancel(row)
        rest = guide.with_fact()  # the catalog's words before a held-back closer, where nothing else was said
        if rest:
            yield Token(rest)
        timings["generate"] += time.perf_counter() - t
        tokens["prompt"], tokens["generated"] = len(row.prompt), len(row.tokens)
        t = time.perf_counter()
        check = guide.verification() if guide.names_product else None
        timings["verify"] += time.perf_counter() - t
        errors = [f"left out: {d}" for d in guide.dropped] + ([f"decoding ended: {row.error}"] if row.error else [])
        attempts = 1 + guide.rejected
        written = fill(row.text, guide.values, guide.names).strip()
        if check is not None and check.ok:
            return Narrative(check.text, True, False, attempts, rec.product.id, guide.accepted, errors,
                             check.citations, written)
        fb = ground(fallback_text(rec), rec)
        yield Token(fb.text)  # nothing was streamed: no verified sentence named the product
        return Narrative(fb.text, fb.ok, True, attempts, rec.product.id, guide.accepted,
                         errors or (check.errors if check else ["no verified sentence names the product"]),
                         fb.citations, written)


def plan_inputs(cfg: RunConfig, checkpoint: str | Path | None = None, mode: str | None = None):
    """The dataset and the `versions` a generator of this run would report, without loading the model or
    the embedding model: what a batch driver needs to cut the customers into parts and record the job."""
    import json

    from recnarr.data.run_data import load_dataset
    from recnarr.inference.serving_model import describe_serving_model

    ds = load_dataset(cfg)
    manifest = cfg.layout.index / "manifest.json"
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest.parent} holds no index: run `recnarr index` first")
    _, info = describe_serving_model(cfg, checkpoint, mode or cfg.quantize.mode)
    return ds, {"model": info, "index": json.loads(manifest.read_text()), "catalog_checksum": ds.checksum()}


def load_generator(cfg: RunConfig, checkpoint: str | Path | None = None, mode: str | None = None) -> NarrativeGenerator:
    """Load dataset, index, model (quantized per `mode`, default cfg.quantize.mode) and tokenizer once."""
    from recnarr.data.run_data import load_dataset
    from recnarr.data.tokenizer import get_tokenizer
    from recnarr.inference.serving_model import load_serving_model

    ds = load_dataset(cfg)
    recommender = Recommender.from_folder(cfg.layout.index, ds, cfg.retrieval)
    model, info = load_serving_model(cfg, checkpoint, mode or cfg.quantize.mode)
    engine = Engine(model, get_tokenizer())
    versions = {"model": info, "index": recommender.index.manifest, "catalog_checksum": ds.checksum()}
    return NarrativeGenerator(ds, recommender, engine, cfg.generation, versions, cfg.narratives.max_history,
                              cfg.narratives.min_support, cfg.generation.max_batch)
