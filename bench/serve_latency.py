"""Serving latency: end-to-end p50/p95 and throughput at 1, 4 and 16 concurrent clients, over loopback,
against a real `recnarr serve` (uvicorn) process, for fp32 and a quantized mode; plus the serving
process's peak resident memory (model, embedding model and index loaded).

Each mode gets its own server process (so its peak RSS is its own). Every request is a real
`POST /v1/recommendations` for a real customer of the run's dataset: retrieval over the run's FAISS
index, prompt, KV-cache generation of `--max-new-tokens` tokens, slot filling and verification,
JSON out. Before timing, one request with free text loads the embedding model (counted in the RSS),
and a few requests warm up.

The model: the run's serving model when one exists (`load_generator`: <run>/serving/<mode>, merged,
or the shipped one). Otherwise random weights in the `--shape` preset's shape (`cpu-small` by default),
quantized by the same switch (`recnarr.model.quantize`), and the output says so. A random model
never ends a narrative early and fails the verifier, so with random weights each request generates
exactly `--max-new-tokens` tokens once (generation.max_retries=0): the cost of one ~80-token narrative.

    .venv/bin/python bench/serve_latency.py                          # preset tiny (its data + index), int8 vs fp32
    .venv/bin/python bench/serve_latency.py --preset cpu-small --modes none,int8,bf16 --clients 1,4,16

Needs <run>/data and <run>/index (`make demo`, or `recnarr data load` + `recnarr index`).
The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from memory import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------ the server side: a generator factory
def bench_generator(settings: Any):
    """RECNARR_GENERATOR_FACTORY target: the run's trained serving model if there is one, else random
    weights of RECNARR_BENCH_SHAPE quantized per settings.quantize."""
    import torch

    from recnarr.config import load_config
    from recnarr.inference.generator import NarrativeGenerator, load_generator

    overrides = settings.config_overrides() + [f"generation.max_new_tokens={os.environ['RECNARR_BENCH_TOKENS']}",
                                               "generation.min_new_tokens=0"]
    cfg = load_config(settings.preset, overrides)
    mode = settings.quantize or "none"
    try:
        gen = load_generator(cfg, settings.checkpoint, mode)
        gen.versions["bench_model"] = "trained"
        return gen
    except FileNotFoundError as e:
        if "serving model" not in str(e):
            raise  # a missing dataset or index is the user's to fix, not a reason for random weights
    from recnarr.data.run_data import load_dataset
    from recnarr.data.tokenizer import get_tokenizer
    from recnarr.inference.engine import Engine
    from recnarr.model.gpt import GPT, PRESETS
    from recnarr.model.quantize import quantize
    from recnarr.retrieval.recommender import Recommender

    cfg = load_config(settings.preset, overrides + ["generation.max_retries=0"])
    shape = os.environ.get("RECNARR_BENCH_SHAPE", "cpu-small")
    torch.manual_seed(0)
    model = GPT(PRESETS[shape]).eval()
    if mode != "none":
        model = quantize(model, mode)
    ds = load_dataset(cfg)
    recommender = Recommender.from_folder(cfg.layout.index, ds, cfg.retrieval)
    versions = {"model": {"random_init": shape, "quantization": mode}, "bench_model": f"random-init {shape}",
                "catalog_checksum": ds.checksum()}
    return NarrativeGenerator(ds, recommender, Engine(model, get_tokenizer()), cfg.generation, versions,
                              cfg.narratives.max_history)


# ------------------------------------------------------------------ the client side
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class ServerProcess:
    """A real `recnarr serve` (uvicorn) process on a free loopback port; `env`: RECNARR_* settings."""

    def __init__(self, preset: str, env: dict[str, str], log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               "RECNARR_PRESET": preset, "RECNARR_REQUEST_TIMEOUT_S": "600", "PYTHONUNBUFFERED": "1", **env}
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "recnarr.cli", "serve", "--preset", preset,
                                      "--host", "127.0.0.1", "--port", str(self.port)],
                                     env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited ({self.proc.returncode}):\n{self.log_path.read_text()[-3000:]}")
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=2)
                if r.status_code == 200:
                    return r.json()
                if r.json().get("state") == "failed":
                    raise SystemExit(f"loading failed: {r.json().get('error')}")
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"server not ready in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


async def run_level(url: str, users: list[str], clients: int, requests: int, seed0: int) -> dict:
    """`requests` recommendations from `clients` concurrent clients (each one request at a time)."""
    latencies: list[float] = []
    tokens: list[int] = []
    gen_s: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(requests))

    async def client(c: httpx.AsyncClient) -> None:
        for i in counter:
            body = {"user_id": users[(seed0 + i) % len(users)], "n": 3, "sampling": {"seed": seed0 + i}}
            t = time.perf_counter()
            try:
                r = await c.post("/v1/recommendations", json=body)
            except httpx.HTTPError as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                continue
            took = time.perf_counter() - t
            if r.status_code != 200:
                errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                continue
            latencies.append(took)
            out = r.json()
            tokens.append(out["tokens"].get("generated", 0))
            gen_s.append(out["timings_ms"].get("generate", 0.0) / 1000)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return {"clients": clients, "requests": requests, "ok": len(latencies), "errors": errors,
            "p50_ms": round(percentile(latencies, 0.5) * 1000, 1), "p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
            "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
            "throughput_rps": round(len(latencies) / wall, 2), "wall_s": round(wall, 2),
            "mean_tokens": round(statistics.fmean(tokens), 1) if tokens else None,
            "decode_tok_s": round(sum(tokens) / sum(gen_s), 1) if sum(gen_s) > 0 else None}


def bench_mode(args: argparse.Namespace, mode: str, log_dir: Path) -> dict:
    env = {"RECNARR_GENERATOR_FACTORY": "serve_latency:bench_generator", "RECNARR_QUANTIZE": mode,
           "RECNARR_MAX_QUEUE": str(max(args.clients) * 2), "RECNARR_BENCH_SHAPE": args.shape,
           "RECNARR_BENCH_TOKENS": str(args.max_new_tokens)}
    if args.threads:
        env["RECNARR_TORCH_THREADS"] = str(args.threads)
    if args.checkpoint:
        env["RECNARR_CHECKPOINT"] = args.checkpoint
    server = ServerProcess(args.preset, env, log_dir / f"server-{mode}.log")
    try:
        t = time.perf_counter()
        ready = server.wait_ready(args.load_timeout)
        load_s = time.perf_counter() - t
        users = [u["id"] for u in httpx.get(f"{server.url}/v1/users", params={"limit": 500, "min_purchases": 2},
                                           timeout=30).json()["users"]]
        if not users:
            raise SystemExit("the run's dataset has no customer with 2+ purchases to recommend for")
        # load the embedding model (a text query) so the peak RSS has everything a demo loads
        r = httpx.post(f"{server.url}/v1/recommendations", json={"user_id": users[0], "text": "a desk organizer",
                                                                  "narrate": False}, timeout=600)
        r.raise_for_status()
        asyncio.run(run_level(server.url, users, 1, args.warmup, seed0=10_000))
        levels = [asyncio.run(run_level(server.url, users, c, max(args.min_requests, args.per_client * c), seed0=0))
                  for c in args.clients]
        return {"mode": mode, "model": ready.get("versions", {}).get("bench_model", "?"),
                "versions": ready.get("versions", {}).get("model"), "load_s": round(load_s, 1),
                "peak_rss_mb": round(peak_rss_mb(server.proc.pid), 1), "levels": levels}
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny", help="the run whose data + index serve (default: tiny)")
    ap.add_argument("--shape", default="cpu-small", help="model shape when no trained model exists")
    ap.add_argument("--checkpoint", default=None, help="serve this checkpoint folder")
    ap.add_argument("--modes", default="none,int8", help="quantization modes (none = fp32); int8 is the fastest on CPU")
    ap.add_argument("--clients", default="1,4,16", help="concurrency levels")
    ap.add_argument("--per-client", type=int, default=2, help="requests per client at each level")
    ap.add_argument("--min-requests", type=int, default=8, help="at least this many requests per level")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=80)
    ap.add_argument("--threads", type=int, default=None, help="torch threads in the server (default: torch's)")
    ap.add_argument("--load-timeout", type=float, default=600)
    ap.add_argument("--log-dir", default=None, help="server logs (default: a temp folder)")
    args = ap.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]

    import tempfile

    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="serve_latency-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for mode in modes:
        print(f"[{mode}] starting a server (preset {args.preset}) ...", flush=True)
        results.append(bench_mode(args, mode, log_dir))

    print()
    print(f"{'mode':<6} {'clients':>7} {'ok/req':>7} {'errors':>7} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>7} "
          f"{'tokens':>7} {'tok/s':>7}")
    for res in results:
        for lv in res["levels"]:
            err = sum(lv["errors"].values())
            print(f"{res['mode']:<6} {lv['clients']:>7} {lv['ok']:>3}/{lv['requests']:<3} {err:>7} {lv['p50_ms']:>8} "
                  f"{lv['p95_ms']:>8} {lv['throughput_rps']:>7} {lv['mean_tokens'] or 0:>7} {lv['decode_tok_s'] or 0:>7}")
    print()
    for res in results:
        print(f"{res['mode']:<6} model: {res['model']}; peak RSS {res['peak_rss_mb']} MB; ready in {res['load_s']} s")
    if any(str(r["model"]).startswith("random-init") for r in results):
        print(f"note: no trained serving model in runs/{args.preset}: random weights in the {args.shape} shape, "
              f"one {args.max_new_tokens}-token generation per request (max_retries=0). Latency and memory are "
              "representative of that shape; narrative quality is not.")
    print(f"server logs: {log_dir}")
    print(json.dumps({"bench": "serve_latency", "preset": args.preset, "shape": args.shape,
                      "max_new_tokens": args.max_new_tokens, "threads": args.threads, "cpu_count": os.cpu_count(),
                      "results": results}))


if __name__ == "__main__":
    main()
