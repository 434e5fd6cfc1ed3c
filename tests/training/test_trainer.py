"""The training loop: schedule, batches, resume exactness, checkpoints, stops, bf16, optimizer groups."""

from __future__ import annotations

import signal
from dataclasses import replace

import pytest
import torch

from recnarr.config import TrainConfig
from recnarr.model.checkpoint import load_checkpoint, load_trainer_state
from recnarr.model.gpt import GPT, GPTConfig
from recnarr.training.batches import MemmapBatches
from recnarr.training.runtime import peak_flops, select_device
from recnarr.training.trainer import Trainer, build_optimizer, lr_at

MODEL = GPTConfig(block_size=16, vocab_size=64, n_layer=2, n_head=2, n_embd=32, dropout=0.1)
TRAIN = TrainConfig(max_steps=8, batch_size=4, grad_accum=2, lr=3e-3, min_lr=3e-4, warmup_steps=2, dtype="fp32",
                    device="cpu", eval_interval=4, eval_iters=2, log_interval=2, ckpt_interval=100,
                    progress=False, tracking=False)


def make_trainer(corpus, out, cfg=TRAIN, **kw) -> Trainer:
    torch.manual_seed(0)
    model = GPT(MODEL)
    batches = MemmapBatches(corpus / "train.bin", corpus / "val.bin", MODEL.block_size, cfg.batch_size,
                            seed=cfg.seed, val_iters=cfg.eval_iters)
    return Trainer(model, batches, cfg, out, meta={"data_manifest_hash": "abc"}, **kw)


def test_lr_schedule():
    cfg = TrainConfig(max_steps=100, warmup_steps=10, lr=1.0, min_lr=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)  # end of warmup: the peak
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(55, cfg) == pytest.approx(0.55)  # halfway through the cosine: the midpoint
    assert lr_at(100, cfg) == pytest.approx(0.1) and lr_at(500, cfg) == pytest.approx(0.1)
    lrs = [lr_at(s, cfg) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_memmap_batches(corpus):
    b = MemmapBatches(corpus / "train.bin", corpus / "val.bin", 16, 4, seed=1)
    x, y, m = b.train_batch()
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.long and m is None
    assert torch.equal(x[:, 1:], y[:, :-1])
    state = b.state_dict()
    nxt = b.train_batch()
    b2 = MemmapBatches(corpus / "train.bin", corpus / "val.bin", 16, 4, seed=1)
    b2.load_state_dict(state)
    assert torch.equal(b2.train_batch().x, nxt.x)
    v1, v2 = list(b.val_batches()), list(b.val_batches())
    assert len(v1) == 20 and all(torch.equal(p.x, q.x) for p, q in zip(v1, v2, strict=True))
    other_rank = MemmapBatches(corpus / "train.bin", None, 16, 4, seed=1, rank=1)
    assert not torch.equal(other_rank.train_batch().x, MemmapBatches(corpus / "train.bin", None, 16, 4, seed=1).train_batch().x)
    with pytest.raises(FileNotFoundError, match="recnarr data corpus"):
        MemmapBatches(corpus / "missing.bin", None, 16, 4)


def test_resume_is_exact(corpus, tmp_path):
    straight = make_trainer(corpus, tmp_path / "a").fit()
    assert straight.step == 8 and straight.stopped is None
    assert straight.losses[-1] < straight.losses[0]

    def stop_at_4(trainer, metrics):
        if metrics["step"] == 4:
            signal.raise_signal(signal.SIGTERM)  # what a scheduler's kill does: a clean stop + checkpoint

    first = make_trainer(corpus, tmp_path / "b", callbacks=[stop_at_4]).fit()
    assert first.step == 4 and first.stopped == "signal"
    assert load_trainer_state(tmp_path / "b" / "last")["step"] == 4
    resumed = make_trainer(corpus, tmp_path / "b").fit(resume=True)  # a fresh process would build all anew
    assert resumed.step == 8
    assert first.losses + resumed.losses == straight.losses  # bit-exact, loss by loss
    a, _ = load_checkpoint(tmp_path / "a" / "last")
    b, meta = load_checkpoint(tmp_path / "b" / "last")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert meta["step"] == 8 and meta["tokens_seen"] == 8 * 2 * 4 * 16 and meta["data_manifest_hash"] == "abc"


def test_checkpoints_best_last_and_meta(corpus, tmp_path):
    res = make_trainer(corpus, tmp_path / "out").fit()
    assert res.best_dir is not None and res.best_val_loss is not None
    _, best = load_checkpoint(res.best_dir)
    _, last = load_checkpoint(res.last_dir)
    assert best["val_loss"] == res.best_val_loss and last["step"] == 8
    assert load_trainer_state(res.best_dir) is None  # best is model-only; last carries the trainer state
    assert set(load_trainer_state(res.last_dir)) >= {"optimizer", "ranks", "step", "tokens_seen"}
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        make_trainer(corpus, tmp_path / "empty").fit(resume=True)


def test_max_minutes_and_request_stop(corpus, tmp_path):
    res = make_trainer(corpus, tmp_path / "t", replace(TRAIN, max_minutes=0.0)).fit()
    assert res.step == 1 and res.stopped == "max_minutes" and (res.last_dir / "model.safetensors").exists()
    res = make_trainer(corpus, tmp_path / "r", callbacks=[lambda t, m: t.request_stop()]).fit()
    assert res.step == 1 and res.stopped == "request"


def test_bf16_autocast_on_cpu(corpus, tmp_path):
    res = make_trainer(corpus, tmp_path / "bf", replace(TRAIN, dtype="bf16", max_steps=3)).fit()
    assert all(torch.isfinite(torch.tensor(res.losses)))
    assert next(GPT(MODEL).parameters()).dtype == torch.float32  # weights stay fp32 (autocast, not cast)


def test_optimizer_groups_and_frozen_params():
    model = GPT(MODEL)
    model.transformer.wpe.weight.requires_grad_(False)  # e.g. LoRA freezes the base model
    opt = build_optimizer(model, TRAIN, torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == TRAIN.weight_decay and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    ids = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(model.transformer.wpe.weight) not in ids
    assert len(ids) == sum(1 for p in model.parameters() if p.requires_grad)  # tied weight once
    assert opt.defaults.get("fused") or decay.get("fused")


def test_devices_and_peak_flops():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            select_device("cuda")
    with pytest.raises(ValueError, match="unsupported device"):
        select_device("xla")
    assert peak_flops(torch.device("cpu"), "bf16") is None  # no made-up CPU peak


def test_bad_train_config(corpus, tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        make_trainer(corpus, tmp_path, replace(TRAIN, dtype="fp16"))
