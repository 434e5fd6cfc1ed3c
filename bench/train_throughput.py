"""Training throughput: recnarr's trainer vs Hugging Face transformers' GPT2LMHeadModel, side by side.

The same weights (ours, exported to HF format and loaded with `from_pretrained`), the same batches, the
same optimizer (fused AdamW, weight decay on matrices), the same precision (fp32, or bf16 autocast),
gradient clipping on both. Each (side, precision) runs in its own subprocess so that its peak resident
memory is its own. Timing starts after warm-up steps and covers forward + backward + optimizer step.

    .venv/bin/python bench/train_throughput.py            # 51M shape (8 x 512, vocab 50257), batch 8 x 256
    .venv/bin/python bench/train_throughput.py --small    # a quick run with a small model

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from memory import peak_rss_mb
from recnarr.config import TrainConfig
from recnarr.model.checkpoint import export_hf, load_model, save_checkpoint
from recnarr.model.gpt import GPT, GPTConfig

SHAPES = {
    "51m": GPTConfig(block_size=512, vocab_size=50257, n_layer=8, n_head=8, n_embd=512),
    "small": GPTConfig(block_size=128, vocab_size=50257, n_layer=2, n_head=4, n_embd=128),
}


def fixed_batches(n: int, batch: int, seq: int, vocab: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        xy = torch.randint(0, vocab, (batch, seq + 1), generator=g)
        out.append((xy[:, :-1].contiguous(), xy[:, 1:].contiguous()))
    return out


def worker(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    steps = args.warmup + args.steps
    cfg = TrainConfig(max_steps=steps, batch_size=args.batch, grad_accum=1, warmup_steps=1, dtype=args.dtype,
                      device="cpu", compile=args.compile, eval_interval=0, log_interval=10**9,
                      ckpt_interval=10**9, progress=False, tracking=False, log_checkpoint=False)
    batches = fixed_batches(steps, args.batch, args.seq, 50257)
    stamps: list[float] = []
    if args.worker == "recnarr":
        from recnarr.training.trainer import Batch, Trainer

        class Fixed:  # a BatchSource serving the pre-made batches
            i = 0

            def train_batch(self):
                x, y = batches[self.i % len(batches)]
                self.i += 1
                return Batch(x, y)

            def val_batches(self):
                return iter(())

            def state_dict(self):
                return {"i": self.i}

            def load_state_dict(self, s):
                self.i = s["i"]

        model = load_model(args.weights)
        trainer = Trainer(model, Fixed(), cfg, Path(args.tmp) / "ckpt",
                          callbacks=[lambda t, m: stamps.append((time.perf_counter(), time.process_time()))])
        trainer.fit()
    else:
        from transformers import GPT2LMHeadModel

        from recnarr.training.trainer import build_optimizer

        model = GPT2LMHeadModel.from_pretrained(args.hf).train()
        opt = build_optimizer(model, cfg, torch.device("cpu"))
        params = [p for p in model.parameters() if p.requires_grad]
        step_fn = model
        if args.compile:
            step_fn = torch.compile(model)
        for x, y in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
                logits = step_fn(input_ids=x).logits
                loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss.item()
            stamps.append((time.perf_counter(), time.process_time()))
    timed = stamps[args.warmup - 1 :]
    tok = args.batch * args.seq * (len(timed) - 1)
    return {"side": args.worker, "dtype": args.dtype, "tok_s": tok / (timed[-1][0] - timed[0][0]),
            "tok_cpu_s": tok / (timed[-1][1] - timed[0][1]), "peak_rss_mb": peak_rss_mb(), "steps": len(timed) - 1}


def run_worker(side: str, dtype: str, args: argparse.Namespace, weights: Path, hf: Path, tmp: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--dtype", dtype, "--weights", str(weights), "--hf", str(hf),
           "--tmp", str(tmp), "--batch", str(args.batch), "--seq", str(args.seq), "--steps", str(args.steps),
           "--warmup", str(args.warmup)] + (["--compile"] if args.compile else [])
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{side} {dtype} worker failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="a small model and few steps (quick check)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 4; --small 5)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--compile", action="store_true", help="torch.compile both sides")
    p.add_argument("--threads", type=int, default=None, help="torch threads on both sides (default: torch's)")
    p.add_argument("--rounds", type=int, default=1,
                   help="alternate the sides this many times and keep each one's best (a shared CPU is noisy)")
    p.add_argument("--worker", choices=["recnarr", "hf"], help=argparse.SUPPRESS)
    p.add_argument("--dtype", help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--hf", help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.steps is None:
        args.steps = 5 if args.small else 4
    if args.worker:
        print(json.dumps(worker(args)))
        return

    shape = SHAPES["small" if args.small else "51m"]
    if args.small:
        args.seq = min(args.seq, 128)
    torch.manual_seed(0)
    model = GPT(shape)
    print(f"model: {shape.n_layer} layers x {shape.n_embd}, {shape.n_head} heads, vocab {shape.vocab_size}, "
          f"{model.num_params(non_embedding=False) / 1e6:.1f}M params; batch {args.batch} x {args.seq}; "
          f"torch {torch.__version__}, {args.threads or torch.get_num_threads()} threads, {os.cpu_count()} CPUs"
          + ("; torch.compile" if args.compile else ""))
    rows, summary = [], {"bench": "train_throughput", "shape": "small" if args.small else "51m",
                         "batch": args.batch, "seq": args.seq, "compile": args.compile}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = save_checkpoint(tmp / "weights", model)
        hf = export_hf(weights, tmp / "hf")
        del model
        best: dict[tuple[str, str], dict] = {}
        for _ in range(args.rounds):
            for dtype in args.dtypes.split(","):
                for side in ("recnarr", "hf"):
                    r = run_worker(side, dtype, args, weights, hf, tmp)
                    prev = best.get((side, dtype))
                    if prev is not None:  # the best of the rounds, each figure on its own
                        r = {**r, "tok_s": max(r["tok_s"], prev["tok_s"]), "tok_cpu_s": max(r["tok_cpu_s"], prev["tok_cpu_s"]),
                             "peak_rss_mb": max(r["peak_rss_mb"], prev["peak_rss_mb"])}
                    best[(side, dtype)] = r
        for dtype in args.dtypes.split(","):
            ours, theirs = best[("recnarr", dtype)], best[("hf", dtype)]
            ratio = ours["tok_s"] / theirs["tok_s"]
            cpu_ratio = ours["tok_cpu_s"] / theirs["tok_cpu_s"]
            rows.append((dtype, ours, theirs, ratio, cpu_ratio))
            summary |= {f"recnarr_{dtype}_tok_s": round(ours["tok_s"], 1), f"hf_{dtype}_tok_s": round(theirs["tok_s"], 1),
                        f"ratio_{dtype}": round(ratio, 3), f"cpu_ratio_{dtype}": round(cpu_ratio, 3),
                        f"recnarr_{dtype}_rss_mb": round(ours["peak_rss_mb"]), f"hf_{dtype}_rss_mb": round(theirs["peak_rss_mb"])}
    load = os.getloadavg()[0]
    summary["load_avg"] = round(load, 2)
    print(f"\n{'precision':<10}{'recnarr tok/s':>15}{'HF tok/s':>10}{'ratio':>8}{'per CPU-s':>11}{'recnarr RSS MB':>16}"
          f"{'HF RSS MB':>11}")
    for dtype, ours, theirs, ratio, cpu_ratio in rows:
        print(f"{dtype:<10}{ours['tok_s']:>15.1f}{theirs['tok_s']:>10.1f}{ratio:>7.2f}x{cpu_ratio:>10.2f}x"
              f"{ours['peak_rss_mb']:>16.0f}{theirs['peak_rss_mb']:>11.0f}")
    print(f"(tok/s: wall clock; 'per CPU-s': the ratio of tokens per second of process CPU time, which a shared CPU\n"
          f" disturbs less - meaningful with --threads 1. Load average at the end: {load:.1f} on {os.cpu_count()} CPUs.)")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
