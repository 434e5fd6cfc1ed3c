"""One training loop for pretraining and fine-tuning.

The loop takes a model, a `BatchSource` and a `TrainConfig`. Pretraining feeds it `MemmapBatches`
(random windows of the token memmaps); fine-tuning feeds any other object with the same four methods,
yielding `Batch(x, y, loss_mask)` where the mask limits the loss to the narrative tokens. Frozen
parameters (LoRA) are left out of the optimizer; `save_fn`/`load_fn` let fine-tuning store adapters
instead of whole models.

What the loop does: AdamW (fused where torch has it; weight decay on 2-D weights only), linear warmup +
cosine decay, gradient accumulation, gradient clipping, bf16 autocast (CPU and GPU), optional
torch.compile (the uncompiled module is what gets saved), periodic validation, `best/` and `last/`
checkpoints, a checkpoint every `ckpt_interval` steps and on SIGTERM/SIGINT/`max_minutes`, and
`fit(resume=True)` that continues exactly where `last/` stopped: weights, optimizer, step (hence the
LR schedule), RNG states and each rank's data position. Under `torchrun` it runs DistributedDataParallel
(nccl on CUDA, gloo on CPU); only rank 0 logs, tracks and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from recnarr.config import TrainConfig
from recnarr.model.checkpoint import load_trainer_state, load_weights, read_meta, save_checkpoint
from recnarr.training.tracking import Tracker

RANK_SEED_STRIDE = 7919  # a prime: each DDP rank's seeds (data order, dropout) stay apart from the others'


# ------------------------------------------------------------------ batches
class Batch(NamedTuple):
    """Inputs (B, T) and next-token targets (B, T); loss_mask (B, T) 1 where the loss counts, or None."""

    x: Tensor
    y: Tensor
    loss_mask: Tensor | None = None


class BatchSource(Protocol):
    """Where the trainer's batches come from (pretraining: `MemmapBatches`; fine-tuning: narrative examples).

    The model is called as `model(x, y, loss_mask, return_logits=False)` and returns `(_, loss)`.
    `train_batch` advances the data position, which `state_dict`/`load_state_dict` capture (nested dicts
    of tensors and JSON values, no pickles) so that a resumed run sees the same batches. `val_batches`
    yields the same batches on every call, so validation losses are comparable across steps.
    """

    def train_batch(self) -> Batch: ...

    def val_batches(self) -> Iterable[Batch]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class MemmapBatches:
    """Random windows of `block_size` + 1 tokens from uint16 token files (`<run>/corpus/{train,val}.bin`).

    Each DDP rank draws from its own generator (seed, rank), so ranks see different windows.
    """

    def __init__(self, train: str | os.PathLike, val: str | os.PathLike | None, block_size: int, batch_size: int,
                 seed: int = 1337, rank: int = 0, val_iters: int = 20):
        self.block_size, self.batch_size, self.val_iters = block_size, batch_size, val_iters
        self.seed, self.rank = seed, rank
        self.train = self._open(train)
        self.val = self._open(val) if val is not None else None
        self.generator = torch.Generator().manual_seed(seed + RANK_SEED_STRIDE * rank)
        self.served = 0

    def _open(self, path: str | os.PathLike) -> np.memmap:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: token file not found (build it with `recnarr data corpus`)")
        data = np.memmap(path, dtype=np.uint16, mode="r")
        if len(data) < self.block_size + 2:
            raise ValueError(f"{path}: {len(data)} tokens, fewer than block_size + 2 = {self.block_size + 2}")
        return data

    def _batch(self, data: np.memmap, generator: torch.Generator) -> Batch:
        T = self.block_size
        starts = torch.randint(len(data) - T - 1, (self.batch_size,), generator=generator).tolist()
        rows = np.stack([np.asarray(data[s : s + T + 1], dtype=np.int64) for s in starts])  # (B, T + 1)
        xy = torch.from_numpy(rows)
        return Batch(xy[:, :-1], xy[:, 1:])

    def train_batch(self) -> Batch:
        self.served += 1
        return self._batch(self.train, self.generator)

    def val_batches(self) -> Iterator[Batch]:
        if self.val is None:
            return
        g = torch.Generator().manual_seed(self.seed + RANK_SEED_STRIDE * self.rank + 1)
        for _ in range(self.val_iters):
            yield self._batch(self.val, g)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "served": self.served}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.served = int(state["served"])


# ------------------------------------------------------------------ devices, schedule, flops
@dataclass
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_env() -> DistEnv:
    """The torchrun environment (RANK, LOCAL_RANK, WORLD_SIZE); a single process without it."""
    return DistEnv(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                   int(os.environ.get("WORLD_SIZE", 1)))


def select_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """auto = cuda if available, else mps, else cpu. An explicit device that is not there is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but torch.cuda.is_available() is False")
        return torch.device("cuda", dev.index if dev.index is not None else local_rank)
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} requested but torch.backends.mps.is_available() is False")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {name!r}: expected auto, cpu, cuda[:N] or mps")
    return dev


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup to `lr` over `warmup_steps`, then
    cosine decay to `min_lr` at `max_steps` (Loshchilov & Hutter 2017, without restarts)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if step >= cfg.max_steps:
        return cfg.min_lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


# Dense peak FLOP/s per device (datasheets, no sparsity). fp32 = plain fp32 (we do not enable TF32).
# More specific names first: "H100 PCIe" before "H100". The CPU has no entry: MFU is reported as None
# there rather than guessed.
PEAK_FLOPS: list[tuple[str, dict[str, float]]] = [
    ("H100 PCIe", {"bf16": 756e12, "fp32": 51e12}),
    ("H100", {"bf16": 989e12, "fp32": 67e12}),
    ("H200", {"bf16": 989e12, "fp32": 67e12}),
    ("A100", {"bf16": 312e12, "fp32": 19.5e12}),
]


def peak_flops(device: torch.device, dtype: str) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_FLOPS:
        if key.lower() in name.lower():
            return peaks.get(dtype)
    return None


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; weight decay on matrices (≥ 2-D) only, not on biases, norms."""
    params = [p for p in model.parameters() if p.requires_grad]  # parameters() yields tied weights once
    if not params:
        raise ValueError("the model has no trainable parameters (all requires_grad=False)")
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    fused = device.type in ("cuda", "cpu")  # fused AdamW kernels exist for these in torch >= 2.4
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)


# ------------------------------------------------------------------ RNG state
def rng_state(device: torch.device) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# ------------------------------------------------------------------ the trainer
@dataclass
class TrainResult:
    step: int
    tokens_seen: int
    train_loss: float | None
    val_loss: float | None
    best_val_loss: float | None
    last_dir: Path
    best_dir: Path | None
    stopped: str | None = None  # None (reached max_steps) | "signal" | "max_minutes" | "request"
    losses: list[float] = field(default_factory=list)  # train loss of each step run in this call


SaveFn = Callable[[Path, nn.Module, dict[str, Any], dict[str, Any] | None], Any]
LoadFn = Callable[[Path, nn.Module], Any]


class Trainer:
    """`Trainer(model, batches, cfg, out_dir).fit(resume=False)`; checkpoints go to out_dir/{last,best}.

    meta: JSON-able facts stored in every checkpoint's meta.json (run config, data manifest hash, ...).
    callbacks: called as cb(trainer, metrics) after every optimizer step (metrics: step, loss, lr, ...).
    save_fn(folder, model, meta, trainer_state) / load_fn(folder, model): how the model's weights are
    written and read back on resume; the defaults are the full-model checkpoint format.
    """

    def __init__(self, model: nn.Module, batches: BatchSource, cfg: TrainConfig, out_dir: str | os.PathLike, *,
                 meta: dict[str, Any] | None = None, tracker: Tracker | None = None,
                 callbacks: Iterable[Callable[[Trainer, dict[str, Any]], None]] = (),
                 save_fn: SaveFn = save_checkpoint, load_fn: LoadFn = load_weights):
        if cfg.dtype not in ("bf16", "fp32"):
            raise ValueError(f"dtype must be bf16 or fp32, got {cfg.dtype!r}")
        if cfg.grad_accum < 1 or cfg.batch_size < 1 or cfg.max_steps < 1:
            raise ValueError("batch_size, grad_accum and max_steps must all be >= 1")
        self.model, self.batches, self.cfg = model, batches, cfg
        self.out_dir = Path(out_dir)
        self.meta = dict(meta or {})
        self.tracker = tracker or Tracker()
        self.callbacks = list(callbacks)
        self.save_fn, self.load_fn = save_fn, load_fn
        self.env = dist_env()
        self.device = select_device(cfg.device, self.env.local_rank)
        self.step = 0
        self.tokens_seen = 0
        self.best_val_loss: float | None = None
        self._stop: str | None = None

    @property
    def last_dir(self) -> Path:
        return self.out_dir / "last"

    @property
    def best_dir(self) -> Path:
        return self.out_dir / "best"

    def request_stop(self, reason: str = "request") -> None:
        """Finish the current step, write `last/`, and return from `fit` (what SIGTERM/SIGINT do)."""
        self._stop = self._stop or reason

    # ---------------------------------------------------------------- setup helpers
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.dtype == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _to_device(self, b: Batch) -> Batch:
        nb = self.device.type == "cuda"
        return Batch(*(t.to(self.device, non_blocking=nb) if t is not None else None for t in b))

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT request a clean stop (checkpoint, then return); a second SIGINT interrupts."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, _frame: Any) -> None:
            if signum == signal.SIGINT and self._stop == "signal":
                raise KeyboardInterrupt
            self.request_stop("signal")
            if self.env.is_main:
                print(f"\nreceived {signal.Signals(signum).name}: finishing the step and writing {self.last_dir}")

        old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _init_distributed(self) -> None:
        self._owns_process_group = False
        if self.env.enabled and not dist.is_initialized():
            self._owns_process_group = True
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group(backend=backend)

    # ---------------------------------------------------------------- state
    def _trainer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        mine = {"data": self.batches.state_dict(), "rng": rng_state(self.device)}
        if self.env.enabled:
            ranks: list[Any] = [None] * self.env.world_size
            dist.all_gather_object(ranks, mine)  # every rank's data position and RNG, saved by rank 0
        else:
            ranks = [mine]
        return {"step": self.step, "tokens_seen": self.tokens_seen, "best_val_loss": self.best_val_loss,
                "world_size": self.env.world_size, "optimizer": optimizer.state_dict(), "ranks": ranks}

    def _checkpoint_meta(self, train_loss: float | None, val_loss: float | None) -> dict[str, Any]:
        return {**self.meta, "step": self.step, "tokens_seen": self.tokens_seen, "train_loss": train_loss,
                "val_loss": val_loss, "best_val_loss": self.best_val_loss, "dtype": self.cfg.dtype,
                "world_size": self.env.world_size, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "mlflow_run_id": self.tracker.run_id}

    def _save(self, folder: Path, optimizer: torch.optim.Optimizer | None, train_loss: float | None,
              val_loss: float | None) -> None:
        """Collective under DDP (the trainer state gathers every rank's); only rank 0 writes."""
        state = self._trainer_state(optimizer) if optimizer is not None else None
        if self.env.is_main:
            self.save_fn(folder, self.model, self._checkpoint_meta(train_loss, val_loss), state)

    def _resume(self, optimizer: torch.optim.Optimizer) -> None:
        folder = self.last_dir
        if not folder.is_dir():
            raise FileNotFoundError(f"cannot resume: no checkpoint at {folder} (train without --resume first)")
        state = load_trainer_state(folder)
        if state is None:
            raise FileNotFoundError(f"cannot resume: {folder} has no trainer_state.json (a model-only checkpoint)")
        self.load_fn(folder, self.model)
        optimizer.load_state_dict(state["optimizer"])
        self.step, self.tokens_seen = int(state["step"]), int(state["tokens_seen"])
        self.best_val_loss = state["best_val_loss"]
        ranks = state["ranks"]
        if len(ranks) == self.env.world_size:
            mine = ranks[self.env.rank]
            self.batches.load_state_dict(mine["data"])
            set_rng_state(mine["rng"], self.device)
        else:
            # the data split across ranks changed: positions cannot carry over; say so and reseed
            if self.env.is_main:
                print(f"resume: checkpoint has {len(ranks)} ranks, this run {self.env.world_size}; "
                      "data positions and RNG are reseeded (not an exact continuation)")
            torch.manual_seed(self.cfg.seed + RANK_SEED_STRIDE * self.env.rank + self.step)
        self._resume_run_id = read_meta(folder).get("mlflow_run_id")  # continue the same MLflow run

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, model: nn.Module | None = None) -> float | None:
        """Mean loss over the source's validation batches (averaged over ranks); None without any."""
        model = self.model if model is None else model
        was_training = model.training
        model.eval()
        total, n = torch.zeros((), device=self.device), 0
        for b in self.batches.val_batches():
            b = self._to_device(b)
            with self._autocast():
                _, loss = model(b.x, b.y, b.loss_mask, return_logits=False)
            total += loss.float()
            n += 1
        model.train(was_training)
        if self.env.enabled:
            packed = torch.stack([total, torch.tensor(float(n), device=self.device)])
            dist.all_reduce(packed)
            total, n = packed[0], int(packed[1].item())
        return (total / n).item() if n else None

    # ---------------------------------------------------------------- the loop
    def fit(self, resume: bool = False) -> TrainResult:
        cfg, env = self.cfg, self.env
        self._stop = None
        self._init_distributed()
        self.model.to(self.device)
        self.model.train()
        optimizer = build_optimizer(self.model, cfg, self.device)
        self._resume_run_id = None
        if resume:
            self._resume(optimizer)
        else:
            torch.manual_seed(cfg.seed + RANK_SEED_STRIDE * env.rank)  # dropout etc.; the model was built before
        train_model: nn.Module = self.model
        if cfg.compile:
            train_model = torch.compile(train_model)
        if env.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            train_model = DDP(train_model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        eval_model = train_model.module if env.enabled else train_model

        params = [p for p in self.model.parameters() if p.requires_grad]
        fpt = self.model.flops_per_token() if hasattr(self.model, "flops_per_token") else None
        peak = peak_flops(self.device, cfg.dtype)
        if env.is_main:
            self.tracker.start({"train": asdict(cfg), **{k: v for k, v in self.meta.items() if k == "run_config"}},
                               run_name=self.out_dir.name, run_id=self._resume_run_id)
        bar = None
        if cfg.progress and env.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.step, desc=self.out_dir.name, unit="step", dynamic_ncols=True)

        losses: list[float] = []
        train_loss = val_loss = None
        started = time.monotonic()
        window_tokens, window_time = 0, 0.0
        status = "FINISHED"
        try:
            with self._signals():
                while self.step < cfg.max_steps:
                    t0 = time.perf_counter()
                    lr = lr_at(self.step, cfg)
                    for g in optimizer.param_groups:
                        g["lr"] = lr
                    loss_sum = torch.zeros((), device=self.device)
                    step_tokens = 0
                    for micro in range(cfg.grad_accum):
                        b = self._to_device(self.batches.train_batch())
                        last_micro = micro == cfg.grad_accum - 1
                        sync = contextlib.nullcontext() if (last_micro or not env.enabled) else train_model.no_sync()
                        with sync:
                            with self._autocast():
                                _, loss = train_model(b.x, b.y, b.loss_mask, return_logits=False)
                            (loss / cfg.grad_accum).backward()
                        loss_sum += loss.detach().float()
                        step_tokens += b.x.numel()
                    grad_norm = None
                    if cfg.grad_clip > 0:
                        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    self.step += 1
                    self.tokens_seen += step_tokens * env.world_size
                    train_loss = (loss_sum / cfg.grad_accum).item()  # (this rank's; exact for resume tests)
                    losses.append(train_loss)
                    dt = time.perf_counter() - t0
                    window_tokens += step_tokens * env.world_size
                    window_time += dt

                    metrics: dict[str, Any] = {"step": self.step, "loss": train_loss, "lr": lr}
                    if self.step % cfg.log_interval == 0 or self.step == cfg.max_steps:
                        tok_s = window_tokens / window_time if window_time > 0 else None
                        mfu = fpt * tok_s / (peak * env.world_size) if (fpt and tok_s and peak) else None
                        metrics.update(tok_s=tok_s, mfu=mfu,
                                       grad_norm=float(grad_norm) if grad_norm is not None else None)
                        window_tokens, window_time = 0, 0.0
                        if env.is_main:
                            self.tracker.log_metrics({k: metrics[k] for k in ("loss", "lr", "tok_s", "mfu", "grad_norm")},
                                                     self.step)
                            if bar is not None:
                                bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tok_s:,.0f}" if tok_s else "-",
                                                **({"mfu": f"{mfu:.1%}"} if mfu else {}))
                            else:  # no bar (logs, CI): a plain line, so a long run is never silent
                                print(f"step {self.step}/{cfg.max_steps}: loss {train_loss:.4f}, lr {lr:.2e}, "
                                      f"{tok_s or 0:,.0f} tok/s", flush=True)
                    if bar is not None:
                        bar.update(1)

                    if cfg.eval_interval and (self.step % cfg.eval_interval == 0 or self.step == cfg.max_steps):
                        val_loss = self.evaluate(eval_model)
                        metrics["val_loss"] = val_loss
                        if val_loss is not None:
                            if env.is_main:
                                self.tracker.log_metrics({"val_loss": val_loss}, self.step)
                                say = bar.write if bar is not None else print
                                say(f"step {self.step}: train {train_loss:.4f}  val {val_loss:.4f}")
                            if self.best_val_loss is None or val_loss < self.best_val_loss:
                                self.best_val_loss = val_loss
                                self._save(self.best_dir, None, train_loss, val_loss)

                    for cb in self.callbacks:
                        cb(self, metrics)
                    if cfg.max_minutes is not None and time.monotonic() - started > cfg.max_minutes * 60:
                        self.request_stop("max_minutes")
                    stop = self._agree_stop()
                    if stop or self.step % cfg.ckpt_interval == 0 or self.step == cfg.max_steps:
                        self._save(self.last_dir, optimizer, train_loss, val_loss)
                    if stop:
                        break
        except BaseException:
            status = "KILLED" if self._stop == "signal" else "FAILED"
            raise
        finally:
            if bar is not None:
                bar.close()
            if env.is_main:
                if self._stop == "signal" and status == "FINISHED":
                    status = "KILLED"
                if status == "FINISHED" and self._stop is None and cfg.log_checkpoint:
                    art = self.best_dir if self.best_dir.is_dir() else self.last_dir
                    if art.is_dir():
                        self.tracker.log_artifacts(art, "checkpoint")
                self.tracker.finish(status)
            if self._owns_process_group:
                dist.destroy_process_group()
        return TrainResult(step=self.step, tokens_seen=self.tokens_seen, train_loss=train_loss, val_loss=val_loss,
                           best_val_loss=self.best_val_loss, last_dir=self.last_dir,
                           best_dir=self.best_dir if self.best_dir.is_dir() else None,
                           stopped=self._stop, losses=losses)

    def _agree_stop(self) -> bool:
        """Whether to stop now; under DDP every rank must agree, or the others would hang in all-reduce."""
        flag = self._stop is not None
        if self.env.enabled:
            t = torch.tensor([1.0 if flag else 0.0], device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
            if flag and self._stop is None:
                self._stop = "signal"
        return flag
