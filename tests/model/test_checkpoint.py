"""Checkpoint folders: round trip, errors that name the bad file, atomic writes, the export/import CLI."""

from __future__ import annotations

import json
import os

import pytest
import torch

from recnarr.model import checkpoint as ck
from recnarr.model.checkpoint import (
    CheckpointError,
    flatten_state,
    load_checkpoint,
    load_model,
    load_trainer_state,
    read_config,
    save_checkpoint,
    unflatten_state,
)
from recnarr.model.gpt import GPT, GPTConfig

CFG = GPTConfig(block_size=16, vocab_size=50, n_layer=1, n_head=2, n_embd=16)


def make(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(CFG)


def same_weights(a: GPT, b: GPT) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_round_trip_with_meta_and_trainer_state(tmp_path):
    m = make()
    opt = torch.optim.AdamW(m.parameters())
    m(torch.randint(0, 50, (2, 8)), torch.randint(0, 50, (2, 8)))[1].backward()
    opt.step()
    state = {"step": 7, "optimizer": opt.state_dict(), "rng": torch.get_rng_state(), "nested": [1, None, 2.5, "x"]}
    folder = save_checkpoint(tmp_path / "last", m, meta={"step": 7, "val_loss": 1.5}, trainer_state=state)
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "meta.json", "model.safetensors", "trainer_state.json", "trainer_state.safetensors"]
    umask = os.umask(0)
    os.umask(umask)
    assert all(f.stat().st_mode & 0o777 == 0o666 & ~umask for f in folder.iterdir())  # not safetensors' 0600
    back, meta = load_checkpoint(folder)
    assert meta == {"step": 7, "val_loss": 1.5} and back.config == CFG and same_weights(m, back)
    assert back.lm_head.weight is back.transformer.wte.weight
    st = load_trainer_state(folder)
    assert st["step"] == 7 and st["nested"] == [1, None, 2.5, "x"] and torch.equal(st["rng"], state["rng"])
    opt2 = torch.optim.AdamW(back.parameters())
    opt2.load_state_dict(st["optimizer"])  # int keys, betas, step tensors all survive
    assert list(opt2.state_dict()["param_groups"][0]["betas"]) == [0.9, 0.999]
    for k, v in opt.state_dict()["state"].items():
        for name, t in v.items():
            assert torch.equal(opt2.state_dict()["state"][k][name], t)


def test_flatten_refuses_objects():
    skeleton, tensors = flatten_state({0: {"a": torch.ones(2)}, "b": (1, 2)})
    assert json.loads(json.dumps(skeleton)) == skeleton
    assert unflatten_state(skeleton, tensors)[0]["a"].tolist() == [1.0, 1.0]
    with pytest.raises(TypeError, match="without pickling"):
        flatten_state({"x": object()})


def test_missing_and_corrupt_files_are_named(tmp_path):
    folder = save_checkpoint(tmp_path / "ck", make())
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        load_model(tmp_path / "nope")
    (folder / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match=r"ck/model.safetensors: not a readable safetensors"):
        load_model(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"ck/model.safetensors: file not found"):
        load_model(folder)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"block_size": 16}), "missing"),
        (json.dumps({**CFG.__dict__, "rope": True}), "unknown fields"),
        (json.dumps({**CFG.__dict__, "n_layer": "two"}), "n_layer should be int"),
        (json.dumps({**CFG.__dict__, "n_head": 3}), "divisible"),
    ],
)
def test_bad_config_json_is_named(tmp_path, content, match):
    folder = save_checkpoint(tmp_path / "ck", make())
    (folder / "config.json").write_text(content)
    with pytest.raises(CheckpointError, match=rf"ck/config.json.*{match}"):
        read_config(folder)


def test_weights_not_fitting_the_config(tmp_path):
    folder = save_checkpoint(tmp_path / "ck", make())
    (folder / "config.json").write_text(json.dumps({**CFG.__dict__, "n_embd": 32}))
    with pytest.raises(CheckpointError, match="model.safetensors does not fit"):
        load_model(folder)


def test_failed_save_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    old = make(0)
    target = save_checkpoint(tmp_path / "last", old, meta={"step": 1})
    real = ck._write_json

    def dies_on_meta(path, obj):
        if path.name == "meta.json":
            raise OSError("disk full (simulated)")
        real(path, obj)

    monkeypatch.setattr(ck, "_write_json", dies_on_meta)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(target, make(1), meta={"step": 2})
    monkeypatch.undo()
    back, meta = load_checkpoint(target)
    assert meta == {"step": 1} and same_weights(old, back)
    assert [p.name for p in tmp_path.iterdir()] == ["last"]  # no temporary folder left behind


def test_kill_between_renames_recovers(tmp_path):
    old = make(0)
    target = save_checkpoint(tmp_path / "last", old, meta={"step": 1})
    # a process killed after moving the old folder aside and before renaming the new one into place
    target.rename(tmp_path / ".last.old")
    (tmp_path / ".last.tmp-deadbeef").mkdir()
    back, meta = load_checkpoint(target)
    assert meta == {"step": 1} and same_weights(old, back)
    new = make(1)
    save_checkpoint(target, new, meta={"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    assert same_weights(new, load_model(target))


def test_export_import_cli(tmp_path, capsys):
    pytest.importorskip("transformers")
    from recnarr.cli import main

    m = make()
    save_checkpoint(tmp_path / "run" / "pretrain" / "best", m, meta={"step": 3})
    run = f"run_dir={tmp_path / 'run'}"
    assert main(["export", "--format", "hf", "--checkpoint", str(tmp_path / "run/pretrain/best"),
                 "--out", str(tmp_path / "hf"), run]) == 0
    assert (tmp_path / "hf" / "config.json").exists()
    assert main(["export", run]) == 0  # defaults: <run>/pretrain/best -> <run>/export/hf
    assert (tmp_path / "run" / "export" / "hf" / "model.safetensors").exists()
    assert main(["import", "--format", "hf", "--src", str(tmp_path / "hf"), "--out", str(tmp_path / "ck"), run]) == 0
    assert same_weights(m, load_model(tmp_path / "ck"))
    assert main(["export", "--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "x"), run]) == 1
    assert "no checkpoint folder" in capsys.readouterr().err
