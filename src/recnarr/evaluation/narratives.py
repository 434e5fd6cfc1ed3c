"""`recnarr evaluate narratives`: the fine-tuned model and its baselines on held-out narratives, one table.

Data: `<run>/narratives/test.jsonl` (users unseen in fine-tuning, candidate products held out of it), the
first `eval.narrative_examples` examples. Every system narrates the same records, through the generator
that serves (`NarrativeGenerator.narrate`: prompt -> grammar-guided decoding -> sentence checks -> fallback),
sampling as configured in `generation` with seed `eval.seed + i` for example i (the same for every system).

Systems (rows). A system whose artifacts are missing stays in the table as "not run", with the command
that produces it; one that fails is shown as "failed" with the error.
- writer: the data-to-text writer itself, a second draw (seed + 1) of the same records. Its references
  are the first draw, so its BLEU/ROUGE are the ceiling of "another valid narrative", not 100.
- fine-tuned: `<run>/serving/merged` (what is served, before quantization), else
  `<run>/finetune/<finetune.method>/{best,last}` merged on load. Only a model fine-tuned from a pretrained base.
- pretrained: `<run>/pretrain/{best,last}`, no fine-tuning.
- scratch: the same fine-tuning from random initialisation (`<run>/finetune/scratch`, or any
  `<run>/finetune/*/` whose checkpoint records no base).
- no-RAG: the fine-tuned model with the retrieval facts taken out of its prompt (the `### attributes:`,
  `### reason:` and `### pairs with:` lines). The record, and so the verifier's facts, are unchanged.
- one row per `quantize.modes` mode (but `none`, which is the fine-tuned row): `<run>/serving/<mode>/`.
- one row per GGUF file in `<run>/export/gguf/` (the pipeline's gguf stage), run by llama.cpp through the
  engine's `llamacpp` backend: same generator, slot filling and verifier (no perplexity: llama.cpp keeps
  only the last position's logits).

Metrics (per system):
- perplexity on the references (target tokens + end-of-text only, tokenized exactly as in fine-tuning:
  `training.narrative_batches.tokenize_example`); not defined for the writer.
- grounding. raw = what the model wrote under the claim grammar, sentences the verifier left out
  included (constrained decoding without sentence checks), final = what the user sees. False claims come from the independent
  audit (`evaluation.audit`: separate code that checks each claim against the raw tables), never from
  the verifier judging itself. Hallucination rate = share of narratives with >= 1 false claim (empty
  first attempts are counted apart, as `empty_rate_raw`). First-attempt pass rate = share the verifier
  (`inference.grounding.verify`) accepts as written. Fact precision = 1 - false claims / stated facts,
  pooled over narratives; stated facts are counted by `fact_mentions`. Fallback rate, mean attempts.
- personalization: share of narratives naming >= 1 real past purchase of that user (any interaction of
  the user in `<run>/data`); `never_bought_rate`: share naming a catalog title that is neither the
  product, its pair, nor anything the user bought; swap test: narrative for user A scored against the
  purchases of user B (the next example with another user; titles both bought, the product and its pair
  don't count): `swap_rate` should be ~0 while `personal_rate` is high.
- diversity/fluency on final texts: distinct-1/2, unique ratio (USR), mean 3-gram repetition, length in
  words; corpus BLEU (sacrebleu) and mean ROUGE-1/2/L F1 (rouge-score) against the writer's filled
  references; PETER's FMR, FCR and DIV (`evaluation.metrics`).
- speed: prefill and decode tokens/s (greedy, no stop, median of `eval.speed_probes` prompts) and the
  end-to-end latency of each narrative (every attempt, slot filling and verification).

Output: `<run>/eval/narratives.json` (metrics, latencies, sample narratives with their citations) and
`<run>/eval/narratives.md` (the tables); an MLflow run when `eval.tracking`.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from recnarr.config import RunConfig
from recnarr.data.narratives import NarrativeRecord, Writer, format_prompt
from recnarr.data.schema import Dataset
from recnarr.evaluation import metrics, readiness
from recnarr.evaluation.audit import Auditor
from recnarr.inference.generator import NarrativeGenerator
from recnarr.inference.grounding import (
    FactBase,
    cited_titles,
    fact_mentions,
    ground,
    verify,
)
from recnarr.layout import first_checkpoint

RETRIEVAL_LINES = ("### attributes:", "### reason:", "### pairs with:")


def strip_retrieval(prompt: str) -> str:
    """The prompt without the facts retrieval adds (attributes, reason, pair): the no-RAG input."""
    return "".join(line for line in prompt.splitlines(keepends=True) if not line.startswith(RETRIEVAL_LINES))


# ------------------------------------------------------------------------------------ facts in a text


def check_text(text: str, rec: NarrativeRecord, facts: FactBase, auditor: Auditor) -> dict[str, Any]:
    """Judge a filled text twice: `ok` is the verifier's verdict (would it be shown?); `false` counts the
    false claims the independent audit finds against the raw tables (`evaluation.audit`, separate code:
    the verifier never grades itself); stated facts (>= false claims) for fact precision."""
    if not text.strip():
        return {"ok": False, "empty": True, "errors": [], "false": 0, "stated": 0, "audit": []}
    v = verify(text, rec)
    history = None if rec.user_id else [{"product_id": h.product_id, "date": h.date, "event": h.event}
                                        for h in rec.history]
    claims = auditor.audit(text, rec.product.id, rec.user_id, history)
    stated = max(fact_mentions(text, rec, facts), len(claims))
    return {"ok": v.ok, "empty": False, "errors": v.errors, "false": len(claims), "stated": stated,
            "audit": [f"{c.kind}: {c.text!r}: {c.why}" for c in claims]}


def user_purchases(ds: Dataset) -> dict[str, set[str]]:
    """Titles of everything each user interacted with (any event, any split)."""
    titles = dict(zip(ds.products["id"].astype(str), ds.products["title"].astype(str), strict=True))
    out: dict[str, set[str]] = {}
    for uid, pid in zip(ds.interactions["user_id"].astype(str), ds.interactions["product_id"].astype(str),
                        strict=True):
        if pid in titles:
            out.setdefault(uid, set()).add(titles[pid])
    return out


def personalization(text: str, rec: NarrativeRecord, bought: set[str], facts: FactBase) -> dict[str, list[str]]:
    """Titles the text names that the user really bought, and titles that are none of: the product, its pair,
    a purchase of the user (`never_bought`: a citation of a purchase that never happened)."""
    cited = cited_titles(text, rec, facts)
    own = {rec.product.title, *([rec.pair.title] if rec.pair else [])}
    return {"bought": [t for t in cited if t in bought and t not in own],
            "never_bought": [t for t in cited if t not in bought and t not in own]}


def swap_hits(text: str, rec: NarrativeRecord, own: set[str], other: set[str], facts: FactBase) -> list[str]:
    """Titles of user B's purchases named in user A's narrative (not ones A bought too, nor the product/pair)."""
    exclude = own | {rec.product.title, *([rec.pair.title] if rec.pair else [])}
    return [t for t in cited_titles(text, rec, facts) if t in other and t not in exclude]


# ------------------------------------------------------------------------------------------ systems


@dataclass
class System:
    key: str  # short id: writer, finetuned, pretrained, scratch, no-rag, or a quantization mode
    name: str  # the table's label
    status: str = "ok"  # ok | not run | failed
    source: str = ""  # the checkpoint folder
    note: str = ""  # why not run, with the command that produces it
    load: Callable[[], Any] | None = field(default=None, repr=False)  # a torch model, or a LlamaCppModel
    no_rag: bool = False


def _meta(folder: Path) -> dict[str, Any]:
    p = folder / "meta.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def _fine_tuned_folders(cfg: RunConfig) -> dict[str, Path]:
    """Fine-tuned checkpoint/adapter folders: {"finetuned": ..., "scratch": ...} where found."""
    ft = cfg.layout.finetune_root
    out: dict[str, Path] = {}
    merged = cfg.layout.merged
    if (merged / "config.json").is_file():
        out["scratch" if _meta(merged).get("base") is None else "finetuned"] = merged
    if "finetuned" not in out:
        path = first_checkpoint(cfg.layout.finetune(cfg.finetune.method))
        if path is not None and _meta(path).get("base"):
            out["finetuned"] = path
    if "scratch" not in out:
        candidates = [cfg.layout.finetune("scratch")] + sorted(p for p in ft.glob("*") if p.is_dir() and p.name != "scratch")
        for folder in candidates:
            path = first_checkpoint(folder)
            if path is not None and not _meta(path).get("base"):
                out["scratch"] = path
                break
    return out


def _loader(path: Path) -> Callable[[], torch.nn.Module]:
    def load() -> torch.nn.Module:
        from recnarr.model.quantize import QUANT_FILE, load_quantized

        if (path / QUANT_FILE).is_file():
            return load_quantized(path)
        if (path / "adapter_config.json").is_file():
            from recnarr.training.finetune import merged_model

            return merged_model(path)[0]
        from recnarr.model.checkpoint import load_model

        return load_model(path)

    return load


def find_systems(cfg: RunConfig) -> list[System]:
    """Every row of the table, found under the run folder; missing ones as "not run" with their command."""
    run = cfg.run_dir
    systems = [System("writer", "writer (data-to-text, 2nd draw)", source="recnarr.data.narratives.Writer")]
    found = _fine_tuned_folders(cfg)
    method = cfg.finetune.method
    ft = found.get("finetuned")
    ft_cmd = f"recnarr finetune finetune.method={method} run_dir={run} && recnarr merge run_dir={run}"
    if ft:
        method = _meta(ft).get("method", method)  # what the checkpoint says it was trained with
        systems.append(System("finetuned", f"fine-tuned ({method})", source=str(ft), load=_loader(ft)))
    else:
        systems.append(System("finetuned", f"fine-tuned ({method})", "not run", note=ft_cmd))
    pre = first_checkpoint(cfg.layout.pretrain)
    if pre:
        systems.append(System("pretrained", "pretrained, no fine-tuning", source=str(pre), load=_loader(pre)))
    else:
        systems.append(System("pretrained", "pretrained, no fine-tuning", "not run",
                              note=f"recnarr pretrain run_dir={run}"))
    sc = found.get("scratch")
    sc_cmd = f"recnarr finetune --from-scratch --method full --out {cfg.layout.finetune('scratch')} run_dir={run}"
    if sc:
        systems.append(System("scratch", "fine-tuned from random init", source=str(sc), load=_loader(sc)))
    else:
        systems.append(System("scratch", "fine-tuned from random init", "not run", note=sc_cmd))
    if ft:
        systems.append(System("no-rag", "fine-tuned, no retrieval facts in prompt", source=str(ft), load=_loader(ft),
                              no_rag=True))
    else:
        systems.append(System("no-rag", "fine-tuned, no retrieval facts in prompt", "not run", note=ft_cmd))
    for mode in cfg.quantize.modes:
        if mode == "none":
            continue
        folder = cfg.layout.serving(mode)
        if (folder / "config.json").is_file():
            systems.append(System(mode, f"fine-tuned, {mode}", source=str(folder), load=_loader(folder)))
        else:
            systems.append(System(mode, f"fine-tuned, {mode}", "not run",
                                  note=f"recnarr merge run_dir={run} && recnarr quantize --modes {mode} run_dir={run}"))
    gguf = sorted(cfg.layout.export("gguf").glob("*.gguf"))
    for path in gguf:
        key, name = f"gguf-{path.stem.removeprefix('model-')}", f"fine-tuned, GGUF {path.stem.removeprefix('model-')} (llama.cpp)"
        if importlib.util.find_spec("llama_cpp") is None:
            systems.append(System(key, name, "not run", note="pip install -e '.[llamacpp]' (llama-cpp-python)"))
        else:
            systems.append(System(key, name, source=str(path), load=_gguf_loader(path)))
    if not gguf:
        systems.append(System("gguf-q8_0", "fine-tuned, GGUF q8_0 (llama.cpp)", "not run",
                              note=f"recnarr export --format gguf --quant q8_0 run_dir={run}"))
    return systems


def _gguf_loader(path: Path) -> Callable[[], Any]:
    def load() -> Any:
        from recnarr.inference.llamacpp import LlamaCppModel

        return LlamaCppModel(path)

    return load


# ------------------------------------------------------------------------------------- generation


class NoRagEngine:
    """An engine that takes the retrieval lines out of every text prompt before generating (no-RAG).
    Wrapping the engine keeps the generator itself (prompt fitting, guide, fallback) exactly as served;
    only the prompt-token count the generator records is that of the full prompt."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.config, self.tokenizer, self.backend = engine.config, engine.tokenizer, engine.backend

    def session(self, rows: int = 16) -> Any:
        session = self.engine.session(rows)
        add = session.add
        session.add = lambda prompt, *a, **kw: add(strip_retrieval(prompt) if isinstance(prompt, str) else prompt,
                                                   *a, **kw)
        return session

    def generate(self, prompt: Any, params: Any = None, **kw: Any):
        return self.engine.generate(strip_retrieval(prompt) if isinstance(prompt, str) else prompt, params, **kw)


def narrate(gen: NarrativeGenerator, rec: NarrativeRecord, sampling: dict[str, Any]) -> dict[str, Any]:
    """One narrative through the generator's own loop. `raw` is what the model wrote under the grammar
    (left-out sentences included): what constrained decoding alone, without sentence checks, would show."""
    tokens = {"prompt": 0, "generated": 0}
    t0 = time.perf_counter()
    narrative = gen.narrate(rec, sampling, tokens)
    latency = time.perf_counter() - t0
    return {"raw": narrative.written or narrative.text, "narrative": narrative, "latency_s": latency,
            "prompt_tokens": tokens["prompt"], "generated_tokens": tokens["generated"]}


@torch.inference_mode()
def speed_probe(engine: Any, prompts: Sequence[str], new_tokens: int = 64) -> dict[str, float | None]:
    """Prefill tokens/s (prompt tokens / time to the first new token) and decode tokens/s (the other
    new tokens / their time), greedy with no stop, median over prompts, after one warm-up."""
    from recnarr.inference.engine import SamplingParams

    prefill, decode = [], []
    block = engine.config.block_size
    for i, prompt in enumerate(prompts):
        ids = engine.tokenizer.encode(prompt)[-(block - 8):]
        n = max(2, min(new_tokens, block - len(ids)))
        one = SamplingParams(max_new_tokens=1, temperature=0, stop_token_ids=())
        many = SamplingParams(max_new_tokens=n, temperature=0, stop_token_ids=())
        if i == 0:
            engine.generate(ids, one)  # warm-up
        t = time.perf_counter()
        engine.generate(ids, one)
        t1 = time.perf_counter() - t
        t = time.perf_counter()
        engine.generate(ids, many)
        tn = time.perf_counter() - t
        prefill.append(len(ids) / t1)
        if tn > t1:
            decode.append((n - 1) / (tn - t1))
    return {"prefill_tok_s": statistics.median(prefill) if prefill else None,
            "decode_tok_s": statistics.median(decode) if decode else None}


def perplexity(model: torch.nn.Module, examples: Sequence[dict], tokenizer: Any) -> dict[str, float | None]:
    """exp(mean loss on target tokens), tokenized as in fine-tuning (`narrative_loss`)."""
    from recnarr.evaluation.quantization import narrative_loss

    loss = narrative_loss(model, list(examples), tokenizer, batches=math.ceil(len(examples) / 8))
    return {"loss": loss, "perplexity": math.exp(loss) if math.isfinite(loss) else None}


# ------------------------------------------------------------------------------------- scoring


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _rate(flags: Sequence[bool]) -> float | None:
    return sum(map(bool, flags)) / len(flags) if flags else None


def _percentile(xs: Sequence[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def score_outputs(outputs: Sequence[dict], records: Sequence[NarrativeRecord], refs: Sequence[str],
                  facts: FactBase, purchases: dict[str, set[str]], auditor: Auditor) -> dict[str, Any]:
    """The metrics of one system from its per-example outputs ({"raw", "text", "fallback", "attempts", ...})."""
    raw_checks, final_checks, personal, personal_raw, never, swap = [], [], [], [], [], []
    users = [r.user_id or f"#{i}" for i, r in enumerate(records)]
    for i, (out, rec) in enumerate(zip(outputs, records, strict=True)):
        raw_checks.append(check_text(out["raw"], rec, facts, auditor))
        final_checks.append(check_text(out["text"], rec, facts, auditor))
        bought = purchases.get(users[i], set()) | {h.title for h in rec.history}
        p = personalization(out["text"], rec, bought, facts)
        personal.append(bool(p["bought"]))
        never.append(bool(p["never_bought"]))
        personal_raw.append(bool(personalization(out["raw"], rec, bought, facts)["bought"]))
        j = next(((i + d) % len(records) for d in range(1, len(records)) if users[(i + d) % len(records)] != users[i]),
                 None)
        if j is not None:
            other = purchases.get(users[j], set()) | {h.title for h in records[j].history}
            swap.append(bool(swap_hits(out["text"], rec, bought, other, facts)))

    def grounding(checks: list[dict]) -> dict[str, float | None]:
        stated, false = sum(c["stated"] for c in checks), sum(c["false"] for c in checks)
        nonempty = [c for c in checks if not c["empty"]]
        return {"fact_precision": 1 - false / stated if stated else None,
                "hallucination_rate": _rate([c["false"] > 0 for c in checks]),
                "empty_rate": _rate([c["empty"] for c in checks]),
                "pass_rate": _rate([c["ok"] for c in checks]),
                "facts_stated": stated, "facts_false": false, "nonempty": len(nonempty)}

    raw, final = grounding(raw_checks), grounding(final_checks)
    texts = [o["text"] for o in outputs]
    # send-readiness, by its own reader (evaluation.readiness): would a shop send the final text as it is?
    ready = readiness.summarize(texts, [readiness.check(t, asdict(r.product), [h.title for h in r.history])
                                        for t, r in zip(texts, records, strict=True)])
    products = [r.product for r in records]
    rouge = metrics.rouge(texts, refs)
    latencies = [o["latency_s"] for o in outputs if o.get("latency_s") is not None]
    return {
        "n": len(outputs),
        # grounding
        "fact_precision_raw": raw["fact_precision"], "hallucination_rate_raw": raw["hallucination_rate"],
        "empty_rate_raw": raw["empty_rate"], "pass_rate_raw": raw["pass_rate"],
        "facts_stated_raw": raw["facts_stated"], "facts_false_raw": raw["facts_false"],
        "fact_precision": final["fact_precision"], "hallucination_rate": final["hallucination_rate"],
        "facts_stated": final["facts_stated"], "facts_false": final["facts_false"],
        "fallback_rate": _rate([o["fallback"] for o in outputs]),
        "mean_attempts": _mean([o["attempts"] for o in outputs]),
        # personalization
        "personal_rate": _rate(personal), "personal_rate_raw": _rate(personal_raw),
        "never_bought_rate": _rate(never), "swap_rate": _rate(swap), "swap_pairs": len(swap),
        # diversity and fluency (final texts)
        "distinct_1": metrics.distinct_n(texts, 1), "distinct_2": metrics.distinct_n(texts, 2),
        "usr": metrics.unique_ratio(texts),
        "repetition": _mean([metrics.repetition_rate(t) for t in texts]),
        "length_words": metrics.length_stats(texts),
        "bleu": metrics.bleu(texts, refs), "bleu_raw": metrics.bleu([o["raw"] for o in outputs], refs),
        "rouge1": rouge["rouge1"], "rouge2": rouge["rouge2"], "rougeL": rouge["rougeL"],
        "fmr": metrics.fmr(texts, products), "fcr": metrics.fcr(texts, products),
        "div": metrics.feature_div(texts, products),
        "ready_rate": ready["ready"], "ready_defects": ready["by_defect"],
        "top_closer_share": ready["top_closer"][1] if ready["top_closer"] else None,
        "frames": ready["frames"],
        # speed
        "latency_mean_s": _mean(latencies), "latency_p50_s": _percentile(latencies, 0.5),
        "latency_p90_s": _percentile(latencies, 0.9),
        "prompt_tokens_mean": _mean([o["prompt_tokens"] for o in outputs if o.get("prompt_tokens")]),
        "generated_tokens_mean": _mean([o["generated_tokens"] for o in outputs if o.get("generated_tokens") is not None]),
    }


def sample_indices(records: Sequence[NarrativeRecord], n: int) -> list[int]:
    """Up to n examples, one per user first (test examples come grouped by user), then the rest in order."""
    seen: set[str | None] = set()
    first = [i for i, r in enumerate(records) if not (r.user_id in seen or seen.add(r.user_id))]
    rest = [i for i in range(len(records)) if i not in set(first)]
    return sorted((first + rest)[:n])


def _sample(rec: NarrativeRecord, out: dict, check: dict) -> dict[str, Any]:
    return {"user_id": rec.user_id, "customer": rec.customer, "product": rec.product.title,
            "history": [{"title": h.title, "date": h.date, "event": h.event} for h in rec.history],
            "pair": asdict(rec.pair) if rec.pair else None,
            "raw": out["raw"], "text": out["text"], "fallback": out["fallback"], "attempts": out["attempts"],
            "errors": check["errors"] or out.get("errors", []), "citations": out.get("citations", []),
            "audit_raw": check["audit"]}


# ------------------------------------------------------------------------------------------ driver


def run_writer(records: Sequence[NarrativeRecord], seed: int) -> list[dict]:
    writer = Writer(seed)
    outs = []
    for rec in records:
        t0 = time.perf_counter()
        g = ground(writer.write(rec), rec)
        outs.append({"raw": g.text, "text": g.text, "fallback": False, "attempts": 1,
                     "latency_s": time.perf_counter() - t0, "prompt_tokens": None, "generated_tokens": None,
                     "citations": [asdict(c) for c in g.citations], "errors": g.errors})
    return outs


def run_model(gen: NarrativeGenerator, records: Sequence[NarrativeRecord], seed: int) -> tuple[list[dict], list[str]]:
    """Narratives for every record; records whose prompt cannot fit the model are skipped (and said)."""
    outs, skipped = [], []
    for i, rec in enumerate(records):
        rec = copy.deepcopy(rec)  # the generator trims the history of the record it is given
        try:
            r = narrate(gen, rec, {"seed": seed + i})
        except ValueError as e:  # a prompt that leaves no room to write in the model's block
            skipped.append(f"example {i}: {e}")
            outs.append(None)
            continue
        n = r["narrative"]
        outs.append({"raw": r["raw"], "text": n.text, "fallback": n.fallback, "attempts": n.attempts,
                     "latency_s": r["latency_s"], "prompt_tokens": r["prompt_tokens"],
                     "generated_tokens": r["generated_tokens"], "errors": n.errors,
                     "citations": [asdict(c) for c in n.citations], "record": rec})
    return outs, skipped


def evaluate_system(system: System, gen: NarrativeGenerator, examples: list[dict], records: list[NarrativeRecord],
                    refs: list[str], facts: FactBase, purchases: dict[str, set[str]], cfg: RunConfig,
                    auditor: Auditor) -> dict[str, Any]:
    t0 = time.perf_counter()
    row: dict[str, Any] = {"metrics": {}, "skipped": []}
    if system.key == "writer":
        outs = run_writer(records, cfg.narratives.seed + 1)
        kept = list(range(len(records)))
    else:
        from recnarr.data.tokenizer import get_tokenizer
        from recnarr.inference.engine import Engine

        model = system.load()
        tok = get_tokenizer()
        if isinstance(model, torch.nn.Module):
            model.eval()
            ppl_examples = [{**ex, "prompt": strip_retrieval(ex["prompt"])} if system.no_rag else ex for ex in examples]
            row["metrics"].update(perplexity(model, ppl_examples, tok))
        else:  # llama.cpp keeps the last position's logits only: no teacher-forced perplexity here
            row["metrics"].update({"loss": None, "perplexity": None})
        engine = Engine(model, tok)
        gen.engine = NoRagEngine(engine) if system.no_rag else engine
        got, row["skipped"] = run_model(gen, records, cfg.eval.seed)
        kept = [i for i, o in enumerate(got) if o is not None]
        outs = [got[i] for i in kept]
        probes = [strip_retrieval(format_prompt(records[i])) if system.no_rag else format_prompt(records[i])
                  for i in kept[: cfg.eval.speed_probes]]
        row["metrics"].update(speed_probe(engine, probes))
    # score against the record the generator actually used (history trimmed to fit the block)
    used = [o.get("record", records[i]) for o, i in zip(outs, kept, strict=True)]
    row["metrics"].update(score_outputs(outs, used, [refs[i] for i in kept], facts, purchases, auditor))
    row["latencies"] = [o["latency_s"] for o in outs]
    row["samples"] = [_sample(used[j], outs[j], check_text(outs[j]["raw"], used[j], facts, auditor))
                      for j in sample_indices(used, cfg.eval.narrative_samples)]
    # every final text the audit found a false claim in, with the claims: what a reader must look at
    row["audit_findings"] = [{"user_id": r.user_id, "product_id": r.product.id, "text": o["text"],
                              "fallback": o["fallback"], "claims": c["audit"]}
                             for o, r in zip(outs, used, strict=True)
                             if (c := check_text(o["text"], r, facts, auditor))["false"]]
    row["seconds"] = time.perf_counter() - t0
    return row


# ------------------------------------------------------------------------------------------ tables


def _f(v: Any, digits: int = 3, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if pct:
        return f"{100 * v:.1f}%"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def format_tables(results: dict[str, Any]) -> str:
    """Markdown: grounding and personalization, diversity and fluency, speed; then what did not run."""
    rows = [(k, e) for k, e in results["systems"].items() if e["status"] == "ok"]
    lines = [f"## Narratives on the held-out test split ({results['examples']} examples, {results['run_dir']})", "",
             "### Grounding and personalization", "",
             "| system | ppl | 1st pass | halluc. raw | halluc. final | fact prec. raw | fact prec. final | fallback | "
             "attempts | personal (raw) | never bought | swap |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for _, e in rows:
        m = e["metrics"]
        lines.append(
            f"| {e['name']} | {_f(m.get('perplexity'), 2)} | {_f(m['pass_rate_raw'], pct=True)} | "
            f"{_f(m['hallucination_rate_raw'], pct=True)} | "
            f"{_f(m['hallucination_rate'], pct=True)} | {_f(m['fact_precision_raw'])} | {_f(m['fact_precision'])} | "
            f"{_f(m['fallback_rate'], pct=True)} | {_f(m['mean_attempts'], 2)} | "
            f"{_f(m['personal_rate'], pct=True)} ({_f(m['personal_rate_raw'], pct=True)}) | "
            f"{_f(m['never_bought_rate'], pct=True)} | {_f(m['swap_rate'], pct=True)} |")
    lines += ["", "### Diversity and fluency (final texts; BLEU/ROUGE vs the writer's references)", "",
              "| system | distinct-1 | distinct-2 | USR | repetition | words (min/med/max) | BLEU | BLEU raw | "
              "ROUGE-1 | ROUGE-2 | ROUGE-L | FMR | FCR | DIV |",
              "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for _, e in rows:
        m = e["metrics"]
        ln = m["length_words"]
        lines.append(
            f"| {e['name']} | {_f(m['distinct_1'])} | {_f(m['distinct_2'])} | {_f(m['usr'])} | {_f(m['repetition'])} | "
            f"{ln['min']}/{ln['median']}/{ln['max']} | {_f(m['bleu'], 1)} | {_f(m['bleu_raw'], 1)} | "
            f"{_f(m['rouge1'])} | {_f(m['rouge2'])} | {_f(m['rougeL'])} | {_f(m['fmr'])} | {_f(m['fcr'])} | "
            f"{_f(m['div'])} |")
    lines += ["", "### Send-readiness (final texts, `evaluation.readiness`: its own reader, not the grammar)", "",
              "| system | ready | top closer | frames | defects |", "|---|---:|---:|---:|---|"]
    for _, e in rows:
        m = e["metrics"]
        found = ", ".join(f"{k} {v}" for k, v in (m.get("ready_defects") or {}).items() if v) or "none"
        lines.append(f"| {e['name']} | {_f(m.get('ready_rate'), pct=True)} | {_f(m.get('top_closer_share'), pct=True)} "
                     f"| {m.get('frames', '-')} | {found} |")
    lines += ["", "### Speed", "",
              "| system | prefill tok/s | decode tok/s | latency mean s | p50 s | p90 s | prompt tok | new tok |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, e in rows:
        if key == "writer":
            continue
        m = e["metrics"]
        lines.append(
            f"| {e['name']} | {_f(m.get('prefill_tok_s'), 0)} | {_f(m.get('decode_tok_s'), 0)} | "
            f"{_f(m['latency_mean_s'], 3)} | {_f(m['latency_p50_s'], 3)} | {_f(m['latency_p90_s'], 3)} | "
            f"{_f(m['prompt_tokens_mean'], 0)} | {_f(m['generated_tokens_mean'], 0)} |")
    skipped = [(e["name"], len(e.get("skipped", []))) for _, e in rows if e.get("skipped")]
    if skipped:
        lines += ["", "Skipped (prompt longer than the model's block): "
                  + ", ".join(f"{n}: {c}" for n, c in skipped)]
    missing = [e for e in results["systems"].values() if e["status"] != "ok"]
    if missing:
        lines += ["", "### Not run / failed", "", "| system | status | how to produce it / error |", "|---|---|---|"]
        lines += [f"| {e['name']} | {e['status']} | `{e['note']}` |" for e in missing]
    lines += ["", "1st pass = share of first attempts the verifier accepts. halluc. = share of narratives with >= 1 false fact (raw: the first attempt, before the verifier; "
              "final: after retries and the fallback). personal = share naming >= 1 real past purchase of that user "
              "(raw: first attempts). never bought = share naming a product the user never bought. swap = share "
              "naming a purchase of ANOTHER user (should be ~0)."]
    return "\n".join(lines) + "\n"
