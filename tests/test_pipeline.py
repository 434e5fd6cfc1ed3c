"""The pipeline skips stages whose inputs are unchanged and reruns exactly what a change touches."""

from pathlib import Path

import pytest

from recnarr.config import load_config
from recnarr.stages import pipeline as pl

CALLS: list[str] = []
KWARGS: dict[str, dict] = {}


class Killed(Exception):
    pass


def fake_stage(name):
    def run(cfg, **kwargs):
        CALLS.append(name)
        KWARGS[name] = kwargs
        out = Path(cfg.run_dir) / f"{name}.done"
        out.write_text(name)  # like a checkpoint: written before the stage ends
        if (Path(cfg.run_dir) / f"kill-{name}").exists():
            raise Killed(name)

    return run


def done(name):
    return lambda layout, cfg: layout.root / f"{name}.done"


@pytest.fixture
def stages(monkeypatch):
    fakes = {n: fake_stage(n) for n in ("data", "corpus", "pretrain", "index")}
    monkeypatch.setattr(pl, "_call", lambda command, cfg, **kw: fakes[command](cfg, **kw))
    monkeypatch.setattr(pl, "STAGES", [
        pl.Stage("data", "data", done("data"), ("data",)),
        pl.Stage("corpus", "corpus", done("corpus"), ("corpus",)),
        pl.Stage("pretrain", "pretrain", done("pretrain"), ("model", "pretrain"), ("corpus",), resumable=True),
        pl.Stage("index", "index", done("index"), ("index",), ("data",)),
    ])
    CALLS.clear()
    KWARGS.clear()


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
    from recnarr.cli import command, load_target

    for s in pl.STAGES:
        assert callable(load_target(command(s.command).target)), s.command


def test_an_interrupted_training_stage_resumes_and_a_changed_one_starts_fresh(stages, tmp_path):
    cfg = load_config("tiny", [f"run_dir={tmp_path}"])
    (tmp_path / "kill-pretrain").write_text("")
    with pytest.raises(Killed):
        pl.pipeline(cfg)
    assert KWARGS["pretrain"] == {"fresh": False}  # a first run: nothing to discard
    (tmp_path / "kill-pretrain").unlink()
    CALLS.clear()
    pl.pipeline(cfg)  # the same command again: the stage is not done, and it continues
    assert CALLS == ["pretrain", "index"] and KWARGS["pretrain"] == {"fresh": False}
    # a finished stage whose settings changed starts over (its checkpoint is of other settings)
    changed = load_config("tiny", [f"run_dir={tmp_path}", "pretrain.lr=0.01"])
    (tmp_path / "kill-pretrain").write_text("")
    with pytest.raises(Killed):
        pl.pipeline(changed)
    assert KWARGS["pretrain"] == {"fresh": True}
    # ... and once interrupted under the new settings, the rerun continues the new run
    (tmp_path / "kill-pretrain").unlink()
    pl.pipeline(changed)
    assert KWARGS["pretrain"] == {"fresh": False}
    pl.pipeline(changed, force=True)
    assert KWARGS["pretrain"] == {"fresh": True} and "fresh" not in KWARGS["data"]
