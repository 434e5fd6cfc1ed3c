"""Measuring quantized serving models, for `recnarr quantize` (recnarr.stages.quantize) and its table.

Reads the full-precision serving checkpoint (`<run>/serving/merged/`, from `recnarr merge`, or
`--checkpoint PATH`), quantizes it with the one switch (`recnarr.model.quantize.quantize`), saves each
mode as a quantized checkpoint folder, loads it back the way the server does, and measures the loaded
model:

- size on disk of the folder, and the load time;
- decoding: a `bench_prompt_tokens` prompt + `bench_new_tokens` new tokens, batch 1, greedy, through
  the engine (KV cache), best of `bench_repeats` after a warm-up; seconds (prefill included), process
  CPU seconds, and tokens/s (`bench_threads` pins the thread count for the measurement);
- quality: loss and perplexity on the corpus validation tokens (`<run>/corpus/val.bin`, fixed windows)
  and/or the narrative validation set (loss on narrative tokens only), with the change vs fp32;
- grounding: the share of greedy narratives for validation prompts that pass the verifier.

The table is printed and written to `<run>/serving/quantization.{md,json}`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recnarr.config import RunConfig
from recnarr.inference.engine import Engine, SamplingParams
from recnarr.model.gpt import GPT
from recnarr.training.narrative_batches import collate, tokenize_example


def source_checkpoint(cfg: RunConfig, checkpoint: str | Path | None) -> Path:
    path = Path(checkpoint) if checkpoint else cfg.layout.merged
    if not (path / "config.json").is_file():
        hint = "" if checkpoint else " (run `recnarr merge` first, or pass --checkpoint PATH)"
        raise FileNotFoundError(f"{path}: no full-precision checkpoint here{hint}")
    return path


@torch.inference_mode()
def corpus_loss(model: GPT, path: Path, windows: int, batch: int = 4) -> float:
    """Mean next-token loss over `windows` fixed, evenly spaced windows of block_size tokens of a token file."""
    data = np.memmap(path, dtype=np.uint16, mode="r")
    T = min(model.config.block_size, len(data) - 2)
    starts = np.linspace(0, len(data) - T - 2, windows).astype(np.int64)
    total, n = 0.0, 0
    for i in range(0, len(starts), batch):
        rows = np.stack([np.asarray(data[s : s + T + 1], dtype=np.int64) for s in starts[i : i + batch]])
        xy = torch.from_numpy(rows)
        _, loss = model(xy[:, :-1], xy[:, 1:])
        total += loss.item() * xy[:, 1:].numel()
        n += xy[:, 1:].numel()
    return total / n


@torch.inference_mode()
def narrative_loss(model: GPT, examples: list[dict], tokenizer: Any, batches: int, batch: int = 8) -> float:
    """Mean loss on narrative tokens (the fine-tuning objective) over the first `batches` batches of examples."""
    rows = []
    for ex in examples:
        t = tokenize_example(ex["prompt"], ex["target"], tokenizer, model.config.block_size)
        if t is not None:
            rows.append(t)
        if len(rows) >= batches * batch:
            break
    total, n = 0.0, 0.0
    for i in range(0, len(rows), batch):
        b = collate(rows[i : i + batch])
        _, loss = model(b.x, b.y, b.loss_mask)
        k = float(b.loss_mask.sum())
        total, n = total + loss.item() * k, n + k
    return total / n if n else float("nan")


def decode_speed(model: GPT, prompt_tokens: int, new_tokens: int, repeats: int,
                 threads: int | None = None) -> dict[str, float]:
    """Seconds for prompt + new tokens (prefill included; best of `repeats` after a warm-up), tokens/s, and
    the process CPU seconds of the best run (a shared, busy CPU inflates wall time far more than CPU time;
    with `threads=1` the CPU time is close to what an idle core would take)."""
    engine = Engine(model)
    prompt_tokens = min(prompt_tokens, model.config.block_size - new_tokens)
    prompt = torch.randint(0, model.config.vocab_size, (prompt_tokens,), generator=torch.Generator().manual_seed(0))
    params = SamplingParams(max_new_tokens=new_tokens, temperature=0, stop_token_ids=())
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        engine.generate(prompt.tolist(), params)
        best, best_cpu = math.inf, math.inf
        for _ in range(max(1, repeats)):
            t0, c0 = time.perf_counter(), time.process_time()
            engine.generate(prompt.tolist(), params)
            best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
    finally:
        torch.set_num_threads(before)
    return {"seconds": best, "cpu_seconds": best_cpu, "tok_s": new_tokens / best, "prompt_tokens": prompt_tokens,
            "new_tokens": new_tokens, "threads": threads or before}


def measure(model: GPT, cfg: RunConfig, evals: dict[str, Any]) -> dict[str, Any]:
    """Speed and quality of a loaded model (see the module docstring)."""
    q = cfg.quantize
    row: dict[str, Any] = decode_speed(model, q.bench_prompt_tokens, q.bench_new_tokens, q.bench_repeats,
                                       q.bench_threads)
    if evals.get("corpus") is not None:
        row["corpus_loss"] = corpus_loss(model, evals["corpus"], q.eval_batches)
        row["corpus_ppl"] = math.exp(row["corpus_loss"])
    if evals.get("narratives"):
        row["narrative_loss"] = narrative_loss(model, evals["narratives"], evals["tokenizer"], q.eval_batches)
        row["narrative_ppl"] = math.exp(row["narrative_loss"])
        if q.eval_examples > 0 and evals.get("facts") is not None:
            from recnarr.evaluation.generation import grounding_pass_rate

            g = grounding_pass_rate(model, evals["narratives"], evals["tokenizer"], q.eval_examples)
            row.update(grounding_passed=g["passed"], grounding_tried=g["tried"], grounding_pass_rate=g["pass_rate"])
    return row


def _fmt_delta(row: dict[str, Any], ref: dict[str, Any], key: str) -> str:
    if key not in row:
        return "-"
    return f"{row[key]:.3f} ({100 * (row[key] / ref[key] - 1):+.2f}%)"


def table(rows: dict[str, dict[str, Any]], title: str) -> str:
    ref = rows["none"]
    lines = [f"### {title}", "",
             "| mode | size MB | load s | prompt+new s | CPU s | tok/s | corpus ppl (vs fp32) | narrative ppl (vs fp32) "
             "| grounding |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for mode, r in rows.items():
        g = f"{r['grounding_passed']}/{r['grounding_tried']}" if r.get("grounding_tried") else "-"
        lines.append(f"| {mode} | {r['size_mb']:.1f} | {r['load_s']:.2f} | {r['seconds']:.3f} | {r['cpu_seconds']:.3f} | "
                     f"{r['tok_s']:.0f} | "
                     f"{_fmt_delta(r, ref, 'corpus_ppl')} | {_fmt_delta(r, ref, 'narrative_ppl')} | {g} |")
    return "\n".join(lines) + "\n"
