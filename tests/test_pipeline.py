"""The pipeline skips stages whose inputs are unchanged and reruns exactly what a change touches."""

from pathlib import Path

import pytest

from recnarr import pipeline as pl
from recnarr.config import load_config

CALLS: list[str] = []


def fake_stage(name):
    def run(cfg, **_):
        CALLS.append(name)
        out = Path(cfg.run_dir) / f"{name}.done"
        out.write_text(name)

    return run


@pytest.fixture
def stages(monkeypatch):
    fakes = {n: fake_stage(n) for n in ("data", "corpus", "pretrain", "index")}
    monkeypatch.setattr(pl, "_call", lambda target, cfg, **kw: fakes[target](cfg, **kw))
    monkeypatch.setattr(pl, "STAGES", [
        pl.Stage("data", "data", "data.done", ("data",)),
        pl.Stage("corpus", "corpus", "corpus.done", ("corpus",)),
        pl.Stage("pretrain", "pretrain", "pretrain.done", ("model", "pretrain"), ("corpus",)),
        pl.Stage("index", "index", "index.done", ("index",), ("data",)),
    ])
    CALLS.clear()


def test_second_run_skips_everything(stages, tmp_path):
    cfg = load_config("tiny", [f"run_dir={tmp_path}"])
    pl.pipeline(cfg)
    assert CALLS == ["data", "corpus", "pretrain", "index"]
    CALLS.clear()
    assert set(pl.pipeline(cfg).values()) == {"skipped"}
    assert CALLS == []


def test_a_change_reruns_only_downstream_stages(stages, tmp_path):
    pl.pipeline(load_config("tiny", [f"run_dir={tmp_path}"]))
    CALLS.clear()
    pl.pipeline(load_config("tiny", [f"run_dir={tmp_path}", "corpus.min_chars=50"]))
    assert CALLS == ["corpus", "pretrain"]  # data and index don't read the corpus


def test_a_missing_output_reruns_its_stage(stages, tmp_path):
    cfg = load_config("tiny", [f"run_dir={tmp_path}"])
    pl.pipeline(cfg)
    (tmp_path / "index.done").unlink()
    CALLS.clear()
    pl.pipeline(cfg)
    assert CALLS == ["index"]


def test_real_stage_targets_exist():
    import importlib

    for s in pl.STAGES:
        module, func = s.target.split(":")
        assert callable(getattr(importlib.import_module(module), func, None)), s.target
