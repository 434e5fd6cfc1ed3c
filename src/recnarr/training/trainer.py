"""One training loop for pretraining and fine-tuning.

The loop takes a model, a `BatchSource` (`training/batches.py`) and a `TrainConfig`. Pretraining feeds it
`MemmapBatches` (random windows of the token memmaps); fine-tuning feeds any other object with the same
four methods, yielding `Batch(x, y, loss_mask)` where the mask limits the loss to the narrative tokens.
Frozen parameters (LoRA) are left out of the optimizer; `save_fn`/`load_fn` let fine-tuning store adapters
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
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from recnarr.config import TrainConfig
from recnarr.layout import BEST, LAST
from recnarr.model.checkpoint import load_trainer_state, load_weights, read_meta, save_checkpoint
from recnarr.quiet import bars
from recnarr.training.batches import Batch, BatchSource
from recnarr.training.runtime import (
    RANK_SEED_STRIDE,
    dist_env,
    init_process_group,
    peak_flops,
    rng_state,
    select_device,
    set_rng_state,
)
from recnarr.training.tracking import Tracker


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup to `lr` over `warmup_steps`, then
    cosine decay to `min_lr` at `max_steps` (Loshchilov & Hutter 2017, without restarts)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if step >= cfg.max_steps:
        return cfg.min_lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


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


@dataclass
class _Run:
    """What one `fit` call carries from step to step (the trainer itself holds what a checkpoint saves)."""

    optimizer: torch.optim.Optimizer
    train_model: nn.Module  # compiled and/or DDP-wrapped: what the steps run
    eval_model: nn.Module  # without the DDP wrapper: validation must not sync gradients
    params: list[nn.Parameter]  # the trainable ones, for gradient clipping
    flops_per_token: float | None
    peak_flops: float | None
    bar: Any = None  # tqdm progress bar, or None (no bar: plain log lines)
    started: float = 0.0  # time.monotonic() when the loop began, for max_minutes
    losses: list[float] = field(default_factory=list)
    train_loss: float | None = None
    val_loss: float | None = None
    window_tokens: int = 0  # throughput since the last log line
    window_time: float = 0.0


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
        return self.out_dir / LAST

    @property
    def best_dir(self) -> Path:
        return self.out_dir / BEST

    def request_stop(self, reason: str = "request") -> None:
        """Finish the current step, write `last/`, and return from `fit` (what SIGTERM/SIGINT do)."""
        self._stop = self._stop or reason

    # ---------------------------------------------------------------- the loop
    def fit(self, resume: bool = False) -> TrainResult:
        """Train until `max_steps` or a stop request; `resume=True` continues from `last/` exactly."""
        cfg, env = self.cfg, self.env
        self._stop = None
        self._owns_process_group = init_process_group(env, self.device)
        self.model.to(self.device)
        self.model.train()
        optimizer = build_optimizer(self.model, cfg, self.device)
        self._resume_run_id = None
        if resume:
            self._resume(optimizer)
        else:
            torch.manual_seed(cfg.seed + RANK_SEED_STRIDE * env.rank)  # dropout etc.; the model was built before
        run = self._new_run(optimizer)
        if env.is_main:
            self.tracker.start({"train": asdict(cfg), **{k: v for k, v in self.meta.items() if k == "run_config"}},
                               run_name=self.out_dir.name, run_id=self._resume_run_id)
        run.bar = self._progress_bar()
        run.started = time.monotonic()
        status = "FINISHED"
        try:
            self._train_loop(run)
        except BaseException:
            status = "KILLED" if self._stop == "signal" else "FAILED"
            raise
        finally:
            self._finish(run, status)
        return TrainResult(step=self.step, tokens_seen=self.tokens_seen, train_loss=run.train_loss,
                           val_loss=run.val_loss, best_val_loss=self.best_val_loss, last_dir=self.last_dir,
                           best_dir=self.best_dir if self.best_dir.is_dir() else None,
                           stopped=self._stop, losses=run.losses)

    def _train_loop(self, run: _Run) -> None:
        with self._signals():
            while self.step < self.cfg.max_steps:
                if self._train_step(run):
                    return

    def _train_step(self, run: _Run) -> bool:
        """One optimizer step and what follows it (logs, validation, callbacks, checkpoint); True = stop now."""
        lr, grad_norm = self._optimization_step(run)
        metrics: dict[str, Any] = {"step": self.step, "loss": run.train_loss, "lr": lr}
        if self._due(self.cfg.log_interval):
            self._log(run, metrics, grad_norm)
        if run.bar is not None:
            run.bar.update(1)
        if self.cfg.eval_interval and self._due(self.cfg.eval_interval):
            self._validate(run, metrics)
        for cb in self.callbacks:
            cb(self, metrics)
        return self._checkpoint_or_stop(run)

    def _due(self, interval: int) -> bool:
        """Whether a periodic action (every `interval` steps, and at the last step) happens now."""
        return self.step % interval == 0 or self.step == self.cfg.max_steps

    # ---------------------------------------------------------------- setup helpers
    def _new_run(self, optimizer: torch.optim.Optimizer) -> _Run:
        """Compile and/or wrap the model for DDP; the unwrapped `self.model` is what gets saved."""
        train_model: nn.Module = self.model
        if self.cfg.compile:
            train_model = torch.compile(train_model)
        if self.env.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            train_model = DDP(train_model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        eval_model = train_model.module if self.env.enabled else train_model
        params = [p for p in self.model.parameters() if p.requires_grad]
        fpt = self.model.flops_per_token() if hasattr(self.model, "flops_per_token") else None
        return _Run(optimizer, train_model, eval_model, params, fpt, peak_flops(self.device, self.cfg.dtype))

    def _progress_bar(self) -> Any:
        if not (self.cfg.progress and self.env.is_main and bars()):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.cfg.max_steps, initial=self.step, desc=self.out_dir.name, unit="step",
                    dynamic_ncols=True)

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

    # ---------------------------------------------------------------- one optimisation step
    def _optimization_step(self, run: _Run) -> tuple[float, Tensor | None]:
        """Set the LR, accumulate gradients, clip, step; count steps, tokens and time. Returns (lr, grad norm)."""
        t0 = time.perf_counter()
        lr = lr_at(self.step, self.cfg)
        for g in run.optimizer.param_groups:
            g["lr"] = lr
        loss_sum, step_tokens = self._accumulate_gradients(run.train_model)
        grad_norm = None
        if self.cfg.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(run.params, self.cfg.grad_clip)
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += step_tokens * self.env.world_size
        run.train_loss = (loss_sum / self.cfg.grad_accum).item()  # (this rank's; exact for resume tests)
        run.losses.append(run.train_loss)
        run.window_tokens += step_tokens * self.env.world_size
        run.window_time += time.perf_counter() - t0
        return lr, grad_norm

    def _accumulate_gradients(self, model: nn.Module) -> tuple[Tensor, int]:
        """`grad_accum` forward/backward passes; returns (summed loss, tokens this rank saw)."""
        loss_sum = torch.zeros((), device=self.device)
        step_tokens = 0
        for micro in range(self.cfg.grad_accum):
            b = self._to_device(self.batches.train_batch())
            # under DDP, all-reduce gradients on the last micro-batch only
            last_micro = micro == self.cfg.grad_accum - 1
            sync = contextlib.nullcontext() if (last_micro or not self.env.enabled) else model.no_sync()
            with sync:
                with self._autocast():
                    _, loss = model(b.x, b.y, b.loss_mask, return_logits=False)
                (loss / self.cfg.grad_accum).backward()
            loss_sum += loss.detach().float()
            step_tokens += b.x.numel()
        return loss_sum, step_tokens

    # ---------------------------------------------------------------- logging, validation
    def _log(self, run: _Run, metrics: dict[str, Any], grad_norm: Tensor | None) -> None:
        """Add throughput, MFU and grad norm to `metrics`; rank 0 tracks them and shows a bar or a line."""
        tok_s = run.window_tokens / run.window_time if run.window_time > 0 else None
        fpt, peak = run.flops_per_token, run.peak_flops
        mfu = fpt * tok_s / (peak * self.env.world_size) if (fpt and tok_s and peak) else None
        metrics.update(tok_s=tok_s, mfu=mfu, grad_norm=float(grad_norm) if grad_norm is not None else None)
        run.window_tokens, run.window_time = 0, 0.0
        if not self.env.is_main:
            return
        self.tracker.log_metrics({k: metrics[k] for k in ("loss", "lr", "tok_s", "mfu", "grad_norm")}, self.step)
        if run.bar is not None:
            run.bar.set_postfix(loss=f"{run.train_loss:.3f}", tok_s=f"{tok_s:,.0f}" if tok_s else "-",
                                **({"mfu": f"{mfu:.1%}"} if mfu else {}))
        else:  # no bar (logs, CI): a plain line, so a long run is never silent
            print(f"step {self.step}/{self.cfg.max_steps}: loss {run.train_loss:.4f}, lr {metrics['lr']:.2e}, "
                  f"{tok_s or 0:,.0f} tok/s", flush=True)

    def _validate(self, run: _Run, metrics: dict[str, Any]) -> None:
        """Validation loss into `metrics` and the tracker; a new best writes `best/` (model only)."""
        run.val_loss = val_loss = self.evaluate(run.eval_model)
        metrics["val_loss"] = val_loss
        if val_loss is None:
            return
        if self.env.is_main:
            self.tracker.log_metrics({"val_loss": val_loss}, self.step)
            say = run.bar.write if run.bar is not None else print
            say(f"step {self.step}: train {run.train_loss:.4f}  val {val_loss:.4f}")
        if self.best_val_loss is None or val_loss < self.best_val_loss:
            self.best_val_loss = val_loss
            self._save(self.best_dir, None, run.train_loss, val_loss)

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

    # ---------------------------------------------------------------- stopping, checkpoints, state
    def _checkpoint_or_stop(self, run: _Run) -> bool:
        """Write `last/` when due or when stopping (max_minutes, signal, request); True = stop now."""
        if self.cfg.max_minutes is not None and time.monotonic() - run.started > self.cfg.max_minutes * 60:
            self.request_stop("max_minutes")
        stop = self._agree_stop()
        if stop or self._due(self.cfg.ckpt_interval):
            self._save(self.last_dir, run.optimizer, run.train_loss, run.val_loss)
        return stop

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

    def _finish(self, run: _Run, status: str) -> None:
        """Close the bar, end the tracked run (logging the checkpoint after a full run), leave the group."""
        if run.bar is not None:
            run.bar.close()
        if self.env.is_main:
            if self._stop == "signal" and status == "FINISHED":
                status = "KILLED"
            if status == "FINISHED" and self._stop is None and self.cfg.log_checkpoint:
                art = self.best_dir if self.best_dir.is_dir() else self.last_dir
                if art.is_dir():
                    self.tracker.log_artifacts(art, "checkpoint")
            self.tracker.finish(status)
        if self._owns_process_group:
            dist.destroy_process_group()

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
