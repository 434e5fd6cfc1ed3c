"""Generation speed: recnarr's engine vs Hugging Face transformers' `generate`, side by side.

One prompt of 200 tokens, 120 new tokens, batch 1, greedy, the time including the prefill. The same
weights on every row (ours, exported to HF format for transformers). Each backend runs in its own
subprocess, so its peak resident memory is its own; each reports the best of `--repeats` runs after a
warm-up, and the tokens it generated, so the table can say whether the greedy outputs agree.

Backends are rows of `BACKENDS`: add one by writing a function that takes the parsed arguments and
returns {"seconds": ..., "tokens": [...]}, and listing it. The llama.cpp rows run the same weights
exported with `recnarr export --format gguf` (f32; q8_0 and q4_0 quantized by the gguf package and
llama.cpp's own quantizer) through recnarr's engine with the `llamacpp` backend, as serving does,
with llama.cpp's weight repacking as recnarr picks it for this CPU (on, but off with AMX, whose
repacking segfaults) and forced off (`_norepack`, what CPUs with AMX run); they are left out, with a note, where llama-cpp-python is not installed.

A second table runs the shipped model (int8, and its q8_0 GGUF on llama.cpp) on a real Superstore
record's prompt: greedy, the serving sampling settings (temperature 0.7, top-k 50, top-p 0.95,
repetition penalty 1.1) and guided decoding (those settings under the claim grammar, with sentence
verification and rollback, as serving runs it), each as time per token beside greedy (`--no-shipped`
leaves it out).

    .venv/bin/python bench/generate_speed.py            # 51M shape: 8 x 512, 8 heads, vocab 50257
    .venv/bin/python bench/generate_speed.py --small    # a quick run with a small model
    .venv/bin/python bench/generate_speed.py --checkpoint runs/x/pretrain/best   # trained weights

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from memory import peak_rss_mb, reset_peak_rss
from recnarr.model.checkpoint import save_checkpoint
from recnarr.model.gpt import GPT, GPTConfig
from recnarr.model.hf import export_hf

SHAPES = {
    "51m": GPTConfig(block_size=512, vocab_size=50257, n_layer=8, n_head=8, n_embd=512),
    "small": GPTConfig(block_size=512, vocab_size=50257, n_layer=2, n_head=4, n_embd=128),
}


def prompt_ids(n: int, vocab: int, seed: int = 0) -> list[int]:
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def timed(fn: Callable[[], list[int]], repeats: int) -> dict:
    """Best wall-clock and best process-CPU time of `repeats` runs after a warm-up."""
    fn()  # warm-up: first-call allocations, thread pools, lazy inits
    best, best_cpu, tokens = float("inf"), float("inf"), []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        tokens = fn()
        best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
    return {"seconds": best, "cpu_seconds": best_cpu, "tokens": tokens}


# ------------------------------------------------------------------ backends (each runs in a subprocess)
def run_recnarr(args: argparse.Namespace) -> dict:
    from recnarr.inference.engine import Engine, SamplingParams
    from recnarr.model.checkpoint import load_model

    engine = Engine(load_model(args.weights))
    params = SamplingParams(max_new_tokens=args.new, temperature=0, stop_token_ids=())
    prompt = prompt_ids(args.prompt, engine.config.vocab_size)
    return timed(lambda: engine.generate(prompt, params).tokens, args.repeats)


def run_hf(args: argparse.Namespace) -> dict:
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(args.hf).eval()
    x = torch.tensor([prompt_ids(args.prompt, model.config.vocab_size)])
    mask = torch.ones_like(x)

    def go() -> list[int]:
        with torch.inference_mode():
            out = model.generate(x, attention_mask=mask, max_new_tokens=args.new, min_new_tokens=args.new,
                                 do_sample=False, pad_token_id=0)
        return out[0, x.size(1) :].tolist()

    return timed(go, args.repeats)


def run_recnarr_quantized(mode: str) -> Callable[[argparse.Namespace], dict]:
    """recnarr's engine on the same weights through the one quantization switch (saved and loaded back as
    a quantized checkpoint, as `recnarr quantize` writes it for serving)."""

    def run(args: argparse.Namespace) -> dict:
        from recnarr.inference.engine import Engine, SamplingParams
        from recnarr.model.checkpoint import load_model
        from recnarr.model.quantize import load_quantized, quantize, save_quantized

        with tempfile.TemporaryDirectory() as tmp:
            save_quantized(quantize(load_model(args.weights), mode), Path(tmp) / mode)
            gc.collect()
            reset_peak_rss()  # peak RSS = the quantized model's, not fp32's
            engine = Engine(load_quantized(Path(tmp) / mode))
        params = SamplingParams(max_new_tokens=args.new, temperature=0, stop_token_ids=())
        prompt = prompt_ids(args.prompt, engine.config.vocab_size)
        return timed(lambda: engine.generate(prompt, params).tokens, args.repeats)

    return run


def run_llamacpp(quant: str, extra_bufts: bool | None = None) -> Callable[[argparse.Namespace], dict]:
    """extra_bufts: llama.cpp's weight repacking (None: what recnarr picks for this CPU, off with AMX)."""

    def run(args: argparse.Namespace) -> dict:
        from recnarr.data.tokenizer import get_tokenizer
        from recnarr.inference.engine import Engine, SamplingParams
        from recnarr.inference.llamacpp import LlamaCppModel
        from recnarr.model.gguf_export import export_gguf

        with tempfile.TemporaryDirectory() as tmp:
            path = export_gguf(args.weights, Path(tmp) / f"model-{quant}.gguf", quant)
            gc.collect()
            reset_peak_rss()  # peak RSS = llama.cpp's, not the export's
            engine = Engine(LlamaCppModel(path, n_threads=args.threads or torch.get_num_threads(),
                                          extra_bufts=extra_bufts), get_tokenizer())
            params = SamplingParams(max_new_tokens=args.new, temperature=0, stop_token_ids=())
            prompt = prompt_ids(args.prompt, engine.config.vocab_size)
            return timed(lambda: engine.generate(prompt, params).tokens, args.repeats)

    return run


def run_shipped(kind: str, llamacpp: bool = False) -> Callable[[argparse.Namespace], dict]:
    """The shipped model (int8, or its q8_0 GGUF on llama.cpp) on a real Superstore record's prompt.
    greedy and sampled (the serving settings) write exactly `--new` tokens; guided writes the verified
    narrative under the claim grammar, with the serving settings, sentence rollbacks included, to its end."""

    def run(args: argparse.Namespace) -> dict:
        from narrative_audit import records
        from recnarr.config import GenerationConfig, cache_dir
        from recnarr.data.narratives import END_OF_NARRATIVE, format_prompt
        from recnarr.data.superstore import load_superstore
        from recnarr.data.tokenizer import get_tokenizer
        from recnarr.inference.decoding import NarrativeGuide, TokenTable
        from recnarr.inference.engine import Engine, SamplingParams
        from recnarr.inference.serving_model import SHIPPED
        from recnarr.model.quantize import load_quantized

        if llamacpp:
            from recnarr.inference.llamacpp import LlamaCppModel

            model = LlamaCppModel(SHIPPED / "model-q8_0.gguf", n_threads=args.threads or torch.get_num_threads())
        else:
            model = load_quantized(SHIPPED)
        engine, g = Engine(model, get_tokenizer()), GenerationConfig()
        rec = records(load_superstore(cache_dir()), 1)[0]
        prompt = engine.tokenizer.encode(format_prompt(rec))
        serving = SamplingParams(max_new_tokens=args.new, min_new_tokens=args.new, temperature=g.temperature,
                                 top_k=g.top_k, top_p=g.top_p, repetition_penalty=g.repetition_penalty, seed=0,
                                 stop_token_ids=())
        if kind == "guided":
            table = TokenTable.of(engine.tokenizer, engine.config.vocab_size)
            params = SamplingParams(max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_k=g.top_k,
                                    top_p=g.top_p, repetition_penalty=g.repetition_penalty, seed=0,
                                    stop=(END_OF_NARRATIVE, "\n###"))
            out = {}

            def go() -> list[int]:
                guide = NarrativeGuide(rec, table, engine.tokenizer.eot_token, g.max_retries)
                result = engine.generate(prompt, params, guide=guide)
                out.update(rollbacks=result.rollbacks, verified=bool(guide.names_product and guide.verification().ok))
                return result.tokens

            return {**timed(go, args.repeats), **out, "prompt_tokens": len(prompt)}
        params = replace(serving, temperature=0) if kind == "greedy" else serving
        return {**timed(lambda: engine.generate(prompt, params).tokens, args.repeats), "prompt_tokens": len(prompt)}

    return run


def llamacpp_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


@dataclass
class Backend:
    name: str
    precision: str
    run: Callable[[argparse.Namespace], dict]


BACKENDS = [
    Backend("recnarr", "fp32", run_recnarr),
    Backend("transformers", "fp32", run_hf),
    Backend("recnarr", "int8", run_recnarr_quantized("int8")),  # dynamic int8 (fbgemm), int8 head
    Backend("recnarr", "int4", run_recnarr_quantized("int4")),  # 4-bit groups of 32, bf16 kernel, int4 head
    Backend("llama.cpp", "f32", run_llamacpp("f32")),
    Backend("llama.cpp", "q8_0", run_llamacpp("q8_0")),
    Backend("llama.cpp", "q4_0", run_llamacpp("q4_0")),
    # weight repacking off: what recnarr runs on CPUs with AMX, where llama.cpp's AMX buffer segfaults
    Backend("llama.cpp", "q8_0_norepack", run_llamacpp("q8_0", extra_bufts=False)),
    Backend("llama.cpp", "q4_0_norepack", run_llamacpp("q4_0", extra_bufts=False)),
]
BASELINE = "transformers"
SHIPPED_UNUSED = Path("-")
# the shipped model on a real record: what sampling and the claim grammar cost beside greedy, same run
SHIPPED_ROWS = [
    Backend("shipped-int8", "greedy", run_shipped("greedy")),
    Backend("shipped-int8", "sampled", run_shipped("sampled")),
    Backend("shipped-int8", "guided", run_shipped("guided")),
    Backend("shipped-q8_0.gguf", "greedy", run_shipped("greedy", llamacpp=True)),
    Backend("shipped-q8_0.gguf", "guided", run_shipped("guided", llamacpp=True)),
]


def worker(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = next(b for b in BACKENDS + SHIPPED_ROWS if f"{b.name}-{b.precision}" == args.worker)
    result = backend.run(args)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def run_worker(key: str, args: argparse.Namespace, weights: Path, hf: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", key, "--weights", str(weights), "--hf", str(hf),
           "--prompt", str(args.prompt), "--new", str(args.new), "--repeats", str(args.repeats)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{key} worker failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="a small model (quick check)")
    p.add_argument("--checkpoint", help="a recnarr checkpoint folder to use instead of random weights")
    p.add_argument("--prompt", type=int, default=200, help="prompt tokens")
    p.add_argument("--new", type=int, default=120, help="new tokens")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per backend (the best counts)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the backends in turn this many times and keep each one's best (a shared CPU is noisy)")
    p.add_argument("--backends", default=None,
                   help="comma-separated subset, e.g. recnarr-fp32,transformers-fp32 (default: all)")
    p.add_argument("--no-shipped", action="store_true", help="leave out the shipped model's rows")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--hf", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.checkpoint:
            weights = Path(args.checkpoint)
            from recnarr.model.checkpoint import read_config

            shape = read_config(weights)
        else:
            shape = SHAPES["small" if args.small else "51m"]
            torch.manual_seed(0)
            weights = save_checkpoint(tmp / "weights", GPT(shape))
        hf = export_hf(weights, tmp / "hf")
        n_params = sum(v.numel() for k, v in GPT(shape).state_dict().items() if k != "lm_head.weight")
        print(f"model: {shape.n_layer} layers x {shape.n_embd}, {shape.n_head} heads, vocab {shape.vocab_size}, "
              f"{n_params / 1e6:.1f}M params; prompt {args.prompt} + {args.new} new tokens, batch 1, greedy; "
              f"torch {torch.__version__}, {args.threads or torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
        keys = [f"{b.name}-{b.precision}" for b in BACKENDS]
        if args.backends:
            keys = [k for k in keys if k in args.backends.split(",") or k in ("recnarr-fp32", f"{BASELINE}-fp32")]
        if not llamacpp_installed():
            print("llama.cpp rows left out: llama-cpp-python is not installed (pip install 'recnarr[llamacpp]')")
            keys = [k for k in keys if not k.startswith("llama.cpp")]
        results: dict[str, dict] = {}
        for _ in range(args.rounds):
            for key in keys:
                r, prev = run_worker(key, args, weights, hf), results.get(key)
                if prev is not None:  # the best of the rounds, each figure on its own
                    r = {**r, "seconds": min(r["seconds"], prev["seconds"]),
                         "cpu_seconds": min(r["cpu_seconds"], prev["cpu_seconds"]),
                         "peak_rss_mb": max(r["peak_rss_mb"], prev["peak_rss_mb"])}
                results[key] = r

    base = results[f"{BASELINE}-fp32"]
    print(f"\n{'backend':<20}{'seconds':>9}{'tok/s':>8}{'vs HF fp32':>12}{'CPU s':>8}{'vs HF (CPU)':>13}"
          f"{'peak RSS MB':>13}  same tokens as HF")
    for key, r in results.items():
        r["tok_s"] = args.new / r["seconds"]
        same = "yes" if r["tokens"] == base["tokens"] else f"no (first {_agree(r['tokens'], base['tokens'])} agree)"
        print(f"{key:<20}{r['seconds']:>9.3f}{r['tok_s']:>8.1f}{base['seconds'] / r['seconds']:>11.2f}x"
              f"{r['cpu_seconds']:>8.2f}{base['cpu_seconds'] / r['cpu_seconds']:>12.2f}x{r['peak_rss_mb']:>13.0f}  {same}")
    load = os.getloadavg()[0]
    print(f"(seconds: wall clock, best of {args.repeats} x {args.rounds} round(s), prefill included; CPU s: process CPU time, which a shared\n"
          f" CPU disturbs less - meaningful with --threads 1. Load average at the end: {load:.1f} on {os.cpu_count()} CPUs.)")
    ours = results["recnarr-fp32"]
    summary = {"bench": "generate_speed", "shape": "checkpoint" if args.checkpoint else ("small" if args.small else "51m"),
               "prompt": args.prompt, "new": args.new,
               "recnarr_tok_s": round(ours["tok_s"], 1), "hf_tok_s": round(base["tok_s"], 1),
               "ratio": round(base["seconds"] / ours["seconds"], 3),
               "cpu_ratio": round(base["cpu_seconds"] / ours["cpu_seconds"], 3), "load_avg": round(load, 2),
               "recnarr_s": round(ours["seconds"], 3), "hf_s": round(base["seconds"], 3),
               "recnarr_rss_mb": round(ours["peak_rss_mb"]), "hf_rss_mb": round(base["peak_rss_mb"]),
               "same_tokens": ours["tokens"] == base["tokens"]}
    for key, r in results.items():  # the other rows: recnarr_int8_s, llamacpp_q8_0_s, ...
        if key not in ("recnarr-fp32", f"{BASELINE}-fp32"):
            tag = key.replace(".", "").replace("-", "_")
            summary.update({f"{tag}_s": round(r["seconds"], 3), f"{tag}_tok_s": round(r["tok_s"], 1),
                            f"{tag}_cpu_s": round(r["cpu_seconds"], 3), f"{tag}_rss_mb": round(r["peak_rss_mb"]),
                            f"{tag}_same_tokens_as_fp32": r["tokens"] == ours["tokens"]})
    if not args.no_shipped:
        summary.update(shipped_table(args))
    print(json.dumps(summary))


def shipped_table(args: argparse.Namespace) -> dict:
    """The shipped model's rows, in turn, each in its own worker; their table; their figures."""
    keys = [f"{b.name}-{b.precision}" for b in SHIPPED_ROWS
            if llamacpp_installed() or not b.name.endswith(".gguf")]
    results = {k: run_worker(k, args, SHIPPED_UNUSED, SHIPPED_UNUSED) for k in keys}  # no weights to pass
    base = results["shipped-int8-greedy"]
    base_ms = base["seconds"] / len(base["tokens"]) * 1000
    print(f"\nthe shipped model on a real Superstore record ({base['prompt_tokens']}-token prompt); greedy and sampled "
          f"write {args.new} tokens, guided writes the verified narrative (serving settings: temperature, top-k, "
          "top-p, repetition penalty) to its end")
    print(f"{'row':<28}{'seconds':>9}{'tokens':>8}{'ms/token':>10}{'vs greedy':>11}{'rollbacks':>11}  verified")
    figures = {}
    for key, r in results.items():
        ms = r["seconds"] / max(1, len(r["tokens"])) * 1000
        print(f"{key:<28}{r['seconds']:>9.3f}{len(r['tokens']):>8}{ms:>10.2f}{ms / base_ms:>10.2f}x"
              f"{r.get('rollbacks', '-'):>11}  {r.get('verified', '-')}")
        tag = key.replace(".", "_").replace("-", "_")
        figures.update({f"{tag}_s": round(r["seconds"], 3), f"{tag}_ms_per_token": round(ms, 2),
                        f"{tag}_vs_greedy": round(ms / base_ms, 3)})
    return figures


def _agree(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


if __name__ == "__main__":
    main()
