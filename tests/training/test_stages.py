"""`recnarr pretrain [--fresh | --resume]` end to end on a tiny corpus, through the CLI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from recnarr.cli import main
from recnarr.model.checkpoint import load_checkpoint, read_config, read_meta


def overrides(run_dir, steps):
    return [f"run_dir={run_dir}", "model.vocab_size=64", "model.block_size=16", "model.n_layer=1",
            "model.n_embd=32", f"pretrain.max_steps={steps}", "pretrain.device=cpu", "pretrain.dtype=fp32",
            "pretrain.eval_interval=2", "pretrain.ckpt_interval=2", "pretrain.batch_size=2",
            "pretrain.tracking=false", "pretrain.progress=false"]


def test_pretrain_cli_and_resume(corpus, capsys):
    run = corpus.parent
    assert main(["pretrain", "--preset", "tiny", *overrides(run, 4)]) == 0
    out = run / "pretrain"
    assert {p.name for p in out.iterdir()} >= {"config.yaml", "last", "best"}
    assert yaml.safe_load((out / "config.yaml").read_text())["pretrain"]["max_steps"] == 4
    model, meta = load_checkpoint(out / "last")
    assert meta["step"] == 4 and meta["stage"] == "pretrain" and meta["tokenizer"] == "gpt2"
    assert meta["data_manifest_hash"] and len(meta["data_manifest_hash"]) == 64
    assert meta["run_config"]["model"]["n_embd"] == 32 and model.config.n_embd == 32
    assert "git_commit" in meta
    # the same command continues the same run (resume is the default); raising max_steps is allowed
    assert main(["pretrain", "--preset", "tiny", *overrides(run, 6)]) == 0
    assert read_meta(out / "last")["step"] == 6
    assert "resuming from" in capsys.readouterr().out
    # a different model shape or learning rate is named and refused, and the checkpoint is kept
    assert main(["pretrain", "--preset", "tiny", *overrides(run, 8), "model.n_embd=64", "pretrain.lr=0.01"]) == 1
    err = capsys.readouterr().err
    assert "model.n_embd: 32 -> 64" in err and "pretrain.lr: 0.0006 -> 0.01" in err and "--fresh" in err
    assert read_meta(out / "last")["step"] == 6
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["n_embd"] == 32
    # --fresh starts over with the new settings
    assert main(["pretrain", "--fresh", "--preset", "tiny", *overrides(run, 2), "model.n_embd=64"]) == 0
    assert read_meta(out / "last")["step"] == 2 and read_config(out / "last").n_embd == 64
    # --resume insists on a checkpoint
    assert main(["pretrain", "--resume", "--preset", "tiny", *overrides(run.parent / "other", 2)]) == 1


def test_pretrain_without_corpus(tmp_path, capsys):
    assert main(["pretrain", "--preset", "tiny", *overrides(tmp_path / "run", 2)]) == 1
    assert "recnarr data corpus" in capsys.readouterr().err


@pytest.mark.slow
def test_kill_9_then_the_same_command_continues_byte_identical(corpus, tmp_path):
    """A real SIGKILL mid-run (no handler runs), then the same command: the final weights equal an
    uninterrupted run's, byte for byte."""
    def cmd(run_dir):
        return [sys.executable, "-m", "recnarr.cli", "pretrain", "--preset", "tiny",
                *overrides(run_dir, 400), "pretrain.ckpt_interval=20", "pretrain.eval_interval=100"]

    for name in ("train.bin", "val.bin", "manifest.json"):  # a second run folder with the same corpus
        (tmp_path / "straight" / "corpus").mkdir(parents=True, exist_ok=True)
        shutil.copy(corpus / name, tmp_path / "straight" / "corpus" / name)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd(tmp_path / "straight"), check=True, env=env, capture_output=True)

    run = corpus.parent
    proc = subprocess.Popen(cmd(run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    meta = run / "pretrain" / "last" / "meta.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if meta.is_file() and read_meta(meta.parent)["step"] >= 40:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = read_meta(run / "pretrain" / "last")["step"]
    assert proc.returncode == -signal.SIGKILL and 40 <= killed_at < 400, "the run must die mid-way"

    again = subprocess.run(cmd(run), env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"step {killed_at}" in again.stdout and read_meta(run / "pretrain" / "last")["step"] == 400
    for name in ("last", "best"):
        assert ((run / "pretrain" / name / "model.safetensors").read_bytes()
                == (tmp_path / "straight" / "pretrain" / name / "model.safetensors").read_bytes())
