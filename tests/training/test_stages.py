"""`recnarr pretrain [--resume]` end to end on a tiny corpus, through the CLI."""

from __future__ import annotations

import yaml

from recnarr.cli import main
from recnarr.model.checkpoint import load_checkpoint, read_meta


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
    # continue the same run to 6 steps
    assert main(["pretrain", "--resume", "--preset", "tiny", *overrides(run, 6)]) == 0
    assert read_meta(out / "last")["step"] == 6
    # a different model shape cannot resume
    assert main(["pretrain", "--resume", "--preset", "tiny", *overrides(run, 8), "model.n_embd=64"]) == 1
    assert "holds a model of shape" in capsys.readouterr().err


def test_pretrain_without_corpus(tmp_path, capsys):
    assert main(["pretrain", "--preset", "tiny", *overrides(tmp_path / "run", 2)]) == 1
    assert "recnarr data corpus" in capsys.readouterr().err
